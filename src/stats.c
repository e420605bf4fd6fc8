/* Activation statistics: accumulation, exact reduction, and the statistics file. */
#include "linfold/stats.h"

#include <hdf5.h>
#include <math.h>
#include <string.h>

#include "h5io_impl.h"
#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/forward.h"

lf_err_t lf_stats_create(const lf_model_t *m, lf_stats_t **out)
{
    lf_err_t err = LF_OK;
    lf_stats_t *s = NULL;
    *out = NULL;
    LF_CALL(lf_calloc(1, sizeof *s, (void **)&s));
    s->fingerprint = lf_model_fingerprint(m);
    LF_CALL(lf_calloc((size_t)m->n_layers, sizeof *s->layers, (void **)&s->layers));
    s->n_layers = m->n_layers;
    for (int i = 0; i < m->n_layers; i++) {
        lf_layer_stats_t *ls = &s->layers[i];
        size_t n = (size_t)m->layers[i].n_out;
        ls->n_out = m->layers[i].n_out;
        LF_CALL(lf_calloc(n, sizeof *ls->positive, (void **)&ls->positive));
        LF_CALL(lf_calloc(n, sizeof *ls->negative, (void **)&ls->negative));
        LF_CALL(lf_malloc(n, sizeof *ls->zmin, (void **)&ls->zmin));
        LF_CALL(lf_malloc(n, sizeof *ls->zmax, (void **)&ls->zmax));
        LF_CALL(lf_calloc(n, sizeof *ls->exact, (void **)&ls->exact));
        LF_CALL(lf_calloc(n, sizeof *ls->out_sum, (void **)&ls->out_sum));
        for (size_t j = 0; j < n; j++) {
            ls->zmin[j] = INFINITY;
            ls->zmax[j] = -INFINITY;
        }
    }
    *out = s;
    s = NULL;
cleanup:
    lf_stats_destroy(&s);
    return err;
}

void lf_stats_destroy(lf_stats_t **s)
{
    if (!s || !*s)
        return;
    if ((*s)->layers)
        for (int i = 0; i < (*s)->n_layers; i++) {
            lf_layer_stats_t *ls = &(*s)->layers[i];
            lf_free(ls->positive);
            lf_free(ls->negative);
            lf_free(ls->zmin);
            lf_free(ls->zmax);
            lf_free(ls->exact);
            lf_free(ls->out_sum);
        }
    lf_free((*s)->layers);
    lf_free(*s);
    *s = NULL;
}

/* Branch-free: signs and exponents of activations look random, and a mispredicted branch per
 * element would cost more than the arithmetic. Zero adds 0 to bin 0. */
static inline void xsum_add(lf_xsum_t *x, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    uint32_t e = (u >> 23) & 0xFFu, normal = e != 0;
    uint32_t m = (u & 0x7FFFFFu) | (normal << 23); /* implicit leading bit of normal numbers */
    e += !normal;                                  /* subnormals: m * 2^(1 - 150) */
    lf_i128 t = (lf_i128)m << (e & 31u);
    lf_i128 sign = -(lf_i128)(u >> 31);            /* 0 or -1 */
    x->bin[e >> 5] += (t ^ sign) - sign;           /* t or -t */
}

void lf_xsum_add(lf_xsum_t *x, float v) { xsum_add(x, v); }

double lf_xsum_value(const lf_xsum_t *x)
{
    /* Bins hold exact integers; one fixed-order long-double sum rounds them the same way on
     * every rank. */
    long double total = 0.0L;
    for (int b = 0; b < 8; b++)
        total += (long double)x->bin[b] * ldexpl(1.0L, 32 * b - 150);
    return (double)total;
}

void lf_stats_update(lf_stats_t *s, int layer, lf_act_t act, float alpha, const float *z,
                     int64_t rows)
{
    lf_layer_stats_t *ls = &s->layers[layer];
    int64_t n = ls->n_out;
    int64_t *restrict pos = ls->positive, *restrict neg = ls->negative;
    float *restrict lo = ls->zmin, *restrict hi = ls->zmax;
    /* Row-major traversal with the neuron index innermost: contiguous, and the compiler
     * vectorises the compare-and-add over neurons. */
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict zr = z + r * n;
        for (int64_t j = 0; j < n; j++) {
            float v = zr[j];
            pos[j] += v > 0.0f;
            neg[j] += v < 0.0f;
            lo[j] = v < lo[j] ? v : lo[j];
            hi[j] = v > hi[j] ? v : hi[j];
        }
    }
    /* Output sums, exact; a separate pass so that the loop above stays vectorised. */
    if (!s->with_sums || !lf_act_is_piecewise_linear(act))
        return;
    float slope = act == LF_ACT_RELU ? 0.0f : (act == LF_ACT_LEAKY_RELU ? alpha : 1.0f);
    lf_xsum_t *restrict acc = ls->exact;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * n;
        for (int64_t j = 0; j < n; j++) {
            float v = zr[j];
            xsum_add(&acc[j], v > 0.0f ? v : slope * v);
        }
    }
}

