/* The statistics file (docs/format.md): written by rank 0, read and validated collectively.
 *
 * Reading runs in a reader process (sandbox_impl.h), like a model's, and rank 0 broadcasts
 * the result. A statistics file is an input like a model and is checked as strictly: every count, extreme and
 * sum must be one that a calibration pass could have produced (counts within the sample count,
 * finite extremes consistent with the counts, finite output sums, non-negative for relu, finite
 * non-negative sums of squares), so a corrupted or hand-edited file is refused instead of
 * becoming NaN biases in a model. The sums of squares (output_square_sum) came after format
 * version 1 was fixed; they are optional in version 1: a file without them reads as it always
 * did, with with_squares unset, and only pruning by energy refuses it (plan.c).
 * The datasets of each layer are written, read, sent and checked by the functions at the end of
 * this file, which the checkpoint file uses too (stats_file_impl.h). */
#include <math.h>
#include <string.h>

#include "h5io_impl.h"
#include "sandbox_impl.h"
#include "stats_file_impl.h"
#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"
#include "linfold/stats.h"

/* ---------------------------------------------------------------- writing */

static lf_err_t write_stats_file(const char *tmp, const char *path, const void *ctx)
{
    lf_err_t err = LF_OK;
    const lf_stats_t *s = ctx;
    hid_t file = H5I_INVALID_HID;
    LF_CALL(lf__h5_memory_file_create(tmp, &file));
    int64_t version = 1;
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)s->fingerprint);
    LF_CALL(lf__h5_write_string_attr(file, "format", "linfold-stats"));
    LF_CALL(lf__h5_write_scalar_attr(file, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                     &version));
    LF_CALL(
        lf__h5_write_scalar_attr(file, "samples", H5T_STD_I64LE, H5T_NATIVE_INT64, &s->samples));
    LF_CALL(lf__h5_write_string_attr(file, "model_fingerprint", fp));
    LF_CALL(lf__stats_write_layers(file, s,
                                   s->with_sums ? LF__STATS_SUMS_ROUNDED : LF__STATS_SUMS_NONE));
    LF_CALL(lf__h5_memory_file_save(&file, tmp, path));
cleanup:
    lf__h5_close(&file);
    return err;
}

lf_err_t lf_stats_write(MPI_Comm comm, const char *path, const lf_stats_t *s)
{
    return lf_atomic_write_rank0(comm, path, write_stats_file, s);
}

/* ---------------------------------------------------------------- reading */

/* Checks that neuron j's figures are ones a calibration pass over `samples` rows produces. */
static lf_err_t check_neuron(const char *file, const char *gpath, const lf_layer_stats_t *ls,
                             int64_t j, int64_t samples, bool sums, lf_act_t act)
{
    lf_err_t err = LF_OK;
    LF_CALL(lf__stats_check_neuron(file, gpath, ls, j, samples, LF_ERR_VALUE));
    if (!sums)
        goto cleanup;
    int64_t pos = ls->positive[j];
    float hi = ls->zmax[j];
    double sum = ls->out_sum[j], sq = ls->sq_sum[j];
    LF_CHECK(isfinite(sum), LF_ERR_VALUE, "%s: %s/output_sum[%lld] is %s", file, gpath,
             (long long)j, isnan(sum) ? "NaN" : "infinite");
    /* Without sums of squares sq_sum stays 0 and passes. */
    LF_CHECK(isfinite(sq) && sq >= 0.0, LF_ERR_VALUE,
             "%s: %s/output_square_sum[%lld] = %g, expected finite and >= 0", file, gpath,
             (long long)j, sq);
    /* relu outputs lie in [0, zmax] and only positive rows contribute; the bound is exact (the
     * sum was rounded once, and rounding is monotone). */
    LF_CHECK(act != LF_ACT_RELU || (sum >= 0.0 && sum <= (double)pos * (double)(hi > 0 ? hi : 0)),
             LF_ERR_VALUE,
             "%s: %s/output_sum[%lld] = %g is outside [0, %lld x %g] for a relu neuron", file,
             gpath, (long long)j, sum, (long long)pos, (double)hi);
cleanup:
    return err;
}

