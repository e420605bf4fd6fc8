/* Linearity masks, pruning choices and layer rules: the fold plan.
 *
 * The plan is decided on shapes only: folding the linear set A (a neurons) of layer l removes
 * a rows from each of l's blocks and its bias, removes a columns from every block that reads l,
 * and gives every reader c of l a block from every source s of l (if it had none). The change in
 * parameters is therefore
 *     -a * (1 + sum_s width(s)) - a * sum_c n_out(c) + sum over new (c, s) of n_out(c) * width(s),
 * linear in a once the set of new blocks is fixed: for one layer, folding all of its linear
 * neurons or none is always at least as good as folding a part, which is why the rules decide per
 * layer. lf_shape_t tracks exactly this, and tests check that its count equals the folded model's. */
#include "linfold/plan.h"

#include <stdlib.h>
#include <string.h>

#include "linfold/alloc.h"
#include "linfold/select.h"
#include "linfold/shape.h"

/* ---------------------------------------------------------------- rules */

lf_err_t lf_plan_parse_layer_rule(const char *text, lf_layer_rule_t *out)
{
    lf_err_t err = LF_OK;
    char *end = NULL;
    if (strcmp(text, "benefit") == 0) {
        *out = (lf_layer_rule_t){.kind = LF_RULE_BENEFIT};
    } else if (strcmp(text, "all") == 0) {
        *out = (lf_layer_rule_t){.kind = LF_RULE_ALL};
    } else if (strncmp(text, "count:", 6) == 0) {
        long long k = strtoll(text + 6, &end, 10);
        LF_CHECK(text[6] && *end == '\0' && k >= 0, LF_ERR_USAGE,
                 "--layer-rule %s: count:K needs a whole number K >= 0", text);
        *out = (lf_layer_rule_t){.kind = LF_RULE_COUNT, .count = k};
    } else if (strncmp(text, "fraction:", 9) == 0) {
        lf_decimal_t f = {0, 0};
        bool parsed = lf_decimal_parse(text + 9, &f) == LF_OK;
        lf_error_clear();
        LF_CHECK(parsed && lf_decimal_cmp(f, LF_DECIMAL(1, 0)) < 0, LF_ERR_USAGE,
                 "--layer-rule %s: fraction:F needs 0 <= F < 1", text);
        *out = (lf_layer_rule_t){.kind = LF_RULE_FRACTION, .fraction = f};
    } else {
        bool set_rule = strcmp(text, "greedy") == 0 || strcmp(text, "optimal") == 0;
        LF_FAIL(LF_ERR_USAGE, "--layer-rule '%s' is not one of benefit, all, count:K, fraction:F%s",
                text, set_rule ? " (greedy and optimal choose a set of layers: --select)" : "");
    }
cleanup:
    return err;
}

static const char *const PRUNE_BY_NAMES[] = {"rate", "energy", "variance"};

lf_err_t lf_plan_parse_prune_by(const char *text, lf_prune_by_t *out)
{
    lf_err_t err = LF_OK;
    for (int k = 0; k < 3; k++)
        if (strcmp(text, PRUNE_BY_NAMES[k]) == 0) {
            *out = (lf_prune_by_t)k;
            goto cleanup;
        }
    LF_FAIL(LF_ERR_USAGE, "--prune-by '%s' is not rate, energy or variance", text);
cleanup:
    return err;
}

const char *lf_plan_prune_by_name(lf_prune_by_t by)
{
    return by >= LF_PRUNE_BY_RATE && by <= LF_PRUNE_BY_VARIANCE ? PRUNE_BY_NAMES[by] : "?";
}

lf_err_t lf_plan_parse_select(const char *text, lf_layer_rule_t *out)
{
    lf_err_t err = LF_OK;
    if (strcmp(text, "greedy") == 0)
        *out = (lf_layer_rule_t){.kind = LF_RULE_GREEDY};
    else if (strcmp(text, "optimal") == 0)
        *out = (lf_layer_rule_t){.kind = LF_RULE_OPTIMAL};
    else
        LF_FAIL(LF_ERR_USAGE, "--select '%s' is not greedy or optimal", text);
cleanup:
    return err;
}