lf_err_t lf_stats_merge(lf_stats_t *dst, const lf_stats_t *src)
{
    lf_err_t err = LF_OK;
    LF_CHECK(dst->n_layers == src->n_layers && dst->fingerprint == src->fingerprint &&
                 dst->with_sums == src->with_sums,
             LF_ERR_SHAPE, "cannot merge statistics of different models or kinds");
    dst->samples += src->samples;
    for (int i = 0; i < dst->n_layers; i++) {
        lf_layer_stats_t *d = &dst->layers[i];
        const lf_layer_stats_t *s = &src->layers[i];
        for (int64_t j = 0; j < d->n_out; j++) {
            d->positive[j] += s->positive[j];
            d->negative[j] += s->negative[j];
            d->zmin[j] = fminf(d->zmin[j], s->zmin[j]);
            d->zmax[j] = fmaxf(d->zmax[j], s->zmax[j]);
            for (int b = 0; b < 8; b++)
                d->exact[j].bin[b] += s->exact[j].bin[b];
        }
    }
cleanup:
    return err;
}

static void sum_i128(void *in, void *inout, int *len, MPI_Datatype *type)
{
    (void)type;
    const lf_i128 *a = in;
    lf_i128 *b = inout;
    for (int k = 0; k < *len; k++)
        b[k] += a[k];
}

lf_err_t lf_stats_reduce(MPI_Comm comm, lf_stats_t *s)
{
    lf_err_t err = LF_OK;
    MPI_Datatype i128 = MPI_DATATYPE_NULL;
    MPI_Op op = MPI_OP_NULL;
    int n = 0, bins = 0;
    LF_CALL_MPI(MPI_Type_contiguous((int)sizeof(lf_i128), MPI_BYTE, &i128));
    LF_CALL_MPI(MPI_Type_commit(&i128));
    LF_CALL_MPI(MPI_Op_create(sum_i128, 1, &op));
    LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, &s->samples, 1, MPI_INT64_T, MPI_SUM, comm));
    for (int i = 0; i < s->n_layers; i++) {
        lf_layer_stats_t *ls = &s->layers[i];
        LF_CALL(lf_int_cast(ls->n_out, &n));
        LF_CALL(lf_int_cast(ls->n_out * 8, &bins));
        LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, ls->positive, n, MPI_INT64_T, MPI_SUM, comm));
        LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, ls->negative, n, MPI_INT64_T, MPI_SUM, comm));
        LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, ls->zmin, n, MPI_FLOAT, MPI_MIN, comm));
        LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, ls->zmax, n, MPI_FLOAT, MPI_MAX, comm));
        if (!s->with_sums)
            continue;
        LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, ls->exact, bins, i128, op, comm));
        for (int64_t j = 0; j < ls->n_out; j++)
            ls->out_sum[j] = lf_xsum_value(&ls->exact[j]);
    }
cleanup:
    if (op != MPI_OP_NULL)
        MPI_Op_free(&op);
    if (i128 != MPI_DATATYPE_NULL)
        MPI_Type_free(&i128);
    return err;
}

double lf_stats_rate(const lf_stats_t *s, int layer, int64_t j)
{
    return s->samples > 0 ? (double)s->layers[layer].positive[j] / (double)s->samples : 0.0;
}

double lf_stats_mean_output(const lf_stats_t *s, int layer, int64_t j)
{
    return s->samples > 0 ? s->layers[layer].out_sum[j] / (double)s->samples : 0.0;
}

typedef struct {
    const lf_model_t *model;
    lf_stats_t *stats;
    int64_t first, valid;
} hook_ctx_t;

