/* The sharded batch loop: block and batch sizes, and stopping on a signal. A signal seen by one
 * rank stops every rank at the same batch boundary with LF_ERR_INTERRUPTED, like any error. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/batch.h"
#include "linfold/fold.h"
#include "linfold/interrupt.h"
#include "linfold/plan.h"
#include "linfold/stats.h"

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void)
{
    lf_interrupt_raise_for_test(0);
    lf_test_tmpdir_remove(tmpdir);
}

START_TEST(test_block_and_batch_rows)
{
    ck_assert_int_eq(lf_batch_block_rows(1000, 1024), 256);
    ck_assert_int_eq(lf_batch_block_rows(100, 1024), 100);
    ck_assert_int_eq(lf_batch_block_rows(1000, 50), 50);
    ck_assert_int_eq(lf_batch_block_rows(0, 1024), 1);
    ck_assert_int_eq(lf_batch_io_rows(1000, 1024), 1024);
    ck_assert_int_eq(lf_batch_io_rows(1000, 1000), 768); /* whole blocks of 256 */
    ck_assert_int_eq(lf_batch_io_rows(1000, 100), 100);
    ck_assert_int_eq(lf_batch_io_rows(10, 1024), 1020);
}
END_TEST

/* The last rank "receives SIGTERM" before a calibration pass: every rank returns
 * LF_ERR_INTERRUPTED after the first batch, and the last rank's record says what stopped. */
START_TEST(test_signal_stops_every_rank)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    const int64_t widths[] = {6, 2};
    lf_model_t *m = lf_test_mlp(5, widths, 2, -1.0f, 1.0f, -0.2f, 0.2f, 1);
    char spec[600];
    lf_test_write_samples(tmpdir, "x", 300, 5, -1.0f, 1.0f, 2, spec, sizeof spec);
    lf_dataset_t *ds = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    if (rank == size - 1)
        lf_interrupt_raise_for_test(SIGTERM);
    lf_batch_opts_t bo = {.batch_rows = 10, .what = "calibrate"};
    lf_stats_t *s = NULL;
    ck_assert_int_eq(lf_stats_collect(LF_TEST_COMM, m, ds, &bo, false, &s), LF_ERR_INTERRUPTED);
    ck_assert_ptr_null(s);
    if (rank == size - 1) {
        ck_assert_ptr_nonnull(
            strstr(lf_error_message(), "interrupted by SIGTERM during calibrate at batch 1 of"));
    }
    ck_assert_int_eq(lf_interrupt_agree(LF_TEST_COMM), SIGTERM);
    lf_error_clear();
    /* Folding polls too, between layers. */
    lf_stats_t *st = lf_test_stats_linear_prefix(m, (int64_t[]){6, 0});
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    ck_assert_int_eq(lf_plan_create(m, st, &o, &p), LF_OK);
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, NULL), LF_ERR_INTERRUPTED);
    ck_assert_ptr_null(f);
    lf_error_clear();
    lf_interrupt_raise_for_test(0);
    ck_assert_int_eq(lf_interrupt_agree(LF_TEST_COMM), 0);
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, NULL), LF_OK);
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    lf_stats_destroy(&st);
    lf_h5io_dataset_close(&ds);
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("batch");
    TCase *tc = tcase_create("batch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_block_and_batch_rows);
    tcase_add_test(tc, test_signal_stops_every_rank);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
