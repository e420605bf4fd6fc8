/* Distributed merges against the serial lf_merge_add_product: block-cyclic reads of column and
 * row subsets from a model file, pdgemm_ and psgemm_, accumulation into a skip block, a chain of
 * two folds kept distributed, block-cyclic writes, and error paths that end on every rank; row and
 * column selections (lf_dist_select) and matrix-vector products (lf_dist_matvec_add) on a matrix
 * of known values. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/grid.h"
#include "linfold/h5io.h"
#include "linfold/merge.h"
#include "linfold/merge_dist.h"

/* 333 inputs -> 1537 -> 1000 -> 257: no width is a multiple of 16, 64 or 128. */
enum { N_IN = 333, W0 = 1537, W1 = 1000, W2 = 257 };

static char tmpdir[256], model_path[300];
static lf_model_t *model;
static lf_grid_t *grid;
static lf_dist_file_t *file;
static int64_t *s1, *s2; /* folded neurons of layers 0 and 1 */
static int64_t n_s1, n_s2;
static float *ref_fold; /* W1[:, s1] · W0[s1, :] by the serial merge, (W1, N_IN) */

/* Strictly increasing subsets of [0, n) with runs and gaps of every length. */
static int64_t make_subset(int64_t n, uint64_t seed, int64_t *out)
{
    lf_rng_t rng = {seed};
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (lf_rng_next(&rng) % 3 != 0 || i == n - 1)
            out[k++] = i;
    return k;
}

static void serial_fold(float *ref);

/* Once per suite: the model file, the grid, the open file and the serial reference. */
static void setup(void)
{
    lf_test_tmpdir(tmpdir, sizeof tmpdir);
    snprintf(model_path, sizeof model_path, "%s/wide.h5", tmpdir);
    const int64_t widths[] = {W0, W1, W2};
    model = lf_test_mlp(N_IN, widths, 3, -1.0f, 1.0f, -0.1f, 0.1f, 42);
    ck_assert_ptr_nonnull(model);
    lf_block_t *skip = NULL;
    ck_assert_int_eq(lf_model_block_ensure(model, 1, LF_SRC_INPUT, &skip), LF_OK);
    lf_test_fill(skip->w, (int64_t)W1 * N_IN, -1.0f, 1.0f, 7);
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, model_path, model, NULL, 0), LF_OK);
    s1 = malloc(W0 * sizeof *s1);
    s2 = malloc(W1 * sizeof *s2);
    n_s1 = make_subset(W0, 11, s1);
    n_s2 = make_subset(W1, 12, s2);
    ck_assert_int_eq(lf_grid_create(LF_TEST_COMM, &grid), LF_OK);
    ck_assert_int_eq(lf_dist_file_open(grid, model_path, &file), LF_OK);
    ref_fold = calloc((size_t)W1 * N_IN, sizeof *ref_fold);
    serial_fold(ref_fold);
}

static void teardown(void)
{
    lf_dist_file_close(&file);
    lf_grid_destroy(&grid);
    lf_model_destroy(&model);
    free(s1);
    free(s2);
    free(ref_fold);
    lf_test_tmpdir_remove(tmpdir);
}

static const float *weight(int i) { return lf_model_block(model, i, i - 1)->w; }

/* out (len(rows) or all rows, len(cols) or all cols) = W[rows, cols] of a row-major (r, c) W. */
static float *submatrix(const float *w, int64_t c, const int64_t *rows, int64_t nr,
                        const int64_t *cols, int64_t nc)
{
    float *out = malloc((size_t)(nr * nc) * sizeof *out + 1);
    for (int64_t a = 0; a < nr; a++)
        for (int64_t b = 0; b < nc; b++)
            out[a * nc + b] = w[(rows ? rows[a] : a) * c + (cols ? cols[b] : b)];
    return out;
}

/* The serial fold: ref (W1 x N_IN) += W1[:, s1] · W0[s1, :]. */
static void serial_fold(float *ref)
{
    float *a = submatrix(weight(1), W0, NULL, W1, s1, n_s1);
    float *b = submatrix(weight(0), N_IN, s1, n_s1, NULL, N_IN);
    ck_assert_int_eq(lf_merge_add_product(LF_TEST_COMM, W1, N_IN, n_s1, a, b, ref), LF_OK);
    free(b);
    free(a);
}

/* Largest |M - ref| over all elements (each held by one rank) relative to the largest |ref|;
 * also checks that the ranks hold every element exactly once. Collective. */
static double rel_diff(const lf_dist_matrix_t *M, const float *ref)
{
    double diff = 0.0, big = 0.0;
    int64_t held = 0, total = 0;
    ck_assert(lf_test_all(M != NULL));
    for (int64_t i = 0; i < M->lay.m; i++)
        for (int64_t j = 0; j < M->lay.n; j++) {
            double r = ref[i * M->lay.n + j], v = lf_dist_matrix_get(M, i, j);
            big = fmax(big, fabs(r));
            if (!isnan(v)) {
                held++;
                diff = fmax(diff, fabs(v - r));
            }
        }
    MPI_Allreduce(MPI_IN_PLACE, &diff, 1, MPI_DOUBLE, MPI_MAX, LF_TEST_COMM);
    MPI_Allreduce(&held, &total, 1, MPI_INT64_T, MPI_SUM, LF_TEST_COMM);
    ck_assert_int_eq(total, M->lay.m * M->lay.n);
    ck_assert(big > 0.0);
    return diff / big;
}

