/* Batched forward pass of any model in the general form.
 *
 * Layout: inputs x are row-major (rows, n_in); each layer's activations are row-major
 * (rows, n_out) and stay in the workspace because later layers' skip blocks may read them.
 * z_i = sum over blocks of a_src · W^T (cblas_sgemm, blocks in ascending source order) + bias_i,
 * then the activation is applied in place. A row's result depends only on the row and on the
 * number of rows per call, so callers that need bitwise reproducibility across rank counts call
 * with a fixed row count (see batch.h).
 *
 *     lf_forward_t *fw = NULL;
 *     lf_forward_create(model, 1024, &fw);
 *     const float *y = NULL;
 *     lf_forward_run(fw, model, x, rows, NULL, NULL, &y);   // y: (rows, n_out of the last layer)
 *     lf_forward_destroy(&fw);
 */
#ifndef LINFOLD_FORWARD_H
#define LINFOLD_FORWARD_H

#include <stdint.h>

#include "linfold/error.h"
#include "linfold/model.h"

/* Called with layer i's pre-activations z, row-major (rows, n_out), before the activation.
 * Not collective.
 * Runs inside lf_forward_run(), on the thread that called it. */
typedef lf_err_t (*lf_forward_hook_t)(int layer, const float *z, int64_t rows, int64_t n_out,
                                      void *ctx);

typedef struct lf_forward lf_forward_t;

/* Creates a workspace for up to max_rows rows of model m (layer widths are taken from m).
 * Not collective.
 * Caller destroys. */
lf_err_t lf_forward_create(const lf_model_t *m, int64_t max_rows, lf_forward_t **out);
/* Runs m (the model the workspace was created for) on rows <= max_rows rows of x.
 * Not collective.
 * *out points into the workspace and is valid until the next run. hook may be NULL. A
 * pre-activation that is not finite (float32 overflow on finite inputs) fails with LF_ERR_VALUE
 * naming the layer, the neuron and the row; the hook never sees one. */
lf_err_t lf_forward_run(lf_forward_t *fw, const lf_model_t *m, const float *x, int64_t rows,
                        lf_forward_hook_t hook, void *ctx, const float **out);
/* lf_forward_run() of the first n_run layers of m only (0 <= n_run <= layers): *out is layer
 * n_run - 1's activations (x for n_run 0), and the later layers' activations are stale. For a
 * caller that needs no more, such as a refit that reads one layer's inputs.
 * Not collective. */
lf_err_t lf_forward_run_layers(lf_forward_t *fw, const lf_model_t *m, int n_run, const float *x,
                               int64_t rows, lf_forward_hook_t hook, void *ctx, const float **out);
/* Layer i's activations from the last run, row-major (rows, n_out of layer i): what later
 * layers' blocks read. Valid until the next run.
 * Not collective. */
const float *lf_forward_activations(const lf_forward_t *fw, int i);
/* Names the rows of the following runs in error messages: source (borrowed, e.g. "data.h5:/x")
 * and the global index of row 0.
 * Not collective. */
void lf_forward_set_origin(lf_forward_t *fw, const char *source, int64_t row0);
/* Frees *fw and sets it to NULL; accepts NULL.
 * Not collective. */
void lf_forward_destroy(lf_forward_t **fw);

/* Applies act in place to a row-major (rows, n) matrix.
 * Not collective. */
void lf_forward_activate(lf_act_t act, float alpha, float *z, int64_t rows, int64_t n);

#endif /* LINFOLD_FORWARD_H */
