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

/* Whether a point of `n` rows, `worse` and `better` discordant ones, is within max_drop at a
 * confidence. */
static bool within(int64_t worse, int64_t better, int64_t n, lf_decimal_t max_drop,
                   lf_decimal_t confidence)
{
    lf_budget_opts_t bo = {.max_drop = max_drop, .confidence = confidence};
    lf_search_point_t pt = {.evaluated = true, .samples = n, .worse = worse, .better = better};
    return lf_search_within_budget(&bo, &pt);
}

#define POINT LF_DECIMAL(0, 0) /* confidence 0: the point estimate */
#define C95 LF_DECIMAL(95, -2)

/* At confidence 0, "within budget" is (worse - better) / samples <= max_drop, on integers. */
START_TEST(test_within_budget_is_exact)
{
    /* 0.025 of 360 rows is 9 exactly: a drop of 9 is within, 10 is not. */
    ck_assert(within(9, 0, 360, LF_DECIMAL(25, -3), POINT));
    ck_assert(within(12, 3, 360, LF_DECIMAL(25, -3), POINT));
    ck_assert(!within(10, 0, 360, LF_DECIMAL(25, -3), POINT));
    /* 0.3 of 10 allows 3 (the double 0.3 is below 3/10 and would allow 2). */
    ck_assert(within(3, 0, 10, LF_DECIMAL(3, -1), POINT));
    /* Budget 0: no row may be lost on balance; a model that gains rows is within. */
    ck_assert(within(0, 0, 10, LF_DECIMAL(0, 0), POINT));
    ck_assert(within(1, 2, 12, LF_DECIMAL(0, 0), POINT));
    ck_assert(!within(1, 0, 10, LF_DECIMAL(0, 0), POINT));
    /* At 10^8 rows, one row is 1e-8. */
    ck_assert(within(1, 0, 100000000, LF_DECIMAL(1, -8), POINT));
    ck_assert(!within(2, 0, 100000000, LF_DECIMAL(1, -8), POINT));
}
END_TEST

/* The exact Clopper-Pearson bound by another method: binomial tail sums in long double, the
 * proportion found by bisection. P(X <= x) for X ~ Binomial(n, p), 0 < p < 1. */
static long double binom_cdf(int64_t x, int64_t n, long double p)
{
    long double sum = 0;
    for (int64_t k = 0; k <= x; k++)
        sum += expl(lgammal((long double)n + 1) - lgammal((long double)k + 1) -
                    lgammal((long double)(n - k) + 1) + (long double)k * logl(p) +
                    (long double)(n - k) * log1pl(-p));
    return sum;
}

/* The p at which P(X <= x) = a (upper) or P(X >= x) = a (lower). */
static double ref_cp(int64_t x, int64_t n, long double a, bool upper)
{
    if (upper ? x == n : x == 0)
        return upper ? 1.0 : 0.0;
    long double lo = 0, hi = 1;
    for (int it = 0; it < 100; it++) {
        long double mid = (lo + hi) / 2;
        bool above = upper ? binom_cdf(x, n, mid) <= a : 1 - binom_cdf(x - 1, n, mid) >= a;
        if (above)
            hi = mid;
        else
            lo = mid;
    }
    return (double)((lo + hi) / 2);
}

static double ref_bound(int64_t worse, int64_t better, int64_t n, double confidence)
{
    long double a = (1 - (long double)confidence) / 2;
    return ref_cp(worse, n, a, true) - ref_cp(better, n, a, false);
}

/* The bound against Clopper-Pearson values computed independently: with mpmath at 50 digits
 * (exact binomial tail sums, bisection), and by the long-double sums above. */