START_TEST(test_product_block_sizes)
{
    const float *ref = ref_fold;
    static const int blocks[] = {16, 64, 128};
    for (size_t t = 0; t < sizeof blocks / sizeof blocks[0]; t++) {
        lf_merge_dist_opts_t opts = {.block = blocks[t], .prec = LF_DIST_DOUBLE};
        lf_dist_matrix_t *C = NULL;
        ck_assert_int_eq(lf_merge_dist_product(file, 1, 0, s1, n_s1, NULL, &opts, &C), LF_OK);
        ck_assert_int_eq(C->lay.mb, blocks[t]);
        double d = rel_diff(C, ref);
        ck_assert_msg(d < 1e-5, "block %d: relative difference %g", blocks[t], d);
        lf_dist_matrix_destroy(&C);
    }
}
END_TEST

/* Reads the whole (rows, cols) dataset /out of path on this rank alone. */
static float *read_back(const char *path, int64_t rows, int64_t cols)
{
    float *out = malloc((size_t)(rows * cols) * sizeof *out);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/out", H5P_DEFAULT);
    ck_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    return out;
}

/* A new (rows, cols) float32 dataset /out in path, opened on every rank through MPI-IO. */
static void create_output(const char *path, int64_t rows, int64_t cols, hid_t *f, hid_t *d)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, LF_TEST_COMM, MPI_INFO_NULL);
    *f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols};
    hid_t space = H5Screate_simple(2, dims, NULL);
    *d = H5Dcreate2(*f, "/out", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(space);
    ck_assert(*f >= 0 && *d >= 0);
}

START_TEST(test_skip_accumulate_and_write)
{
    const float *skip = lf_model_block(model, 1, LF_SRC_INPUT)->w;
    float *ref = malloc((size_t)W1 * N_IN * sizeof *ref);
    memcpy(ref, skip, (size_t)W1 * N_IN * sizeof *ref);
    serial_fold(ref);
    lf_merge_dist_opts_t opts = {.block = 64, .prec = LF_DIST_DOUBLE};
    lf_dist_matrix_t *C = NULL;
    ck_assert_int_eq(lf_merge_dist_product(file, 1, 0, s1, n_s1, "/layers/1/skip/input", &opts, &C),
                     LF_OK);
    double d = rel_diff(C, ref);
    ck_assert_msg(d < 1e-5, "skip + product: relative difference %g", d);

    /* Written at an offset into a larger dataset: the block lands there, the rest stays 0. */
    char out[320];
    snprintf(out, sizeof out, "%s/out.h5", tmpdir);
    const int64_t R = W1 + 10, K = N_IN + 7, r0 = 7, c0 = 5;
    hid_t f = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    create_output(out, R, K, &f, &dset);
    ck_assert_int_eq(lf_dist_write(C, dset, r0, c0), LF_OK);
    /* A result that does not fit is refused on every rank. */
    ck_assert_int_eq(lf_dist_write(C, dset, 11, 0), LF_ERR_SHAPE);
    lf_error_clear();
    H5Dclose(dset);
    H5Fclose(f);
    MPI_Barrier(LF_TEST_COMM);
    float *back = read_back(out, R, K);
    double diff = 0.0, big = 0.0;
    bool outside_zero = true;
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < K; j++) {
            float v = back[i * K + j];
            if (i >= r0 && i < r0 + W1 && j >= c0 && j < c0 + N_IN) {
                float r = ref[(i - r0) * N_IN + (j - c0)];
                diff = fmax(diff, fabs((double)v - r));
                big = fmax(big, fabs((double)r));
            } else {
                outside_zero = outside_zero && v == 0.0f;
            }
        }
    ck_assert(lf_test_all(outside_zero));
    ck_assert_msg(lf_test_all(diff / big < 1e-5), "written: relative difference %g", diff / big);
    free(back);

    /* Accumulating into the given C folds the product in a second time. */
    serial_fold(ref);
    ck_assert_int_eq(lf_merge_dist_product(file, 1, 0, s1, n_s1, NULL, &opts, &C), LF_OK);
    d = rel_diff(C, ref);
    ck_assert_msg(d < 1e-5, "second accumulation: relative difference %g", d);
    lf_dist_matrix_destroy(&C);
    free(ref);
}
END_TEST

/* C2 = W2[:, s2] · (W1[s2, s1] · W0[s1, :]), the intermediate kept distributed. */
START_TEST(test_chain_of_two)
{
    const int nb = 128;
    lf_dist_matrix_t *A1 = NULL, *B1 = NULL, *T = NULL, *A2 = NULL, *C2 = NULL;
    ck_assert_int_eq(
        lf_dist_read(file, "/layers/1/weight", s2, n_s2, s1, n_s1, nb, LF_DIST_DOUBLE, &A1), LF_OK);
    ck_assert_int_eq(
        lf_dist_read(file, "/layers/0/weight", s1, n_s1, NULL, 0, nb, LF_DIST_DOUBLE, &B1), LF_OK);
    ck_assert_int_eq(lf_dist_matrix_create(grid, n_s2, N_IN, nb, LF_DIST_DOUBLE, &T), LF_OK);
    ck_assert_int_eq(lf_dist_gemm(A1, B1, T), LF_OK);
    ck_assert_int_eq(
        lf_dist_read(file, "/layers/2/weight", NULL, 0, s2, n_s2, nb, LF_DIST_DOUBLE, &A2), LF_OK);
    ck_assert_int_eq(lf_dist_matrix_create(grid, W2, N_IN, nb, LF_DIST_DOUBLE, &C2), LF_OK);
    ck_assert_int_eq(lf_dist_gemm(A2, T, C2), LF_OK);

    /* Serially: the same two products, each rounded to float32 as the serial fold stores them. */
    float *a1 = submatrix(weight(1), W0, s2, n_s2, s1, n_s1);
    float *b1 = submatrix(weight(0), N_IN, s1, n_s1, NULL, N_IN);
    float *t = calloc((size_t)(n_s2 * N_IN), sizeof *t);
    ck_assert_int_eq(lf_merge_add_product(LF_TEST_COMM, n_s2, N_IN, n_s1, a1, b1, t), LF_OK);
    float *a2 = submatrix(weight(2), W1, NULL, W2, s2, n_s2);
    float *c2 = calloc((size_t)W2 * N_IN, sizeof *c2);
    ck_assert_int_eq(lf_merge_add_product(LF_TEST_COMM, W2, N_IN, n_s2, a2, t, c2), LF_OK);
    double dt = rel_diff(T, t), dc = rel_diff(C2, c2);
    ck_assert_msg(dt < 1e-5 && dc < 1e-5, "chain: intermediate %g, result %g", dt, dc);
    free(c2);
    free(a2);
    free(t);
    free(b1);
    free(a1);
    lf_dist_matrix_destroy(&C2);
    lf_dist_matrix_destroy(&A2);
    lf_dist_matrix_destroy(&T);
    lf_dist_matrix_destroy(&B1);
    lf_dist_matrix_destroy(&A1);
}
END_TEST

