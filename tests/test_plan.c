/* The fold plan: rule parsing, exact linearity thresholds, exact pruning shares, importance
 * pruning with compensation, and provable linearity.
 *
 * Statistics are set directly where a test needs exact control of which neurons are linear; the
 * thresholds are checked against integer arithmetic (count * denominator >= numerator), not
 * against floating point. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/decimal.h"
#include "linfold/fold.h"
#include "linfold/forward.h"
#include "linfold/plan.h"
#include "linfold/search.h"
#include "linfold/stats.h"

START_TEST(test_rule_parsing)
{
    lf_layer_rule_t r;
    ck_assert_int_eq(lf_plan_parse_layer_rule("benefit", &r), LF_OK);
    ck_assert_int_eq(r.kind, LF_RULE_BENEFIT);
    ck_assert_int_eq(lf_plan_parse_layer_rule("all", &r), LF_OK);
    ck_assert_int_eq(r.kind, LF_RULE_ALL);
    ck_assert_int_eq(lf_plan_parse_layer_rule("count:3", &r), LF_OK);
    ck_assert_int_eq(r.kind, LF_RULE_COUNT);
    ck_assert_int_eq(r.count, 3);
    ck_assert_int_eq(lf_plan_parse_layer_rule("fraction:0.25", &r), LF_OK);
    ck_assert_int_eq(lf_decimal_cmp(r.fraction, LF_DECIMAL(25, -2)), 0);
    ck_assert_int_eq(lf_plan_parse_select("greedy", &r), LF_OK);
    ck_assert_int_eq(r.kind, LF_RULE_GREEDY);
    ck_assert_int_eq(lf_plan_parse_select("optimal", &r), LF_OK);
    ck_assert_int_eq(r.kind, LF_RULE_OPTIMAL);
    /* Each parser lists its own values: set rules are not layer rules and vice versa. */
    const char *bad[] = {"",          "count:",     "count:-1",
                         "count:2x",  "fraction:1", "fraction:-0.1",
                         "fraction:", "greedy",     "optimal"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        ck_assert_int_eq(lf_plan_parse_layer_rule(bad[k], &r), LF_ERR_USAGE);
        ck_assert_ptr_null(strstr(lf_error_message(), "greedy or optimal"));
        lf_error_clear();
    }
    ck_assert_int_eq(lf_plan_parse_select("benefit", &r), LF_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(lf_error_message(), "is not greedy or optimal"));
    lf_error_clear();
    lf_prune_by_t by = LF_PRUNE_BY_RATE;
    const char *names[] = {"rate", "energy", "variance"};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(lf_plan_parse_prune_by(names[k], &by), LF_OK);
        ck_assert_int_eq(by, k);
        ck_assert_str_eq(lf_plan_prune_by_name(by), names[k]);
    }
    ck_assert_int_eq(lf_plan_parse_prune_by("Energy", &by), LF_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(lf_error_message(), "is not rate, energy or variance"));
    lf_error_clear();
}
END_TEST

/* Issue 7, item 9: a threshold below 1/n marked neurons with no positive row linear, and the
 * digits model collapsed to one layer at --threshold 1e-12. */
