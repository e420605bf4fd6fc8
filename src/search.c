/* Searches over plans (see search.h).
 *
 * Plans are priced on shapes, so a target-size search costs a few milliseconds per candidate
 * threshold. Accuracy needs a forward pass over the evaluation data for each candidate; the
 * accuracy-budget search bisects the thresholds of each family of options instead of scanning
 * them, which assumes accuracy falls as the threshold falls. That is typical, not guaranteed:
 * the frontier it prints shows every point it measured. */
#include "linfold/search.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_errno.h>
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
/* pt's sizes from its plan p. */
static void price_plan(const lf_plan_t *p, lf_search_point_t *pt)
{
    pt->params = p->params_after;
    pt->skip_params = p->skip_params_after;
    pt->params_after_prune = p->params_after_prune;
    pt->ratio = (double)p->params_after / (double)p->params_before;
}

/* Prices pt->opts on shapes. */
static lf_err_t price(const lf_model_t *m, const lf_stats_t *s, lf_search_point_t *pt)
{
    lf_err_t err = LF_OK;
    lf_plan_t *p = NULL;
    LF_CALL(lf_plan_create(m, s, &pt->opts, &p));
    price_plan(p, pt);
cleanup:
    lf_plan_destroy(&p);
    return err;
}

/* Prices pt from its plan p, folds m by p and evaluates the result on eval (eval->x set).
 * Collective on comm. */
static lf_err_t evaluate_plan(MPI_Comm comm, const lf_model_t *m, const lf_plan_t *p,
                              const lf_search_eval_t *eval, lf_search_point_t *pt)
{
    lf_err_t err = LF_OK;
    lf_model_t *f = NULL;
    lf_eval_result_t r;
    price_plan(p, pt);
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
    pt->worse = r.worse;
    pt->better = r.better;
cleanup:
    lf_model_release(comm, &f);
    return err;
}

lf_err_t lf_search_evaluate(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                            const lf_search_eval_t *eval, lf_search_point_t *pt)
{
    lf_err_t err = LF_OK;
    lf_plan_t *p = NULL;
    /* Planning is identical on every rank unless memory runs out on one: agree. */
    if (!eval || !eval->x)
        return lf_comm_agree(comm, price(m, s, pt));
    LF_CALL(lf_comm_agree(comm, lf_plan_create(m, s, &pt->opts, &p)));
    LF_CALL(evaluate_plan(comm, m, p, eval, pt));
cleanup:
    lf_plan_destroy(&p);
    return err;
}

/* What makes two plans fold into the same model: which layers fold and every neuron's fate (the
 * pruned neurons' mean outputs follow from the fates and the statistics). Many options give the
 * same plan (every threshold above the highest activation rate but one, for instance), and a
 * candidate costs a forward pass over the evaluation rows, with reconstruction also a refit over
 * the calibration rows: each distinct plan is evaluated once. */
typedef struct {
    uint8_t **sig; /* one signature per evaluated point, in frontier order */
    int64_t len;   /* bytes per signature */
    int n;
    int distinct; /* signatures evaluated, not reused */
} plan_memo_t;

static void memo_free(plan_memo_t *mo)
{
    for (int k = 0; k < mo->n; k++)
        lf_free(mo->sig[k]);
    lf_free(mo->sig);
    *mo = (plan_memo_t){0};
}

/* *sig (caller frees) from plan p: the fold flags, then the fates layer by layer. */
static lf_err_t plan_signature(const lf_plan_t *p, uint8_t **sig, int64_t *len)
{
    lf_err_t err = LF_OK;
    int64_t n = p->n_layers, at = 0;
    for (int i = 0; i < p->n_layers; i++)
        n += p->n_out[i];
    LF_CALL(lf_malloc((size_t)n, 1, (void **)sig));
    for (int i = 0; i < p->n_layers; i++)
        (*sig)[at++] = p->fold[i];
    for (int i = 0; i < p->n_layers; i++) {
        memcpy(*sig + at, p->fate[i], (size_t)p->n_out[i]);
        at += p->n_out[i];
    }
    *len = n;
cleanup:
    return err;
}

/* Evaluates pt (lf_search_evaluate), unless a point already evaluated has the same plan: then
 * pt takes that point's results. Records pt's plan either way. */
static lf_err_t evaluate_once(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                              const lf_search_eval_t *eval, plan_memo_t *mo,
                              const lf_search_point_t *done, lf_search_point_t *pt)
{
    lf_err_t err = LF_OK;
    lf_plan_t *p = NULL;
    uint8_t *sig = NULL;
    int64_t len = 0;
    if (!eval || !eval->x)
        return lf_search_evaluate(comm, m, s, eval, pt);
    /* Planning is identical on every rank unless memory runs out on one: agree. */
    LF_CALL(lf_comm_agree(comm, lf_plan_create(m, s, &pt->opts, &p)));
    LF_CALL(lf_comm_agree(comm, plan_signature(p, &sig, &len)));
    LF_CALL(lf_comm_agree(comm, lf_realloc((size_t)mo->n + 1, sizeof *mo->sig, (void **)&mo->sig)));
    for (int k = 0; k < mo->n; k++)
        if (len == mo->len && memcmp(sig, mo->sig[k], (size_t)len) == 0) {
            lf_plan_opts_t opts = pt->opts;
            *pt = done[k]; /* same plan, same model: sizes and evaluation alike */
            pt->opts = opts;
            goto record;
        }
    LF_CALL(evaluate_plan(comm, m, p, eval, pt));
    mo->distinct++;
record:
    mo->len = len;
    mo->sig[mo->n++] = sig;
    sig = NULL;
cleanup:
    lf_free(sig);
    lf_plan_destroy(&p);
    return err;
}