START_TEST(test_drop_bound_reference)
{
    static const struct {
        int64_t worse, better, n;
        double confidence, bound;
    } ref[] = {
        {0, 0, 1200, 0.95, 0.003069346108100284}, /* 1 - 0.025^(1/1200) */
        {1, 0, 1200, 0.95, 0.004634201514946463},
        {2, 0, 1200, 0.95, 0.0060074807961180431},
        {5, 2, 1200, 0.95, 0.0094947131372823208},
        {3, 0, 100, 0.9, 0.075710793749830056},
        {1, 1, 20, 0.99, 0.31689113907026387},
        {0, 0, 10000, 0.95, 0.00036881991461876221},
        {30, 12, 10000, 0.95, 0.0036597327097470799},
        {0, 40, 359, 0.95, -0.070580613498181978},
        {0, 0, 359, 0.95, 0.010222818358470203},
        {7, 0, 7, 0.95, 1.0},
        {2, 1, 360, 0.5, 0.01006218720527947},
        {4, 0, 359, 0.95, 0.028280924035008147}, /* gsl_cdf_beta_Qinv fails on this one */
        {50, 10, 100000, 0.95, 0.0006111803007303604},
        {500, 480, 60000, 0.999, 0.0027694416554436101},
    };
    for (size_t k = 0; k < sizeof ref / sizeof *ref; k++) {
        double b = lf_search_drop_bound(ref[k].worse, ref[k].better, ref[k].n, ref[k].confidence);
        ck_assert_msg(fabs(b - ref[k].bound) <= 1e-9 * fmax(1.0, fabs(ref[k].bound) * 1e3),
                      "case %zu: %.17g, reference %.17g", k, b, ref[k].bound);
        double sums = ref_bound(ref[k].worse, ref[k].better, ref[k].n, ref[k].confidence);
        ck_assert_msg(fabs(sums - ref[k].bound) <= 1e-12, "case %zu: sums %.17g", k, sums);
    }
    /* Confidence 0 is the point estimate; bad arguments give NAN. */
    ck_assert(lf_search_drop_bound(5, 2, 1200, 0) == 3.0 / 1200);
    ck_assert(isnan(lf_search_drop_bound(5, 2, 1200, 1)));
    ck_assert(isnan(lf_search_drop_bound(5, 2, 0, 0.95)));
    ck_assert(isnan(lf_search_drop_bound(600, 601, 1200, 0.95)));
    ck_assert(isnan(lf_search_drop_bound(-1, 0, 10, 0.95)));
}
END_TEST

/* The bound decides: where the point estimate accepts, the bound may not, and it accepts once
 * the budget reaches it. */
START_TEST(test_bound_thresholds)
{
    /* 2 of 1,200 rows lost: 0.00167 measured, bound 0.00601 at 0.95. */
    ck_assert(within(2, 0, 1200, LF_DECIMAL(5, -3), POINT));
    ck_assert(!within(2, 0, 1200, LF_DECIMAL(5, -3), C95));
    ck_assert(!within(2, 0, 1200, LF_DECIMAL(6, -3), C95));
    ck_assert(within(2, 0, 1200, LF_DECIMAL(61, -4), C95));
    /* 1 lost: bound 0.00463, within 0.005. */
    ck_assert(within(1, 0, 1200, LF_DECIMAL(5, -3), C95));
    ck_assert(!within(1, 0, 1200, LF_DECIMAL(46, -4), C95));
    /* Budget 0: an unchanged model is within on the estimate only; one shown better (40 rows
     * gained of 359, bound -0.0706) is within on the bound too, and within -0.07 would be. */
    ck_assert(within(0, 0, 1200, LF_DECIMAL(0, 0), POINT));
    ck_assert(!within(0, 0, 1200, LF_DECIMAL(0, 0), C95));
    ck_assert(within(0, 40, 359, LF_DECIMAL(0, 0), C95));
    ck_assert(!within(1, 3, 359, LF_DECIMAL(0, 0), C95));
    /* A lower confidence gives a lower bound. */
    ck_assert(!within(3, 0, 1200, LF_DECIMAL(5, -3), C95));
    ck_assert(within(3, 0, 1200, LF_DECIMAL(5, -3), LF_DECIMAL(5, -1)));
}
END_TEST

/* Folds a candidate as the search would by default, counting the candidates folded. */
static lf_err_t counting_fold(MPI_Comm comm, const lf_model_t *m, const lf_plan_t *p, void *ctx,
                              lf_model_t **out)
{
    (*(int *)ctx)++;
    return lf_fold_apply(comm, m, p, out, NULL);
}

/* Whether two plans fold the same layers and give every neuron the same fate. */
static bool same_fates(const lf_plan_t *a, const lf_plan_t *b)
{
    for (int i = 0; i < a->n_layers; i++) {
        if (a->fold[i] != b->fold[i])
            return false;
        for (int64_t j = 0; j < a->n_out[i]; j++)
            if (a->fate[i][j] != b->fate[i][j])
                return false;
    }
    return true;
}