START_TEST(test_dead_neurons_are_never_linear)
{
    const int64_t widths[] = {4, 3, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 3, -1.0f, 1.0f, -0.5f, 0.5f, 21);
    int64_t p0[] = {0, 1, 10, 0}, p1[] = {0, 0, 10};
    const int64_t *pos[] = {p0, p1, NULL};
    lf_stats_t *s = lf_test_stats_with(m, 10, pos);
    const lf_decimal_t taus[] = {LF_DECIMAL(1, -300), LF_DECIMAL(1, -12), LF_DECIMAL(5, -2),
                                 LF_DECIMAL(1, -1)};
    for (size_t k = 0; k < sizeof taus / sizeof *taus; k++) {
        lf_plan_opts_t o = {.threshold = taus[k], .rule = {.kind = LF_RULE_ALL}};
        lf_plan_t *p = NULL;
        ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
        ck_assert_int_eq(p->n_linear[0], 2); /* neurons 1 and 2; 0 and 3 are dead */
        ck_assert_int_eq(p->n_linear[1], 1);
        ck_assert_int_eq(p->n_dead[0], 2);
        ck_assert_int_eq(p->fate[0][0], LF_NEURON_KEEP);
        ck_assert_int_eq(p->fate[0][3], LF_NEURON_KEEP);
        lf_plan_destroy(&p);
    }
    ck_assert_int_eq(lf_plan_need(LF_DECIMAL(1, -12), 10), 1);
    ck_assert_int_eq(lf_plan_need(LF_DECIMAL(1, 0), 10), 10);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Issue 7, item 10: with a 1e-9 slack, "count / n >= t" was wrong from about 10^8 rows (8,464 of
 * 200,000 random counts at n = 1e8). Checked on 200,000 random counts at n near 10^8 and up to
 * 2^53, against 128-bit products computed here: the threshold printed for a rate c / n is a
 * decimal t = m / 10^k with (c - 1) / n < t <= c / n, it needs exactly c positive rows, and so
 * does its printed form read back. */
START_TEST(test_threshold_decisions_are_exact)
{
    lf_rng_t rng = {31};
    int wrong = 0;
    for (int trial = 0; trial < 200000; trial++) {
        int64_t n = trial < 100000 ? 100000000 + (int64_t)(lf_rng_next(&rng) % 1000)
                                   : 1 + (int64_t)(lf_rng_next(&rng) >> 11); /* up to 2^53 */
        int64_t c = 1 + (int64_t)(lf_rng_next(&rng) % (uint64_t)n);
        lf_decimal_t t = lf_decimal_rate(c, n);
        /* t = m * 10^e with e <= 0 and -e <= 19: m * n <= c * 10^-e < (c - 1) ... in u128. */
        lf_test_u128 scale = 1, mn = (lf_test_u128)t.m * (uint64_t)n;
        for (int k = 0; k < -t.e; k++)
            scale *= 10;
        bool inside =
            t.e <= 0 && mn <= (lf_test_u128)c * scale && mn > (lf_test_u128)(c - 1) * scale;
        wrong += !inside || lf_plan_need(t, n) != c;
        char buf[64];
        lf_decimal_t back;
        lf_decimal_format(t, buf, sizeof buf);
        wrong += lf_decimal_parse(buf, &back) != LF_OK || lf_plan_need(back, n) != c;
    }
    ck_assert_int_eq(wrong, 0);
    /* What the user writes is what is compared: 0.8 of 10 rows needs 8 (the double nearest 0.8
     * is above 4/5 and would need 9), 0.3 of 10 needs 3. */
    lf_decimal_t d;
    ck_assert_int_eq(lf_decimal_parse("0.8", &d), LF_OK);
    ck_assert_int_eq(lf_plan_need(d, 10), 8);
    ck_assert_int_eq(lf_decimal_parse("0.3", &d), LF_OK);
    ck_assert_int_eq(lf_plan_need(d, 10), 3);
    ck_assert_int_eq(lf_decimal_parse("0.99999999", &d), LF_OK);
    ck_assert_int_eq(lf_plan_need(d, 100000000), 99999999);
    ck_assert_int_eq(lf_plan_need(d, 100000001), 100000000); /* 100000000.99999999 -> ceil */
}
END_TEST

/* Issue 7, item 11: --prune-fraction 0.29 on 100 neurons pruned 28 (0.29 * 100 is
 * 28.999999999999996 in floating point). The share is the nearest count, halves down. */
START_TEST(test_prune_share_rounds_to_nearest)
{
    ck_assert_int_eq(lf_plan_share(LF_DECIMAL(29, -2), 100), 29);
    ck_assert_int_eq(lf_plan_share(LF_DECIMAL(57, -2), 100), 57); /* 56.99999999999999 as doubles */
    ck_assert_int_eq(lf_plan_share(LF_DECIMAL(5, -1), 3), 1);     /* 1.5: a half keeps the neuron */
    ck_assert_int_eq(lf_plan_share(LF_DECIMAL(25, -2), 10), 2);   /* 2.5 */
    ck_assert_int_eq(lf_plan_share(LF_DECIMAL(75, -2), 10), 7);   /* 7.5 */
    ck_assert_int_eq(lf_plan_share(LF_DECIMAL(251, -3), 10), 3);  /* 2.51 */
    ck_assert_int_eq(lf_plan_share(LF_DECIMAL(0, 0), 1000), 0);
    /* In a plan: 29 of 100 neurons of a layer go. */
    const int64_t widths[] = {100, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 2, -1.0f, 1.0f, -0.5f, 0.5f, 41);
    int64_t p0[100];
    for (int j = 0; j < 100; j++)
        p0[j] = 1 + j % 9;
    const int64_t *pos[] = {p0, NULL};
    lf_stats_t *s = lf_test_stats_with(m, 10, pos);
    s->with_sums = true;
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0),
                        .rule = {.kind = LF_RULE_COUNT, .count = 1000},
                        .prune_fraction = LF_DECIMAL(29, -2)};
    lf_plan_t *p = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert_int_eq(p->n_pruned[0], 29);
    lf_plan_destroy(&p);
    o.prune_global = true;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert_int_eq(p->n_pruned[0], 29);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
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
    lf_stats_t *s = lf_test_stats_with(m, 10, pos);
    s->with_sums = true;
    for (int64_t j = 0; j < 6; j++)
        s->layers[0].out_sum[j] = j == 2 ? 7.5 : 1.0; /* mean of neuron 2: 0.75 */
    /* A share of 0.3333 of 6 (1.9998): the nearest count is 2, the two lowest rates (neurons 3, 1). */
    /* count:100 folds nothing, so layer 1's bias changes by the compensation alone. */
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0),
                        .rule = {.kind = LF_RULE_COUNT, .count = 100},
                        .prune_fraction = LF_DECIMAL(3333, -4)};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert_int_eq(p->n_pruned[0], 2);
    ck_assert_int_eq(p->fate[0][3], LF_NEURON_PRUNE); /* rate 0.8 */
    ck_assert_int_eq(p->fate[0][1], LF_NEURON_PRUNE); /* rate 0.9 */
    ck_assert_int_eq(p->fate[0][2], LF_NEURON_KEEP);  /* rate 1.0: linear, not pruned */
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