lf_err_t lf_search_sweep(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                         const lf_plan_opts_t *base, const lf_decimal_t *taus, int n,
                         const lf_search_eval_t *eval, lf_search_point_t *points)
{
    lf_err_t err = LF_OK;
    plan_memo_t memo = {0};
    for (int k = 0; k < n; k++) {
        LF_CALL(lf_comm_agree(comm, lf_interrupt_check("the threshold sweep")));
        points[k] = (lf_search_point_t){.opts = *base};
        points[k].opts.threshold = taus[k];
        LF_CALL(evaluate_once(comm, m, s, eval, &memo, points, &points[k]));
    }
cleanup:
    memo_free(&memo);
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

/* The exact one-sided Clopper-Pearson bounds on a binomial proportion from x of n, each missing
 * with probability at most alpha: the upper bound is the p at which P(X <= x) = alpha, which is
 * Q(p) = alpha for Q the upper tail of Beta(x + 1, n - x) (1 when x = n); the lower bound the p
 * at which P(X >= x) = alpha, P(p) = alpha for P the lower tail of Beta(x, n - x + 1) (0 when
 * x = 0). GSL's quantile functions (gsl_cdf_beta_Qinv) fail to converge on some of these (for
 * instance alpha 0.025, Beta(5, 355)), so the tails, which are reliable and monotone in p, are
 * inverted by bisection: 64 halvings of [0, 1] reach the double's resolution near the root. */
static double beta_root(double alpha, double a, double b, bool upper)
{
    double lo = 0, hi = 1;
    for (int it = 0; it < 64 && lo < hi; it++) {
        double mid = lo + (hi - lo) / 2;
        bool right_of_root =
            upper ? gsl_cdf_beta_Q(mid, a, b) <= alpha : gsl_cdf_beta_P(mid, a, b) >= alpha;
        if (right_of_root)
            hi = mid;
        else
            lo = mid;
    }
    /* The conservative end: above the root for an upper bound, below it for a lower one. */
    return upper ? hi : lo;
}

static double cp_upper(int64_t x, int64_t n, double alpha)
{
    return x >= n ? 1.0 : beta_root(alpha, (double)x + 1, (double)(n - x), true);
}

static double cp_lower(int64_t x, int64_t n, double alpha)
{
    return x <= 0 ? 0.0 : beta_root(alpha, (double)x, (double)(n - x + 1), false);
}

double lf_search_drop_bound(int64_t worse, int64_t better, int64_t n, double confidence)
{
    if (n < 1 || worse < 0 || better < 0 || worse > n - better || !(confidence >= 0) ||
        !(confidence < 1))
        return NAN;
    if (confidence == 0)
        return (double)(worse - better) / (double)n;
    /* GSL's default handler aborts the process on a range error (an underflowing tail): turn
     * it off for these calls; the tails then return their limits, which bisect as well. */
    gsl_error_handler_t *handler = gsl_set_error_handler_off();
    double alpha = (1 - confidence) / 2;
    double bound = cp_upper(worse, n, alpha) - cp_lower(better, n, alpha);
    gsl_set_error_handler(handler);
    return bound;
}

static double decimal_value(lf_decimal_t d) { return (double)d.m * pow(10.0, d.e); }

bool lf_search_within_budget(const lf_budget_opts_t *opts, const lf_search_point_t *pt)
{
    /* The point estimate: (worse - better) / samples <= max_drop  <=>  worse - better <=
     * floor(max_drop * samples), decided on integers as the budget was before bounds. */
    if (opts->confidence.m == 0)
        return pt->worse - pt->better <= lf_decimal_mul_floor(opts->max_drop, pt->samples);
    double bound =
        lf_search_drop_bound(pt->worse, pt->better, pt->samples, decimal_value(opts->confidence));
    return bound <= decimal_value(opts->max_drop); /* false on NAN */
}

/* Fills pt's drop and its bound at the search's confidence. */
static void bound_point(const lf_budget_opts_t *opts, lf_search_point_t *pt)
{
    double c = decimal_value(opts->confidence);
    pt->bounded = true;
    pt->drop = lf_search_drop_bound(pt->worse, pt->better, pt->samples, 0);
    pt->drop_bound = lf_search_drop_bound(pt->worse, pt->better, pt->samples, c);
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
    plan_memo_t *memo; /* the plans of res->frontier */
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
        LF_CALL(evaluate_once(b->comm, b->m, b->s, b->eval, b->memo, res->frontier, &pt));
        LF_CALL(lf_comm_agree(b->comm, push(&res->frontier, &res->n_frontier, &pt)));
        found = &res->frontier[res->n_frontier - 1];
        bound_point(b->opts, &res->frontier[res->n_frontier - 1]);
    }
    *ok = lf_search_within_budget(b->opts, found);
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
    plan_memo_t memo = {0};
    *res = (lf_budget_result_t){0};
    LF_CHECK(eval && eval->x && eval->labels, LF_ERR_USAGE,
             "the accuracy budget needs evaluation data and labels");
    LF_CHECK(lf_decimal_cmp(opts->confidence, LF_DECIMAL(1, 0)) < 0, LF_ERR_USAGE,
             "the accuracy budget's confidence must be below 1");
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
                  .res = res,
                  .memo = &memo};
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
        if (lf_search_within_budget(opts, pt) && pt->params < res->best.params) {
            res->best = *pt;
            res->met = true;
        }
    }
    res->n_distinct = memo.distinct;
cleanup:
    memo_free(&memo);
    lf_free(taus);
    return err;
}
