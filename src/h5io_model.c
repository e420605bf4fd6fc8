/* Model files (format v1, docs/format.md): reading in a reader process, writing on rank 0.
 *
 * Reading: rank 0 forks a reader process (sandbox_impl.h) that opens the file with the serial
 * driver, checks every object, and sends the model back through a pipe in a plain layout, the
 * values strip by strip as it reads them (the wire, below); rank 0 checks that what arrives is no larger than the file can justify,
 * validates it again, and broadcasts it (lf_h5io_read_model_shared: rank 0 receives it straight
 * into its node's shared window, and only the other nodes' first ranks receive the broadcast).
 * No rank of the job ever runs HDF5 on a model file it did
 * not write, so a corrupted or hostile file is an error message, never a crash, a hang or an
 * unbounded allocation in the job. Writing is done by rank 0 alone, since every rank holds the
 * same model; object timestamps are off, so the same model gives the same bytes whatever the rank
 * count. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "h5io_impl.h"
#include "sandbox_impl.h"
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

/* ---------------------------------------------------------------- one layer (reader process) */

/* Layer i's activation and, for leaky_relu, alpha. */
static lf_err_t read_activation(const lf__h5_file_t *f, hid_t grp, int i, lf_act_t *act,
                                double *alpha)
{
    lf_err_t err = LF_OK;
    const char *name = NULL;
    char where[LF_PATH_MAX + 64], object[32];
    snprintf(object, sizeof object, "/layers/%d", i);
    lf__str_attr_t item = {.object = object, .name = "activation"};
    lf__h5_read_string(f->id, &item);
    LF_CALL(lf__h5_string_value(&item, f->path, &name));
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

/* Checks that the 2-D block at path has shape (rows, cols); its values come later. */
static lf_err_t check_block(const lf__h5_file_t *f, const char *path, int64_t rows, int64_t cols)
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID;
    hsize_t dims[2];
    LF_CALL(lf__h5_open_dataset(f, path, &WEIGHTS, &dset, dims));
    LF_CHECK((int64_t)dims[0] == rows && (int64_t)dims[1] == cols, LF_ERR_SHAPE,
             "%s: %s has shape (%llu, %llu), expected (%lld, %lld)", f->path, path,
             (unsigned long long)dims[0], (unsigned long long)dims[1], (long long)rows,
             (long long)cols);
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

/* Appends block src to layer i of a skeleton (a model without arrays); sources ascend. */
static lf_err_t skeleton_block(lf_model_t *m, int i, int src, const char *path)
{
    lf_err_t err = LF_OK;
    lf_layer_t *L = &m->layers[i];
    LF_CHECK(L->n_blocks == 0 || L->blocks[L->n_blocks - 1].src < src, LF_ERR_INTERNAL,
             "%s: the reader process sent a malformed block", path);
    LF_CALL(lf_realloc((size_t)L->n_blocks + 1, sizeof *L->blocks, (void **)&L->blocks));
    L->blocks[L->n_blocks++] = (lf_block_t){.src = src, .w = NULL};
cleanup:
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
                 "%s: /layers/%d/skip/%s: skip source must be 'input' or a layer index", f->path, i,
                 link);
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

static lf_err_t read_skip_structure(const lf__h5_file_t *f, int i, lf_model_t *m)
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
    LF_CALL(lf_calloc((size_t)i + 1, sizeof *srcs, (void **)&srcs));
    LF_CALL(list_skips(f, i, skip, srcs, &n));
    for (int k = 0; k < n; k++) {
        char bpath[64];
        lf_model_block_path(bpath, sizeof bpath, i, srcs[k]);
        LF_CALL(check_block(f, bpath, m->layers[i].n_out, lf_model_width(m, srcs[k])));
        LF_CALL(skeleton_block(m, i, srcs[k], f->path));
    }
cleanup:
    lf_free(srcs);
    lf__h5_close(&skip);
    return err;
}

/* Layer i's structure into the skeleton m: activation, shapes and skip sources, every dataset
 * opened and checked; no values (send_values streams them). */
