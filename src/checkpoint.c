/* Checkpoint files of a calibration pass (checkpoint.h, docs/format.md): written by rank 0 from
 * the statistics reduced over the ranks, read in a reader process (sandbox_impl.h) like every
 * file linfold parses, and checked as strictly as a statistics file: the rows done must be
 * ascending, disjoint ranges within the data set that add up to the samples, and every count,
 * extreme and exact sum must be one a pass over that many rows can produce. A checkpoint is
 * matched against what the resumed pass is (checkpoint.h's key) before anything else of it is
 * used. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "linfold/checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "h5io_impl.h"
#include "sandbox_impl.h"
#include "stats_file_impl.h"
#include "linfold/alloc.h"
#include "linfold/blas.h"
#include "linfold/comm.h"

enum { FORMAT_VERSION = 1 };
static const char FORMAT_NAME[] = "linfold-checkpoint";

/* What one addition can put into a bin: a 24-bit significand shifted by at most 31 (stats.c). */
#define BIN_STEP_MAX ((lf_i128)1 << 55)

/* A checkpoint with sums keeps them exact. */
static lf__stats_sums_t sums_kind(bool with_sums)
{
    return with_sums ? LF__STATS_SUMS_EXACT : LF__STATS_SUMS_NONE;
}

const char *lf_checkpoint_count(int64_t n, char *buf, size_t cap)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", (long long)(n < 0 ? -n : n));
    size_t at = 0;
    if (n < 0 && at + 1 < cap)
        buf[at++] = '-';
    for (int k = 0; k < len && at + 1 < cap; k++) {
        if (k > 0 && (len - k) % 3 == 0 && at + 2 < cap)
            buf[at++] = ',';
        buf[at++] = digits[k];
    }
    buf[cap > 0 ? (at < cap ? at : cap - 1) : 0] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- what a checkpoint belongs to */

/* Rank 0: the canonical path, size and modification time of the data file, and the dataset. */
static lf_err_t locate_data(lf_dataset_t *data, lf_checkpoint_key_t *key)
{
    lf_err_t err = LF_OK;
    char file[LF_PATH_MAX], *real = NULL;
    struct stat st;
    LF_CALL(lf_h5io_split_spec(lf_h5io_dataset_spec(data), file, sizeof file, key->data_object,
                               sizeof key->data_object));
    real = realpath(file, NULL);
    LF_CHECK(real != NULL, LF_ERR_IO, "%s: cannot resolve the path (%s)", file, strerror(errno));
    LF_CHECK(strlen(real) < sizeof key->data_file, LF_ERR_IO, "%s: path too long", file);
    snprintf(key->data_file, sizeof key->data_file, "%s", real);
    LF_CHECK(stat(real, &st) == 0, LF_ERR_IO, "%s: %s", real, strerror(errno));
    key->file_size = (int64_t)st.st_size;
    key->file_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + (int64_t)st.st_mtim.tv_nsec;
cleanup:
    free(real);
    return err;
}

lf_err_t lf_checkpoint_key_make(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *data,
                                const lf_batch_opts_t *opts, bool with_sums, const char *identity,
                                lf_checkpoint_key_t *key)
{
    lf_err_t err = LF_OK;
    int rank = 0, bytes = 0;
    const char *id = identity ? identity : "";
    memset(key, 0, sizeof *key);
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CHECK(strlen(id) < sizeof key->identity, LF_ERR_ARG,
             "the checkpoint identity has %zu bytes, at most %d are allowed", strlen(id),
             LF_CHECKPOINT_IDENTITY_MAX - 1);
    key->fingerprint = lf_model_fingerprint(m);
    key->rows = lf_h5io_dataset_rows(data);
    key->cols = lf_h5io_dataset_cols(data);
    key->block_rows = lf_batch_block_rows(key->rows, opts->batch_rows);
    key->batch_rows = opts->batch_rows;
    key->with_sums = with_sums;
    snprintf(key->identity, sizeof key->identity, "%s", id);
    snprintf(key->blas_kernel, sizeof key->blas_kernel, "%s", lf_blas_kernel());
    /* The file as rank 0 sees it, for every rank: node-local paths may differ. */
    LF_CALL(lf_comm_agree(comm, rank == 0 ? locate_data(data, key) : LF_OK));
    LF_CALL(lf_int_cast((int64_t)sizeof *key, &bytes));
    LF_CALL_MPI(MPI_Bcast(key, bytes, MPI_BYTE, 0, comm));
cleanup:
    return err;
}

