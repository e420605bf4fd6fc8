/* Per-neuron activation statistics of a model over calibration data.
 *
 * For every neuron of every layer: the number of samples with z > 0 and with z < 0, and the
 * minimum and maximum of z, where z is the neuron's pre-activation. Counts are int64 and merge by
 * sum, extremes by min/max: merging is exact and order-independent, so statistics reduced over
 * any number of ranks are bitwise identical.
 *
 *     lf_stats_t *s = NULL;
 *     lf_stats_collect(comm, model, data, &batch_opts, &s);   // collective; global on every rank
 *     double rate = lf_stats_rate(s, layer, neuron);          // count(z > 0) / samples
 *     lf_stats_write(comm, "stats.h5", s);
 *     lf_stats_destroy(&s);
 */
#ifndef LINFOLD_STATS_H
#define LINFOLD_STATS_H

#include <mpi.h>
#include <stdint.h>

#include "linfold/batch.h"
#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/model.h"

typedef struct {
    int64_t n_out;
    int64_t *positive; /* (n_out): samples with z > 0 */
    int64_t *negative; /* (n_out): samples with z < 0 */
    float *zmin;       /* (n_out); +inf before any sample */
    float *zmax;       /* (n_out); -inf before any sample */
} lf_layer_stats_t;

typedef struct {
    int n_layers;
    int64_t samples;
    uint64_t fingerprint; /* lf_model_fingerprint() of the model they describe */
    lf_layer_stats_t *layers;
} lf_stats_t;

/* Empty statistics shaped like m. Caller destroys. Not collective. */
lf_err_t lf_stats_create(const lf_model_t *m, lf_stats_t **out);
void lf_stats_destroy(lf_stats_t **s);
/* Accumulates `rows` rows of layer i's pre-activations z, row-major (rows, n_out).
 * Not collective. */
void lf_stats_update(lf_stats_t *s, int layer, const float *z, int64_t rows);
/* dst += src (same shape). Not collective. */
lf_err_t lf_stats_merge(lf_stats_t *dst, const lf_stats_t *src);
/* Replaces the local statistics by their reduction over comm. Collective on comm. */
lf_err_t lf_stats_reduce(MPI_Comm comm, lf_stats_t *s);
/* Forwards the rows of data (sharded over comm) through m and returns global statistics on every
 * rank. Collective on comm. */
lf_err_t lf_stats_collect(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *data,
                          const lf_batch_opts_t *opts, lf_stats_t **out);
/* count(z > 0) / samples of neuron j of layer i (0 when there are no samples). Not collective. */
double lf_stats_rate(const lf_stats_t *s, int layer, int64_t j);

/* Statistics file (docs/format.md), written atomically by rank 0. Collective on comm. */
lf_err_t lf_stats_write(MPI_Comm comm, const char *path, const lf_stats_t *s);
/* Reads and validates a statistics file; it must describe model m (same fingerprint).
 * Collective on comm. */
lf_err_t lf_stats_read(MPI_Comm comm, const char *path, const lf_model_t *m, lf_stats_t **out);

#endif /* LINFOLD_STATS_H */