static lf_err_t collect_hook(int layer, const float *z, int64_t rows, int64_t n_out, void *ctx)
{
    (void)rows;
    hook_ctx_t *h = ctx;
    const lf_layer_t *L = &h->model->layers[layer];
    lf_stats_update(h->stats, layer, L->act, L->alpha, z + h->first * n_out, h->valid);
    return LF_OK;
}

/* Per-thread workspaces and partial statistics; partials merge exactly after the pass. */
typedef struct {
    const lf_model_t *model;
    int threads;
    lf_forward_t **fw;
    lf_stats_t **part;
} collect_ctx_t;

static lf_err_t collect_block(const lf_batch_t *b, int tid, void *ctx)
{
    lf_err_t err = LF_OK;
    collect_ctx_t *c = ctx;
    const float *y = NULL;
    hook_ctx_t h = {.model = c->model, .stats = c->part[tid], .first = b->first, .valid = b->valid};
    LF_CALL(lf_forward_run(c->fw[tid], c->model, b->x, b->rows, collect_hook, &h, &y));
    c->part[tid]->samples += b->valid;
cleanup:
    return err;
}

static void collect_free(collect_ctx_t *c)
{
    for (int t = 0; t < c->threads; t++) {
        if (c->fw)
            lf_forward_destroy(&c->fw[t]);
        if (c->part)
            lf_stats_destroy(&c->part[t]);
    }
    lf_free(c->fw);
    lf_free(c->part);
}

static lf_err_t collect_alloc(collect_ctx_t *c, int64_t block_rows, bool with_sums)
{
    lf_err_t err = LF_OK;
    LF_CALL(lf_calloc((size_t)c->threads, sizeof *c->fw, (void **)&c->fw));
    LF_CALL(lf_calloc((size_t)c->threads, sizeof *c->part, (void **)&c->part));
    for (int t = 0; t < c->threads; t++) {
        LF_CALL(lf_forward_create(c->model, block_rows, &c->fw[t]));
        LF_CALL(lf_stats_create(c->model, &c->part[t]));
        c->part[t]->with_sums = with_sums;
    }
cleanup:
    return err;
}

lf_err_t lf_stats_collect(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *data,
                          const lf_batch_opts_t *opts, bool with_sums, lf_stats_t **out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    collect_ctx_t c = {.model = m, .threads = opts->threads > 1 ? opts->threads : 1};
    *out = NULL;
    int64_t n = lf_h5io_dataset_rows(data);
    LF_CHECK(lf_h5io_dataset_cols(data) == m->n_in, LF_ERR_SHAPE,
             "%s has %lld features per row, the model expects %lld", lf_h5io_dataset_spec(data),
             (long long)lf_h5io_dataset_cols(data), (long long)m->n_in);
    LF_CHECK(n >= 1, LF_ERR_SHAPE, "%s has no rows: calibration needs at least one sample",
             lf_h5io_dataset_spec(data));
    LF_CALL(lf_comm_agree(comm, collect_alloc(&c, lf_batch_block_rows(n, opts->batch_rows), with_sums)));
    LF_CALL(lf_batch_run(comm, data, NULL, opts, collect_block, NULL, &c));
    for (int t = 1; t < c.threads && local == LF_OK; t++)
        local = lf_stats_merge(c.part[0], c.part[t]);
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL(lf_stats_reduce(comm, c.part[0]));
    *out = c.part[0];
    c.part[0] = NULL;
cleanup:
    collect_free(&c);
    return err;
}

/* ---------------------------------------------------------------- the statistics file */

static lf_err_t write_int64_dataset(hid_t loc, const char *name, int64_t n, const int64_t *data)
{
    hsize_t dims = (hsize_t)n;
    return lf__write_dataset(loc, name, 1, &dims, H5T_STD_I64LE, H5T_NATIVE_INT64, data);
}