/* Sets the statistics of neuron j of layer i: mean output `mean` and mean square `square` over
 * s->samples rows. */
static void set_moments(lf_stats_t *s, int i, int64_t j, double mean, double square)
{
    s->layers[i].out_sum[j] = mean * (double)s->samples;
    s->layers[i].sq_sum[j] = square * (double)s->samples;
}

/* The three criteria disagree on a constructed layer, and each prunes its own neuron first:
 *   neuron 0: active on every row, outgoing weights 0.001: last by rate, first by energy;
 *   neuron 1: the lowest rate (4 of 10), outgoing weights 0.5: first by rate;
 *   neuron 3: constant on the rows (E[a^2] = E[a]^2), outgoing weights 0.5: no variance, so
 *             first by variance, though its energy (0.125) is above neuron 1's (0.1). */
START_TEST(test_prune_by_criteria_disagree)
{
    const int64_t widths[] = {4, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 2, -1.0f, 1.0f, -0.5f, 0.5f, 17);
    float *w1 = m->layers[1].blocks[0].w; /* (2, 4) */
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 4; j++)
            w1[r * 4 + j] = j == 0 ? 0.001f : (r == 0 ? 0.5f : -0.5f);
    int64_t pos0[] = {10, 4, 6, 8}, pos1[] = {5, 5};
    const int64_t *pos[] = {pos0, pos1};
    lf_stats_t *s = lf_test_stats_with(m, 10, pos);
    s->with_sums = s->with_squares = true;
    set_moments(s, 0, 0, 0.5, 1.0);
    set_moments(s, 0, 1, 0.2, 0.2);
    set_moments(s, 0, 2, 0.3, 0.3);
    set_moments(s, 0, 3, 0.5, 0.25);
    /* Importances against figures worked out here: E[a^2] (minus E[a]^2) x the column's squares,
     * 2 x 0.001^2 for neuron 0 (0.001f is not 0.001: computed from the float), 2 x 0.25 else. */
    double w2_0 = 2.0 * (double)0.001f * (double)0.001f;
    ck_assert_double_eq(lf_plan_importance(m, s, LF_PRUNE_BY_RATE, 0, 1), 4.0);
    ck_assert_double_eq_tol(lf_plan_importance(m, s, LF_PRUNE_BY_ENERGY, 0, 0), w2_0, 1e-18);
    ck_assert_double_eq_tol(lf_plan_importance(m, s, LF_PRUNE_BY_ENERGY, 0, 1), 0.1, 1e-15);
    ck_assert_double_eq_tol(lf_plan_importance(m, s, LF_PRUNE_BY_ENERGY, 0, 3), 0.125, 1e-15);
    ck_assert_double_eq_tol(lf_plan_importance(m, s, LF_PRUNE_BY_VARIANCE, 0, 0), 0.75 * w2_0,
                            1e-18);
    ck_assert_double_eq_tol(lf_plan_importance(m, s, LF_PRUNE_BY_VARIANCE, 0, 1), 0.08, 1e-15);
    ck_assert_double_eq(lf_plan_importance(m, s, LF_PRUNE_BY_VARIANCE, 0, 3), 0.0);
    /* One of four (0.25): each criterion's first choice. */
    const struct {
        lf_prune_by_t by;
        int first;
    } cases[] = {{LF_PRUNE_BY_RATE, 1}, {LF_PRUNE_BY_ENERGY, 0}, {LF_PRUNE_BY_VARIANCE, 3}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        for (int global = 0; global < 2; global++) {
            lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0),
                                .rule = {.kind = LF_RULE_COUNT, .count = 100},
                                .prune_fraction = LF_DECIMAL(25, -2),
                                .prune_global = global,
                                .prune_by = cases[k].by};
            lf_plan_t *p = NULL;
            ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
            ck_assert_int_eq(p->n_pruned[0], 1);
            ck_assert_msg(p->fate[0][cases[k].first] == LF_NEURON_PRUNE, "%s: neuron %d kept",
                          lf_plan_prune_by_name(cases[k].by), cases[k].first);
            lf_plan_destroy(&p);
        }
    }
    /* Three of four (0.75): by rate, the always-active neuron is the one kept; by energy it goes. */
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0),
                        .rule = {.kind = LF_RULE_COUNT, .count = 100},
                        .prune_fraction = LF_DECIMAL(75, -2),
                        .prune_by = LF_PRUNE_BY_RATE};
    lf_plan_t *p = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert_int_eq(p->fate[0][0], LF_NEURON_KEEP);
    ck_assert_int_eq(p->n_pruned[0], 3);
    lf_plan_destroy(&p);
    o.prune_by = LF_PRUNE_BY_ENERGY;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert_int_eq(p->fate[0][0], LF_NEURON_PRUNE);
    ck_assert_int_eq(p->fate[0][1], LF_NEURON_PRUNE);
    ck_assert_int_eq(p->fate[0][3], LF_NEURON_PRUNE);
    ck_assert_int_ne(p->fate[0][2], LF_NEURON_PRUNE); /* the largest energy, 0.15 */
    ck_assert_double_eq(p->shift[0][0], 0.5);         /* its mean output still compensates it */
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* A global ranking by energy compares each neuron's share of its layer's energy, not the raw
 * energies, whose scales differ between layers: here every raw energy of layer 0 (at most 1e-3)
 * is below every one of layer 1 (0.5), and a raw ranking would take both neurons from layer 0.
 * Shares: layer 0 {10, 10, 10, 1} / 31, layer 1 1/4 each. Pruning 2 of 8 takes neuron 3 of
 * layer 0 (1/31) and then neuron 0 of layer 1 (1/4 < 10/31; ties to the lower index). */
