/* Checkpoints of a calibration pass: stopping a long pass without losing its work.
 *
 * A checkpoint file (docs/format.md) holds the partial statistics of a pass and the exact set of
 * rows they cover, as row ranges, with what the pass belongs to: the model (its fingerprint), the
 * data set (the canonical path of its file, the dataset, its shape, the file's size and
 * modification time), the compute block rows R (they decide the rounding: batch.h), the BLAS
 * kernel (it does too), whether output sums are collected, and the caller's identity text (for
 * instance a hash of the pipeline). Resuming shares the rows not yet done out over the ranks, at
 * any rank count, and computes each in its aligned block, so the final statistics are bitwise
 * those of an uninterrupted pass.
 *
 * lf_stats_collect_checkpointed (stats.h) writes one every every_batches I/O batches or
 * every_seconds seconds, whichever comes first, and once more when the pass completes (so that a
 * rerun after a later stage was stopped skips the data pass). SIGTERM and SIGUSR1 make every rank
 * finish its batch, write one checkpoint and fail with LF_ERR_CHECKPOINT; SIGINT and SIGHUP stop
 * the pass with LF_ERR_INTERRUPTED as before, leaving the last checkpoint as it was. Files are
 * replaced atomically (atomic.h): a job killed while writing leaves the previous checkpoint.
 *
 *     lf_checkpoint_opts_t ck = {.path = "run.ckpt.h5", .every_batches = 100, .resume = true,
 *                                .identity = pipeline_sha256_hex};
 *     err = lf_stats_collect_checkpointed(comm, m, data, &bo, false, &ck, &stats);
 *     ... write every output of the run ...
 *     lf_checkpoint_remove(comm, ck.path);                        // once the outputs are safe
 */
#ifndef LINFOLD_CHECKPOINT_H
#define LINFOLD_CHECKPOINT_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/atomic.h"
#include "linfold/batch.h"
#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/model.h"
#include "linfold/stats.h"

/* Longest identity text, in bytes. */
#define LF_CHECKPOINT_IDENTITY_MAX 1024

/* lf_checkpoint_opts_t (the typedef is in stats.h). */
struct lf_checkpoint_opts {
    const char *path;      /* checkpoint file; NULL: no checkpoints (lf_stats_collect) */
    int64_t every_batches; /* write after this many I/O batches (0: never by count) */
    double every_seconds;  /* write when this many seconds passed since the last (0: never) */
    const char *identity;  /* text the checkpoint must match (a pipeline hash); NULL is "" */
    bool resume;           /* continue from path when it exists; false: refuse an existing one */
};

/* What a checkpoint belongs to. A resumed pass must match every field but batch_rows. */
typedef struct {
    uint64_t fingerprint;          /* lf_model_fingerprint() of the model */
    char data_file[LF_PATH_MAX];   /* canonical absolute path of the data file */
    char data_object[LF_PATH_MAX]; /* the dataset in it, "/train/x" */
    int64_t rows, cols;            /* the dataset's shape */
    int64_t file_size;             /* bytes of the data file */
    int64_t file_mtime_ns;         /* its modification time, ns since the epoch */
    int64_t block_rows;            /* R = lf_batch_block_rows(rows, batch_rows) */
    int64_t batch_rows;            /* --batch of the pass that wrote it (not compared) */
    bool with_sums;                /* exact output sums are collected */
    char blas_kernel[64];          /* lf_blas_kernel() */
    char identity[LF_CHECKPOINT_IDENTITY_MAX]; /* the caller's text */
} lf_checkpoint_key_t;

/* A checkpoint read back. */
typedef struct {
    lf_checkpoint_key_t key;
    lf_row_range_t *done; /* (n_done): rows done, ascending, disjoint and not adjacent */
    int64_t n_done;
    int64_t rows_done; /* rows in done; equals stats->samples */
    int64_t ranks;     /* ranks of the job that wrote it (for messages) */
    lf_stats_t *stats; /* statistics of exactly the done rows; exact sums in `exact` */
} lf_checkpoint_t;

/* Describes a pass of m over data with opts and with_sums, and the caller's identity text.
 * Collective on comm.
 * Rank 0 looks the data file up (realpath, stat) and broadcasts; *key is identical on every
 * rank. LF_ERR_ARG for an identity longer than LF_CHECKPOINT_IDENTITY_MAX - 1 bytes, LF_ERR_IO
 * when the data file cannot be looked up. */
lf_err_t lf_checkpoint_key_make(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *data,
                                const lf_batch_opts_t *opts, bool with_sums, const char *identity,
                                lf_checkpoint_key_t *key);

/* Tells whether path exists.
 * Collective on comm.
 * Rank 0 looks and broadcasts. LF_ERR_IO when it exists but is not a regular file, or cannot be
 * looked up. */
lf_err_t lf_checkpoint_exists(MPI_Comm comm, const char *path, bool *exists);

/* Reads and validates the checkpoint at path in a reader process of rank 0, and gives it to
 * every rank.
 * Collective on comm.
 * It must belong to key (every field but batch_rows), else LF_ERR_ARG with a message that names
 * each difference; a file that is not a whole, consistent checkpoint of m (truncated, corrupt,
 * counts that its rows cannot give) is LF_ERR_FORMAT or LF_ERR_VALUE naming the file and the
 * object. Caller destroys *out. */
lf_err_t lf_checkpoint_read(MPI_Comm comm, const char *path, const lf_model_t *m,
                            const lf_checkpoint_key_t *key, lf_checkpoint_t **out);

/* Frees *ck and sets it to NULL; accepts NULL.
 * Not collective. */
void lf_checkpoint_destroy(lf_checkpoint_t **ck);

/* Writes a checkpoint atomically: the rows done are base (n_base ranges, the same on every rank:
 * those of the checkpoint the pass resumed from) and every rank's mine; s must be the statistics
 * of exactly those rows, reduced over comm (exact sums included), and rank 0's are written.
 * Collective on comm.
 * *rows_done (may be NULL) receives the number of rows done, on every rank. LF_ERR_INTERNAL when
 * s->samples is not that number. */
lf_err_t lf_checkpoint_write(MPI_Comm comm, const char *path, const lf_checkpoint_key_t *key,
                             const lf_row_range_t *base, int64_t n_base, const lf_row_range_t *mine,
                             int64_t n_mine, const lf_stats_t *s, int64_t *rows_done);

/* Removes the checkpoint at path (rank 0); a missing file is fine.
 * Collective on comm.
 * LF_ERR_IO when it exists and cannot be removed. */
lf_err_t lf_checkpoint_remove(MPI_Comm comm, const char *path);

/* Writes n with thousands separators ("1,234,567") into buf.
 * Not collective. */
const char *lf_checkpoint_count(int64_t n, char *buf, size_t cap);

#endif /* LINFOLD_CHECKPOINT_H */
