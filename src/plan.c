/* Linearity masks, layer rules and the shape arithmetic behind them.
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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linfold/alloc.h"

/* ---------------------------------------------------------------- shapes */

static bool *block_at(const lf_shape_t *s, int i, int src)
{
    return &s->has_block[(size_t)i * (size_t)(s->n_layers + 1) + (size_t)(src + 1)];
}

lf_err_t lf_shape_create(const lf_model_t *m, lf_shape_t **out)
{
    lf_err_t err = LF_OK;
    lf_shape_t *s = NULL;
    int L = m->n_layers;
    LF_CALL(lf_calloc(1, sizeof *s, (void **)&s));
    s->n_layers = L;
    s->n_in = m->n_in;
    LF_CALL(lf_calloc((size_t)L, sizeof *s->n_out, (void **)&s->n_out));
    LF_CALL(lf_calloc((size_t)L * (size_t)(L + 1), sizeof *s->has_block, (void **)&s->has_block));
    for (int i = 0; i < L; i++) {
        s->n_out[i] = m->layers[i].n_out;
        for (int b = 0; b < m->layers[i].n_blocks; b++)
            *block_at(s, i, m->layers[i].blocks[b].src) = true;
    }
    *out = s;
    s = NULL;
cleanup:
    lf_shape_destroy(&s);
    return err;
}

lf_err_t lf_shape_copy(const lf_shape_t *src, lf_shape_t **out)
{
    lf_err_t err = LF_OK;
    lf_shape_t *s = NULL;
    int L = src->n_layers;
    LF_CALL(lf_calloc(1, sizeof *s, (void **)&s));
    *s = (lf_shape_t){.n_layers = L, .n_in = src->n_in};
    LF_CALL(lf_malloc((size_t)L, sizeof *s->n_out, (void **)&s->n_out));
    LF_CALL(lf_malloc((size_t)L * (size_t)(L + 1), sizeof *s->has_block, (void **)&s->has_block));
    memcpy(s->n_out, src->n_out, (size_t)L * sizeof *s->n_out);
    memcpy(s->has_block, src->has_block, (size_t)L * (size_t)(L + 1) * sizeof *s->has_block);
    *out = s;
    s = NULL;
cleanup:
    lf_shape_destroy(&s);
    return err;
}

void lf_shape_destroy(lf_shape_t **s)
{
    if (!s || !*s)
        return;
    lf_free((*s)->n_out);
    lf_free((*s)->has_block);
    lf_free(*s);
    *s = NULL;
}

static int64_t shape_width(const lf_shape_t *s, int src)
{
    return src == LF_SRC_INPUT ? s->n_in : s->n_out[src];
}

/* The nearest layer before i that is still present, or the input. */
static int shape_pred(const lf_shape_t *s, int i)
{
    int p = i - 1;
    while (p >= 0 && s->n_out[p] == 0)
        p--;
    return p;
}

static int64_t shape_count(const lf_shape_t *s, bool skips_only)
{
    int64_t total = 0;
    for (int i = 0; i < s->n_layers; i++) {
        if (s->n_out[i] == 0)
            continue;
        int pred = shape_pred(s, i);
        if (!skips_only)
            total += s->n_out[i] * (1 + shape_width(s, pred));
        for (int src = LF_SRC_INPUT; src < i; src++)
            if (src != pred && *block_at(s, i, src))
                total += s->n_out[i] * shape_width(s, src);
    }
    return total;
}

int64_t lf_shape_params(const lf_shape_t *s) { return shape_count(s, false); }
int64_t lf_shape_skip_params(const lf_shape_t *s) { return shape_count(s, true); }

void lf_shape_prune(lf_shape_t *s, int i, int64_t count) { s->n_out[i] -= count; }

void lf_shape_fold(lf_shape_t *s, int i, int64_t count)
{
    if (count == 0)
        return;
    for (int c = i + 1; c < s->n_layers; c++) {
        if (s->n_out[c] == 0 || !*block_at(s, c, i))
            continue;
        for (int src = LF_SRC_INPUT; src < i; src++)
            if (*block_at(s, i, src) && shape_width(s, src) > 0)
                *block_at(s, c, src) = true;
    }
    s->n_out[i] -= count;
}

/* ---------------------------------------------------------------- rules */

