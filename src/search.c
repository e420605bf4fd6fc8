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

static int cmp_desc(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? 1 : (a > b ? -1 : 0);
}

lf_err_t lf_search_thresholds(const lf_model_t *m, const lf_stats_t *s, double **out, int64_t *n)
{
    lf_err_t err = LF_OK;
    int64_t *counts = NULL, total = 0, k = 0;
    *out = NULL;
    *n = 0;
    for (int i = 0; i < m->n_layers - 1; i++)
        if (m->layers[i].act == LF_ACT_RELU || m->layers[i].act == LF_ACT_LEAKY_RELU)
            total += m->layers[i].n_out;
    LF_CALL(lf_calloc((size_t)total, sizeof *counts, (void **)&counts));
    for (int i = 0; i < m->n_layers - 1; i++)
        if (m->layers[i].act == LF_ACT_RELU || m->layers[i].act == LF_ACT_LEAKY_RELU)
            for (int64_t j = 0; j < m->layers[i].n_out; j++)
                if (s->layers[i].positive[j] > 0)
                    counts[k++] = s->layers[i].positive[j];
    qsort(counts, (size_t)k, sizeof *counts, cmp_desc);
    LF_CALL(lf_calloc((size_t)k + 1, sizeof **out, (void **)out));
    /* 1.0 always leads: the most conservative plan, even when no neuron reaches it. */
    if (k == 0 || counts[0] < s->samples)
        (*out)[(*n)++] = 1.0;
    for (int64_t t = 0; t < k; t++)
        if (t == 0 || counts[t] != counts[t - 1])
            (*out)[(*n)++] = (double)counts[t] / (double)s->samples;
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
    LF_CALL(lf_fold_apply(comm, m, p, &f, NULL));
    LF_CALL(lf_eval_run(comm, f, m, eval->x, eval->labels, &eval->batch, &r));
    pt->evaluated = true;
    pt->accuracy = r.has_labels && r.samples ? (double)r.correct / (double)r.samples : NAN;
    pt->agreement = r.samples ? (double)r.agree / (double)r.samples : NAN;
cleanup:
    lf_model_destroy(&f);
    lf_plan_destroy(&p);
    return err;
}

lf_err_t lf_search_sweep(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                         const lf_plan_opts_t *base, const double *taus, int n,
                         const lf_search_eval_t *eval, lf_search_point_t *points)
{
    lf_err_t err = LF_OK;
    for (int k = 0; k < n; k++) {
        points[k] = (lf_search_point_t){.opts = *base};
        points[k].opts.threshold = taus[k];
        LF_CALL(lf_search_evaluate(comm, m, s, eval, &points[k]));
    }
cleanup:
    return err;
}