static lf_err_t read_layer(const lf__h5_file_t *f, int i, const lf_model_t *m, lf_stats_t *s,
                           bool *has_sums, bool *has_squares)
{
    lf_err_t err = LF_OK;
    lf_layer_stats_t *ls = &s->layers[i];
    char gpath[64], path[96];
    snprintf(gpath, sizeof gpath, "/layers/%d", i);
    LF_CALL(lf__stats_read_layer(f, i, ls));
    snprintf(path, sizeof path, "%s/output_sum", gpath);
    lf_err_t walk = LF_OK;
    int present = lf__h5_exists(f, path, &walk);
    LF_CALL(walk);
    LF_CHECK(i == 0 || (present == 1) == *has_sums, LF_ERR_FORMAT,
             "%s: %s/output_sum is present in some layers only", f->path, gpath);
    *has_sums = present == 1;
    if (*has_sums)
        LF_CALL(lf__stats_read_sums(f, i, LF__STATS_SUMS_ROUNDED, ls));
    snprintf(path, sizeof path, "%s/output_square_sum", gpath);
    present = lf__h5_exists(f, path, &walk);
    LF_CALL(walk);
    LF_CHECK(i == 0 || (present == 1) == *has_squares, LF_ERR_FORMAT,
             "%s: %s/output_square_sum is present in some layers only", f->path, gpath);
    LF_CHECK(present != 1 || *has_sums, LF_ERR_FORMAT,
             "%s: %s/output_square_sum is present without output_sum", f->path, gpath);
    *has_squares = present == 1;
    if (*has_squares)
        LF_CALL(lf__stats_read_squares(f, i, LF__STATS_SUMS_ROUNDED, ls));
    for (int64_t j = 0; j < ls->n_out; j++)
        LF_CALL(check_neuron(f->path, gpath, ls, j, s->samples, *has_sums, m->layers[i].act));
cleanup:
    return err;
}

/* The root: format, fingerprint, version, samples, count. */
static lf_err_t read_header(const lf__h5_file_t *f, const lf_model_t *m, const char *model_name,
                            int64_t *samples)
{
    lf_err_t err = LF_OK;
    hid_t layers = H5I_INVALID_HID;
    lf__str_attr_t items[2] = {{.object = "/", .name = "format"},
                               {.object = "/", .name = "model_fingerprint"}};
    const char *format = NULL, *fingerprint = NULL;
    char where[LF_PATH_MAX + 16], expected[32];
    lf__h5_read_string(f->id, &items[0]);
    lf__h5_read_string(f->id, &items[1]);
    LF_CALL(lf__h5_string_value(&items[0], f->path, &format));
    LF_CHECK(strcmp(format, "linfold-stats") == 0, LF_ERR_FORMAT,
             "%s: attribute 'format' is \"%s\", expected \"linfold-stats\"", f->path, format);
    int64_t version = 0, count = 0;
    LF_CALL(lf__h5_read_number_attr(f->id, "format_version", f->path, H5T_INTEGER, H5T_NATIVE_INT64,
                                    &version));
    LF_CHECK(version == 1, LF_ERR_FORMAT, "%s: format_version is %lld, this linfold reads 1",
             f->path, (long long)version);
    LF_CALL(
        lf__h5_read_number_attr(f->id, "samples", f->path, H5T_INTEGER, H5T_NATIVE_INT64, samples));
    LF_CHECK(*samples >= 1, LF_ERR_FORMAT, "%s: samples = %lld, expected >= 1", f->path,
             (long long)*samples);
    LF_CALL(lf__h5_string_value(&items[1], f->path, &fingerprint));
    snprintf(expected, sizeof expected, "%016llx", (unsigned long long)lf_model_fingerprint(m));
    LF_CHECK(strcmp(fingerprint, expected) == 0, LF_ERR_ARG,
             "%s: statistics were computed for another model (fingerprint %s); %s has %s", f->path,
             fingerprint, model_name ? model_name : "this model", expected);
    LF_CALL(lf__h5_open_object(f, "/layers", H5O_TYPE_GROUP, &layers));
    snprintf(where, sizeof where, "%s: /layers", f->path);
    LF_CALL(lf__h5_read_number_attr(layers, "count", where, H5T_INTEGER, H5T_NATIVE_INT64, &count));
    LF_CHECK(count == m->n_layers, LF_ERR_SHAPE, "%s: %lld layers, the model has %d", f->path,
             (long long)count, m->n_layers);
cleanup:
    lf__h5_close(&layers);
    return err;
}

