/* Model files (format v1, docs/format.md): reading with validation, writing on rank 0.
 *
 * Reading is collective: every rank opens the file through MPI-IO and reads all of it (models are
 * small next to the sample data and every rank needs the whole model; the MPI-IO layer
 * aggregates the reads). Validation failures come from file contents every rank reads alike, so
 * they just return; allocations can fail on one rank only and are agreed before the next
 * collective read. Writing is done by rank 0 alone through the serial driver, since every rank
 * holds the same model; object timestamps are off, so the same model gives the same bytes
 * whatever the rank count. */
#include <stdlib.h>
#include <string.h>

#include "h5io_impl.h"
#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"
#include "linfold/h5io.h"
#include "linfold/interrupt.h"

/* Layers a file may declare; a bound on the allocation made from /layers' count before any
 * layer group is seen. */
#define LAYERS_MAX 100000

static const lf__h5_want_t WEIGHTS = {H5T_FLOAT, 2, "a float dataset (weights are float32)"};
static const lf__h5_want_t BIASES = {H5T_FLOAT, 1, "a float dataset (biases are float32)"};

/* Reads a whole float dataset on every rank into dst. */
static lf_err_t read_floats(hid_t dset, float *dst, const char *file, const char *path)
{
    lf_err_t err = LF_OK;
    hid_t dxpl = lf__h5_collective_dxpl();
    LF_CALL_H5(dxpl, "transfer list");
    LF_CALL_H5(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, dxpl, dst), "%s: cannot read %s",
               file, path);
cleanup:
    lf__h5_close(&dxpl);
    return err;
}

/* ---------------------------------------------------------------- one layer */

/* Layer i's activation (from the string read for it) and, for leaky_relu, alpha. */
static lf_err_t read_activation(const lf__h5_file_t *f, hid_t grp, int i,
                                const lf__str_attr_t *item, lf_act_t *act, double *alpha)
{
    lf_err_t err = LF_OK;
    const char *name = NULL;
    char where[LF_PATH_MAX + 64];
    LF_CALL(lf__h5_string_value(item, f->path, &name));
    if (lf_act_parse(name, act) != LF_OK) {
        lf_error_clear();
        LF_FAIL(LF_ERR_FORMAT,
                "%s: /layers/%d has unknown activation \"%s\" (expected relu, leaky_relu, "
                "identity, sigmoid, tanh or softmax)",
                f->path, i, name);
    }
    *alpha = 0.0;
    snprintf(where, sizeof where, "%s: /layers/%d", f->path, i);
    if (*act == LF_ACT_LEAKY_RELU)
        LF_CALL(lf__h5_read_number_attr(grp, "alpha", where, H5T_FLOAT, H5T_NATIVE_DOUBLE, alpha));
cleanup:
    return err;
}

/* Reads the 2-D block at path, which must have shape (rows, cols), into dst. */
static lf_err_t read_block(const lf__h5_file_t *f, const char *path, int64_t rows, int64_t cols,
                           float *dst)
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID;
    hsize_t dims[2];
    LF_CALL(lf__h5_open_dataset(f, path, &WEIGHTS, &dset, dims));
    LF_CHECK((int64_t)dims[0] == rows && (int64_t)dims[1] == cols, LF_ERR_SHAPE,
             "%s: %s has shape (%llu, %llu), expected (%lld, %lld)", f->path, path,
             (unsigned long long)dims[0], (unsigned long long)dims[1], (long long)rows,
             (long long)cols);
    LF_CALL(read_floats(dset, dst, f->path, path));
cleanup:
    lf__h5_close(&dset);
    return err;
}

/* The shape of layer i's weight, checked against its predecessor's width. */
static lf_err_t weight_shape(const lf__h5_file_t *f, int i, const lf_model_t *m, int64_t *n_out,
                             int64_t *n_in)
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID;
    hsize_t dims[2];
    char path[64];
    snprintf(path, sizeof path, "/layers/%d/weight", i);
    LF_CALL(lf__h5_open_dataset(f, path, &WEIGHTS, &dset, dims));
    LF_CHECK(dims[0] >= 1 && dims[1] >= 1, LF_ERR_SHAPE,
             "%s: %s has shape (%llu, %llu), expected at least one row and column", f->path, path,
             (unsigned long long)dims[0], (unsigned long long)dims[1]);
    int64_t expected = i == 0 ? (int64_t)dims[1] : m->layers[i - 1].n_out;
    LF_CHECK((int64_t)dims[1] == expected, LF_ERR_SHAPE,
             "%s: %s has shape (%llu, %llu), expected (%llu, %lld): its inputs are the %lld "
             "outputs of /layers/%d",
             f->path, path, (unsigned long long)dims[0], (unsigned long long)dims[1],
             (unsigned long long)dims[0], (long long)expected, (long long)expected, i - 1);
    *n_out = (int64_t)dims[0];
    *n_in = (int64_t)dims[1];
