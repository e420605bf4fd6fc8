/* One copy of the weights per node: a model read into a node's MPI-3 shared-memory window
 * (lf_h5io_read_model_shared, lf_model_share) gives bitwise the statistics of the per-rank copy,
 * its window holds exactly the padded layout, a corrupt file fails the same way as the per-rank
 * read on every rank, and releasing it gives its memory back. */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/comm.h"
#include "linfold/h5io.h"
#include "linfold/stats.h"

#define DIGITS LF_SOURCE_DIR "/tests/data/digits"

/* AddressSanitizer's quarantine keeps freed memory mapped, so mapped sizes mean nothing under it
 * (its leak checker covers the bookkeeping instead). The suite itself is not instrumented; the
 * sanitizer's runtime, linked in, defines this. */
extern void __asan_init(void) __attribute__((weak));

enum { N_ROWS = 157 }; /* not divisible by 2, 3 or 4: uneven shards */

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void)
{
    lf_model_share_test_group(0);
    lf_test_tmpdir_remove(tmpdir);
}

/* Every figure of two statistics, bit for bit. */
static bool stats_identical(const lf_stats_t *a, const lf_stats_t *b)
{
    if (a->n_layers != b->n_layers || a->samples != b->samples ||
        a->fingerprint != b->fingerprint || a->with_sums != b->with_sums)
        return false;
    for (int i = 0; i < a->n_layers; i++) {
        const lf_layer_stats_t *x = &a->layers[i], *y = &b->layers[i];
        size_t n = (size_t)x->n_out;
        if (x->n_out != y->n_out || memcmp(x->positive, y->positive, n * sizeof(int64_t)) ||
            memcmp(x->negative, y->negative, n * sizeof(int64_t)) ||
            memcmp(x->zmin, y->zmin, n * sizeof(float)) ||
            memcmp(x->zmax, y->zmax, n * sizeof(float)) ||
            (a->with_sums && memcmp(x->out_sum, y->out_sum, n * sizeof(double))))
            return false;
    }
    return true;
}

/* The ranks of this process's node (with the test hook's groups of `group` ranks). */
static int node_ranks(int group)
{
    MPI_Comm node;
    int rank = 0, size = 0;
    MPI_Comm_split_type(LF_TEST_COMM, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &rank);
    MPI_Comm_size(node, &size);
    MPI_Comm_free(&node);
    if (group <= 0)
        return size;
    int first = rank / group * group;
    return size - first < group ? size - first : group;
}

/* Every array of m lies in one window of `bytes` bytes, in layout order, 64-byte offsets apart
 * from the first one: the weights are one copy, not per-rank allocations. */
static bool arrays_in_window(const lf_model_t *m, int64_t bytes)
{
    const char *base = (const char *)m->layers[0].bias, *next = base;
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        for (int b = -1; b < L->n_blocks; b++) {
            const char *a = b < 0 ? (const char *)L->bias : (const char *)L->blocks[b].w;
            int64_t len = L->n_out * (b < 0 ? 1 : lf_model_width(m, L->blocks[b].src)) * 4;
            if (a != next || (a - base) % 64 != 0 || a + len > base + bytes)
                return false;
            next = a + (len + 63) / 64 * 64;
        }
    }
    return next == base + bytes;
}

/* The bundled digits model (64-64-128-128-256-256-10, relu, no skips) on its 359 validation
 * rows: bitwise the statistics of the per-rank copy, and a window of exactly its bytes. */
START_TEST(test_digits_bitwise)
{
    lf_model_t *own = NULL, *shared = NULL;
    ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, DIGITS "/model.h5", &own), LF_OK);
    ck_assert_int_eq(lf_h5io_read_model_shared(LF_TEST_COMM, DIGITS "/model.h5", &shared), LF_OK);
    ck_assert(lf_model_is_shared(shared) && !lf_model_is_shared(own));
    ck_assert(lf_test_all(lf_model_shared_ranks(shared) == node_ranks(0)));
    /* 120,458 parameters, 481,832 bytes; every array is a multiple of 64 bytes except layer 5's
     * bias (10 floats, 40 bytes), padded by 24. */
    ck_assert_int_eq(lf_model_params(shared), 130378);
    ck_assert_int_eq(lf_model_shared_window_bytes(shared), 130378 * 4 + 24);
    ck_assert_int_eq(lf_model_shared_layout_bytes(own), 130378 * 4 + 24);
    ck_assert(lf_test_all(arrays_in_window(shared, 130378 * 4 + 24)));
    ck_assert(lf_test_all(lf_model_fingerprint(shared) == lf_model_fingerprint(own)));

    lf_stats_t *a = lf_test_collect(own, DIGITS "/data.h5:/val/x", 50, true);
    lf_stats_t *b = lf_test_collect(shared, DIGITS "/data.h5:/val/x", 50, true);
    ck_assert_int_eq(b->samples, 359);
    ck_assert(lf_test_all(stats_identical(a, b)));
    /* Reading leaves the model unchanged. */
    ck_assert(lf_test_all(lf_model_fingerprint(shared) == lf_model_fingerprint(own)));
    /* A copy is private and equal. */
    lf_model_t *copy = NULL;
    ck_assert_int_eq(lf_model_copy(shared, &copy), LF_OK);
    ck_assert(!lf_model_is_shared(copy));
    ck_assert(lf_test_all(lf_model_fingerprint(copy) == lf_model_fingerprint(own)));
    lf_model_destroy(&copy);
    lf_stats_destroy(&a);
    lf_stats_destroy(&b);
    lf_model_release(LF_TEST_COMM, &shared);
    ck_assert_ptr_null(shared);
    lf_model_release(LF_TEST_COMM, &own); /* a private model: lf_model_destroy */
    ck_assert_ptr_null(own);
}
END_TEST

