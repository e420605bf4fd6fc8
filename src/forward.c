/* Batched forward pass through cblas_sgemm.
 *
 * One GEMM per block: Z (rows, n_out) += A_src (rows, width) · W^T with W row-major
 * (n_out, width), i.e. CblasNoTrans x CblasTrans, so weights are used in their file layout without
 * a transposed copy. The first block writes with beta = 0, later ones accumulate, and the bias is
 * added last; the order is fixed so results are reproducible. */
#include "linfold/forward.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "linfold/alloc.h"

struct lf_forward {
    int n_layers;
    int64_t max_rows;
    float **act;        /* per layer, (max_rows, n_out) */
    const char *source; /* names the rows in messages ("data.h5:/x"), or NULL */
    int64_t row0;       /* global index of the next run's row 0 */
};

const float *lf_forward_activations(const lf_forward_t *fw, int i)
{
    LF_ASSERT(i >= 0 && i < fw->n_layers);
    return fw->act[i];
}

lf_err_t lf_forward_create(const lf_model_t *m, int64_t max_rows, lf_forward_t **out)
{
    lf_err_t err = LF_OK;
    lf_forward_t *fw = NULL;
    *out = NULL;
    LF_CHECK(max_rows >= 1, LF_ERR_ARG, "batch of %lld rows, expected >= 1", (long long)max_rows);
    LF_CALL(lf_calloc(1, sizeof *fw, (void **)&fw));
    fw->n_layers = m->n_layers;
    fw->max_rows = max_rows;
    LF_CALL(lf_calloc((size_t)m->n_layers, sizeof *fw->act, (void **)&fw->act));
    for (int i = 0; i < m->n_layers; i++) {
        LF_CHECK(m->layers[i].n_out <= INT64_MAX / max_rows, LF_ERR_OVERFLOW,
                 "batch of %lld rows times %lld neurons overflows", (long long)max_rows,
                 (long long)m->layers[i].n_out);
        LF_CALL(lf_malloc((size_t)(max_rows * m->layers[i].n_out), sizeof(float),
                          (void **)&fw->act[i]));
    }
    *out = fw;
    fw = NULL;
cleanup:
    lf_forward_destroy(&fw);
    return err;
}

void lf_forward_set_origin(lf_forward_t *fw, const char *source, int64_t row0)
{
    fw->source = source;
    fw->row0 = row0;
}

void lf_forward_destroy(lf_forward_t **fw)
{
    if (!fw || !*fw)
        return;
    if ((*fw)->act)
        for (int i = 0; i < (*fw)->n_layers; i++)
            lf_free((*fw)->act[i]);
    lf_free((*fw)->act);
    lf_free(*fw);
    *fw = NULL;
}

void lf_forward_activate(lf_act_t act, float alpha, float *z, int64_t rows, int64_t n)
{
    int64_t total = rows * n;
    switch (act) {
    /* Written as selects so that -O3 turns them into vector max/blend instructions: the signs
     * of pre-activations are close to random, and a branch per element (what -O2 emits) cost a
     * quarter of a calibration pass. fmaxf would be a libm call here. */
    case LF_ACT_RELU:
        for (int64_t k = 0; k < total; k++)
            z[k] = z[k] > 0.0f ? z[k] : 0.0f;
        break;
    case LF_ACT_LEAKY_RELU:
        for (int64_t k = 0; k < total; k++)
            z[k] = z[k] > 0.0f ? z[k] : alpha * z[k];
        break;
    case LF_ACT_IDENTITY: break;
    case LF_ACT_SIGMOID:
        for (int64_t k = 0; k < total; k++)
            z[k] = 1.0f / (1.0f + expf(-z[k]));
        break;
    case LF_ACT_TANH:
        for (int64_t k = 0; k < total; k++)
            z[k] = tanhf(z[k]);
        break;
    case LF_ACT_SOFTMAX:
        for (int64_t r = 0; r < rows; r++) {
            float *row = z + r * n, mx = row[0];
            for (int64_t j = 1; j < n; j++)
                mx = row[j] > mx ? row[j] : mx;
            double sum = 0.0;
            for (int64_t j = 0; j < n; j++) {
                row[j] = expf(row[j] - mx);
                sum += row[j];
            }
            for (int64_t j = 0; j < n; j++)
                row[j] = (float)(row[j] / sum);
        }
        break;
    }
}

