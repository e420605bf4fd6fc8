/* Streams the rows of a sample dataset that this rank owns, in aligned blocks, through callbacks.
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
 * iterations. Rows are checked for NaN/Inf, blocks run on the rank's threads, and the errors are
 * agreed across ranks after every batch, so a failure on one rank ends the loop on all. */
#ifndef LINFOLD_BATCH_H
#define LINFOLD_BATCH_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/h5io.h"

typedef struct {
    const float *x;        /* row-major (rows, cols); rows outside [first, first + valid) are 0 */
    const int64_t *labels; /* (rows), or NULL when no label dataset was given */
    int64_t rows;          /* rows in x */
    int64_t first;         /* first row of x that holds data */
    int64_t valid;         /* rows that hold data (may be 0) */
    int64_t cols;
    int64_t row0;          /* global index of row 0 of x */
    int64_t offset;        /* a block's first row within its I/O batch (0 for a batch) */
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
    const char *what;   /* label for progress and timing lines, e.g. "calibrate"; NULL: none */
} lf_batch_opts_t;

/* Rows per compute block for n rows: min(256, batch, n), at least 1.
 * Not collective. */
int64_t lf_batch_block_rows(int64_t n, int64_t batch);

/* Streams the rows of x this rank owns (and of labels) through block_fn, then batch_fn.
 * Collective on comm.
 * labels may be NULL and must otherwise have as many rows as x; batch_fn may be NULL.
 * LF_ERR_ARG when opts->batch_rows < 1, LF_ERR_SHAPE on a row-count mismatch, LF_ERR_VALUE on a
 * NaN/Inf row; errors of block_fn are agreed across ranks after every batch. */
lf_err_t lf_batch_run(MPI_Comm comm, lf_dataset_t *x, lf_dataset_t *labels,
                      const lf_batch_opts_t *opts, lf_block_fn block_fn, lf_batch_fn batch_fn,
                      void *ctx);

#endif /* LINFOLD_BATCH_H */
