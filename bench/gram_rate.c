/* The machine's own rate for the refit's sums: G = HᵀH (cblas_dsyrk) and B = HᵀZ (cblas_dgemm)
 * in double on one group of rows, the shapes of one refitted layer.
 *
 *   lf_bench_gram K N_OUT THREADS [ROWS]
 *
 * H is (ROWS, K), Z is (ROWS, N_OUT), ROWS defaults to 4,096 (one group of the refit, refit.h).
 * OpenBLAS itself uses THREADS threads. The products are repeated for at least two seconds, and
 * the rate is printed in GFLOP/s counting ROWS K (K + 1) for the dsyrk and 2 ROWS K N_OUT for the
 * dgemm, the count linfold's refit log uses for its own products (src/refit.c), so the two
 * rates compare directly (bench/refit_cost.sh). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "linfold/blas.h"
#include "linfold/log.h"

int main(int argc, char **argv)
{
    lf_blas_select_kernel(argv);
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: lf_bench_gram K N_OUT THREADS [ROWS]\n");
        return 2;
    }
    int k = atoi(argv[1]), o = atoi(argv[2]), threads = atoi(argv[3]);
    int rows = argc == 5 ? atoi(argv[4]) : 4096;
    if (k < 1 || o < 1 || threads < 1 || rows < 1) {
        fprintf(stderr, "lf_bench_gram: K, N_OUT, THREADS and ROWS must be >= 1\n");
        return 2;
    }
    double *h = malloc((size_t)rows * (size_t)k * sizeof *h);
    double *z = malloc((size_t)rows * (size_t)o * sizeof *z);
    double *g = malloc((size_t)k * (size_t)k * sizeof *g);
    double *b = malloc((size_t)k * (size_t)o * sizeof *b);
    if (!h || !z || !g || !b) {
        fprintf(stderr, "lf_bench_gram: out of memory\n");
        return 1;
    }
    unsigned s = 1;
    for (size_t i = 0; i < (size_t)rows * (size_t)k; i++)
        h[i] = (double)(s = s * 1103515245u + 12345u) / 4294967296.0;
    for (size_t i = 0; i < (size_t)rows * (size_t)o; i++)
        z[i] = (double)(s = s * 1103515245u + 12345u) / 4294967296.0;
    openblas_set_num_threads(threads);
    double flops = (double)rows * (double)k * ((double)k + 1.0 + 2.0 * (double)o);
    int reps = 0;
    double t0 = lf_log_seconds(), t = 0;
    do {
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, k, rows, 1.0, h, k, 0.0, g, k);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, o, rows, 1.0, h, k, z, o, 0.0, b,
                    o);
        reps++;
        t = lf_log_seconds() - t0;
    } while (t < 2.0);
    printf("dsyrk+dgemm K=%d N_OUT=%d rows=%d threads=%d: %.1f GFLOP/s (%d repetitions, %s)\n", k,
           o, rows, threads, 1e-9 * flops * reps / t, reps, openblas_get_corename());
    free(b);
    free(g);
    free(z);
    free(h);
    return 0;
}