int64_t lf_plan_need(lf_decimal_t threshold, int64_t samples)
{
    /* count / samples >= threshold exactly; a neuron with no positive row is never linear, even
     * when the threshold is below 1 / samples. */
    int64_t need = lf_decimal_mul_ceil(threshold, samples);
    return need > 1 ? need : 1;
}

int64_t lf_plan_share(lf_decimal_t fraction, int64_t n)
{
    return lf_decimal_mul_nearest(fraction, n);
}

bool lf_plan_prune_mask(const lf_plan_t *p, int i, bool *keep)
{
    bool any = false;
    for (int64_t j = 0; j < p->n_out[i]; j++) {
        keep[j] = p->fate[i][j] != LF_NEURON_PRUNE;
        any = any || !keep[j];
    }
    return any;
}

int64_t lf_plan_fold_positions(const lf_plan_t *p, int i, int64_t *idx)
{
    int64_t count = 0, pos = 0;
    for (int64_t j = 0; j < p->n_out[i]; j++) {
        if (p->fate[i][j] == LF_NEURON_PRUNE)
            continue;
        if (p->fate[i][j] == LF_NEURON_FOLD)
            idx[count++] = pos;
        pos++;
    }
    return count;
}

void lf_plan_destroy(lf_plan_t **p)
{
    if (!p || !*p)
        return;
    for (int i = 0; i < (*p)->n_layers; i++) {
        if ((*p)->fate)
            lf_free((*p)->fate[i]);
        if ((*p)->shift)
            lf_free((*p)->shift[i]);
    }
    lf_free((*p)->fate);
    lf_free((*p)->shift);
    lf_free((*p)->n_pruned);
    lf_free((*p)->n_out);
    lf_free((*p)->n_linear);
    lf_free((*p)->n_dead);
    lf_free((*p)->fold);
    lf_free(*p);
    *p = NULL;
}

static lf_err_t rule_says_fold(const lf_layer_rule_t *r, int64_t n_linear, int64_t n_out,
                               const lf_shape_t *shape, int i, bool *fold)
{
    lf_err_t err = LF_OK;
    lf_shape_t *trial = NULL;
    switch (r->kind) {
    case LF_RULE_ALL: *fold = n_linear > 0; break;
    case LF_RULE_COUNT: *fold = n_linear > r->count; break;
    case LF_RULE_FRACTION: /* n_linear / n_out > F, on integers */
        *fold = n_linear > 0 && n_linear > lf_decimal_mul_floor(r->fraction, n_out);
        break;
    case LF_RULE_GREEDY:
    case LF_RULE_OPTIMAL: /* set rules are decided by decide_set() */ *fold = false; break;
    case LF_RULE_BENEFIT:
        *fold = false;
        if (n_linear == 0)
            break;
        LF_CALL(lf_shape_copy(shape, &trial));
        lf_shape_fold(trial, i, n_linear);
        *fold = lf_shape_params(trial) < lf_shape_params(shape);
        break;
    }
cleanup:
    lf_shape_destroy(&trial);
    return err;
}

typedef struct {
    int layer;
    int64_t neuron;
    double score;
} candidate_t;

/* Lowest importance first; ties by position, so every rank orders alike. */
static int cmp_candidate(const void *x, const void *y)
{
    const candidate_t *a = x, *b = y;
    if (a->score != b->score)
        return a->score < b->score ? -1 : 1;
    if (a->layer != b->layer)
        return a->layer - b->layer;
    return a->neuron < b->neuron ? -1 : (a->neuron > b->neuron);
}

/* The importance of a neuron from its statistics and w2, the sum of the squares of its outgoing
 * weights over every block that reads it. */