static void format_time(int64_t ns, char *buf, size_t cap)
{
    time_t sec = (time_t)(ns / 1000000000);
    struct tm tm;
    char day[40] = "?";
    if (gmtime_r(&sec, &tm))
        strftime(day, sizeof day, "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%09lld UTC", day, (long long)(ns % 1000000000));
}

/* Appends one difference to a message being built. */
static void add_difference(char *msg, size_t cap, int *count, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_difference(char *msg, size_t cap, int *count, const char *fmt, ...)
{
    size_t at = strlen(msg);
    if (at + 3 >= cap)
        return;
    if ((*count)++ > 0)
        at += (size_t)snprintf(msg + at, cap - at, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + at, cap - at, fmt, ap);
    va_end(ap);
}

/* Refuses a checkpoint (found) of another pass than want: names every difference. */
static lf_err_t compare_keys(const char *path, const lf_checkpoint_key_t *want,
                             const lf_checkpoint_key_t *found)
{
    lf_err_t err = LF_OK;
    char msg[900] = "", a[64], b[64];
    int count = 0;
    if (found->fingerprint != want->fingerprint)
        add_difference(msg, sizeof msg, &count,
                       "it was computed for another model (fingerprint %016" PRIx64
                       ", this model has %016" PRIx64 ")",
                       found->fingerprint, want->fingerprint);
    if (strcmp(found->data_file, want->data_file) != 0)
        add_difference(msg, sizeof msg, &count, "data file %s (this run reads %s)",
                       found->data_file, want->data_file);
    if (strcmp(found->data_object, want->data_object) != 0)
        add_difference(msg, sizeof msg, &count, "dataset %s (this run reads %s)",
                       found->data_object, want->data_object);
    if (found->rows != want->rows || found->cols != want->cols)
        add_difference(msg, sizeof msg, &count,
                       "data of shape (%lld, %lld) (this run: (%lld, %lld))",
                       (long long)found->rows, (long long)found->cols, (long long)want->rows,
                       (long long)want->cols);
    if (found->file_size != want->file_size || found->file_mtime_ns != want->file_mtime_ns) {
        format_time(found->file_mtime_ns, a, sizeof a);
        format_time(want->file_mtime_ns, b, sizeof b);
        add_difference(msg, sizeof msg, &count,
                       "the data file had %lld bytes, modified %s (now %lld bytes, modified %s)",
                       (long long)found->file_size, a, (long long)want->file_size, b);
    }
    if (found->block_rows != want->block_rows)
        add_difference(msg, sizeof msg, &count,
                       "compute blocks of %lld rows (--batch %lld; this run: %lld rows, --batch "
                       "%lld), which round differently",
                       (long long)found->block_rows, (long long)found->batch_rows,
                       (long long)want->block_rows, (long long)want->batch_rows);
    if (found->with_sums != want->with_sums)
        add_difference(msg, sizeof msg, &count, "%s output sums (this run: %s)",
                       found->with_sums ? "with" : "without", want->with_sums ? "with" : "without");
    if (strcmp(found->blas_kernel, want->blas_kernel) != 0)
        add_difference(msg, sizeof msg, &count,
                       "BLAS kernel %s (this run: %s; OPENBLAS_CORETYPE=%s resumes it)",
                       found->blas_kernel, want->blas_kernel, found->blas_kernel);
    if (strcmp(found->identity, want->identity) != 0)
        add_difference(msg, sizeof msg, &count, "identity \"%.80s\" (this run: \"%.80s\")",
                       found->identity, want->identity);
    LF_CHECK(count == 0, LF_ERR_ARG,
             "%s is a checkpoint of another run: %s; rerun with what it was written for, or remove "
             "it to start over",
             path, msg);
cleanup:
    return err;
}

/* ---------------------------------------------------------------- consistency */

/* The done ranges: ascending, disjoint, not adjacent, within [0, rows), adding up to samples. */
static lf_err_t check_done(const char *path, const lf_checkpoint_t *ck)
{
    lf_err_t err = LF_OK;
    int64_t prev = -1, total = 0;
    LF_CHECK(ck->n_done >= 1, LF_ERR_FORMAT, "%s: /done is empty", path);
    for (int64_t k = 0; k < ck->n_done; k++) {
        const lf_row_range_t *r = &ck->done[k];
        LF_CHECK(r->lo > prev && r->lo < r->hi && r->hi <= ck->key.rows, LF_ERR_FORMAT,
                 "%s: /done[%lld] is [%lld, %lld): expected ascending, disjoint, non-adjacent "
                 "ranges within the %lld rows",
                 path, (long long)k, (long long)r->lo, (long long)r->hi, (long long)ck->key.rows);
        prev = r->hi;
        total += r->hi - r->lo;
    }
    LF_CHECK(total == ck->stats->samples, LF_ERR_FORMAT,
             "%s: /done holds %lld rows, but the statistics have %lld samples", path,
             (long long)total, (long long)ck->stats->samples);
cleanup:
    return err;
}

/* Neuron j of layer i holds figures a pass over `samples` rows can produce. */
static lf_err_t check_neuron(const char *path, int i, const lf_layer_stats_t *ls, int64_t j,
                             int64_t samples, bool sums, lf_act_t act)
{
    lf_err_t err = LF_OK;
    char gpath[64];
    snprintf(gpath, sizeof gpath, "/layers/%d", i);
    LF_CALL(lf__stats_check_neuron(path, gpath, ls, j, samples, LF_ERR_FORMAT));
    if (!sums)
        goto cleanup;
    bool piecewise = lf_act_is_piecewise_linear(act);
    for (int b = 0; b < 8; b++) {
        lf_i128 v = ls->exact[j].bin[b], bound = (lf_i128)samples * BIN_STEP_MAX;
        LF_CHECK((piecewise || v == 0) && v <= bound && v >= -bound, LF_ERR_FORMAT,
                 "%s: /layers/%d/exact of neuron %lld, bin %d is out of range for %lld samples",
                 path, i, (long long)j, b, (long long)samples);
        /* Squares are never negative, so neither is any bin of their sum. */
        v = ls->exact_sq[j].bin[b];
        LF_CHECK((piecewise || v == 0) && v <= bound && v >= 0, LF_ERR_FORMAT,
                 "%s: /layers/%d/exact_square of neuron %lld, bin %d is out of range for %lld "
                 "samples",
                 path, i, (long long)j, b, (long long)samples);
    }
    int64_t pos = ls->positive[j];
    float hi = ls->zmax[j];
    double sum = lf_xsum_value(&ls->exact[j]);
    LF_CHECK(act != LF_ACT_RELU || (sum >= 0.0 && sum <= (double)pos * (double)(hi > 0 ? hi : 0)),
             LF_ERR_FORMAT,
             "%s: /layers/%d/exact of neuron %lld sums to %g, outside [0, %lld x %g]", path, i,
             (long long)j, sum, (long long)pos, (double)hi);
cleanup:
    return err;
}

static lf_err_t check_content(const char *path, const lf_model_t *m, const lf_checkpoint_t *ck)
{
    lf_err_t err = LF_OK;
    LF_CALL(check_done(path, ck));
    for (int i = 0; i < m->n_layers; i++)
        for (int64_t j = 0; j < m->layers[i].n_out; j++)
            LF_CALL(check_neuron(path, i, &ck->stats->layers[i], j, ck->stats->samples,
                                 ck->key.with_sums, m->layers[i].act));
cleanup:
    return err;
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    const lf_checkpoint_key_t *key;
    const lf_row_range_t *done;
    int64_t n_done, ranks;
    const lf_stats_t *stats;
} write_ctx_t;

/* Text as a 1-D uint8 dataset with its terminating NUL (HDF5 string attributes are read only up
 * to 63 bytes, and paths are longer). */
static lf_err_t write_text(hid_t loc, const char *name, const char *text)
{
    hsize_t n = (hsize_t)strlen(text) + 1;
    return lf__h5_write_dataset(loc, name, 1, &n, H5T_STD_U8LE, H5T_NATIVE_UCHAR, text);
}

static lf_err_t write_file(const char *tmp, const char *path, const void *arg)
{
    lf_err_t err = LF_OK;
    const write_ctx_t *c = arg;
    const lf_checkpoint_key_t *k = c->key;
    hid_t file = H5I_INVALID_HID;
    LF_CALL(lf__h5_memory_file_create(tmp, &file));
    char fp[32];
    snprintf(fp, sizeof fp, "%016" PRIx64, k->fingerprint);
    int64_t version = FORMAT_VERSION, sums = k->with_sums;
    struct {
        const char *name;
        const int64_t *value;
    } numbers[] = {
        {"format_version", &version},
        {"samples", &c->stats->samples},
        {"rows", &k->rows},
        {"cols", &k->cols},
        {"data_size", &k->file_size},
        {"data_mtime_ns", &k->file_mtime_ns},
        {"block_rows", &k->block_rows},
        {"batch_rows", &k->batch_rows},
        {"with_sums", &sums},
        {"ranks", &c->ranks},
    };
    LF_CALL(lf__h5_write_string_attr(file, "format", FORMAT_NAME));
    for (size_t q = 0; q < sizeof numbers / sizeof *numbers; q++)
        LF_CALL(lf__h5_write_scalar_attr(file, numbers[q].name, H5T_STD_I64LE, H5T_NATIVE_INT64,
                                         numbers[q].value));
    LF_CALL(lf__h5_write_string_attr(file, "model_fingerprint", fp));
    LF_CALL(lf__h5_write_string_attr(file, "blas_kernel", k->blas_kernel));
    LF_CALL(write_text(file, "data_file", k->data_file));
    LF_CALL(write_text(file, "data_object", k->data_object));
    LF_CALL(write_text(file, "identity", k->identity));
    hsize_t dims[2] = {(hsize_t)c->n_done, 2};
    LF_CALL(lf__h5_write_dataset(file, "done", 2, dims, H5T_STD_I64LE, H5T_NATIVE_INT64, c->done));
    LF_CALL(lf__stats_write_layers(file, c->stats, sums_kind(c->stats->with_sums)));
    LF_CALL(lf__h5_memory_file_save(&file, tmp, path));
cleanup:
    lf__h5_close(&file);
    return err;
}

static int by_start(const void *a, const void *b)
{
    const lf_row_range_t *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Sorts r and merges overlapping and adjacent ranges in place; returns the new count. */
static int64_t merge_ranges(lf_row_range_t *r, int64_t n)
{
    if (n == 0)
        return 0;
    qsort(r, (size_t)n, sizeof *r, by_start);
    int64_t out = 0;
    for (int64_t k = 1; k < n; k++) {
        if (r[k].lo <= r[out].hi)
            r[out].hi = r[k].hi > r[out].hi ? r[k].hi : r[out].hi;
        else
            r[++out] = r[k];
    }
    return out + 1;
}

lf_err_t lf_checkpoint_write(MPI_Comm comm, const char *path, const lf_checkpoint_key_t *key,
                             const lf_row_range_t *base, int64_t n_base, const lf_row_range_t *mine,
                             int64_t n_mine, const lf_stats_t *s, int64_t *rows_done)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0, size = 1, count = 0;
    int64_t *counts = NULL, total = 0, done_rows = 0;
    int *icounts = NULL, *displs = NULL;
    lf_row_range_t *all = NULL;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL_MPI(MPI_Comm_size(comm, &size));
    /* Every rank's ranges to rank 0, after the base. */
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)size, sizeof *counts, (void **)&counts)));
    LF_CALL_MPI(MPI_Gather(&n_mine, 1, MPI_INT64_T, counts, 1, MPI_INT64_T, 0, comm));
    if (rank == 0) {
        total = n_base;
        for (int r = 0; r < size; r++)
            total += counts[r];
        local = lf_calloc((size_t)(total > 0 ? total : 1), sizeof *all, (void **)&all);
        if (local == LF_OK)
            local = lf_calloc((size_t)size, sizeof *icounts, (void **)&icounts);
        if (local == LF_OK)
            local = lf_calloc((size_t)size, sizeof *displs, (void **)&displs);
        int64_t at = 2 * n_base;
        for (int r = 0; r < size && local == LF_OK; r++) {
            local = lf_int_cast(2 * counts[r], &icounts[r]);
            if (local == LF_OK)
                local = lf_int_cast(at, &displs[r]);
            at += 2 * counts[r];
        }
    }
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL(lf_int_cast(2 * n_mine, &count));
    if (rank == 0 && n_base > 0)
        memcpy(all, base, (size_t)n_base * sizeof *all);
    const lf_row_range_t none = {0, 0};
    LF_CALL_MPI(MPI_Gatherv(n_mine > 0 ? mine : &none, count, MPI_INT64_T, all, icounts, displs,
                            MPI_INT64_T, 0, comm));
    if (rank == 0) {
        total = merge_ranges(all, total);
        for (int64_t k = 0; k < total; k++)
            done_rows += all[k].hi - all[k].lo;
        if (done_rows != s->samples || total < 1) {
            local = LF_ERR_INTERNAL;
            lf_error_record(__FILE__, __LINE__, __func__, local,
                            "%s: the checkpoint covers %lld rows but its statistics %lld samples",
                            path, (long long)done_rows, (long long)s->samples);
        }
    }
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL_MPI(MPI_Bcast(&done_rows, 1, MPI_INT64_T, 0, comm));
    write_ctx_t c = {.key = key, .done = all, .n_done = total, .ranks = size, .stats = s};
    LF_CALL(lf_atomic_write_rank0(comm, path, write_file, &c));
    if (rows_done)
        *rows_done = done_rows;
