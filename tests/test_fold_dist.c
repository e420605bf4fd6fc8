/* The distributed fold against the serial one: the same plans (from statistics collected through
 * the real sharded path) applied by lf_fold_apply in memory and by lf_fold_dist_write on the
 * process grid, the second read back from the file it wrote. Run at 1 to 4 ranks (grids 1x1,
 * 1x2, 1x3, 2x2), with blocks of 2 and 3 so that even these small layers spread over every
 * process in several blocks, and sizes that no block size divides.
 *
 * What must hold: the same structure (layers, widths, blocks and their sources, the plan's
 * parameter count), every weight and bias within 1e-5 of the serial fold's (relative to the
 * block's largest entry; the two differ only in the order of double-precision partial sums and
 * so, after rounding to float32, by an ulp at most), and outputs equal to the original model's
 * where the folded neurons are linear. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/fold.h"
#include "linfold/fold_dist.h"
#include "linfold/h5io.h"
#include "linfold/plan.h"
#include "linfold/stats.h"

#define REL_TOL 1e-5
/* psgemm_ rounds every partial sum to float32. */
#define REL_TOL_SINGLE 1e-4

enum { N_ROWS = 157 };

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void) { lf_test_tmpdir_remove(tmpdir); }

/* Largest |a - b| over n floats, relative to the largest |a| (or 1 when a is all zeros). */
static double rel_diff(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t k = 0; k < n; k++) {
        num = fmax(num, fabs((double)a[k] - (double)b[k]));
        den = fmax(den, fabs((double)a[k]));
    }
    return num / (den > 0 ? den : 1);
}

/* Asserts that d (the distributed fold's model) is s (the serial one's) within tol. */
static void assert_same_model(const lf_model_t *s, const lf_model_t *d, double tol)
{
    ck_assert_int_eq(d->n_layers, s->n_layers);
    ck_assert_int_eq(d->n_in, s->n_in);
    for (int i = 0; i < s->n_layers; i++) {
        const lf_layer_t *a = &s->layers[i], *b = &d->layers[i];
        ck_assert_int_eq(b->n_out, a->n_out);
        ck_assert_int_eq(b->act, a->act);
        ck_assert_int_eq(b->n_blocks, a->n_blocks);
        double rel = rel_diff(a->bias, b->bias, a->n_out);
        ck_assert_msg(rel <= tol, "layer %d bias: relative difference %g", i, rel);
        for (int k = 0; k < a->n_blocks; k++) {
            ck_assert_int_eq(b->blocks[k].src, a->blocks[k].src);
            int64_t n = a->n_out * lf_model_width(s, a->blocks[k].src);
            rel = rel_diff(a->blocks[k].w, b->blocks[k].w, n);
            ck_assert_msg(rel <= tol, "layer %d block from %d: relative difference %g", i,
                          a->blocks[k].src, rel);
        }
    }
}