/* The accuracy-budget search on the bundled digits model and its validation split: every point
 * of the frontier is what an independent fold and evaluation of its plan gives, the chosen
 * model is the smallest of them within the budget, and a budget nothing can meet chooses the
 * original. The search folds each distinct plan once: as many folds as the frontier has
 * distinct plans, fewer than its points (options that give an identical plan reuse its
 * result, which the re-evaluation of every point confirms). */
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
    int folds = 0, repeats = 0;
    lf_search_eval_t eval = {.x = x,
                             .labels = y,
                             .batch = {.batch_rows = 1024},
                             .fold = counting_fold,
                             .fold_ctx = &folds};
    lf_plan_opts_t base = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_OPTIMAL}};
    /* Two budgets, each with one importance-pruning share (the default bisection over shares
     * would evaluate a hundred plans, too many to re-check under the sanitizers). */
    const lf_decimal_t budgets[] = {LF_DECIMAL(1, -2), LF_DECIMAL(0, 0)};
    const lf_decimal_t shares[] = {LF_DECIMAL(5, -2), LF_DECIMAL(0, 0)};
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
        lf_budget_opts_t bo = {
            .max_drop = budgets[b], .confidence = POINT, .fractions = &shares[b], .n_fractions = 1};
        folds = 0;
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
            /* The discordant rows account for the change in correct rows. */
            ck_assert_int_eq(pt->worse - pt->better, res.original_correct - r.correct);
            ck_assert(pt->bounded && pt->drop == pt->drop_bound);
            bool ok =
                res.original_correct - r.correct <= lf_decimal_mul_floor(budgets[b], r.samples);
            ck_assert(ok == lf_search_within_budget(&bo, pt));
            if (ok && pt->params < smallest)
                smallest = pt->params;
            lf_model_destroy(&f);
            lf_plan_destroy(&p);
        }
        /* Distinct plans among the frontier, counted here from the plans themselves. */
        int distinct = 0;
        for (int k = 0; k < res.n_frontier; k++) {
            lf_plan_t *pk = NULL;
            bool seen = false;
            ck_assert_int_eq(lf_plan_create(m, s, &res.frontier[k].opts, &pk), LF_OK);
            for (int q = 0; q < k && !seen; q++) {
                lf_plan_t *pq = NULL;
                ck_assert_int_eq(lf_plan_create(m, s, &res.frontier[q].opts, &pq), LF_OK);
                seen = same_fates(pk, pq);
                lf_plan_destroy(&pq);
            }
            distinct += !seen;
            lf_plan_destroy(&pk);
        }
        ck_assert_int_eq(folds, distinct);
        ck_assert_int_eq(res.n_distinct, distinct);
        repeats += res.n_frontier - distinct;
        ck_assert_int_eq(res.best.params, smallest);
        ck_assert(res.met == (smallest < lf_model_params(m)));
        ck_assert(res.original_correct - res.best.correct <=
                  lf_decimal_mul_floor(budgets[b], res.samples));
        lf_free(res.frontier);
    }
    ck_assert_int_gt(repeats, 0); /* the reuse was exercised */
    lf_stats_destroy(&s);
    lf_h5io_dataset_close(&y);
    lf_h5io_dataset_close(&x);
    lf_model_destroy(&m);
}
END_TEST

/* The search at confidence 0.95 on the digits validation split (359 rows): every point's bound
 * is the independently computed one and decides alone; the model the measured drop chooses
 * (0.02) is one the bound rejects, and the bound's choice is larger. */
START_TEST(test_budget_bound_search)
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
    const lf_decimal_t share = LF_DECIMAL(0, 0), budget = LF_DECIMAL(2, -2);
    lf_budget_opts_t bo = {
        .max_drop = budget, .confidence = POINT, .fractions = &share, .n_fractions = 1};
    lf_budget_result_t point, bound;
    ck_assert_int_eq(lf_search_accuracy_budget(LF_TEST_COMM, m, s, &base, &bo, &eval, &point),
                     LF_OK);
    bo.confidence = C95;
    ck_assert_int_eq(lf_search_accuracy_budget(LF_TEST_COMM, m, s, &base, &bo, &eval, &bound),
                     LF_OK);
    ck_assert(point.met);
    int64_t smallest = lf_model_params(m);
    for (int k = 0; k < bound.n_frontier; k++) {
        const lf_search_point_t *pt = &bound.frontier[k];
        double ref = ref_bound(pt->worse, pt->better, pt->samples, 0.95);
        ck_assert(pt->bounded);
        ck_assert_msg(fabs(pt->drop_bound - ref) <= 1e-9, "bound %.17g, reference %.17g",
                      pt->drop_bound, ref);
        ck_assert(pt->drop == (double)(pt->worse - pt->better) / 359.0);
        ck_assert(pt->drop_bound > pt->drop);
        ck_assert(fabs(ref - 0.02) > 1e-9); /* no case too close to call */
        bool ok = ref <= 0.02;
        ck_assert(ok == lf_search_within_budget(&bo, pt));
        if (ok && pt->params < smallest)
            smallest = pt->params;
    }
    ck_assert_int_eq(bound.best.params, smallest);
    /* The measured drop's choice: within 0.02 as measured, not on the bound. */
    const lf_search_point_t *b0 = &point.best;
    ck_assert_int_le(b0->worse - b0->better, 7); /* floor(0.02 * 359) */
    ck_assert_double_gt(ref_bound(b0->worse, b0->better, 359, 0.95), 0.02);
    ck_assert(!lf_search_within_budget(&bo, b0));
    ck_assert_int_gt(bound.best.params, point.best.params);
    lf_free(point.frontier);
    lf_free(bound.frontier);
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
    tcase_add_test(tc, test_drop_bound_reference);
    tcase_add_test(tc, test_bound_thresholds);
    tcase_add_test(tc, test_budget_choices);
    tcase_add_test(tc, test_budget_bound_search);
    tcase_add_test(tc, test_budget_needs_rows);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