static lf_err_t write_serial(const char *tmp, const lf_stats_t *s)
{
    lf_err_t err = LF_OK;
    hid_t file = H5I_INVALID_HID, layers = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    LF_CALL_H5(file, "%s: cannot create file", tmp);
    int64_t version = 1, count = s->n_layers;
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)s->fingerprint);
    LF_CALL(lf__write_string_attr(file, "format", "linfold-stats"));
    LF_CALL(lf__write_number_attr(file, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                  &version));
    LF_CALL(lf__write_number_attr(file, "samples", H5T_STD_I64LE, H5T_NATIVE_INT64, &s->samples));
    LF_CALL(lf__write_string_attr(file, "model_fingerprint", fp));
    LF_CALL(lf__create_group(file, "layers", &layers));
    LF_CALL(lf__write_number_attr(layers, "count", H5T_STD_I64LE, H5T_NATIVE_INT64, &count));
    for (int i = 0; i < s->n_layers; i++) {
        const lf_layer_stats_t *ls = &s->layers[i];
        char name[32];
        snprintf(name, sizeof name, "%d", i);
        LF_CALL(lf__create_group(layers, name, &grp));
        hsize_t n = (hsize_t)ls->n_out;
        LF_CALL(write_int64_dataset(grp, "positive", ls->n_out, ls->positive));
        LF_CALL(write_int64_dataset(grp, "negative", ls->n_out, ls->negative));
        LF_CALL(lf__write_float_dataset(grp, "zmin", 1, &n, ls->zmin));
        LF_CALL(lf__write_float_dataset(grp, "zmax", 1, &n, ls->zmax));
        if (s->with_sums)
            LF_CALL(lf__write_dataset(grp, "output_sum", 1, &n, H5T_IEEE_F64LE,
                                      H5T_NATIVE_DOUBLE, ls->out_sum));
        lf__close_id(&grp);
    }
    lf__close_id(&layers);
    LF_CALL_H5(H5Fclose(file), "%s: cannot close", tmp);
    file = H5I_INVALID_HID;
cleanup:
    lf__close_id(&grp);
    lf__close_id(&layers);
    lf__close_id(&file);
    return err;
}

static lf_err_t write_stats_file(const char *tmp, const void *ctx) { return write_serial(tmp, ctx); }

lf_err_t lf_stats_write(MPI_Comm comm, const char *path, const lf_stats_t *s)
{
    return lf__write_atomic_rank0(comm, path, write_stats_file, s);
}

/* Reads a 1-D dataset of n elements of class cls into dst as mem_type. */
static lf_err_t read_vector(hid_t grp, const char *name, const char *file, const char *gpath,
                            int64_t n, H5T_class_t cls, hid_t mem_type, void *dst)
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID,
          dxpl = H5I_INVALID_HID;
    char path[160];
    snprintf(path, sizeof path, "%s/%s", gpath, name);
    LF_CHECK(H5Lexists(grp, name, H5P_DEFAULT) > 0, LF_ERR_FORMAT, "%s: missing dataset %s", file,
             path);
    dset = H5Dopen2(grp, name, H5P_DEFAULT);
    LF_CALL_H5(dset, "%s: cannot open %s", file, path);
    type = H5Dget_type(dset);
    LF_CALL_H5(type, "%s: %s type", file, path);
    LF_CHECK(H5Tget_class(type) == cls, LF_ERR_FORMAT, "%s: %s is not %s", file, path,
             cls == H5T_INTEGER ? "an integer dataset" : "a float dataset");
    space = H5Dget_space(dset);
    LF_CALL_H5(space, "%s: %s space", file, path);
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_ndims(space);
    H5Sget_simple_extent_dims(space, dims, NULL);
    LF_CHECK(nd == 1 && (int64_t)dims[0] == n, LF_ERR_SHAPE,
             "%s: %s has %d dimensions of which the first is %llu, expected shape (%lld)", file,
             path, nd, (unsigned long long)dims[0], (long long)n);
    dxpl = lf__collective_dxpl();
    LF_CALL_H5(dxpl, "transfer list");
    LF_CALL_H5(H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, dxpl, dst), "%s: cannot read %s", file,
               path);
cleanup:
    lf__close_id(&dxpl);
    lf__close_id(&space);
    lf__close_id(&type);
    lf__close_id(&dset);
    return err;
}