/* Reads and validates the whole statistics file in this process. */
static lf_err_t read_stats_here(const char *path, const lf_model_t *m, const char *model_name,
                                lf_stats_t **out)
{
    lf_err_t err = LF_OK;
    lf__h5_file_t f = LF__H5_FILE_NONE;
    lf_stats_t *s = NULL;
    *out = NULL;
    LF_CALL(lf__h5_open_file_serial(path, &f));
    int64_t samples = 0;
    LF_CALL(read_header(&f, m, model_name, &samples));
    LF_CALL(lf_stats_create(m, &s));
    s->samples = samples;
    bool sums = false, squares = false;
    for (int i = 0; i < m->n_layers; i++)
        LF_CALL(read_layer(&f, i, m, s, &sums, &squares));
    s->with_sums = sums;
    s->with_squares = squares;
    *out = s;
    s = NULL;
cleanup:
    lf_stats_destroy(&s);
    lf__h5_close(&f.id);
    return err;
}

/* ---------------------------------------------------------------- through a reader process
 *
 * The wire: int64 samples, uint8 with_sums, uint8 with_squares, then per layer positive,
 * negative (int64), zmin, zmax (float) and, with sums, out_sum (double), and with squares,
 * sq_sum (double), n_out of each. Sizes come from the model, which
 * the parent already holds: nothing the file says sizes an allocation here. */

typedef struct {
    const char *path, *model_name;
    const lf_model_t *model;
} stats_job_t;

static lf_err_t stats_reader(void *ctx)
{
    const stats_job_t *job = ctx;
    lf_stats_t *s = NULL;
    lf_err_t err = read_stats_here(job->path, job->model, job->model_name, &s);
    lf__sandbox_send_status(err);
    if (err != LF_OK)
        return err;
    uint8_t sums = s->with_sums, squares = s->with_squares;
    bool ok = lf__sandbox_write(&s->samples, sizeof s->samples) &&
              lf__sandbox_write(&sums, sizeof sums) &&
              lf__sandbox_write(&squares, sizeof squares) &&
              lf__stats_send_layers(s, sums ? LF__STATS_SUMS_ROUNDED : LF__STATS_SUMS_NONE);
    lf_stats_destroy(&s);
    return ok ? LF_OK : LF_ERR_IO;
}

static lf_err_t receive_stats(lf__sandbox_t *sb, lf_stats_t *s)
{
    lf_err_t err = LF_OK;
    uint8_t sums = 0, squares = 0;
    LF_CALL(lf__sandbox_read(sb, &s->samples, sizeof s->samples));
    LF_CALL(lf__sandbox_read(sb, &sums, sizeof sums));
    LF_CALL(lf__sandbox_read(sb, &squares, sizeof squares));
    s->with_sums = sums != 0;
    s->with_squares = sums != 0 && squares != 0;
    LF_CALL(lf__stats_receive_layers(sb, s,
                                     s->with_sums ? LF__STATS_SUMS_ROUNDED : LF__STATS_SUMS_NONE));
cleanup:
    return err;
}