START_TEST(test_prune_by_energy_global_compares_shares)
{
    const int64_t widths[] = {4, 4, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 3, -1.0f, 1.0f, -0.5f, 0.5f, 23);
    for (int i = 1; i < 3; i++)
        for (int64_t k = 0; k < m->layers[i].n_out * 4; k++)
            m->layers[i].blocks[0].w[k] = 0.5f; /* |column|^2: 1 for layer 0, 0.5 for layer 1 */
    int64_t pos0[] = {5, 5, 5, 5}, pos1[] = {5, 5, 5, 5}, pos2[] = {5, 5};
    const int64_t *pos[] = {pos0, pos1, pos2};
    lf_stats_t *s = lf_test_stats_with(m, 10, pos);
    s->with_sums = s->with_squares = true;
    for (int64_t j = 0; j < 4; j++) {
        set_moments(s, 0, j, 0.0, j == 3 ? 1e-4 : 1e-3);
        set_moments(s, 1, j, 0.0, 1.0);
    }
    ck_assert(lf_plan_importance(m, s, LF_PRUNE_BY_ENERGY, 0, 0) <
              lf_plan_importance(m, s, LF_PRUNE_BY_ENERGY, 1, 0));
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0),
                        .rule = {.kind = LF_RULE_COUNT, .count = 100},
                        .prune_fraction = LF_DECIMAL(25, -2),
                        .prune_global = true,
                        .prune_by = LF_PRUNE_BY_ENERGY};
    lf_plan_t *p = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert_int_eq(p->n_pruned[0], 1);
    ck_assert_int_eq(p->n_pruned[1], 1);
    ck_assert_int_eq(p->fate[0][3], LF_NEURON_PRUNE);
    ck_assert_int_eq(p->fate[1][0], LF_NEURON_PRUNE);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* A neuron read by several layers (a skip block, here made by folding): its energy counts the
 * squares of its columns in every block that reads it. */
