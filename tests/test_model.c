/* The in-memory model, plan parsing, allocation failures and the error table. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/error.h"
#include "linfold/fold.h"
#include "linfold/model.h"
#include "linfold/plan.h"
#include "linfold/stats.h"

START_TEST(test_params_and_copy)
{
    const int64_t widths[] = {5, 3};
    lf_model_t *m = lf_test_mlp(4, widths, 2, -1.0f, 1.0f, -1.0f, 1.0f, 1);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(lf_model_params(m), 5 * (4 + 1) + 3 * (5 + 1));
    lf_block_t *skip = NULL;
    ck_assert_int_eq(lf_model_block_ensure(m, 1, LF_SRC_INPUT, &skip), LF_OK);
    ck_assert_int_eq(lf_model_params(m), 5 * 5 + 3 * 6 + 3 * 4);
    ck_assert_int_eq(lf_model_skip_params(m), 3 * 4);
    /* Blocks stay sorted with the predecessor last. */
    ck_assert_int_eq(m->layers[1].blocks[0].src, LF_SRC_INPUT);
    ck_assert_int_eq(m->layers[1].blocks[1].src, 0);
    lf_model_t *c = NULL;
    ck_assert_int_eq(lf_model_copy(m, &c), LF_OK);
    ck_assert(lf_model_fingerprint(c) == lf_model_fingerprint(m));
    c->layers[0].bias[2] += 1.0f;
    ck_assert(lf_model_fingerprint(c) != lf_model_fingerprint(m));
    lf_model_destroy(&c);
    lf_model_destroy(&m);
    ck_assert_ptr_null(m);
    lf_model_destroy(&m); /* destroy accepts NULL */
}
END_TEST

START_TEST(test_remove_neurons_renumbers)
{
    const int64_t widths[] = {3, 2, 4, 2};
    lf_model_t *m = lf_test_mlp(2, widths, 4, -1.0f, 1.0f, -1.0f, 1.0f, 2);
    lf_block_t *skip = NULL;
    ck_assert_int_eq(lf_model_block_ensure(m, 3, 1, &skip), LF_OK);
    /* Remove the middle neuron of layer 0: row 1 of its weight, column 1 of layer 1's. */
    float w1_col2 = lf_model_block(m, 1, 0)->w[0 * 3 + 2];
    bool keep0[] = {true, false, true};
    ck_assert_int_eq(lf_model_remove_neurons(m, 0, keep0), LF_OK);
    ck_assert_int_eq(m->layers[0].n_out, 2);
    ck_assert(lf_model_block(m, 1, 0)->w[0 * 2 + 1] == w1_col2);
    /* Emptying layer 1 removes it; layer 3's skip from 1 goes, layer 2 gets a zero weight
     * from layer 0 (its new predecessor), and indices shift down. */
    bool keep1[] = {false, false};
    ck_assert_int_eq(lf_model_remove_neurons(m, 1, keep1), LF_OK);
    ck_assert_int_eq(m->n_layers, 3);
    ck_assert_int_eq(m->layers[1].n_out, 4);
    ck_assert_int_eq(m->layers[1].n_blocks, 1);
    ck_assert_int_eq(m->layers[1].blocks[0].src, 0);
    for (int k = 0; k < 4 * 2; k++)
        ck_assert(m->layers[1].blocks[0].w[k] == 0.0f);
    ck_assert_int_eq(m->layers[2].n_blocks, 1);
    ck_assert_int_eq(lf_model_validate(m, "m"), LF_OK);
    lf_model_destroy(&m);
}
END_TEST

START_TEST(test_validate_errors)
{
    const int64_t widths[] = {3, 2};
    lf_model_t *m = lf_test_mlp(2, widths, 2, -1.0f, 1.0f, -1.0f, 1.0f, 3);
    m->layers[1].bias[1] = NAN;
    ck_assert_int_eq(lf_model_validate(m, "m.h5"), LF_ERR_VALUE);
    ck_assert_ptr_nonnull(strstr(lf_error_message(), "/layers/1/bias"));
    lf_error_clear();
    m->layers[1].bias[1] = 0.0f;
    lf_model_block(m, 0, LF_SRC_INPUT)->w[3] = INFINITY;
    ck_assert_int_eq(lf_model_validate(m, "m.h5"), LF_ERR_VALUE);
    ck_assert_ptr_nonnull(
        strstr(lf_error_message(), "/layers/0/weight has an infinite value at [1, 1]"));
    lf_error_clear();
    lf_model_destroy(&m);
}
END_TEST

/* Every allocation failure point of copy, stats and fold is reported as LF_ERR_NOMEM and leaks
 * nothing (ASan builds check the latter). */
