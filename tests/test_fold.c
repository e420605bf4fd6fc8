/* Folding is exact algebra: tests on constructed models whose linear and dead neurons are known
 * by construction, with statistics collected through the real sharded path at 1 to 4 ranks.
 *
 * Construction: inputs are non-negative; a neuron whose incoming weights and bias are all >= 0
 * then has z >= 0 on every input (relu outputs are non-negative too), so it is provably linear;
 * one whose weights are <= 0 and bias < 0 is provably dead. Folding or pruning such neurons must
 * leave the outputs equal to the original's up to float32 round-off on *any* non-negative input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/batch.h"
#include "linfold/fold.h"
#include "linfold/forward.h"
#include "linfold/h5io.h"
#include "linfold/plan.h"
#include "linfold/stats.h"

/* Folding reorders float32 sums (merged products are rounded once from double); 1e-5 relative to
 * the largest output leaves two orders of magnitude of room over the round-off seen here. */
#define REL_TOL 1e-5

enum { N_ROWS = 157 }; /* not divisible by 2, 3 or 4: uneven shards */

static char tmpdir[256];

static void compress(const lf_model_t *m, const lf_stats_t *s, const lf_plan_opts_t *o,
                     lf_plan_t **plan, lf_model_t **folded)
{
    int *where = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, o, plan), LF_OK);
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, *plan, folded, &where), LF_OK);
    ck_assert_int_eq(lf_model_validate(*folded, "folded"), LF_OK);
    /* The plan's shape arithmetic must predict the folded model's size exactly. */
    ck_assert_int_eq(lf_model_params(*folded), (*plan)->params_after);
    ck_assert_int_eq(lf_model_skip_params(*folded), (*plan)->skip_params_after);
    lf_free(where);
}

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void) { lf_test_tmpdir_remove(tmpdir); }

/* Non-negative sample rows in [0, 1). */
static void write_samples(const char *name, int64_t n, int64_t d, uint64_t seed, char *spec,
                          size_t cap)
{
    lf_test_write_samples(tmpdir, name, n, d, 0.0f, 1.0f, seed, spec, cap);
}

