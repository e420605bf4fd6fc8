/* Leveled logging to stderr. Messages about the whole communicator print once, from its rank 0;
 * per-rank messages (lf_log_rank) carry a "[r/n]" prefix. Library code never prints to stdout. */
#ifndef LINFOLD_LOG_H
#define LINFOLD_LOG_H

#include <mpi.h>
#include <stdbool.h>

typedef enum { LF_LOG_ERROR = 0, LF_LOG_WARN = 1, LF_LOG_INFO = 2, LF_LOG_DEBUG = 3 } lf_log_level_t;

/* Sets the highest level that prints (default LF_LOG_WARN... main sets INFO, --quiet ERROR,
 * -v DEBUG). Not collective. */
void lf_log_set_level(lf_log_level_t level);
lf_log_level_t lf_log_get_level(void);
bool lf_log_enabled(lf_log_level_t level);

/* Prints from rank 0 of comm only (MPI_COMM_NULL: from this process). Not collective. */
void lf_log(lf_log_level_t level, MPI_Comm comm, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prints from this rank with a "[rank/size]" prefix of comm. Not collective. */
void lf_log_rank(lf_log_level_t level, MPI_Comm comm, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* LINFOLD_LOG_H */
