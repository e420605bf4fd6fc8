/* Streams the rows of a sample dataset that this rank owns, in aligned blocks, through models.
 *
 * Rank r owns a contiguous block of rows (lf_comm_shard). The rows are cut into *compute blocks*
 * aligned to the global row index: block k holds global rows [k R, (k + 1) R) with
 * R = lf_batch_block_rows(n, batch). Every block is computed as a whole R-row matrix, with zero
 * rows where the rank owns no data, by single-threaded BLAS: each row's result then depends only
 * on the row and its position in its block, never on the rank count or thread count, so results
 * are bitwise identical however the job is split. (OpenBLAS's kernels do give different roundings
 * for the same row at a different position or thread count; docs/hpc.md has the measurements.)
 *
 * Each I/O batch is up to batch/R consecutive blocks, read with one collective HDF5 transfer;
 * ranks that ran out of rows read an empty selection, so every rank runs the same number of
 * iterations. Rows are checked for NaN/Inf, blocks run on the rank's threads, each thread with
 * its own forward workspace per model (lf_batch_forward), and errors, a signal included
 * (interrupt.h), are agreed across ranks after every batch, so a failure on one rank ends the
 * loop on all.
 *
 * A pass may also cover only some rows (lf_batch_run_part): the rest of a pass that stopped at a
 * checkpoint. Those rows are shared out by count, each rank taking a contiguous run of them in
 * row order (several row ranges when the run crosses gaps); every row is still computed in its
 * own aligned block, so the results of a pass resumed at any rank count are those of one pass.
 *
 *     static lf_err_t block(const lf_batch_t *b, int tid, void *ctx) {
 *         const float *y = NULL;
 *         return lf_batch_forward(b, 0, NULL, NULL, &y);   // y: (b->rows, n_out)
 *     }
 *     const lf_model_t *models[] = {m};
 *     lf_batch_run(comm, x, NULL, models, 1, &opts, block, NULL, ctx);
 */
#ifndef LINFOLD_BATCH_H
#define LINFOLD_BATCH_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/forward.h"
#include "linfold/h5io.h"
#include "linfold/model.h"

typedef struct lf_batch_pass lf_batch_pass_t;

typedef struct {
    const float *x;        /* row-major (rows, cols); rows outside [first, first + valid) are 0 */
    const int64_t *labels; /* (rows), or NULL when no label dataset was given */
    int64_t rows;          /* rows in x */
    int64_t first;         /* first row of x that holds data */
    int64_t valid;         /* rows that hold data (may be 0) */
    int64_t cols;
    int64_t row0;          /* global index of row 0 of x */
    int64_t offset;        /* a block's first row within its I/O batch (0 for a batch) */
    int tid;               /* the thread running this block */
    lf_batch_pass_t *pass; /* the pass's workspaces (for lf_batch_forward) */
} lf_batch_t;

/* Runs on one compute block (rows = R) on thread tid.
 * Not collective.
 * Must not call MPI. */
typedef lf_err_t (*lf_block_fn)(const lf_batch_t *block, int tid, void *ctx);
/* Runs on every rank after each I/O batch (valid may be 0).
 * Collective on comm.
 * comm is the one given to lf_batch_run(): the place for collective work such as writing the
 * batch's results. lf_batch_run() returns its error without agreeing it, so it must return the
 * same error on every rank. */
typedef lf_err_t (*lf_batch_fn)(const lf_batch_t *batch, void *ctx);

typedef struct {
    int64_t batch_rows; /* rows per I/O batch, >= 1 */
    int threads;        /* compute threads of this rank (<= 1: the calling thread) */
    bool progress;      /* rank 0 prints rows done, rate and ETA at most once a second */
    const char *what;   /* label for progress, timing and interruption lines; NULL: quiet */
} lf_batch_opts_t;

/* Rows per compute block for n rows: min(256, batch, n), at least 1.
 * Not collective. */
int64_t lf_batch_block_rows(int64_t n, int64_t batch);
/* Rows per I/O batch for n rows: the largest multiple of the block rows not above batch (at
 * least one block).
 * Not collective. */
int64_t lf_batch_io_rows(int64_t n, int64_t batch);

/* Global rows [lo, hi). */
typedef struct {
    int64_t lo, hi;
} lf_row_range_t;

/* Where a pass stands after an I/O batch, for a step function. */
typedef struct {
    int64_t batch;              /* I/O batches done: the same on every rank */
    int64_t batches;            /* I/O batches of the whole pass */
    int signal;                 /* the largest signal any rank received (agreed), or 0 */
    const lf_row_range_t *done; /* the rows this rank has finished in this pass, ascending */
    int64_t n_done;             /* entries of done */
} lf_batch_state_t;