/* Writes m, plans it with o on its statistics, folds it both ways and compares. */
static void check_both_ways(const lf_model_t *m, const char *spec, const lf_plan_opts_t *o,
                            int block, lf_dist_prec_t prec, uint64_t seed)
{
    char model_path[512], out_path[512], tmp[LF_PATH_MAX];
    snprintf(model_path, sizeof model_path, "%s/model.h5", tmpdir);
    snprintf(out_path, sizeof out_path, "%s/folded.h5", tmpdir);
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, model_path, m, NULL, 0), LF_OK);
    lf_stats_t *s = lf_test_collect(m, spec, 32, true);
    lf_plan_t *p = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, o, &p), LF_OK);

    lf_model_t *serial = NULL, *dist = NULL;
    int *where_s = NULL, *where_d = NULL;
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &serial, &where_s), LF_OK);
    lf_merge_dist_opts_t dopts = {.block = block, .prec = prec};
    lf_attr_t attr = {"source_model", "test"};
    ck_assert_int_eq(lf_atomic_begin(LF_TEST_COMM, out_path, tmp, sizeof tmp), LF_OK);
    lf_err_t e = lf_fold_dist_write(LF_TEST_COMM, model_path, m, p, &dopts, tmp, out_path, &attr, 1,
                                    &where_d);
    ck_assert_msg(e == LF_OK, "lf_fold_dist_write: %s", lf_error_message());
    ck_assert_int_eq(lf_atomic_finish(LF_TEST_COMM, tmp, out_path, e), LF_OK);
    ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, out_path, &dist), LF_OK);

    for (int i = 0; i < m->n_layers; i++)
        ck_assert_int_eq(where_d[i], where_s[i]);
    ck_assert_int_eq(lf_model_params(dist), p->params_after);
    ck_assert_int_eq(lf_model_skip_params(dist), p->skip_params_after);
    assert_same_model(serial, dist, prec == LF_DIST_SINGLE ? REL_TOL_SINGLE : REL_TOL);
    double rel = lf_test_output_rel_diff(serial, dist, N_ROWS, seed, 1.0f);
    ck_assert_msg(lf_test_all(rel <= (prec == LF_DIST_SINGLE ? REL_TOL_SINGLE : REL_TOL)),
                  "outputs: relative difference %g to the serial fold", rel);

    lf_free(where_d);
    lf_free(where_s);
    lf_model_destroy(&dist);
    lf_model_destroy(&serial);
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
}

static void samples(int64_t d, uint64_t seed, char *spec, size_t cap)
{
    lf_test_write_samples(tmpdir, "x", N_ROWS, d, 0.0f, 1.0f, seed, spec, cap);
}

/* Every hidden layer folds completely: three layers disappear, the chain stays distributed. */
START_TEST(test_all_linear_collapses)
{
    const int64_t widths[] = {7, 9, 5, 3};
    lf_model_t *m = lf_test_mlp(6, widths, 4, 0.0f, 0.5f, 0.0f, 0.1f, 11);
    char spec[600];
    samples(6, 5, spec, sizeof spec);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    check_both_ways(m, spec, &o, 2, LF_DIST_DOUBLE, 5);
    lf_model_destroy(&m);
}
END_TEST

/* Three consecutive partial folds: each product's operand is the previous product's result,
 * picked out of its distributed matrix. */
START_TEST(test_chain_of_partial_folds)
{
    const int64_t widths[] = {8, 6, 7, 4};
    lf_model_t *m = lf_test_mlp(5, widths, 4, -0.5f, 0.5f, -0.1f, 0.1f, 21);
    lf_test_shape_layer(m, 0, 3, 0, 1);
    lf_test_shape_layer(m, 1, 2, 0, 2);
    lf_test_shape_layer(m, 2, 4, 0, 3);
    char spec[600];
    samples(5, 6, spec, sizeof spec);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    for (int block = 2; block <= 3; block++)
        check_both_ways(m, spec, &o, block, LF_DIST_DOUBLE, 6);
    check_both_ways(m, spec, &o, 2, LF_DIST_SINGLE, 6);
    lf_model_destroy(&m);
}
END_TEST

/* A folded layer with readers through existing skip blocks, and a layer that folds away whole:
 * products accumulate into blocks read from the file. */
START_TEST(test_fold_into_skip_readers)
{
    const int64_t widths[] = {6, 5, 4, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 4, -0.5f, 0.5f, -0.1f, 0.1f, 61);
    lf_block_t *skip = NULL;
    ck_assert_int_eq(lf_model_block_ensure(m, 3, 0, &skip), LF_OK);
    lf_rng_t rng = {62};
    for (int64_t k = 0; k < 2 * 6; k++)
        skip->w[k] = lf_rng_uniform(&rng, -0.5f, 0.5f);
    ck_assert_int_eq(lf_model_block_ensure(m, 2, LF_SRC_INPUT, &skip), LF_OK);
    for (int64_t k = 0; k < 4 * 3; k++)
        skip->w[k] = lf_rng_uniform(&rng, 0.0f, 0.5f);
    lf_test_shape_layer(m, 0, 6, 0, 14);
    lf_test_shape_layer(m, 2, 2, 0, 15);
    char spec[600];
    samples(3, 14, spec, sizeof spec);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    check_both_ways(m, spec, &o, 2, LF_DIST_DOUBLE, 14);
    lf_model_destroy(&m);
}
END_TEST

