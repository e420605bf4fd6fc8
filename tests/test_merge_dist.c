/* Distributed merges against the serial lf_merge_add_product: block-cyclic reads of column and
 * row subsets from a model file, pdgemm_ and psgemm_, accumulation into a skip block, a chain of
 * two folds kept distributed, block-cyclic writes, and error paths that end on every rank. */
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
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
