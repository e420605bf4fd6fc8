/* The refit's distributed solve: (G + λ D) X = B on the process grid with ScaLAPACK, for layers
 * whose K (inputs + 1) is at or above the threshold (refit.h, lf_refit_dist_k()).
 *
 * Input: the refit's sums in column panels (lf_refit_sums() above the threshold, refit.h): rank s
 * holds its run of G's panels (the upper triangle by columns) and of B's, the scalars everywhere.
 * The panels are moved to 2-D block-cyclic layouts on the grid of grid.h (square blocks,
 * LF_GRID_BLOCK_DEFAULT unless told) by P rounds of pairwise exchanges that carry only values
 * (both sides walk the elements in the same order; pdgemr2d_, tried first, took longer than the
 * solve itself at K = 4097 on one rank). Only G's upper triangle travels, and every ScaLAPACK
 * call reads only that triangle. No rank holds a whole G.
 *
 * Each solve builds G_fit (+ G_held for all rows) + λD in place, D = diag(G) (1 where a column is
 * 0), element for element the serial path's system, and calls pdposv_ (Cholesky). When that
 * reports a system that is not positive definite, it starts again from the system and solves it
 * by pdsyevd_ as the serial solve does by dsyevd: X = V diag(1 / w) Vᵀ B over the eigenvalues
 * w above K ε w_max (the minimum-norm solution), with two pdgemm_. The held-out error
 * Σ‖z‖² + tr(XᵀG_h X) - 2 tr(XᵀB_h) comes from one pdsymm_ and local dot products, the ranks'
 * partial sums added in rank order, so every rank has the same value and makes the same choice.
 * If pdsyevd_ itself fails (no convergence), the refit fails with LF_ERR_VALUE, as the serial
 * path does when dsyevd fails.
 *
 * Memory per rank: G_fit, G_held and the system, 3 K² / P doubles (4 during a fallback, plus
 * pdsyevd_'s workspace), and five K x n_out / P; X whole (K x n_out) at the end, the size of the
 * layer's weights.
 *
 * The blocking of ScaLAPACK differs from LAPACK's and with the grid shape: X agrees with the
 * serial solve to rounding (1e-10 relative on the tests' systems), not bit for bit, and differs
 * in its last bits between rank counts. Below the threshold nothing changes: the serial path is
 * bitwise identical at any rank count.
 *
 *     lf_refit_dist_t *d = NULL;
 *     lf_refit_dist_create(comm, &sums, 0, &d);                  // collective
 *     lf_refit_dist_solve(d, 1e-3, true, &fallback);             // collective
 *     lf_refit_dist_held_error(d, NULL, &e);                     // collective
 *     lf_refit_dist_gather(d, x);                                // collective: X on every rank
 *     lf_refit_dist_destroy(&d);                                 // collective
 */
#ifndef LINFOLD_REFIT_DIST_H
#define LINFOLD_REFIT_DIST_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/refit.h"

typedef struct lf_refit_dist lf_refit_dist_t;

/* The panels (refit.h, lf_refit_panels_t) that rank `rank` of `size` owns, for G (k x k) and B
 * (k x o) in panels of `panel` columns.
 * Not collective.
 * G's panels grow with their index (panel q has c1 (c1 - c0) elements): they are cut into
 * contiguous runs of about equal elements; B's into runs of about equal count. Some ranks may
 * own none. */
void lf_refit_dist_panels(int64_t k, int64_t o, int64_t panel, int rank, int size,
                          lf_refit_panels_t *out);
/* Elements in panels [p0, p1) of a matrix with k rows and n_cols columns in panels of `panel`
 * columns: upper (G: panel q holds rows [0, c1)) or all k rows (B). Also the offset of panel p1
 * in a run stored from p0.
 * Not collective. */
int64_t lf_refit_panel_elems(int64_t k, int64_t n_cols, int64_t panel, bool upper, int64_t p0,
                             int64_t p1);

/* Builds the grid and moves the panel sums s to block-cyclic layouts with nb x nb blocks.
 * Collective on comm.
 * s->dist, its panels as lf_refit_dist_panels says (any panel width); nb 0: LF_GRID_BLOCK_DEFAULT.
 * s stays the caller's (it may be freed once this returns). LF_ERR_VALUE when a sum is not
 * finite (as lf_refit_solve). Destroy with lf_refit_dist_destroy(). Errors are agreed. */
lf_err_t lf_refit_dist_create(MPI_Comm comm, const lf_refit_sums_t *s, int nb,
                              lf_refit_dist_t **out);
/* Solves (G + λD) X = B for the fit rows (all rows with all_rows), X distributed.
 * Collective on the communicator of create.
 * X becomes the current solution. *fallback as lf_refit_solve's. Errors are agreed. */
lf_err_t lf_refit_dist_solve(lf_refit_dist_t *d, double lambda, bool all_rows, bool *fallback);
/* The squared error over the held-out rows, Σ‖z - hX‖², of the current solution or of x.
 * Collective on the communicator of create.
 * x NULL: the current solution; else K x n_out row-major, the same on every rank. *e is the same on every rank. Errors are agreed. */
lf_err_t lf_refit_dist_held_error(lf_refit_dist_t *d, const double *x, double *e);
/* Writes the current solution to x (K x n_out row-major) on every rank.
 * Collective on the communicator of create.
 * Errors are agreed. */
lf_err_t lf_refit_dist_gather(lf_refit_dist_t *d, double *x);
/* Frees *d and its grid, sets *d to NULL; accepts NULL (then on every rank).
 * Collective on the communicator of create. */
void lf_refit_dist_destroy(lf_refit_dist_t **d);

/* One layer's refit from panel sums, as the serial path does it.
 * Collective on comm.
 * λ from grid[0 .. n_grid) (the first minimum of the held-out error; default_lambda when no row
 * is held out), the solve on all rows at that λ, and the weights x0 (K x n_out row-major, the
 * same on every rank) kept when the refit does not lower the held-out error. x (K x n_out)
 * receives the result on every rank; rec's lambda, held_before, held_after (per output and
 * held-out row), fallback and kept are set. nb as lf_refit_dist_create's. Errors are agreed. */
lf_err_t lf_refit_dist_fit(MPI_Comm comm, const lf_refit_sums_t *s, const double *grid, int n_grid,
                           double default_lambda, int nb, const double *x0, double *x,
                           lf_refit_layer_t *rec);

#endif /* LINFOLD_REFIT_DIST_H */
