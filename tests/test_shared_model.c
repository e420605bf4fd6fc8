/* One copy of the weights per node: a model read into a node's MPI-3 shared-memory window
 * (lf_h5io_read_model_shared, lf_model_share) gives bitwise the statistics of the per-rank copy,
 * its window holds exactly the padded layout, lf_model_update (and the refit with it) changes it
 * in place for every rank, a corrupt file fails the same way as the per-rank read on every rank,
 * and releasing it gives its memory back. */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/comm.h"
#include "linfold/h5io.h"
#include "linfold/plan.h"
#include "linfold/refit.h"
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

/* Whether this process is the first rank of its window (with the test hook's groups). */
static bool window_first(int group)
{
    MPI_Comm node;
    int rank = 0;
    MPI_Comm_split_type(LF_TEST_COMM, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &rank);
    MPI_Comm_free(&node);
    return group <= 0 ? rank == 0 : rank % group == 0;
}

typedef struct {
    int calls;      /* on this rank */
    lf_err_t fails; /* returned after the stores */
} update_job_t;

/* New values for layer 2 of skip_model (weight, both skips, bias), computed from the old ones
 * (so a store that overtook another rank's load, or a second store, would show). */
static lf_err_t update_layer2(void *ctx, lf_model_t *m)
{
    update_job_t *job = ctx;
    job->calls++;
    lf_layer_t *L = &m->layers[2];
    for (int b = 0; b < L->n_blocks; b++)
        for (int64_t e = 0; e < L->n_out * lf_model_width(m, L->blocks[b].src); e++)
            L->blocks[b].w[e] = 0.5f * L->blocks[b].w[e] + 0.125f * (float)(e % 7);
    for (int64_t j = 0; j < L->n_out; j++)
        L->bias[j] = -L->bias[j] + 0.25f;
    return job->fails;
}

static bool same_values(const lf_model_t *a, const lf_model_t *b)
{
    for (int i = 0; i < a->n_layers; i++) {
        const lf_layer_t *A = &a->layers[i], *B = &b->layers[i];
        if (memcmp(A->bias, B->bias, (size_t)A->n_out * sizeof(float)) != 0)
            return false;
        for (int q = 0; q < A->n_blocks; q++)
            if (memcmp(A->blocks[q].w, B->blocks[q].w,
                       (size_t)(A->n_out * lf_model_width(a, A->blocks[q].src)) * sizeof(float)))
                return false;
    }
    return true;
}

/* lf_model_update: in a shared model only each window's first rank runs the write (once), and
 * afterwards every rank sees the new values: bitwise those of a private copy updated the same
 * way, with its fingerprint (not the remembered one of before) and its statistics. One window
 * per node and windows of 1 and 2 ranks. A private model runs the write on every rank; a failed
 * write is agreed. */
START_TEST(test_update)
{
    lf_model_t *m = skip_model(), *want = NULL;
    char spec[600];
    lf_test_write_samples(tmpdir, "x", N_ROWS, 7, -1.0f, 1.0f, 911, spec, sizeof spec);
    ck_assert_int_eq(lf_model_copy(m, &want), LF_OK);
    update_job_t job = {0};
    ck_assert_int_eq(lf_model_update(LF_TEST_COMM, want, update_layer2, &job), LF_OK);
    ck_assert_int_eq(job.calls, 1); /* private: every rank */
    ck_assert(!same_values(m, want));
    lf_stats_t *ref = lf_test_collect(want, spec, 16, true);

    const int groups[] = {0, 1, 2};
    for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
        lf_model_share_test_group(groups[g]);
        lf_model_t *shared = NULL;
        ck_assert_int_eq(
            lf_model_share(LF_TEST_COMM, 0, lf_comm_rank(LF_TEST_COMM) == 0 ? m : NULL, &shared),
            LF_OK);
        uint64_t before = lf_model_fingerprint(shared); /* remembered from here on */
        ck_assert(lf_test_all(before == lf_model_fingerprint(m)));
        job = (update_job_t){0};
        ck_assert_int_eq(lf_model_update(LF_TEST_COMM, shared, update_layer2, &job), LF_OK);
        ck_assert(lf_test_all(job.calls == (window_first(groups[g]) ? 1 : 0)));
        ck_assert(lf_test_all(same_values(shared, want)));
        ck_assert(lf_test_all(lf_model_fingerprint(shared) == lf_model_fingerprint(want)));
        ck_assert(lf_test_all(lf_model_fingerprint(shared) != before));
        lf_stats_t *s = lf_test_collect(shared, spec, 16, true);
        ck_assert(lf_test_all(stats_identical(ref, s)));
        lf_stats_destroy(&s);
        /* A write that fails on the windows' first ranks fails on every rank. */
        job = (update_job_t){.fails = LF_ERR_VALUE};
        ck_assert_int_eq(lf_model_update(LF_TEST_COMM, shared, update_layer2, &job), LF_ERR_VALUE);
        lf_error_clear();
        lf_model_release(LF_TEST_COMM, &shared);
    }
    lf_stats_destroy(&ref);
    lf_model_destroy(&want);
    lf_model_destroy(&m);
}
END_TEST

