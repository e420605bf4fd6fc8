/* One background thread that runs one job at a time beside the calling thread.
 *
 * The streaming loop (batch.h) uses it to read the next I/O batch while the current one is
 * computed. A job must not call MPI or HDF5 (neither is initialised for threads here) and must
 * not record an error (error.h): it leaves its outcome in its context, and the calling thread
 * turns that into an error after lf_background_wait(), so errors stay in program order.
 *
 *     lf_background_t *bg = NULL;
 *     lf_background_create(&bg);
 *     lf_background_start(bg, read_next, &job);   // runs read_next(&job) on the thread
 *     ...compute...
 *     lf_background_wait(bg);                     // job is done; its fields may be read
 *     lf_background_destroy(&bg);
 */
#ifndef LINFOLD_BACKGROUND_H
#define LINFOLD_BACKGROUND_H

#include "linfold/error.h"

typedef struct lf_background lf_background_t;
typedef void (*lf_background_fn)(void *ctx);

/* Starts the thread, with every signal blocked on it (signals stay the main thread's).
 * Not collective.
 * LF_ERR_NOMEM when no thread can be started. */
lf_err_t lf_background_create(lf_background_t **out);
/* Hands fn(ctx) to the thread and returns at once.
 * Not collective.
 * The previous job must have been waited for. */
void lf_background_start(lf_background_t *bg, lf_background_fn fn, void *ctx);
/* Waits for the job in flight, if any.
 * Not collective. */
void lf_background_wait(lf_background_t *bg);
/* Waits for the job in flight, stops the thread and sets *bg to NULL.
 * Not collective.
 * Accepts NULL. */
void lf_background_destroy(lf_background_t **bg);

#endif /* LINFOLD_BACKGROUND_H */
