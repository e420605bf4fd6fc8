/* Leveled stderr logging; rank 0 speaks for the communicator. */
#include "linfold/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static lf_log_level_t threshold = LF_LOG_INFO;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

void lf_log_set_level(lf_log_level_t level) { threshold = level; }
bool lf_log_enabled(lf_log_level_t level) { return level <= threshold; }

static void emit(lf_log_level_t level, const char *prefix, const char *fmt, va_list ap)
{
    if (level == LF_LOG_INFO)
        fprintf(stderr, "linfold: %s", prefix);
    else
        fprintf(stderr, "linfold: %s%s: ", prefix, level_names[level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
}

void lf_log(lf_log_level_t level, MPI_Comm comm, const char *fmt, ...)
{
    if (!lf_log_enabled(level))
        return;
    int rank = 0;
    if (comm != MPI_COMM_NULL)
        MPI_Comm_rank(comm, &rank);
    if (rank != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, "", fmt, ap);
    va_end(ap);
}

void lf_log_rank(lf_log_level_t level, MPI_Comm comm, const char *fmt, ...)
{
    if (!lf_log_enabled(level))
        return;
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "[%d/%d] ", rank, size);
    va_list ap;
    va_start(ap, fmt);
    emit(level, prefix, fmt, ap);
    va_end(ap);
}

double lf_log_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