/* Rank 0: the statistics through a reader process, checked again here. */
static lf_err_t read_through_reader(const char *path, const lf_model_t *m, const char *model_name,
                                    lf_stats_t **out)
{
    lf_err_t err = LF_OK;
    lf__sandbox_t *sb = NULL;
    lf_stats_t *s = NULL;
    int64_t size = 0;
    *out = NULL;
    LF_CALL(lf__h5_check_readable(path, &size));
    LF_CALL(lf_stats_create(m, &s));
    lf__sandbox_limits_t limits = lf__sandbox_limits_for(size);
    stats_job_t job = {.path = path, .model_name = model_name, .model = m};
    LF_CALL(lf__sandbox_start(path, &limits, stats_reader, &job, &sb));
    LF_CALL(lf__sandbox_receive_status(sb));
    LF_CALL(receive_stats(sb, s));
    LF_CALL(lf__sandbox_finish(&sb));
    LF_CHECK(s->samples >= 1, LF_ERR_FORMAT, "%s: samples = %lld, expected >= 1", path,
             (long long)s->samples);
    for (int i = 0; i < m->n_layers; i++) {
        char gpath[64];
        snprintf(gpath, sizeof gpath, "/layers/%d", i);
        for (int64_t j = 0; j < s->layers[i].n_out; j++)
            LF_CALL(check_neuron(path, gpath, &s->layers[i], j, s->samples, s->with_sums,
                                 m->layers[i].act));
    }
    *out = s;
    s = NULL;
cleanup:
    lf__sandbox_finish(&sb);
    lf_stats_destroy(&s);
    return err;
}

lf_err_t lf_stats_read(MPI_Comm comm, const char *path, const lf_model_t *m, const char *model_name,
                       lf_stats_t **out)
{
    lf_err_t err = LF_OK;
    lf_stats_t *s = NULL;
    int rank = 0;
    *out = NULL;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_comm_agree(comm, rank == 0 ? read_through_reader(path, m, model_name, &s)
                                          : lf_stats_create(m, &s)));
    LF_CALL(lf_stats_bcast(comm, 0, s));
    *out = s;
    s = NULL;
cleanup:
    lf_stats_destroy(&s);
    return err;
}

/* ---------------------------------------------------------------- the layers (stats_file_impl.h)
 *
 * Shared with the checkpoint file (checkpoint.c), which keeps the exact sums instead of the
 * rounded ones. */

enum { EXACT_WORDS = 16 /* 8 bins of 128 bits, as 64-bit words */ };
__extension__ typedef unsigned __int128 u128;

static lf_err_t write_layer(hid_t layers, const lf_stats_t *s, int i, lf__stats_sums_t sums)
{
    lf_err_t err = LF_OK;
    hid_t grp = H5I_INVALID_HID;
    uint64_t *words = NULL;
    const lf_layer_stats_t *ls = &s->layers[i];
    char name[32];
    snprintf(name, sizeof name, "%d", i);
    LF_CALL(lf__h5_create_group(layers, name, &grp));
    hsize_t n = (hsize_t)ls->n_out, dims[2] = {(hsize_t)ls->n_out, EXACT_WORDS};
    LF_CALL(lf__h5_write_dataset(grp, "positive", 1, &n, H5T_STD_I64LE, H5T_NATIVE_INT64,
                                 ls->positive));
    LF_CALL(lf__h5_write_dataset(grp, "negative", 1, &n, H5T_STD_I64LE, H5T_NATIVE_INT64,
                                 ls->negative));
    LF_CALL(lf__h5_write_dataset(grp, "zmin", 1, &n, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ls->zmin));
    LF_CALL(lf__h5_write_dataset(grp, "zmax", 1, &n, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ls->zmax));
    if (sums == LF__STATS_SUMS_ROUNDED)
        LF_CALL(lf__h5_write_dataset(grp, "output_sum", 1, &n, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                                     ls->out_sum));
    if (sums == LF__STATS_SUMS_ROUNDED && s->with_squares)
        LF_CALL(lf__h5_write_dataset(grp, "output_square_sum", 1, &n, H5T_IEEE_F64LE,
                                     H5T_NATIVE_DOUBLE, ls->sq_sum));
    if (sums == LF__STATS_SUMS_EXACT) {
        /* Bin b of a neuron: words 2b (low) and 2b + 1 (high) of a 128-bit two's complement. */
        LF_CALL(lf_malloc((size_t)ls->n_out, EXACT_WORDS * sizeof *words, (void **)&words));
        const lf_xsum_t *from[2] = {ls->exact, ls->exact_sq};
        const char *names[2] = {"exact", "exact_square"};
        for (int k = 0; k < 2; k++) {
            for (int64_t j = 0; j < ls->n_out; j++)
                for (int b = 0; b < 8; b++) {
                    u128 v = (u128)from[k][j].bin[b];
                    words[j * EXACT_WORDS + 2 * b] = (uint64_t)v;
                    words[j * EXACT_WORDS + 2 * b + 1] = (uint64_t)(v >> 64);
                }
            LF_CALL(lf__h5_write_dataset(grp, names[k], 2, dims, H5T_STD_U64LE, H5T_NATIVE_UINT64,
                                         words));
        }
    }
cleanup:
    lf_free(words);
    lf__h5_close(&grp);
    return err;
}

