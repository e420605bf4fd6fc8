/* Searches over plans: threshold sweeps, a target size, an accuracy budget.
 *
 * Every search reuses one set of statistics and prices plans on shapes (cheap); only candidates
 * that must be evaluated are folded and run on the evaluation data. All ranks take the same
 * decisions from the same global figures: the functions that evaluate plans are collective, the
 * ones that only price them are not.
 *
 *     lf_search_point_t pt[7];
 *     lf_search_sweep(comm, model, stats, &opts, taus, 7, &eval, pt);
 */
#ifndef LINFOLD_SEARCH_H
#define LINFOLD_SEARCH_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/batch.h"
#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/model.h"
#include "linfold/plan.h"
#include "linfold/stats.h"

/* Folds candidate plan p of m into *out for evaluation; *out is freed with lf_model_release.
 * Collective on comm. */
typedef lf_err_t (*lf_search_fold_fn)(MPI_Comm comm, const lf_model_t *m, const lf_plan_t *p,
                                      void *ctx, lf_model_t **out);

/* Evaluation data for searches; x NULL means "do not evaluate". fold NULL folds candidates in
 * memory (lf_fold_apply); a model too wide for that gives a function that folds on the process
 * grid (fold_dist.h), the same on every rank. */
typedef struct {
    lf_dataset_t *x, *labels;
    lf_batch_opts_t batch;
    lf_search_fold_fn fold;
    void *fold_ctx;
} lf_search_eval_t;

typedef struct {
    lf_plan_opts_t opts; /* the plan this point describes */
    int64_t params, skip_params, params_after_prune;
    double ratio; /* params / original params */
    bool evaluated;
    int64_t samples, correct; /* evaluation rows, and rows classified right (labels required) */
    double accuracy;          /* correct / samples */
    double agreement;         /* top-1 agreement with the original */
    /* The discordant rows against the original (labels required): it classifies `worse` rows
     * right that this model gets wrong, and `better` the reverse. */
    int64_t worse, better;
    /* Set by the accuracy-budget search: drop = (worse - better) / samples, and drop_bound its
     * upper confidence bound (lf_search_drop_bound(), the point estimate at confidence 0). */
    bool bounded;
    double drop, drop_bound;
} lf_search_point_t;

/* Lists the thresholds worth trying, largest first.
 * Not collective.
 * 1, then the distinct activation rates (positive / samples > 0) of the hidden relu and
 * leaky_relu neurons, each as the shortest decimal that selects exactly the neurons at or above
 * it (lf_decimal_rate), printed or not. *out is caller-freed (lf_free); *n >= 1. */
lf_err_t lf_search_thresholds(const lf_model_t *m, const lf_stats_t *s, lf_decimal_t **out,
                              int64_t *n);

/* Fills points with one point per threshold of taus, with base's other options.
 * Collective on comm.
 * Each point is priced, and evaluated when eval->x is set (lf_search_evaluate()). */
lf_err_t lf_search_sweep(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                         const lf_plan_opts_t *base, const lf_decimal_t *taus, int n,
                         const lf_search_eval_t *eval, lf_search_point_t *points);

/* Finds the largest threshold whose plan has at most ratio x the original parameters (decided
 * on integers: params <= floor(ratio * original)).
 * Not collective.
 * It evaluates nothing: bisection over lf_search_thresholds() on prices alone (plan sizes fall
 * as thresholds fall for the optimal selection; for other rules the bisection still returns a
 * threshold that meets the target). *found false when even the lowest threshold misses; *point
 * is then that smallest plan. LF_ERR_USAGE unless ratio > 0. */
lf_err_t lf_search_target_ratio(const lf_model_t *m, const lf_stats_t *s,
                                const lf_plan_opts_t *base, lf_decimal_t ratio, bool *found,
                                lf_search_point_t *point);

#define LF_SEARCH_FRACTIONS_MAX 64

typedef struct {
    lf_decimal_t max_drop;         /* allowed drop in accuracy, >= 0 (1 allows anything) */
    lf_decimal_t confidence;       /* of the upper bound on the drop, in [0, 1): 0 decides on
                                    * the point estimate */
    const lf_decimal_t *fractions; /* importance-pruning shares to try, or NULL: bisection */
    int n_fractions;
} lf_budget_opts_t;

typedef struct {
    lf_search_point_t *frontier; /* every evaluated point (caller frees with lf_free) */
    int n_frontier;
    int n_distinct; /* of which distinct plans: the others reused an identical plan's result */
    lf_search_point_t best; /* the smallest within budget, or the original model */
    bool met;               /* a compressed model is within budget */
    int64_t samples, original_correct;
    double original_accuracy;
} lf_budget_result_t;

/* Returns an upper confidence bound, at level confidence, on the accuracy drop p_w - p_b of a
 * model against the original, from n paired rows of which the original classifies `worse` right
 * and the model wrong and `better` the reverse.
 * Not collective.
 * The bound is the Bonferroni combination of two exact one-sided Clopper-Pearson bounds, each
 * at level (1 - confidence) / 2: the upper bound on p_w from worse of n minus the lower bound on
 * p_b from better of n. It covers the true drop with probability at least confidence, for any
 * n (docs/algorithm.md). Confidence 0 gives the point estimate (worse - better) / n. NAN unless
 * 0 <= worse, better, worse + better <= n, n >= 1 and 0 <= confidence < 1. */
double lf_search_drop_bound(int64_t worse, int64_t better, int64_t n, double confidence);

/* Returns whether pt (evaluated with labels) is within opts->max_drop of the original: at
 * confidence 0, (worse - better) / samples <= max_drop decided exactly on integers; above 0,
 * lf_search_drop_bound() <= max_drop. The one definition of "within budget" (the search and the
 * printed frontier both use it).
 * Not collective. */
bool lf_search_within_budget(const lf_budget_opts_t *opts, const lf_search_point_t *pt);

/* Finds the smallest model whose accuracy on eval is at most opts->max_drop below the
 * original's (lf_search_within_budget(): with a confidence above 0, whose upper bound on the
 * drop is).
 * Collective on comm.
 * With base's rule, it searches over: dead-neuron pruning off and on; importance-pruning shares
 * (opts->fractions, or when there are none the largest share on a 1/100 grid that keeps the
 * budget without folding, found by bisection, and that share minus 0.05 and 0.10); and for
 * each, the thresholds of lf_search_thresholds() by bisection. res->frontier lists every
 * evaluated point; res->best is the smallest within budget, or the original model (res->met
 * false) when no compressed one is. LF_ERR_USAGE for eval without data and labels, or evaluation
 * data without rows. */
lf_err_t lf_search_accuracy_budget(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                                   const lf_plan_opts_t *base, const lf_budget_opts_t *opts,
                                   const lf_search_eval_t *eval, lf_budget_result_t *res);

/* Prices the plan of pt->opts, then folds m by it and evaluates it (fills pt).
 * Collective on comm.
 * With eval or eval->x NULL it only prices the plan and communicates nothing. */
lf_err_t lf_search_evaluate(MPI_Comm comm, const lf_model_t *m, const lf_stats_t *s,
                            const lf_search_eval_t *eval, lf_search_point_t *pt);

#endif /* LINFOLD_SEARCH_H */
