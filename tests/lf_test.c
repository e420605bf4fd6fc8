/* Test harness: see lf_test.h. */
#define _POSIX_C_SOURCE 200809L
#include "lf_test.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/forward.h"
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

bool lf_test_any_message(const char *fragment)
{
    int in = strstr(lf_error_message(), fragment) != NULL, out = 0;
    MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, LF_TEST_COMM);
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

void lf_test_tmpdir_remove(const char *dir)
{
    int rank = 0;
    MPI_Barrier(LF_TEST_COMM);
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    if (rank == 0 && dir[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "lf_test: could not remove %s\n", dir);
    }
    MPI_Barrier(LF_TEST_COMM);
}

void lf_test_fill(float *x, int64_t n, float lo, float hi, uint64_t seed)
{
    lf_rng_t rng = {seed};
    for (int64_t k = 0; k < n; k++)
        x[k] = lf_rng_uniform(&rng, lo, hi);
}

void lf_test_write_samples(const char *dir, const char *name, int64_t n, int64_t d, float lo,
                           float hi, uint64_t seed, char *spec, size_t cap)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    char path[512];
    snprintf(path, sizeof path, "%s/%s.h5", dir, name);
    if (rank == 0) {
        float *x = malloc((size_t)(n * d) * sizeof *x + 1);
        lf_test_fill(x, n * d, lo, hi, seed);
        lf_test_write_data(path, "/x", x, n, d, NULL, NULL);
        free(x);
    }
    MPI_Barrier(LF_TEST_COMM);
    snprintf(spec, cap, "%s:/x", path);
}

lf_stats_t *lf_test_collect(const lf_model_t *m, const char *spec, int64_t batch, bool sums)
{
    lf_dataset_t *ds = NULL;
    lf_stats_t *s = NULL;
    lf_batch_opts_t bo = {.batch_rows = batch};
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    ck_assert_int_eq(lf_stats_collect(LF_TEST_COMM, m, ds, &bo, sums, &s), LF_OK);
    lf_h5io_dataset_close(&ds);
    return s;
}

double lf_test_output_rel_diff(const lf_model_t *a, const lf_model_t *b, int64_t n, uint64_t seed,
                               float hi)
{
    lf_forward_t *fa = NULL, *fb = NULL;
    float *x = malloc((size_t)(n * a->n_in) * sizeof *x);
    lf_test_fill(x, n * a->n_in, 0.0f, hi, seed);
    ck_assert_int_eq(lf_forward_create(a, n, &fa), LF_OK);
    ck_assert_int_eq(lf_forward_create(b, n, &fb), LF_OK);
    const float *ya = NULL, *yb = NULL;
    ck_assert_int_eq(lf_forward_run(fa, a, x, n, NULL, NULL, &ya), LF_OK);
    ck_assert_int_eq(lf_forward_run(fb, b, x, n, NULL, NULL, &yb), LF_OK);
    double diff = 0.0, scale = 0.0;
    for (int64_t k = 0; k < n * lf_model_n_out(a); k++) {
        diff = fmax(diff, fabs((double)ya[k] - (double)yb[k]));
        scale = fmax(scale, fabs((double)ya[k]));
    }
    lf_forward_destroy(&fa);
    lf_forward_destroy(&fb);
    free(x);
    return diff / (scale > 0 ? scale : 1.0);
}

void lf_test_shape_layer(lf_model_t *m, int i, int64_t n_linear, int64_t n_dead, uint64_t seed)
{
    lf_rng_t rng = {seed};
    lf_layer_t *L = &m->layers[i];
    for (int b = 0; b < L->n_blocks; b++) {
        int64_t cols = lf_model_width(m, L->blocks[b].src);
        for (int64_t j = 0; j < n_linear + n_dead; j++)
            for (int64_t k = 0; k < cols; k++) {
                float v = lf_rng_uniform(&rng, 0.0f, 0.5f);
                L->blocks[b].w[j * cols + k] = j < n_linear ? v : -v;
            }
    }
    for (int64_t j = 0; j < n_linear + n_dead; j++)
        L->bias[j] =
            j < n_linear ? lf_rng_uniform(&rng, 0.0f, 0.1f) : -lf_rng_uniform(&rng, 0.05f, 0.1f);
}

bool lf_test_files_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

lf_stats_t *lf_test_stats_with(const lf_model_t *m, int64_t samples, const int64_t *const *positive)
{
    lf_stats_t *s = NULL;
    ck_assert_int_eq(lf_stats_create(m, &s), LF_OK);
    s->samples = samples;
    for (int i = 0; i < m->n_layers; i++)
        for (int64_t j = 0; j < m->layers[i].n_out; j++) {
            int64_t pos = positive[i] ? positive[i][j] : 0;
            s->layers[i].positive[j] = pos;
            s->layers[i].negative[j] = samples - pos;
            s->layers[i].zmax[j] = pos > 0 ? 1.0f : -1.0f;
            s->layers[i].zmin[j] = pos < samples ? -1.0f : 1.0f;
        }
    return s;
}

lf_stats_t *lf_test_stats_linear_prefix(const lf_model_t *m, const int64_t *a)
{
    int64_t *pos[64] = {0};
    ck_assert_int_le(m->n_layers, 64);
    for (int i = 0; i < m->n_layers; i++) {
        pos[i] = calloc((size_t)m->layers[i].n_out, sizeof **pos);
        for (int64_t j = 0; j < a[i]; j++)
            pos[i][j] = 1;
    }
    lf_stats_t *s = lf_test_stats_with(m, 1, (const int64_t *const *)pos);
    for (int i = 0; i < m->n_layers; i++)
        free(pos[i]);
    return s;
}
