/* Applying a plan: exact algebra on the model's blocks.
 *
 * Every rank holds the same model and plan and computes the same products, so no data moves here;
 * the distributed merge back end will change that for very wide layers without changing this file.
 * Errors are agreed across ranks at the end of each layer's fold. */
#include "linfold/fold.h"

#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/interrupt.h"
#include "linfold/merge.h"

/* dst (rows, count) = columns idx of src (rows, cols); all row-major. */
static void gather_columns(const float *src, int64_t rows, int64_t cols, const int64_t *idx,
                           int64_t count, float *dst)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < count; k++)
            dst[r * count + k] = src[r * cols + idx[k]];
}

/* dst (count, cols) = rows idx of src (.., cols). */
static void gather_rows(const float *src, int64_t cols, const int64_t *idx, int64_t count,
                        float *dst)
{
    for (int64_t k = 0; k < count; k++)
        memcpy(dst + k * cols, src + idx[k] * cols, (size_t)cols * sizeof *dst);
}

static lf_err_t fold_into_reader(MPI_Comm comm, lf_model_t *m, int l, int c, const int64_t *idx,
                                 int64_t count)
{
    lf_err_t err = LF_OK;
    float *ca = NULL, *ba = NULL;
    lf_layer_t *src_layer = &m->layers[l];
    int64_t n_c = m->layers[c].n_out;
    LF_CALL(lf_malloc((size_t)(n_c * count), sizeof *ca, (void **)&ca));
    gather_columns(lf_model_block(m, c, l)->w, n_c, src_layer->n_out, idx, count, ca);
    for (int b = 0; b < src_layer->n_blocks; b++) {
        int s = src_layer->blocks[b].src;
        int64_t width = lf_model_width(m, s);
        lf_block_t *target = NULL;
        LF_CALL(lf_realloc((size_t)(count * width), sizeof *ba, (void **)&ba));
        gather_rows(src_layer->blocks[b].w, width, idx, count, ba);
        LF_CALL(lf_model_block_ensure(m, c, s, &target));
        LF_CALL(lf_merge_add_product(comm, n_c, width, count, ca, ba, target->w));
    }
    /* The bias path is a product with one column; double accumulation, one rounding. */
    float *bias_c = m->layers[c].bias;
    for (int64_t r = 0; r < n_c; r++) {
        double acc = bias_c[r];
        for (int64_t k = 0; k < count; k++)
            acc += (double)ca[r * count + k] * (double)src_layer->bias[idx[k]];
        bias_c[r] = (float)acc;
    }
cleanup:
    lf_free(ba);
    lf_free(ca);
    return err;
}

lf_err_t lf_fold_layer(MPI_Comm comm, lf_model_t *m, int l, const int64_t *idx, int64_t count)
{
    lf_err_t err = LF_OK, local = LF_OK;
    bool *keep = NULL;
    LF_CHECK(l >= 0 && l < m->n_layers - 1, LF_ERR_ARG,
             "layer %d cannot fold: only hidden layers 0..%d can", l, m->n_layers - 2);
    if (count == 0)
        return LF_OK;
    int n_layers = m->n_layers;
    for (int c = l + 1; c < n_layers && local == LF_OK; c++)
        if (lf_model_block(m, c, l))
            local = fold_into_reader(comm, m, l, c, idx, count);
    if (local == LF_OK)
        local = lf_calloc((size_t)m->layers[l].n_out, sizeof *keep, (void **)&keep);
    if (local == LF_OK) {
        for (int64_t j = 0; j < m->layers[l].n_out; j++)
            keep[j] = true;
        for (int64_t k = 0; k < count; k++)
            keep[idx[k]] = false;
        local = lf_model_remove_neurons(m, l, keep);
    }
    LF_CALL(lf_comm_agree(comm, local));
cleanup:
    lf_free(keep);
    return err;
}