cleanup:
    lf_free(all);
    lf_free(displs);
    lf_free(icounts);
    lf_free(counts);
    return err;
}

/* ---------------------------------------------------------------- reading */

static const lf__h5_want_t COUNTS = {H5T_INTEGER, 1, "an integer dataset"};
static const lf__h5_want_t MATRIX = {H5T_INTEGER, 2, "a 2-D integer dataset"};

/* A text dataset (write_text) into buf of cap bytes. */
static lf_err_t read_text(const lf__h5_file_t *f, const char *path, char *buf, size_t cap)
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID;
    hsize_t dims[2];
    LF_CALL(lf__h5_open_dataset(f, path, &COUNTS, &dset, dims));
    LF_CHECK(dims[0] >= 1 && dims[0] <= cap, LF_ERR_FORMAT,
             "%s: %s holds %llu bytes, expected 1 to %zu", f->path, path,
             (unsigned long long)dims[0], cap);
    LF_CALL_H5(H5Dread(dset, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf),
               "%s: cannot read %s", f->path, path);
    LF_CHECK(strnlen(buf, (size_t)dims[0]) == (size_t)dims[0] - 1, LF_ERR_FORMAT,
             "%s: %s is not one NUL-terminated text", f->path, path);
cleanup:
    lf__h5_close(&dset);
    return err;
}

