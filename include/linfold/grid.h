/* A BLACS process grid over an MPI communicator, the 2-D block-cyclic layout of ScaLAPACK, and
 * ScaLAPACK's `info` codes decoded into linfold errors.
 *
 * The grid is pr x pc with pr * pc = P ranks of the communicator, as close to square as P allows:
 * pr is the largest divisor of P not above sqrt(P), so P = 1, 2, 3, 4, 6 give 1x1, 1x2, 1x3, 2x2,
 * 2x3 (a prime P gives 1 x P). Ranks are placed in row-major order (rank = row * pc + col). The
 * grid is built on the communicator itself (Csys2blacs_handle), so it works on any
 * sub-communicator, not only MPI_COMM_WORLD.
 *
 * Layout: a global m x n matrix is cut into mb x nb blocks; block (I, J) lives on process
 * (I mod pr, J mod pc), the first block on process (0, 0). Each process stores its blocks as one
 * column-major local matrix (lrows, lcols) with leading dimension lld = max(1, lrows), in global
 * order. Indices here are 0-based; ScaLAPACK's own arguments (ia, ja) are 1-based.
 *
 * ScaLAPACK reports an illegal argument as info = -i (argument i) and an illegal entry j of a
 * descriptor that is argument i as info = -(i * 100 + j); a positive info is a numerical failure
 * (a singular or indefinite matrix, no convergence). lf_grid_info_check() turns those into
 * LF_ERR_ARG and LF_ERR_INTERNAL with the routine, argument and entry named.
 *
 *     lf_grid_t *g = NULL;
 *     lf_grid_create(comm, &g);                                  // collective
 *     lf_grid_layout_t a;
 *     lf_grid_layout(g, m, n, 64, 64, &a);                       // not collective
 *     ... a.lrows x a.lcols local doubles, pdgemm_(..., a.desc, ...) ...
 *     lf_grid_destroy(&g);                                       // collective
 */
#ifndef LINFOLD_GRID_H
#define LINFOLD_GRID_H

#include <mpi.h>
#include <stdint.h>

#include "linfold/error.h"

/* A descriptor has 9 entries (DTYPE_, CTXT_, M_, N_, MB_, NB_, RSRC_, CSRC_, LLD_). */
enum { LF_DESC_LEN = 9 };
/* The default block size. pdgemm_ on 4096^3 at 2 ranks (1 x 2) ran at 17.7 GFLOP/s with blocks of
 * 64 and 15.5 with 128 (a shared, loaded 2-core machine: a first figure, to be measured again
 * quietly); smaller blocks also keep the last, partial blocks small. */
enum { LF_GRID_BLOCK_DEFAULT = 64 };

typedef struct {
    MPI_Comm comm;    /* a duplicate of the caller's communicator (the grid's own collectives) */
    int handle;       /* BLACS system handle of comm */
    int ctxt;         /* BLACS context of the grid */
    int nprow, npcol; /* grid shape: nprow <= npcol, nprow * npcol = size */
    int myrow, mycol; /* this process's place */
    int rank, size;   /* in comm */
} lf_grid_t;

/* A block-cyclic layout of a global (m, n) matrix on a grid, with its ScaLAPACK descriptor. */
typedef struct {
    int64_t m, n;          /* global shape */
    int mb, nb;            /* block shape */
    int lrows, lcols;      /* this process's local shape */
    int lld;               /* local leading dimension: max(1, lrows) */
    int desc[LF_DESC_LEN]; /* from descinit_ */
} lf_grid_layout_t;

/* Computes the grid shape for p ranks: *pr the largest divisor of p not above sqrt(p),
 * *pc = p / *pr.
 * Not collective.
 * p must be >= 1. */
void lf_grid_shape(int p, int *pr, int *pc);

/* Creates the grid of all ranks of comm.
 * Collective on comm.
 * Caller destroys *out with lf_grid_destroy() on every rank. The shape comes from
 * lf_grid_shape(size of comm). Every rank checks that BLACS placed it where the row-major order
 * says; a failure (LF_ERR_MPI, LF_ERR_NOMEM, LF_ERR_INTERNAL) is agreed on every rank and leaves
 * *out NULL everywhere. */