lf_err_t lf__stats_write_layers(hid_t file, const lf_stats_t *s, lf__stats_sums_t sums)
{
    lf_err_t err = LF_OK;
    hid_t layers = H5I_INVALID_HID;
    int64_t count = s->n_layers;
    LF_CALL(lf__h5_create_group(file, "layers", &layers));
    LF_CALL(lf__h5_write_scalar_attr(layers, "count", H5T_STD_I64LE, H5T_NATIVE_INT64, &count));
    for (int i = 0; i < s->n_layers; i++)
        LF_CALL(write_layer(layers, s, i, sums));
cleanup:
    lf__h5_close(&layers);
    return err;
}

static const lf__h5_want_t COUNTS = {H5T_INTEGER, 1, "an integer dataset"};
static const lf__h5_want_t VALUES = {H5T_FLOAT, 1, "a float dataset"};
static const lf__h5_want_t WORDS = {H5T_INTEGER, 2, "a 2-D integer dataset"};

/* Reads the dataset path of f, of shape (d0), or (d0, d1) for a 2-D want, into dst as mem_type. */
static lf_err_t read_array(const lf__h5_file_t *f, const char *path, const lf__h5_want_t *want,
                           int64_t d0, int64_t d1, hid_t mem_type, void *dst)
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID;
    hsize_t dims[2];
    char found[48], expected[48];
    LF_CALL(lf__h5_open_dataset(f, path, want, &dset, dims));
    /* Words of exact sums are stored unsigned: HDF5 would turn a signed file's negative words
     * into 0 when converting, and the sums read would not be the file's. */
    if (H5Tequal(mem_type, H5T_NATIVE_UINT64) > 0) {
        hid_t type = H5Dget_type(dset);
        bool unsigned64 = type >= 0 && H5Tget_sign(type) == H5T_SGN_NONE && H5Tget_size(type) == 8;
        lf__h5_close(&type);
        LF_CHECK(unsigned64, LF_ERR_FORMAT, "%s: %s must hold unsigned 64-bit integers", f->path,
                 path);
    }
    if (want->rank == 1) {
        snprintf(found, sizeof found, "(%llu)", (unsigned long long)dims[0]);
        snprintf(expected, sizeof expected, "(%lld)", (long long)d0);
    } else {
        snprintf(found, sizeof found, "(%llu, %llu)", (unsigned long long)dims[0],
                 (unsigned long long)dims[1]);
        snprintf(expected, sizeof expected, "(%lld, %lld)", (long long)d0, (long long)d1);
    }
    LF_CHECK((int64_t)dims[0] == d0 && (want->rank == 1 || (int64_t)dims[1] == d1), LF_ERR_SHAPE,
             "%s: %s has shape %s, expected %s", f->path, path, found, expected);
    LF_CALL_H5(H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst), "%s: cannot read %s",
               f->path, path);