static double importance(const lf_stats_t *s, lf_prune_by_t by, int i, int64_t j, double w2)
{
    if (by == LF_PRUNE_BY_RATE)
        return (double)s->layers[i].positive[j]; /* exact, and orders as the rate does */
    double energy = lf_stats_mean_square(s, i, j);
    if (by == LF_PRUNE_BY_VARIANCE) {
        double mean = lf_stats_mean_output(s, i, j);
        /* Each square was rounded to float32, so a nearly constant neuron can come out a hair
         * below zero. */
        energy = energy - mean * mean > 0.0 ? energy - mean * mean : 0.0;
    }
    return energy * w2;
}

/* Adds the squares of every block's columns into w2[src][column], for every hidden source. */
static void outgoing_norms(const lf_model_t *m, double **w2)
{
    for (int c = 0; c < m->n_layers; c++) {
        const lf_layer_t *Ly = &m->layers[c];
        for (int b = 0; b < Ly->n_blocks; b++) {
            int src = Ly->blocks[b].src;
            if (src == LF_SRC_INPUT)
                continue;
            int64_t w = lf_model_width(m, src);
            for (int64_t r = 0; r < Ly->n_out; r++) {
                const float *row = Ly->blocks[b].w + r * w;
                for (int64_t k = 0; k < w; k++)
                    w2[src][k] += (double)row[k] * (double)row[k];
            }
        }
    }
}

double lf_plan_importance(const lf_model_t *m, const lf_stats_t *s, lf_prune_by_t by, int i,
                          int64_t j)
{
    double w2 = 0.0;
    for (int c = i + 1; by != LF_PRUNE_BY_RATE && c < m->n_layers; c++) {
        const lf_layer_t *Ly = &m->layers[c];
        int64_t w = m->layers[i].n_out;
        for (int b = 0; b < Ly->n_blocks; b++)
            for (int64_t r = 0; Ly->blocks[b].src == i && r < Ly->n_out; r++) {
                double v = Ly->blocks[b].w[r * w + j];
                w2 += v * v;
            }
    }
    return importance(s, by, i, j, w2);
}

/* Importance pruning: in every prunable layer, the prune_fraction share of its least important
 * neurons (dead ones already pruned count towards it), never the layer's last neuron; with
 * global, the share of all prunable neurons wherever they are. Per layer is the default because
 * rates are not comparable across layers: an early layer whose neurons all fire on 30 to 70 % of
 * the rows loses nearly all of them under a global ranking. Global does better where one layer
 * has many barely used neurons (docs/results.md has both). Energies are in the units of their
 * readers' squared pre-activations, and those scales differ so much from layer to layer (on the
 * digits model, the first layers' energies are all below the last layers') that a global
 * ranking of raw energies empties the early layers. A global ranking by energy or variance
 * therefore ranks each neuron's share of its layer's total: the part of the readers' signal
 * (as far as the neurons are uncorrelated) that removing it loses, a figure without units. */