START_TEST(test_single_precision)
{
    const float *ref = ref_fold;
    double d[2];
    for (int p = 0; p < 2; p++) {
        lf_merge_dist_opts_t opts = {.block = 64, .prec = p ? LF_DIST_SINGLE : LF_DIST_DOUBLE};
        lf_dist_matrix_t *C = NULL;
        ck_assert_int_eq(lf_merge_dist_product(file, 1, 0, s1, n_s1, NULL, &opts, &C), LF_OK);
        d[p] = rel_diff(C, ref);
        lf_dist_matrix_destroy(&C);
    }
    if (lf_comm_rank(LF_TEST_COMM) == 0)
        printf("merge_dist: k = %lld, relative difference to the serial double merge: double %.3g, "
               "single (psgemm_) %.3g\n",
               (long long)n_s1, d[0], d[1]);
    /* Double differs from the serial result only by its one rounding to float32 (2^-24 of an
     * element); single accumulates float32 roundings over k terms, still far below 1e-4. */
    ck_assert_msg(d[0] < 1e-6, "double: %g", d[0]);
    ck_assert_msg(d[1] > 0.0 && d[1] < 1e-4, "single: %g", d[1]);
}
END_TEST

typedef struct {
    lf_dist_matrix_t *A, *B, *C;
    int who;     /* the rank whose copy is broken */
    int entry;   /* 0-based descriptor entry to break */
    int operand; /* 0: A, 2: C */
} bad_gemm_t;

/* The value at (i, j) of the coded matrices: exact in float32 for i < 1600, j < 2000. */
static float code_at(int64_t i, int64_t j) { return (float)(1 + i * 2000 + j); }

/* Block-cyclic reads with gathered rows and columns put every element where it belongs. */
START_TEST(test_coded_read)
{
    char path[320];
    snprintf(path, sizeof path, "%s/coded.h5", tmpdir);
    if (lf_comm_rank(LF_TEST_COMM) == 0) {
        float *x = malloc((size_t)W0 * W1 * sizeof *x);
        for (int64_t i = 0; i < W0; i++)
            for (int64_t j = 0; j < W1; j++)
                x[i * W1 + j] = code_at(i, j);
        lf_test_write_data(path, "/x", x, W0, W1, NULL, NULL);
        free(x);
    }
    MPI_Barrier(LF_TEST_COMM);
    lf_dist_file_t *cf = NULL;
    ck_assert_int_eq(lf_dist_file_open(grid, path, &cf), LF_OK);
    static const int blocks[] = {16, 64, 128};
    for (size_t t = 0; t < sizeof blocks / sizeof blocks[0]; t++)
        for (int p = 0; p < 3; p++) {
            /* rows s1 and columns s2 (strips); all rows, columns s2; rows s1, all columns (a
             * hyperslab union). */
            const int64_t *rows = p != 1 ? s1 : NULL, *cols = p != 2 ? s2 : NULL;
            int64_t nr = p != 1 ? n_s1 : W0, nc = p != 2 ? n_s2 : W1;
            lf_dist_matrix_t *M = NULL;
            ck_assert_int_eq(lf_dist_read(cf, "/x", rows, n_s1, cols, n_s2, blocks[t],
                                          p == 1 ? LF_DIST_SINGLE : LF_DIST_DOUBLE, &M),
                             LF_OK);
            ck_assert_int_eq(M->lay.m, nr);
            ck_assert_int_eq(M->lay.n, nc);
            int64_t held = 0, total = 0, wrong = 0;
            for (int64_t a = 0; a < nr; a++)
                for (int64_t b = 0; b < nc; b++) {
                    double v = lf_dist_matrix_get(M, a, b);
                    if (!isnan(v)) {
                        held++;
                        wrong += v != code_at(rows ? rows[a] : a, cols ? cols[b] : b);
                    }
                }
            MPI_Allreduce(&held, &total, 1, MPI_INT64_T, MPI_SUM, LF_TEST_COMM);
            ck_assert_int_eq(total, nr * nc);
            ck_assert_msg(lf_test_all(wrong == 0), "block %d, mode %d: %lld elements misplaced",
                          blocks[t], p, (long long)wrong);
            lf_dist_matrix_destroy(&M);
        }
    lf_dist_file_close(&cf);
}
END_TEST

