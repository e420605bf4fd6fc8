/* Layer selection, importance pruning, exact sums, target size and provable linearity.
 *
 * Statistics are set directly where a test needs exact control of which neurons are linear
 * (positive = samples) or not (positive = 0); folding only needs them to agree with the plan. */
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
#include "linfold/stats.h"

/* Statistics over `samples` rows where neuron j of layer i has positive[i][j] rows with z > 0. */
static lf_stats_t *stats_with(const lf_model_t *m, int64_t samples, const int64_t *const *positive)
{
    lf_stats_t *s = NULL;
    ck_assert_int_eq(lf_stats_create(m, &s), LF_OK);
    s->samples = samples;
    for (int i = 0; i < m->n_layers; i++)
        for (int64_t j = 0; j < m->layers[i].n_out; j++)
            s->layers[i].positive[j] = positive[i] ? positive[i][j] : 0;
    return s;
}

/* The first a[i] neurons of each layer linear (always active), the rest never active. */
static lf_stats_t *stats_linear_prefix(const lf_model_t *m, const int64_t *a)
{
    int64_t *pos[16] = {0};
    for (int i = 0; i < m->n_layers; i++) {
        pos[i] = calloc((size_t)m->layers[i].n_out, sizeof **pos);
        for (int64_t j = 0; j < a[i]; j++)
            pos[i][j] = 1;
    }
    lf_stats_t *s = stats_with(m, 1, (const int64_t *const *)pos);
    for (int i = 0; i < m->n_layers; i++)
        free(pos[i]);
    return s;
}

static int64_t planned_params(const lf_model_t *m, const lf_stats_t *s, lf_rule_kind_t kind)
{
    lf_plan_opts_t o = {.threshold = 1.0, .rule = {.kind = kind}};
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
    lf_stats_t *s = stats_linear_prefix(m, a);
    ck_assert_int_eq(lf_model_params(m), 180);
    ck_assert_int_eq(planned_params(m, s, LF_RULE_BENEFIT), 171);
    ck_assert_int_eq(planned_params(m, s, LF_RULE_GREEDY), 168);
    ck_assert_int_eq(planned_params(m, s, LF_RULE_OPTIMAL), 164);
    lf_plan_opts_t o = {.threshold = 1.0, .rule = {.kind = LF_RULE_OPTIMAL}};
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
                ck_assert_int_eq(lf_model_block_ensure(m, i, (int)(lf_rng_next(&rng) % (uint64_t)i) - 1, &b),
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

/* Exact sums: no rounding, any order. */
START_TEST(test_exact_sums)
{
    lf_xsum_t x = {{0}}, y = {{0}};
    const float v[] = {1e30f, 1.0f, -1e30f, 3e-39f /* subnormal */, -3e-39f, 0.5f, 0.0f, -0.0f};
    for (size_t k = 0; k < sizeof v / sizeof *v; k++)
        lf_xsum_add(&x, v[k]);
    for (size_t k = sizeof v / sizeof *v; k-- > 0;)
        lf_xsum_add(&y, v[k]);
    ck_assert(lf_xsum_value(&x) == 1.5); /* a double sum in this order gives 0.5 */
    ck_assert(memcmp(&x, &y, sizeof x) == 0);
    /* 2^24 + 1 is not a float, but the sum of floats that makes it is exact. */
    lf_xsum_t z = {{0}};
    lf_xsum_add(&z, 16777216.0f);
    lf_xsum_add(&z, 1.0f);
    ck_assert(lf_xsum_value(&z) == 16777217.0);
}
END_TEST

/* Importance pruning removes the least active neurons and moves their mean output into the next
 * bias: exact for a neuron whose output is constant on the calibration data. */
START_TEST(test_importance_pruning_compensates)
{
    const int64_t widths[] = {6, 3};
    lf_model_t *m = lf_test_mlp(4, widths, 2, -1.0f, 1.0f, -0.5f, 0.5f, 3);
    /* Neuron 2 of layer 0: zero weights and bias 0.75, so it outputs 0.75 on every input. */
    for (int k = 0; k < 4; k++)
        m->layers[0].blocks[0].w[2 * 4 + k] = 0.0f;
    m->layers[0].bias[2] = 0.75f;
    int64_t pos0[] = {10, 9, 10, 8, 10, 10}, pos1[] = {5, 5, 5};
    const int64_t *pos[] = {pos0, pos1};
    lf_stats_t *s = stats_with(m, 10, pos);
    s->with_sums = true;
    for (int64_t j = 0; j < 6; j++)
        s->layers[0].out_sum[j] = j == 2 ? 7.5 : 1.0; /* mean of neuron 2: 0.75 */
    /* 1/6 of the neurons: the lowest rate (neuron 3, 8 of 10) goes; then 2 of 6 by --fraction. */
    /* count:100 folds nothing, so layer 1's bias changes by the compensation alone. */
    lf_plan_opts_t o = {.threshold = 1.0, .rule = {.kind = LF_RULE_COUNT, .count = 100},
                        .prune_fraction = 2.0 / 6.0 + 1e-9};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert_int_eq(p->n_pruned[0], 2);
    ck_assert_int_eq(p->fate[0][3], LF_NEURON_PRUNE); /* rate 0.8 */
    ck_assert_int_eq(p->fate[0][1], LF_NEURON_PRUNE); /* rate 0.9 */
    ck_assert_int_eq(p->fate[0][2], LF_NEURON_KEEP); /* rate 1.0: linear, not pruned */
    ck_assert_double_eq(p->shift[0][3], 0.1);
    ck_assert_double_eq(p->shift[0][1], 0.1);
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, NULL), LF_OK);
    ck_assert_int_eq(f->layers[0].n_out, 4);
    /* Layer 1's bias gained W1[:, 1] * 0.1 + W1[:, 3] * 0.1, summed in double, rounded once. */
    for (int r = 0; r < 3; r++) {
        const float *w1 = m->layers[1].blocks[0].w;
        double want = (double)m->layers[1].bias[r] + (double)w1[r * 6 + 1] * 0.1 +
                      (double)w1[r * 6 + 3] * 0.1;
        ck_assert(f->layers[1].bias[r] == (float)want);
    }
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    /* Importance pruning without sums is refused. */
    s->with_sums = false;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_ERR_ARG);
    lf_error_clear();
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* A constant neuron pruned with its mean leaves the function unchanged. */
START_TEST(test_pruning_a_constant_neuron_is_exact)
{
    const int64_t widths[] = {5, 3};
    lf_model_t *m = lf_test_mlp(4, widths, 2, -1.0f, 1.0f, -0.5f, 0.5f, 5);
    for (int k = 0; k < 4; k++)
        m->layers[0].blocks[0].w[1 * 4 + k] = 0.0f;
    m->layers[0].bias[1] = 0.625f; /* output 0.625 everywhere */
    int64_t pos0[] = {10, 1, 10, 10, 10}, pos1[] = {5, 5, 5};
    const int64_t *pos[] = {pos0, pos1};
    lf_stats_t *s = stats_with(m, 10, pos);
    s->with_sums = true;
    s->layers[0].out_sum[1] = 6.25;
    lf_plan_opts_t o = {.threshold = 1.0, .rule = {.kind = LF_RULE_COUNT, .count = 100},
                        .prune_fraction = 0.2};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert_int_eq(p->fate[0][1], LF_NEURON_PRUNE);
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, NULL), LF_OK);
    ck_assert_int_eq(f->layers[0].n_out, 4);
    enum { R = 16 };
    float x[R * 4];
    lf_rng_t rng = {6};
    for (int k = 0; k < R * 4; k++)
        x[k] = lf_rng_uniform(&rng, -2.0f, 2.0f);
    lf_forward_t *fa = NULL, *fb = NULL;
    const float *ya = NULL, *yb = NULL;
    ck_assert_int_eq(lf_forward_create(m, R, &fa), LF_OK);
    ck_assert_int_eq(lf_forward_create(f, R, &fb), LF_OK);
    ck_assert_int_eq(lf_forward_run(fa, m, x, R, NULL, NULL, &ya), LF_OK);
    ck_assert_int_eq(lf_forward_run(fb, f, x, R, NULL, NULL, &yb), LF_OK);
    for (int k = 0; k < R * 3; k++) /* float32 round-off of one reordered sum */
        ck_assert_double_eq_tol(ya[k], yb[k], 1e-6 * (1.0 + fabs(ya[k])));
    lf_forward_destroy(&fa);
    lf_forward_destroy(&fb);
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

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
    lf_stats_t *s = stats_with(m, 100, (const int64_t *const *)pos);
    double *taus = NULL;
    int64_t n = 0;
    ck_assert_int_eq(lf_search_thresholds(m, s, &taus, &n), LF_OK);
    ck_assert_int_gt(n, 5);
    for (int k = 1; k < n; k++)
        ck_assert(taus[k] < taus[k - 1]);
    const double ratios[] = {0.95, 0.8, 0.6, 0.4, 0.2, 0.01};
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
            if (first < 0 && (double)p->params_after <= ratios[r] * (double)p->params_before)
                first = k;
            lf_plan_destroy(&p);
        }
        ck_assert(found == (first >= 0));
        if (found)
            ck_assert_double_eq(pt.opts.threshold, taus[first]);
    }
    lf_free(taus);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Provable linearity: non-negative weights and bias on provably non-negative inputs. */
