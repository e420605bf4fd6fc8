/* Choosing the set of layers to fold: greedy, exact branch and bound, and their costs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/fold.h"
#include "linfold/forward.h"
#include "linfold/plan.h"
#include "linfold/search.h"
#include "linfold/select.h"
#include "linfold/shape.h"
#include "linfold/stats.h"

static int64_t planned_params(const lf_model_t *m, const lf_stats_t *s, lf_rule_kind_t kind)
{
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = kind}};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, NULL), LF_OK); /* checks the count */
    int64_t params = lf_model_params(f);
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    return params;
}

/* 8 inputs, widths 8-4-6-6 with 3, 4 and 3 linear neurons. By hand (docs/algorithm.md):
 * original 8*9 + 4*9 + 6*5 + 6*7 = 180;
 * benefit folds 0 (saves 9) then 1 (saves 0 more... the skip blocks it adds cost more later)
 *   and ends at 171; greedy takes the best single fold, layer 1 (168), and then nothing helps;
 * optimal folds 0 and 2: 5*9 + 4*(1+5+8) + 3*(1+4) + 6*(1+3+4) = 45 + 56 + 15 + 48 = 164. */
START_TEST(test_optimal_beats_greedy_and_benefit)
{
    const int64_t widths[] = {8, 4, 6, 6}, a[] = {3, 4, 3, 0};
    lf_model_t *m = lf_test_mlp(8, widths, 4, -1.0f, 1.0f, -0.1f, 0.1f, 1);
    lf_stats_t *s = lf_test_stats_linear_prefix(m, a);
    ck_assert_int_eq(lf_model_params(m), 180);
    ck_assert_int_eq(planned_params(m, s, LF_RULE_BENEFIT), 171);
    ck_assert_int_eq(planned_params(m, s, LF_RULE_GREEDY), 168);
    ck_assert_int_eq(planned_params(m, s, LF_RULE_OPTIMAL), 164);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_OPTIMAL}};
    lf_plan_t *p = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert(p->fold[0] && !p->fold[1] && p->fold[2]);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* The branch and bound equals brute force over all subsets, on random shapes with skip blocks. */
START_TEST(test_optimal_equals_brute_force)
{
    lf_rng_t rng = {7};
    for (int trial = 0; trial < 300; trial++) {
        int L = 3 + (int)(lf_rng_next(&rng) % 5);
        int64_t widths[8], a[8] = {0};
        for (int i = 0; i < L; i++)
            widths[i] = 1 + (int64_t)(lf_rng_next(&rng) % 9);
        lf_model_t *m = lf_test_mlp(1 + (int64_t)(lf_rng_next(&rng) % 9), widths, L, 0.1f, 1.0f,
                                    0.0f, 0.1f, 100 + trial);
        for (int i = 2; i < L; i++) /* some existing skips */
            if (lf_rng_next(&rng) % 3 == 0) {
                lf_block_t *b = NULL;
                ck_assert_int_eq(
                    lf_model_block_ensure(m, i, (int)(lf_rng_next(&rng) % (uint64_t)i) - 1, &b),
                    LF_OK);
            }
        for (int i = 0; i < L - 1; i++)
            a[i] = (int64_t)(lf_rng_next(&rng) % (uint64_t)(widths[i] + 1));
        lf_shape_t *shape = NULL;
        ck_assert_int_eq(lf_shape_create(m, &shape), LF_OK);
        bool fold[8], set[8];
        int64_t nodes = 0, got = 0, best = INT64_MAX;
        ck_assert_int_eq(lf_select_optimal(shape, a, fold, &nodes), LF_OK);
        ck_assert_int_eq(lf_select_cost(shape, a, fold, &got), LF_OK);
        for (int mask = 0; mask < (1 << L); mask++) {
            int64_t c = 0;
            for (int i = 0; i < L; i++)
                set[i] = (mask >> i) & 1;
            ck_assert_int_eq(lf_select_cost(shape, a, set, &c), LF_OK);
            best = c < best ? c : best;
        }
        ck_assert_msg(got == best, "trial %d: branch and bound %lld, brute force %lld", trial,
                      (long long)got, (long long)best);
        int64_t greedy_cost = 0;
        ck_assert_int_eq(lf_select_greedy(shape, a, set, &nodes), LF_OK);
        ck_assert_int_eq(lf_select_cost(shape, a, set, &greedy_cost), LF_OK);
        ck_assert_int_ge(greedy_cost, best);
        lf_shape_destroy(&shape);
        lf_model_destroy(&m);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("select");
    TCase *tc = tcase_create("select");
    tcase_add_test(tc, test_optimal_beats_greedy_and_benefit);
    tcase_add_test(tc, test_optimal_equals_brute_force);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
