/* Distributed merges: C += A_sub · B on a BLACS grid, with every operand read block-cyclically
 * straight from the model file and the result written block-cyclically to the output file.
 *
 * Folding the neurons S (sorted indices) of producer layer j into consumer layer i adds
 *     C = W_i[:, S] · W_j[S, :]                      (out_i x |S|) · (|S| x in_j)
 * to the consumer's block from j's source (an existing skip block, or zeros). Each rank reads
 * only its own blocks of the three matrices from the file, so no rank ever holds a whole operand
 * or a whole result: a gathered column subset by strips (a row block of its rows times the column
 * span of its columns, at most block x width floats at a time, its columns picked out), other
 * reads and all writes as one parallel-HDF5 hyperslab union (its rows times its columns). The
 * product runs in double precision with pdgemm_ (operands widened from float32, accumulated in
 * double, the result rounded to float32 once when it is written, as the serial
 * lf_merge_add_product does), or with psgemm_ in float32 throughout (LF_DIST_SINGLE: half the
 * memory, and a float32 rounding at every partial sum: on a 1000 x 1006 x 333 fold the largest
 * difference to the serial double merge is 2e-7 to 5e-7 of the largest element, against 4e-8
 * for double, which is only the final rounding).
 *
 * Chains compose without gathering: folding S2 of layer i into layer i+1 after S1 of j into i is
 *     C2 = W_{i+1}[:, S2] · (W_i[S2, S1] · W_j[S1, :])
 * and the intermediate stays distributed (in double) between the two products.
 *
 * Reading the weights directly (not in a sandboxed reader process) is safe here: a merge runs on
 * a model that lf_h5io_read_model has already validated in its reader process, and
 * lf_dist_file_open still checks the file, and every dataset it opens, with the checked helpers
 * of the project's HDF5 layer (no external links or storage, float class, rank 2, shape bounded
 * by the file's size).
 *
 *     lf_grid_t *g;  lf_grid_create(comm, &g);
 *     lf_dist_file_t *f;  lf_dist_file_open(g, "model.h5", &f);
 *     lf_dist_matrix_t *C = NULL;
 *     lf_merge_dist_product(f, i, j, S, nS, "/layers/3/skip/input", &opts, &C);
 *     lf_dist_write(C, out_dset, 0, 0);
 *     lf_dist_matrix_destroy(&C);  lf_dist_file_close(&f);  lf_grid_destroy(&g);
 */
#ifndef LINFOLD_MERGE_DIST_H
#define LINFOLD_MERGE_DIST_H

#include <hdf5.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/grid.h"

typedef enum {
    LF_DIST_DOUBLE, /* float64 local storage, pdgemm_ */
    LF_DIST_SINGLE, /* float32 local storage, psgemm_ */
} lf_dist_prec_t;

/* A distributed matrix: this process's blocks of a global (m, n) matrix, column-major
 * (lay.lld, lay.lcols), doubles or floats by prec. */
typedef struct {
    const lf_grid_t *grid; /* borrowed: must outlive the matrix */
    lf_grid_layout_t lay;
    lf_dist_prec_t prec;
    void *data;
} lf_dist_matrix_t;

/* Options of a distributed merge. */
typedef struct {
    int block;           /* block size (square blocks); <= 0: LF_GRID_BLOCK_DEFAULT */
    lf_dist_prec_t prec; /* LF_DIST_DOUBLE unless asked */
} lf_merge_dist_opts_t;

/* A model file open read-only on every rank of a grid through the MPI-IO driver. */
typedef struct lf_dist_file lf_dist_file_t;

/* Creates a zero (m, n) matrix in square blocks of nb on g.
 * Collective on g's communicator.
 * The allocation is agreed: LF_ERR_NOMEM (or LF_ERR_OVERFLOW, LF_ERR_ARG) on every rank when
 * any rank fails, *out NULL everywhere. */
lf_err_t lf_dist_matrix_create(const lf_grid_t *g, int64_t m, int64_t n, int nb,
                               lf_dist_prec_t prec, lf_dist_matrix_t **out);
/* Frees a matrix and sets *M to NULL.
 * Not collective.
 * Accepts NULL. */
void lf_dist_matrix_destroy(lf_dist_matrix_t **M);
/* Returns element (i, j) (global, 0-based) of M widened to double when this process holds it,
 * else NAN.
 * Not collective. */
double lf_dist_matrix_get(const lf_dist_matrix_t *M, int64_t i, int64_t j);

/* Opens the model file at path read-only through MPI-IO (checked as h5io_impl.h says).
 * Collective on g's communicator.
 * Caller closes *out with lf_dist_file_close(). Errors are agreed and name the file. */