START_TEST(test_provable_linearity)
{
    const int64_t widths[] = {4, 3, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 3, -1.0f, 1.0f, -0.5f, 0.5f, 11);
    float *w0 = m->layers[0].blocks[0].w, *w1 = m->layers[1].blocks[0].w;
    for (int k = 0; k < 3; k++) {
        w0[0 * 3 + k] = 0.5f; /* neuron 0: weights >= 0 */
        w0[1 * 3 + k] = 0.5f; /* neuron 1: weights >= 0 but bias < 0 below */
    }
    m->layers[0].bias[0] = 0.0f;
    m->layers[0].bias[1] = -0.1f;
    for (int k = 0; k < 4; k++)
        w1[2 * 4 + k] = k == 3 ? 0.0f : 0.25f; /* layer 1 neuron 2: reads relu outputs */
    m->layers[1].bias[2] = 0.1f;
    bool **lin = NULL;
    ck_assert_int_eq(lf_plan_provable(m, false, &lin), LF_OK);
    ck_assert(!lin[0][0]);           /* the input may be negative */
    ck_assert(lin[1][2]);            /* relu outputs are >= 0 */
    ck_assert(!lin[2][0] && !lin[2][1]); /* the output layer is never listed */
    lf_plan_provable_free(m, &lin);
    ck_assert_int_eq(lf_plan_provable(m, true, &lin), LF_OK);
    ck_assert(lin[0][0]);
    ck_assert(!lin[0][1]);
    lf_plan_provable_free(m, &lin);
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("search");
    TCase *tc = tcase_create("search");
    tcase_add_test(tc, test_optimal_beats_greedy_and_benefit);
    tcase_add_test(tc, test_optimal_equals_brute_force);
    tcase_add_test(tc, test_exact_sums);
    tcase_add_test(tc, test_importance_pruning_compensates);
    tcase_add_test(tc, test_pruning_a_constant_neuron_is_exact);
    tcase_add_test(tc, test_target_ratio_is_largest_threshold);
    tcase_add_test(tc, test_provable_linearity);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