static lf_err_t read_layer_structure(const lf__h5_file_t *f, int i, lf_model_t *m)
{
    lf_err_t err = LF_OK;
    hid_t grp = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    char path[64];
    snprintf(path, sizeof path, "/layers/%d", i);
    LF_CALL(lf__h5_open_object(f, path, H5O_TYPE_GROUP, &grp));
    lf_act_t act;
    double alpha = 0.0;
    LF_CALL(read_activation(f, grp, i, &act, &alpha));
    int64_t n_out = 0, n_in = 0;
    LF_CALL(weight_shape(f, i, m, &n_out, &n_in));
    if (i == 0)
        m->n_in = n_in;
    m->layers[i].n_out = n_out;
    m->layers[i].act = act;
    m->layers[i].alpha = (float)alpha;

    hsize_t dims[2];
    snprintf(path, sizeof path, "/layers/%d/bias", i);
    LF_CALL(lf__h5_open_dataset(f, path, &BIASES, &dset, dims));
    LF_CHECK((int64_t)dims[0] == n_out, LF_ERR_SHAPE, "%s: %s has shape (%llu), expected (%lld)",
             f->path, path, (unsigned long long)dims[0], (long long)n_out);
    LF_CALL(read_skip_structure(f, i, m));
    /* The weight (source i - 1) is the last block: sources ascend. */
    LF_CALL(skeleton_block(m, i, i - 1, f->path));
cleanup:
    lf__h5_close(&dset);
    lf__h5_close(&grp);
    return err;
}

/* The root attributes: format, format_version, /layers' count. */
static lf_err_t read_header(const lf__h5_file_t *f, int64_t *count)
{
    lf_err_t err = LF_OK;
    hid_t layers = H5I_INVALID_HID;
    lf__str_attr_t format = {.object = "/", .name = "format"};
    const char *value = NULL;
    char where[LF_PATH_MAX + 16];
    lf__h5_read_string(f->id, &format);
    LF_CALL(lf__h5_string_value(&format, f->path, &value));
    LF_CHECK(strcmp(value, "linfold-mlp") == 0, LF_ERR_FORMAT,
             "%s: attribute 'format' is \"%s\", expected \"linfold-mlp\"", f->path, value);
    int64_t version = 0;
    LF_CALL(lf__h5_read_number_attr(f->id, "format_version", f->path, H5T_INTEGER, H5T_NATIVE_INT64,
                                    &version));
    LF_CHECK(version == 1, LF_ERR_FORMAT, "%s: format_version is %lld, this linfold reads 1",
             f->path, (long long)version);
    LF_CALL(lf__h5_open_object(f, "/layers", H5O_TYPE_GROUP, &layers));
    snprintf(where, sizeof where, "%s: /layers", f->path);
    LF_CALL(lf__h5_read_number_attr(layers, "count", where, H5T_INTEGER, H5T_NATIVE_INT64, count));
    LF_CHECK(*count >= 1 && *count <= LAYERS_MAX, LF_ERR_FORMAT,
             "%s: /layers count is %lld, expected 1 to %d", f->path, (long long)*count, LAYERS_MAX);
cleanup:
    lf__h5_close(&layers);
    return err;
}

/* Reads and checks the structure of the model file in this process: a skeleton (every array
 * NULL), with f left open for the values. */
static lf_err_t read_structure_here(const char *path, lf__h5_file_t *f, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    *out = NULL;
    LF_CALL(lf__h5_open_file_serial(path, f));
    int64_t count = 0;
    LF_CALL(read_header(f, &count));
    LF_CALL(lf_model_create(1, (int)count, &m));
    for (int i = 0; i < (int)count; i++)
        LF_CALL(read_layer_structure(f, i, m));
    *out = m;
    m = NULL;
cleanup:
    lf_model_destroy(&m);
    return err;
}

/* ---------------------------------------------------------------- the wire
 *
 * The structure first: int64 n_in, int32 n_layers; per layer int64 n_out, int32 act, float
 * alpha, int32 n_blocks and n_blocks int32 sources. Then the values, per layer the bias (n_out
 * floats) and the blocks in order (n_out x width floats each, row-major), each array as strips
 * of whole rows: a status word (lf__sandbox_send_status: 0, or an error and its message), an
 * int64 row count and the rows. The reader holds one strip at a time, never the model, so a
 * model as large as a node's memory still passes through it; the receiver writes each strip
 * straight into place. Native byte order: both ends are one program. */

enum { STRIP_BYTES = 8 << 20 };

static bool send(const void *p, size_t n) { return lf__sandbox_write(p, n); }