lf_err_t lf_dist_file_open(const lf_grid_t *g, const char *path, lf_dist_file_t **out);
/* Closes the file and sets *f to NULL.
 * Collective on the grid's communicator.
 * Accepts NULL, but then it must be NULL on every rank. */
void lf_dist_file_close(lf_dist_file_t **f);

/* Reads the submatrix D[rows, cols] of the 2-D float dataset dset_path of f (rows NULL: all rows;
 * cols NULL: all columns) into a new distributed matrix in square blocks of nb.
 * Collective on the grid's communicator.
 * rows and cols, when given, must be strictly increasing and inside the dataset, and be the same
 * on every rank; n_rows and n_cols are their lengths (ignored for NULL). Each rank reads only its
 * own blocks (see above). Errors (LF_ERR_ARG, LF_ERR_FORMAT, LF_ERR_NOMEM,
 * LF_ERR_HDF5) are agreed on every rank, *out NULL everywhere. */
lf_err_t lf_dist_read(lf_dist_file_t *f, const char *dset_path, const int64_t *rows, int64_t n_rows,
                      const int64_t *cols, int64_t n_cols, int nb, lf_dist_prec_t prec,
                      lf_dist_matrix_t **out);

/* Computes C += A · B with pdgemm_ (or psgemm_ for LF_DIST_SINGLE).
 * Collective on the grid's communicator.
 * A (m, k), B (k, n), C (m, n) on the same grid, of the same precision and block size. Shapes and
 * descriptors are checked before ScaLAPACK is called (lf_grid_desc_info; an illegal descriptor
 * is reported as pdgemm_ would number it), and the verdict is agreed: LF_ERR_SHAPE or LF_ERR_ARG
 * on every rank, and no rank enters pdgemm_. */
lf_err_t lf_dist_gemm(const lf_dist_matrix_t *A, const lf_dist_matrix_t *B, lf_dist_matrix_t *C);

/* Writes M, rounded to float32, into rows [row0, row0 + m) and columns [col0, col0 + n) of the
 * existing 2-D float32 dataset dset, which must belong to a file opened through the MPI-IO
 * driver by the ranks of M's grid.
 * Collective on the grid's communicator.
 * Every rank calls H5Dwrite once for its own blocks (a hyperslab union, moved by independent
 * MPI-IO: see merge_dist.c for the Open MPI collective-write fault this avoids); nothing is
 * gathered. Errors are agreed: LF_ERR_SHAPE when M does not fit, LF_ERR_HDF5. */
lf_err_t lf_dist_write(const lf_dist_matrix_t *M, hid_t dset, int64_t row0, int64_t col0);

/* Folds neurons cols[0..n_cols) of producer layer j into consumer layer i of f's model:
 * *C += /layers/<i>/weight[:, cols] · /layers/<j>/weight[cols, :].
 * Collective on the grid's communicator.
 * *C NULL: starts from skip_path's block ("/layers/<i>/skip/<src>", read whole and distributed)
 * or, when skip_path is NULL, from zeros; *C given: accumulates into it (it must be
 * (out_i, in_j), of the options' precision and block size), which is how chains and repeated
 * folds compose. cols as for lf_dist_read. Errors are agreed; on failure a *C created here is
 * freed and NULL. */
lf_err_t lf_merge_dist_product(lf_dist_file_t *f, int i, int j, const int64_t *cols, int64_t n_cols,
                               const char *skip_path, const lf_merge_dist_opts_t *opts,
                               lf_dist_matrix_t **C);

/* Creates *out = M[rows, cols]: the rows and columns listed (rows NULL: all, n_rows ignored;
 * cols NULL: all), on M's grid, with M's precision and block size (dist_ops.c).
 * Collective on the grid's communicator.
 * rows and cols strictly increasing, inside M, equal on every rank (LF_ERR_ARG otherwise, on
 * every rank). Every element moves once, from its owner in M to its owner in the result, in one
 * MPI_Alltoallv (several for shares beyond what int counts address); no rank holds more than its
 * blocks of M and of the result plus one send and one receive buffer. Errors are agreed, *out
 * NULL everywhere. */
lf_err_t lf_dist_select(const lf_dist_matrix_t *M, const int64_t *rows, int64_t n_rows,
                        const int64_t *cols, int64_t n_cols, lf_dist_matrix_t **out);

/* y[0..m) += M · v for a distributed (m, n) matrix M and a vector v (n doubles) held whole on
 * every rank (dist_ops.c). Accumulates in double: each process sums its columns in order, and
 * the process columns' partial sums are added in process-column order on every rank, so y is
 * the same, bit for bit, everywhere.
 * Collective on the grid's communicator.
 * Holds m x (process columns) doubles for the exchange. Errors are agreed. */
lf_err_t lf_dist_matvec_add(const lf_dist_matrix_t *M, const double *v, double *y);

#endif /* LINFOLD_MERGE_DIST_H */
