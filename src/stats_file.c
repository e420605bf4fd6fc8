/* The statistics file (docs/format.md): written by rank 0, read and validated collectively.
 *
 * Reading runs in a reader process (sandbox_impl.h), like a model's, and rank 0 broadcasts
 * the result. A statistics file is an input like a model and is checked as strictly: every count, extreme and
 * sum must be one that a calibration pass could have produced (counts within the sample count,
 * finite extremes consistent with the counts, finite output sums, non-negative for relu), so a
 * corrupted or hand-edited file is refused instead of becoming NaN biases in a model. */
#include <math.h>
#include <string.h>

#include "h5io_impl.h"
#include "sandbox_impl.h"
#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"
#include "linfold/stats.h"

/* ---------------------------------------------------------------- writing */

static lf_err_t write_layer(hid_t layers, const lf_stats_t *s, int i)
{
    lf_err_t err = LF_OK;
    hid_t grp = H5I_INVALID_HID;
    const lf_layer_stats_t *ls = &s->layers[i];
    char name[32];
    snprintf(name, sizeof name, "%d", i);
    LF_CALL(lf__h5_create_group(layers, name, &grp));
    hsize_t n = (hsize_t)ls->n_out;
    LF_CALL(lf__h5_write_dataset(grp, "positive", 1, &n, H5T_STD_I64LE, H5T_NATIVE_INT64,
                                 ls->positive));
    LF_CALL(lf__h5_write_dataset(grp, "negative", 1, &n, H5T_STD_I64LE, H5T_NATIVE_INT64,
                                 ls->negative));
    LF_CALL(lf__h5_write_dataset(grp, "zmin", 1, &n, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ls->zmin));
    LF_CALL(lf__h5_write_dataset(grp, "zmax", 1, &n, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ls->zmax));
    if (s->with_sums)
        LF_CALL(lf__h5_write_dataset(grp, "output_sum", 1, &n, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                                     ls->out_sum));
cleanup:
    lf__h5_close(&grp);
    return err;
}

static lf_err_t write_stats_file(const char *tmp, const char *path, const void *ctx)
{
    lf_err_t err = LF_OK;
    const lf_stats_t *s = ctx;
    hid_t file = H5I_INVALID_HID, layers = H5I_INVALID_HID;
    LF_CALL(lf__h5_memory_file_create(tmp, &file));
    int64_t version = 1, count = s->n_layers;
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)s->fingerprint);
    LF_CALL(lf__h5_write_string_attr(file, "format", "linfold-stats"));
    LF_CALL(lf__h5_write_scalar_attr(file, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                     &version));
    LF_CALL(
        lf__h5_write_scalar_attr(file, "samples", H5T_STD_I64LE, H5T_NATIVE_INT64, &s->samples));
    LF_CALL(lf__h5_write_string_attr(file, "model_fingerprint", fp));
    LF_CALL(lf__h5_create_group(file, "layers", &layers));
    LF_CALL(lf__h5_write_scalar_attr(layers, "count", H5T_STD_I64LE, H5T_NATIVE_INT64, &count));
    for (int i = 0; i < s->n_layers; i++)
        LF_CALL(write_layer(layers, s, i));
    lf__h5_close(&layers);
    LF_CALL(lf__h5_memory_file_save(&file, tmp, path));
cleanup:
    lf__h5_close(&layers);
    lf__h5_close(&file);
    return err;
}

lf_err_t lf_stats_write(MPI_Comm comm, const char *path, const lf_stats_t *s)
{
    return lf_atomic_write_rank0(comm, path, write_stats_file, s);
}

/* ---------------------------------------------------------------- reading */

static const lf__h5_want_t COUNTS = {H5T_INTEGER, 1, "an integer dataset"};
static const lf__h5_want_t VALUES = {H5T_FLOAT, 1, "a float dataset"};

/* Reads the 1-D dataset path of n elements into dst as mem_type. */
static lf_err_t read_vector(const lf__h5_file_t *f, const char *path, const lf__h5_want_t *want,
                            int64_t n, hid_t mem_type, void *dst)
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID;
    hsize_t dims[2];
    LF_CALL(lf__h5_open_dataset(f, path, want, &dset, dims));
    LF_CHECK((int64_t)dims[0] == n, LF_ERR_SHAPE, "%s: %s has shape (%llu), expected (%lld)",
             f->path, path, (unsigned long long)dims[0], (long long)n);
    LF_CALL_H5(H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst), "%s: cannot read %s",
               f->path, path);
cleanup:
    lf__h5_close(&dset);
    return err;
}

