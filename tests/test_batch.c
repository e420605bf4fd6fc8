/* The sharded batch loop: block and batch sizes, stopping on a signal, and reading ahead. A
 * signal seen by one rank stops every rank at the same batch boundary with LF_ERR_INTERRUPTED,
 * like any error. Rows stored as they are wanted in memory are read one batch ahead with pread
 * (batch.c); every other storage goes through HDF5; both must give the same bits. */
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
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

/* ---------------------------------------------------------------- storage layouts */

enum { L_ROWS = 1003, L_COLS = 7, L_OUT = 3 };

typedef enum { PLAIN, USERBLOCK, CHUNKED, DOUBLES, BIG_ENDIAN, N_LAYOUTS } layout_t;

/* Writes x (and labels y) to path in the given storage (rank 0). Labels are int64 in PLAIN and
 * USERBLOCK, int32 otherwise (read through HDF5). */
static void write_layout(const char *path, layout_t how, const float *x, const int64_t *y)
{
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (how == USERBLOCK)
        H5Pset_userblock(fcpl, 4096);
    hsize_t dims[2] = {L_ROWS, L_COLS}, chunk[2] = {37, L_COLS}, ny = L_ROWS, ychunk = 37;
    hid_t type = how == DOUBLES      ? H5T_IEEE_F64LE
                 : how == BIG_ENDIAN ? H5T_IEEE_F32BE
                                     : H5T_IEEE_F32LE;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    hid_t s = H5Screate_simple(2, dims, NULL);
    if (how == CHUNKED) {
        H5Pset_chunk(dcpl, 2, chunk);
        H5Pset_deflate(dcpl, 4);
    }
    hid_t d = H5Dcreate2(f, "x", type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    H5Dclose(d);
    H5Sclose(s);
    H5Pclose(dcpl);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (how == CHUNKED)
        H5Pset_chunk(dcpl, 1, &ychunk);
    s = H5Screate_simple(1, &ny, NULL);
    hid_t ytype = how == PLAIN || how == USERBLOCK ? H5T_STD_I64LE : H5T_STD_I32LE;
    d = H5Dcreate2(f, "y", ytype, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y), 0);
    H5Dclose(d);
    H5Sclose(s);
    H5Pclose(dcpl);
    H5Pclose(fcpl);
    H5Fclose(f);
}

typedef struct {
    float *out;   /* (L_ROWS, L_OUT): the model's output for every row this rank computed */
    int64_t *lab; /* (L_ROWS): the labels this rank saw, + 1 (0: not seen) */
} gather_t;

static lf_err_t keep_outputs(const lf_batch_t *b, int tid, void *ctx)
{
    (void)tid;
    gather_t *g = ctx;
    const float *y = NULL;
    lf_err_t err = lf_batch_forward(b, 0, NULL, NULL, &y);
    for (int64_t r = b->first; err == LF_OK && r < b->first + b->valid; r++) {
        memcpy(&g->out[(b->row0 + r) * L_OUT], &y[r * L_OUT], L_OUT * sizeof(float));
        g->lab[b->row0 + r] = b->labels[r] + 1;
    }
    return err;
}

/* One pass over the rows of a layout (all rows, or the ranges given), every rank's outputs and
 * labels summed into out and lab (each row is computed by exactly one rank, so the sum is exact).
 * Returns the pass's error. */
static lf_err_t pass_over(const lf_model_t *m, const char *file, const lf_batch_part_t *part,
                          bool expect_direct, float *out, int64_t *lab)
{
    char xs[600], ys[600];
    snprintf(xs, sizeof xs, "%s:/x", file);
    snprintf(ys, sizeof ys, "%s:/y", file);
    lf_dataset_t *x = NULL, *y = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, xs, LF_DATA_SAMPLES, &x), LF_OK);
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, ys, LF_DATA_LABELS, &y), LF_OK);
    ck_assert(lf_h5io_dataset_direct(x) == expect_direct);
    ck_assert(lf_h5io_dataset_direct(y) == expect_direct);
    gather_t g = {calloc(L_ROWS * L_OUT, sizeof(float)), calloc(L_ROWS, sizeof(int64_t))};
    lf_batch_opts_t bo = {.batch_rows = 40, .threads = 2};
    const lf_model_t *models[] = {m};
    lf_err_t rc =
        lf_batch_run_part(LF_TEST_COMM, x, y, models, 1, &bo, part, keep_outputs, NULL, &g);
    MPI_Allreduce(g.out, out, L_ROWS * L_OUT, MPI_FLOAT, MPI_SUM, LF_TEST_COMM);
    MPI_Allreduce(g.lab, lab, L_ROWS, MPI_INT64_T, MPI_SUM, LF_TEST_COMM);
    free(g.out);
    free(g.lab);
    lf_h5io_dataset_close(&y);
    lf_h5io_dataset_close(&x);
    return rc;
}