lf_err_t lf_search_target_ratio(const lf_model_t *m, const lf_stats_t *s,
                                const lf_plan_opts_t *base, double ratio, bool *found,
                                lf_search_point_t *point)
{
    lf_err_t err = LF_OK;
    double *taus = NULL;
    int64_t n = 0;
    lf_search_point_t pt = {.opts = *base};
    LF_CHECK(ratio > 0.0, LF_ERR_USAGE, "target ratio %g, expected > 0", ratio);
    LF_CALL(lf_search_thresholds(m, s, &taus, &n));
    *found = false;
    /* Sizes fall as the index (and the threshold) falls: find the first index within target. */
    pt.opts.threshold = taus[n - 1];
    LF_CALL(price(m, s, &pt));
    *point = pt;
    if (pt.ratio > ratio)
        goto cleanup;
    int64_t lo = -1, hi = n - 1; /* hi: within target; lo: outside or before the start */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        pt.opts.threshold = taus[mid];
        LF_CALL(price(m, s, &pt));
        if (pt.ratio <= ratio) {
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
    double floor_correct;
    int64_t samples;
    lf_search_point_t **frontier;
    int *n_frontier;
} budget_t;

/* Evaluates one plan (or reuses the frontier's result for the same options) and says whether it
 * is within the budget. */
static lf_err_t probe(budget_t *b, const lf_plan_opts_t *opts, bool *ok)
{
    lf_err_t err = LF_OK;
    lf_search_point_t pt = {.opts = *opts};
    for (int k = 0; k < *b->n_frontier; k++) {
        const lf_plan_opts_t *q = &(*b->frontier)[k].opts;
        if (q->threshold == opts->threshold && q->prune_dead == opts->prune_dead &&
            q->prune_fraction == opts->prune_fraction && q->prune_global == opts->prune_global) {
            *ok = (*b->frontier)[k].accuracy * (double)b->samples >= b->floor_correct;
            return LF_OK;
        }
    }
    LF_CALL(lf_search_evaluate(b->comm, b->m, b->s, b->eval, &pt));
    LF_CALL(lf_comm_agree(b->comm, push(b->frontier, b->n_frontier, &pt)));
    *ok = pt.accuracy * (double)b->samples >= b->floor_correct;
cleanup:
    return err;
}

lf_err_t lf_search_accuracy_budget(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                                   const lf_plan_opts_t *base, const double *fractions,
                                   int n_fractions, double max_drop, const lf_search_eval_t *eval,
                                   lf_search_point_t **frontier, int *n_frontier,
                                   lf_search_point_t *best, bool *met, double *original_accuracy)
{
    lf_err_t err = LF_OK;
    double *taus = NULL;
    int64_t n = 0;
    lf_eval_result_t r;
    *frontier = NULL;
    *n_frontier = 0;
    *met = false;
    LF_CHECK(max_drop >= 0.0, LF_ERR_USAGE, "accuracy drop %g, expected >= 0", max_drop);
    LF_CHECK(eval && eval->x && eval->labels, LF_ERR_USAGE,
             "the accuracy budget needs evaluation data and labels");
    LF_CALL(lf_eval_run(comm, m, NULL, eval->x, eval->labels, &eval->batch, &r));
    *original_accuracy = (double)r.correct / (double)r.samples;
    /* Within budget: correct >= original correct - max_drop * samples, on counts. */
    double floor_correct = (double)r.correct - max_drop * (double)r.samples - 1e-9;
    *best = (lf_search_point_t){.opts = *base, .params = lf_model_params(m), .ratio = 1.0,
                                .evaluated = true, .accuracy = *original_accuracy,
                                .agreement = 1.0};
    best->params_after_prune = best->params;
    LF_CALL(lf_comm_agree(comm, lf_search_thresholds(m, s, &taus, &n)));
    budget_t b = {.comm = comm, .m = m, .s = s, .eval = eval, .floor_correct = floor_correct,
                  .samples = r.samples, .frontier = frontier, .n_frontier = n_frontier};
    /* Families: dead-neuron pruning off and on, importance pruning per layer and global. */
    for (int fam = 0; fam < 4; fam++) {
        lf_plan_opts_t family = *base;
        family.prune_dead = fam & 1;
        family.prune_global = fam >> 1;
        if (family.prune_global && n_fractions == 1 && fractions[0] == 0.0)
            continue; /* no importance pruning asked for: the scope does not matter */
        /* The importance-pruning shares to try: the caller's, or the largest share that keeps
         * the budget without folding (bisection on a grid of 1/100), and two below it. */
        double shares[LF_SEARCH_FRACTIONS_MAX];
        int n_shares = 0;
        if (n_fractions > 0) {
            for (int f = 0; f < n_fractions && n_shares < LF_SEARCH_FRACTIONS_MAX; f++)
                shares[n_shares++] = fractions[f];
        } else {
            int lo = 0, hi = 91; /* share lo/100 within budget (0 is, by definition), hi/100 not */
            family.threshold = 1.0;
            while (hi - lo > 1) {
                int mid = (lo + hi) / 2;
                family.prune_fraction = mid / 100.0;
                bool ok = false;
                LF_CALL(probe(&b, &family, &ok));
                if (ok)
                    lo = mid;
                else
                    hi = mid;
            }
            for (int k = 0; k < 3; k++)
                if (lo - 5 * k >= 0)
                    shares[n_shares++] = (lo - 5 * k) / 100.0;
        }
        for (int f = 0; f < n_shares; f++) {
            family.prune_fraction = shares[f];
            /* Probe the two ends of the thresholds, then bisect between them. */
            int64_t lo = -1, hi = n; /* lo: last index known within budget; hi: first known out */
            bool ok = false;
            family.threshold = taus[0];
            LF_CALL(probe(&b, &family, &ok));
            if (!ok)
                continue;
            lo = 0;
            if (n > 1) {
                family.threshold = taus[n - 1];
                LF_CALL(probe(&b, &family, &ok));
                if (ok)
                    lo = n - 1;
                else
                    hi = n - 1;
            }
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                family.threshold = taus[mid];
                LF_CALL(probe(&b, &family, &ok));
                if (ok)
                    lo = mid;
                else
                    hi = mid;
            }
        }
    }
    for (int k = 0; k < *n_frontier; k++) {
        const lf_search_point_t *pt = &(*frontier)[k];
        bool within = pt->accuracy * (double)r.samples >= floor_correct;
        if (within && pt->params < best->params) {
            *best = *pt;
            *met = true;
        }
    }
cleanup:
    lf_free(taus);
    return err;
}