static lf_err_t read_header(const lf__h5_file_t *f, lf_checkpoint_t *ck)
{
    lf_err_t err = LF_OK;
    lf_checkpoint_key_t *k = &ck->key;
    lf__str_attr_t items[3] = {{.object = "/", .name = "format"},
                               {.object = "/", .name = "model_fingerprint"},
                               {.object = "/", .name = "blas_kernel"}};
    const char *format = NULL, *fp = NULL, *kernel = NULL;
    for (int q = 0; q < 3; q++)
        lf__h5_read_string(f->id, &items[q]);
    LF_CALL(lf__h5_string_value(&items[0], f->path, &format));
    LF_CHECK(strcmp(format, FORMAT_NAME) == 0, LF_ERR_FORMAT,
             "%s: attribute 'format' is \"%s\", expected \"%s\"", f->path, format, FORMAT_NAME);
    int64_t version = 0, sums = 0;
    LF_CALL(lf__h5_read_number_attr(f->id, "format_version", f->path, H5T_INTEGER, H5T_NATIVE_INT64,
                                    &version));
    LF_CHECK(version == FORMAT_VERSION, LF_ERR_FORMAT,
             "%s: format_version is %lld, this linfold reads %d", f->path, (long long)version,
             FORMAT_VERSION);
    struct {
        const char *name;
        int64_t *value;
    } numbers[] = {
        {"samples", &ck->rows_done},
        {"rows", &k->rows},
        {"cols", &k->cols},
        {"data_size", &k->file_size},
        {"data_mtime_ns", &k->file_mtime_ns},
        {"block_rows", &k->block_rows},
        {"batch_rows", &k->batch_rows},
        {"with_sums", &sums},
        {"ranks", &ck->ranks},
    };
    for (size_t q = 0; q < sizeof numbers / sizeof *numbers; q++)
        LF_CALL(lf__h5_read_number_attr(f->id, numbers[q].name, f->path, H5T_INTEGER,
                                        H5T_NATIVE_INT64, numbers[q].value));
    LF_CHECK(sums == 0 || sums == 1, LF_ERR_FORMAT, "%s: with_sums is %lld, expected 0 or 1",
             f->path, (long long)sums);
    k->with_sums = sums == 1;
    LF_CALL(lf__h5_string_value(&items[1], f->path, &fp));
    char *end = NULL;
    errno = 0;
    k->fingerprint = strtoull(fp, &end, 16);
    LF_CHECK(strlen(fp) == 16 && *end == '\0' && errno == 0, LF_ERR_FORMAT,
             "%s: attribute 'model_fingerprint' is \"%s\", expected 16 hex digits", f->path, fp);
    LF_CALL(lf__h5_string_value(&items[2], f->path, &kernel));
    snprintf(k->blas_kernel, sizeof k->blas_kernel, "%s", kernel);
    LF_CALL(read_text(f, "/data_file", k->data_file, sizeof k->data_file));
    LF_CALL(read_text(f, "/data_object", k->data_object, sizeof k->data_object));
    LF_CALL(read_text(f, "/identity", k->identity, sizeof k->identity));
cleanup:
    return err;
}

