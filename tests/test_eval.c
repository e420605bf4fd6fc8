/* Evaluation and prediction on sharded rows: counts equal a serial computation at every rank
 * count, predictions come out in dataset order, and the forward pass refuses to turn finite
 * inputs into infinities silently. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lf_test.h"
#include "linfold/eval.h"
#include "linfold/forward.h"
#include "linfold/h5io.h"

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void) { lf_test_tmpdir_remove(tmpdir); }

static int my_rank(void)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    return rank;
}

enum { N = 23, D = 7, C = 3 }; /* 23 rows: uneven shards at 2, 3 and 4 ranks */

/* A softmax classifier of 7 inputs and 3 classes with a reference that differs in one weight. */
static lf_model_t *classifier(uint64_t seed)
{
    const int64_t widths[] = {5, C};
    lf_model_t *m = lf_test_mlp(D, widths, 2, -1.0f, 1.0f, -0.5f, 0.5f, seed);
    m->layers[1].act = LF_ACT_SOFTMAX;
    return m;
}

/* Accuracy, agreement, the discordant rows and the largest difference equal one serial forward
 * of all rows. */
START_TEST(test_eval_counts_match_serial)
{
    lf_model_t *m = classifier(1), *ref = classifier(1);
    ref->layers[1].blocks[0].w[2] += 0.75f;
    float x[N * D];
    int64_t y[N];
    lf_test_fill(x, N * D, -1.0f, 1.0f, 2);
    for (int r = 0; r < N; r++)
        y[r] = r % C;
    char path[300], xs[320], ys[320];
    snprintf(path, sizeof path, "%s/d.h5", tmpdir);
    snprintf(xs, sizeof xs, "%s:/x", path);
    snprintf(ys, sizeof ys, "%s:/y", path);
    if (my_rank() == 0)
        lf_test_write_data(path, "/x", x, N, D, "/y", y);
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *dx = NULL, *dy = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, xs, LF_DATA_SAMPLES, &dx), LF_OK);
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, ys, LF_DATA_LABELS, &dy), LF_OK);
    lf_batch_opts_t bo = {.batch_rows = 4, .threads = 2};
    lf_eval_result_t r;
    ck_assert_int_eq(lf_eval_run(LF_TEST_COMM, m, ref, dx, dy, &bo, &r), LF_OK);
    /* Serial expectation, 4-row blocks as the pass computes them. */
    lf_forward_t *fa = NULL, *fb = NULL;
    ck_assert_int_eq(lf_forward_create(m, 4, &fa), LF_OK);
    ck_assert_int_eq(lf_forward_create(ref, 4, &fb), LF_OK);
    int64_t correct = 0, ref_correct = 0, agree = 0, worse = 0, better = 0;
    double diff = 0.0;
    float block[4 * D];
    for (int r0 = 0; r0 < N; r0 += 4) {
        memset(block, 0, sizeof block);
        int rows = N - r0 < 4 ? N - r0 : 4;
        memcpy(block, x + r0 * D, (size_t)(rows * D) * sizeof *x);
        const float *ya = NULL, *yb = NULL;
        ck_assert_int_eq(lf_forward_run(fa, m, block, 4, NULL, NULL, &ya), LF_OK);
        ck_assert_int_eq(lf_forward_run(fb, ref, block, 4, NULL, NULL, &yb), LF_OK);
        for (int k = 0; k < rows; k++) {
            int64_t a = lf_eval_class(LF_ACT_SOFTMAX, ya + k * C, C);
            int64_t b = lf_eval_class(LF_ACT_SOFTMAX, yb + k * C, C);
            correct += a == y[r0 + k];
            ref_correct += b == y[r0 + k];
            agree += a == b;
            worse += b == y[r0 + k] && a != y[r0 + k];
            better += a == y[r0 + k] && b != y[r0 + k];
            for (int j = 0; j < C; j++)
                diff = fmax(diff, fabs((double)ya[k * C + j] - (double)yb[k * C + j]));
        }
    }
    ck_assert_int_eq(r.samples, N);
    ck_assert_int_eq(r.correct, correct);
    ck_assert_int_eq(r.ref_correct, ref_correct);
    ck_assert_int_eq(r.agree, agree);
    ck_assert_int_eq(r.worse, worse);
    ck_assert_int_eq(r.better, better);
    ck_assert_int_gt(worse + better, 0); /* the perturbation moved some rows' correctness */
    ck_assert(r.max_abs_diff == diff);   /* the same blocks in the same shape: the same bits */
    ck_assert_int_lt(agree, N);          /* the perturbation changed some predictions */
    lf_forward_destroy(&fa);
    lf_forward_destroy(&fb);
    lf_h5io_dataset_close(&dy);
    lf_h5io_dataset_close(&dx);
    lf_model_destroy(&ref);
    lf_model_destroy(&m);
}
END_TEST

