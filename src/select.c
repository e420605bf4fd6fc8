/* Greedy and exact selection of the layers to fold.
 *
 * The exact search rests on two facts about shapes (shape.c):
 *  1. Once layers 0..k-1 are decided, their parameter counts are final. A fold of layer j
 *     changes only j's own rows, the columns of j's readers (all after j) and the blocks of j's
 *     readers; none of these is a layer before j.
 *  2. For a layer j not yet final, later folds can only remove its own linear rows (at most a[j])
 *     and columns of sources that fold (at most a[s] of source s), or add blocks. So
 *        (n_out[j] - a[j]) * (1 + sum over its present blocks of (width(s) - a[s] if s >= k else
 *        width(s)))
 *     is a lower bound of its final count.
 * The sum of final counts of layers < k plus these bounds for layers >= k is a lower bound of
 * every completion of a partial decision, so cutting a branch whose bound reaches the best cost
 * found cannot lose the optimum: the search is exhaustive over what it does not cut. */
#include "linfold/select.h"

#include <string.h>

#include "linfold/alloc.h"
#include "linfold/interrupt.h"

lf_err_t lf_select_cost(const lf_shape_t *pruned, const int64_t *a, const bool *fold, int64_t *cost)
{
    lf_err_t err = LF_OK;
    lf_shape_t *s = NULL;
    LF_CALL(lf_shape_copy(pruned, &s));
    for (int i = 0; i < s->n_layers; i++)
        if (fold[i] && a[i] > 0)
            lf_shape_fold(s, i, a[i]);
    *cost = lf_shape_params(s);
cleanup:
    lf_shape_destroy(&s);
    return err;
}

lf_err_t lf_select_greedy(const lf_shape_t *pruned, const int64_t *a, bool *fold, int64_t *nodes)
{
    lf_err_t err = LF_OK;
    int L = pruned->n_layers;
    int64_t current = 0;
    memset(fold, 0, (size_t)L * sizeof *fold);
    LF_CALL(lf_select_cost(pruned, a, fold, &current));
    *nodes = 1;
    for (;;) {
        int best = -1;
        int64_t best_cost = current;
        for (int i = 0; i < L; i++) {
            if (fold[i] || a[i] == 0)
                continue;
            int64_t c = 0;
            fold[i] = true;
            lf_err_t e = lf_select_cost(pruned, a, fold, &c);
            fold[i] = false;
            LF_CALL(e);
            (*nodes)++;
            if (c < best_cost) {
                best_cost = c;
                best = i;
            }
        }
        if (best < 0)
            break;
        fold[best] = true;
        current = best_cost;
    }
cleanup:
    return err;
}

typedef struct {
    const int64_t *a;
    int L;
    lf_shape_t **level; /* scratch shape per depth */
    bool *cur, *best_set;
    int64_t best, nodes;
    bool stopped; /* a signal arrived */
} search_t;

/* Lower bound of the final counts of layers k.. given the shape s after decisions < k. */
static int64_t bound_from(const search_t *b, const lf_shape_t *s, int k)
{
    int64_t total = 0;
    for (int j = k; j < b->L; j++) {
        if (s->n_out[j] == 0)
            continue;
        int64_t cols = 1;
        for (int src = LF_SRC_INPUT; src < j; src++) {
            if (!lf_shape_has_block(s, j, src))
                continue;
            int64_t w = src == LF_SRC_INPUT ? s->n_in : s->n_out[src];
            if (src >= k)
                w -= b->a[src];
            cols += w;
        }
        total += (s->n_out[j] - b->a[j]) * cols;
    }
    return total;
}

static void search(search_t *b, const lf_shape_t *s, int k, int64_t fixed)
{
    b->nodes++;
    /* Up to 2^30 nodes: a signal cuts the search short (its caller reports the interruption). */
    if ((b->nodes & 4095) == 0 && lf_interrupt_signal())
        b->stopped = true;
    if (b->stopped)
        return;
    if (k == b->L) {
        if (fixed < b->best) {
            b->best = fixed;
            memcpy(b->best_set, b->cur, (size_t)b->L * sizeof *b->cur);
        }
        return;
    }
    if (fixed + bound_from(b, s, k) >= b->best)
        return;
    if (b->a[k] > 0) {
        lf_shape_t *t = b->level[k];
        lf_shape_copy_into(t, s);
        lf_shape_fold(t, k, b->a[k]);
        b->cur[k] = true;
        search(b, t, k + 1, fixed + lf_shape_layer_params(t, k));
        b->cur[k] = false;
    }
    search(b, s, k + 1, fixed + lf_shape_layer_params(s, k));
}

lf_err_t lf_select_optimal(const lf_shape_t *pruned, const int64_t *a, bool *fold, int64_t *nodes)
{
    lf_err_t err = LF_OK;
    int L = pruned->n_layers, candidates = 0;
    search_t b = {.a = a, .L = L};
    for (int i = 0; i < L; i++)
        candidates += a[i] > 0;
    LF_CHECK(candidates <= LF_SELECT_OPTIMAL_MAX, LF_ERR_ARG,
             "optimal selection searches at most %d layers with linear neurons, this plan has %d; "
             "use the greedy selection or a higher threshold",
             LF_SELECT_OPTIMAL_MAX, candidates);
    LF_CALL(lf_calloc((size_t)L, sizeof *b.level, (void **)&b.level));
    for (int i = 0; i < L; i++)
        LF_CALL(lf_shape_copy(pruned, &b.level[i]));
    LF_CALL(lf_calloc((size_t)L, sizeof *b.cur, (void **)&b.cur));
    LF_CALL(lf_calloc((size_t)L, sizeof *b.best_set, (void **)&b.best_set));
    /* Start from the greedy answer: a good first bound cuts most of the tree. */
    LF_CALL(lf_select_greedy(pruned, a, b.best_set, &b.nodes));
    LF_CALL(lf_select_cost(pruned, a, b.best_set, &b.best));
    search(&b, pruned, 0, 0);
    LF_CALL(lf_interrupt_check("the optimal selection of layers"));
    memcpy(fold, b.best_set, (size_t)L * sizeof *fold);
    *nodes = b.nodes;
cleanup:
    for (int i = 0; b.level && i < L; i++)
        lf_shape_destroy(&b.level[i]);
    lf_free(b.level);
    lf_free(b.cur);
    lf_free(b.best_set);
    return err;
}
