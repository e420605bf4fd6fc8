/* Per-neuron activation statistics of a model over calibration data.
 *
 * For every neuron of every layer: the number of samples with z > 0 and with z < 0, the minimum
 * and maximum of z (the neuron's pre-activation), and the sum of its outputs act(z) for
 * piecewise-linear activations (the mean output compensates pruned neurons) with the sum of
 * their squares (the output energy E[a^2] that importance pruning by energy ranks by). Counts
 * are int64 and merge by sum, extremes by min/max, and output sums are accumulated *exactly*
 * (lf_xsum_t: float32 values as integers in exponent bins), so merging is exact and
 * order-independent and statistics reduced over any number of ranks or threads are bitwise
 * identical. A squared output a * a is first rounded to float32 (once, the same way on every
 * rank), then added exactly: the sum of squares is that of those rounded squares, to within one
 * final rounding to double, whatever the rank or thread count.
 *
 *     lf_stats_t *s = NULL;
 *     lf_stats_collect(comm, model, data, &batch_opts, false, &s);   // collective; global on all
 *     double rate = lf_stats_rate(s, layer, neuron);          // count(z > 0) / samples
 *     lf_stats_write(comm, "stats.h5", s);
 *     lf_stats_read(comm, "stats.h5", model, "model.h5", &s2);   // collective; validated
 *     lf_stats_destroy(&s);
 */
#ifndef LINFOLD_STATS_H
#define LINFOLD_STATS_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/batch.h"
#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/model.h"

/* Exact sum of float32 values: a value m * 2^(e - 150) (m the 24-bit significand, e the biased
 * exponent) adds m << (e mod 32) to 128-bit bin e / 32. 2^72 additions cannot overflow. */
__extension__ typedef __int128 lf_i128;
typedef struct {
    lf_i128 bin[8];
} lf_xsum_t;

typedef struct {
    int64_t n_out;
    int64_t *positive;   /* (n_out): samples with z > 0 */
    int64_t *negative;   /* (n_out): samples with z < 0 */
    float *zmin;         /* (n_out); +inf before any sample */
    float *zmax;         /* (n_out); -inf before any sample */
    lf_xsum_t *exact;    /* (n_out): exact sums of act(z) while accumulating */
    double *out_sum;     /* (n_out): those sums rounded to double, set by lf_stats_reduce/read */
    lf_xsum_t *exact_sq; /* (n_out): exact sums of fl32(act(z)^2) while accumulating */
    double *sq_sum;      /* (n_out): those sums rounded to double, like out_sum */
} lf_layer_stats_t;

typedef struct {
    int n_layers;
    int64_t samples;
    uint64_t fingerprint; /* lf_model_fingerprint() of the model they describe */
    bool with_sums;       /* output sums and sums of squares are accumulated (they slow a
                             pass about 1.5x, docs/algorithm.md) */
    bool with_squares;    /* sums of squared outputs too: always accumulated with the output
                             sums; absent only from statistics files of older linfolds */
    lf_layer_stats_t *layers;
} lf_stats_t;

/* Creates empty statistics shaped like m, without output sums.
 * Not collective.
 * Caller destroys. */
lf_err_t lf_stats_create(const lf_model_t *m, lf_stats_t **out);
/* Frees *s and sets it to NULL; accepts NULL.
 * Not collective. */
void lf_stats_destroy(lf_stats_t **s);
/* Accumulates `rows` rows of layer i's pre-activations z, row-major (rows, n_out).
 * Not collective.
 * act (and alpha) is the layer's activation; output sums and sums of squares are added when
 * s->with_sums is set and act is piecewise linear. */
void lf_stats_update(lf_stats_t *s, int layer, lf_act_t act, float alpha, const float *z,
                     int64_t rows);
/* Adds src to dst (same shape): dst += src.
 * Not collective.
 * LF_ERR_SHAPE for statistics of different models or kinds. */
lf_err_t lf_stats_merge(lf_stats_t *dst, const lf_stats_t *src);
/* Replaces the local statistics by their reduction over comm.
 * Collective on comm.
 * Also rounds the exact output sums into out_sum. */