/* lf_refit_apply on a shared compressed model: bitwise the refit of a private copy, on every
 * rank, with one window per node and windows of 1 and 2 ranks, with the serial solve and the
 * distributed one (dist_k 1). Layer 0 loses neurons, so layer 1 is refitted and then layer 2
 * (it reads a refitted layer): the second refit's sums, and its choice to keep its weights or
 * not, read the first one's stores through the window, so a store another rank does not see yet
 * would show as a different X or choice. */
START_TEST(test_refit_in_window)
{
    enum { N_IN = 12, H0 = 40, H1 = 20, O = 5, N = 600 };
    char spec[600];
    const int64_t widths[] = {H0, H1, O};
    lf_model_t *m = lf_test_mlp(N_IN, widths, 3, -1.0f, 1.0f, -0.2f, 0.6f, 913);
    bool keep[H0];
    uint8_t fate0[H0], fate1[H1] = {0}, fate2[O] = {0}; /* LF_NEURON_KEEP is 0 */
    for (int j = 0; j < H0; j++) {
        keep[j] = j % 5 != 2;
        fate0[j] = keep[j] ? LF_NEURON_KEEP : LF_NEURON_PRUNE;
    }
    int64_t n_out[3] = {H0, H1, O};
    uint8_t *fates[3] = {fate0, fate1, fate2};
    lf_plan_t p = {.n_layers = 3, .n_out = n_out, .fate = fates}; /* only fate and n_out read */
    int where[3] = {0, 1, 2};
    lf_test_write_samples(tmpdir, "x", N, N_IN, 0.0f, 1.0f, 914, spec, sizeof spec);
    lf_model_t *pruned = NULL;
    ck_assert_int_eq(lf_model_copy(m, &pruned), LF_OK);
    ck_assert_int_eq(lf_model_remove_neurons(pruned, 0, keep), LF_OK);
    for (int64_t dist_k = 0; dist_k <= 1; dist_k++) {
        lf_refit_opts_t o = {.threads = 1, .dist_k = dist_k, .dist_block = 4};
        lf_model_t *want = NULL;
        lf_dataset_t *ds = NULL;
        lf_refit_report_t rep = {0};
        ck_assert_int_eq(lf_model_copy(pruned, &want), LF_OK);
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
        ck_assert_int_eq(lf_refit_apply(LF_TEST_COMM, m, want, &p, where, ds, &o, &rep), LF_OK);
        ck_assert_int_eq(rep.n_layers, 2);
        ck_assert(!rep.layers[0].kept); /* layer 1 changes */
        ck_assert(!same_values(want, pruned));
        lf_refit_report_free(&rep);
        const int groups[] = {0, 1, 2};
        for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
            lf_model_share_test_group(groups[g]);
            lf_model_t *shared = NULL;
            ck_assert_int_eq(lf_model_share(LF_TEST_COMM, 0,
                                            lf_comm_rank(LF_TEST_COMM) == 0 ? pruned : NULL,
                                            &shared),
                             LF_OK);
            ck_assert_int_eq(lf_refit_apply(LF_TEST_COMM, m, shared, &p, where, ds, &o, NULL),
                             LF_OK);
            ck_assert(lf_model_is_shared(shared));
            ck_assert(lf_test_all(same_values(shared, want)));
            lf_model_release(LF_TEST_COMM, &shared);
        }
        lf_model_share_test_group(0);
        lf_h5io_dataset_close(&ds);
        lf_model_destroy(&want);
    }
    lf_model_destroy(&pruned);
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
    tcase_add_test(tc, test_update);
    tcase_add_test(tc, test_refit_in_window);
    tcase_add_test(tc, test_corrupt_model);
    tcase_add_test(tc, test_release_frees_window);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
