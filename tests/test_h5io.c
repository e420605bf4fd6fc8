/* HDF5 files: model round trips, deterministic bytes, sharded reads, outputs and statistics. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/batch.h"
#include "linfold/comm.h"
#include "linfold/error.h"
#include "linfold/eval.h"
#include "linfold/forward.h"
#include "linfold/h5io.h"
#include "linfold/stats.h"

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }

static void teardown(void)
{
    int rank = 0;
    MPI_Barrier(LF_TEST_COMM);
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    if (rank == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        ck_assert_int_eq(system(cmd), 0);
    }
}

static lf_model_t *model_with_skips(void)
{
    const int64_t widths[] = {5, 4, 6, 3};
    lf_model_t *m = lf_test_mlp(7, widths, 4, -1.0f, 1.0f, -0.5f, 0.5f, 17);
    lf_block_t *b = NULL;
    lf_rng_t rng = {18};
    ck_assert_int_eq(lf_model_block_ensure(m, 2, LF_SRC_INPUT, &b), LF_OK);
    for (int k = 0; k < 6 * 7; k++)
        b->w[k] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    ck_assert_int_eq(lf_model_block_ensure(m, 3, 1, &b), LF_OK);
    for (int k = 0; k < 3 * 4; k++)
        b->w[k] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    m->layers[1].act = LF_ACT_LEAKY_RELU;
    m->layers[1].alpha = 0.125f;
    m->layers[3].act = LF_ACT_SOFTMAX;
    return m;
}

static bool files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

START_TEST(test_model_round_trip_is_bitwise)
{
    lf_model_t *m = model_with_skips(), *r = NULL;
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/a.h5", tmpdir);
    snprintf(p2, sizeof p2, "%s/b.h5", tmpdir);
    lf_attr_t attrs[] = {{"note", "test"}};
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, p1, m, attrs, 1), LF_OK);
    ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, p1, &r), LF_OK);
    ck_assert(lf_model_fingerprint(r) == lf_model_fingerprint(m));
    ck_assert_int_eq(r->layers[1].act, LF_ACT_LEAKY_RELU);
    ck_assert(r->layers[1].alpha == 0.125f);
    ck_assert_ptr_nonnull(lf_model_block(r, 2, LF_SRC_INPUT));
    ck_assert_ptr_nonnull(lf_model_block(r, 3, 1));
    /* Writing the model read back gives the same bytes: no timestamps, no rank count. */
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, p2, r, attrs, 1), LF_OK);
    ck_assert(lf_test_all(files_equal(p1, p2)));
    lf_model_destroy(&r);
    lf_model_destroy(&m);
}
END_TEST

START_TEST(test_write_failure_leaves_nothing)
{
    lf_model_t *m = model_with_skips();
    char path[300];
    snprintf(path, sizeof path, "%s/missing-dir/out.h5", tmpdir);
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, path, m, NULL, 0), LF_ERR_HDF5);
    lf_error_clear();
    ck_assert(lf_test_all(access(path, F_OK) != 0));
    lf_model_t *r = NULL;
    ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, path, &r), LF_ERR_IO);
    lf_error_clear();
    lf_model_destroy(&m);
}
END_TEST

/* Sharded reads: every rank reads its block; gathered they are the dataset, also with fewer
 * rows than ranks and float64 data. */
START_TEST(test_sharded_reads)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    const int64_t ns[] = {2, 11};
    for (size_t t = 0; t < 2; t++) {
        int64_t n = ns[t], d = 3;
        char path[300], spec[320], yspec[320];
        snprintf(path, sizeof path, "%s/d%zu.h5", tmpdir, t);
        snprintf(spec, sizeof spec, "%s:/group/x", path);
        snprintf(yspec, sizeof yspec, "%s:/group/y", path);
        float x[33];
        int64_t y[11];
        for (int64_t k = 0; k < n * d; k++)
            x[k] = (float)k + 0.5f;
        for (int64_t k = 0; k < n; k++)
            y[k] = k % 3;
        if (rank == 0)
            lf_test_write_data(path, "/group/x", x, n, d, "/group/y", y);
        MPI_Barrier(LF_TEST_COMM);
        lf_dataset_t *ds = NULL, *ls = NULL;
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, yspec, LF_DATA_LABELS, &ls), LF_OK);
        ck_assert_int_eq(lf_h5io_dataset_rows(ds), n);
        ck_assert_int_eq(lf_h5io_dataset_cols(ds), d);
        int64_t begin = 0, count = 0;
        lf_comm_shard(n, rank, size, &begin, &count);
        float buf[33];
        int64_t lab[11];
        ck_assert_int_eq(lf_h5io_dataset_read_rows(ds, begin, count, buf), LF_OK);
        ck_assert_int_eq(lf_h5io_dataset_read_rows(ls, begin, count, lab), LF_OK);
        bool ok = true;
        for (int64_t k = 0; k < count * d; k++)
            ok = ok && buf[k] == x[begin * d + k];
        for (int64_t k = 0; k < count; k++)
            ok = ok && lab[k] == y[begin + k];
        ck_assert(lf_test_all(ok));
        lf_h5io_dataset_close(&ls);
        lf_h5io_dataset_close(&ds);
    }
}
END_TEST