/* The same rows stored five ways (two read ahead with pread, three through HDF5) give the same
 * outputs, bit for bit, and the same labels, for a whole pass and for a pass over row ranges
 * (several ranges per rank, each cut into batches on its own); 40-row batches of 40-row blocks,
 * so every rank reads many batches ahead. A NaN gives the same message both ways. */
START_TEST(test_storage_layouts_read_alike)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    const int64_t widths[] = {9, L_OUT};
    lf_model_t *m = lf_test_mlp(L_COLS, widths, 2, -1.0f, 1.0f, -0.2f, 0.2f, 5);
    float *x = malloc(L_ROWS * L_COLS * sizeof(float));
    int64_t *y = malloc(L_ROWS * sizeof(int64_t));
    lf_test_fill(x, L_ROWS * L_COLS, -1.0f, 1.0f, 77);
    for (int64_t r = 0; r < L_ROWS; r++)
        y[r] = (r * 7919) % 10;
    char files[N_LAYOUTS][600];
    for (int k = 0; k < N_LAYOUTS; k++) {
        snprintf(files[k], sizeof files[k], "%s/layout%d.h5", tmpdir, k);
        if (rank == 0)
            write_layout(files[k], (layout_t)k, x, y);
    }
    MPI_Barrier(LF_TEST_COMM);
    const lf_row_range_t ranges[] = {{3, 5}, {40, 41}, {100, 333}, {334, 700}, {990, 1003}};
    const lf_batch_part_t part = {.rows = ranges, .n_rows = 5};
    float *ref = malloc(L_ROWS * L_OUT * sizeof(float)),
          *got = malloc(L_ROWS * L_OUT * sizeof(float));
    int64_t *lref = malloc(L_ROWS * sizeof(int64_t)), *lgot = malloc(L_ROWS * sizeof(int64_t));
    for (int p = 0; p < 2; p++) {
        const lf_batch_part_t *pp = p ? &part : NULL;
        ck_assert_int_eq(pass_over(m, files[PLAIN], pp, true, ref, lref), LF_OK);
        for (int64_t r = 0; r < L_ROWS; r++) {
            bool covered = !pp;
            for (int k = 0; pp && k < 5; k++)
                covered = covered || (r >= ranges[k].lo && r < ranges[k].hi);
            ck_assert_int_eq(lref[r], covered ? y[r] + 1 : 0);
        }
        for (int k = 1; k < N_LAYOUTS; k++) {
            bool direct = k == USERBLOCK;
            ck_assert_int_eq(pass_over(m, files[k], pp, direct, got, lgot), LF_OK);
            ck_assert_mem_eq(got, ref, L_ROWS * L_OUT * sizeof(float));
            ck_assert_mem_eq(lgot, lref, L_ROWS * sizeof(int64_t));
        }
    }
    /* A NaN deep in the rows: the same message whichever way it was read. */
    x[811 * L_COLS + 4] = NAN;
    if (rank == 0) {
        write_layout(files[PLAIN], PLAIN, x, y);
        write_layout(files[CHUNKED], CHUNKED, x, y);
    }
    MPI_Barrier(LF_TEST_COMM);
    for (int k = 0; k < 2; k++) {
        layout_t how = k ? CHUNKED : PLAIN;
        ck_assert_int_eq(
            lf_test_all(pass_over(m, files[how], NULL, how == PLAIN, got, lgot) == LF_ERR_VALUE),
            true);
        ck_assert(lf_test_any_message("layout"));
        ck_assert(lf_test_any_message(":/x: row 811, column 4 is NaN"));
        lf_error_clear();
    }
    free(lgot);
    free(lref);
    free(got);
    free(ref);
    free(y);
    free(x);
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
    tcase_add_test(tc, test_storage_layouts_read_alike);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