/* Every hidden neuron provably linear: the whole network collapses to one affine layer. */
START_TEST(test_all_linear_collapses_to_one_layer)
{
    const int64_t widths[] = {7, 9, 5, 3};
    lf_model_t *m = lf_test_mlp(6, widths, 4, 0.0f, 0.5f, 0.0f, 0.1f, 11);
    char spec[600];
    write_samples("x", N_ROWS, 6, 5, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 16, true);
    ck_assert_int_eq(s->samples, N_ROWS);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    compress(m, s, &o, &p, &f);
    ck_assert_int_eq(p->n_linear[0], 7);
    ck_assert_int_eq(p->n_linear[1], 9);
    ck_assert_int_eq(p->n_linear[2], 5);
    ck_assert_int_eq(f->n_layers, 1);
    ck_assert_int_eq(lf_model_params(f), 3 * (6 + 1)); /* one (3, 6) weight plus bias */
    ck_assert_int_eq(lf_model_skip_params(f), 0);
    double rel = lf_test_output_rel_diff(m, f, 64, 99, 2.0f); /* provably linear everywhere */
    ck_assert_msg(lf_test_all(rel <= REL_TOL), "relative output difference %g", rel);
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Three consecutive partially linear layers fold in a chain: each fold feeds the next. */
START_TEST(test_chain_of_three_partial_folds)
{
    const int64_t widths[] = {8, 6, 7, 4};
    lf_model_t *m = lf_test_mlp(5, widths, 4, -0.5f, 0.5f, -0.1f, 0.1f, 21);
    lf_test_shape_layer(m, 0, 3, 0, 1);
    lf_test_shape_layer(m, 1, 2, 0, 2);
    lf_test_shape_layer(m, 2, 4, 0, 3);
    char spec[600];
    write_samples("x", N_ROWS, 5, 6, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 10, true);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    compress(m, s, &o, &p, &f);
    /* Mixed neurons may happen to be always active on this data too; at least the constructed
     * ones are linear, and every linear neuron folds. */
    ck_assert(p->n_linear[0] >= 3 && p->n_linear[1] >= 2 && p->n_linear[2] >= 4);
    ck_assert(p->fold[0] && p->fold[1] && p->fold[2]);
    ck_assert_int_eq(f->n_layers, 4);
    ck_assert_int_eq(f->layers[0].n_out, 8 - p->n_linear[0]);
    ck_assert_int_eq(f->layers[1].n_out, 6 - p->n_linear[1]);
    ck_assert_int_eq(f->layers[2].n_out, 7 - p->n_linear[2]);
    /* The chain creates skips from the input into layers 1, 2 and 3, and from 0 into 2 and 3. */
    ck_assert_ptr_nonnull(lf_model_block(f, 1, LF_SRC_INPUT));
    ck_assert_ptr_nonnull(lf_model_block(f, 2, LF_SRC_INPUT));
    ck_assert_ptr_nonnull(lf_model_block(f, 3, LF_SRC_INPUT));
    ck_assert_ptr_nonnull(lf_model_block(f, 2, 0));
    ck_assert_ptr_nonnull(lf_model_block(f, 3, 0));
    ck_assert_ptr_nonnull(lf_model_block(f, 3, 1));
    double rel = lf_test_output_rel_diff(m, f, N_ROWS, 6, 1.0f);
    ck_assert_msg(lf_test_all(rel <= REL_TOL), "relative output difference %g", rel);
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* A fully linear middle layer disappears: its neighbours merge and later layers renumber. */
START_TEST(test_middle_layer_collapse)
{
    const int64_t widths[] = {6, 4, 5, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 4, -0.5f, 0.5f, -0.1f, 0.1f, 31);
    lf_test_shape_layer(m, 1, 4, 0, 4);
    /* Keep the other layers from having accidental linear neurons: the rule folds layer 1 only. */
    char spec[600];
    write_samples("x", N_ROWS, 3, 8, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 1000, true);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0),
                        .rule = {.kind = LF_RULE_FRACTION, .fraction = LF_DECIMAL(99, -2)}};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    int *where = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    ck_assert(!p->fold[0] && p->fold[1] && !p->fold[2]);
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, &where), LF_OK);
    ck_assert_int_eq(f->n_layers, 3);
    ck_assert_int_eq(where[0], 0);
    ck_assert_int_eq(where[1], -1);
    ck_assert_int_eq(where[2], 1);
    ck_assert_int_eq(where[3], 2);
    /* The merged layer reads layer 0 through its weight (5, 6) and has no skip blocks. */
    ck_assert_int_eq(f->layers[1].n_blocks, 1);
    ck_assert_int_eq(lf_model_params(f), 6 * (3 + 1) + 5 * (6 + 1) + 2 * (5 + 1));
    double rel = lf_test_output_rel_diff(m, f, N_ROWS, 8, 1.0f);
    ck_assert_msg(lf_test_all(rel <= REL_TOL), "relative output difference %g", rel);
    lf_free(where);
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* The benefit rule's arithmetic on a 4-6-5-3 model, by hand:
 * original 6*(4+1) + 5*(6+1) + 3*(5+1) = 83. Folding a neurons of layer 0 removes a*(4+1) rows
 * and a*5 columns of layer 1 and adds layer 1's skip from the input, 5*4 = 20:
 * a = 2 gives 83 - 10 - 10 + 20 = 83 (no gain: not folded); a = 3 gives 73 (folded). */