static lf_err_t mark_importance(const lf_model_t *m, const lf_stats_t *s, lf_decimal_t fraction,
                                bool global, lf_prune_by_t by, lf_plan_t *p)
{
    lf_err_t err = LF_OK;
    candidate_t *c = NULL;
    double **w2 = NULL;
    int64_t total = 0, n = 0;
    for (int i = 0; i < m->n_layers; i++)
        total += lf_model_hidden_relu_like(m, i) ? m->layers[i].n_out : 0;
    LF_CALL(lf_calloc((size_t)total, sizeof *c, (void **)&c));
    LF_CALL(lf_calloc((size_t)m->n_layers, sizeof *w2, (void **)&w2));
    for (int i = 0; i < m->n_layers; i++)
        LF_CALL(lf_calloc((size_t)m->layers[i].n_out, sizeof **w2, (void **)&w2[i]));
    if (by != LF_PRUNE_BY_RATE)
        outgoing_norms(m, w2);
    for (int i = 0; i < m->n_layers; i++) {
        int64_t first = n;
        double layer_total = 0.0;
        for (int64_t j = 0; lf_model_hidden_relu_like(m, i) && j < m->layers[i].n_out; j++) {
            c[n] =
                (candidate_t){.layer = i, .neuron = j, .score = importance(s, by, i, j, w2[i][j])};
            layer_total += c[n++].score;
        }
        for (int64_t k = first; global && by != LF_PRUNE_BY_RATE && layer_total > 0.0 && k < n; k++)
            c[k].score /= layer_total;
    }
    qsort(c, (size_t)n, sizeof *c, cmp_candidate); /* least important first */
    int64_t want_all = lf_plan_share(fraction, total), done_all = 0;
    for (int i = 0; i < m->n_layers; i++)
        done_all += lf_model_hidden_relu_like(m, i) ? p->n_pruned[i] : 0;
    for (int64_t k = 0; k < n; k++) {
        int i = c[k].layer;
        int64_t want = lf_plan_share(fraction, p->n_out[i]);
        bool enough = global ? done_all >= want_all : p->n_pruned[i] >= want;
        if (p->fate[i][c[k].neuron] == LF_NEURON_PRUNE || enough ||
            p->n_pruned[i] + 1 >= p->n_out[i])
            continue;
        p->fate[i][c[k].neuron] = LF_NEURON_PRUNE;
        p->n_pruned[i]++;
        done_all++;
    }
cleanup:
    for (int i = 0; w2 && i < m->n_layers; i++)
        lf_free(w2[i]);
    lf_free(w2);
    lf_free(c);
    return err;
}

static lf_err_t check_opts(const lf_model_t *m, const lf_stats_t *s, const lf_plan_opts_t *opts)
{
    lf_err_t err = LF_OK;
    char t[48], f[48];
    lf_decimal_format(opts->threshold, t, sizeof t);
    lf_decimal_format(opts->prune_fraction, f, sizeof f);
    LF_CHECK(opts->threshold.m > 0 && lf_decimal_cmp(opts->threshold, LF_DECIMAL(1, 0)) <= 0,
             LF_ERR_USAGE, "threshold %s is outside (0, 1]", t);
    LF_CHECK(lf_decimal_cmp(opts->prune_fraction, LF_DECIMAL(1, 0)) < 0, LF_ERR_USAGE,
             "prune fraction %s is outside [0, 1)", f);
    LF_CHECK(s->n_layers == m->n_layers && s->fingerprint == lf_model_fingerprint(m), LF_ERR_ARG,
             "statistics describe another model");
    LF_CHECK(s->samples >= 1, LF_ERR_ARG, "statistics of zero samples cannot decide linearity");
    LF_CHECK(opts->prune_fraction.m == 0 || s->with_sums, LF_ERR_ARG,
             "importance pruning needs the neurons' mean outputs: calibrate with --output-sums");
    LF_CHECK(opts->prune_fraction.m == 0 || opts->prune_by == LF_PRUNE_BY_RATE || s->with_squares,
             LF_ERR_ARG,
             "pruning by %s needs the sums of squared outputs, which these statistics lack (a "
             "statistics file of an older linfold): calibrate again, or give --prune-by rate",
             lf_plan_prune_by_name(opts->prune_by));
cleanup:
    return err;
}

