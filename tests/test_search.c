/* Searches over plans: the target size and the accuracy budget, checked against independent
 * scans and re-evaluations. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/decimal.h"
#include "linfold/eval.h"
#include "linfold/fold.h"
#include "linfold/h5io.h"
#include "linfold/plan.h"
#include "linfold/search.h"
#include "linfold/stats.h"

#define DIGITS LF_SOURCE_DIR "/tests/data/digits"

/* The target-size search returns the largest threshold within the target, which a linear scan
 * over every candidate threshold confirms. */
START_TEST(test_target_ratio_is_largest_threshold)
{
    const int64_t widths[] = {12, 10, 8, 4};
    lf_model_t *m = lf_test_mlp(6, widths, 4, -1.0f, 1.0f, -0.1f, 0.1f, 9);
    lf_rng_t rng = {10};
    int64_t p0[12], p1[10], p2[8], p3[4] = {0};
    int64_t *pos[] = {p0, p1, p2, p3};
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; j < widths[i]; j++)
            pos[i][j] = (int64_t)(lf_rng_next(&rng) % 101);
    lf_stats_t *s = lf_test_stats_with(m, 100, (const int64_t *const *)pos);
    lf_decimal_t *taus = NULL;
    int64_t n = 0;
    ck_assert_int_eq(lf_search_thresholds(m, s, &taus, &n), LF_OK);
    ck_assert_int_gt(n, 5);
    for (int k = 1; k < n; k++)
        ck_assert_int_lt(lf_decimal_cmp(taus[k], taus[k - 1]), 0);
    const lf_decimal_t ratios[] = {LF_DECIMAL(95, -2), LF_DECIMAL(8, -1), LF_DECIMAL(6, -1),
                                   LF_DECIMAL(4, -1),  LF_DECIMAL(2, -1), LF_DECIMAL(1, -2)};
    for (size_t r = 0; r < sizeof ratios / sizeof *ratios; r++) {
        lf_plan_opts_t base = {.rule = {.kind = LF_RULE_OPTIMAL}};
        lf_search_point_t pt;
        bool found = false;
        ck_assert_int_eq(lf_search_target_ratio(m, s, &base, ratios[r], &found, &pt), LF_OK);
        int64_t first = -1, prev = INT64_MAX;
        for (int64_t k = 0; k < n; k++) {
            lf_search_point_t q = {.opts = base};
            q.opts.threshold = taus[k];
            lf_plan_t *p = NULL;
            ck_assert_int_eq(lf_plan_create(m, s, &q.opts, &p), LF_OK);
            ck_assert_int_le(p->params_after, prev); /* sizes fall with the threshold */
            prev = p->params_after;
            /* params <= ratio * before, cross-multiplied: ratio = m * 10^e with e < 0. */
            int64_t scale = 1;
            for (int d = 0; d < -ratios[r].e; d++)
                scale *= 10;
            if (first < 0 && p->params_after * scale <= (int64_t)ratios[r].m * p->params_before)
                first = k;
            lf_plan_destroy(&p);
        }
        ck_assert(found == (first >= 0));
        if (found)
            ck_assert_int_eq(lf_decimal_cmp(pt.opts.threshold, taus[first]), 0);
    }
    lf_free(taus);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* One definition of "within budget": (original - correct) / samples <= max_drop, on integers. */
START_TEST(test_within_budget_is_exact)
{
    /* 0.025 of 360 rows is 9 exactly: a drop of 9 is within, 10 is not. */
    ck_assert(lf_search_within_budget(350, 341, 360, LF_DECIMAL(25, -3)));
    ck_assert(!lf_search_within_budget(350, 340, 360, LF_DECIMAL(25, -3)));
    /* 0.3 of 10 allows 3 (the double 0.3 is below 3/10 and would allow 2). */
    ck_assert(lf_search_within_budget(10, 7, 10, LF_DECIMAL(3, -1)));
    /* Budget 0: no row may be lost; a model that gains rows is within. */
    ck_assert(lf_search_within_budget(10, 10, 10, LF_DECIMAL(0, 0)));
    ck_assert(lf_search_within_budget(10, 11, 12, LF_DECIMAL(0, 0)));
    ck_assert(!lf_search_within_budget(10, 9, 10, LF_DECIMAL(0, 0)));
    /* At 10^8 rows, one row is 1e-8. */
    ck_assert(lf_search_within_budget(99999999, 99999998, 100000000, LF_DECIMAL(1, -8)));
    ck_assert(!lf_search_within_budget(99999999, 99999997, 100000000, LF_DECIMAL(1, -8)));
}
END_TEST

/* The accuracy-budget search on the bundled digits model and its validation split: every point
 * of the frontier is what an independent fold and evaluation of its plan gives, the chosen
 * model is the smallest of them within the budget, and a budget nothing can meet chooses the
 * original. */
