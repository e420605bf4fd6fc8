/* Searches over plans (see search.h).
 *
 * Plans are priced on shapes, so a target-size search costs a few milliseconds per candidate
 * threshold. Accuracy needs a forward pass over the evaluation data for each candidate; the
 * accuracy-budget search bisects the thresholds of each family of options instead of scanning
 * them, which assumes accuracy falls as the threshold falls. That is typical, not guaranteed:
 * the frontier it prints shows every point it measured. */
#include "linfold/search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/eval.h"
#include "linfold/fold.h"
#include "linfold/interrupt.h"

static int cmp_desc(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? 1 : (a > b ? -1 : 0);
}

lf_err_t lf_search_thresholds(const lf_model_t *m, const lf_stats_t *s, lf_decimal_t **out,
                              int64_t *n)
{
    lf_err_t err = LF_OK;
    int64_t *counts = NULL, total = 0, k = 0;
    *out = NULL;
    *n = 0;
    for (int i = 0; i < m->n_layers; i++)
        total += lf_model_hidden_relu_like(m, i) ? m->layers[i].n_out : 0;
    LF_CALL(lf_calloc((size_t)total, sizeof *counts, (void **)&counts));
    for (int i = 0; i < m->n_layers; i++)
        for (int64_t j = 0; lf_model_hidden_relu_like(m, i) && j < m->layers[i].n_out; j++)
            if (s->layers[i].positive[j] > 0)
                counts[k++] = s->layers[i].positive[j];
    qsort(counts, (size_t)k, sizeof *counts, cmp_desc);
    LF_CALL(lf_calloc((size_t)k + 1, sizeof **out, (void **)out));
    /* 1.0 always leads: the most conservative plan, even when no neuron reaches it. */
    if (k == 0 || counts[0] < s->samples)
        (*out)[(*n)++] = LF_DECIMAL(1, 0);
    /* Each rate as the shortest decimal that selects exactly the neurons with at least that
     * count (lf_decimal_rate), also when printed and passed back. */
    for (int64_t t = 0; t < k; t++)
        if (t == 0 || counts[t] != counts[t - 1])
            (*out)[(*n)++] = lf_decimal_rate(counts[t], s->samples);
cleanup:
    lf_free(counts);
    return err;
}

/* Prices pt->opts on shapes. */
static lf_err_t price(const lf_model_t *m, const lf_stats_t *s, lf_search_point_t *pt)
{
    lf_err_t err = LF_OK;
    lf_plan_t *p = NULL;
    LF_CALL(lf_plan_create(m, s, &pt->opts, &p));
    pt->params = p->params_after;
    pt->skip_params = p->skip_params_after;
    pt->params_after_prune = p->params_after_prune;
    pt->ratio = (double)p->params_after / (double)p->params_before;
cleanup:
    lf_plan_destroy(&p);
    return err;
}

lf_err_t lf_search_evaluate(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                            const lf_search_eval_t *eval, lf_search_point_t *pt)
{
    lf_err_t err = LF_OK;
    lf_plan_t *p = NULL;
    lf_model_t *f = NULL;
    lf_eval_result_t r;
    /* Planning is identical on every rank unless memory runs out on one: agree first. */
    LF_CALL(lf_comm_agree(comm, price(m, s, pt)));
    if (!eval || !eval->x)
        return LF_OK;
    LF_CALL(lf_comm_agree(comm, lf_plan_create(m, s, &pt->opts, &p)));
    if (eval->fold)
        LF_CALL(eval->fold(comm, m, p, eval->fold_ctx, &f));
    else
        LF_CALL(lf_fold_apply(comm, m, p, &f, NULL));
    LF_CALL(lf_eval_run(comm, f, m, eval->x, eval->labels, &eval->batch, &r));
    pt->evaluated = true;
    pt->samples = r.samples;
    pt->correct = r.has_labels ? r.correct : 0;
    pt->accuracy = r.has_labels && r.samples ? (double)r.correct / (double)r.samples : NAN;
    pt->agreement = r.samples ? (double)r.agree / (double)r.samples : NAN;
cleanup:
    lf_model_release(comm, &f);
    lf_plan_destroy(&p);
    return err;
}

lf_err_t lf_search_sweep(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                         const lf_plan_opts_t *base, const lf_decimal_t *taus, int n,
                         const lf_search_eval_t *eval, lf_search_point_t *points)
{
    lf_err_t err = LF_OK;
    for (int k = 0; k < n; k++) {
        LF_CALL(lf_comm_agree(comm, lf_interrupt_check("the threshold sweep")));
        points[k] = (lf_search_point_t){.opts = *base};
        points[k].opts.threshold = taus[k];
        LF_CALL(lf_search_evaluate(comm, m, s, eval, &points[k]));
    }
cleanup:
    return err;
}

