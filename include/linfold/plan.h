/* The fold plan: which neurons are linear, which are dead, which layers fold.
 *
 * A hidden neuron with a piecewise-linear activation is *linear* when its activation rate
 * count(z > 0) / samples reaches the threshold (every neuron of an `identity` layer is linear);
 * a `relu` neuron with rate 0 is *dead*. The output layer is never changed. A per-layer rule
 * decides which layers fold their linear neurons into their consumers. Every rank computes the
 * same plan from the same global statistics, so planning is not collective.
 *
 * Decisions that depend on sizes use lf_shape_t (shape.h), a model reduced to its widths and the
 * sources of its blocks, whose parameter count after a fold is exactly that of the folded model.
 *
 *     lf_plan_opts_t o = {.threshold = LF_DECIMAL(1, 0), .rule = {.kind = LF_RULE_BENEFIT},
 *                         .prune_dead = true};
 *     lf_plan_t *p = NULL;
 *     lf_plan_create(model, stats, &o, &p);
 *     ... lf_fold_apply(comm, model, p, &folded, &map) ...
 *     lf_plan_destroy(&p);
 */
#ifndef LINFOLD_PLAN_H
#define LINFOLD_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "linfold/decimal.h"
#include "linfold/error.h"
#include "linfold/model.h"
#include "linfold/stats.h"

/* How layers are chosen to fold. The first four decide layer by layer from the input side; GREEDY
 * and OPTIMAL choose a set of layers (select.h). */
typedef enum {
    LF_RULE_BENEFIT,
    LF_RULE_ALL,
    LF_RULE_COUNT,
    LF_RULE_FRACTION,
    LF_RULE_GREEDY,
    LF_RULE_OPTIMAL,
} lf_rule_kind_t;

typedef struct {
    lf_rule_kind_t kind;
    int64_t count;         /* LF_RULE_COUNT: fold when more than count neurons are linear */
    lf_decimal_t fraction; /* LF_RULE_FRACTION: fold when the linear share exceeds fraction */
} lf_layer_rule_t;

/* What importance pruning ranks hidden neurons by, least important first (docs/algorithm.md).
 * RATE: the activation rate count(z > 0) / samples. ENERGY: the output energy the neuron sends
 * to its readers, E[a^2] * sum over every block that reads it of the squared norm of its column
 * (the mean squared change of the readers' pre-activations when it is removed without
 * compensation). VARIANCE: the same with (E[a^2] - E[a]^2) instead of E[a^2], what is left of
 * that change once its mean output goes into the readers' biases, as pruning does. ENERGY and
 * VARIANCE need the sums of squared outputs (stats.h). */
typedef enum { LF_PRUNE_BY_RATE, LF_PRUNE_BY_ENERGY, LF_PRUNE_BY_VARIANCE } lf_prune_by_t;
/* What the command line and pipelines prune by when not told (docs/algorithm.md says why). */
#define LF_PRUNE_BY_DEFAULT LF_PRUNE_BY_VARIANCE

typedef struct {
    lf_decimal_t threshold; /* in (0, 1] */
    lf_layer_rule_t rule;
    bool prune_dead;             /* remove relu neurons never active on the calibration data */
    lf_decimal_t prune_fraction; /* in [0, 1): also remove this share of every hidden relu or
                                    leaky_relu layer's neurons, least important first by
                                    prune_by (needs output sums) */
    bool prune_global;           /* rank the whole network at once instead: the share of all
                                    hidden relu/leaky_relu neurons, wherever they are */
    lf_prune_by_t prune_by;      /* the importance of a neuron; zero is RATE, while the command
                                    line and pipelines use LF_PRUNE_BY_DEFAULT */
} lf_plan_opts_t;

/* PRUNE removes a neuron and adds its mean output on the calibration data, times its outgoing
 * weights, to its readers' biases (0 for a dead relu neuron). */
typedef enum { LF_NEURON_KEEP = 0, LF_NEURON_FOLD = 1, LF_NEURON_PRUNE = 2 } lf_fate_t;

typedef struct {
    int n_layers;      /* of the model the plan was made for */
    int64_t *n_out;    /* (n_layers) */
    int64_t *n_linear; /* (n_layers): neurons at or above the threshold */
    int64_t *n_dead;   /* (n_layers): relu neurons never active (pruned only with prune_dead) */
    int64_t *n_pruned; /* (n_layers): neurons pruned (dead and by importance) */
    bool *fold;        /* (n_layers): the layer folds its linear neurons */
    uint8_t **fate;    /* (n_layers)(n_out): lf_fate_t of every neuron */
    double **shift;    /* (n_layers)(n_out): mean output a pruned neuron leaves behind */
    int64_t params_before, params_after_prune, params_after, skip_params_after;
    int64_t search_nodes; /* shapes priced by a GREEDY or OPTIMAL selection */
} lf_plan_t;