static lf_err_t send_structure(const lf_model_t *m)
{
    bool ok = send(&m->n_in, sizeof m->n_in) && send(&m->n_layers, sizeof m->n_layers);
    for (int i = 0; ok && i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        int32_t act = (int32_t)L->act, n_blocks = L->n_blocks;
        ok = send(&L->n_out, sizeof L->n_out) && send(&act, sizeof act) &&
             send(&L->alpha, sizeof L->alpha) && send(&n_blocks, sizeof n_blocks);
        for (int b = 0; ok && b < L->n_blocks; b++) {
            int32_t src = L->blocks[b].src;
            ok = send(&src, sizeof src);
        }
    }
    return ok ? LF_OK : LF_ERR_IO;
}

/* Rows per strip of a (rows, cols) dataset: about STRIP_BYTES, and for a chunked dataset whole
 * bands of chunk rows, so that no chunk is decoded twice. */
static int64_t strip_rows(hid_t dset, int64_t rows, int64_t cols)
{
    int64_t band = 1;
    hid_t dcpl = H5Dget_create_plist(dset);
    hsize_t chunk[2] = {1, 1};
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 2, chunk) >= 1)
        band = chunk[0] >= 1 && chunk[0] < (hsize_t)rows ? (int64_t)chunk[0] : rows;
    lf__h5_close(&dcpl);
    H5Eclear2(H5E_DEFAULT);
    int64_t bands = STRIP_BYTES / (band * cols * (int64_t)sizeof(float));
    int64_t r = band * (bands > 1 ? bands : 1);
    return r < rows ? r : rows;
}

/* Reads rows [row0, row0 + count) of a (rows, cols) dataset (1-D when cols is 0) into buf. */
static lf_err_t read_strip(const lf__h5_file_t *f, hid_t dset, const char *path, int64_t row0,
                           int64_t count, int64_t cols, float *buf)
{
    lf_err_t err = LF_OK;
    hid_t fspace = H5Dget_space(dset), mspace = H5I_INVALID_HID;
    LF_CALL_H5(fspace, "%s: %s space", f->path, path);
    LF_CALL(
        lf__h5_select_rows(fspace, cols > 0 ? 2 : 1, row0, count, cols > 0 ? cols : 1, &mspace));
    LF_CALL_H5(H5Dread(dset, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, buf),
               "%s: cannot read %s", f->path, path);
cleanup:
    lf__h5_close(&mspace);
    lf__h5_close(&fspace);
    return err;
}

/* HDF5 reads past the end of a file that shrank as zeros, without an error: after every strip
 * the file must still be as long as it was when it was opened (the size every check used). */
static lf_err_t still_whole(const lf__h5_file_t *f)
{
    lf_err_t err = LF_OK;
    struct stat st;
    LF_CHECK(stat(f->path, &st) == 0, LF_ERR_IO, "%s: cannot check its size (%s)", f->path,
             strerror(errno));
    LF_CHECK((int64_t)st.st_size >= f->size, LF_ERR_IO,
             "%s: the file shrank from %lld to %lld bytes while it was being read (truncated by "
             "another process?); its data can no longer be trusted",
             f->path, (long long)f->size, (long long)st.st_size);
cleanup:
    return err;
}

/* Streams one array of the model: (rows, cols) at path, 1-D when cols is 0. An error is sent in
 * place of the strip that failed, and ends the stream. */
static lf_err_t send_array(const lf__h5_file_t *f, const char *path, int64_t rows, int64_t cols,
                           float **buf, size_t *cap)
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID;
    hsize_t dims[2];
    int64_t width = cols > 0 ? cols : 1, step = 0;
    err = lf__h5_open_dataset(f, path, cols > 0 ? &WEIGHTS : &BIASES, &dset, dims);
    if (err == LF_OK)
        step = strip_rows(dset, rows, width);
    size_t need = (size_t)(step * width) * sizeof(float);
    if (err == LF_OK && need > *cap) {
        lf_free(*buf);
        *buf = NULL;
        *cap = 0;
        err = lf_malloc((size_t)(step * width), sizeof(float), (void **)buf);
        *cap = err == LF_OK ? need : 0;
    }
    if (err != LF_OK)
        lf__sandbox_send_status(err);
    for (int64_t r = 0; err == LF_OK && r < rows; r += step) {
        int64_t n = rows - r < step ? rows - r : step;
        err = read_strip(f, dset, path, r, n, cols, *buf);
        if (err == LF_OK)
            err = still_whole(f);
        lf__sandbox_send_status(err);
        if (err == LF_OK &&
            !(send(&n, sizeof n) && send(*buf, (size_t)(n * width) * sizeof(float))))
            err = LF_ERR_IO;
    }
    lf__h5_close(&dset);
    return err;
}

