/* Streams the rows of a sample dataset that this rank owns, in batches, through a callback.
 *
 * Rank r owns a contiguous block of rows (lf_comm_shard). Every rank reads its batches with
 * collective HDF5 transfers and runs the same number of iterations (ranks that ran out of rows
 * read an empty selection), so the loop never deadlocks. Each batch holds exactly
 * lf_batch_rows(n, batch) rows: the rows of the shard, then zero rows. Passing the same row count
 * to every GEMM makes each row's result independent of the rank count (OpenBLAS picks its kernels
 * from the matrix shape). Rows are checked for NaN/Inf and the callback's error is agreed across
 * ranks after every batch, so a failure on one rank ends the loop on all. */
#ifndef LINFOLD_BATCH_H
#define LINFOLD_BATCH_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/h5io.h"

typedef struct {
    const float *x;         /* row-major (rows, cols); rows valid..rows-1 are zero */
    const int64_t *labels;  /* (rows), or NULL when no label dataset was given */
    int64_t rows;           /* rows in x: lf_batch_rows(n, batch) on every rank */
    int64_t valid;          /* rows that hold data */
    int64_t cols;
    int64_t row0;           /* global index of row 0 */
} lf_batch_t;

/* Runs on one batch. Not collective: it must not call collectives, since ranks may differ. */
typedef lf_err_t (*lf_batch_fn)(const lf_batch_t *b, void *ctx);

typedef struct {
    int64_t batch_rows;  /* rows per batch, >= 1 */
    bool progress;       /* rank 0 prints rows done, rate and ETA at most once a second */
    const char *what;    /* label for progress lines, e.g. "calibrate" */
} lf_batch_opts_t;

/* Rows per batch for a dataset of n rows: min(batch, n), at least 1. Not collective. */
int64_t lf_batch_rows(int64_t n, int64_t batch);

/* Streams x (and labels, which may be NULL and must have as many rows) through fn, on the ranks
 * that have rows in the batch. Then, once the batch's errors are agreed, every rank calls
 * collective_fn (may be NULL) with the same batch (valid may be 0 there): the place for
 * collective work such as writing the batch's results. Collective on comm. */
lf_err_t lf_batch_run(MPI_Comm comm, lf_dataset_t *x, lf_dataset_t *labels,
                      const lf_batch_opts_t *opts, lf_batch_fn fn, lf_batch_fn collective_fn,
                      void *ctx);

#endif /* LINFOLD_BATCH_H */