/* Adds the bias to z (rows, n) and returns true when every result is finite. Fused with the bias
 * pass, the check costs one compare per element, which the compiler vectorises. */
static bool add_bias_finite(float *z, const float *bias, int64_t rows, int64_t n)
{
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        float *zr = z + r * n;
        for (int64_t j = 0; j < n; j++) {
            float v = zr[j] + bias[j];
            zr[j] = v;
            bad |= !(fabsf(v) <= FLT_MAX);
        }
    }
    return !bad;
}

/* Records where the first non-finite pre-activation of layer i is. Inputs and weights were
 * checked finite, so only float32 overflow gets here; rows outside the data are zero and give
 * the (finite) bias, so the row is a data row. */
static lf_err_t report_non_finite(const lf_forward_t *fw, int i, const float *z, int64_t rows,
                                  int64_t n)
{
    lf_err_t err = LF_OK;
    for (int64_t k = 0; k < rows * n; k++) {
        if (fabsf(z[k]) <= FLT_MAX)
            continue;
        LF_FAIL(LF_ERR_VALUE,
                "%s%srow %lld: the pre-activation of layer %d, neuron %lld is %s although the "
                "inputs are finite (the model overflows float32 on this row)",
                fw->source ? fw->source : "", fw->source ? ": " : "", (long long)(fw->row0 + k / n),
                i, (long long)(k % n), isnan(z[k]) ? "NaN" : "infinite");
    }
cleanup:
    return err;
}

lf_err_t lf_forward_run(lf_forward_t *fw, const lf_model_t *m, const float *x, int64_t rows,
                        lf_forward_hook_t hook, void *ctx, const float **out)
{
    return lf_forward_run_layers(fw, m, m->n_layers, x, rows, hook, ctx, out);
}

lf_err_t lf_forward_run_layers(lf_forward_t *fw, const lf_model_t *m, int n_run, const float *x,
                               int64_t rows, lf_forward_hook_t hook, void *ctx, const float **out)
{
    lf_err_t err = LF_OK;
    LF_CHECK(rows >= 0 && rows <= fw->max_rows && m->n_layers == fw->n_layers, LF_ERR_ARG,
             "forward of %lld rows on a workspace for %lld rows and %d layers (model has %d)",
             (long long)rows, (long long)fw->max_rows, fw->n_layers, m->n_layers);
    LF_CHECK(n_run >= 0 && n_run <= m->n_layers, LF_ERR_ARG,
             "forward of the first %d layers of a model with %d", n_run, m->n_layers);
    for (int i = 0; i < n_run && rows > 0; i++) {
        const lf_layer_t *L = &m->layers[i];
        float *z = fw->act[i];
        int n_out = (int)L->n_out;
        for (int b = 0; b < L->n_blocks; b++) {
            int src = L->blocks[b].src, width = (int)lf_model_width(m, src);
            const float *a = src == LF_SRC_INPUT ? x : fw->act[src];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, n_out, width, 1.0f, a,
                        width, L->blocks[b].w, width, b == 0 ? 0.0f : 1.0f, z, n_out);
        }
        if (!add_bias_finite(z, L->bias, rows, n_out))
            LF_CALL(report_non_finite(fw, i, z, rows, n_out));
        if (hook)
            LF_CALL(hook(i, z, rows, L->n_out, ctx));
        lf_forward_activate(L->act, L->alpha, z, rows, L->n_out);
    }
    *out = n_run > 0 ? fw->act[n_run - 1] : x;
cleanup:
    return err;
}
