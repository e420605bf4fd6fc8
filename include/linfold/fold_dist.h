/* Applying a fold plan to a model too wide for every rank to hold: the distributed fold.
 *
 * The same algebra as lf_fold_apply (fold.h): pruned neurons first, each leaving its mean output
 * in its readers' biases, then folds from the input side, block(c, s) += C[:, A] · B[A, :] and
 * bias_c += C[:, A] · bias_l[A]. Here no rank ever holds a whole weight block:
 *
 *   - A block that no fold touches stays a reference into the model file (a dataset and the
 *     rows and columns left of it); removing neurons only narrows those index lists.
 *   - Operands are read block-cyclically straight from the file (lf_dist_read), or, for a block
 *     an earlier fold produced (chains), picked out of its distributed matrix (lf_dist_select).
 *   - Products run with pdgemm_ (or psgemm_) and accumulate into the distributed target block;
 *     bias products with lf_dist_matvec_add, identical on every rank.
 *   - The compressed model is written collectively by every rank through parallel HDF5 (each
 *     rank its own blocks of every weight, rank 0 the biases): nothing is gathered.
 *
 * Biases (one float per neuron) and the model's structure are small and held by every rank, as
 * are the plan and the index lists. The result differs from lf_fold_apply's only in the order
 * of the double-precision partial sums of each product (pdgemm_'s blocking), so within a few
 * float32 roundings of it, and it depends on the rank count in the same way.
 *
 *     lf_merge_dist_opts_t o = {.block = 64, .prec = LF_DIST_DOUBLE};
 *     lf_fold_dist_write(comm, "model.h5", m, plan, &o, tmp, "out.h5", attrs, n, &where);
 */
#ifndef LINFOLD_FOLD_DIST_H
#define LINFOLD_FOLD_DIST_H

#include <mpi.h>

#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/merge_dist.h"
#include "linfold/model.h"
#include "linfold/plan.h"

/* How lf_fold_dist_should() decides. */
typedef enum {
    LF_MERGE_AUTO,        /* distributed when the widest product reaches the threshold */
    LF_MERGE_SERIAL,      /* every rank folds the whole model in memory (fold.h) */
    LF_MERGE_DISTRIBUTED, /* this file */
} lf_merge_path_t;

/* The default --dist-threshold, in elements of the largest matrix a fold can form: 2^24 (a
 * 4096 x 4096 product, 128 MiB in double). Below it the serial fold's three double copies on
 * every rank cost less than the grid's set-up and the file round trips; see docs/hpc.md. */
#define LF_DIST_THRESHOLD_DEFAULT ((int64_t)1 << 24)

/* Parses "auto", "serial" or "distributed".
 * Not collective.
 * LF_ERR_USAGE for anything else. */
lf_err_t lf_merge_path_parse(const char *text, lf_merge_path_t *out);
/* Returns the name lf_merge_path_parse() reads.
 * Not collective. */
const char *lf_merge_path_name(lf_merge_path_t path);

/* Returns the number of elements of the largest matrix a fold of m can form: the product of the
 * two largest of its input and hidden-layer widths (a skip block from one to the other), a bound
 * that needs no plan.
 * Not collective. */
int64_t lf_fold_dist_size(const lf_model_t *m);

/* Returns true when path (with threshold, in elements) chooses the distributed fold for m.
 * Not collective (a function of its arguments only, so equal on every rank). */
bool lf_fold_dist_should(lf_merge_path_t path, int64_t threshold, const lf_model_t *m);

/* Applies plan p (made for m) to the model whose file is model_path, and writes the compressed
 * model, with the file attributes attrs, into tmp: an empty file that lf_atomic_begin created
 * for out_path (named in messages). The caller publishes or removes tmp (lf_atomic_finish).
 * Collective on comm.
 * m is the model read from model_path (its structure, activations and biases are used; it may
 * be a shared model); m, p, opts, model_path, tmp and attrs must be equal on all ranks. *where
 * (n_layers of m entries: the new index of each layer, -1 when it disappeared; caller frees with
 * lf_free) may be NULL. Errors are agreed; on failure tmp holds no model. */
lf_err_t lf_fold_dist_write(MPI_Comm comm, const char *model_path, const lf_model_t *m,
                            const lf_plan_t *p, const lf_merge_dist_opts_t *opts, const char *tmp,
                            const char *out_path, const lf_attr_t *attrs, int n_attrs, int **where);

#endif /* LINFOLD_FOLD_DIST_H */