START_TEST(test_dataset_errors)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    char path[300], spec[400];
    snprintf(path, sizeof path, "%s/d.h5", tmpdir);
    float x[6] = {0};
    int64_t y[2] = {0, 1};
    if (rank == 0)
        lf_test_write_data(path, "/x", x, 2, 3, "/y", y);
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *ds = NULL;
    struct {
        const char *obj;
        lf_data_kind_t kind;
        lf_err_t code;
        const char *text;
    } cases[] = {
        {":/nope", LF_DATA_SAMPLES, LF_ERR_FORMAT, "no dataset /nope"},
        {":/a/b/c", LF_DATA_SAMPLES, LF_ERR_FORMAT, "no dataset /a/b/c"},
        {":/y", LF_DATA_SAMPLES, LF_ERR_FORMAT, "is not a float dataset"},
        {":/x", LF_DATA_LABELS, LF_ERR_FORMAT, "is not an integer dataset"},
        {"", LF_DATA_SAMPLES, LF_ERR_USAGE, "is not of the form FILE.h5:/path"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        snprintf(spec, sizeof spec, "%s%s", path, cases[k].obj);
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, cases[k].kind, &ds),
                         cases[k].code);
        ck_assert_msg(strstr(lf_error_message(), cases[k].text), "case %zu: %s", k,
                      lf_error_message());
        lf_error_clear();
    }
    snprintf(spec, sizeof spec, "%s/none.h5:/x", tmpdir);
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_ERR_IO);
    lf_error_clear();
}
END_TEST

/* predict writes rows in dataset order whatever the rank count; they equal a serial forward. */
START_TEST(test_predict_output)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    lf_model_t *m = model_with_skips();
    enum { N = 23 };
    float x[N * 7];
    lf_rng_t rng = {5};
    for (int k = 0; k < N * 7; k++)
        x[k] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    char path[300], spec[320], out[300];
    snprintf(path, sizeof path, "%s/x.h5", tmpdir);
    snprintf(spec, sizeof spec, "%s:/x", path);
    snprintf(out, sizeof out, "%s/pred.h5", tmpdir);
    if (rank == 0)
        lf_test_write_data(path, "/x", x, N, 7, NULL, NULL);
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *ds = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    lf_batch_opts_t bo = {.batch_rows = 4};
    ck_assert_int_eq(lf_eval_predict(LF_TEST_COMM, m, ds, out, &bo), LF_OK);
    lf_h5io_dataset_close(&ds);
    /* Expected: one serial forward of all rows, 4 rows per call like the batches. */
    lf_forward_t *fw = NULL;
    ck_assert_int_eq(lf_forward_create(m, N, &fw), LF_OK);
    const float *y = NULL;
    ck_assert_int_eq(lf_forward_run(fw, m, x, N, NULL, NULL, &y), LF_OK);
    float got[N * 3];
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t d = H5Dopen2(f, "/outputs", H5P_DEFAULT);
    ck_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    /* Batches of 4 rows may round differently from one call of 23 rows: 1e-6 absolute on softmax
     * outputs in [0, 1] is far above float32 round-off and far below any real error. */
    double worst = 0.0;
    for (int k = 0; k < N * 3; k++)
        worst = fmax(worst, fabs((double)got[k] - (double)y[k]));
    ck_assert_msg(lf_test_all(worst <= 1e-6), "max difference %g", worst);
    lf_forward_destroy(&fw);
    lf_model_destroy(&m);
}
END_TEST

START_TEST(test_stats_round_trip)
{
    lf_model_t *m = model_with_skips(), *other = NULL;
    lf_stats_t *s = NULL, *r = NULL;
    ck_assert_int_eq(lf_stats_create(m, &s), LF_OK);
    s->samples = 10;
    s->layers[2].positive[3] = 7;
    s->layers[2].negative[3] = 2;
    s->layers[2].zmin[3] = -1.5f;
    s->layers[2].zmax[3] = 4.25f;
    char path[300];
    snprintf(path, sizeof path, "%s/s.h5", tmpdir);
    ck_assert_int_eq(lf_stats_write(LF_TEST_COMM, path, s), LF_OK);
    ck_assert_int_eq(lf_stats_read(LF_TEST_COMM, path, m, &r), LF_OK);
    ck_assert_int_eq(r->samples, 10);
    ck_assert_int_eq(r->layers[2].positive[3], 7);
    ck_assert_int_eq(r->layers[2].negative[3], 2);
    ck_assert(r->layers[2].zmin[3] == -1.5f && r->layers[2].zmax[3] == 4.25f);
    ck_assert(isinf(r->layers[0].zmin[0])); /* no sample reached it in this fixture */
    ck_assert_int_eq(lf_model_copy(m, &other), LF_OK);
    other->layers[0].bias[0] += 1.0f;
    lf_stats_t *bad = NULL;
    ck_assert_int_eq(lf_stats_read(LF_TEST_COMM, path, other, &bad), LF_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(lf_error_message(), "another model"));
    lf_error_clear();
    lf_model_destroy(&other);
    lf_stats_destroy(&r);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("h5io");
    TCase *tc = tcase_create("h5io");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_model_round_trip_is_bitwise);
    tcase_add_test(tc, test_write_failure_leaves_nothing);
    tcase_add_test(tc, test_sharded_reads);
    tcase_add_test(tc, test_dataset_errors);
    tcase_add_test(tc, test_predict_output);
    tcase_add_test(tc, test_stats_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
