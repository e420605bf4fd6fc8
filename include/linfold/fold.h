/* Applies a fold plan: prunes dead neurons, then folds linear neurons into their readers.
 *
 * Folding the linear set A of layer l: for every layer c that reads l (with block C) and every
 * source s of l (with block B): block(c, s) += C[:, A] · B[A, :] (created when missing) and
 * bias_c += C[:, A] · bias_l[A]; then rows A leave l and columns A leave every C. Layers are
 * processed from the input side, so chains of folded layers compose, and a layer left without
 * neurons disappears: its readers then read its sources directly. Products go through
 * lf_merge_add_product(). Exact wherever the folded neurons are active.
 *
 *     lf_model_t *small = NULL;
 *     int *where = NULL;                      // where[i]: index of input layer i in small, or -1
 *     lf_fold_apply(comm, model, plan, &small, &where);
 */
#ifndef LINFOLD_FOLD_H
#define LINFOLD_FOLD_H

#include <mpi.h>

#include "linfold/error.h"
#include "linfold/model.h"
#include "linfold/plan.h"

/* Builds the compressed model from m and plan p (made for m).
 * Collective on comm.
 * m and p must be equal on all ranks: every rank computes the same model, and errors are agreed
 * after every step. *out and *where (n_layers of m entries: the new index of each layer, -1 when
 * it disappeared) are owned by the caller (lf_model_destroy, lf_free); where may be NULL.
 * LF_ERR_ARG for a plan made for another model, LF_ERR_INTERNAL when the plan's parameter count
 * and the folded model's differ. */
lf_err_t lf_fold_apply(MPI_Comm comm, const lf_model_t *m, const lf_plan_t *p, lf_model_t **out,
                       int **where);

/* Folds neurons idx[0..count) of layer l of m in place (the step above).
 * Collective on comm.
 * m, l, idx and count must be equal on all ranks; errors are agreed across ranks. LF_ERR_ARG
 * unless l is a hidden layer. */
lf_err_t lf_fold_layer(MPI_Comm comm, lf_model_t *m, int l, const int64_t *idx, int64_t count);

#endif /* LINFOLD_FOLD_H */
