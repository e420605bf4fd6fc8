/* The BLACS grid: its shape for every rank count, placement on the world and on a
 * sub-communicator, the block-cyclic maps against ScaLAPACK's own NUMROC, descriptors, and the
 * decoding of ScaLAPACK info codes. */
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/comm.h"
#include "linfold/grid.h"
#include "linfold/merge_dist.h"

START_TEST(test_shape_table)
{
    /* p: expected pr x pc, the largest divisor of p not above sqrt(p) by hand. */
    static const int want[][3] = {{1, 1, 1},  {2, 1, 2},  {3, 1, 3},  {4, 2, 2},  {5, 1, 5},
                                  {6, 2, 3},  {7, 1, 7},  {8, 2, 4},  {9, 3, 3},  {10, 2, 5},
                                  {12, 3, 4}, {16, 4, 4}, {18, 3, 6}, {36, 6, 6}, {97, 1, 97}};
    for (size_t t = 0; t < sizeof want / sizeof want[0]; t++) {
        int pr = 0, pc = 0;
        lf_grid_shape(want[t][0], &pr, &pc);
        ck_assert_msg(pr == want[t][1] && pc == want[t][2], "p = %d: %d x %d, expected %d x %d",
                      want[t][0], pr, pc, want[t][1], want[t][2]);
    }
}
END_TEST

START_TEST(test_world_grid)
{
    int rank = 0, size = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    /* The grids the suite runs on: 1x1, 1x2, 1x3, 2x2. */
    static const int rows[] = {0, 1, 1, 1, 2}, cols[] = {0, 1, 2, 3, 2};
    lf_grid_t *g = NULL;
    ck_assert_int_eq(lf_grid_create(LF_TEST_COMM, &g), LF_OK);
    ck_assert_int_eq(g->size, size);
    if (size <= 4) {
        ck_assert_int_eq(g->nprow, rows[size]);
        ck_assert_int_eq(g->npcol, cols[size]);
    }
    ck_assert_int_eq(g->myrow, rank / g->npcol);
    ck_assert_int_eq(g->mycol, rank % g->npcol);
    /* Two grids at once, then both released. */
    lf_grid_t *h = NULL;
    ck_assert_int_eq(lf_grid_create(LF_TEST_COMM, &h), LF_OK);
    ck_assert_int_ne(h->ctxt, g->ctxt);
    lf_grid_destroy(&h);
    ck_assert_ptr_null(h);
    lf_grid_destroy(&g);
    ck_assert_ptr_null(g);
}
END_TEST

/* The tall grids: 1x1, 2x1, 3x1, 2x2, placed in row-major order; a descriptor on one is legal. */
START_TEST(test_tall_grid)
{
    int rank = 0, size = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    static const int rows[] = {0, 1, 2, 3, 2}, cols[] = {0, 1, 1, 1, 2};
    lf_grid_t *g = NULL;
    ck_assert_int_eq(lf_grid_create_tall(LF_TEST_COMM, &g), LF_OK);
    if (size <= 4) {
        ck_assert_int_eq(g->nprow, rows[size]);
        ck_assert_int_eq(g->npcol, cols[size]);
    }
    ck_assert_int_ge(g->nprow, g->npcol);
    ck_assert_int_eq(g->nprow * g->npcol, size);
    ck_assert_int_eq(g->myrow, rank / g->npcol);
    ck_assert_int_eq(g->mycol, rank % g->npcol);
    lf_grid_layout_t lay;
    ck_assert_int_eq(lf_grid_layout(g, 1000, 37, 64, 64, &lay), LF_OK);
    ck_assert_int_eq(lay.lrows, lf_grid_numroc(1000, 64, g->myrow, g->nprow));
    ck_assert_int_eq(lf_grid_desc_info(g, lay.desc, 1), 0);
    lf_grid_destroy(&g);
}
END_TEST