static lf_err_t read_layers(const lf__h5_file_t *f, const lf_model_t *m, lf_stats_t *s)
{
    lf_err_t err = LF_OK;
    hid_t layers = H5I_INVALID_HID;
    char where[LF_PATH_MAX + 16];
    int64_t count = 0;
    LF_CALL(lf__h5_open_object(f, "/layers", H5O_TYPE_GROUP, &layers));
    snprintf(where, sizeof where, "%s: /layers", f->path);
    LF_CALL(lf__h5_read_number_attr(layers, "count", where, H5T_INTEGER, H5T_NATIVE_INT64, &count));
    LF_CHECK(count == m->n_layers, LF_ERR_FORMAT, "%s: /layers has count %lld, the model has %d",
             f->path, (long long)count, m->n_layers);
    for (int i = 0; i < m->n_layers; i++) {
        LF_CALL(lf__stats_read_layer(f, i, &s->layers[i]));
        LF_CALL(lf__stats_read_sums(f, i, sums_kind(s->with_sums), &s->layers[i]));
        LF_CALL(lf__stats_read_squares(f, i, sums_kind(s->with_sums), &s->layers[i]));
    }
cleanup:
    lf__h5_close(&layers);
    return err;
}

/* Reads the whole checkpoint in this process, refusing one of another pass (want) before
 * reading its body. */