START_TEST(test_benefit_rule_arithmetic)
{
    const int64_t widths[] = {6, 5, 3};
    for (int a = 2; a <= 3; a++) {
        lf_model_t *m = lf_test_mlp(4, widths, 3, -0.5f, -0.1f, -0.2f, -0.1f, 41);
        lf_test_shape_layer(m, 0, a, 0,
                            5); /* others: all-negative weights and bias, never active */
        char spec[600];
        write_samples("x", N_ROWS, 4, 10, spec, sizeof spec);
        lf_stats_t *s = lf_test_collect(m, spec, 7, true);
        lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_BENEFIT}};
        lf_plan_t *p = NULL;
        lf_model_t *f = NULL;
        compress(m, s, &o, &p, &f);
        ck_assert_int_eq(p->params_before, 83);
        ck_assert_int_eq(p->n_linear[0], a);
        ck_assert_int_eq(p->n_linear[1], 0);
        ck_assert(p->fold[0] == (a == 3));
        ck_assert_int_eq(lf_model_params(f), a == 3 ? 73 : 83);
        ck_assert_int_eq(lf_model_skip_params(f), a == 3 ? 20 : 0);
        /* `all` folds regardless and pays for it: 83 for a = 2 too, 73 for a = 3. */
        lf_plan_t *p_all = NULL;
        lf_model_t *f_all = NULL;
        o.rule.kind = LF_RULE_ALL;
        compress(m, s, &o, &p_all, &f_all);
        ck_assert_int_eq(lf_model_params(f_all), a == 3 ? 73 : 83);
        lf_model_destroy(&f_all);
        lf_plan_destroy(&p_all);
        lf_model_destroy(&f);
        lf_plan_destroy(&p);
        lf_stats_destroy(&s);
        lf_model_destroy(&m);
    }
}
END_TEST