static lf_err_t send_values(const lf__h5_file_t *f, const lf_model_t *m)
{
    lf_err_t err = LF_OK;
    float *buf = NULL;
    size_t cap = 0;
    char path[64];
    for (int i = 0; err == LF_OK && i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        snprintf(path, sizeof path, "/layers/%d/bias", i);
        err = send_array(f, path, L->n_out, 0, &buf, &cap);
        for (int b = 0; err == LF_OK && b < L->n_blocks; b++) {
            lf_model_block_path(path, sizeof path, i, L->blocks[b].src);
            err = send_array(f, path, L->n_out, lf_model_width(m, L->blocks[b].src), &buf, &cap);
        }
    }
    lf_free(buf);
    return err;
}

typedef struct {
    const char *path;
} model_job_t;

static lf_err_t model_reader(void *ctx)
{
    const model_job_t *job = ctx;
    lf__h5_file_t f = LF__H5_FILE_NONE;
    lf_model_t *m = NULL;
    lf_err_t err = read_structure_here(job->path, &f, &m);
    lf__sandbox_send_status(err);
    if (err == LF_OK)
        err = send_structure(m);
    if (err == LF_OK)
        err = send_values(&f, m);
    lf_model_destroy(&m);
    lf__h5_close(&f.id);
    return err;
}

/* Receives the structure of a model, checking every figure before it sizes an allocation: no
 * more parameters than the file can hold (the reader's rule, 1,032 x its bytes plus 1 MiB per
 * dataset) and a well-formed block list. With allocate unset the model is a skeleton: structure
 * only, every array NULL (the values go into a shared window, lf_model_share_filled). */
static lf_err_t receive_structure(lf__sandbox_t *sb, const char *path, int64_t file_bytes,
                                  bool allocate, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    int64_t n_in = 0, floats = 0;
    int32_t n_layers = 0;
    LF_CALL(lf__sandbox_read(sb, &n_in, sizeof n_in));
    LF_CALL(lf__sandbox_read(sb, &n_layers, sizeof n_layers));
    LF_CHECK(n_in >= 1 && n_layers >= 1 && n_layers <= LAYERS_MAX, LF_ERR_INTERNAL,
             "%s: the reader process sent a malformed model", path);
    int64_t budget = ((int64_t)1 << 20) * 3 * n_layers +
                     (file_bytes < INT64_MAX / 1032 ? 1032 * file_bytes : INT64_MAX / 2);
    LF_CALL(lf_model_create(n_in, n_layers, &m));
    for (int i = 0; i < n_layers; i++) {
        int64_t n_out = 0;
        int32_t act = 0, n_blocks = 0;
        float alpha = 0.0f;
        LF_CALL(lf__sandbox_read(sb, &n_out, sizeof n_out));
        LF_CALL(lf__sandbox_read(sb, &act, sizeof act));
        LF_CALL(lf__sandbox_read(sb, &alpha, sizeof alpha));
        LF_CALL(lf__sandbox_read(sb, &n_blocks, sizeof n_blocks));
        LF_CHECK(n_out >= 1 && act >= 0 && act <= LF_ACT_SOFTMAX && n_blocks >= 1 &&
                     n_blocks <= i + 1,
                 LF_ERR_INTERNAL, "%s: the reader process sent a malformed layer %d", path, i);
        floats += n_out;
        if (allocate) {
            LF_CALL(lf_model_layer_init(m, i, n_out, (lf_act_t)act, alpha));
        } else {
            m->layers[i].n_out = n_out;
            m->layers[i].act = (lf_act_t)act;
            m->layers[i].alpha = alpha;
        }
        for (int b = 0; b < n_blocks; b++) {
            int32_t src = 0;
            LF_CALL(lf__sandbox_read(sb, &src, sizeof src));
            LF_CHECK(src >= LF_SRC_INPUT && src < i, LF_ERR_INTERNAL,
                     "%s: the reader process sent a malformed block", path);
            int64_t width = lf_model_width(m, src);
            LF_CHECK(n_out <= (budget / 4 - floats) / width, LF_ERR_FORMAT,
                     "%s: the model holds more parameters than the file can justify", path);
            floats += n_out * width;
            lf_block_t *blk = NULL;
            if (allocate)
                LF_CALL(lf_model_block_ensure(m, i, src, &blk));
            else
                LF_CALL(skeleton_block(m, i, src, path));
        }
    }
    *out = m;
    m = NULL;
cleanup:
    lf_model_destroy(&m);
    return err;
}

