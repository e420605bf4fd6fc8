/* Activation statistics: exact counts through the sharded path, exact sums, and the statistics
 * file, written and read back bitwise and refused when its figures could not come from a
 * calibration pass. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/plan.h"
#include "linfold/stats.h"

enum { N_ROWS = 157 }; /* not divisible by 2, 3 or 4: uneven shards */

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void) { lf_test_tmpdir_remove(tmpdir); }

/* Statistics are exact: counts from the sharded path equal a serial count on every rank. */
START_TEST(test_stats_counts_match_serial)
{
    const int64_t widths[] = {9, 4};
    lf_model_t *m = lf_test_mlp(5, widths, 2, -0.5f, 0.5f, -0.2f, 0.2f, 71);
    char spec[600];
    lf_test_write_samples(tmpdir, "x", N_ROWS, 5, 0.0f, 1.0f, 16, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 13, true);
    /* Serial reference: read every row on every rank and count. */
    float *x = malloc((size_t)N_ROWS * 5 * sizeof *x);
    lf_rng_t rng = {16};
    for (int64_t k = 0; k < (int64_t)N_ROWS * 5; k++)
        x[k] = lf_rng_uniform(&rng, 0.0f, 1.0f);
    bool ok = true;
    for (int64_t j = 0; j < 9; j++) {
        int64_t pos = 0, neg = 0;
        for (int64_t r = 0; r < N_ROWS; r++) {
            double z = m->layers[0].bias[j];
            for (int64_t k = 0; k < 5; k++)
                z += (double)m->layers[0].blocks[0].w[j * 5 + k] * x[r * 5 + k];
            pos += z > 1e-6;
            neg += z < -1e-6;
        }
        /* z within 1e-6 of 0 could round either way in float32; the data keeps them apart. */
        ok = ok && s->layers[0].positive[j] >= pos && s->layers[0].negative[j] >= neg &&
             s->layers[0].positive[j] + s->layers[0].negative[j] <= N_ROWS;
    }
    ck_assert(lf_test_all(ok));
    ck_assert_int_eq(s->samples, N_ROWS);
    free(x);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Exact sums: no rounding, any order. */
START_TEST(test_exact_sums)
{
    lf_xsum_t x = {{0}}, y = {{0}};
    const float v[] = {1e30f, 1.0f, -1e30f, 3e-39f /* subnormal */, -3e-39f, 0.5f, 0.0f, -0.0f};
    for (size_t k = 0; k < sizeof v / sizeof *v; k++)
        lf_xsum_add(&x, v[k]);
    for (size_t k = sizeof v / sizeof *v; k-- > 0;)
        lf_xsum_add(&y, v[k]);
    ck_assert(lf_xsum_value(&x) == 1.5); /* a double sum in this order gives 0.5 */
    ck_assert(memcmp(&x, &y, sizeof x) == 0);
    /* 2^24 + 1 is not a float, but the sum of floats that makes it is exact. */
    lf_xsum_t z = {{0}};
    lf_xsum_add(&z, 16777216.0f);
    lf_xsum_add(&z, 1.0f);
    ck_assert(lf_xsum_value(&z) == 16777217.0);
}
END_TEST

/* Sums of squared outputs: exact, and bitwise those of a serial loop that rounds every square to
 * float32 and adds it exactly, at any rank count (this test runs at 1 to 4 ranks) and any
 * sharding (a batch of 13 rows splits the shards). Layer 0 is the identity on the input
 * (W = I, b = 0: z = x exactly, whatever order a matrix product adds its zeros in), leaky_relu
 * with alpha 0.25, so the reference knows every output without a forward pass. */
START_TEST(test_square_sums_match_serial)
{
    enum { D = 5 };
    const int64_t widths[] = {D, 3};
    lf_model_t *m = lf_test_mlp(D, widths, 2, -0.5f, 0.5f, -0.2f, 0.2f, 81);
    float *w0 = m->layers[0].blocks[0].w;
    for (int r = 0; r < D; r++) {
        m->layers[0].bias[r] = 0.0f;
        for (int k = 0; k < D; k++)
            w0[r * D + k] = r == k ? 1.0f : 0.0f;
    }
    m->layers[0].act = LF_ACT_LEAKY_RELU;
    m->layers[0].alpha = 0.25f;
    char spec[600];
    lf_test_write_samples(tmpdir, "x", N_ROWS, D, -3.0f, 3.0f, 82, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 13, true);
    ck_assert(s->with_sums && s->with_squares);
    lf_xsum_t want[D] = {{{0}}};
    double plain[D] = {0}; /* a^2 in double, not rounded to float32: independent of the scheme */
    lf_rng_t rng = {82};
    for (int64_t r = 0; r < N_ROWS; r++)
        for (int k = 0; k < D; k++) {
            float v = lf_rng_uniform(&rng, -3.0f, 3.0f), a = v > 0.0f ? v : 0.25f * v;
            float sq = a * a;
            lf_xsum_add(&want[k], sq);
            plain[k] += (double)a * (double)a;
        }
    bool ok = true;
    for (int k = 0; k < D; k++) {
        ok = ok && memcmp(&s->layers[0].exact_sq[k], &want[k], sizeof want[k]) == 0 &&
             s->layers[0].sq_sum[k] == lf_xsum_value(&want[k]) &&
             fabs(s->layers[0].sq_sum[k] - plain[k]) <= 1e-6 * plain[k] &&
             lf_stats_mean_square(s, 0, k) == lf_xsum_value(&want[k]) / N_ROWS;
    }
    ck_assert(lf_test_all(ok));
    /* Not a multiple of another figure: a test that read out_sum would fail. */
    ck_assert(s->layers[0].sq_sum[0] != s->layers[0].out_sum[0]);
    /* Without sums nothing is accumulated, and the mean square reads 0. */
    lf_stats_t *t = lf_test_collect(m, spec, 13, false);
    ck_assert(!t->with_squares);
    ck_assert(lf_stats_mean_square(t, 0, 0) == 0.0);
    lf_stats_destroy(&t);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Statistics of a real pass survive the file bitwise, sums included; and they belong to their
 * model: another model's fingerprint is refused. */
START_TEST(test_file_round_trip)
{
    const int64_t widths[] = {6, 5, 2};
    lf_model_t *m = lf_test_mlp(4, widths, 3, -1.0f, 1.0f, -0.2f, 0.2f, 51), *other = NULL;
    char spec[600], path[300];
    lf_test_write_samples(tmpdir, "x", N_ROWS, 4, -1.0f, 1.0f, 52, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 32, true), *r = NULL;
    snprintf(path, sizeof path, "%s/s.h5", tmpdir);
    ck_assert_int_eq(lf_stats_write(LF_TEST_COMM, path, s), LF_OK);
    ck_assert_int_eq(lf_stats_read(LF_TEST_COMM, path, m, NULL, &r), LF_OK);
    ck_assert_int_eq(r->samples, N_ROWS);
    ck_assert(r->with_sums && r->with_squares);
    bool same = true;
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)widths[i];
        same = same && memcmp(r->layers[i].positive, s->layers[i].positive, n * 8) == 0 &&
               memcmp(r->layers[i].negative, s->layers[i].negative, n * 8) == 0 &&
               memcmp(r->layers[i].zmin, s->layers[i].zmin, n * 4) == 0 &&
               memcmp(r->layers[i].zmax, s->layers[i].zmax, n * 4) == 0 &&
               memcmp(r->layers[i].out_sum, s->layers[i].out_sum, n * 8) == 0 &&
               memcmp(r->layers[i].sq_sum, s->layers[i].sq_sum, n * 8) == 0;
    }
    /* The hidden relu layers have mixed neurons, so their sums of squares are not all zero. */
    ck_assert(r->layers[0].sq_sum[0] > 0.0 || r->layers[0].sq_sum[1] > 0.0);
    ck_assert(lf_test_all(same));
    ck_assert_int_eq(lf_model_copy(m, &other), LF_OK);
    other->layers[0].bias[0] += 1.0f;
    lf_stats_t *bad = NULL;
    ck_assert_int_eq(lf_stats_read(LF_TEST_COMM, path, other, NULL, &bad), LF_ERR_ARG);
    ck_assert(lf_test_any_message("another model"));
    lf_error_clear();
    lf_model_destroy(&other);
    lf_stats_destroy(&r);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Overwrites one element of a dataset of a statistics file (rank 0, serial HDF5). */
static void poke(const char *path, const char *dset, int64_t index, hid_t mem_type,
                 const void *value)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    if (rank == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
        hid_t fs = H5Dget_space(d);
        hsize_t start = (hsize_t)index, one = 1;
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &one, NULL);
        hid_t ms = H5Screate_simple(1, &one, NULL);
        ck_assert_int_ge(H5Dwrite(d, mem_type, ms, fs, H5P_DEFAULT, value), 0);
        H5Sclose(ms);
        H5Sclose(fs);
        H5Dclose(d);
        H5Fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
}