cleanup:
    lf__h5_close(&dset);
    return err;
}

/* Parses a skip block name: "input" or a canonical non-negative decimal. */
static bool parse_src(const char *name, int *src)
{
    if (strcmp(name, "input") == 0) {
        *src = LF_SRC_INPUT;
        return true;
    }
    if (!name[0] || (name[0] == '0' && name[1]) || strlen(name) > 9)
        return false;
    for (const char *p = name; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    *src = atoi(name);
    return true;
}

/* Collects the sources of layer i's skip group into srcs (ascending); *n receives their count. A
 * layer has at most i skip sources (the input and layers 0..i-2), which bounds srcs. */
static lf_err_t list_skips(const lf__h5_file_t *f, int i, hid_t skip, int *srcs, int *n)
{
    lf_err_t err = LF_OK;
    H5G_info_t ginfo;
    LF_CALL_H5(H5Gget_info(skip, &ginfo), "%s: /layers/%d/skip", f->path, i);
    char allowed[64];
    if (i >= 3)
        snprintf(allowed, sizeof allowed, "'input' or a layer 0 to %d", i - 2);
    else if (i == 2)
        snprintf(allowed, sizeof allowed, "'input' or layer 0");
    else
        snprintf(allowed, sizeof allowed, "'input' only");
    LF_CHECK(ginfo.nlinks <= (hsize_t)i, LF_ERR_FORMAT,
             "%s: /layers/%d/skip has %llu entries; a skip block of layer %d may read %s", f->path,
             i, (unsigned long long)ginfo.nlinks, i, allowed);
    *n = 0;
    for (hsize_t k = 0; k < ginfo.nlinks; k++) {
        char link[64] = "";
        ssize_t len = H5Lget_name_by_idx(skip, ".", H5_INDEX_NAME, H5_ITER_INC, k, link,
                                         sizeof link, H5P_DEFAULT);
        LF_CALL_H5(len, "%s: /layers/%d/skip entry %llu", f->path, i, (unsigned long long)k);
        int src = 0;
        LF_CHECK(len < (ssize_t)sizeof link && parse_src(link, &src), LF_ERR_FORMAT,
                 "%s: /layers/%d/skip/%s: skip source must be 'input' or a layer index", f->path,
                 i, link);
        LF_CHECK(src < i - 1, LF_ERR_FORMAT,
                 "%s: /layers/%d/skip/%s: a skip block of layer %d may read %s (layer %d feeds its "
                 "weight; later layers are not computed yet)",
                 f->path, i, link, i, allowed, i - 1);
        srcs[(*n)++] = src;
    }
    /* H5_INDEX_NAME orders "10" before "2": sort numerically ("input" is -1, first). */
    for (int a = 1; a < *n; a++)
        for (int b = a; b > 0 && srcs[b - 1] > srcs[b]; b--) {
            int t = srcs[b];
            srcs[b] = srcs[b - 1];
            srcs[b - 1] = t;
        }
cleanup:
    return err;
}

static lf_err_t read_skips(MPI_Comm comm, const lf__h5_file_t *f, int i, lf_model_t *m)
{
    lf_err_t err = LF_OK;
    hid_t skip = H5I_INVALID_HID;
    int *srcs = NULL, n = 0;
    char path[64];
    snprintf(path, sizeof path, "/layers/%d/skip", i);
    lf_err_t walk = LF_OK;
    int present = lf__h5_exists(f, path, &walk);
    LF_CALL(walk);
    if (!present)
        return LF_OK;
    LF_CALL(lf__h5_open_object(f, path, H5O_TYPE_GROUP, &skip));
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)i + 1, sizeof *srcs, (void **)&srcs)));
    LF_CALL(list_skips(f, i, skip, srcs, &n));
    for (int k = 0; k < n; k++) {
        char bpath[64];
        lf_model_block_path(bpath, sizeof bpath, i, srcs[k]);
        lf_block_t *blk = NULL;
        LF_CALL(lf_comm_agree(comm, lf_model_block_ensure(m, i, srcs[k], &blk)));
        LF_CALL(read_block(f, bpath, m->layers[i].n_out, lf_model_width(m, srcs[k]), blk->w));
    }
cleanup:
    lf_free(srcs);
    lf__h5_close(&skip);
    return err;
}