START_TEST(test_budget_choices)
{
    lf_model_t *m = NULL;
    lf_dataset_t *x = NULL, *y = NULL;
    ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, DIGITS "/model.h5", &m), LF_OK);
    ck_assert_int_eq(
        lf_h5io_dataset_open(LF_TEST_COMM, DIGITS "/data.h5:/val/x", LF_DATA_SAMPLES, &x), LF_OK);
    ck_assert_int_eq(
        lf_h5io_dataset_open(LF_TEST_COMM, DIGITS "/data.h5:/val/y", LF_DATA_LABELS, &y), LF_OK);
    lf_stats_t *s = lf_test_collect(m, DIGITS "/data.h5:/val/x", 1024, true);
    lf_search_eval_t eval = {.x = x, .labels = y, .batch = {.batch_rows = 1024}};
    lf_plan_opts_t base = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_OPTIMAL}};
    /* Two budgets, each with one importance-pruning share (the default bisection over shares
     * would evaluate a hundred plans, too many to re-check under the sanitizers). */
    const lf_decimal_t budgets[] = {LF_DECIMAL(1, -2), LF_DECIMAL(0, 0)};
    const lf_decimal_t shares[] = {LF_DECIMAL(5, -2), LF_DECIMAL(0, 0)};
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
        lf_budget_opts_t bo = {.max_drop = budgets[b], .fractions = &shares[b], .n_fractions = 1};
        lf_budget_result_t res;
        ck_assert_int_eq(lf_search_accuracy_budget(LF_TEST_COMM, m, s, &base, &bo, &eval, &res),
                         LF_OK);
        ck_assert_int_eq(res.samples, 359);
        ck_assert_int_gt(res.n_frontier, 3);
        int64_t smallest = lf_model_params(m);
        for (int k = 0; k < res.n_frontier; k++) {
            const lf_search_point_t *pt = &res.frontier[k];
            lf_plan_t *p = NULL;
            lf_model_t *f = NULL;
            lf_eval_result_t r;
            ck_assert_int_eq(lf_plan_create(m, s, &pt->opts, &p), LF_OK);
            ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, NULL), LF_OK);
            ck_assert_int_eq(lf_eval_run(LF_TEST_COMM, f, NULL, x, y, &eval.batch, &r), LF_OK);
            ck_assert_int_eq(r.correct, pt->correct);
            ck_assert_int_eq(lf_model_params(f), pt->params);
            bool within =
                res.original_correct - r.correct <= lf_decimal_mul_floor(budgets[b], r.samples);
            ck_assert(within == lf_search_within_budget(res.original_correct, pt->correct,
                                                        res.samples, budgets[b]));
            if (within && pt->params < smallest)
                smallest = pt->params;
            lf_model_destroy(&f);
            lf_plan_destroy(&p);
        }
        ck_assert_int_eq(res.best.params, smallest);
        ck_assert(res.met == (smallest < lf_model_params(m)));
        ck_assert(lf_search_within_budget(res.original_correct, res.best.correct, res.samples,
                                          budgets[b]));
        lf_free(res.frontier);
    }
    lf_stats_destroy(&s);
    lf_h5io_dataset_close(&y);
    lf_h5io_dataset_close(&x);
    lf_model_destroy(&m);
}
END_TEST

/* Evaluation data without rows is a usage error for the budget (nothing to measure). */
START_TEST(test_budget_needs_rows)
{
    char dir[256], path[300], xs[320], ys[320];
    lf_test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/empty.h5", dir);
    snprintf(xs, sizeof xs, "%s:/x", path);
    snprintf(ys, sizeof ys, "%s:/y", path);
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    float none[1] = {0};
    int64_t no_labels[1] = {0};
    if (rank == 0)
        lf_test_write_data(path, "/x", none, 0, 64, "/y", no_labels);
    MPI_Barrier(LF_TEST_COMM);
    lf_model_t *m = NULL;
    lf_dataset_t *x = NULL, *y = NULL;
    ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, DIGITS "/model.h5", &m), LF_OK);
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, xs, LF_DATA_SAMPLES, &x), LF_OK);
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, ys, LF_DATA_LABELS, &y), LF_OK);
    lf_stats_t *s = lf_test_collect(m, DIGITS "/data.h5:/val/x", 1024, true);
    lf_search_eval_t eval = {.x = x, .labels = y, .batch = {.batch_rows = 1024}};
    lf_plan_opts_t base = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_OPTIMAL}};
    lf_budget_opts_t bo = {.max_drop = LF_DECIMAL(1, -2)};
    lf_budget_result_t res;
    ck_assert_int_eq(lf_search_accuracy_budget(LF_TEST_COMM, m, s, &base, &bo, &eval, &res),
                     LF_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(lf_error_message(), "has no rows"));
    lf_error_clear();
    lf_free(res.frontier);
    lf_stats_destroy(&s);
    lf_h5io_dataset_close(&y);
    lf_h5io_dataset_close(&x);
    lf_model_destroy(&m);
    lf_test_tmpdir_remove(dir);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("search");
    TCase *tc = tcase_create("search");
    tcase_add_test(tc, test_target_ratio_is_largest_threshold);
    tcase_add_test(tc, test_within_budget_is_exact);
    tcase_add_test(tc, test_budget_choices);
    tcase_add_test(tc, test_budget_needs_rows);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