/* Block-cyclic writes at an offset put every element where it belongs and nothing elsewhere. */
START_TEST(test_coded_write)
{
    static const int64_t shapes[][3] = {{W1, N_IN, 64}, {61, 47, 16}, {300, 257, 128}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const int64_t m = shapes[t][0], n = shapes[t][1], r0 = 3, c0 = 2, R = m + 5, K = n + 4;
        const int nb = (int)shapes[t][2];
        lf_dist_matrix_t *M = NULL;
        ck_assert_int_eq(lf_dist_matrix_create(grid, m, n, nb, LF_DIST_DOUBLE, &M), LF_OK);
        for (int lj = 0; lj < M->lay.lcols; lj++)
            for (int li = 0; li < M->lay.lrows; li++)
                ((double *)M->data)[(size_t)lj * (size_t)M->lay.lld + (size_t)li] =
                    code_at(lf_grid_l2g(li, nb, grid->myrow, grid->nprow),
                            lf_grid_l2g(lj, nb, grid->mycol, grid->npcol));
        char path[320];
        snprintf(path, sizeof path, "%s/coded_out%zu.h5", tmpdir, t);
        hid_t f = H5I_INVALID_HID, dset = H5I_INVALID_HID;
        create_output(path, R, K, &f, &dset);
        ck_assert_int_eq(lf_dist_write(M, dset, r0, c0), LF_OK);
        H5Dclose(dset);
        H5Fclose(f);
        MPI_Barrier(LF_TEST_COMM);
        float *back = read_back(path, R, K);
        int64_t wrong = 0;
        for (int64_t i = 0; i < R; i++)
            for (int64_t j = 0; j < K; j++) {
                bool in = i >= r0 && i < r0 + m && j >= c0 && j < c0 + n;
                wrong += back[i * K + j] != (in ? code_at(i - r0, j - c0) : 0.0f);
            }
        ck_assert_msg(lf_test_all(wrong == 0), "(%lld, %lld) in blocks of %d: %lld wrong",
                      (long long)m, (long long)n, nb, (long long)wrong);
        free(back);
        lf_dist_matrix_destroy(&M);
    }
}
END_TEST

/* lf_dist_gemm with one descriptor entry broken on one rank only. */
static lf_err_t run_bad_gemm(bad_gemm_t *b)
{
    lf_dist_matrix_t a = *b->A, c = *b->C;
    if (lf_comm_rank(LF_TEST_COMM) == b->who) {
        int *desc = b->operand == 0 ? a.lay.desc : c.lay.desc;
        desc[b->entry] = b->entry == 1 ? desc[1] + 1000 : 0;
    }
    return lf_dist_gemm(&a, b->B, &c);
}

START_TEST(test_illegal_descriptor)
{
    int size = 0;
    MPI_Comm_size(LF_TEST_COMM, &size);
    bad_gemm_t b = {.who = size - 1};
    ck_assert_int_eq(lf_dist_matrix_create(grid, 50, 40, 16, LF_DIST_DOUBLE, &b.A), LF_OK);
    ck_assert_int_eq(lf_dist_matrix_create(grid, 40, 30, 16, LF_DIST_DOUBLE, &b.B), LF_OK);
    ck_assert_int_eq(lf_dist_matrix_create(grid, 50, 30, 16, LF_DIST_DOUBLE, &b.C), LF_OK);

    /* LLD_ of A (pdgemm_'s argument 10) broken on the last rank only. */
    b.entry = 8;
    b.operand = 0;
    ck_assert_int_eq(run_bad_gemm(&b), LF_ERR_ARG);
    ck_assert(lf_test_any_message("pdgemm_: argument 10 (DESCA) has an illegal descriptor entry "
                                  "9 (LLD_) (info = -1009)"));
    lf_error_clear();
    /* CTXT_ of C (argument 19) broken on rank 0. */
    b.who = 0;
    b.entry = 1;
    b.operand = 2;
    ck_assert_int_eq(run_bad_gemm(&b), LF_ERR_ARG);
    ck_assert(lf_test_any_message("argument 19 (DESCC) has an illegal descriptor entry 2 (CTXT_)"));
    lf_error_clear();

    /* Shapes that do not chain, and blocks that do not conform. */
    ck_assert_int_eq(lf_dist_gemm(b.A, b.A, b.C), LF_ERR_SHAPE);
    lf_error_clear();
    lf_dist_matrix_t *B8 = NULL;
    ck_assert_int_eq(lf_dist_matrix_create(grid, 40, 30, 8, LF_DIST_DOUBLE, &B8), LF_OK);
    ck_assert_int_eq(lf_dist_gemm(b.A, B8, b.C), LF_ERR_ARG);
    ck_assert(lf_test_any_message("block sizes do not conform"));
    lf_error_clear();
    lf_dist_matrix_destroy(&B8);

    /* The grid still works: ones (50, 40) · ones (40, 30) = 40 everywhere. */
    for (size_t t = 0; t < (size_t)b.A->lay.lld * (size_t)b.A->lay.lcols; t++)
        ((double *)b.A->data)[t] = 1.0;
    for (size_t t = 0; t < (size_t)b.B->lay.lld * (size_t)b.B->lay.lcols; t++)
        ((double *)b.B->data)[t] = 1.0;
    ck_assert_int_eq(lf_dist_gemm(b.A, b.B, b.C), LF_OK);
    bool ok = true;
    for (int64_t i = 0; i < 50; i++)
        for (int64_t j = 0; j < 30; j++) {
            double v = lf_dist_matrix_get(b.C, i, j);
            ok = ok && (isnan(v) || v == 40.0);
        }
    ck_assert(lf_test_all(ok));
    lf_dist_matrix_destroy(&b.C);
    lf_dist_matrix_destroy(&b.B);
    lf_dist_matrix_destroy(&b.A);
}
END_TEST

