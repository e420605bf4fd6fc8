/* Test harness: see lf_test.h. */
#define _POSIX_C_SOURCE 200809L
#include "lf_test.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/pool.h"

MPI_Comm LF_TEST_COMM = MPI_COMM_NULL;

int lf_test_run_mpi(int argc, char **argv, Suite *(*make)(void))
{
    MPI_Init(&argc, &argv);
    MPI_Comm_dup(MPI_COMM_WORLD, &LF_TEST_COMM);
    MPI_Comm_set_errhandler(LF_TEST_COMM, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    lf_error_set_rank(rank, size);
    lf_h5io_init();
    lf_pool_serial_blas();
    SRunner *sr = srunner_create(make());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, rank == 0 ? CK_NORMAL : CK_SILENT);
    int failed = srunner_ntests_failed(sr), any = 0;
    srunner_free(sr);
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, LF_TEST_COMM);
    MPI_Comm_free(&LF_TEST_COMM);
    MPI_Finalize();
    return any ? EXIT_FAILURE : EXIT_SUCCESS;
}

int lf_test_run_serial(Suite *(*make)(void))
{
    lf_h5io_init();
    SRunner *sr = srunner_create(make());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

bool lf_test_all(bool ok)
{
    int in = ok ? 1 : 0, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MIN, LF_TEST_COMM);
    return out == 1;
}

uint64_t lf_rng_next(lf_rng_t *r)
{
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

float lf_rng_uniform(lf_rng_t *r, float lo, float hi)
{
    double u = (double)(lf_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

lf_model_t *lf_test_mlp(int64_t n_in, const int64_t *widths, int n, float lo, float hi, float blo,
                        float bhi, uint64_t seed)
{
    lf_model_t *m = NULL;
    lf_rng_t rng = {seed};
    if (lf_model_create(n_in, n, &m) != LF_OK)
        return NULL;
    for (int i = 0; i < n; i++) {
        lf_act_t act = i == n - 1 ? LF_ACT_IDENTITY : LF_ACT_RELU;
        if (lf_model_layer_init(m, i, widths[i], act, 0.0f) != LF_OK) {
            lf_model_destroy(&m);
            return NULL;
        }
        lf_block_t *w = lf_model_block(m, i, i - 1);
        int64_t cols = lf_model_width(m, i - 1);
        for (int64_t k = 0; k < widths[i] * cols; k++)
            w->w[k] = lf_rng_uniform(&rng, lo, hi);
        for (int64_t k = 0; k < widths[i]; k++)
            m->layers[i].bias[k] = lf_rng_uniform(&rng, blo, bhi);
    }
    return m;
}

void lf_test_tmpdir(char *buf, size_t cap)
{
    int rank = 0;
    MPI_Comm comm = LF_TEST_COMM;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized && comm != MPI_COMM_NULL)
        MPI_Comm_rank(comm, &rank);
    if (rank == 0) {
        snprintf(buf, cap, "/tmp/linfold-test-XXXXXX");
        if (!mkdtemp(buf))
            buf[0] = '\0';
    }
    if (initialized && comm != MPI_COMM_NULL)
        MPI_Bcast(buf, (int)cap, MPI_CHAR, 0, comm);
}

void lf_test_write_data(const char *path, const char *xname, const float *x, int64_t n, int64_t d,
                        const char *yname, const int64_t *y)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)d};
    hid_t s = H5Screate_simple(2, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, xname, H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    H5Sclose(s);
    if (yname) {
        hsize_t ny = (hsize_t)n;
        s = H5Screate_simple(1, &ny, NULL);
        ds = H5Dcreate2(f, yname, H5T_STD_I64LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
        H5Dclose(ds);
        H5Sclose(s);
    }
    H5Pclose(lcpl);
    H5Fclose(f);
}