/* Runs on every rank after each I/O batch, after batch_fn, once errors are agreed.
 * Collective on comm.
 * It sees a signal before the pass acts on it and may, for instance, write a checkpoint and
 * return LF_ERR_CHECKPOINT; when it returns LF_OK with st->signal set, the pass fails with
 * LF_ERR_INTERRUPTED as usual. Its result is agreed across ranks. */
typedef lf_err_t (*lf_batch_step_fn)(MPI_Comm comm, const lf_batch_state_t *st, void *ctx);

/* The rows a pass covers, and what runs between its batches. */
typedef struct {
    const lf_row_range_t *rows; /* ascending, disjoint, non-empty, within [0, n); NULL: all */
    int64_t n_rows;             /* entries of rows (0 with rows set: no rows at all) */
    bool own;                   /* rows are this rank's own, not shared out among the ranks */
    lf_batch_step_fn step;      /* may be NULL */
    void *step_ctx;
} lf_batch_part_t;

/* Checks what lf_batch_run() needs before any work: batch size >= 1, labels with as many rows as
 * x, and x's columns equal to every model's inputs. Callers that create outputs check first.
 * Not collective (the answer is the same on every rank).
 * LF_ERR_ARG or LF_ERR_SHAPE. */
lf_err_t lf_batch_check(lf_dataset_t *x, lf_dataset_t *labels, const lf_model_t *const *models,
                        int n_models, const lf_batch_opts_t *opts);

/* Streams the rows of x this rank owns (and of labels) through block_fn, then batch_fn.
 * Collective on comm.
 * labels may be NULL and must otherwise have as many rows as x; batch_fn may be NULL. models
 * (n_models of them, may be 0) are the models lf_batch_forward() runs; each must take x's
 * columns as inputs. LF_ERR_ARG when opts->batch_rows < 1, LF_ERR_SHAPE on a row or column
 * mismatch, LF_ERR_VALUE on a NaN/Inf row or an overflowing forward pass, LF_ERR_INTERRUPTED on
 * a signal; errors are agreed across ranks after every batch. */
lf_err_t lf_batch_run(MPI_Comm comm, lf_dataset_t *x, lf_dataset_t *labels,
                      const lf_model_t *const *models, int n_models, const lf_batch_opts_t *opts,
                      lf_block_fn block_fn, lf_batch_fn batch_fn, void *ctx);

/* lf_batch_run() over part of the rows, with a step function between batches.
 * Collective on comm.
 * part NULL is lf_batch_run(). The rows of part->rows are shared out by count over the ranks
 * (lf_comm_shard of their number), or with part->own are this rank's rows as given (each rank
 * its own list; a caller that needs a shard aligned to something of its own, such as the refit's
 * fixed row groups). Each row is computed at its position in its aligned block as in a pass
 * over all rows. With part->step set, a signal is agreed after each batch and handed to
 * the step instead of failing the batch where it arrived. LF_ERR_ARG for ranges that are not
 * ascending, disjoint and within the rows of x; other errors as lf_batch_run(). */
lf_err_t lf_batch_run_part(MPI_Comm comm, lf_dataset_t *x, lf_dataset_t *labels,
                           const lf_model_t *const *models, int n_models,
                           const lf_batch_opts_t *opts, const lf_batch_part_t *part,
                           lf_block_fn block_fn, lf_batch_fn batch_fn, void *ctx);

/* Runs model k of the pass on block b with the thread's workspace; *y (b->rows, n_out) points
 * into the workspace until the thread's next forward of model k.
 * Not collective.
 * hook may be NULL (see forward.h). Errors name the dataset and the global row. */
lf_err_t lf_batch_forward(const lf_batch_t *b, int k, lf_forward_hook_t hook, void *hook_ctx,
                          const float **y);

/* lf_batch_forward() of the first n_run layers of model k only (lf_forward_run_layers()).
 * Not collective. */
lf_err_t lf_batch_forward_layers(const lf_batch_t *b, int k, int n_run, lf_forward_hook_t hook,
                                 void *hook_ctx, const float **y);
/* The workspace lf_batch_forward() ran model k in on this block's thread: its activations of
 * every layer (lf_forward_activations()) stay there until the thread's next forward of model k.
 * Not collective. */
const lf_forward_t *lf_batch_workspace(const lf_batch_t *b, int k);

#endif /* LINFOLD_BATCH_H */