static lf_err_t read_layer(MPI_Comm comm, const lf__h5_file_t *f, int i,
                           const lf__str_attr_t *activation, lf_model_t *m)
{
    lf_err_t err = LF_OK;
    hid_t grp = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    char path[64];
    snprintf(path, sizeof path, "/layers/%d", i);
    LF_CALL(lf__h5_open_object(f, path, H5O_TYPE_GROUP, &grp));
    lf_act_t act;
    double alpha = 0.0;
    LF_CALL(read_activation(f, grp, i, activation, &act, &alpha));
    int64_t n_out = 0, n_in = 0;
    LF_CALL(weight_shape(f, i, m, &n_out, &n_in));
    if (i == 0)
        m->n_in = n_in;
    LF_CALL(lf_comm_agree(comm, lf_model_layer_init(m, i, n_out, act, (float)alpha)));
    snprintf(path, sizeof path, "/layers/%d/weight", i);
    LF_CALL(read_block(f, path, n_out, n_in, lf_model_block(m, i, i - 1)->w));

    hsize_t dims[2];
    snprintf(path, sizeof path, "/layers/%d/bias", i);
    LF_CALL(lf__h5_open_dataset(f, path, &BIASES, &dset, dims));
    LF_CHECK((int64_t)dims[0] == n_out, LF_ERR_SHAPE, "%s: %s has shape (%llu), expected (%lld)",
             f->path, path, (unsigned long long)dims[0], (long long)n_out);
    LF_CALL(read_floats(dset, m->layers[i].bias, f->path, path));
    LF_CALL(read_skips(comm, f, i, m));
cleanup:
    lf__h5_close(&dset);
    lf__h5_close(&grp);
    return err;
}

/* ---------------------------------------------------------------- the file */

/* The root attributes: format (via the string reader), format_version, /layers' count. */
static lf_err_t read_header(MPI_Comm comm, const lf__h5_file_t *f, int64_t *count)
{
    lf_err_t err = LF_OK;
    hid_t layers = H5I_INVALID_HID;
    lf__str_attr_t format = {.object = "/", .name = "format"};
    const char *value = NULL;
    char where[LF_PATH_MAX + 16];
    LF_CALL(lf__h5_read_strings(comm, f, &format, 1));
    LF_CALL(lf__h5_string_value(&format, f->path, &value));
    LF_CHECK(strcmp(value, "linfold-mlp") == 0, LF_ERR_FORMAT,
             "%s: attribute 'format' is \"%s\", expected \"linfold-mlp\"", f->path, value);
    int64_t version = 0;
    LF_CALL(lf__h5_read_number_attr(f->id, "format_version", f->path, H5T_INTEGER,
                                    H5T_NATIVE_INT64, &version));
    LF_CHECK(version == 1, LF_ERR_FORMAT, "%s: format_version is %lld, this linfold reads 1",
             f->path, (long long)version);
    LF_CALL(lf__h5_open_object(f, "/layers", H5O_TYPE_GROUP, &layers));
    snprintf(where, sizeof where, "%s: /layers", f->path);
    LF_CALL(lf__h5_read_number_attr(layers, "count", where, H5T_INTEGER, H5T_NATIVE_INT64, count));
    LF_CHECK(*count >= 1 && *count <= LAYERS_MAX, LF_ERR_FORMAT,
             "%s: /layers count is %lld, expected 1 to %d", f->path, (long long)*count,
             LAYERS_MAX);
cleanup:
    lf__h5_close(&layers);
    return err;
}

/* Every layer's activation, read in one go (one child process for the whole file). */
static lf_err_t read_activations(MPI_Comm comm, const lf__h5_file_t *f, int count,
                                 lf__str_attr_t **items, char **paths)
{
    lf_err_t err = LF_OK;
    enum { PATH_BYTES = 24 };
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)count, sizeof **items, (void **)items)));
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)count, PATH_BYTES, (void **)paths)));
    for (int i = 0; i < count; i++) {
        char *p = *paths + (size_t)i * PATH_BYTES;
        snprintf(p, PATH_BYTES, "/layers/%d", i);
        (*items)[i] = (lf__str_attr_t){.object = p, .name = "activation"};
    }
    LF_CALL(lf__h5_read_strings(comm, f, *items, count));
cleanup:
    return err;
}