cleanup:
    lf__h5_close(&dset);
    return err;
}

lf_err_t lf__stats_read_layer(const lf__h5_file_t *f, int i, lf_layer_stats_t *ls)
{
    lf_err_t err = LF_OK;
    char path[96];
    struct {
        const char *name;
        const lf__h5_want_t *want;
        hid_t mem;
        void *dst;
    } parts[] = {
        {"positive", &COUNTS, H5T_NATIVE_INT64, ls->positive},
        {"negative", &COUNTS, H5T_NATIVE_INT64, ls->negative},
        {"zmin", &VALUES, H5T_NATIVE_FLOAT, ls->zmin},
        {"zmax", &VALUES, H5T_NATIVE_FLOAT, ls->zmax},
    };
    for (size_t k = 0; k < sizeof parts / sizeof *parts; k++) {
        snprintf(path, sizeof path, "/layers/%d/%s", i, parts[k].name);
        LF_CALL(read_array(f, path, parts[k].want, ls->n_out, 0, parts[k].mem, parts[k].dst));
    }
cleanup:
    return err;
}

/* Reads the exact sums /layers/<i>/<name> of f, (n_out, 16) words, into x. */
static lf_err_t read_exact(const lf__h5_file_t *f, int i, const char *name, int64_t n_out,
                           lf_xsum_t *x)
{
    lf_err_t err = LF_OK;
    uint64_t *words = NULL;
    char path[96];
    snprintf(path, sizeof path, "/layers/%d/%s", i, name);
    LF_CALL(lf_malloc((size_t)n_out, EXACT_WORDS * sizeof *words, (void **)&words));
    LF_CALL(read_array(f, path, &WORDS, n_out, EXACT_WORDS, H5T_NATIVE_UINT64, words));
    for (int64_t j = 0; j < n_out; j++)
        for (int b = 0; b < 8; b++) {
            const uint64_t *w = words + j * EXACT_WORDS + 2 * b;
            x[j].bin[b] = (lf_i128)(((u128)w[1] << 64) | w[0]);
        }
cleanup:
    lf_free(words);
    return err;
}

/* Layer i's sums of one kind: the rounded dataset `rounded` into out, or the exact words of
 * `exact` into x. */
static lf_err_t read_sum_kind(const lf__h5_file_t *f, int i, lf__stats_sums_t sums,
                              const char *rounded, const char *exact, int64_t n, double *out,
                              lf_xsum_t *x)
{
    lf_err_t err = LF_OK;
    char path[96];
    if (sums == LF__STATS_SUMS_ROUNDED) {
        snprintf(path, sizeof path, "/layers/%d/%s", i, rounded);
        LF_CALL(read_array(f, path, &VALUES, n, 0, H5T_NATIVE_DOUBLE, out));
    }
    if (sums == LF__STATS_SUMS_EXACT)
        LF_CALL(read_exact(f, i, exact, n, x));
cleanup:
    return err;
}

lf_err_t lf__stats_read_sums(const lf__h5_file_t *f, int i, lf__stats_sums_t sums,
                             lf_layer_stats_t *ls)
{
    return read_sum_kind(f, i, sums, "output_sum", "exact", ls->n_out, ls->out_sum, ls->exact);
}

lf_err_t lf__stats_read_squares(const lf__h5_file_t *f, int i, lf__stats_sums_t sums,
                                lf_layer_stats_t *ls)
{
    return read_sum_kind(f, i, sums, "output_square_sum", "exact_square", ls->n_out, ls->sq_sum,
                         ls->exact_sq);
}