/* Receives one array of (rows, width) floats into dst, strip by strip (see the wire above). */
static lf_err_t receive_array(lf__sandbox_t *sb, const char *path, float *dst, int64_t rows,
                              int64_t width)
{
    lf_err_t err = LF_OK;
    for (int64_t r = 0; r < rows;) {
        int64_t n = 0;
        LF_CALL(lf__sandbox_receive_status(sb));
        LF_CALL(lf__sandbox_read(sb, &n, sizeof n));
        LF_CHECK(n >= 1 && n <= rows - r, LF_ERR_INTERNAL,
                 "%s: the reader process sent a malformed strip", path);
        LF_CALL(lf__sandbox_read(sb, dst + r * width, (size_t)(n * width) * sizeof(float)));
        r += n;
    }
cleanup:
    return err;
}

static lf_err_t receive_values(lf__sandbox_t *sb, const char *path, lf_model_t *m)
{
    lf_err_t err = LF_OK;
    for (int i = 0; i < m->n_layers; i++) {
        lf_layer_t *L = &m->layers[i];
        LF_CALL(receive_array(sb, path, L->bias, L->n_out, 1));
        for (int b = 0; b < L->n_blocks; b++)
            LF_CALL(receive_array(sb, path, L->blocks[b].w, L->n_out,
                                  lf_model_width(m, L->blocks[b].src)));
    }
cleanup:
    return err;
}

/* Rank 0: the model through a reader process. */
static lf_err_t read_through_reader(const char *path, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    lf__sandbox_t *sb = NULL;
    lf_model_t *m = NULL;
    int64_t size = 0;
    *out = NULL;
    LF_CALL(lf__h5_check_readable(path, &size));
    lf__sandbox_limits_t limits = lf__sandbox_limits_for(size);
    model_job_t job = {.path = path};
    LF_CALL(lf__sandbox_start(path, &limits, model_reader, &job, &sb));
    LF_CALL(lf__sandbox_receive_status(sb));
    LF_CALL(receive_structure(sb, path, size, true, &m));
    LF_CALL(receive_values(sb, path, m));
    LF_CALL(lf__sandbox_finish(&sb));
    /* Defence in depth: what arrives is checked as if it came from a file. */
    LF_CALL(lf_model_validate(m, path));
    *out = m;
    m = NULL;
cleanup:
    lf__sandbox_finish(&sb);
    lf_model_destroy(&m);
    return err;
}

lf_err_t lf_h5io_read_model(MPI_Comm comm, const char *path, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    int rank = 0;
    *out = NULL;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_comm_agree(comm, rank == 0 ? read_through_reader(path, &m) : LF_OK));
    LF_CALL(lf_model_bcast(comm, 0, &m));
    *out = m;
    m = NULL;
cleanup:
    lf_model_destroy(&m);
    return err;
}

/* ---------------------------------------------------------------- one copy per node */

/* Rank 0: starts the reader process and receives the model's structure as a skeleton; the values
 * stay in the pipe for fill_from_reader. */
static lf_err_t start_reader(const char *path, lf__sandbox_t **sb, lf_model_t **skeleton)
{
    lf_err_t err = LF_OK;
    int64_t size = 0;
    LF_CALL(lf__h5_check_readable(path, &size));
    lf__sandbox_limits_t limits = lf__sandbox_limits_for(size);
    model_job_t job = {.path = path};
    LF_CALL(lf__sandbox_start(path, &limits, model_reader, &job, sb));
    LF_CALL(lf__sandbox_receive_status(*sb));
    LF_CALL(receive_structure(*sb, path, size, false, skeleton));
cleanup:
    return err;
}

typedef struct {
    lf__sandbox_t *sb;
    const char *path;
} shared_fill_t;

