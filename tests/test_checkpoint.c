/* Checkpoints of a calibration pass: a pass stopped by signals again and again, at changing rank
 * counts and batch sizes, ends with the statistics of one uninterrupted pass, bit for bit; the
 * rows each checkpoint records are exactly those a separate model of the sharding predicts; a
 * pass that dies after periodic checkpoints resumes from the last one; checkpoints of another
 * pass, and damaged ones, are refused with errors that say why. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lf_test.h"
#include "linfold/checkpoint.h"
#include "linfold/h5io.h"
#include "linfold/interrupt.h"
#include "linfold/stats.h"

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void)
{
    lf_interrupt_raise_for_test(0);
    lf_error_clear();
    lf_test_tmpdir_remove(tmpdir);
}

static int my_rank(MPI_Comm comm)
{
    int r = 0;
    MPI_Comm_rank(comm, &r);
    return r;
}

static int comm_size(MPI_Comm comm)
{
    int s = 1;
    MPI_Comm_size(comm, &s);
    return s;
}

/* Every figure of a and b, bit for bit (exact sums, sums of squares and their rounding
 * included). */
static bool stats_equal(const lf_stats_t *a, const lf_stats_t *b)
{
    if (a->samples != b->samples || a->with_sums != b->with_sums ||
        a->with_squares != b->with_squares || a->n_layers != b->n_layers)
        return false;
    for (int i = 0; i < a->n_layers; i++) {
        const lf_layer_stats_t *x = &a->layers[i], *y = &b->layers[i];
        size_t n = (size_t)x->n_out;
        if (memcmp(x->positive, y->positive, n * 8) || memcmp(x->negative, y->negative, n * 8) ||
            memcmp(x->zmin, y->zmin, n * 4) || memcmp(x->zmax, y->zmax, n * 4))
            return false;
        if (a->with_sums &&
            (memcmp(x->out_sum, y->out_sum, n * 8) || memcmp(x->exact, y->exact, n * 128) ||
             memcmp(x->sq_sum, y->sq_sum, n * 8) || memcmp(x->exact_sq, y->exact_sq, n * 128)))
            return false;
    }
    return true;
}