/* Issue 7, item 12: NaN or infinite output sums, NaN extremes and zmin > zmax were accepted and
 * became NaN biases. Every figure must be one a calibration pass can produce. */
START_TEST(test_file_validation)
{
    const int64_t widths[] = {6, 2};
    lf_model_t *m = lf_test_mlp(4, widths, 2, -1.0f, 1.0f, -0.2f, 0.2f, 61);
    char spec[600], path[300];
    lf_test_write_samples(tmpdir, "x", 40, 4, -1.0f, 1.0f, 62, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 16, true);
    snprintf(path, sizeof path, "%s/s.h5", tmpdir);
    /* Neuron 0 of layer 0 is mixed on this data; the cases below break it one way each. */
    ck_assert(s->layers[0].positive[0] > 0 && s->layers[0].negative[0] > 0);
    const double nan = NAN, inf = INFINITY, negative_sum = -1.0;
    const float fnan = NAN, big = 1e30f, below = -1e30f;
    const int64_t too_many = N_ROWS, zero = 0;
    struct {
        const char *dset;
        hid_t mem;
        const void *value;
        const char *text;
    } cases[] = {
        {"/layers/0/output_sum", H5T_NATIVE_DOUBLE, &nan, "output_sum[0] is NaN"},
        {"/layers/0/output_sum", H5T_NATIVE_DOUBLE, &inf, "output_sum[0] is infinite"},
        {"/layers/0/output_sum", H5T_NATIVE_DOUBLE, &negative_sum, "for a relu neuron"},
        {"/layers/0/zmin", H5T_NATIVE_FLOAT, &fnan, "expected finite"},
        {"/layers/0/zmin", H5T_NATIVE_FLOAT, &big, "zmin <= zmax"},
        {"/layers/0/zmax", H5T_NATIVE_FLOAT, &below, "zmin <= zmax"},
        {"/layers/0/positive", H5T_NATIVE_INT64, &too_many, "add up to at most the samples"},
        {"/layers/0/positive", H5T_NATIVE_INT64, &zero, "disagree with its range"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ck_assert_int_eq(lf_stats_write(LF_TEST_COMM, path, s), LF_OK);
        poke(path, cases[k].dset, 0, cases[k].mem, cases[k].value);
        lf_stats_t *r = NULL;
        lf_err_t got = lf_stats_read(LF_TEST_COMM, path, m, NULL, &r);
        ck_assert_msg(got == LF_ERR_VALUE || got == LF_ERR_FORMAT, "case %zu: %s", k,
                      lf_err_name(got));
        ck_assert_msg(lf_test_any_message(cases[k].text) && lf_test_any_message("/layers/0"),
                      "case %zu: %s", k, lf_error_message());
        ck_assert_ptr_null(r);
        lf_error_clear();
    }
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Deletes dataset dset of the file at path (rank 0, serial HDF5). */
static void unlink_dataset(const char *path, const char *dset)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    if (rank == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        ck_assert_int_ge(H5Ldelete(f, dset, H5P_DEFAULT), 0);
        H5Fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
}

/* A statistics file of an older linfold has output sums but no sums of squares: it reads as
 * before, pruning by rate works, pruning by energy or variance is refused with a message that
 * says why. Squares in some layers only, or a negative one, are refused. */
START_TEST(test_file_without_squares)
{
    const int64_t widths[] = {6, 5, 2};
    lf_model_t *m = lf_test_mlp(4, widths, 3, -1.0f, 1.0f, -0.2f, 0.2f, 71);
    char spec[600], path[300];
    lf_test_write_samples(tmpdir, "x", 60, 4, -1.0f, 1.0f, 72, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 16, true), *r = NULL;
    snprintf(path, sizeof path, "%s/s.h5", tmpdir);
    ck_assert_int_eq(lf_stats_write(LF_TEST_COMM, path, s), LF_OK);
    for (int i = 0; i < 3; i++) {
        char dset[64];
        snprintf(dset, sizeof dset, "/layers/%d/output_square_sum", i);
        unlink_dataset(path, dset);
    }
    ck_assert_int_eq(lf_stats_read(LF_TEST_COMM, path, m, NULL, &r), LF_OK);
    ck_assert(r->with_sums && !r->with_squares);
    ck_assert(memcmp(r->layers[0].out_sum, s->layers[0].out_sum, 6 * 8) == 0);
    ck_assert(lf_stats_mean_square(r, 0, 0) == 0.0);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0),
                        .rule = {.kind = LF_RULE_BENEFIT},
                        .prune_fraction = LF_DECIMAL(5, -1),
                        .prune_by = LF_PRUNE_BY_RATE};
    lf_plan_t *p = NULL;
    ck_assert_int_eq(lf_plan_create(m, r, &o, &p), LF_OK);
    ck_assert_int_eq(p->n_pruned[0], 3);
    lf_plan_destroy(&p);
    for (lf_prune_by_t by = LF_PRUNE_BY_ENERGY; by <= LF_PRUNE_BY_VARIANCE; by++) {
        o.prune_by = by;
        ck_assert_int_eq(lf_plan_create(m, r, &o, &p), LF_ERR_ARG);
        ck_assert_msg(lf_test_any_message("sums of squared outputs") &&
                          lf_test_any_message("older linfold") &&
                          lf_test_any_message(lf_plan_prune_by_name(by)),
                      "%s", lf_error_message());
        lf_error_clear();
    }
    lf_stats_destroy(&r);
    /* In some layers only. */
    ck_assert_int_eq(lf_stats_write(LF_TEST_COMM, path, s), LF_OK);
    unlink_dataset(path, "/layers/1/output_square_sum");
    ck_assert_int_eq(lf_stats_read(LF_TEST_COMM, path, m, NULL, &r), LF_ERR_FORMAT);
    ck_assert(lf_test_any_message("output_square_sum is present in some layers only"));
    lf_error_clear();
    /* Negative. */
    const double negative = -1.0;
    ck_assert_int_eq(lf_stats_write(LF_TEST_COMM, path, s), LF_OK);
    poke(path, "/layers/0/output_square_sum", 1, H5T_NATIVE_DOUBLE, &negative);
    ck_assert_int_eq(lf_stats_read(LF_TEST_COMM, path, m, NULL, &r), LF_ERR_VALUE);
    ck_assert(lf_test_any_message("/layers/0/output_square_sum[1] = -1"));
    lf_error_clear();
    ck_assert_ptr_null(r);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Fewer rows than ranks: ranks without rows take part in every collective. */
START_TEST(test_fewer_rows_than_ranks)
{
    const int64_t widths[] = {4, 3, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 3, -0.5f, 0.5f, -0.1f, 0.1f, 91);
    lf_test_shape_layer(m, 0, 2, 1, 92);
    char spec[600];
    lf_test_write_samples(tmpdir, "x", 2, 3, 0.0f, 1.0f, 93, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 1024, true);
    ck_assert_int_eq(s->samples, 2);
    ck_assert_int_eq(s->layers[0].positive[0], 2); /* provably linear */
    ck_assert_int_eq(s->layers[0].positive[2], 0); /* provably dead */
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("stats");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_stats_counts_match_serial);
    tcase_add_test(tc, test_exact_sums);
    tcase_add_test(tc, test_square_sums_match_serial);
    tcase_add_test(tc, test_file_without_squares);
    tcase_add_test(tc, test_file_round_trip);
    tcase_add_test(tc, test_file_validation);
    tcase_add_test(tc, test_fewer_rows_than_ranks);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