static lf_err_t plan_alloc(const lf_model_t *m, lf_plan_t **out)
{
    lf_err_t err = LF_OK;
    lf_plan_t *p = NULL;
    int L = m->n_layers;
    LF_CALL(lf_calloc(1, sizeof *p, (void **)&p));
    p->n_layers = L;
    LF_CALL(lf_calloc((size_t)L, sizeof *p->n_out, (void **)&p->n_out));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->n_linear, (void **)&p->n_linear));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->n_dead, (void **)&p->n_dead));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->n_pruned, (void **)&p->n_pruned));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->fold, (void **)&p->fold));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->fate, (void **)&p->fate));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->shift, (void **)&p->shift));
    for (int i = 0; i < L; i++) {
        p->n_out[i] = m->layers[i].n_out;
        LF_CALL(lf_calloc((size_t)p->n_out[i], sizeof *p->fate[i], (void **)&p->fate[i]));
        LF_CALL(lf_calloc((size_t)p->n_out[i], sizeof *p->shift[i], (void **)&p->shift[i]));
    }
    p->params_before = lf_model_params(m);
    *out = p;
    p = NULL;
cleanup:
    lf_plan_destroy(&p);
    return err;
}

/* Dead relu neurons (no positive row) are counted, and pruned when asked. */
static void mark_dead(const lf_model_t *m, const lf_stats_t *s, bool prune, lf_plan_t *p)
{
    for (int i = 0; i < m->n_layers; i++) {
        if (!lf_model_hidden_relu_like(m, i) || m->layers[i].act != LF_ACT_RELU)
            continue;
        for (int64_t j = 0; j < p->n_out[i]; j++) {
            if (s->layers[i].positive[j] != 0)
                continue;
            p->n_dead[i]++;
            /* A layer is never emptied by pruning: its readers would lose their input. */
            if (prune && p->n_pruned[i] + 1 < p->n_out[i]) {
                p->fate[i][j] = LF_NEURON_PRUNE;
                p->n_pruned[i]++;
            }
        }
    }
}

/* Linear neurons among those left: count(z > 0) >= lf_plan_need(threshold, samples). */
static void mark_linear(const lf_model_t *m, const lf_stats_t *s, lf_decimal_t threshold,
                        lf_plan_t *p)
{
    int64_t need = lf_plan_need(threshold, s->samples);
    for (int i = 0; i < m->n_layers - 1; i++) {
        const lf_layer_t *Ly = &m->layers[i];
        if (!lf_act_is_piecewise_linear(Ly->act))
            continue;
        for (int64_t j = 0; j < Ly->n_out; j++) {
            bool linear = Ly->act == LF_ACT_IDENTITY || s->layers[i].positive[j] >= need;
            if (linear && p->fate[i][j] != LF_NEURON_PRUNE) {
                p->n_linear[i]++;
                p->fate[i][j] = LF_NEURON_FOLD;
            }
        }
    }
}

/* Which layers fold, by the rule, on the shape after pruning; shape ends as the plan's. */
static lf_err_t choose_layers(const lf_layer_rule_t *rule, lf_shape_t *shape, lf_plan_t *p)
{
    lf_err_t err = LF_OK;
    int L = p->n_layers;
    if (rule->kind == LF_RULE_GREEDY)
        LF_CALL(lf_select_greedy(shape, p->n_linear, p->fold, &p->search_nodes));
    else if (rule->kind == LF_RULE_OPTIMAL)
        LF_CALL(lf_select_optimal(shape, p->n_linear, p->fold, &p->search_nodes));
    for (int i = 0; i < L - 1; i++) {
        if (rule->kind != LF_RULE_GREEDY && rule->kind != LF_RULE_OPTIMAL)
            LF_CALL(rule_says_fold(rule, p->n_linear[i], p->n_out[i], shape, i, &p->fold[i]));
        if (p->fold[i])
            lf_shape_fold(shape, i, p->n_linear[i]);
        else
            for (int64_t j = 0; j < p->n_out[i]; j++)
                if (p->fate[i][j] == LF_NEURON_FOLD)
                    p->fate[i][j] = LF_NEURON_KEEP;
    }
cleanup:
    return err;
}

