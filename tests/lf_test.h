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

extern MPI_Comm LF_TEST_COMM;

/* Runs the suite under MPI; returns the process exit status (agreed over ranks). */
int lf_test_run_mpi(int argc, char **argv, Suite *(*make)(void));
/* Runs the suite without MPI (forking Check, for suites that start processes). */
int lf_test_run_serial(Suite *(*make)(void));

/* True on all ranks iff ok on all ranks. Collective on LF_TEST_COMM. */
bool lf_test_all(bool ok);

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

/* A fresh temporary directory path (created by rank 0 and broadcast); caller removes it. */
void lf_test_tmpdir(char *buf, size_t cap);
/* Writes a 2-D float32 dataset (n, d) and optional int64 labels to path (serial, rank 0 only). */
void lf_test_write_data(const char *path, const char *xname, const float *x, int64_t n, int64_t d,
                        const char *yname, const int64_t *y);

#endif /* LF_TEST_H */