START_TEST(test_allocation_failures)
{
    const int64_t widths[] = {4, 3, 2};
    lf_model_t *m = lf_test_mlp(3, widths, 3, 0.0f, 1.0f, 0.0f, 0.1f, 4);
    lf_stats_t *s = NULL;
    ck_assert_int_eq(lf_stats_create(m, &s), LF_OK);
    s->samples = 1;
    for (int i = 0; i < 2; i++)
        for (int64_t j = 0; j < widths[i]; j++)
            s->layers[i].positive[j] = 1; /* every hidden neuron linear */
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    int failures = 0;
    for (int64_t k = 0;; k++) {
        lf_model_t *c = NULL, *f = NULL;
        lf_plan_t *p = NULL;
        int *where = NULL;
        lf_alloc_fail_after(k);
        lf_err_t err = lf_model_copy(m, &c);
        if (err == LF_OK)
            err = lf_plan_create(m, s, &o, &p);
        if (err == LF_OK)
            err = lf_fold_apply(LF_TEST_COMM, m, p, &f, &where);
        lf_alloc_fail_after(-1);
        lf_error_clear();
        lf_free(where);
        lf_model_destroy(&f);
        lf_plan_destroy(&p);
        lf_model_destroy(&c);
        if (err == LF_OK)
            break;
        ck_assert_int_eq(err, LF_ERR_NOMEM);
        failures++;
    }
    ck_assert_int_gt(failures, 20);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

/* Error codes that no file or flag provokes, checked directly. */
START_TEST(test_error_codes)
{
    int v = 0;
    ck_assert_int_eq(lf_int_cast(INT64_C(1) << 40, &v), LF_ERR_OVERFLOW);
    lf_error_clear();
    int size = 1;
    MPI_Comm_size(LF_TEST_COMM, &size);
    char buf[8] = "x";
    /* An out-of-range root is an MPI argument error, returned through MPI_ERRORS_RETURN. */
    ck_assert_int_eq(lf_comm_bcast_string(LF_TEST_COMM, buf, sizeof buf, size), LF_ERR_MPI);
    lf_error_clear();
    /* A plan whose prediction does not match the algebra is an internal error. */
    const int64_t widths[] = {2, 1};
    lf_model_t *m = lf_test_mlp(2, widths, 2, 0.0f, 1.0f, 0.0f, 0.1f, 5);
    lf_stats_t *s = NULL;
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    ck_assert_int_eq(lf_stats_create(m, &s), LF_OK);
    s->samples = 1;
    lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_ALL}};
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p), LF_OK);
    p->params_after += 1;
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, NULL), LF_ERR_INTERNAL);
    lf_error_clear();
    o.threshold = LF_DECIMAL(0, 0);
    lf_plan_t *p2 = NULL;
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p2), LF_ERR_USAGE);
    lf_error_clear();
    s->fingerprint ^= 1;
    o.threshold = LF_DECIMAL(1, 0);
    ck_assert_int_eq(lf_plan_create(m, s, &o, &p2), LF_ERR_ARG);
    lf_error_clear();
    for (int e = 0; e < LF_ERR__COUNT; e++) {
        ck_assert_str_ne(lf_err_name((lf_err_t)e), "LF_ERR_UNKNOWN");
        ck_assert_str_ne(lf_strerror((lf_err_t)e), "unknown error");
    }
    lf_plan_destroy(&p);
    lf_stats_destroy(&s);
    lf_model_destroy(&m);
}
END_TEST

START_TEST(test_shard_ranges)
{
    /* Blocks cover every row once and differ by at most one row, also with fewer rows than ranks. */
    const int64_t ns[] = {0, 1, 3, 7, 10, 157};
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++)
        for (int size = 1; size <= 5; size++) {
            int64_t next = 0, lo = INT64_MAX, hi = 0;
            for (int r = 0; r < size; r++) {
                int64_t begin = 0, count = 0;
                lf_comm_shard(ns[t], r, size, &begin, &count);
                ck_assert_int_eq(begin, next);
                next += count;
                lo = count < lo ? count : lo;
                hi = count > hi ? count : hi;
            }
            ck_assert_int_eq(next, ns[t]);
            ck_assert_int_le(hi - lo, 1);
        }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_add_test(tc, test_params_and_copy);
    tcase_add_test(tc, test_remove_neurons_renumbers);
    tcase_add_test(tc, test_validate_errors);
    tcase_add_test(tc, test_allocation_failures);
    tcase_add_test(tc, test_error_codes);
    tcase_add_test(tc, test_shard_ranges);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