/* A grid on half the ranks computes a product on them alone: ones (m, k) · ones (k, n) = k. */
START_TEST(test_subcomm_grid)
{
    int rank = 0, size = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    MPI_Comm sub = MPI_COMM_NULL;
    /* Ranks 0, 2, ... and 1, 3, ...: two grids side by side when size >= 2. */
    MPI_Comm_split(LF_TEST_COMM, rank % 2, rank, &sub);
    int sub_size = 0;
    MPI_Comm_size(sub, &sub_size);
    lf_grid_t *g = NULL;
    ck_assert_int_eq(lf_grid_create(sub, &g), LF_OK);
    ck_assert_int_eq(g->size, sub_size);
    ck_assert_int_eq(g->nprow * g->npcol, sub_size);
    const int64_t m = 37, k = 29 + rank % 2, n = 41;
    lf_dist_matrix_t *A = NULL, *B = NULL, *C = NULL;
    ck_assert_int_eq(lf_dist_matrix_create(g, m, k, 8, LF_DIST_DOUBLE, &A), LF_OK);
    ck_assert_int_eq(lf_dist_matrix_create(g, k, n, 8, LF_DIST_DOUBLE, &B), LF_OK);
    ck_assert_int_eq(lf_dist_matrix_create(g, m, n, 8, LF_DIST_DOUBLE, &C), LF_OK);
    for (size_t t = 0; t < (size_t)A->lay.lld * (size_t)A->lay.lcols; t++)
        ((double *)A->data)[t] = 1.0;
    for (size_t t = 0; t < (size_t)B->lay.lld * (size_t)B->lay.lcols; t++)
        ((double *)B->data)[t] = 1.0;
    ck_assert_int_eq(lf_dist_gemm(A, B, C), LF_OK);
    int64_t held = 0;
    bool ok = true;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double v = lf_dist_matrix_get(C, i, j);
            if (v == v) {
                held++;
                ok = ok && v == (double)k;
            }
        }
    ck_assert(lf_test_all(ok));
    int64_t total = 0;
    MPI_Allreduce(&held, &total, 1, MPI_INT64_T, MPI_SUM, sub);
    ck_assert_int_eq(total, m * n);
    lf_dist_matrix_destroy(&C);
    lf_dist_matrix_destroy(&B);
    lf_dist_matrix_destroy(&A);
    lf_grid_destroy(&g);
    MPI_Comm_free(&sub);
}
END_TEST

START_TEST(test_numroc_and_maps)
{
    static const int64_t ns[] = {0, 1, 15, 16, 17, 63, 64, 65, 1000, 1537};
    static const int nbs[] = {1, 16, 64, 128};
    bool ok = true;
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof nbs / sizeof nbs[0]; b++)
            for (int np = 1; np <= 5; np++) {
                int64_t sum = 0;
                for (int p = 0; p < np; p++) {
                    int n = (int)ns[a], zero = 0;
                    int64_t mine = lf_grid_numroc(ns[a], nbs[b], p, np);
                    ok = ok && mine == numroc_(&n, &nbs[b], &p, &zero, &np);
                    sum += mine;
                }
                ok = ok && sum == ns[a];
                /* Every global index has one owner and one local place, and maps back. */
                int64_t *next = calloc((size_t)np, sizeof *next);
                for (int64_t gi = 0; gi < ns[a]; gi++) {
                    int owner = -1;
                    int64_t li = -1;
                    lf_grid_g2l(gi, nbs[b], np, &owner, &li);
                    ok = ok && owner >= 0 && owner < np && li == next[owner]++;
                    ok = ok && lf_grid_l2g(li, nbs[b], owner, np) == gi;
                }
                free(next);
            }
    ck_assert(ok);
}
END_TEST

