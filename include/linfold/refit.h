/* Least-squares reconstruction: refitting the layers of a compressed model whose inputs changed.
 *
 * Pruning a neuron, or folding one that is not linear on every row, changes what its readers
 * see; their weights were fitted to the old inputs. For each layer of the compressed model f
 * whose inputs changed, taken from the input side, the refit solves for all its incoming blocks
 * and its bias at once, X = [W_1 | ... | W_s | b]ᵀ (K x n_out, K = the layer's input width + 1),
 * so that its pre-activations reproduce the original model's (its kept neurons) on the
 * calibration rows, with f's own activations as inputs (earlier layers already refitted, so
 * errors do not pile up):
 *
 *     G = Σ_rows hᵀh,  B = Σ_rows hᵀz,  (G + λ D) X = B,  D = diag(G) (1 where a column is 0)
 *
 * D makes the ridge relative to each input's energy, so λ means the same for inputs of any
 * scale; an input that is 0 on every row gets weight 0. λ is chosen per layer from a grid: the
 * fit rows are the rows r with r mod 5 != 4, the others (a fixed 20 %) are held out; each λ is
 * solved on the fit rows and scored by its squared error on the held-out rows, computed from the
 * held-out sums (Σ‖z - hX‖² = tr(XᵀG_h X) - 2 tr(XᵀB_h) + Σ‖z‖², the last term the same for
 * every λ); the best is then solved on all rows. A layer whose refit does not lower the
 * held-out error below that of its weights as they are keeps them: the refit never makes a
 * layer worse on rows it was not fitted to.
 *
 * Sums. Rows are cut into groups of lf_refit_group_rows() consecutive rows (whole compute blocks,
 * batch.h), dealt to the ranks in turn (group g on rank g mod P). A group's G and B are products
 * over its rows in double (products of float32 values are exact in double), formed in fixed
 * column panels of LF_REFIT_PANEL columns (G's upper part only) that the rank's threads share (a
 * panel's bits never depend on the thread that computes it). Each panel has an owner rank; the
 * groups go round by round, each rank sending its group's panels to their owners, and an owner
 * adds the groups along the fixed pairwise tree of tree_sum.h in group order: G and B are
 * bitwise identical at any rank and thread count. Below the threshold (next paragraph) the
 * owners then share their totals, and every rank has the whole sums (G mirrored from its upper
 * part). Each model runs only as far as the layer needs. With opts->max_rows, the sums use about
 * that many rows: whole groups spread evenly over the data (group i of g is group i * all / g of
 * the data), the same at any rank count. Solves run on rank 0 (LAPACK dposv, Cholesky; dsyevd
 * and a pseudo-inverse when G + λD is not positive definite) and are broadcast.
 *
 * Large layers. From K = lf_refit_dist_k() on (4096 by default, opts->dist_k; the default only
 * applies on two ranks or more, where the grid has something to share), no rank ever holds G
 * whole: a rank forms a group's panels one owner at a time, an owner keeps only its panels
 * (about K² / P of G_fit and G_held together, times the tree's pending levels, at most
 * log2(groups) + 1), and the solves, the held-out errors and the choice of λ run on the process
 * grid with ScaLAPACK (pdposv_, pdsyevd_ as the fallback; refit_dist.h); X (K x n_out, the size
 * of the layer's weights) then reaches every rank. ScaLAPACK's blocking differs from LAPACK's:
 * there, X agrees with the serial solve to rounding (1e-10 relative in the tests), not bit for
 * bit, and its last bits change with the rank count.
 *
 *     lf_refit_report_t rep = {0};
 *     lf_refit_apply(comm, model, small, plan, where, data, &opts, &rep);   // small refitted
 *     lf_refit_report_free(&rep);
 */
#ifndef LINFOLD_REFIT_H
#define LINFOLD_REFIT_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/batch.h"
#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/model.h"
#include "linfold/plan.h"

#define LF_REFIT_LAMBDAS_MAX 16

typedef struct {
    int threads;                          /* compute threads of this rank */
    double lambdas[LF_REFIT_LAMBDAS_MAX]; /* the grid tried; n_lambdas 0: the default */
    int n_lambdas;
    const char *what; /* label for log lines, or NULL: quiet */
    int64_t dist_k;   /* K from which the system is reduced and solved distributed; 0: 4096 */
    int dist_block;   /* ScaLAPACK block size of that solve; 0: LF_GRID_BLOCK_DEFAULT */
    int64_t max_rows; /* 0: every row; else about that many (whole groups, spread evenly) */
    int64_t target_cache_bytes; /* the original model's targets of every refitted layer are
                                   computed once and kept when they fit in this many bytes per
                                   rank; 0: LF_REFIT_TARGET_CACHE_DEFAULT, < 0: never */
} lf_refit_opts_t;

#define LF_REFIT_TARGET_CACHE_DEFAULT ((int64_t)1 << 30) /* 1 GiB */

#define LF_REFIT_DIST_K_DEFAULT 4096

/* What the refit did to one layer. */
typedef struct {
    int layer;        /* in the compressed model */
    int source_layer; /* in the original model */
    int64_t k, n_out; /* unknowns per output (inputs + 1) and outputs */
    int64_t fit_rows, held_rows;
    double lambda;      /* the one chosen */
    double held_before; /* mean squared error per output on the held-out rows, before */
    double held_after;  /* the same with the refit on the fit rows at the chosen λ */
    bool fallback;      /* G + λD was not positive definite: solved by eigendecomposition */
    bool kept;          /* the refit did not lower the held-out error: the weights stayed */
    double sums_seconds, product_seconds, product_flops; /* this rank's (lf_refit_sums_t) */
    double seconds;
} lf_refit_layer_t;