/* Rank 0, inside lf_model_share_filled: the values straight from the pipe into the node's
 * window (no private copy first, so rank 0 never holds the model twice), then the same checks as
 * read_through_reader. */
static lf_err_t fill_from_reader(void *ctx, lf_model_t *dst)
{
    lf_err_t err = LF_OK;
    shared_fill_t *job = ctx;
    LF_CALL(receive_values(job->sb, job->path, dst));
    LF_CALL(lf__sandbox_finish(&job->sb));
    LF_CALL(lf_model_validate(dst, job->path));
cleanup:
    return err;
}

lf_err_t lf_h5io_read_model_shared(MPI_Comm comm, const char *path, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    lf_model_t *skeleton = NULL;
    shared_fill_t job = {.sb = NULL, .path = path};
    int rank = 0;
    *out = NULL;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_comm_agree(comm, rank == 0 ? start_reader(path, &job.sb, &skeleton) : LF_OK));
    LF_CALL(lf_model_share_filled(comm, 0, skeleton, fill_from_reader, &job, out));
cleanup:
    lf__sandbox_finish(&job.sb);
    lf_model_destroy(&skeleton);
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

/* Rank 0 of lf_h5io_rewrite_layers: one existing array of the file, checked against its shape. */
static lf_err_t rewrite_array(hid_t file, const char *path, const char *obj, int rank,
                              const hsize_t *dims, const float *v)
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    hsize_t have[2] = {0, 0};
    dset = H5Dopen2(file, obj, H5P_DEFAULT);
    LF_CALL_H5(dset, "%s: cannot open %s", path, obj);
    space = H5Dget_space(dset);
    LF_CALL_H5(space, "%s: dataspace of %s", path, obj);
    LF_CHECK(H5Sget_simple_extent_ndims(space) == rank &&
                 H5Sget_simple_extent_dims(space, have, NULL) == rank && have[0] == dims[0] &&
                 (rank == 1 || have[1] == dims[1]),
             LF_ERR_INTERNAL, "%s: %s does not have the shape of the model being written", path,
             obj);
    LF_CALL_H5(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v),
               "%s: cannot write %s", path, obj);
cleanup:
    lf__h5_close(&space);
    lf__h5_close(&dset);
    return err;
}

static lf_err_t rewrite_file(const char *path, const lf_model_t *m, const bool *layers)
{
    lf_err_t err = LF_OK;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID;
    char obj[64];
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    LF_CALL_H5(fapl, "%s: H5Pcreate", path);
    /* One process writes: the POSIX driver, no locks (they fail on some parallel file systems;
     * the file is a temporary nobody else has open). The arrays were allocated when the file was
     * written (lf__h5_create_dataset_early), so the writes below never extend it. */
    LF_CALL_H5(H5Pset_fapl_sec2(fapl), "%s: POSIX driver", path);
    LF_CALL_H5(H5Pset_file_locking(fapl, 0, 1), "%s: file locking", path);
    file = H5Fopen(path, H5F_ACC_RDWR, fapl);
    LF_CALL_H5(file, "%s: cannot open for writing", path);
    for (int i = 0; i < m->n_layers; i++) {
        if (!layers[i])
            continue;
        const lf_layer_t *L = &m->layers[i];
        for (int b = 0; b < L->n_blocks; b++) {
            hsize_t dims[2] = {(hsize_t)L->n_out, (hsize_t)lf_model_width(m, L->blocks[b].src)};
            lf_model_block_path(obj, sizeof obj, i, L->blocks[b].src);
            LF_CALL(rewrite_array(file, path, obj, 2, dims, L->blocks[b].w));
        }
        hsize_t nb = (hsize_t)L->n_out;
        snprintf(obj, sizeof obj, "/layers/%d/bias", i);
        LF_CALL(rewrite_array(file, path, obj, 1, &nb, L->bias));
    }
    LF_CALL(lf__h5_close_file(&file, path));
cleanup:
    lf__h5_close(&file);
    lf__h5_close(&fapl);
    return err;
}

lf_err_t lf_h5io_rewrite_layers(MPI_Comm comm, const char *path, const lf_model_t *m,
                                const bool *layers)
{
    return lf_comm_agree(comm, lf_comm_rank(comm) == 0 ? rewrite_file(path, m, layers) : LF_OK);
}