/* params <= ratio * before, on integers. */
static bool within_ratio(const lf_search_point_t *pt, lf_decimal_t ratio, int64_t before)
{
    return pt->params <= lf_decimal_mul_floor(ratio, before);
}

lf_err_t lf_search_target_ratio(const lf_model_t *m, const lf_stats_t *s,
                                const lf_plan_opts_t *base, lf_decimal_t ratio, bool *found,
                                lf_search_point_t *point)
{
    lf_err_t err = LF_OK;
    lf_decimal_t *taus = NULL;
    int64_t n = 0, before = lf_model_params(m);
    lf_search_point_t pt = {.opts = *base};
    LF_CHECK(ratio.m > 0, LF_ERR_USAGE, "target ratio 0, expected > 0");
    LF_CALL(lf_search_thresholds(m, s, &taus, &n));
    *found = false;
    /* Sizes fall as the index (and the threshold) falls: find the first index within target. */
    pt.opts.threshold = taus[n - 1];
    LF_CALL(price(m, s, &pt));
    *point = pt;
    if (!within_ratio(&pt, ratio, before))
        goto cleanup;
    int64_t lo = -1, hi = n - 1; /* hi: within target; lo: outside or before the start */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        pt.opts.threshold = taus[mid];
        LF_CALL(price(m, s, &pt));
        if (within_ratio(&pt, ratio, before)) {
            hi = mid;
            *point = pt;
        } else {
            lo = mid;
        }
    }
    *found = true;
cleanup:
    lf_free(taus);
    return err;
}

bool lf_search_within_budget(int64_t original_correct, int64_t correct, int64_t samples,
                             lf_decimal_t max_drop)
{
    /* (original - correct) / samples <= max_drop  <=>  original - correct <= floor(max_drop *
     * samples), decided on integers. */
    return original_correct - correct <= lf_decimal_mul_floor(max_drop, samples);
}

static lf_err_t push(lf_search_point_t **list, int *n, const lf_search_point_t *pt)
{
    lf_err_t err = LF_OK;
    LF_CALL(lf_realloc((size_t)*n + 1, sizeof **list, (void **)list));
    (*list)[(*n)++] = *pt;
cleanup:
    return err;
}

typedef struct {
    MPI_Comm comm;
    const lf_model_t *m;
    const lf_stats_t *s;
    const lf_search_eval_t *eval;
    const lf_budget_opts_t *opts;
    const lf_decimal_t *taus;
    int64_t n_taus;
    lf_budget_result_t *res;
} budget_t;

static bool same_plan(const lf_plan_opts_t *a, const lf_plan_opts_t *b)
{
    return lf_decimal_cmp(a->threshold, b->threshold) == 0 && a->prune_dead == b->prune_dead &&
           lf_decimal_cmp(a->prune_fraction, b->prune_fraction) == 0 &&
           a->prune_global == b->prune_global;
}

/* Evaluates one plan (or reuses the frontier's result for the same options) and says whether it
 * is within the budget. */
static lf_err_t probe(budget_t *b, const lf_plan_opts_t *opts, bool *ok)
{
    lf_err_t err = LF_OK;
    lf_budget_result_t *res = b->res;
    const lf_search_point_t *found = NULL;
    for (int k = 0; k < res->n_frontier && !found; k++)
        if (same_plan(&res->frontier[k].opts, opts))
            found = &res->frontier[k];
    if (!found) {
        lf_search_point_t pt = {.opts = *opts};
        LF_CALL(lf_search_evaluate(b->comm, b->m, b->s, b->eval, &pt));
        LF_CALL(lf_comm_agree(b->comm, push(&res->frontier, &res->n_frontier, &pt)));
        found = &res->frontier[res->n_frontier - 1];
    }
    *ok = lf_search_within_budget(res->original_correct, found->correct, res->samples,
                                  b->opts->max_drop);
cleanup:
    return err;
}

/* The importance-pruning shares a family tries: the caller's, or the largest share on a grid of
 * 1/100 that keeps the budget without folding (bisection), and 0.05 and 0.10 below it. */