static lf_err_t read_here(const char *path, const lf_model_t *m, const lf_checkpoint_key_t *want,
                          lf_checkpoint_t *ck)
{
    lf_err_t err = LF_OK;
    lf__h5_file_t f = LF__H5_FILE_NONE;
    hid_t done = H5I_INVALID_HID;
    hsize_t dims[2];
    LF_CALL(lf__h5_open_file_serial(path, &f));
    LF_CALL(read_header(&f, ck));
    LF_CALL(compare_keys(path, want, &ck->key));
    LF_CALL(lf__h5_open_dataset(&f, "/done", &MATRIX, &done, dims));
    LF_CHECK(dims[0] >= 1 && dims[1] == 2, LF_ERR_FORMAT,
             "%s: /done has shape (%llu, %llu), expected (k >= 1, 2)", path,
             (unsigned long long)dims[0], (unsigned long long)dims[1]);
    ck->n_done = (int64_t)dims[0];
    LF_CALL(lf_malloc((size_t)ck->n_done, sizeof *ck->done, (void **)&ck->done));
    LF_CALL_H5(H5Dread(done, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ck->done),
               "%s: cannot read /done", path);
    LF_CALL(lf_stats_create(m, &ck->stats));
    ck->stats->samples = ck->rows_done;
    ck->stats->with_sums = ck->key.with_sums;
    ck->stats->with_squares = ck->key.with_sums;
    LF_CALL(read_layers(&f, m, ck->stats));
    LF_CALL(check_content(path, m, ck));
cleanup:
    lf__h5_close(&done);
    lf__h5_close(&f.id);
    return err;
}

/* ---------------------------------------------------------------- through a reader process
 *
 * The wire: the key as it is in memory, int64 rows_done, ranks and n_done, the done ranges, then
 * per layer positive, negative (int64), zmin, zmax (float) and, with sums, the exact sums and the
 * exact sums of squares (8 bins of 16 bytes per neuron each). The layer sizes come from the model
 * the parent holds, and the number of ranges is bounded by the rows and by what the file can
 * hold. */

typedef struct {
    const char *path;
    const lf_model_t *model;
    const lf_checkpoint_key_t *want;
} read_job_t;

void lf_checkpoint_destroy(lf_checkpoint_t **ck)
{
    if (!ck || !*ck)
        return;
    lf_stats_destroy(&(*ck)->stats);
    lf_free((*ck)->done);
    lf_free(*ck);
    *ck = NULL;
}