/* Dead neurons and importance pruning (mean outputs into the readers' biases, read as column
 * subsets of the file's blocks) before folds below threshold 1. */
START_TEST(test_prune_then_fold)
{
    const int64_t widths[] = {9, 8, 7, 3};
    lf_model_t *m = lf_test_mlp(5, widths, 4, -0.5f, 0.5f, -0.1f, 0.1f, 71);
    lf_test_shape_layer(m, 0, 3, 2, 72);
    lf_test_shape_layer(m, 1, 2, 1, 73);
    lf_test_shape_layer(m, 2, 3, 1, 74);
    char spec[600];
    samples(5, 75, spec, sizeof spec);
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(8, -1),
                        .rule = {.kind = LF_RULE_ALL},
                        .prune_dead = true,
                        .prune_fraction = LF_DECIMAL(2, -1)};
    check_both_ways(m, spec, &o, 3, LF_DIST_DOUBLE, 75);
    o.prune_global = true;
    check_both_ways(m, spec, &o, 2, LF_DIST_DOUBLE, 75);
    lf_model_destroy(&m);
}
END_TEST

/* Random plans over a model with a skip block, as in test_fold. */
START_TEST(test_randomised)
{
    lf_rng_t rng = {81};
    for (int trial = 0; trial < 6; trial++) {
        const int64_t widths[] = {5, 6, 4, 5, 3};
        lf_model_t *m = lf_test_mlp(4, widths, 5, -0.5f, 0.5f, -0.1f, 0.1f, 100 + trial);
        lf_block_t *skip = NULL;
        ck_assert_int_eq(lf_model_block_ensure(m, 3, 0, &skip), LF_OK);
        for (int i = 0; i < 4; i++) {
            int64_t lin = (int64_t)(lf_rng_next(&rng) % (uint64_t)(widths[i] + 1));
            lf_test_shape_layer(m, i, lin, 0, 200 + trial * 10 + i);
        }
        char spec[600];
        samples(4, 300 + trial, spec, sizeof spec);
        lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
        check_both_ways(m, spec, &o, 2 + trial % 2, LF_DIST_DOUBLE, 300 + trial);
        lf_model_destroy(&m);
    }
}
END_TEST

/* The auto rule: the product of the two widest of the input and hidden widths. */
START_TEST(test_auto_rule)
{
    const int64_t widths[] = {7, 9, 5, 3};
    lf_model_t *m = lf_test_mlp(6, widths, 4, 0.0f, 0.5f, 0.0f, 0.1f, 11);
    ck_assert_int_eq(lf_fold_dist_size(m), 9 * 7);
    ck_assert(lf_fold_dist_should(LF_MERGE_AUTO, 63, m));
    ck_assert(!lf_fold_dist_should(LF_MERGE_AUTO, 64, m));
    ck_assert(lf_fold_dist_should(LF_MERGE_DISTRIBUTED, 1 << 30, m));
    ck_assert(!lf_fold_dist_should(LF_MERGE_SERIAL, 1, m));
    lf_merge_path_t path;
    ck_assert_int_eq(lf_merge_path_parse("distributed", &path), LF_OK);
    ck_assert_int_eq(path, LF_MERGE_DISTRIBUTED);
    ck_assert_int_eq(lf_merge_path_parse("scalapack", &path), LF_ERR_USAGE);
    lf_error_clear();
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("fold_dist");
    TCase *tc = tcase_create("against_serial");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_all_linear_collapses);
    tcase_add_test(tc, test_chain_of_partial_folds);
    tcase_add_test(tc, test_fold_into_skip_readers);
    tcase_add_test(tc, test_prune_then_fold);
    tcase_add_test(tc, test_randomised);
    tcase_add_test(tc, test_auto_rule);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