lf_err_t lf_plan_create(const lf_model_t *m, const lf_stats_t *s, const lf_plan_opts_t *opts,
                        lf_plan_t **out)
{
    lf_err_t err = LF_OK;
    lf_plan_t *p = NULL;
    lf_shape_t *shape = NULL;
    *out = NULL;
    LF_CALL(check_opts(m, s, opts));
    LF_CALL(plan_alloc(m, &p));
    LF_CALL(lf_shape_create(m, &shape));
    /* Pruning first: dead neurons, then the least active ones; each pruned neuron leaves its
     * mean output behind. */
    mark_dead(m, s, opts->prune_dead, p);
    if (opts->prune_fraction.m > 0)
        LF_CALL(mark_importance(m, s, opts->prune_fraction, opts->prune_global, opts->prune_by, p));
    for (int i = 0; i < m->n_layers; i++) {
        for (int64_t j = 0; j < p->n_out[i]; j++)
            if (p->fate[i][j] == LF_NEURON_PRUNE && s->with_sums)
                p->shift[i][j] = lf_stats_mean_output(s, i, j);
        lf_shape_prune(shape, i, p->n_pruned[i]);
    }
    p->params_after_prune = lf_shape_params(shape);
    mark_linear(m, s, opts->threshold, p);
    LF_CALL(choose_layers(&opts->rule, shape, p));
    p->params_after = lf_shape_params(shape);
    p->skip_params_after = lf_shape_skip_params(shape);
    *out = p;
    p = NULL;
cleanup:
    lf_shape_destroy(&shape);
    lf_plan_destroy(&p);
    return err;
}

/* ---------------------------------------------------------------- provable linearity */

void lf_plan_provable_free(const lf_model_t *m, bool ***linear)
{
    if (!linear || !*linear)
        return;
    for (int i = 0; i < m->n_layers; i++)
        lf_free((*linear)[i]);
    lf_free(*linear);
    *linear = NULL;
}

lf_err_t lf_plan_provable(const lf_model_t *m, bool input_nonnegative, bool ***out)
{
    lf_err_t err = LF_OK;
    int L = m->n_layers;
    bool **linear = NULL, **nonneg = NULL, all_input = input_nonnegative;
    *out = NULL;
    LF_CALL(lf_calloc((size_t)L, sizeof *linear, (void **)&linear));
    LF_CALL(lf_calloc((size_t)L, sizeof *nonneg, (void **)&nonneg));
    for (int i = 0; i < L; i++) {
        const lf_layer_t *Ly = &m->layers[i];
        LF_CALL(lf_calloc((size_t)Ly->n_out, sizeof **linear, (void **)&linear[i]));
        LF_CALL(lf_calloc((size_t)Ly->n_out, sizeof **nonneg, (void **)&nonneg[i]));
        bool can_be_linear = lf_model_hidden_relu_like(m, i);
        for (int64_t j = 0; j < Ly->n_out; j++) {
            bool z_nonneg = Ly->bias[j] >= 0.0f;
            for (int b = 0; b < Ly->n_blocks && z_nonneg; b++) {
                int src = Ly->blocks[b].src;
                int64_t w = lf_model_width(m, src);
                const float *row = Ly->blocks[b].w + j * w;
                for (int64_t c = 0; c < w && z_nonneg; c++) {
                    bool source_nonneg = src == LF_SRC_INPUT ? all_input : nonneg[src][c];
                    z_nonneg = row[c] == 0.0f || (row[c] > 0.0f && source_nonneg);
                }
            }
            linear[i][j] = can_be_linear && z_nonneg;
            /* Outputs >= 0 whatever z is (relu, sigmoid, softmax), or because z >= 0: every
             * activation here keeps the sign of a non-negative z. */
            nonneg[i][j] = Ly->act == LF_ACT_RELU || Ly->act == LF_ACT_SIGMOID ||
                           Ly->act == LF_ACT_SOFTMAX || z_nonneg;
        }
    }
    *out = linear;
    linear = NULL;
cleanup:
    lf_plan_provable_free(m, &nonneg);
    lf_plan_provable_free(m, &linear);
    return err;
}
