/* Shapes: a model reduced to its layer widths and the sources of its blocks.
 *
 * Folding the linear set A (a neurons) of layer l removes a rows from each of l's blocks and its
 * bias, removes a columns from every block that reads l, and gives every reader c of l a block
 * from every source s of l (if it had none). lf_shape_t tracks exactly this, so that plans and
 * searches can price any set of folds without touching weights; the tests check that its count
 * equals the folded model's, and lf_fold_apply checks it on every run. */
#include "linfold/shape.h"

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

static int64_t layer_count(const lf_shape_t *s, int i, bool skips_only)
{
    if (s->n_out[i] == 0)
        return 0;
    int pred = shape_pred(s, i);
    int64_t total = skips_only ? 0 : s->n_out[i] * (1 + shape_width(s, pred));
    for (int src = LF_SRC_INPUT; src < i; src++)
        if (src != pred && *block_at(s, i, src))
            total += s->n_out[i] * shape_width(s, src);
    return total;
}

int64_t lf_shape_layer_params(const lf_shape_t *s, int i) { return layer_count(s, i, false); }

int64_t lf_shape_params(const lf_shape_t *s)
{
    int64_t total = 0;
    for (int i = 0; i < s->n_layers; i++)
        total += layer_count(s, i, false);
    return total;
}

int64_t lf_shape_skip_params(const lf_shape_t *s)
{
    int64_t total = 0;
    for (int i = 0; i < s->n_layers; i++)
        total += layer_count(s, i, true);
    return total;
}

bool lf_shape_has_block(const lf_shape_t *s, int i, int src) { return *block_at(s, i, src); }

void lf_shape_copy_into(lf_shape_t *dst, const lf_shape_t *src)
{
    int L = src->n_layers;
    memcpy(dst->n_out, src->n_out, (size_t)L * sizeof *dst->n_out);
    memcpy(dst->has_block, src->has_block, (size_t)L * (size_t)(L + 1) * sizeof *dst->has_block);
}

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
