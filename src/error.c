/* The per-process error record behind the LF_CHECK / LF_CALL macros.
 *
 * linfold is single-threaded per rank, so one static record suffices: the first failure writes the
 * message and location, each LF_CALL up the stack adds a traceback line, and main() prints it once.
 * Keeping the message instead of printing at the failure point lets main() print exactly one
 * message per job (from the lowest failing rank) instead of one per rank. */
#include "linfold/error.h"

#include <mpi.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { TRACE_MAX = 24, MSG_MAX = 1024 };

static struct {
    bool set;
    lf_err_t code;
    char where[256];
    char message[MSG_MAX];
    int n_trace;
    char trace[TRACE_MAX][160];
} record;

static int my_rank = 0, my_size = 1;

/* Compute threads (pool.h) may fail concurrently; the first one to record wins. */
static pthread_mutex_t record_lock = PTHREAD_MUTEX_INITIALIZER;

const char *lf_err_name(lf_err_t err)
{
    switch (err) {
#define LF__ERR_NAME(name, msg)                                                                    \
    case LF_ERR_##name: return "LF_ERR_" #name;
        LF_ERR_MAP(LF__ERR_NAME)
#undef LF__ERR_NAME
    default: return "LF_ERR_UNKNOWN";
    }
}

const char *lf_strerror(lf_err_t err)
{
    switch (err) {
#define LF__ERR_MSG(name, msg)                                                                     \
    case LF_ERR_##name: return msg;
        LF_ERR_MAP(LF__ERR_MSG)
#undef LF__ERR_MSG
    default: return "unknown error";
    }
}

void lf_error_set_rank(int rank, int size)
{
    my_rank = rank;
    my_size = size;
}

void lf_error_record(const char *file, int line, const char *func, lf_err_t code, const char *fmt,
                     ...)
{
    pthread_mutex_lock(&record_lock);
    if (record.set) {
        pthread_mutex_unlock(&record_lock);
        lf_error_trace(file, line, func);
        return;
    }
    record.set = true;
    record.code = code;
    record.n_trace = 0;
    snprintf(record.where, sizeof record.where, "%s:%d %s()", file, line, func);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(record.message, sizeof record.message, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&record_lock);
}

void lf_error_trace(const char *file, int line, const char *func)
{
    pthread_mutex_lock(&record_lock);
    if (record.set && record.n_trace < TRACE_MAX) {
        snprintf(record.trace[record.n_trace], sizeof record.trace[0], "#%d %s() at %s:%d",
                 record.n_trace + 1, func, file, line);
        record.n_trace++;
    }
    pthread_mutex_unlock(&record_lock);
}

bool lf_error_is_local(void) { return record.set; }

const char *lf_error_message(void) { return record.set ? record.message : ""; }

void lf_error_print(bool traceback)
{
    if (!record.set)
        return;
    /* An interruption is not a fault: it says so, and that nothing was written. A checkpoint
     * stop is planned work: "stopped:", and its message says how to resume. */
    bool stopped = record.code == LF_ERR_INTERRUPTED;
    bool checkpoint = record.code == LF_ERR_CHECKPOINT;
    char prefix[64] = "";
    if (my_size > 1)
        snprintf(prefix, sizeof prefix, "[rank %d/%d] ", my_rank, my_size);
    fprintf(stderr, "linfold: %s%s%s%s (%s)\n", prefix,
            stopped ? "" : (checkpoint ? "stopped: " : "error: "), record.message,
            stopped ? "; no output was written" : "", lf_err_name(record.code));
    if (traceback) {
        fprintf(stderr, "  at %s\n", record.where);
        for (int i = 0; i < record.n_trace; i++)
            fprintf(stderr, "  %s\n", record.trace[i]);
    }
    fflush(stderr);
}

void lf_error_clear(void) { memset(&record, 0, sizeof record); }

_Noreturn void lf__assert_fail(const char *file, int line, const char *func, const char *cond)
{
    fprintf(stderr, "linfold: [rank %d/%d] %s:%d %s(): assertion failed: %s (a bug in linfold)\n",
            my_rank, my_size, file, line, func, cond);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 70);
    for (;;) {
    }
}

lf_err_t lf_int_cast(int64_t v, int *out)
{
    lf_err_t err = LF_OK;
    LF_CHECK(v >= -2147483647LL - 1 && v <= 2147483647LL, LF_ERR_OVERFLOW,
             "count %lld does not fit in an int (MPI/HDF5/ScaLAPACK limit)", (long long)v);
    *out = (int)v;
cleanup:
    return err;
}
