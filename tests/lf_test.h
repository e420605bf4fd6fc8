/* Test harness shared by the Check suites: MPI set-up, rank-agreed assertions, seeded fixtures.
 *
 * MPI suites run Check in CK_NOFORK mode (fork() after MPI_Init is unsafe), so CTest's TIMEOUT is
 * the only timeout. Assertions use rank-agreed values (lf_test_all) so that every rank fails
 * together instead of leaving the others waiting in a collective. */
#ifndef LF_TEST_H
#define LF_TEST_H

#include <check.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/model.h"
#include "linfold/stats.h"

extern MPI_Comm LF_TEST_COMM;

/* 128-bit integers for independent exact checks. */
__extension__ typedef unsigned __int128 lf_test_u128;

/* Runs the suite under MPI; returns the process exit status (agreed over ranks). */
int lf_test_run_mpi(int argc, char **argv, Suite *(*make)(void));
/* Runs the suite without MPI (forking Check, for suites that start processes). */
int lf_test_run_serial(Suite *(*make)(void));

/* True on all ranks iff ok on all ranks. Collective on LF_TEST_COMM. */
bool lf_test_all(bool ok);
/* True on all ranks iff the error recorded on some rank contains fragment: an error agreed
 * across ranks is recorded (with its message) only where it happened. Collective. */
bool lf_test_any_message(const char *fragment);

/* Deterministic PRNG (SplitMix64) for fixtures; never rand(). */
typedef struct {
    uint64_t state;
} lf_rng_t;
uint64_t lf_rng_next(lf_rng_t *r);
/* Uniform in [lo, hi). */
float lf_rng_uniform(lf_rng_t *r, float lo, float hi);

/* A dense relu MLP n_in -> widths[0] -> ... -> widths[n-1] (identity output) with weights uniform
 * in [lo, hi) and biases in [blo, bhi). Caller destroys. */
lf_model_t *lf_test_mlp(int64_t n_in, const int64_t *widths, int n, float lo, float hi, float blo,
                        float bhi, uint64_t seed);

/* A fresh temporary directory (created by rank 0 and broadcast); remove it with
 * lf_test_tmpdir_remove(). Collective on LF_TEST_COMM when MPI is initialised. */
void lf_test_tmpdir(char *buf, size_t cap);
/* Removes a directory made by lf_test_tmpdir() and everything in it (rank 0, after a barrier).
 * Collective on LF_TEST_COMM. */
void lf_test_tmpdir_remove(const char *dir);
/* Writes a 2-D float32 dataset (n, d) and optional int64 labels to path (serial, rank 0 only). */
void lf_test_write_data(const char *path, const char *xname, const float *x, int64_t n, int64_t d,
                        const char *yname, const int64_t *y);
/* Fills x (n * d) with seeded values uniform in [lo, hi). */
void lf_test_fill(float *x, int64_t n, float lo, float hi, uint64_t seed);
/* Writes n rows of d columns from lf_test_fill(lo, hi, seed) to dir/name.h5:/x (rank 0; all
 * ranks wait) and puts the dataset spec in spec. Collective on LF_TEST_COMM. */
void lf_test_write_samples(const char *dir, const char *name, int64_t n, int64_t d, float lo,
                           float hi, uint64_t seed, char *spec, size_t cap);
/* Calibrates m on spec through the real sharded path. Collective on LF_TEST_COMM. */
lf_stats_t *lf_test_collect(const lf_model_t *m, const char *spec, int64_t batch, bool sums);
/* Largest |a - b| over all outputs on n rows from lf_test_fill(0, hi, seed), relative to the
 * largest |a|. Not collective. */
double lf_test_output_rel_diff(const lf_model_t *a, const lf_model_t *b, int64_t n, uint64_t seed,
                               float hi);
/* Makes the first n_linear neurons of hidden layer i provably linear on non-negative inputs
 * (weights and bias >= 0) and the next n_dead provably dead (weights <= 0, bias < 0). */
void lf_test_shape_layer(lf_model_t *m, int i, int64_t n_linear, int64_t n_dead, uint64_t seed);
/* Statistics of m over `samples` rows in which neuron j of layer i has positive[i][j] rows with
 * z > 0 (positive[i] NULL: none) and the rest z < 0; extremes consistent with the counts. */
lf_stats_t *lf_test_stats_with(const lf_model_t *m, int64_t samples,
                               const int64_t *const *positive);
/* One-sample statistics in which the first a[i] neurons of layer i are active, the rest not. */
lf_stats_t *lf_test_stats_linear_prefix(const lf_model_t *m, const int64_t *a);
/* Whether two files have the same bytes. */
bool lf_test_files_equal(const char *a, const char *b);

#endif /* LF_TEST_H */