/* Parses a --layer-rule value into *out.
 * Not collective.
 * Accepts "benefit", "all", "count:K" (K >= 0) and "fraction:F" (0 <= F < 1); LF_ERR_USAGE
 * otherwise. */
lf_err_t lf_plan_parse_layer_rule(const char *text, lf_layer_rule_t *out);
/* Parses a --prune-by value ("rate", "energy" or "variance") into *out.
 * Not collective.
 * LF_ERR_USAGE otherwise. */
lf_err_t lf_plan_parse_prune_by(const char *text, lf_prune_by_t *out);
/* Returns the name lf_plan_parse_prune_by() reads as by.
 * Not collective. */
const char *lf_plan_prune_by_name(lf_prune_by_t by);
/* Returns the importance of neuron j of layer i that pruning by `by` ranks by (lowest pruned
 * first): the rate, energy or variance of lf_prune_by_t, from the statistics s of model m.
 * Not collective.
 * ENERGY and VARIANCE need s->with_squares (0 without). A global ranking by them ranks this
 * figure divided by the sum of its layer's (docs/algorithm.md). */
double lf_plan_importance(const lf_model_t *m, const lf_stats_t *s, lf_prune_by_t by, int i,
                          int64_t j);
/* Parses a --select value ("greedy" or "optimal") into *out.
 * Not collective.
 * LF_ERR_USAGE otherwise. */
lf_err_t lf_plan_parse_select(const char *text, lf_layer_rule_t *out);

/* Returns the smallest count of positive rows that makes a neuron linear at threshold over
 * samples rows: the least count with count / samples >= threshold, decided exactly, and never
 * below 1 (a neuron with no positive row is never linear).
 * Not collective.
 * For 0 < threshold <= 1 and 1 <= samples <= 2^62. */
int64_t lf_plan_need(lf_decimal_t threshold, int64_t samples);
/* Returns the number of neurons a pruning share removes from n: the integer nearest to
 * fraction * n, computed exactly; an exact half rounds down (the neuron is kept).
 * Not collective. */
int64_t lf_plan_share(lf_decimal_t fraction, int64_t n);

/* Builds the plan for model m from its statistics s.
 * Not collective.
 * Caller destroys. LF_ERR_USAGE for a threshold or prune fraction out of range, LF_ERR_ARG for
 * statistics of another model, of no samples, without the output sums pruning needs, or
 * without the sums of squares pruning by energy or variance needs. */
lf_err_t lf_plan_create(const lf_model_t *m, const lf_stats_t *s, const lf_plan_opts_t *opts,
                        lf_plan_t **out);
/* Frees *p and sets it to NULL; accepts NULL.
 * Not collective. */
void lf_plan_destroy(lf_plan_t **p);

/* The two steps a fold takes for layer i, as both fold back ends (fold.h, fold_dist.h) apply
 * them: keep[j] (p->n_out[i] entries) is false for the neurons pruned, and the return value
 * says whether any is.
 * Not collective. */
bool lf_plan_prune_mask(const lf_plan_t *p, int i, bool *keep);
/* Fills idx with the positions of layer i's folded neurons among those left after pruning
 * (increasing) and returns their count.
 * Not collective. */
int64_t lf_plan_fold_positions(const lf_plan_t *p, int i, int64_t *idx);

/* Finds the neurons that are provably linear, independent of any data.
 * Not collective.
 * (*out)[i][j] is true for a hidden relu or leaky_relu neuron whose bias and incoming weights are
 * >= 0 and whose non-zero weights read only provably non-negative values: outputs of relu,
 * sigmoid and softmax neurons, of provably linear neurons, and the model input when
 * input_nonnegative. Such a neuron has z >= 0 on every input, so it is the identity everywhere.
 * *out is (n_layers) arrays of n_out flags; free with lf_plan_provable_free. */
lf_err_t lf_plan_provable(const lf_model_t *m, bool input_nonnegative, bool ***out);
/* Frees the flags of lf_plan_provable() and sets *linear to NULL; accepts NULL.
 * Not collective. */
void lf_plan_provable_free(const lf_model_t *m, bool ***linear);

#endif /* LINFOLD_PLAN_H */
