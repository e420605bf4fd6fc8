/* Leveled logging to stderr. Messages about the whole communicator print once, from its rank 0;
 * per-rank messages (lf_log_rank) carry a "[r/n]" prefix. Library code never prints to stdout. */
#ifndef LINFOLD_LOG_H
#define LINFOLD_LOG_H

#include <mpi.h>
#include <stdbool.h>

typedef enum {
    LF_LOG_ERROR = 0,
    LF_LOG_WARN = 1,
    LF_LOG_INFO = 2,
    LF_LOG_DEBUG = 3
} lf_log_level_t;

/* Sets the highest level that prints, for this process.
 * Not collective.
 * The default is LF_LOG_INFO; lf_cli_main() sets INFO, --quiet ERROR, -v DEBUG. */
void lf_log_set_level(lf_log_level_t level);
/* Returns true when messages of level print.
 * Not collective. */
bool lf_log_enabled(lf_log_level_t level);

/* Prints a message from rank 0 of comm only.
 * Not collective.
 * With MPI_COMM_NULL it prints from this process. */
void lf_log(lf_log_level_t level, MPI_Comm comm, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prints a message from this rank with a "[rank/size]" prefix of comm.
 * Not collective.
 * comm must be a valid communicator (not MPI_COMM_NULL). */
void lf_log_rank(lf_log_level_t level, MPI_Comm comm, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns a monotonic clock in seconds, for the timings the log and the records report.
 * Not collective. */
double lf_log_seconds(void);

#endif /* LINFOLD_LOG_H */