typedef struct {
    lf_refit_layer_t *layers; /* one per refitted layer, from the input side */
    int n_layers;
    bool targets_cached; /* the original model ran once for all layers (target_cache_bytes) */
    double seconds;
} lf_refit_report_t;

/* Columns per panel of the refit's products (fixed: a panel's bits depend on its shape only). */
#define LF_REFIT_PANEL 128

/* Column panels of `panel` columns (the last may be narrower). Panel q of G (k x k) covers
 * columns [c0, c1) = [q panel, min((q + 1) panel, k)) and holds rows [0, c1) of them: the upper
 * triangle and the whole diagonal block. Panel q of B (k x n_out) holds all k rows of its
 * columns. A rank owns a contiguous run of G's panels and one of B's (lf_refit_dist_panels() in
 * refit_dist.h), stored one after the other, each row-major with its width as the leading
 * dimension: the shape the products are formed in. */
typedef struct {
    int64_t panel;  /* columns per panel */
    int64_t g0, g1; /* this rank's panels of G: [g0, g1) */
    int64_t b0, b1; /* this rank's panels of B */
} lf_refit_panels_t;

/* The sums of one layer's refit: G and B over the fit rows and over the held-out rows. Whole on
 * every rank (dist false), or, from K = lf_refit_dist_k() on, this rank's column panels of each
 * (dist true): then no rank holds G whole, before or after the reduction. */
typedef struct {
    int64_t k, n_out;
    bool dist;
    lf_refit_panels_t panels; /* with dist: which panels g_* and b_* hold */
    double *g_fit, *g_held;   /* (k, k) row-major, symmetric; with dist its G panels */
    double *b_fit, *b_held;   /* (k, n_out) row-major; with dist its B panels */
    int64_t fit_rows, held_rows;
    double zz_fit, zz_held; /* Σ‖z‖² over the fit rows and the held-out rows */
    double seconds;         /* the pass, on this rank */
    double product_seconds; /* of which the groups' G and B products, on this rank */
    double product_flops;   /* the products' floating-point operations, on this rank */
} lf_refit_sums_t;

/* Rows per group of the refit's sums for n rows (16 compute blocks).
 * Not collective. */
int64_t lf_refit_group_rows(int64_t n);
/* The K from which the refit's system is reduced and solved distributed.
 * Not collective.
 * opts->dist_k, or LF_REFIT_DIST_K_DEFAULT when that is 0 (or opts NULL). */
int64_t lf_refit_dist_k(const lf_refit_opts_t *opts);

/* Refits the layers of f, the compression of m by plan p (where from lf_fold_apply or
 * lf_fold_dist_write), whose inputs changed, on the rows of x (calibration rows, not the rows
 * that judge the result).
 * Collective on comm.
 * f, equal on all ranks, is changed in place and stays equal on all ranks. It may be a shared
 * model (one copy per node, shared on comm, as a distributed fold's is read back): every rank
 * computes the same X for a layer, and the node's first rank stores it (lf_model_update). Each
 * rank then holds, besides the window, the refitted layer's X and its weights before the refit,
 * K x n_out doubles each. report (may be NULL) receives one entry per refitted layer; free it
 * with lf_refit_report_free(). Errors are agreed; after one, f's values are unspecified. */
lf_err_t lf_refit_apply(MPI_Comm comm, const lf_model_t *m, lf_model_t *f, const lf_plan_t *p,
                        const int *where, lf_dataset_t *x, const lf_refit_opts_t *opts,
                        lf_refit_report_t *report);

/* The sums for layer layer_f of f, whose targets are the pre-activations of layer layer_m of m
 * at neurons kept[0 .. n_out) (n_out = f's width there), over the rows of x.
 * Collective on comm.
 * Bitwise identical on every rank and at any rank and thread count (a slab of them from
 * K = lf_refit_dist_k(opts) on: out->dist). Free with lf_refit_sums_free(). */
lf_err_t lf_refit_sums(MPI_Comm comm, const lf_model_t *m, const lf_model_t *f, int layer_f,
                       int layer_m, const int64_t *kept, lf_dataset_t *x,
                       const lf_refit_opts_t *opts, lf_refit_sums_t *out);
void lf_refit_sums_free(lf_refit_sums_t *s);

/* Solves (G + λ D) X = B for the fit rows (all rows with all_rows), X (k, n_out) row-major.
 * Not collective.
 * s must hold the whole sums (not dist: LF_ERR_ARG).
 * *fallback is set when the system was not positive definite and the eigendecomposition solved
 * it (a pseudo-inverse: eigenvalues below k ε λ_max are dropped). LF_ERR_VALUE when LAPACK
 * fails outright (a non-finite sum). */
lf_err_t lf_refit_solve(const lf_refit_sums_t *s, double lambda, bool all_rows, double *x,
                        bool *fallback);

/* The squared error of X over the held-out rows, Σ‖z - hX‖², from the sums:
 * Σ‖z‖² + tr(XᵀG_h X) - 2 tr(XᵀB_h) (NaN when no memory is left for it, or s is dist).
 * Not collective. */
double lf_refit_held_error(const lf_refit_sums_t *s, const double *x);

void lf_refit_report_free(lf_refit_report_t *r);

#endif /* LINFOLD_REFIT_H */