/* Dead relu neurons output 0 on every non-negative input: pruning them changes nothing. */
START_TEST(test_prune_dead_is_exact)
{
    const int64_t widths[] = {8, 8, 3};
    lf_model_t *m = lf_test_mlp(4, widths, 3, -0.5f, 0.5f, -0.1f, 0.1f, 51);
    lf_test_shape_layer(m, 0, 0, 3, 11);
    lf_test_shape_layer(m, 1, 0, 2, 12);
    char spec[600];
    write_samples("x", N_ROWS, 4, 12, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 32, true);
    lf_plan_opts_t o = {
        .threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_BENEFIT}, .prune_dead = true};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    compress(m, s, &o, &p, &f);
    ck_assert(p->n_dead[0] >= 3 && p->n_dead[1] >= 2);
    int64_t k0 = 8 - p->n_dead[0] - (p->fold[0] ? p->n_linear[0] : 0);
    int64_t k1 = 8 - p->n_dead[1] - (p->fold[1] ? p->n_linear[1] : 0);
    ck_assert_int_eq(f->layers[0].n_out, k0);
    ck_assert_int_eq(f->layers[1].n_out, k1);
    /* Assumes no neuron here is linear as well as dead, which the construction guarantees
     * unless a mixed neuron is always active; the benefit rule would then fold it only if that
     * shrinks the model, and the parameter check in compress() covers that case. */
    if (!p->fold[0] && !p->fold[1])
        ck_assert_int_eq(lf_model_params(f), k0 * (4 + 1) + k1 * (k0 + 1) + 3 * (k1 + 1));
    double rel = lf_test_output_rel_diff(m, f, N_ROWS, 12, 1.0f);
    ck_assert_msg(lf_test_all(rel <= REL_TOL), "relative output difference %g", rel);
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* A layer read by a skip block: folding it must update every reader, not only the next layer. */
START_TEST(test_fold_into_skip_readers)
{
    const int64_t widths[] = {6, 5, 4, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 4, -0.5f, 0.5f, -0.1f, 0.1f, 61);
    lf_block_t *skip = NULL;
    ck_assert_int_eq(lf_model_block_ensure(m, 3, 0, &skip), LF_OK); /* layer 3 reads layer 0 */
    lf_rng_t rng = {62};
    for (int64_t k = 0; k < 2 * 6; k++)
        skip->w[k] = lf_rng_uniform(&rng, -0.5f, 0.5f);
    ck_assert_int_eq(lf_model_block_ensure(m, 2, LF_SRC_INPUT, &skip), LF_OK);
    for (int64_t k = 0; k < 4 * 3; k++)
        skip->w[k] = lf_rng_uniform(&rng, 0.0f, 0.5f);
    lf_test_shape_layer(m, 0, 6, 0, 14); /* all of layer 0 is linear: it disappears */
    lf_test_shape_layer(m, 2, 2, 0,
                        15); /* layer 2 has two linear neurons and a skip from the input */
    char spec[600];
    write_samples("x", N_ROWS, 3, 14, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 50, true);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    compress(m, s, &o, &p, &f);
    ck_assert(p->fold[0] && p->fold[2]);
    ck_assert_int_eq(f->layers[0].n_out, 5 - p->n_linear[1]);
    double rel = lf_test_output_rel_diff(m, f, N_ROWS, 14, 1.0f);
    ck_assert_msg(lf_test_all(rel <= REL_TOL), "relative output difference %g", rel);
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Shape arithmetic equals the real fold on random plans over a model with skip blocks. */
START_TEST(test_shape_matches_fold_randomised)
{
    lf_rng_t rng = {81};
    for (int trial = 0; trial < 20; trial++) {
        const int64_t widths[] = {5, 6, 4, 5, 3};
        lf_model_t *m = lf_test_mlp(4, widths, 5, -0.5f, 0.5f, -0.1f, 0.1f, 100 + trial);
        lf_block_t *skip = NULL;
        ck_assert_int_eq(lf_model_block_ensure(m, 3, 0, &skip), LF_OK);
        for (int i = 0; i < 4; i++) {
            int64_t lin = (int64_t)(lf_rng_next(&rng) % (uint64_t)(widths[i] + 1));
            lf_test_shape_layer(m, i, lin, 0, 200 + trial * 10 + i);
        }
        char spec[600];
        write_samples("x", N_ROWS, 4, 300 + trial, spec, sizeof spec);
        lf_stats_t *s = lf_test_collect(m, spec, 64, true);
        lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
        lf_plan_t *p = NULL;
        lf_model_t *f = NULL;
        compress(m, s, &o, &p, &f); /* asserts the predicted parameter counts */
        double rel = lf_test_output_rel_diff(m, f, N_ROWS, 300 + trial, 1.0f);
        ck_assert_msg(lf_test_all(rel <= REL_TOL), "trial %d: relative difference %g", trial, rel);
        lf_model_destroy(&f);
        lf_plan_destroy(&p);
        lf_stats_destroy(&s);
        lf_model_destroy(&m);
    }
}
END_TEST

/* Fewer rows than ranks: ranks without rows take part in every collective and the statistics,
 * plan and folded model are those of the full data. */
START_TEST(test_fewer_rows_than_ranks)
{
    const int64_t widths[] = {4, 3, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 3, -0.5f, 0.5f, -0.1f, 0.1f, 91);
    lf_test_shape_layer(m, 0, 2, 1, 92);
    char spec[600];
    write_samples("x", 2, 3, 93, spec, sizeof spec);
    lf_stats_t *s = lf_test_collect(m, spec, 1024, true);
    ck_assert_int_eq(s->samples, 2);
    ck_assert_int_ge(s->layers[0].positive[0], 2);
    ck_assert_int_eq(s->layers[0].positive[2], 0);
    lf_plan_opts_t o = {
        .threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}, .prune_dead = true};
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    compress(m, s, &o, &p, &f);
    ck_assert(p->fold[0]);
    double rel = lf_test_output_rel_diff(m, f, 2, 93, 1.0f);
    ck_assert_msg(lf_test_all(rel <= REL_TOL), "relative output difference %g", rel);
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("fold");
    TCase *tc = tcase_create("exact");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_all_linear_collapses_to_one_layer);
    tcase_add_test(tc, test_chain_of_three_partial_folds);
    tcase_add_test(tc, test_middle_layer_collapse);
    tcase_add_test(tc, test_benefit_rule_arithmetic);
    tcase_add_test(tc, test_prune_dead_is_exact);
    tcase_add_test(tc, test_fold_into_skip_readers);
    tcase_add_test(tc, test_shape_matches_fold_randomised);
    tcase_add_test(tc, test_fewer_rows_than_ranks);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