/* Checks that neuron j's figures are ones a calibration pass over `samples` rows produces. */
static lf_err_t check_neuron(const char *file, const char *gpath, const lf_layer_stats_t *ls,
                             int64_t j, int64_t samples, bool sums, lf_act_t act)
{
    lf_err_t err = LF_OK;
    int64_t pos = ls->positive[j], neg = ls->negative[j];
    float lo = ls->zmin[j], hi = ls->zmax[j];
    LF_CHECK(pos >= 0 && neg >= 0 && pos <= samples - neg, LF_ERR_FORMAT,
             "%s: %s neuron %lld has %lld positive and %lld negative rows of %lld samples "
             "(counts must be >= 0 and add up to at most the samples)",
             file, gpath, (long long)j, (long long)pos, (long long)neg, (long long)samples);
    LF_CHECK(isfinite(lo) && isfinite(hi) && lo <= hi, LF_ERR_VALUE,
             "%s: %s neuron %lld has extremes zmin = %g, zmax = %g; expected finite, zmin <= zmax",
             file, gpath, (long long)j, (double)lo, (double)hi);
    /* The counts and extremes describe the same values. */
    LF_CHECK((pos > 0) == (hi > 0.0f) && (neg > 0) == (lo < 0.0f) &&
                 (pos + neg == samples || (lo <= 0.0f && hi >= 0.0f)),
             LF_ERR_VALUE,
             "%s: %s neuron %lld: counts %lld positive, %lld negative of %lld disagree with its "
             "range [%g, %g]",
             file, gpath, (long long)j, (long long)pos, (long long)neg, (long long)samples,
             (double)lo, (double)hi);
    if (!sums)
        goto cleanup;
    double sum = ls->out_sum[j];
    LF_CHECK(isfinite(sum), LF_ERR_VALUE, "%s: %s/output_sum[%lld] is %s", file, gpath,
             (long long)j, isnan(sum) ? "NaN" : "infinite");
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
                           bool *has_sums)
{
    lf_err_t err = LF_OK;
    lf_layer_stats_t *ls = &s->layers[i];
    char gpath[64], path[96];
    snprintf(gpath, sizeof gpath, "/layers/%d", i);
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
        snprintf(path, sizeof path, "%s/%s", gpath, parts[k].name);
        LF_CALL(read_vector(f, path, parts[k].want, ls->n_out, parts[k].mem, parts[k].dst));
    }
    snprintf(path, sizeof path, "%s/output_sum", gpath);
    lf_err_t walk = LF_OK;
    int present = lf__h5_exists(f, path, &walk);
    LF_CALL(walk);
    LF_CHECK(i == 0 || (present == 1) == *has_sums, LF_ERR_FORMAT,
             "%s: %s/output_sum is present in some layers only", f->path, gpath);
    *has_sums = present == 1;
    if (*has_sums)
        LF_CALL(read_vector(f, path, &VALUES, ls->n_out, H5T_NATIVE_DOUBLE, ls->out_sum));
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
    bool sums = false;
    for (int i = 0; i < m->n_layers; i++)
        LF_CALL(read_layer(&f, i, m, s, &sums));
    s->with_sums = sums;
    *out = s;
    s = NULL;
cleanup:
    lf_stats_destroy(&s);
    lf__h5_close(&f.id);
    return err;
}

/* ---------------------------------------------------------------- through a reader process
 *
 * The wire: int64 samples, uint8 with_sums, then per layer positive, negative (int64), zmin,
 * zmax (float) and, with sums, out_sum (double), n_out of each. Sizes come from the model, which
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
    uint8_t sums = s->with_sums;
    bool ok =
        lf__sandbox_write(&s->samples, sizeof s->samples) && lf__sandbox_write(&sums, sizeof sums);
    for (int i = 0; ok && i < s->n_layers; i++) {
        const lf_layer_stats_t *ls = &s->layers[i];
        size_t n = (size_t)ls->n_out;
        ok = lf__sandbox_write(ls->positive, n * sizeof *ls->positive) &&
             lf__sandbox_write(ls->negative, n * sizeof *ls->negative) &&
             lf__sandbox_write(ls->zmin, n * sizeof *ls->zmin) &&
             lf__sandbox_write(ls->zmax, n * sizeof *ls->zmax) &&
             (!sums || lf__sandbox_write(ls->out_sum, n * sizeof *ls->out_sum));
    }
    lf_stats_destroy(&s);
    return ok ? LF_OK : LF_ERR_IO;
}

static lf_err_t receive_stats(lf__sandbox_t *sb, lf_stats_t *s)
{
    lf_err_t err = LF_OK;
    uint8_t sums = 0;
    LF_CALL(lf__sandbox_read(sb, &s->samples, sizeof s->samples));
    LF_CALL(lf__sandbox_read(sb, &sums, sizeof sums));
    s->with_sums = sums != 0;
    for (int i = 0; i < s->n_layers; i++) {
        lf_layer_stats_t *ls = &s->layers[i];
        size_t n = (size_t)ls->n_out;
        LF_CALL(lf__sandbox_read(sb, ls->positive, n * sizeof *ls->positive));
        LF_CALL(lf__sandbox_read(sb, ls->negative, n * sizeof *ls->negative));
        LF_CALL(lf__sandbox_read(sb, ls->zmin, n * sizeof *ls->zmin));
        LF_CALL(lf__sandbox_read(sb, ls->zmax, n * sizeof *ls->zmax));
        if (s->with_sums)
            LF_CALL(lf__sandbox_read(sb, ls->out_sum, n * sizeof *ls->out_sum));
    }
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