lf_err_t lf__stats_check_neuron(const char *file, const char *gpath, const lf_layer_stats_t *ls,
                                int64_t j, int64_t samples, lf_err_t range_err)
{
    lf_err_t err = LF_OK;
    int64_t pos = ls->positive[j], neg = ls->negative[j];
    float lo = ls->zmin[j], hi = ls->zmax[j];
    LF_CHECK(pos >= 0 && neg >= 0 && pos <= samples - neg, LF_ERR_FORMAT,
             "%s: %s neuron %lld has %lld positive and %lld negative rows of %lld samples "
             "(counts must be >= 0 and add up to at most the samples)",
             file, gpath, (long long)j, (long long)pos, (long long)neg, (long long)samples);
    LF_CHECK(isfinite(lo) && isfinite(hi) && lo <= hi, range_err,
             "%s: %s neuron %lld has extremes zmin = %g, zmax = %g; expected finite, zmin <= zmax",
             file, gpath, (long long)j, (double)lo, (double)hi);
    /* The counts and extremes describe the same values. */
    LF_CHECK((pos > 0) == (hi > 0.0f) && (neg > 0) == (lo < 0.0f) &&
                 (pos + neg == samples || (lo <= 0.0f && hi >= 0.0f)),
             range_err,
             "%s: %s neuron %lld: counts %lld positive, %lld negative of %lld disagree with its "
             "range [%g, %g]",
             file, gpath, (long long)j, (long long)pos, (long long)neg, (long long)samples,
             (double)lo, (double)hi);
cleanup:
    return err;
}

bool lf__stats_send_layers(const lf_stats_t *s, lf__stats_sums_t sums)
{
    bool ok = true;
    for (int i = 0; ok && i < s->n_layers; i++) {
        const lf_layer_stats_t *ls = &s->layers[i];
        size_t n = (size_t)ls->n_out;
        ok = lf__sandbox_write(ls->positive, n * sizeof *ls->positive) &&
             lf__sandbox_write(ls->negative, n * sizeof *ls->negative) &&
             lf__sandbox_write(ls->zmin, n * sizeof *ls->zmin) &&
             lf__sandbox_write(ls->zmax, n * sizeof *ls->zmax) &&
             (sums != LF__STATS_SUMS_ROUNDED ||
              lf__sandbox_write(ls->out_sum, n * sizeof *ls->out_sum)) &&
             (sums != LF__STATS_SUMS_ROUNDED || !s->with_squares ||
              lf__sandbox_write(ls->sq_sum, n * sizeof *ls->sq_sum)) &&
             (sums != LF__STATS_SUMS_EXACT ||
              (lf__sandbox_write(ls->exact, n * sizeof *ls->exact) &&
               lf__sandbox_write(ls->exact_sq, n * sizeof *ls->exact_sq)));
    }
    return ok;
}

lf_err_t lf__stats_receive_layers(lf__sandbox_t *sb, lf_stats_t *s, lf__stats_sums_t sums)
{
    lf_err_t err = LF_OK;
    for (int i = 0; i < s->n_layers; i++) {
        lf_layer_stats_t *ls = &s->layers[i];
        size_t n = (size_t)ls->n_out;
        LF_CALL(lf__sandbox_read(sb, ls->positive, n * sizeof *ls->positive));
        LF_CALL(lf__sandbox_read(sb, ls->negative, n * sizeof *ls->negative));
        LF_CALL(lf__sandbox_read(sb, ls->zmin, n * sizeof *ls->zmin));
        LF_CALL(lf__sandbox_read(sb, ls->zmax, n * sizeof *ls->zmax));
        if (sums == LF__STATS_SUMS_ROUNDED)
            LF_CALL(lf__sandbox_read(sb, ls->out_sum, n * sizeof *ls->out_sum));
        if (sums == LF__STATS_SUMS_ROUNDED && s->with_squares)
            LF_CALL(lf__sandbox_read(sb, ls->sq_sum, n * sizeof *ls->sq_sum));
        if (sums == LF__STATS_SUMS_EXACT) {
            LF_CALL(lf__sandbox_read(sb, ls->exact, n * sizeof *ls->exact));
            LF_CALL(lf__sandbox_read(sb, ls->exact_sq, n * sizeof *ls->exact_sq));
        }
    }
cleanup:
    return err;
}
