/* The machine's own cblas_sgemm rate on the shapes of a model's forward pass.
 *
 *   lf_bench_sgemm MODEL.h5 ROWS THREADS
 *
 * Times C (ROWS, out) = A (ROWS, in) · W^T for every layer of the model (the GEMMs a calibration
 * pass runs), with OpenBLAS itself using THREADS threads, repeated for at least two seconds, and
 * prints the aggregate GFLOP/s (2 x weights x rows per pass) and the kernel. linfold's rate is
 * compared with this in bench/calibrate_throughput.sh. */
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "linfold/blas.h"
#include "linfold/log.h"
#include "linfold/h5io.h"

int main(int argc, char **argv)
{
    lf_blas_select_kernel(argv);
    MPI_Init(&argc, &argv);
    lf_h5io_init();
    if (argc != 4) {
        fprintf(stderr, "usage: lf_bench_sgemm MODEL.h5 ROWS THREADS\n");
        return 2;
    }
    lf_model_t *m = NULL;
    if (lf_h5io_read_model(MPI_COMM_SELF, argv[1], &m) != LF_OK) {
        lf_error_print(false);
        return 1;
    }
    int rows = atoi(argv[2]), threads = atoi(argv[3]);
    openblas_set_num_threads(threads);
    int64_t widest = m->n_in, weights = 0;
    for (int i = 0; i < m->n_layers; i++) {
        widest = m->layers[i].n_out > widest ? m->layers[i].n_out : widest;
        weights += m->layers[i].n_out * lf_model_width(m, i - 1);
    }
    float *a = calloc((size_t)rows * (size_t)widest, sizeof *a);
    float *c = calloc((size_t)rows * (size_t)widest, sizeof *c);
    for (int64_t k = 0; k < rows * widest; k++)
        a[k] = 0.01f * (float)(k % 97);
    int passes = 0;
    double t0 = lf_log_seconds(), t = t0;
    do {
        for (int i = 0; i < m->n_layers; i++) {
            int n = (int)m->layers[i].n_out, k = (int)lf_model_width(m, i - 1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, k, 1.0f, a, k,
                        lf_model_block(m, i, i - 1)->w, k, 0.0f, c, n);
        }
        passes++;
        t = lf_log_seconds();
    } while (t - t0 < 2.0);
    double gflops = 2.0 * (double)weights * rows * passes / (t - t0) / 1e9;
    printf("sgemm rows %d threads %d kernel %s gflops %.1f rows/s %.0f\n", rows, threads,
           lf_blas_kernel(), gflops, (double)rows * passes / (t - t0));
    free(a);
    free(c);
    lf_model_destroy(&m);
    MPI_Finalize();
    return 0;
}