lf_err_t lf_stats_reduce(MPI_Comm comm, lf_stats_t *s);
/* Forwards the rows of data (sharded over comm) through m and returns global statistics.
 * Collective on comm.
 * *out is identical on every rank; with_sums adds the exact output sums. LF_ERR_SHAPE when data
 * does not fit m, LF_ERR_USAGE when it has no rows. */
lf_err_t lf_stats_collect(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *data,
                          const lf_batch_opts_t *opts, bool with_sums, lf_stats_t **out);
/* Checkpoint options (checkpoint.h). */
typedef struct lf_checkpoint_opts lf_checkpoint_opts_t;

/* lf_stats_collect() that checkpoints its progress and resumes from a checkpoint (checkpoint.h).
 * Collective on comm.
 * ck NULL or ck->path NULL is lf_stats_collect(). Otherwise, when ck->path exists and
 * ck->resume is set, the pass continues from it, at any rank count, after checking that it
 * belongs to this pass (LF_ERR_ARG naming what differs; LF_ERR_FORMAT for a damaged file); when
 * it exists and ck->resume is not set, LF_ERR_USAGE (an earlier run's work is never overwritten
 * silently). Before the pass, rank 0 makes sure a file can be created beside ck->path
 * (LF_ERR_IO) and that it is not the data file (LF_ERR_USAGE). A checkpoint is written every ck->every_batches I/O batches or ck->every_seconds
 * seconds, whichever comes first (0 turns either off), and when the pass completes; the file is
 * left for the caller to remove (lf_checkpoint_remove) once its outputs are safe. SIGTERM or
 * SIGUSR1 on any rank: every rank finishes its batch, one checkpoint is written and every rank
 * returns LF_ERR_CHECKPOINT ("checkpoint written to PATH after 1,234 of 6,000 rows (SIGUSR1);
 * rerun the same command to resume"); SIGINT or SIGHUP: LF_ERR_INTERRUPTED, no checkpoint (the
 * last one stays). The statistics are bitwise those of lf_stats_collect() at any rank counts. */
lf_err_t lf_stats_collect_checkpointed(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *data,
                                       const lf_batch_opts_t *opts, bool with_sums,
                                       const lf_checkpoint_opts_t *ck, lf_stats_t **out);
/* Gives every rank root's figures (samples, with_sums, with_squares, counts, extremes, sums).
 * Collective on comm.
 * s must have the same shape on every rank (lf_stats_create of the same model). */
lf_err_t lf_stats_bcast(MPI_Comm comm, int root, lf_stats_t *s);
/* Returns count(z > 0) / samples of neuron j of layer i (0 when there are no samples).
 * Not collective. */
double lf_stats_rate(const lf_stats_t *s, int layer, int64_t j);
/* Returns the mean of act(z) over the samples of neuron j of layer i.
 * Not collective.
 * Piecewise-linear layers only, 0 otherwise; it reads out_sum, so it is also 0 without output
 * sums (with_sums unset, or before lf_stats_reduce or lf_stats_read set them). */
double lf_stats_mean_output(const lf_stats_t *s, int layer, int64_t j);
/* Returns the mean of fl32(act(z))^2 over the samples of neuron j of layer i: E[a^2].
 * Not collective.
 * Like lf_stats_mean_output: 0 for other activations and without sums of squares. */
double lf_stats_mean_square(const lf_stats_t *s, int layer, int64_t j);

/* Adds v to x exactly.
 * Not collective. */
void lf_xsum_add(lf_xsum_t *x, float v);
/* Returns the total of x, rounded to double once.
 * Not collective.
 * The rounding is done in a fixed order, so it is the same on every rank. */
double lf_xsum_value(const lf_xsum_t *x);

/* Writes the statistics file (docs/format.md) to path, atomically.
 * Collective on comm.
 * Rank 0 writes a temporary file, then renames it. */
lf_err_t lf_stats_write(MPI_Comm comm, const char *path, const lf_stats_t *s);
/* Reads and validates a statistics file through the MPI-IO driver.
 * Collective on comm.
 * It must describe model m (same fingerprint), else LF_ERR_ARG; model_name (a path, or NULL)
 * names m in that message. */
lf_err_t lf_stats_read(MPI_Comm comm, const char *path, const lf_model_t *m, const char *model_name,
                       lf_stats_t **out);

#endif /* LINFOLD_STATS_H */