/* 7 -> 13 -> 9 -> 11 -> 3 with skip blocks from the input into layers 2 and 3 and from layer 0
 * into layer 3, filled with seeded values. */
static lf_model_t *skip_model(void)
{
    const int64_t widths[] = {13, 9, 11, 3};
    lf_model_t *m = lf_test_mlp(7, widths, 4, -0.6f, 0.6f, -0.3f, 0.3f, 907);
    const int skips[][2] = {{2, LF_SRC_INPUT}, {3, LF_SRC_INPUT}, {3, 0}};
    lf_rng_t rng = {908};
    for (size_t k = 0; k < sizeof skips / sizeof *skips; k++) {
        lf_block_t *blk = NULL;
        int i = skips[k][0], src = skips[k][1];
        ck_assert_int_eq(lf_model_block_ensure(m, i, src, &blk), LF_OK);
        for (int64_t e = 0; e < m->layers[i].n_out * lf_model_width(m, src); e++)
            blk->w[e] = lf_rng_uniform(&rng, -0.4f, 0.4f);
    }
    return m;
}

/* A model with skip blocks, through the file and from memory, with one window per node and with
 * windows of 1 and 2 ranks (the test hook), which makes the first ranks of the windows receive
 * the values by broadcast: bitwise the statistics of the per-rank copy every time. */
START_TEST(test_skip_model_bitwise)
{
    lf_model_t *m = skip_model(), *own = NULL;
    ck_assert_int_eq(lf_model_skip_params(m), 11 * 7 + 3 * 7 + 3 * 13);
    char path[512], spec[600];
    snprintf(path, sizeof path, "%s/skip.h5", tmpdir);
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, path, m, NULL, 0), LF_OK);
    ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, path, &own), LF_OK);
    lf_test_write_samples(tmpdir, "x", N_ROWS, 7, -1.0f, 1.0f, 909, spec, sizeof spec);
    lf_stats_t *ref = lf_test_collect(own, spec, 16, true);
    ck_assert_int_eq(ref->samples, N_ROWS);
    /* Arrays of 13, 9, 11, 3 biases, 13x7, 9x13, 11x7, 11x9, 3x7, 3x13, 3x11 weights: floats
     * rounded up to 16 each. */
    const int64_t floats[] = {13, 9, 11, 3, 91, 117, 77, 99, 21, 39, 33};
    int64_t expect = 0;
    for (size_t k = 0; k < sizeof floats / sizeof *floats; k++)
        expect += (floats[k] + 15) / 16 * 16 * 4;
    ck_assert_int_eq(expect, 2432);

    const int groups[] = {0, 1, 2};
    for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
        lf_model_share_test_group(groups[g]);
        for (int from_file = 0; from_file < 2; from_file++) {
            lf_model_t *shared = NULL;
            if (from_file)
                ck_assert_int_eq(lf_h5io_read_model_shared(LF_TEST_COMM, path, &shared), LF_OK);
            else
                ck_assert_int_eq(lf_model_share(LF_TEST_COMM, 0,
                                                lf_comm_rank(LF_TEST_COMM) == 0 ? m : NULL,
                                                &shared),
                                 LF_OK);
            ck_assert(lf_test_all(lf_model_shared_ranks(shared) == node_ranks(groups[g])));
            ck_assert_int_eq(lf_model_shared_window_bytes(shared), expect);
            ck_assert(lf_test_all(arrays_in_window(shared, expect)));
            ck_assert(lf_test_all(lf_model_fingerprint(shared) == lf_model_fingerprint(m)));
            lf_stats_t *s = lf_test_collect(shared, spec, 16, true);
            ck_assert(lf_test_all(stats_identical(ref, s)));
            lf_stats_destroy(&s);
            lf_model_release(LF_TEST_COMM, &shared);
        }
    }
    lf_stats_destroy(&ref);
    lf_model_destroy(&own);
    lf_model_destroy(&m);
}
END_TEST