lf_err_t lf_h5io_read_model(MPI_Comm comm, const char *path, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    lf__h5_file_t f = LF__H5_FILE_NONE;
    lf_model_t *m = NULL;
    lf__str_attr_t *activations = NULL;
    char *paths = NULL;
    *out = NULL;
    LF_CALL(lf__h5_open_file(comm, path, &f));
    int64_t count = 0;
    LF_CALL(read_header(comm, &f, &count));
    LF_CALL(read_activations(comm, &f, (int)count, &activations, &paths));
    LF_CALL(lf_comm_agree(comm, lf_model_create(1, (int)count, &m)));
    for (int i = 0; i < (int)count; i++) {
        /* A large model takes a while to read: a signal stops it between layers. */
        LF_CALL(lf_comm_agree(comm, lf_interrupt_check("reading the model")));
        LF_CALL(read_layer(comm, &f, i, &activations[i], m));
    }
    LF_CALL(lf_model_validate(m, path));
    *out = m;
    m = NULL;
cleanup:
    lf_free(paths);
    lf_free(activations);
    lf_model_destroy(&m);
    lf__h5_close(&f.id); /* read-only: nothing to flush, nothing to report */
    return err;
}

/* ---------------------------------------------------------------- writing */

static lf_err_t write_layer(hid_t layers, const lf_model_t *m, int i)
{
    lf_err_t err = LF_OK;
    hid_t grp = H5I_INVALID_HID, skip = H5I_INVALID_HID;
    const lf_layer_t *L = &m->layers[i];
    char name[32];
    snprintf(name, sizeof name, "%d", i);
    LF_CALL(lf__h5_create_group(layers, name, &grp));
    LF_CALL(lf__h5_write_string_attr(grp, "activation", lf_act_name(L->act)));
    if (L->act == LF_ACT_LEAKY_RELU) {
        double alpha = L->alpha;
        LF_CALL(lf__h5_write_scalar_attr(grp, "alpha", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &alpha));
    }
    for (int b = 0; b < L->n_blocks; b++) {
        const lf_block_t *blk = &L->blocks[b];
        hsize_t dims[2] = {(hsize_t)L->n_out, (hsize_t)lf_model_width(m, blk->src)};
        if (blk->src == i - 1) {
            LF_CALL(lf__h5_write_dataset(grp, "weight", 2, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                                         blk->w));
            continue;
        }
        if (skip < 0)
            LF_CALL(lf__h5_create_group(grp, "skip", &skip));
        char src[32];
        if (blk->src == LF_SRC_INPUT)
            snprintf(src, sizeof src, "input");
        else
            snprintf(src, sizeof src, "%d", blk->src);
        LF_CALL(lf__h5_write_dataset(skip, src, 2, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, blk->w));
    }
    hsize_t nb = (hsize_t)L->n_out;
    LF_CALL(lf__h5_write_dataset(grp, "bias", 1, &nb, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, L->bias));
cleanup:
    lf__h5_close(&skip);
    lf__h5_close(&grp);
    return err;
}

typedef struct {
    const lf_model_t *m;
    const lf_attr_t *attrs;
    int n_attrs;
} model_file_t;

static lf_err_t write_model_file(const char *tmp, const char *path, const void *ctx)
{
    lf_err_t err = LF_OK;
    const model_file_t *mf = ctx;
    hid_t file = H5I_INVALID_HID, layers = H5I_INVALID_HID;
    LF_CALL(lf__h5_memory_file_create(tmp, &file));
    LF_CALL(lf__h5_write_string_attr(file, "format", "linfold-mlp"));
    int64_t version = 1, count = mf->m->n_layers;
    LF_CALL(lf__h5_write_scalar_attr(file, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                     &version));
    for (int k = 0; k < mf->n_attrs; k++)
        LF_CALL(lf__h5_write_string_attr(file, mf->attrs[k].key, mf->attrs[k].value));
    LF_CALL(lf__h5_create_group(file, "layers", &layers));
    LF_CALL(lf__h5_write_scalar_attr(layers, "count", H5T_STD_I64LE, H5T_NATIVE_INT64, &count));
    for (int i = 0; i < mf->m->n_layers; i++)
        LF_CALL(write_layer(layers, mf->m, i));
    lf__h5_close(&layers);
    LF_CALL(lf__h5_memory_file_save(&file, tmp, path));
cleanup:
    lf__h5_close(&layers);
    lf__h5_close(&file);
    return err;
}

lf_err_t lf_h5io_write_model(MPI_Comm comm, const char *path, const lf_model_t *m,
                             const lf_attr_t *attrs, int n_attrs)
{
    lf_err_t err = LF_OK;
    /* What linfold writes it must be able to read back: no NaN, no broken structure. */
    LF_CALL(lf_model_validate(m, path));
    model_file_t mf = {.m = m, .attrs = attrs, .n_attrs = n_attrs};
    LF_CALL(lf_atomic_write_rank0(comm, path, write_model_file, &mf));
cleanup:
    return err;
}