static lf_err_t family_shares(budget_t *b, lf_plan_opts_t family, lf_decimal_t *shares, int *n)
{
    lf_err_t err = LF_OK;
    *n = 0;
    if (b->opts->n_fractions > 0) {
        for (int f = 0; f < b->opts->n_fractions && *n < LF_SEARCH_FRACTIONS_MAX; f++)
            shares[(*n)++] = b->opts->fractions[f];
        return LF_OK;
    }
    int lo = 0, hi = 91; /* share lo/100 within budget (0 is, by definition), hi/100 not */
    family.threshold = LF_DECIMAL(1, 0);
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        family.prune_fraction = lf_decimal_make((uint64_t)mid, -2);
        bool ok = false;
        LF_CALL(probe(b, &family, &ok));
        if (ok)
            lo = mid;
        else
            hi = mid;
    }
    for (int k = 0; k < 3; k++)
        if (lo - 5 * k >= 0)
            shares[(*n)++] = lf_decimal_make((uint64_t)(lo - 5 * k), -2);
cleanup:
    return err;
}

/* Probes the two ends of the thresholds, then bisects between them (accuracy is taken to fall as
 * the threshold falls; every point measured is kept on the frontier). */
static lf_err_t bisect_thresholds(budget_t *b, lf_plan_opts_t family)
{
    lf_err_t err = LF_OK;
    int64_t n = b->n_taus, lo = 0, hi = n; /* lo: last index within budget; hi: first out */
    bool ok = false;
    family.threshold = b->taus[0];
    LF_CALL(probe(b, &family, &ok));
    if (!ok)
        return LF_OK;
    if (n > 1) {
        family.threshold = b->taus[n - 1];
        LF_CALL(probe(b, &family, &ok));
        if (ok)
            lo = n - 1;
        else
            hi = n - 1;
    }
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        family.threshold = b->taus[mid];
        LF_CALL(probe(b, &family, &ok));
        if (ok)
            lo = mid;
        else
            hi = mid;
    }
cleanup:
    return err;
}

lf_err_t lf_search_accuracy_budget(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                                   const lf_plan_opts_t *base, const lf_budget_opts_t *opts,
                                   const lf_search_eval_t *eval, lf_budget_result_t *res)
{
    lf_err_t err = LF_OK;
    lf_decimal_t *taus = NULL;
    lf_eval_result_t r;
    *res = (lf_budget_result_t){0};
    LF_CHECK(eval && eval->x && eval->labels, LF_ERR_USAGE,
             "the accuracy budget needs evaluation data and labels");
    LF_CALL(lf_eval_run(comm, m, NULL, eval->x, eval->labels, &eval->batch, &r));
    res->samples = r.samples;
    res->original_correct = r.correct;
    res->original_accuracy = (double)r.correct / (double)r.samples;
    res->best = (lf_search_point_t){.opts = *base,
                                    .params = lf_model_params(m),
                                    .ratio = 1.0,
                                    .evaluated = true,
                                    .samples = r.samples,
                                    .correct = r.correct,
                                    .accuracy = res->original_accuracy,
                                    .agreement = 1.0};
    res->best.params_after_prune = res->best.params;
    int64_t n_taus = 0;
    LF_CALL(lf_comm_agree(comm, lf_search_thresholds(m, s, &taus, &n_taus)));
    budget_t b = {.comm = comm,
                  .m = m,
                  .s = s,
                  .eval = eval,
                  .opts = opts,
                  .taus = taus,
                  .n_taus = n_taus,
                  .res = res};
    /* Families: dead-neuron pruning off and on, importance pruning per layer and global. */
    for (int fam = 0; fam < 4; fam++) {
        lf_plan_opts_t family = *base;
        family.prune_dead = fam & 1;
        family.prune_global = fam >> 1;
        if (family.prune_global && opts->n_fractions == 1 && opts->fractions[0].m == 0)
            continue; /* no importance pruning asked for: the scope does not matter */
        lf_decimal_t shares[LF_SEARCH_FRACTIONS_MAX];
        int n_shares = 0;
        LF_CALL(family_shares(&b, family, shares, &n_shares));
        for (int f = 0; f < n_shares; f++) {
            family.prune_fraction = shares[f];
            LF_CALL(bisect_thresholds(&b, family));
        }
    }
    for (int k = 0; k < res->n_frontier; k++) {
        const lf_search_point_t *pt = &res->frontier[k];
        if (lf_search_within_budget(res->original_correct, pt->correct, res->samples,
                                    opts->max_drop) &&
            pt->params < res->best.params) {
            res->best = *pt;
            res->met = true;
        }
    }
cleanup:
    lf_free(taus);
    return err;
}