START_TEST(test_prune_by_energy_sums_every_reader)
{
    const int64_t widths[] = {4, 3, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 3, -1.0f, 1.0f, -0.5f, 0.5f, 19), *f = NULL;
    const int64_t a[] = {0, 2, 0};
    lf_stats_t *lin = lf_test_stats_linear_prefix(m, a);
    lf_plan_opts_t fo = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    lf_plan_t *p = NULL;
    ck_assert_int_eq(lf_plan_create(m, lin, &fo, &p), LF_OK);
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, NULL), LF_OK);
    lf_plan_destroy(&p);
    /* Layer 0 is read by layer 1 (one neuron left) and, through the fold, by layer 2. */
    ck_assert_int_eq(f->layers[2].n_blocks, 2);
    ck_assert_int_eq(f->layers[2].blocks[0].src, 0);
    int64_t pos0[] = {5, 5, 5, 5}, pos1[] = {5}, pos2[] = {5, 5};
    const int64_t *pos[] = {pos0, pos1, pos2};
    lf_stats_t *s = lf_test_stats_with(f, 10, pos);
    s->with_sums = s->with_squares = true;
    for (int64_t j = 0; j < 4; j++)
        set_moments(s, 0, j, 0.5, 2.0);
    for (int64_t j = 0; j < 4; j++) {
        double w2 = 0.0;
        const float *from1 = f->layers[1].blocks[0].w, *from2 = f->layers[2].blocks[0].w;
        w2 += (double)from1[j] * from1[j]; /* (1, 4) */
        for (int r = 0; r < 2; r++)
            w2 += (double)from2[r * 4 + j] * from2[r * 4 + j]; /* (2, 4) */
        ck_assert_double_eq_tol(lf_plan_importance(f, s, LF_PRUNE_BY_ENERGY, 0, j), 2.0 * w2,
                                1e-12 * w2);
    }
    /* The plan ranks by the same figures: the neuron of least energy goes first. */
    int64_t least = 0;
    for (int64_t j = 1; j < 4; j++)
        if (lf_plan_importance(f, s, LF_PRUNE_BY_ENERGY, 0, j) <
            lf_plan_importance(f, s, LF_PRUNE_BY_ENERGY, 0, least))
            least = j;
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0),
                        .rule = {.kind = LF_RULE_COUNT, .count = 100},
                        .prune_fraction = LF_DECIMAL(25, -2),
                        .prune_by = LF_PRUNE_BY_ENERGY};
    ck_assert_int_eq(lf_plan_create(f, s, &o, &p), LF_OK);
    ck_assert_int_eq(p->fate[0][least], LF_NEURON_PRUNE);
    ck_assert_int_eq(p->n_pruned[0], 1);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_stats_destroy(&lin);
    lf_model_destroy(&f);
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
    lf_stats_t *s = lf_test_stats_with(m, 10, pos);
    s->with_sums = true;
    s->layers[0].out_sum[1] = 6.25;
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0),
                        .rule = {.kind = LF_RULE_COUNT, .count = 100},
                        .prune_fraction = LF_DECIMAL(2, -1)};
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
    ck_assert(!lin[0][0]);               /* the input may be negative */
    ck_assert(lin[1][2]);                /* relu outputs are >= 0 */
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
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("plan");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_rule_parsing);
    tcase_add_test(tc, test_dead_neurons_are_never_linear);
    tcase_add_test(tc, test_threshold_decisions_are_exact);
    tcase_add_test(tc, test_prune_share_rounds_to_nearest);
    tcase_add_test(tc, test_importance_pruning_compensates);
    tcase_add_test(tc, test_pruning_a_constant_neuron_is_exact);
    tcase_add_test(tc, test_prune_by_criteria_disagree);
    tcase_add_test(tc, test_prune_by_energy_sums_every_reader);
    tcase_add_test(tc, test_prune_by_energy_global_compares_shares);
    tcase_add_test(tc, test_provable_linearity);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