/* Issue 7, item 14: "accuracy 0.0000 (0 of 0)" for an empty set is now a usage error. */
START_TEST(test_eval_of_no_rows)
{
    lf_model_t *m = classifier(3);
    char path[300], xs[320];
    snprintf(path, sizeof path, "%s/empty.h5", tmpdir);
    snprintf(xs, sizeof xs, "%s:/x", path);
    float none[1] = {0};
    if (my_rank() == 0)
        lf_test_write_data(path, "/x", none, 0, D, NULL, NULL);
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *dx = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, xs, LF_DATA_SAMPLES, &dx), LF_OK);
    lf_batch_opts_t bo = {.batch_rows = 8};
    lf_eval_result_t r;
    ck_assert_int_eq(lf_eval_run(LF_TEST_COMM, m, NULL, dx, NULL, &bo, &r), LF_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(lf_error_message(), "has no rows"));
    lf_error_clear();
    lf_h5io_dataset_close(&dx);
    lf_model_destroy(&m);
}
END_TEST

/* Issue 7, item 13: finite inputs whose forward pass overflows float32 were counted silently.
 * The failure names the dataset, the global row, the layer and the neuron. */
START_TEST(test_overflow_is_detected)
{
    const int64_t widths[] = {4, 2};
    lf_model_t *m = lf_test_mlp(D, widths, 2, -1.0f, 1.0f, -0.5f, 0.5f, 4);
    float *w = m->layers[0].blocks[0].w;
    for (int k = 0; k < D; k++)
        w[2 * D + k] = 3e38f; /* neuron 2 of layer 0: finite weights, infinite sums */
    float x[N * D];
    lf_test_fill(x, N * D, 0.0f, 0.01f, 5); /* tiny inputs: no row overflows ... */
    for (int k = 0; k < D; k++)
        x[17 * D + k] = 10.0f; /* ... except row 17 */
    char path[300], xs[320], out[300];
    snprintf(path, sizeof path, "%s/o.h5", tmpdir);
    snprintf(xs, sizeof xs, "%s:/x", path);
    snprintf(out, sizeof out, "%s/pred.h5", tmpdir);
    if (my_rank() == 0)
        lf_test_write_data(path, "/x", x, N, D, NULL, NULL);
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *dx = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, xs, LF_DATA_SAMPLES, &dx), LF_OK);
    lf_batch_opts_t bo = {.batch_rows = 5};
    lf_eval_result_t r;
    ck_assert_int_eq(lf_eval_run(LF_TEST_COMM, m, NULL, dx, NULL, &bo, &r), LF_ERR_VALUE);
    /* The record is on the rank that owns row 17. */
    char want[400];
    snprintf(want, sizeof want, "%s: row 17: the pre-activation of layer 0, neuron 2 is infinite",
             xs);
    ck_assert_msg(lf_test_any_message(want), "message: %s", lf_error_message());
    lf_error_clear();
    ck_assert_int_eq(lf_eval_predict(LF_TEST_COMM, m, dx, out, &bo), LF_ERR_VALUE);
    lf_error_clear();
    ck_assert(lf_test_all(access(out, F_OK) != 0));
    lf_h5io_dataset_close(&dx);
    lf_model_destroy(&m);
}
END_TEST

/* predict writes rows in dataset order whatever the rank count; they equal a serial forward. */
START_TEST(test_predict_output)
{
    lf_model_t *m = classifier(6);
    float x[N * D];
    lf_test_fill(x, N * D, -1.0f, 1.0f, 5);
    char path[300], spec[320], out[300];
    snprintf(path, sizeof path, "%s/x.h5", tmpdir);
    snprintf(spec, sizeof spec, "%s:/x", path);
    snprintf(out, sizeof out, "%s/pred.h5", tmpdir);
    if (my_rank() == 0)
        lf_test_write_data(path, "/x", x, N, D, NULL, NULL);
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *ds = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    lf_batch_opts_t bo = {.batch_rows = 4};
    ck_assert_int_eq(lf_eval_predict(LF_TEST_COMM, m, ds, out, &bo), LF_OK);
    lf_h5io_dataset_close(&ds);
    lf_forward_t *fw = NULL;
    ck_assert_int_eq(lf_forward_create(m, N, &fw), LF_OK);
    const float *y = NULL;
    ck_assert_int_eq(lf_forward_run(fw, m, x, N, NULL, NULL, &y), LF_OK);
    float got[N * C];
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(f >= 0);
    hid_t d = H5Dopen2(f, "/outputs", H5P_DEFAULT);
    ck_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    /* Batches of 4 rows may round differently from one call of 23 rows: 1e-6 absolute on softmax
     * outputs in [0, 1] is far above float32 round-off and far below any real error. */
    double worst = 0.0;
    for (int k = 0; k < N * C; k++)
        worst = fmax(worst, fabs((double)got[k] - (double)y[k]));
    ck_assert_msg(lf_test_all(worst <= 1e-6), "max difference %g", worst);
    lf_forward_destroy(&fw);
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("eval");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_eval_counts_match_serial);
    tcase_add_test(tc, test_eval_of_no_rows);
    tcase_add_test(tc, test_overflow_is_detected);
    tcase_add_test(tc, test_predict_output);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