static lf_err_t reader(void *arg)
{
    const read_job_t *job = arg;
    lf_checkpoint_t ck = {0};
    lf_err_t err = read_here(job->path, job->model, job->want, &ck);
    /* HDF5 failing on this file, or an object of the wrong shape, means that it is cut short
     * or damaged: the file's fault. */
    if (err == LF_ERR_HDF5 || err == LF_ERR_SHAPE) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", lf_error_message());
        lf_error_clear();
        lf_error_record(__FILE__, __LINE__, __func__, LF_ERR_FORMAT, "%s%s", msg,
                        err == LF_ERR_HDF5 ? "; the checkpoint is truncated or corrupt" : "");
        err = LF_ERR_FORMAT;
    }
    lf__sandbox_send_status(err);
    bool ok = err == LF_OK && lf__sandbox_write(&ck.key, sizeof ck.key) &&
              lf__sandbox_write(&ck.rows_done, sizeof ck.rows_done) &&
              lf__sandbox_write(&ck.ranks, sizeof ck.ranks) &&
              lf__sandbox_write(&ck.n_done, sizeof ck.n_done) &&
              lf__sandbox_write(ck.done, (size_t)ck.n_done * sizeof *ck.done) &&
              lf__stats_send_layers(ck.stats, sums_kind(ck.stats->with_sums));
    lf_stats_destroy(&ck.stats);
    lf_free(ck.done);
    return err != LF_OK ? err : (ok ? LF_OK : LF_ERR_IO);
}

static lf_err_t receive(lf__sandbox_t *sb, const char *path, int64_t file_size, const lf_model_t *m,
                        lf_checkpoint_t *ck)
{
    lf_err_t err = LF_OK;
    lf_checkpoint_key_t *k = &ck->key;
    LF_CALL(lf__sandbox_read(sb, k, sizeof *k));
    k->data_file[sizeof k->data_file - 1] = '\0';
    k->data_object[sizeof k->data_object - 1] = '\0';
    k->blas_kernel[sizeof k->blas_kernel - 1] = '\0';
    k->identity[sizeof k->identity - 1] = '\0';
    LF_CALL(lf__sandbox_read(sb, &ck->rows_done, sizeof ck->rows_done));
    LF_CALL(lf__sandbox_read(sb, &ck->ranks, sizeof ck->ranks));
    LF_CALL(lf__sandbox_read(sb, &ck->n_done, sizeof ck->n_done));
    /* Ranges are disjoint rows, and each takes 16 bytes of the file (deflate at most 1,032x). */
    LF_CHECK(ck->n_done >= 1 && ck->n_done <= k->rows &&
                 ck->n_done <= (file_size + 1) * 1032 / (int64_t)sizeof *ck->done,
             LF_ERR_FORMAT, "%s: the reader process sent %lld row ranges for %lld rows", path,
             (long long)ck->n_done, (long long)k->rows);
    LF_CALL(lf_malloc((size_t)ck->n_done, sizeof *ck->done, (void **)&ck->done));
    LF_CALL(lf__sandbox_read(sb, ck->done, (size_t)ck->n_done * sizeof *ck->done));
    LF_CALL(lf_stats_create(m, &ck->stats));
    ck->stats->samples = ck->rows_done;
    ck->stats->with_sums = k->with_sums;
    ck->stats->with_squares = k->with_sums;
    LF_CALL(lf__stats_receive_layers(sb, ck->stats, sums_kind(k->with_sums)));
cleanup:
    return err;
}

/* Rank 0: the checkpoint through a reader process, checked again here. */
static lf_err_t read_through_reader(const char *path, const lf_model_t *m,
                                    const lf_checkpoint_key_t *want, lf_checkpoint_t *ck)
{
    lf_err_t err = LF_OK;
    lf__sandbox_t *sb = NULL;
    int64_t size = 0;
    LF_CALL(lf__h5_check_readable(path, &size));
    lf__sandbox_limits_t limits = lf__sandbox_limits_for(size);
    read_job_t job = {.path = path, .model = m, .want = want};
    LF_CALL(lf__sandbox_start(path, &limits, reader, &job, &sb));
    LF_CALL(lf__sandbox_receive_status(sb));
    LF_CALL(receive(sb, path, size, m, ck));
    LF_CALL(lf__sandbox_finish(&sb));
    LF_CALL(compare_keys(path, want, &ck->key));
    LF_CALL(check_content(path, m, ck));
cleanup:
    lf__sandbox_finish(&sb);
    return err;
}