START_TEST(test_failed_allocation)
{
    int size = 0, rank = 0;
    MPI_Comm_size(LF_TEST_COMM, &size);
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    /* 2^30 x 2^30 doubles: 8 EiB over at most 4 ranks. */
    lf_dist_matrix_t *M = NULL;
    ck_assert_int_eq(
        lf_dist_matrix_create(grid, (int64_t)1 << 30, (int64_t)1 << 30, 64, LF_DIST_DOUBLE, &M),
        LF_ERR_NOMEM);
    ck_assert(lf_test_all(M == NULL));
    ck_assert(lf_test_any_message("cannot allocate"));
    lf_error_clear();

    /* Every allocation of a whole merge failing in turn on the last rank only. */
    lf_merge_dist_opts_t opts = {.block = 64, .prec = LF_DIST_DOUBLE};
    int failures = 0;
    for (int k = 0; k < 40; k++) {
        if (rank == size - 1)
            lf_alloc_fail_after(k);
        lf_dist_matrix_t *C = NULL;
        lf_err_t e = lf_merge_dist_product(file, 1, 0, s1, n_s1, "/layers/1/skip/input", &opts, &C);
        lf_alloc_fail_after(-1);
        int code = (int)e, lo = 0, hi = 0;
        MPI_Allreduce(&code, &lo, 1, MPI_INT, MPI_MIN, LF_TEST_COMM);
        MPI_Allreduce(&code, &hi, 1, MPI_INT, MPI_MAX, LF_TEST_COMM);
        ck_assert_msg(lo == hi, "k = %d: ranks returned %d and %d", k, lo, hi);
        ck_assert_msg(e == LF_OK || e == LF_ERR_NOMEM, "k = %d: %s", k, lf_err_name(e));
        ck_assert(lf_test_all(e == LF_OK ? C != NULL : C == NULL));
        failures += e != LF_OK;
        lf_dist_matrix_destroy(&C);
        lf_error_clear();
        if (e == LF_OK)
            break;
    }
    /* The merge allocates several times before it succeeds. */
    ck_assert_int_ge(failures, 5);
}
END_TEST

START_TEST(test_bad_subsets)
{
    lf_dist_matrix_t *M = NULL;
    int64_t unsorted[] = {3, 2, 9}, outside[] = {1, W0};
    ck_assert_int_eq(
        lf_dist_read(file, "/layers/1/weight", NULL, 0, unsorted, 3, 16, LF_DIST_DOUBLE, &M),
        LF_ERR_ARG);
    ck_assert(lf_test_any_message("not strictly increasing"));
    lf_error_clear();
    ck_assert_int_eq(
        lf_dist_read(file, "/layers/1/weight", NULL, 0, outside, 2, 16, LF_DIST_DOUBLE, &M),
        LF_ERR_ARG);
    lf_error_clear();
    ck_assert_int_eq(
        lf_dist_read(file, "/layers/7/weight", NULL, 0, NULL, 0, 16, LF_DIST_DOUBLE, &M),
        LF_ERR_FORMAT);
    ck_assert(lf_test_any_message("/layers/7"));
    lf_error_clear();
    ck_assert(lf_test_all(M == NULL));
    /* A skip block of the wrong shape. */
    lf_merge_dist_opts_t opts = {.block = 16, .prec = LF_DIST_DOUBLE};
    ck_assert_int_eq(lf_merge_dist_product(file, 2, 1, s2, n_s2, "/layers/1/skip/input", &opts, &M),
                     LF_ERR_SHAPE);
    lf_error_clear();
    ck_assert(lf_test_all(M == NULL));
    /* A file that does not exist. */
    lf_dist_file_t *none = NULL;
    char path[320];
    snprintf(path, sizeof path, "%s/missing.h5", tmpdir);
    ck_assert_int_eq(lf_dist_file_open(grid, path, &none), LF_ERR_IO);
    ck_assert(lf_test_all(none == NULL));
    lf_error_clear();
}
END_TEST

/* ---- lf_dist_select and lf_dist_matvec_add on a matrix of known values ---- */

/* 257 x 1000: neither a multiple of 16 nor of 64. */
enum { KM = 257, KN = 1000 };

/* Element (i, j) of the known matrix: exact in float32 (below 2^18, one binary digit after the
 * point), and different for every (i, j). */
static double known_at(int64_t i, int64_t j) { return (double)i * 1000.0 + (double)j + 0.5; }

/* A new (m, n) matrix in blocks of nb with element (i, j) = known_at(i, j), filled by a walk of
 * the local elements. */
static lf_dist_matrix_t *known_matrix(int64_t m, int64_t n, int nb, lf_dist_prec_t prec)
{
    lf_dist_matrix_t *M = NULL;
    ck_assert_int_eq(lf_dist_matrix_create(grid, m, n, nb, prec, &M), LF_OK);
    for (int lj = 0; lj < M->lay.lcols; lj++)
        for (int li = 0; li < M->lay.lrows; li++) {
            double v = known_at(lf_grid_l2g(li, nb, grid->myrow, grid->nprow),
                                lf_grid_l2g(lj, nb, grid->mycol, grid->npcol));
            size_t at = (size_t)lj * (size_t)M->lay.lld + (size_t)li;
            if (prec == LF_DIST_SINGLE)
                ((float *)M->data)[at] = (float)v;
            else
                ((double *)M->data)[at] = v;
        }
    return M;
}