lf_err_t lf_plan_parse_rule(const char *text, lf_layer_rule_t *out)
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
        double f = strtod(text + 9, &end);
        LF_CHECK(text[9] && *end == '\0' && f >= 0.0 && f < 1.0, LF_ERR_USAGE,
                 "--layer-rule %s: fraction:F needs 0 <= F < 1", text);
        *out = (lf_layer_rule_t){.kind = LF_RULE_FRACTION, .fraction = f};
    } else {
        LF_FAIL(LF_ERR_USAGE,
                "--layer-rule '%s' is not one of benefit, all, count:K, fraction:F", text);
    }
cleanup:
    return err;
}

void lf_plan_destroy(lf_plan_t **p)
{
    if (!p || !*p)
        return;
    if ((*p)->fate)
        for (int i = 0; i < (*p)->n_layers; i++)
            lf_free((*p)->fate[i]);
    lf_free((*p)->fate);
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
    case LF_RULE_FRACTION:
        *fold = n_linear > 0 && (double)n_linear / (double)n_out > r->fraction;
        break;
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

lf_err_t lf_plan_create(const lf_model_t *m, const lf_stats_t *s, const lf_plan_opts_t *opts,
                        lf_plan_t **out)
{
    lf_err_t err = LF_OK;
    lf_plan_t *p = NULL;
    lf_shape_t *shape = NULL;
    int L = m->n_layers;
    *out = NULL;
    LF_CHECK(opts->threshold > 0.0 && opts->threshold <= 1.0, LF_ERR_USAGE,
             "threshold %g is outside (0, 1]", opts->threshold);
    LF_CHECK(s->n_layers == L && s->fingerprint == lf_model_fingerprint(m), LF_ERR_ARG,
             "statistics describe another model");
    LF_CHECK(s->samples >= 1, LF_ERR_ARG, "statistics of zero samples cannot decide linearity");
    LF_CALL(lf_calloc(1, sizeof *p, (void **)&p));
    p->n_layers = L;
    LF_CALL(lf_calloc((size_t)L, sizeof *p->n_out, (void **)&p->n_out));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->n_linear, (void **)&p->n_linear));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->n_dead, (void **)&p->n_dead));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->fold, (void **)&p->fold));
    LF_CALL(lf_calloc((size_t)L, sizeof *p->fate, (void **)&p->fate));
    LF_CALL(lf_shape_create(m, &shape));
    p->params_before = lf_model_params(m);

    /* Masks. The rate is compared as an exact rational: positive >= threshold * samples. */
    for (int i = 0; i < L; i++) {
        const lf_layer_t *Ly = &m->layers[i];
        p->n_out[i] = Ly->n_out;
        LF_CALL(lf_calloc((size_t)Ly->n_out, sizeof *p->fate[i], (void **)&p->fate[i]));
        if (i == L - 1 || !lf_act_is_piecewise_linear(Ly->act))
            continue;
        for (int64_t j = 0; j < Ly->n_out; j++) {
            int64_t pos = s->layers[i].positive[j];
            bool linear = Ly->act == LF_ACT_IDENTITY ||
                          (double)pos >= opts->threshold * (double)s->samples;
            bool dead = Ly->act == LF_ACT_RELU && pos == 0;
            if (linear) {
                p->n_linear[i]++;
                p->fate[i][j] = LF_NEURON_FOLD;
            } else if (dead) {
                p->n_dead[i]++;
                if (opts->prune_dead)
                    p->fate[i][j] = LF_NEURON_PRUNE;
            }
        }
    }
    /* Dead neurons go first: every rule then judges the model they leave. */
    if (opts->prune_dead)
        for (int i = 0; i < L; i++)
            lf_shape_prune(shape, i, p->n_dead[i]);
    /* Folds are decided from the input side on the model as already folded. */
    for (int i = 0; i < L - 1; i++) {
        LF_CALL(rule_says_fold(&opts->rule, p->n_linear[i], p->n_out[i], shape, i, &p->fold[i]));
        if (p->fold[i])
            lf_shape_fold(shape, i, p->n_linear[i]);
        else
            for (int64_t j = 0; j < p->n_out[i]; j++)
                if (p->fate[i][j] == LF_NEURON_FOLD)
                    p->fate[i][j] = LF_NEURON_KEEP;
    }
    p->params_after = lf_shape_params(shape);
    p->skip_params_after = lf_shape_skip_params(shape);
    *out = p;
    p = NULL;
cleanup:
    lf_shape_destroy(&shape);
    lf_plan_destroy(&p);
    return err;
}
