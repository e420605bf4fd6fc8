/* Rank-count-invariant sums (tree_sum.h): the total is the documented pairwise tree over the
 * global groups, bit for bit, however the groups are split over ranks; values are chosen so that
 * the association matters (a running sum gives other bits). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/tree_sum.h"

enum { LEN = 6, GROUPS = 37 };

/* Group g's vector: magnitudes from 1e-8 to 1e16 and both signs, so that rounding depends on
 * the order of the additions. */
static void group_vector(int64_t g, double *v)
{
    lf_rng_t rng = {(uint64_t)g * 2654435761u + 7};
    for (int k = 0; k < LEN; k++) {
        double scale = pow(10.0, (double)(lf_rng_next(&rng) % 25) - 8.0);
        v[k] = (lf_rng_uniform(&rng, -1.0f, 1.0f)) * scale;
    }
}

/* The documented tree, computed directly: node (level, index) over groups [0, n). */
static void reference(int level, int64_t index, int64_t n, double *out)
{
    int64_t lo = index << level;
    if (level == 0) {
        group_vector(index, out);
        return;
    }
    int64_t mid = lo + ((int64_t)1 << (level - 1));
    reference(level - 1, 2 * index, n, out);
    if (mid >= n)
        return; /* the right child holds no group */
    double right[LEN];
    reference(level - 1, 2 * index + 1, n, right);
    for (int k = 0; k < LEN; k++)
        out[k] += right[k];
}

static void tree_total(int64_t n, double *out)
{
    int level = 0;
    while (((int64_t)1 << level) < n)
        level++;
    if (n == 0)
        memset(out, 0, LEN * sizeof *out);
    else
        reference(level, 0, n, out);
}

/* Runs the tree with the groups split at the given cut points (cuts[r] = rank r's first group;
 * ranks beyond size - 1 unused) and returns the total. */
static void run_split(int64_t n, const int64_t *cuts, double *total)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    lf_tree_sum_t *t = NULL;
    ck_assert_int_eq(lf_tree_sum_create(LEN, n, &t), LF_OK);
    int64_t hi = rank + 1 < size ? cuts[rank + 1] : n;
    for (int64_t g = cuts[rank]; g < hi; g++) {
        double v[LEN];
        group_vector(g, v);
        ck_assert_int_eq(lf_tree_sum_push(t, g, v), LF_OK);
    }
    ck_assert_int_eq(lf_tree_sum_finish(LF_TEST_COMM, t, total), LF_OK);
    lf_tree_sum_destroy(&t);
}

START_TEST(test_total_is_the_tree_at_any_split)
{
    int size = 1;
    MPI_Comm_size(LF_TEST_COMM, &size);
    double want[LEN], got[LEN], running[LEN] = {0};
    tree_total(GROUPS, want);
    /* The values make the association visible: a running sum differs. */
    for (int64_t g = 0; g < GROUPS; g++) {
        double v[LEN];
        group_vector(g, v);
        for (int k = 0; k < LEN; k++)
            running[k] += v[k];
    }
    ck_assert(memcmp(running, want, sizeof want) != 0);
    /* Even shares, uneven shares, and ranks with no group at all. */
    int64_t splits[4][4] = {{0, 9, 18, 28}, {0, 1, 2, 3}, {0, 30, 30, 36}, {0, 0, 0, 37}};
    for (int s = 0; s < 4; s++) {
        int64_t cuts[4];
        memcpy(cuts, splits[s], sizeof cuts);
        for (int r = size; r < 4; r++)
            cuts[r] = GROUPS; /* unused */
        run_split(GROUPS, cuts, got);
        ck_assert_mem_eq(got, want, sizeof want);
    }
    /* Group counts around powers of two, one group, none. */
    const int64_t counts[] = {1, 2, 3, 7, 8, 9, 16, 17, 0};
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
        int64_t n = counts[c], cuts[4];
        for (int r = 0; r < 4; r++)
            cuts[r] = n * r / (size > 0 ? size : 1);
        tree_total(n, want);
        run_split(n, cuts, got);
        ck_assert_mem_eq(got, want, sizeof want);
    }
}
END_TEST

START_TEST(test_out_of_order_is_refused)
{
    lf_tree_sum_t *t = NULL;
    double v[LEN] = {0};
    ck_assert_int_eq(lf_tree_sum_create(LEN, 5, &t), LF_OK);
    ck_assert_int_eq(lf_tree_sum_push(t, 2, v), LF_OK);
    ck_assert_int_eq(lf_tree_sum_push(t, 4, v), LF_ERR_ARG);
    ck_assert_int_eq(lf_tree_sum_push(t, 5, v), LF_ERR_ARG);
    lf_error_clear();
    lf_tree_sum_destroy(&t);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("tree_sum");
    TCase *tc = tcase_create("tree_sum");
    tcase_add_test(tc, test_total_is_the_tree_at_any_split);
    tcase_add_test(tc, test_out_of_order_is_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