/* Checks that R = M[rows, cols] for M = known_matrix(...): R's shape, precision and blocks, every
 * local element of R (walked with lf_grid_l2g), and that the ranks hold nr * nc elements in all.
 * Collective. */
static void check_selected(const lf_dist_matrix_t *R, int nb, lf_dist_prec_t prec,
                           const int64_t *rows, int64_t nr, const int64_t *cols, int64_t nc,
                           const char *what)
{
    ck_assert(lf_test_all(R != NULL));
    ck_assert_msg(R->lay.m == nr && R->lay.n == nc, "%s: (%lld, %lld), expected (%lld, %lld)", what,
                  (long long)R->lay.m, (long long)R->lay.n, (long long)nr, (long long)nc);
    ck_assert(R->grid == grid && R->prec == prec && R->lay.mb == nb && R->lay.nb == nb);
    ck_assert_int_eq(R->lay.lrows, lf_grid_numroc(nr, nb, grid->myrow, grid->nprow));
    ck_assert_int_eq(R->lay.lcols, lf_grid_numroc(nc, nb, grid->mycol, grid->npcol));
    int64_t wrong = 0, held = (int64_t)R->lay.lrows * R->lay.lcols, total = 0;
    for (int lj = 0; lj < R->lay.lcols; lj++)
        for (int li = 0; li < R->lay.lrows; li++) {
            int64_t a = lf_grid_l2g(li, nb, grid->myrow, grid->nprow);
            int64_t b = lf_grid_l2g(lj, nb, grid->mycol, grid->npcol);
            double want = known_at(rows ? rows[a] : a, cols ? cols[b] : b);
            size_t at = (size_t)lj * (size_t)R->lay.lld + (size_t)li;
            double v = prec == LF_DIST_SINGLE ? (double)((const float *)R->data)[at]
                                              : ((const double *)R->data)[at];
            wrong += v != want;
            /* The same element through the public accessor. */
            wrong += lf_dist_matrix_get(R, a, b) != want;
        }
    MPI_Allreduce(&held, &total, 1, MPI_INT64_T, MPI_SUM, LF_TEST_COMM);
    ck_assert_int_eq(total, nr * nc);
    ck_assert_msg(lf_test_all(wrong == 0), "%s: %lld elements wrong", what, (long long)wrong);
}

/* A seeded strictly increasing subset of [0, n) keeping about keep of every 8 indices (the same
 * on every rank). */
static int64_t random_subset(int64_t n, uint64_t seed, int keep, int64_t *out)
{
    lf_rng_t rng = {seed};
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if ((int)(lf_rng_next(&rng) % 8) < keep)
            out[k++] = i;
    return k;
}

START_TEST(test_select_known)
{
    int64_t third[KN], rnd_rows[KM], rnd_cols[KN], few[KN], one_col[] = {KN - 1},
                                                            one_row[] = {KM - 1}, mid[] = {65};
    int64_t n_third_r = 0, n_third_c = 0;
    for (int64_t i = 0; i < KN; i += 3)
        third[n_third_c++] = i;
    for (int64_t i = 0; i < KM; i += 3)
        n_third_r++;
    int64_t n_rnd_r = random_subset(KM, 101, 3, rnd_rows);
    int64_t n_rnd_c = random_subset(KN, 102, 5, rnd_cols);
    int64_t n_few = random_subset(KN, 103, 1, few);
    ck_assert(n_rnd_r > 0 && n_rnd_r < KM && n_rnd_c > 0 && n_rnd_c < KN && n_few > 0);
    const struct {
        const int64_t *rows;
        int64_t nr;
        const int64_t *cols;
        int64_t nc;
        const char *what;
    } cases[] = {
        {third, n_third_r, NULL, 0, "every third row, all columns"},
        {rnd_rows, n_rnd_r, rnd_cols, n_rnd_c, "random rows and columns"},
        {NULL, 0, few, n_few, "all rows, a sparse random column subset"},
        {NULL, 0, one_col, 1, "all rows, the last column"},
        {one_row, 1, third, n_third_c, "the last row, every third column"},
        {mid, 1, mid, 1, "one element"},
        {NULL, 0, NULL, 0, "everything"},
        {third, 0, NULL, 0, "no rows"},
        {NULL, 0, third, 0, "no columns"},
        {third, 0, third, 0, "nothing"},
    };
    static const int blocks[] = {16, 64};
    for (int p = 0; p < 2; p++)
        for (size_t t = 0; t < sizeof blocks / sizeof blocks[0]; t++) {
            lf_dist_prec_t prec = p ? LF_DIST_SINGLE : LF_DIST_DOUBLE;
            lf_dist_matrix_t *M = known_matrix(KM, KN, blocks[t], prec);
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
                lf_dist_matrix_t *R = NULL;
                ck_assert_int_eq(
                    lf_dist_select(M, cases[c].rows, cases[c].nr, cases[c].cols, cases[c].nc, &R),
                    LF_OK);
                check_selected(R, blocks[t], prec, cases[c].rows, cases[c].rows ? cases[c].nr : KM,
                               cases[c].cols, cases[c].cols ? cases[c].nc : KN, cases[c].what);
                lf_dist_matrix_destroy(&R);
            }
            /* M itself is left as it was. */
            check_selected(M, blocks[t], prec, NULL, KM, NULL, KN, "the source");
            lf_dist_matrix_destroy(&M);
        }
}
END_TEST

/* Selections compose: M[r1, c1][r2, c2] = M[r1[r2], c1[c2]], here with blocks larger than the
 * result (one block holds it all, on process (0, 0)). */
