/* linfold error codes, check macros and the per-process error record.
 *
 * Every function that can fail returns lf_err_t (LF_OK = 0). A failure is recorded once, where it
 * is detected, with file:line, function and a message that names the value found and the value
 * expected; each LF_CALL the error passes through appends one traceback line. main() prints the
 * record once (from the lowest failing rank) and maps the code to an exit status.
 *
 *     lf_err_t err = LF_OK;
 *     float *w = NULL;
 *     LF_CHECK(n > 0, LF_ERR_ARG, "n = %lld, expected > 0", (long long)n);
 *     LF_CALL(lf_malloc((size_t)n, sizeof *w, (void **)&w));
 *   cleanup:
 *     lf_free(w);
 *     return err;
 */
#ifndef LINFOLD_ERROR_H
#define LINFOLD_ERROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* name, message. Order matters only for the numeric value; LF_OK must stay first. */
#define LF_ERR_MAP(X)                                                                              \
    X(OK, "success")                                                                               \
    X(USAGE, "bad command-line usage")                                                             \
    X(ARG, "invalid argument")                                                                     \
    X(NOMEM, "out of memory")                                                                      \
    X(IO, "file could not be opened, read or written")                                             \
    X(FORMAT, "file content does not follow the format")                                           \
    X(SHAPE, "shapes do not match")                                                                \
    X(VALUE, "non-finite or out-of-range value")                                                   \
    X(MPI, "MPI call failed")                                                                      \
    X(HDF5, "HDF5 call failed")                                                                    \
    X(OVERFLOW, "integer overflow")                                                                \
    X(INTERRUPTED, "interrupted by a signal")                                                      \
    X(CHECKPOINT, "stopped at a checkpoint; rerun to resume")                                      \
    X(PARTIAL, "some models of a registry run failed")                                             \
    X(INTERNAL, "internal error (a bug in linfold)")

typedef enum {
#define LF__ERR_ENUM(name, msg) LF_ERR_##name,
    LF_ERR_MAP(LF__ERR_ENUM)
#undef LF__ERR_ENUM
        LF_ERR__COUNT
} lf_err_t;

#define LF_OK LF_ERR_OK

/* Returns the name of err, e.g. "LF_ERR_SHAPE" ("LF_ERR_UNKNOWN" for an unknown code).
 * Not collective. */
const char *lf_err_name(lf_err_t err);
/* Returns the message of err, e.g. "shapes do not match" ("unknown error" for an unknown code).
 * Not collective. */
const char *lf_strerror(lf_err_t err);

/* Records the first failure of this process.
 * Not collective.
 * Later calls before lf_error_clear() only add a traceback line. Safe on compute threads. */
void lf_error_record(const char *file, int line, const char *func, lf_err_t code, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));
/* Appends "#k func() at file:line" to the record.
 * Not collective. */
void lf_error_trace(const char *file, int line, const char *func);
/* Returns true when this process recorded a failure (not only received one through agreement).
 * Not collective. */
bool lf_error_is_local(void);
/* Returns the recorded message without location, or "".
 * Not collective. */
const char *lf_error_message(void);
/* Prints the recorded failure to stderr as "linfold: [rank r/n] error: message (LF_ERR_X)".
 * Not collective.
 * The "[rank r/n] " prefix is left out in a one-rank job. When traceback is set, the location
 * ("at file:line func()") and the traceback lines follow. Prints nothing without a record. */
void lf_error_print(bool traceback);
/* Forgets the recorded failure and its traceback.
 * Not collective. */
void lf_error_clear(void);
/* Sets the rank and size used in the printed prefix.
 * Not collective.
 * main() sets them once after MPI_Init. */
void lf_error_set_rank(int rank, int size);

#define LF_CHECK(cond, code, ...)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            err = (code);                                                                          \
            lf_error_record(__FILE__, __LINE__, __func__, err, __VA_ARGS__);                       \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

#define LF_FAIL(code, ...) LF_CHECK(0, code, __VA_ARGS__)

#define LF_CALL(expr)                                                                              \
    do {                                                                                           \
        lf_err_t lf__e = (expr);                                                                   \
        if (lf__e != LF_OK) {                                                                      \
            err = lf__e;                                                                           \
            lf_error_trace(__FILE__, __LINE__, __func__);                                          \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

/* Always compiled; for states that cannot happen. Prints and calls MPI_Abort. */
#define LF_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            lf__assert_fail(__FILE__, __LINE__, __func__, #cond);                                  \
    } while (0)
/* Prints the failed condition of LF_ASSERT with rank and location, then aborts the job.
 * Not collective.
 * Calls MPI_Abort(MPI_COMM_WORLD, 70), which any single rank may do. */
_Noreturn void lf__assert_fail(const char *file, int line, const char *func, const char *cond);

/* Casts a global count to int for MPI, HDF5 or ScaLAPACK.
 * Not collective.
 * Fails with LF_ERR_OVERFLOW when v does not fit. */
lf_err_t lf_int_cast(int64_t v, int *out);

#endif /* LINFOLD_ERROR_H */