/* One checkpointed pass over spec on comm. */
static lf_err_t run(MPI_Comm comm, const lf_model_t *m, const char *spec, int64_t batch, bool sums,
                    const lf_checkpoint_opts_t *ck, lf_stats_t **out)
{
    lf_dataset_t *ds = NULL;
    lf_batch_opts_t bo = {.batch_rows = batch};
    ck_assert_int_eq(lf_h5io_dataset_open(comm, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    lf_err_t err = lf_stats_collect_checkpointed(comm, m, ds, &bo, sums, ck, out);
    lf_h5io_dataset_close(&ds);
    return err;
}

/* The checkpoint at path, read as a pass of m over spec would read it. */
static lf_checkpoint_t *read_back(const lf_model_t *m, const char *spec, int64_t batch, bool sums,
                                  const char *identity, const char *path)
{
    lf_dataset_t *ds = NULL;
    lf_batch_opts_t bo = {.batch_rows = batch};
    lf_checkpoint_key_t key;
    lf_checkpoint_t *ck = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    ck_assert_int_eq(lf_checkpoint_key_make(LF_TEST_COMM, m, ds, &bo, sums, identity, &key), LF_OK);
    ck_assert_int_eq(lf_checkpoint_read(LF_TEST_COMM, path, m, &key, &ck), LF_OK);
    lf_h5io_dataset_close(&ds);
    return ck;
}

/* Whether the ranges of ck are exactly the rows flagged in done[0..n). */
static bool ranges_match(const lf_checkpoint_t *ck, const bool *done, int64_t n)
{
    bool *seen = calloc((size_t)n, sizeof *seen);
    bool ok = ck->stats->samples == ck->rows_done;
    int64_t count = 0;
    for (int64_t k = 0; ok && k < ck->n_done; k++)
        for (int64_t r = ck->done[k].lo; ok && r < ck->done[k].hi; r++) {
            ok = r >= 0 && r < n && !seen[r];
            if (ok)
                seen[r] = true;
            count++;
        }
    for (int64_t r = 0; ok && r < n; r++)
        ok = seen[r] == done[r];
    free(seen);
    return ok && count == ck->rows_done;
}

/* The model of one batch of a resumed pass on k ranks with R-row blocks and io-row batches: the
 * rows not done are dealt out by count (rank r takes the next base + (r < extra) of them), and
 * each rank's first batch covers the first run of consecutive rows of its share, up to the end
 * of its io / R blocks from the block of its first row. Marks them done. */
static void one_batch(bool *done, int64_t n, int k, int64_t R, int64_t io)
{
    int64_t *left = malloc((size_t)n * sizeof *left), m = 0;
    for (int64_t r = 0; r < n; r++)
        if (!done[r])
            left[m++] = r;
    int64_t at = 0;
    for (int q = 0; q < k; q++) {
        int64_t count = m / k + (q < m % k ? 1 : 0);
        if (count > 0) {
            int64_t first = left[at], stop = (first / R + io / R) * R;
            for (int64_t t = at; t < at + count && left[t] == first + (t - at) && left[t] < stop;
                 t++)
                done[left[t]] = true;
        }
        at += count;
    }
    free(left);
}

/* SIGUSR1 before every pass: each pass runs one batch, writes a checkpoint and stops, on a
 * sub-communicator of 1, 2, ... ranks in turn and with --batch 600 or 300 (both 256-row blocks;
 * 2 and 1 blocks per batch). The rows of every checkpoint are those of the model above; the
 * last pass finds nothing left to do; the statistics equal one uninterrupted pass's. */
START_TEST(test_signal_chain_any_rank_count)
{
    enum { N = 3001, D = 7 };
    const int64_t widths[] = {19, 11, 4};
    lf_model_t *m = lf_test_mlp(D, widths, 3, -0.6f, 0.6f, -0.2f, 0.2f, 301);
    char spec[600], path[300];
    lf_test_write_samples(tmpdir, "x", N, D, -1.0f, 1.0f, 302, spec, sizeof spec);
    snprintf(path, sizeof path, "%s/ck.h5", tmpdir);
    lf_stats_t *ref = lf_test_collect(m, spec, 600, true);
    int size = comm_size(LF_TEST_COMM), rank = my_rank(LF_TEST_COMM);
    bool *done = calloc(N, sizeof *done);
    lf_checkpoint_opts_t ck = {.path = path, .resume = true, .identity = "pipeline-sha"};
    int step = 0;
    lf_err_t agreed = LF_ERR_CHECKPOINT;
    for (; agreed == LF_ERR_CHECKPOINT && step < 60; step++) {
        int k = 1 + step % size;
        int64_t batch = step % 2 ? 300 : 600;
        MPI_Comm sub = MPI_COMM_NULL;
        MPI_Comm_split(LF_TEST_COMM, rank < k ? 0 : MPI_UNDEFINED, rank, &sub);
        lf_err_t err = LF_OK;
        bool ok = true;
        if (sub != MPI_COMM_NULL) {
            lf_stats_t *s = NULL;
            lf_interrupt_raise_after_for_test(SIGUSR1, 1);
            err = run(sub, m, spec, batch, true, &ck, &s);
            lf_interrupt_raise_for_test(0);
            ok = err == LF_OK ? s != NULL && stats_equal(s, ref)
                              : err == LF_ERR_CHECKPOINT && s == NULL;
            lf_stats_destroy(&s);
            MPI_Comm_free(&sub);
        }
        int e = (int)err;
        MPI_Bcast(&e, 1, MPI_INT, 0, LF_TEST_COMM);
        agreed = (lf_err_t)e;
        ck_assert_msg(lf_test_all(ok), "step %d at %d ranks: %s (%s)", step, k, lf_err_name(agreed),
                      lf_error_message());
        if (agreed == LF_ERR_CHECKPOINT) {
            ck_assert(lf_test_any_message("(SIGUSR1); rerun the same command to resume"));
            lf_error_clear();
            one_batch(done, N, k, 256, batch == 600 ? 512 : 256);
            lf_checkpoint_t *c = read_back(m, spec, 600, true, "pipeline-sha", path);
            ck_assert_msg(lf_test_all(ranges_match(c, done, N)), "step %d at %d ranks", step, k);
            ck_assert_int_eq(c->ranks, k);
            lf_checkpoint_destroy(&c);
        }
    }
    ck_assert_int_eq(agreed, LF_OK);
    ck_assert_int_ge(step, 3);
    for (int64_t r = 0; r < N; r++)
        ck_assert(done[r]);
    /* The complete checkpoint serves every rank at once, without a pass. */
    lf_stats_t *s = NULL;
    ck_assert_int_eq(run(LF_TEST_COMM, m, spec, 300, true, &ck, &s), LF_OK);
    ck_assert(lf_test_all(stats_equal(s, ref)));
    lf_stats_destroy(&s);
    ck_assert_int_eq(lf_checkpoint_remove(LF_TEST_COMM, path), LF_OK);
    ck_assert_int_eq(access(path, F_OK), -1);
    ck_assert_int_eq(lf_checkpoint_remove(LF_TEST_COMM, path), LF_OK); /* absent is fine */
    free(done);
    lf_stats_destroy(&ref);
    lf_model_destroy(&m);
}
END_TEST

/* SIGUSR1 on the last rank only, during a pass over the bundled digits data: every rank stops
 * with LF_ERR_CHECKPOINT after its first batch, the message says where, how far and why, and the
 * checkpoint holds exactly the first batch of every rank's shard. Written at P ranks, resumed on
 * one rank alone (and the reverse when the job has one rank: a sub-communicator is all of it). */
START_TEST(test_signal_writes_one_checkpoint)
{
    lf_model_t *m = NULL;
    const char *spec = LF_SOURCE_DIR "/tests/data/digits/data.h5:/train/x";
    char path[300];
    snprintf(path, sizeof path, "%s/digits.ckpt.h5", tmpdir);
    ck_assert_int_eq(
        lf_h5io_read_model(LF_TEST_COMM, LF_SOURCE_DIR "/tests/data/digits/model.h5", &m), LF_OK);
    lf_stats_t *ref = lf_test_collect(m, spec, 64, true), *s = NULL;
    int64_t n = ref->samples;
    int size = comm_size(LF_TEST_COMM), rank = my_rank(LF_TEST_COMM);
    lf_checkpoint_opts_t ck = {.path = path, .every_batches = 0, .resume = true};
    if (rank == size - 1)
        lf_interrupt_raise_after_for_test(SIGUSR1, 1);
    ck_assert_int_eq(run(LF_TEST_COMM, m, spec, 64, true, &ck, &s), LF_ERR_CHECKPOINT);
    ck_assert_ptr_null(s);
    lf_interrupt_raise_for_test(0);
    char text[400];
    snprintf(text, sizeof text, "checkpoint written to %s after ", path);
    ck_assert(lf_test_all(strstr(lf_error_message(), text) != NULL));
    ck_assert(lf_test_all(strstr(lf_error_message(), " of 1,078 rows (SIGUSR1); rerun the same "
                                                     "command to resume") != NULL));
    lf_error_clear();
    /* 64-row blocks and batches: rank r did rows [begin, 64 * (begin / 64 + 1)) of its shard. */
    bool *done = calloc((size_t)n, sizeof *done);
    for (int r = 0; r < size; r++) {
        int64_t begin = r * (n / size) + (r < n % size ? r : n % size);
        int64_t end = begin + n / size + (r < n % size ? 1 : 0);
        for (int64_t row = begin; row < end && row < (begin / 64 + 1) * 64; row++)
            done[row] = true;
    }
    lf_checkpoint_t *c = read_back(m, spec, 64, true, NULL, path);
    ck_assert(lf_test_all(ranges_match(c, done, n)));
    lf_checkpoint_destroy(&c);
    /* Resumed on rank 0 alone, with 2 threads. */
    MPI_Comm one = MPI_COMM_NULL;
    MPI_Comm_split(LF_TEST_COMM, rank == 0 ? 0 : MPI_UNDEFINED, 0, &one);
    bool ok = true;
    if (one != MPI_COMM_NULL) {
        lf_dataset_t *ds = NULL;
        lf_batch_opts_t bo = {.batch_rows = 64, .threads = 2};
        ok = lf_h5io_dataset_open(one, spec, LF_DATA_SAMPLES, &ds) == LF_OK &&
             lf_stats_collect_checkpointed(one, m, ds, &bo, true, &ck, &s) == LF_OK &&
             stats_equal(s, ref);
        lf_stats_destroy(&s);
        lf_h5io_dataset_close(&ds);
        MPI_Comm_free(&one);
    }
    ck_assert_msg(lf_test_all(ok), "resumed on one rank: %s", lf_error_message());
    /* Complete now: the file says so. */
    memset(done, 1, (size_t)n * sizeof *done);
    c = read_back(m, spec, 64, true, NULL, path);
    ck_assert(lf_test_all(ranges_match(c, done, n)));
    lf_checkpoint_destroy(&c);
    free(done);
    lf_stats_destroy(&ref);
    lf_model_destroy(&m);
}
END_TEST

/* Writes x (n, d) with one NaN at row bad (or none for bad < 0) to dir/name.h5:/x (rank 0). */
static void write_with_nan(const char *dir, const char *name, int64_t n, int64_t d, int64_t bad,
                           char *spec, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.h5", dir, name);
    if (my_rank(LF_TEST_COMM) == 0) {
        float *x = malloc((size_t)(n * d) * sizeof *x);
        lf_test_fill(x, n * d, -1.0f, 1.0f, 401);
        if (bad >= 0)
            x[bad * d + 1] = NAN;
        lf_test_write_data(path, "/x", x, n, d, NULL, NULL);
        free(x);
    }
    MPI_Barrier(LF_TEST_COMM);
    snprintf(spec, cap, "%s:/x", path);
}

/* A job that dies mid-pass (a NaN row stands in for the kill) after periodic checkpoints, every
 * 3 batches or every batch by time: the file holds the rows of the last one, which a shard model
 * predicts; after the row is repaired (same size, same modification time) the pass resumes and
 * ends with the statistics of an uninterrupted pass. */
static void periodic_case(int64_t every_batches, double every_seconds)
{
    enum { N = 2000, D = 6, BAD = 1990, R = 64 };
    const int64_t widths[] = {9, 3};
    lf_model_t *m = lf_test_mlp(D, widths, 2, -0.7f, 0.7f, -0.2f, 0.2f, 402);
    char spec[600], path[300], file[520];
    snprintf(path, sizeof path, "%s/p.ckpt.h5", tmpdir);
    snprintf(file, sizeof file, "%s/p.h5", tmpdir);
    write_with_nan(tmpdir, "p", N, D, -1, spec, sizeof spec);
    lf_stats_t *ref = lf_test_collect(m, spec, R, false), *s = NULL;
    write_with_nan(tmpdir, "p", N, D, BAD, spec, sizeof spec);
    struct stat before;
    ck_assert_int_eq(stat(file, &before), 0);
    lf_checkpoint_opts_t ck = {.path = path,
                               .every_batches = every_batches,
                               .every_seconds = every_seconds,
                               .resume = true};
    ck_assert_int_eq(run(LF_TEST_COMM, m, spec, R, false, &ck, &s), LF_ERR_VALUE);
    lf_error_clear();
    /* Every rank failed at the batch f where the owner of row BAD met it; the last checkpoint
     * came after batch c. */
    int size = comm_size(LF_TEST_COMM);
    int64_t begin[4], end[4], f = 0;
    for (int r = 0; r < size; r++) {
        begin[r] = r * (N / size) + (r < N % size ? r : N % size);
        end[r] = begin[r] + N / size + (r < N % size ? 1 : 0);
        if (BAD >= begin[r] && BAD < end[r])
            f = BAD / R - begin[r] / R + 1;
    }
    int64_t c = every_batches > 0 ? (f - 1) / every_batches * every_batches : f - 1;
    ck_assert_int_ge(c, 1);
    bool *done = calloc(N, sizeof *done);
    for (int r = 0; r < size; r++)
        for (int64_t row = begin[r]; row < end[r] && row < (begin[r] / R + c) * R; row++)
            done[row] = true;
    /* Repair the row; the file keeps its size and gets its old modification time back. */
    write_with_nan(tmpdir, "p", N, D, -1, spec, sizeof spec);
    bool same = true;
    if (my_rank(LF_TEST_COMM) == 0) {
        struct stat after;
        struct timespec times[2] = {{.tv_nsec = UTIME_OMIT}, before.st_mtim};
        same = stat(file, &after) == 0 && after.st_size == before.st_size &&
               utimensat(AT_FDCWD, file, times, 0) == 0;
    }
    ck_assert(lf_test_all(same));
    lf_checkpoint_t *k = read_back(m, spec, R, false, NULL, path);
    ck_assert(lf_test_all(ranges_match(k, done, N)));
    lf_checkpoint_destroy(&k);
    ck_assert_int_eq(run(LF_TEST_COMM, m, spec, R, false, &ck, &s), LF_OK);
    ck_assert(lf_test_all(stats_equal(s, ref)));
    lf_stats_destroy(&s);
    free(done);
    lf_stats_destroy(&ref);
    lf_model_destroy(&m);
}

START_TEST(test_periodic_by_batches) { periodic_case(3, 0.0); }
END_TEST

START_TEST(test_periodic_by_time) { periodic_case(0, 1e-9); }
END_TEST

/* Overwrites element index of a dataset of path (rank 0, serial HDF5). */
/* Rewrites dataset dset of the file at path with the same words as signed 64-bit integers. */
static void retype_exact_signed(const char *path, const char *dset)
{
    if (my_rank(LF_TEST_COMM) == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
        hid_t fs = H5Dget_space(d);
        hsize_t dims[2];
        ck_assert_int_eq(H5Sget_simple_extent_ndims(fs), 2);
        H5Sget_simple_extent_dims(fs, dims, NULL);
        int64_t *w = calloc(dims[0] * dims[1], sizeof *w);
        ck_assert_ptr_nonnull(w);
        ck_assert_int_ge(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, w), 0);
        H5Dclose(d);
        ck_assert_int_ge(H5Ldelete(f, dset, H5P_DEFAULT), 0);
        d = H5Dcreate2(f, dset, H5T_STD_I64LE, fs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert_int_ge(d, 0);
        ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, w), 0);
        free(w);
        H5Dclose(d);
        H5Sclose(fs);
        H5Fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
}

static void poke(const char *path, const char *dset, hsize_t index, hid_t mem_type,
                 const void *value)
{
    if (my_rank(LF_TEST_COMM) == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
        hid_t fs = H5Dget_space(d);
        hsize_t start[2] = {index, 0}, one[2] = {1, 1};
        int rank = H5Sget_simple_extent_ndims(fs);
        if (rank == 2) {
            hsize_t dims[2];
            H5Sget_simple_extent_dims(fs, dims, NULL);
            start[0] = index / dims[1];
            start[1] = index % dims[1];
        }
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, one, NULL);
        hid_t ms = H5Screate_simple(1, one, NULL);
        ck_assert_int_ge(H5Dwrite(d, mem_type, ms, fs, H5P_DEFAULT, value), 0);
        H5Sclose(ms);
        H5Sclose(fs);
        H5Dclose(d);
        H5Fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
}

static void copy_file(const char *from, const char *to, long keep)
{
    bool ok = true;
    if (my_rank(LF_TEST_COMM) == 0) {
        FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
        ok = a && b;
        int ch;
        for (long k = 0; ok && (keep < 0 || k < keep) && (ch = fgetc(a)) != EOF; k++)
            fputc(ch, b);
        if (a)
            fclose(a);
        if (b)
            fclose(b);
    }
    ck_assert(lf_test_all(ok));
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Expects a refusal with code and a message that contains every fragment (NULL-ended). */
static void refused(lf_err_t got, lf_err_t code, const lf_stats_t *s, const char *what,
                    const char *const *fragments)
{
    ck_assert_msg(got == code, "%s: %s, expected %s (%s)", what, lf_err_name(got),
                  lf_err_name(code), lf_error_message());
    ck_assert_ptr_null(s);
    for (int k = 0; fragments[k]; k++)
        ck_assert_msg(lf_test_any_message(fragments[k]), "%s: '%s' not in \"%s\"", what,
                      fragments[k], lf_error_message());
    lf_error_clear();
}

/* A checkpoint belongs to its model, data, block size, kind of statistics and identity; one of
 * another pass is refused naming the difference, and a damaged one is refused as such. */
START_TEST(test_refusals)
{
    enum { N = 500, D = 5 };
    const int64_t widths[] = {8, 2};
    lf_model_t *m = lf_test_mlp(D, widths, 2, -0.5f, 0.5f, -0.1f, 0.1f, 501), *other = NULL;
    char spec[600], spec_b[600], path[300], bad[320], stats[320];
    lf_test_write_samples(tmpdir, "a", N, D, -1.0f, 1.0f, 502, spec, sizeof spec);
    lf_test_write_samples(tmpdir, "b", N, D, -1.0f, 1.0f, 502, spec_b, sizeof spec_b);
    snprintf(path, sizeof path, "%s/ck.h5", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.h5", tmpdir);
    snprintf(stats, sizeof stats, "%s/stats.h5", tmpdir);
    lf_checkpoint_opts_t ck = {.path = path, .identity = "id-1", .resume = true};
    lf_stats_t *s = NULL;
    /* SIGINT and SIGHUP stop without a checkpoint. */
    lf_interrupt_raise_after_for_test(SIGINT, 1);
    ck_assert_int_eq(run(LF_TEST_COMM, m, spec, 64, false, &ck, &s), LF_ERR_INTERRUPTED);
    lf_interrupt_raise_for_test(0);
    ck_assert(lf_test_any_message("interrupted by SIGINT during"));
    lf_error_clear();
    ck_assert_int_eq(access(path, F_OK), -1);
    /* SIGTERM writes one. */
    lf_interrupt_raise_after_for_test(SIGTERM, 1);
    ck_assert_int_eq(run(LF_TEST_COMM, m, spec, 64, false, &ck, &s), LF_ERR_CHECKPOINT);
    lf_interrupt_raise_for_test(0);
    ck_assert(lf_test_any_message("of 500 rows (SIGTERM)"));
    lf_error_clear();
    copy_file(path, bad, -1);
    /* SIGHUP leaves it as it was. */
    lf_interrupt_raise_after_for_test(SIGHUP, 1);
    ck_assert_int_eq(run(LF_TEST_COMM, m, spec, 64, false, &ck, &s), LF_ERR_INTERRUPTED);
    lf_interrupt_raise_for_test(0);
    lf_error_clear();
    ck_assert(lf_test_files_equal(path, bad));

    ck_assert_int_eq(lf_model_copy(m, &other), LF_OK);
    other->layers[1].bias[0] += 0.5f;
    refused(run(LF_TEST_COMM, other, spec, 64, false, &ck, &s), LF_ERR_ARG, s, "model",
            (const char *[]){path, "another model (fingerprint", NULL});
    refused(run(LF_TEST_COMM, m, spec_b, 64, false, &ck, &s), LF_ERR_ARG, s, "data",
            (const char *[]){"a.h5 (this run reads ", "b.h5)", NULL});
    refused(run(LF_TEST_COMM, m, spec, 32, false, &ck, &s), LF_ERR_ARG, s, "blocks",
            (const char *[]){"compute blocks of 64 rows (--batch 64; this run: 32 rows", NULL});
    refused(run(LF_TEST_COMM, m, spec, 64, true, &ck, &s), LF_ERR_ARG, s, "sums",
            (const char *[]){"without output sums (this run: with)", NULL});
    lf_checkpoint_opts_t other_id = ck;
    other_id.identity = "id-2";
    refused(run(LF_TEST_COMM, m, spec, 64, false, &other_id, &s), LF_ERR_ARG, s, "identity",
            (const char *[]){"identity \"id-1\" (this run: \"id-2\")", NULL});
    other_id.identity = NULL;
    refused(run(LF_TEST_COMM, m, spec, 64, false, &other_id, &s), LF_ERR_ARG, s, "no identity",
            (const char *[]){"(this run: \"\")", NULL});
    lf_checkpoint_opts_t fresh = ck;
    fresh.resume = false;
    refused(run(LF_TEST_COMM, m, spec, 64, false, &fresh, &s), LF_ERR_USAGE, s, "no resume",
            (const char *[]){"exists", "remove it to start over", NULL});
    /* The same bytes written again: another modification time. */
    MPI_Barrier(LF_TEST_COMM);
    nanosleep(&(struct timespec){.tv_nsec = 20000000}, NULL);
    lf_test_write_samples(tmpdir, "a", N, D, -1.0f, 1.0f, 502, spec, sizeof spec);
    refused(run(LF_TEST_COMM, m, spec, 64, false, &ck, &s), LF_ERR_ARG, s, "touched data",
            (const char *[]){"the data file had", "modified", NULL});
    lf_checkpoint_opts_t at_bad = ck;
    at_bad.path = bad;
    /* Damaged files; the key of "bad" still names the data before it was rewritten, so the
     * content checks must come first: check them on a fresh checkpoint. */
    lf_interrupt_raise_after_for_test(SIGTERM, 1);
    ck_assert_int_eq(lf_checkpoint_remove(LF_TEST_COMM, path), LF_OK);
    ck_assert_int_eq(run(LF_TEST_COMM, m, spec, 64, false, &ck, &s), LF_ERR_CHECKPOINT);
    lf_interrupt_raise_for_test(0);
    lf_error_clear();
    long whole = file_size(path);
    ck_assert_int_gt(whole, 1000);
    copy_file(path, bad, whole / 2);
    refused(run(LF_TEST_COMM, m, spec, 64, false, &at_bad, &s), LF_ERR_FORMAT, s, "truncated",
            (const char *[]){bad, NULL});
    copy_file(path, bad, 100);
    refused(run(LF_TEST_COMM, m, spec, 64, false, &at_bad, &s), LF_ERR_FORMAT, s, "header only",
            (const char *[]){bad, NULL});
    const int64_t past_end = N + 1, too_many = N + 1;
    copy_file(path, bad, -1);
    poke(bad, "/done", 1, H5T_NATIVE_INT64, &past_end);
    refused(run(LF_TEST_COMM, m, spec, 64, false, &at_bad, &s), LF_ERR_FORMAT, s, "done",
            (const char *[]){bad, "/done[0] is [0, 501)", NULL});
    copy_file(path, bad, -1);
    poke(bad, "/layers/0/positive", 0, H5T_NATIVE_INT64, &too_many);
    refused(run(LF_TEST_COMM, m, spec, 64, false, &at_bad, &s), LF_ERR_FORMAT, s, "counts",
            (const char *[]){bad, "/layers/0 neuron 0", NULL});
    /* Exact sums stored as signed words: HDF5 would turn the negative ones into 0 silently. */
    lf_interrupt_raise_after_for_test(SIGTERM, 1);
    ck_assert_int_eq(lf_checkpoint_remove(LF_TEST_COMM, path), LF_OK);
    ck_assert_int_eq(run(LF_TEST_COMM, m, spec, 64, true, &ck, &s), LF_ERR_CHECKPOINT);
    lf_interrupt_raise_for_test(0);
    lf_error_clear();
    copy_file(path, bad, -1);
    retype_exact_signed(bad, "/layers/0/exact");
    refused(run(LF_TEST_COMM, m, spec, 64, true, &at_bad, &s), LF_ERR_FORMAT, s, "signed sums",
            (const char *[]){bad, "/layers/0/exact must hold unsigned 64-bit integers", NULL});
    ck_assert_int_eq(lf_checkpoint_remove(LF_TEST_COMM, path), LF_OK);
    /* A statistics file is not a checkpoint; neither is a text file. */
    lf_stats_t *st = lf_test_collect(m, spec, 64, false);
    ck_assert_int_eq(lf_stats_write(LF_TEST_COMM, stats, st), LF_OK);
    lf_stats_destroy(&st);
    at_bad.path = stats;
    refused(run(LF_TEST_COMM, m, spec, 64, false, &at_bad, &s), LF_ERR_FORMAT, s, "stats file",
            (const char *[]){"is \"linfold-stats\", expected \"linfold-checkpoint\"", NULL});
    if (my_rank(LF_TEST_COMM) == 0) {
        FILE *t = fopen(bad, "w");
        fputs("not a checkpoint\n", t);
        fclose(t);
    }
    MPI_Barrier(LF_TEST_COMM);
    at_bad.path = bad;
    refused(run(LF_TEST_COMM, m, spec, 64, false, &at_bad, &s), LF_ERR_FORMAT, s, "text",
            (const char *[]){"not an HDF5 file", NULL});
    /* Where a checkpoint cannot go: found before the pass. */
    char nowhere[340], data_file[340];
    snprintf(nowhere, sizeof nowhere, "%s/missing/ck.h5", tmpdir);
    snprintf(data_file, sizeof data_file, "%s/a.h5", tmpdir);
    lf_checkpoint_opts_t odd = ck;
    odd.path = nowhere;
    refused(run(LF_TEST_COMM, m, spec, 64, false, &odd, &s), LF_ERR_IO, s, "missing directory",
            (const char *[]){"does not exist", NULL});
    odd.path = data_file;
    refused(run(LF_TEST_COMM, m, spec, 64, false, &odd, &s), LF_ERR_USAGE, s, "data file",
            (const char *[]){"is the same file as data", NULL});
    /* Options. */
    char *long_id = calloc(LF_CHECKPOINT_IDENTITY_MAX + 1, 1);
    memset(long_id, 'a', LF_CHECKPOINT_IDENTITY_MAX);
    odd = ck;
    odd.identity = long_id;
    refused(run(LF_TEST_COMM, m, spec, 64, false, &odd, &s), LF_ERR_ARG, s, "long identity",
            (const char *[]){"identity has 1024 bytes", NULL});
    free(long_id);
    odd = ck;
    odd.every_seconds = -1.0;
    refused(run(LF_TEST_COMM, m, spec, 64, false, &odd, &s), LF_ERR_ARG, s, "negative time",
            (const char *[]){"expected both >= 0", NULL});
    lf_stats_destroy(&s);
    lf_model_destroy(&other);
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_signal_chain_any_rank_count);
    tcase_add_test(tc, test_signal_writes_one_checkpoint);
    tcase_add_test(tc, test_periodic_by_batches);
    tcase_add_test(tc, test_periodic_by_time);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