/* A pruned neuron j of layer l whose mean output on the calibration data is shift[j] is replaced
 * by that constant: every reader's bias gains C[:, j] * shift[j] (summed in double, rounded
 * once). Dead relu neurons have shift 0 and change nothing. */
static void compensate(lf_model_t *m, int l, const bool *keep, const double *shift)
{
    int64_t n_l = m->layers[l].n_out;
    for (int c = l + 1; c < m->n_layers; c++) {
        const lf_block_t *blk = lf_model_block(m, c, l);
        if (!blk)
            continue;
        float *bias = m->layers[c].bias;
        for (int64_t r = 0; r < m->layers[c].n_out; r++) {
            double acc = bias[r];
            for (int64_t j = 0; j < n_l; j++)
                if (!keep[j])
                    acc += (double)blk->w[r * n_l + j] * shift[j];
            bias[r] = (float)acc;
        }
    }
}

/* Drops removed layer `gone` from the index map. */
static void map_remove(int *where, int n, int gone)
{
    for (int i = 0; i < n; i++) {
        if (where[i] == gone)
            where[i] = -1;
        else if (where[i] > gone)
            where[i]--;
    }
}

lf_err_t lf_fold_apply(MPI_Comm comm, const lf_model_t *m, const lf_plan_t *p, lf_model_t **out,
                       int **where_out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    lf_model_t *w = NULL;
    int *where = NULL;
    bool *keep = NULL;
    int64_t *idx = NULL;
    int L = m->n_layers;
    *out = NULL;
    LF_CHECK(p->n_layers == L, LF_ERR_ARG, "plan for %d layers applied to a model with %d",
             p->n_layers, L);
    local = lf_model_copy(m, &w);
    if (local == LF_OK)
        local = lf_calloc((size_t)L, sizeof *where, (void **)&where);
    int64_t widest = 1;
    for (int i = 0; i < L; i++)
        widest = m->layers[i].n_out > widest ? m->layers[i].n_out : widest;
    if (local == LF_OK)
        local = lf_calloc((size_t)widest, sizeof *keep, (void **)&keep);
    if (local == LF_OK)
        local = lf_calloc((size_t)widest, sizeof *idx, (void **)&idx);
    LF_CALL(lf_comm_agree(comm, local));
    for (int i = 0; i < L; i++)
        where[i] = i;

    /* Pruned neurons first, as the plan assumed; each leaves its mean output behind. */
    for (int i = 0; i < L - 1; i++) {
        if (!lf_plan_prune_mask(p, i, keep))
            continue;
        compensate(w, where[i], keep, p->shift[i]);
        int before = w->n_layers;
        LF_CALL(lf_comm_agree(comm, lf_model_remove_neurons(w, where[i], keep)));
        if (w->n_layers < before)
            map_remove(where, L, where[i]);
    }
    /* Then folds, from the input side. Positions are counted among the neurons left. */
    for (int i = 0; i < L - 1; i++) {
        if (!p->fold[i])
            continue;
        int64_t count = lf_plan_fold_positions(p, i, idx);
        LF_CALL(lf_comm_agree(comm, lf_interrupt_check("folding")));
        int before = w->n_layers;
        LF_CALL(lf_fold_layer(comm, w, where[i], idx, count));
        if (w->n_layers < before)
            map_remove(where, L, where[i]);
    }
    /* The plan's shape arithmetic and the algebra must agree; a mismatch is a bug in one of them. */
    LF_CHECK(lf_model_params(w) == p->params_after, LF_ERR_INTERNAL,
             "the plan predicted %lld parameters, the folded model has %lld",
             (long long)p->params_after, (long long)lf_model_params(w));
    *out = w;
    w = NULL;
    if (where_out) {
        *where_out = where;
        where = NULL;
    }
cleanup:
    lf_free(idx);
    lf_free(keep);
    lf_free(where);
    lf_model_destroy(&w);
    return err;
}