lf_err_t lf_grid_create(MPI_Comm comm, lf_grid_t **out);
/* Creates the grid of all ranks of comm in the transposed shape: nprow >= npcol (2 x 1, 3 x 1,
 * 2 x 2, 3 x 2, ...), placed in row-major order like lf_grid_create's.
 * Collective on comm.
 * As lf_grid_create otherwise. A tall grid suits products C = A · B with A tall (many rows) and
 * B short: pdgemm_ then broadcasts panels of B down the process columns instead of panels of A
 * along the process rows. */
lf_err_t lf_grid_create_tall(MPI_Comm comm, lf_grid_t **out);
/* Leaves the grid (Cblacs_gridexit), frees its handle and communicator, sets *g to NULL.
 * Collective on the grid's communicator.
 * Accepts NULL, but then it must be NULL on every rank. MPI itself stays initialised. */
void lf_grid_destroy(lf_grid_t **g);

/* Returns the number of rows (or columns) of an n-long dimension cut into blocks of nb that
 * process iproc of nprocs holds when the first block is on process 0 (ScaLAPACK's NUMROC).
 * Not collective. */
int64_t lf_grid_numroc(int64_t n, int64_t nb, int iproc, int nprocs);
/* Maps global index gi of a dimension with blocks of nb over nprocs processes to its owner and
 * its index in the owner's local matrix.
 * Not collective. */
void lf_grid_g2l(int64_t gi, int64_t nb, int nprocs, int *owner, int64_t *li);
/* Returns the global index of local index li of process iproc (the inverse of lf_grid_g2l).
 * Not collective. */
int64_t lf_grid_l2g(int64_t li, int64_t nb, int iproc, int nprocs);

/* Fills *out with the layout of an (m, n) matrix in mb x nb blocks on g, for this process.
 * Not collective (every process computes its own local shape; the descriptor's global entries
 * are the same everywhere).
 * LF_ERR_ARG for m, n < 0 or blocks < 1 (checked before descinit_ is called, so that ScaLAPACK
 * prints nothing), LF_ERR_OVERFLOW when a size does not fit ScaLAPACK's int, and descinit_'s
 * info decoded by lf_grid_info_check(). */
lf_err_t lf_grid_layout(const lf_grid_t *g, int64_t m, int64_t n, int mb, int nb,
                        lf_grid_layout_t *out);

/* Checks a descriptor against g the way ScaLAPACK's argument checks do, for the descriptor that
 * is argument `arg` (1-based) of a routine: a dense-matrix type, g's context, m, n >= 0, blocks
 * >= 1, source process 0 (linfold's layouts), and lld >= max(1, local rows). Returns 0 when it
 * is legal, else the info ScaLAPACK uses for it: -(arg * 100 + entry), entry 1-based.
 * Not collective. */
int lf_grid_desc_info(const lf_grid_t *g, const int *desc, int arg);

/* Turns a ScaLAPACK info code of `routine` (e.g. "pdgemm_") into a linfold error: LF_OK for 0;
 * LF_ERR_ARG for a negative code, naming the argument (and the descriptor entry) by its
 * ScaLAPACK name for the routines linfold calls (descinit_, numroc_, pdgemm_, psgemm_,
 * pdgemr2d_, pdposv_), by position for others; LF_ERR_INTERNAL for a positive code (a
 * numerical failure), with the routine's meaning of it where linfold knows it.
 * Not collective (decode first, then agree with lf_comm_agree before the next collective). */
lf_err_t lf_grid_info_check(const char *routine, int info);

/* ---- BLACS and ScaLAPACK entry points (no C header ships with ScaLAPACK): the Fortran ones
 * take every argument by pointer, the C BLACS ones by value. ---- */
void Cblacs_pinfo(int *mypnum, int *nprocs);
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const double *alpha, const double *a, const int *ia, const int *ja, const int *desca,
             const double *b, const int *ib, const int *jb, const int *descb, const double *beta,
             double *c, const int *ic, const int *jc, const int *descc);
void psgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
             const float *alpha, const float *a, const int *ia, const int *ja, const int *desca,
             const float *b, const int *ib, const int *jb, const int *descb, const float *beta,
             float *c, const int *ic, const int *jc, const int *descc);

#endif /* LINFOLD_GRID_H */