/* Damages dataset `obj` of a model file (rank 0): a NaN at element 5, or a new shape (n). */
static void damage(const char *path, const char *obj, bool nan, hsize_t n)
{
    if (lf_comm_rank(LF_TEST_COMM) == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        ck_assert(f >= 0);
        if (nan) {
            hid_t d = H5Dopen2(f, obj, H5P_DEFAULT), space = H5Dget_space(d);
            hsize_t start[2] = {0, 5}, one[2] = {1, 1};
            H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, one, NULL);
            hid_t mem = H5Screate_simple(2, one, NULL);
            float v = NAN;
            ck_assert(H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, &v) >= 0);
            H5Sclose(mem);
            H5Sclose(space);
            H5Dclose(d);
        } else {
            ck_assert(H5Ldelete(f, obj, H5P_DEFAULT) >= 0);
            hid_t s = H5Screate_simple(1, &n, NULL);
            hid_t d = H5Dcreate2(f, obj, H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            H5Dclose(d);
            H5Sclose(s);
        }
        H5Fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
}

/* Reads path both ways: the same error code on every rank both times, nothing returned, and the
 * message naming `fragment` on some rank. */
static void expect_same_failure(const char *path, lf_err_t code, const char *fragment)
{
    lf_model_t *own = NULL, *shared = NULL;
    lf_err_t a = lf_h5io_read_model(LF_TEST_COMM, path, &own);
    ck_assert(lf_test_all(a == code && own == NULL));
    ck_assert(lf_test_any_message(fragment));
    lf_error_clear();
    lf_err_t b = lf_h5io_read_model_shared(LF_TEST_COMM, path, &shared);
    ck_assert(lf_test_all(b == code && shared == NULL));
    ck_assert(lf_test_any_message(fragment));
    lf_error_clear();
}

/* A corrupt model fails the shared read exactly as the per-rank read, on every rank: a bias of
 * the wrong shape, a NaN weight (found by the reader process), a file that is not HDF5. */
START_TEST(test_corrupt_model)
{
    lf_model_t *m = skip_model();
    char path[512];
    snprintf(path, sizeof path, "%s/bad.h5", tmpdir);
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, path, m, NULL, 0), LF_OK);
    damage(path, "/layers/2/bias", false, 5);
    expect_same_failure(path, LF_ERR_SHAPE, "/layers/2/bias has shape (5), expected (11)");

    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, path, m, NULL, 0), LF_OK);
    damage(path, "/layers/3/skip/0", true, 0);
    expect_same_failure(path, LF_ERR_VALUE, "/layers/3/skip/0");

    if (lf_comm_rank(LF_TEST_COMM) == 0) {
        FILE *f = fopen(path, "wb");
        ck_assert_ptr_nonnull(f);
        fputs("this is not an HDF5 file\n", f);
        fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
    lf_model_t *own = NULL;
    lf_err_t code = lf_h5io_read_model(LF_TEST_COMM, path, &own);
    ck_assert(lf_test_all(code != LF_OK && own == NULL));
    lf_error_clear();
    expect_same_failure(path, code, "bad.h5");
    lf_model_destroy(&m);
}
END_TEST

/* The mapped bytes of this process (/proc/self/statm's first figure, in pages). */
static int64_t mapped_bytes(void)
{
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fscanf(f, "%ld", &pages), 1);
    fclose(f);
    return (int64_t)pages * 4096;
}

/* Releasing gives the window back: eight shares and releases of a 16 MiB model leave the mapped
 * memory of every rank where two shares and releases left it (a leaked window would add 128 MiB
 * on its node's first rank and a mapping of it on every rank). */
START_TEST(test_release_frees_window)
{
    const int64_t widths[] = {2048, 2};
    lf_model_t *m = lf_test_mlp(2048, widths, 2, -0.1f, 0.1f, -0.1f, 0.1f, 910), *shared = NULL;
    lf_model_t *root_m = lf_comm_rank(LF_TEST_COMM) == 0 ? m : NULL;
    /* Two rounds first: at one rank Open MPI takes the window from malloc, whose first free of
     * a 16 MiB block raises glibc's mmap threshold, so the second lands on (and stays in) the
     * heap. */
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(lf_model_share(LF_TEST_COMM, 0, root_m, &shared), LF_OK);
        ck_assert_int_ge(lf_model_shared_window_bytes(shared), (int64_t)2048 * 2048 * 4);
        lf_model_release(LF_TEST_COMM, &shared);
    }
    int64_t before = mapped_bytes();
    for (int k = 0; k < 8; k++) {
        ck_assert_int_eq(lf_model_share(LF_TEST_COMM, 0, root_m, &shared), LF_OK);
        lf_model_release(LF_TEST_COMM, &shared);
    }
    int64_t grown = mapped_bytes() - before;
    ck_assert(__asan_init != NULL || lf_test_all(grown < (int64_t)8 << 20));
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("shared_model");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_digits_bitwise);
    tcase_add_test(tc, test_skip_model_bitwise);
    tcase_add_test(tc, test_corrupt_model);
    tcase_add_test(tc, test_release_frees_window);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
