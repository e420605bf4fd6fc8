/* The merge interface: C += A · B for the products that folding creates.
 *
 * All three matrices are row-major float32: A (m, k), B (k, n), C (m, n). The product is
 * accumulated in double precision and added to C with a single rounding, so a merged weight is
 * the float32 nearest to the exact sum whenever the double accumulation is exact enough (it is
 * for any realistic k). Serial BLAS (cblas_dgemm) computes it today; a distributed back end
 * (ScaLAPACK on a BLACS grid) takes over above a size threshold without changing callers.
 *
 *     lf_merge_add_product(comm, m, n, k, A, B, C);
 */
#ifndef LINFOLD_MERGE_H
#define LINFOLD_MERGE_H

#include <mpi.h>
#include <stdint.h>

#include "linfold/error.h"

/* Computes C += A · B as described above.
 * Logically collective on comm: m, n, k, A, B and C must be equal on all ranks.
 * Every rank passes the same A, B and C and gets the same C. The serial back end ignores comm,
 * so no rank communicates today. */
lf_err_t lf_merge_add_product(MPI_Comm comm, int64_t m, int64_t n, int64_t k, const float *A,
                              const float *B, float *C);

#endif /* LINFOLD_MERGE_H */