START_TEST(test_layout_and_desc)
{
    lf_grid_t *g = NULL;
    ck_assert_int_eq(lf_grid_create(LF_TEST_COMM, &g), LF_OK);
    lf_grid_layout_t lay;
    ck_assert_int_eq(lf_grid_layout(g, 1000, 1537, 64, 16, &lay), LF_OK);
    int m = 1000, n = 1537, mb = 64, nb = 16, zero = 0;
    ck_assert_int_eq(lay.lrows, numroc_(&m, &mb, &g->myrow, &zero, &g->nprow));
    ck_assert_int_eq(lay.lcols, numroc_(&n, &nb, &g->mycol, &zero, &g->npcol));
    ck_assert_int_eq(lay.lld, lay.lrows > 1 ? lay.lrows : 1);
    int64_t elems = (int64_t)lay.lrows * lay.lcols, total = 0;
    MPI_Allreduce(&elems, &total, 1, MPI_INT64_T, MPI_SUM, LF_TEST_COMM);
    ck_assert_int_eq(total, (int64_t)1000 * 1537);
    /* descinit_'s descriptor: type 1, the grid's context, shape, blocks, source 0, lld. */
    const int want[LF_DESC_LEN] = {1, g->ctxt, 1000, 1537, 64, 16, 0, 0, lay.lld};
    ck_assert_mem_eq(lay.desc, want, sizeof want);
    ck_assert_int_eq(lf_grid_desc_info(g, lay.desc, 10), 0);
    /* Each entry broken in turn gives -(arg * 100 + entry). */
    static const int bad[LF_DESC_LEN] = {2, -7, -1, -1, 0, 0, 1, 1, 0};
    for (int e = 0; e < LF_DESC_LEN; e++) {
        int d[LF_DESC_LEN];
        memcpy(d, lay.desc, sizeof d);
        d[e] = e == 1 ? g->ctxt + 1000 : bad[e];
        ck_assert_int_eq(lf_grid_desc_info(g, d, 14), -(1400 + e + 1));
    }
    /* Illegal layouts are refused before descinit_. */
    ck_assert_int_eq(lf_grid_layout(g, 10, 10, 0, 4, &lay), LF_ERR_ARG);
    ck_assert_int_eq(lf_grid_layout(g, -1, 10, 4, 4, &lay), LF_ERR_ARG);
    ck_assert_int_eq(lf_grid_layout(g, (int64_t)3 << 30, 10, 4, 4, &lay), LF_ERR_OVERFLOW);
    lf_error_clear();
    lf_grid_destroy(&g);
}
END_TEST

static bool message_has(const char *a, const char *b)
{
    const char *msg = lf_error_message();
    return strstr(msg, a) && (!b || strstr(msg, b));
}

START_TEST(test_info_codes)
{
    ck_assert_int_eq(lf_grid_info_check("pdgemm_", 0), LF_OK);
    struct {
        const char *routine;
        int info;
        lf_err_t code;
        const char *a, *b;
    } cases[] = {
        {"pdgemm_", -1009, LF_ERR_ARG, "argument 10 (DESCA)", "entry 9 (LLD_)"},
        {"psgemm_", -1402, LF_ERR_ARG, "argument 14 (DESCB)", "entry 2 (CTXT_)"},
        {"pdgemm_", -1905, LF_ERR_ARG, "argument 19 (DESCC)", "entry 5 (MB_)"},
        {"pdgemm_", -3, LF_ERR_ARG, "argument 3 (M)", "illegal value"},
        {"descinit_", -9, LF_ERR_ARG, "argument 9 (LLD)", NULL},
        {"pdgemr2d_", -606, LF_ERR_ARG, "argument 6 (DESCA)", "entry 6 (NB_)"},
        {"pdposv_", 5, LF_ERR_INTERNAL, "leading minor of order 5", NULL},
        {"pdgesv_", 3, LF_ERR_INTERNAL, "pdgesv_", "numerical failure (info = 3)"},
        {"pdfoo_", -7, LF_ERR_ARG, "pdfoo_: argument 7 has an illegal value", NULL},
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        lf_error_clear();
        ck_assert_int_eq(lf_grid_info_check(cases[t].routine, cases[t].info), cases[t].code);
        ck_assert_msg(message_has(cases[t].a, cases[t].b), "%s %d: '%s'", cases[t].routine,
                      cases[t].info, lf_error_message());
    }
    lf_error_clear();
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("grid");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_shape_table);
    tcase_add_test(tc, test_world_grid);
    tcase_add_test(tc, test_tall_grid);
    tcase_add_test(tc, test_subcomm_grid);
    tcase_add_test(tc, test_numroc_and_maps);
    tcase_add_test(tc, test_layout_and_desc);
    tcase_add_test(tc, test_info_codes);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