/* Gives every rank rank 0's checkpoint (the others hold an empty one). */
static lf_err_t bcast_checkpoint(MPI_Comm comm, int rank, const lf_model_t *m, lf_checkpoint_t *ck)
{
    lf_err_t err = LF_OK;
    int bytes = 0, n = 0;
    int64_t head[3] = {ck->rows_done, ck->ranks, ck->n_done};
    LF_CALL(lf_int_cast((int64_t)sizeof ck->key, &bytes));
    LF_CALL_MPI(MPI_Bcast(&ck->key, bytes, MPI_BYTE, 0, comm));
    LF_CALL_MPI(MPI_Bcast(head, 3, MPI_INT64_T, 0, comm));
    ck->rows_done = head[0];
    ck->ranks = head[1];
    ck->n_done = head[2];
    if (rank != 0) {
        LF_CALL(lf_malloc((size_t)ck->n_done, sizeof *ck->done, (void **)&ck->done));
        LF_CALL(lf_stats_create(m, &ck->stats));
        ck->stats->samples = ck->rows_done;
        ck->stats->with_sums = ck->key.with_sums;
        ck->stats->with_squares = ck->key.with_sums;
    }
    LF_CALL(lf_int_cast(2 * ck->n_done, &n));
    LF_CALL_MPI(MPI_Bcast(ck->done, n, MPI_INT64_T, 0, comm));
    for (int i = 0; i < m->n_layers; i++) {
        lf_layer_stats_t *ls = &ck->stats->layers[i];
        LF_CALL(lf_int_cast(ls->n_out, &n));
        LF_CALL_MPI(MPI_Bcast(ls->positive, n, MPI_INT64_T, 0, comm));
        LF_CALL_MPI(MPI_Bcast(ls->negative, n, MPI_INT64_T, 0, comm));
        LF_CALL_MPI(MPI_Bcast(ls->zmin, n, MPI_FLOAT, 0, comm));
        LF_CALL_MPI(MPI_Bcast(ls->zmax, n, MPI_FLOAT, 0, comm));
        if (!ck->key.with_sums)
            continue;
        LF_CALL(lf_int_cast(ls->n_out * (int64_t)sizeof *ls->exact, &bytes));
        LF_CALL_MPI(MPI_Bcast(ls->exact, bytes, MPI_BYTE, 0, comm));
        LF_CALL_MPI(MPI_Bcast(ls->exact_sq, bytes, MPI_BYTE, 0, comm));
    }
cleanup:
    return err;
}

lf_err_t lf_checkpoint_read(MPI_Comm comm, const char *path, const lf_model_t *m,
                            const lf_checkpoint_key_t *key, lf_checkpoint_t **out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    lf_checkpoint_t *ck = NULL;
    int rank = 0;
    *out = NULL;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    local = lf_calloc(1, sizeof *ck, (void **)&ck);
    if (local == LF_OK && rank == 0)
        local = read_through_reader(path, m, key, ck);
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL(bcast_checkpoint(comm, rank, m, ck));
    *out = ck;
    ck = NULL;
cleanup:
    lf_checkpoint_destroy(&ck);
    return err;
}

/* ---------------------------------------------------------------- the file itself */

lf_err_t lf_checkpoint_exists(MPI_Comm comm, const char *path, bool *exists)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0, found = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    if (rank == 0) {
        struct stat st;
        if (stat(path, &st) == 0) {
            found = 1;
            if (!S_ISREG(st.st_mode)) {
                local = LF_ERR_IO;
                lf_error_record(__FILE__, __LINE__, __func__, local,
                                "checkpoint %s is not a regular file", path);
            }
        } else if (errno != ENOENT) {
            local = LF_ERR_IO;
            lf_error_record(__FILE__, __LINE__, __func__, local, "checkpoint %s: %s", path,
                            strerror(errno));
        }
    }
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL_MPI(MPI_Bcast(&found, 1, MPI_INT, 0, comm));
    *exists = found != 0;
cleanup:
    return err;
}

lf_err_t lf_checkpoint_remove(MPI_Comm comm, const char *path)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    if (rank == 0 && path && unlink(path) != 0 && errno != ENOENT) {
        local = LF_ERR_IO;
        lf_error_record(__FILE__, __LINE__, __func__, local, "cannot remove checkpoint %s (%s)",
                        path, strerror(errno));
    }
    LF_CALL(lf_comm_agree(comm, local));
cleanup:
    return err;
}