lf_err_t lf_stats_read(MPI_Comm comm, const char *path, const lf_model_t *m, lf_stats_t **out)
{
    lf_err_t err = LF_OK;
    hid_t file = H5I_INVALID_HID, layers = H5I_INVALID_HID, grp = H5I_INVALID_HID;
    lf_stats_t *s = NULL;
    char text[64], where[4200];
    *out = NULL;
    LF_CALL(lf__open_file(comm, path, &file));
    LF_CALL(lf__read_string_attr(file, "format", path, text, sizeof text));
    LF_CHECK(strcmp(text, "linfold-stats") == 0, LF_ERR_FORMAT,
             "%s: attribute 'format' is \"%s\", expected \"linfold-stats\"", path, text);
    int64_t version = 0, samples = 0, count = 0;
    LF_CALL(lf__read_number_attr(file, "format_version", path, H5T_INTEGER, H5T_NATIVE_INT64,
                                 &version));
    LF_CHECK(version == 1, LF_ERR_FORMAT, "%s: format_version is %lld, this linfold reads 1", path,
             (long long)version);
    LF_CALL(lf__read_number_attr(file, "samples", path, H5T_INTEGER, H5T_NATIVE_INT64, &samples));
    LF_CHECK(samples >= 1, LF_ERR_FORMAT, "%s: samples = %lld, expected >= 1", path,
             (long long)samples);
    LF_CALL(lf__read_string_attr(file, "model_fingerprint", path, text, sizeof text));
    char expected[32];
    snprintf(expected, sizeof expected, "%016llx", (unsigned long long)lf_model_fingerprint(m));
    LF_CHECK(strcmp(text, expected) == 0, LF_ERR_ARG,
             "%s: statistics were computed for another model (fingerprint %s, this model has %s)",
             path, text, expected);
    LF_CHECK(lf__h5_path_exists(file, "/layers") > 0, LF_ERR_FORMAT, "%s: missing group /layers",
             path);
    layers = H5Gopen2(file, "layers", H5P_DEFAULT);
    LF_CALL_H5(layers, "%s: /layers", path);
    snprintf(where, sizeof where, "%s: /layers", path);
    LF_CALL(lf__read_number_attr(layers, "count", where, H5T_INTEGER, H5T_NATIVE_INT64, &count));
    LF_CHECK(count == m->n_layers, LF_ERR_SHAPE, "%s: %lld layers, the model has %d", path,
             (long long)count, m->n_layers);
    LF_CALL(lf_comm_agree(comm, lf_stats_create(m, &s)));
    s->samples = samples;
    for (int i = 0; i < m->n_layers; i++) {
        char name[32], gpath[64];
        snprintf(name, sizeof name, "%d", i);
        snprintf(gpath, sizeof gpath, "/layers/%d", i);
        LF_CHECK(H5Lexists(layers, name, H5P_DEFAULT) > 0, LF_ERR_FORMAT, "%s: missing group %s",
                 path, gpath);
        grp = H5Gopen2(layers, name, H5P_DEFAULT);
        LF_CALL_H5(grp, "%s: %s", path, gpath);
        lf_layer_stats_t *ls = &s->layers[i];
        LF_CALL(read_vector(grp, "positive", path, gpath, ls->n_out, H5T_INTEGER,
                            H5T_NATIVE_INT64, ls->positive));
        LF_CALL(read_vector(grp, "negative", path, gpath, ls->n_out, H5T_INTEGER,
                            H5T_NATIVE_INT64, ls->negative));
        LF_CALL(read_vector(grp, "zmin", path, gpath, ls->n_out, H5T_FLOAT, H5T_NATIVE_FLOAT,
                            ls->zmin));
        LF_CALL(read_vector(grp, "zmax", path, gpath, ls->n_out, H5T_FLOAT, H5T_NATIVE_FLOAT,
                            ls->zmax));
        s->with_sums = H5Lexists(grp, "output_sum", H5P_DEFAULT) > 0;
        if (i > 0)
            LF_CHECK(s->with_sums == (H5Lexists(layers, "0/output_sum", H5P_DEFAULT) > 0),
                     LF_ERR_FORMAT, "%s: %s/output_sum is present in some layers only", path, gpath);
        if (s->with_sums)
            LF_CALL(read_vector(grp, "output_sum", path, gpath, ls->n_out, H5T_FLOAT,
                                H5T_NATIVE_DOUBLE, ls->out_sum));
        for (int64_t j = 0; j < ls->n_out; j++)
            LF_CHECK(ls->positive[j] >= 0 && ls->negative[j] >= 0 &&
                         ls->positive[j] + ls->negative[j] <= samples,
                     LF_ERR_FORMAT, "%s: %s neuron %lld has counts %lld/%lld for %lld samples",
                     path, gpath, (long long)j, (long long)ls->positive[j],
                     (long long)ls->negative[j], (long long)samples);
        lf__close_id(&grp);
    }
    *out = s;
    s = NULL;
cleanup:
    lf_stats_destroy(&s);
    lf__close_id(&grp);
    lf__close_id(&layers);
    lf__close_id(&file);
    return err;
}