START_TEST(test_select_twice)
{
    lf_dist_matrix_t *M = known_matrix(KM, KN, 128, LF_DIST_DOUBLE), *A = NULL, *B = NULL;
    int64_t r1[KM], c1[KN], r2[KM], c2[KN], r[KM], c[KN];
    int64_t n_r1 = random_subset(KM, 201, 4, r1), n_c1 = random_subset(KN, 202, 2, c1);
    int64_t n_r2 = random_subset(n_r1, 203, 4, r2), n_c2 = random_subset(n_c1, 204, 2, c2);
    for (int64_t k = 0; k < n_r2; k++)
        r[k] = r1[r2[k]];
    for (int64_t k = 0; k < n_c2; k++)
        c[k] = c1[c2[k]];
    ck_assert(n_r2 < 128 && n_c2 < 128);
    ck_assert_int_eq(lf_dist_select(M, r1, n_r1, c1, n_c1, &A), LF_OK);
    ck_assert_int_eq(lf_dist_select(A, r2, n_r2, c2, n_c2, &B), LF_OK);
    check_selected(B, 128, LF_DIST_DOUBLE, r, n_r2, c, n_c2, "selection of a selection");
    lf_dist_matrix_destroy(&B);
    lf_dist_matrix_destroy(&A);
    lf_dist_matrix_destroy(&M);
}
END_TEST

