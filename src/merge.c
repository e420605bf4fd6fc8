/* Serial back end of the merge interface: widen to double, cblas_dgemm, round once. */
#include "linfold/merge.h"

#include <cblas.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"

lf_err_t lf_merge_add_product(MPI_Comm comm, int64_t m, int64_t n, int64_t k, const float *A,
                              const float *B, float *C)
{
    lf_err_t err = LF_OK;
    double *a = NULL, *b = NULL, *c = NULL;
    int im = 0, in = 0, ik = 0;
#ifndef NDEBUG
    const int64_t shape[3] = {m, n, k};
    LF_CALL(lf_comm_check_equal(comm, shape, 3, "lf_merge_add_product"));
#else
    (void)comm;
#endif /* NDEBUG */
    if (m == 0 || n == 0 || k == 0)
        return LF_OK;
    LF_CALL(lf_int_cast(m, &im));
    LF_CALL(lf_int_cast(n, &in));
    LF_CALL(lf_int_cast(k, &ik));
    LF_CALL(lf_malloc((size_t)(m * k), sizeof *a, (void **)&a));
    LF_CALL(lf_malloc((size_t)(k * n), sizeof *b, (void **)&b));
    LF_CALL(lf_malloc((size_t)(m * n), sizeof *c, (void **)&c));
    for (int64_t t = 0; t < m * k; t++)
        a[t] = A[t];
    for (int64_t t = 0; t < k * n; t++)
        b[t] = B[t];
    for (int64_t t = 0; t < m * n; t++)
        c[t] = C[t];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, im, in, ik, 1.0, a, ik, b, in, 1.0, c,
                in);
    for (int64_t t = 0; t < m * n; t++)
        C[t] = (float)c[t];
cleanup:
    lf_free(c);
    lf_free(b);
    lf_free(a);
    return err;
}