START_TEST(test_select_illegal)
{
    int size = 0, rank = 0;
    MPI_Comm_size(LF_TEST_COMM, &size);
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    lf_dist_matrix_t *M = known_matrix(KM, KN, 16, LF_DIST_DOUBLE), *R = NULL;
    int64_t unsorted[] = {3, 2, 9}, repeated[] = {4, 5, 5}, negative[] = {-1, 4},
            past_rows[] = {0, KM}, past_cols[] = {10, KN}, good[] = {1, 2, 3};
    const struct {
        const int64_t *rows;
        int64_t nr;
        const int64_t *cols;
        int64_t nc;
    } cases[] = {
        {unsorted, 3, NULL, 0}, {NULL, 0, unsorted, 3},  {repeated, 3, good, 3},
        {good, 3, negative, 2}, {past_rows, 2, NULL, 0}, {NULL, 0, past_cols, 2},
        {good, -1, NULL, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        R = NULL;
        ck_assert_int_eq(
            lf_dist_select(M, cases[c].rows, cases[c].nr, cases[c].cols, cases[c].nc, &R),
            LF_ERR_ARG);
        ck_assert(lf_test_all(R == NULL));
        ck_assert(lf_test_any_message("lf_dist_select"));
        lf_error_clear();
    }
    /* A list broken on the last rank only is refused on every rank too. */
    const int64_t *rows = rank == size - 1 ? unsorted : good;
    ck_assert_int_eq(lf_dist_select(M, rows, 3, NULL, 0, &R), LF_ERR_ARG);
    ck_assert(lf_test_all(R == NULL));
    lf_error_clear();
    /* The grid still works afterwards. */
    ck_assert_int_eq(lf_dist_select(M, good, 3, good, 3, &R), LF_OK);
    check_selected(R, 16, LF_DIST_DOUBLE, good, 3, good, 3, "after the errors");
    lf_dist_matrix_destroy(&R);
    lf_dist_matrix_destroy(&M);
}
END_TEST

START_TEST(test_select_failed_allocation)
{
    int size = 0, rank = 0;
    MPI_Comm_size(LF_TEST_COMM, &size);
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    lf_dist_matrix_t *M = known_matrix(KM, KN, 16, LF_DIST_SINGLE);
    int64_t rows[KM], cols[KN];
    int64_t nr = random_subset(KM, 301, 5, rows), nc = random_subset(KN, 302, 3, cols);
    /* Every allocation of the selection failing in turn on the last rank only. */
    int failures = 0;
    lf_err_t e = LF_OK;
    lf_dist_matrix_t *R = NULL;
    for (int k = 0; k < 40; k++) {
        if (rank == size - 1)
            lf_alloc_fail_after(k);
        e = lf_dist_select(M, rows, nr, cols, nc, &R);
        lf_alloc_fail_after(-1);
        int code = (int)e, lo = 0, hi = 0;
        MPI_Allreduce(&code, &lo, 1, MPI_INT, MPI_MIN, LF_TEST_COMM);
        MPI_Allreduce(&code, &hi, 1, MPI_INT, MPI_MAX, LF_TEST_COMM);
        ck_assert_msg(lo == hi, "k = %d: ranks returned %d and %d", k, lo, hi);
        ck_assert_msg(e == LF_OK || e == LF_ERR_NOMEM, "k = %d: %s", k, lf_err_name(e));
        ck_assert(lf_test_all(e == LF_OK ? R != NULL : R == NULL));
        if (e != LF_OK)
            ck_assert(lf_test_any_message("injected allocation failure"));
        failures += e != LF_OK;
        lf_error_clear();
        if (e == LF_OK)
            break;
    }
    ck_assert_int_eq(e, LF_OK);
    /* The result's two blocks, the index maps, the counts and the two buffers. */
    ck_assert_int_ge(failures, 5);
    check_selected(R, 16, LF_DIST_SINGLE, rows, nr, cols, nc, "after the failures");
    lf_dist_matrix_destroy(&R);
    lf_dist_matrix_destroy(&M);
}
END_TEST

/* y (m) += M · v as documented: each process column pc sums its own columns of a row in
 * increasing order from 0.0, and the rows' totals add the process columns' sums in order
 * 0, 1, ... before the one addition to y. Serial, from the known values. */
static void matvec_in_order(int64_t m, int64_t n, int nb, const double *v, double *y)
{
    for (int64_t i = 0; i < m; i++) {
        double total = 0.0;
        for (int pc = 0; pc < grid->npcol; pc++) {
            double acc = 0.0;
            for (int64_t j = 0; j < n; j++)
                if ((j / nb) % grid->npcol == pc)
                    acc += known_at(i, j) * v[j];
            total += acc;
        }
        y[i] += total;
    }
}

START_TEST(test_matvec_known)
{
    static const struct {
        int64_t m, n;
        int nb;
    } shapes[] = {
        {KM, KN, 16}, {KM, KN, 64}, /* partial last blocks */
        {10, 5, 16},                /* one block: the other processes hold nothing */
        {40, 3, 16},                /* some process columns hold no column */
        {0, 7, 16},                 /* no rows */
    };
    double *v = malloc(KN * sizeof *v), *y = malloc(KM * sizeof *y), *y0 = malloc(KM * sizeof *y0);
    double *ord = malloc(KM * sizeof *ord);
    double *root = malloc(KM * sizeof *root);
    /* v mostly positive, with bits down to 2^-54: the process columns' partial sums then round
     * when added (cancelling ones, within a factor of two of each other, add exactly in any
     * order and would not show the order). */
    lf_rng_t rng = {401};
    for (int64_t j = 0; j < KN; j++)
        v[j] = lf_rng_uniform(&rng, -0.25f, 1.0f) + ldexp(lf_rng_uniform(&rng, 0.0f, 1.0f), -30);
    for (int64_t i = 0; i < KM; i++)
        y0[i] = lf_rng_uniform(&rng, -1000.0f, 1000.0f);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int p = 0; p < 2; p++) {
            const int64_t m = shapes[s].m, n = shapes[s].n;
            const int nb = shapes[s].nb;
            lf_dist_matrix_t *M = known_matrix(m, n, nb, p ? LF_DIST_SINGLE : LF_DIST_DOUBLE);
            memcpy(y, y0, KM * sizeof *y);
            memcpy(ord, y0, KM * sizeof *ord);
            ck_assert_int_eq(lf_dist_matvec_add(M, v, y), LF_OK);
            /* Against a plain double loop, relative to the sum of the magnitudes of the terms. */
            double worst = 0.0;
            for (int64_t i = 0; i < m; i++) {
                double sum = y0[i], mag = fabs(y0[i]);
                for (int64_t j = 0; j < n; j++) {
                    sum += known_at(i, j) * v[j];
                    mag += fabs(known_at(i, j) * v[j]);
                }
                worst = fmax(worst, fabs(y[i] - sum) / mag);
            }
            ck_assert_msg(lf_test_all(worst < 1e-12), "(%lld, %lld) in blocks of %d: %g",
                          (long long)m, (long long)n, nb, worst);
            /* Exactly the documented order of additions, bit for bit. */
            matvec_in_order(m, n, nb, v, ord);
            ck_assert(lf_test_all(memcmp(y, ord, (size_t)m * sizeof *y) == 0));
            /* The same bits on every rank; the rest of y untouched. */
            memcpy(root, y, KM * sizeof *y);
            MPI_Bcast(root, KM, MPI_DOUBLE, 0, LF_TEST_COMM);
            ck_assert(lf_test_all(memcmp(y, root, KM * sizeof *y) == 0));
            ck_assert(lf_test_all(memcmp(y + m, y0 + m, (size_t)(KM - m) * sizeof *y) == 0));
            lf_dist_matrix_destroy(&M);
        }
    /* Allocation failures on the last rank only end on every rank with the same code. */
    int size = 0, rank = 0, failures = 0;
    MPI_Comm_size(LF_TEST_COMM, &size);
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    lf_dist_matrix_t *M = known_matrix(KM, KN, 16, LF_DIST_DOUBLE);
    for (int k = 0; k < 20; k++) {
        memcpy(y, y0, KM * sizeof *y);
        if (rank == size - 1)
            lf_alloc_fail_after(k);
        lf_err_t e = lf_dist_matvec_add(M, v, y);
        lf_alloc_fail_after(-1);
        int code = (int)e, lo = 0, hi = 0;
        MPI_Allreduce(&code, &lo, 1, MPI_INT, MPI_MIN, LF_TEST_COMM);
        MPI_Allreduce(&code, &hi, 1, MPI_INT, MPI_MAX, LF_TEST_COMM);
        ck_assert_msg(lo == hi, "k = %d: ranks returned %d and %d", k, lo, hi);
        ck_assert_msg(e == LF_OK || e == LF_ERR_NOMEM, "k = %d: %s", k, lf_err_name(e));
        failures += e != LF_OK;
        lf_error_clear();
        if (e == LF_OK)
            break;
    }
    ck_assert_int_ge(failures, 2);
    lf_dist_matrix_destroy(&M);
    free(root);
    free(ord);
    free(y0);
    free(y);
    free(v);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("merge_dist");
    TCase *tc = tcase_create("core");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_product_block_sizes);
    tcase_add_test(tc, test_skip_accumulate_and_write);
    tcase_add_test(tc, test_chain_of_two);
    tcase_add_test(tc, test_single_precision);
    tcase_add_test(tc, test_coded_read);
    tcase_add_test(tc, test_coded_write);
    tcase_add_test(tc, test_illegal_descriptor);
    tcase_add_test(tc, test_failed_allocation);
    tcase_add_test(tc, test_bad_subsets);
    tcase_add_test(tc, test_select_known);
    tcase_add_test(tc, test_select_twice);
    tcase_add_test(tc, test_select_illegal);
    tcase_add_test(tc, test_select_failed_allocation);
    tcase_add_test(tc, test_matvec_known);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
