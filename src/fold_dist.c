/* The distributed fold (fold_dist.h): lf_fold_apply's algebra on blocks that stay in the model
 * file or on the process grid.
 *
 * Layers keep their original indices while the fold runs (a layer that empties is marked dead,
 * not removed), so a block's source is always an original index; the new numbering is made only
 * when the model is written. A working block is either a reference into the model file or a
 * distributed matrix an earlier product made, seen through the index lists of its rows and
 * columns still alive: removing neurons narrows the lists, and the data moves only when a
 * product needs the block or the writer writes it.
 *
 * Every step is collective and agreed: the functions of merge_dist.h agree their own errors, and
 * the few local steps here (index lists, biases) are agreed before the next collective. */
#include "linfold/fold_dist.h"

#include <string.h>
#include <unistd.h>

#include "h5io_impl.h"
#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/interrupt.h"
#include "linfold/log.h"

typedef struct {
    int src;              /* original index of the source layer, or LF_SRC_INPUT */
    char path[64];        /* a dataset of the model file while d is NULL */
    lf_dist_matrix_t *d;  /* the block as a product left it, or NULL */
    int64_t *rsel, *csel; /* rows and columns of the stored block still alive; NULL: all */
    int64_t rows, cols;   /* the current shape */
} wblock_t;

typedef struct {
    bool alive;
    int64_t n_out;
    float *bias; /* n_out, compacted with the neurons */
    int n_blocks;
    wblock_t *blocks;
} wlayer_t;

typedef struct {
    MPI_Comm comm;
    lf_grid_t *grid;
    lf_dist_file_t *file;
    const lf_model_t *m;
    lf_merge_dist_opts_t opts;
    int n_layers;
    int64_t n_in;
    wlayer_t *layers;
    /* Where the time goes, in seconds on this rank, and the products' floating-point work. */
    double t_read, t_select, t_gemm, t_bias, t_write, flops;
} wmodel_t;

static const char *const path_names[] = {"auto", "serial", "distributed"};

lf_err_t lf_merge_path_parse(const char *text, lf_merge_path_t *out)
{
    lf_err_t err = LF_OK;
    for (int k = 0; k < 3; k++)
        if (strcmp(text, path_names[k]) == 0) {
            *out = (lf_merge_path_t)k;
            return LF_OK;
        }
    LF_FAIL(LF_ERR_USAGE, "merge must be auto, serial or distributed, not '%s'", text);
cleanup:
    return err;
}

const char *lf_merge_path_name(lf_merge_path_t path)
{
    return path >= LF_MERGE_AUTO && path <= LF_MERGE_DISTRIBUTED ? path_names[path] : "?";
}

int64_t lf_fold_dist_size(const lf_model_t *m)
{
    int64_t first = m->n_in, second = 0;
    for (int i = 0; i < m->n_layers - 1; i++) {
        int64_t w = m->layers[i].n_out;
        if (w > first) {
            second = first;
            first = w;
        } else if (w > second) {
            second = w;
        }
    }
    if (second == 0)
        second = m->layers[m->n_layers - 1].n_out;
    return first * second;
}

bool lf_fold_dist_should(lf_merge_path_t path, int64_t threshold, const lf_model_t *m)
{
    if (path != LF_MERGE_AUTO)
        return path == LF_MERGE_DISTRIBUTED;
    return lf_fold_dist_size(m) >= threshold;
}

/* ---------------------------------------------------------------- working model */

static int64_t width(const wmodel_t *w, int src)
{
    return src == LF_SRC_INPUT ? w->n_in : w->layers[src].n_out;
}

static wblock_t *find_block(wmodel_t *w, int c, int src)
{
    wlayer_t *L = &w->layers[c];
    for (int b = 0; b < L->n_blocks; b++)
        if (L->blocks[b].src == src)
            return &L->blocks[b];
    return NULL;
}

static void block_free(wblock_t *b)
{
    lf_dist_matrix_destroy(&b->d);
    lf_free(b->rsel);
    lf_free(b->csel);
    memset(b, 0, sizeof *b);
}

static void wmodel_free(wmodel_t *w)
{
    for (int i = 0; w->layers && i < w->n_layers; i++) {
        for (int b = 0; b < w->layers[i].n_blocks; b++)
            block_free(&w->layers[i].blocks[b]);
        lf_free(w->layers[i].blocks);
        lf_free(w->layers[i].bias);
    }
    lf_free(w->layers);
    w->layers = NULL;
}

/* Local: every layer alive, every block a reference into the file. */
static lf_err_t wmodel_init(wmodel_t *w)
{
    lf_err_t err = LF_OK;
    const lf_model_t *m = w->m;
    w->n_layers = m->n_layers;
    w->n_in = m->n_in;
    LF_CALL(lf_calloc((size_t)m->n_layers, sizeof *w->layers, (void **)&w->layers));
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *src = &m->layers[i];
        wlayer_t *L = &w->layers[i];
        L->alive = true;
        L->n_out = src->n_out;
        LF_CALL(lf_malloc((size_t)src->n_out, sizeof *L->bias, (void **)&L->bias));
        memcpy(L->bias, src->bias, (size_t)src->n_out * sizeof *L->bias);
        LF_CALL(lf_calloc((size_t)src->n_blocks, sizeof *L->blocks, (void **)&L->blocks));
        L->n_blocks = src->n_blocks;
        for (int b = 0; b < src->n_blocks; b++) {
            wblock_t *blk = &L->blocks[b];
            blk->src = src->blocks[b].src;
            lf_model_block_path(blk->path, sizeof blk->path, i, blk->src);
            blk->rows = src->n_out;
            blk->cols = lf_model_width(m, blk->src);
        }
    }
cleanup:
    return err;
}

/* *out = sel[pos[k]] for k < count (sel NULL: the identity); pos NULL: all of sel's n. */
static lf_err_t compose(const int64_t *sel, int64_t n, const int64_t *pos, int64_t count,
                        int64_t **out)
{
    lf_err_t err = LF_OK;
    *out = NULL;
    if (!sel && !pos)
        return LF_OK;
    int64_t len = pos ? count : n;
    LF_CALL(lf_malloc((size_t)(len > 0 ? len : 1), sizeof **out, (void **)out));
    for (int64_t k = 0; k < len; k++) {
        int64_t at = pos ? pos[k] : k;
        (*out)[k] = sel ? sel[at] : at;
    }
cleanup:
    return err;
}

/* Makes *out the rows and columns (current positions; NULL: all) of block b as a new
 * distributed matrix. Collective. */
static lf_err_t block_get(wmodel_t *w, const wblock_t *b, const int64_t *rows, int64_t n_rows,
                          const int64_t *cols, int64_t n_cols, lf_dist_matrix_t **out)
{
    lf_err_t err = LF_OK;
    int64_t *r = NULL, *c = NULL;
    lf_err_t local = compose(b->rsel, b->rows, rows, n_rows, &r);
    if (local == LF_OK)
        local = compose(b->csel, b->cols, cols, n_cols, &c);
    LF_CALL(lf_comm_agree(w->comm, local));
    int64_t nr = rows ? n_rows : b->rows, nc = cols ? n_cols : b->cols;
    double t = lf_log_seconds();
    if (b->d) {
        LF_CALL(lf_dist_select(b->d, r, nr, c, nc, out));
        w->t_select += lf_log_seconds() - t;
    } else {
        LF_CALL(lf_dist_read(w->file, b->path, r, nr, c, nc, w->opts.block, w->opts.prec, out));
        w->t_read += lf_log_seconds() - t;
    }
cleanup:
    lf_free(c);
    lf_free(r);
    return err;
}

/* Makes block b a distributed matrix of exactly its current shape, ready to accumulate into.
 * Collective. */
static lf_err_t block_materialize(wmodel_t *w, wblock_t *b)
{
    lf_err_t err = LF_OK;
    lf_dist_matrix_t *d = NULL;
    if (b->d && !b->rsel && !b->csel)
        return LF_OK;
    LF_CALL(block_get(w, b, NULL, 0, NULL, 0, &d));
    lf_dist_matrix_destroy(&b->d);
    lf_free(b->rsel);
    lf_free(b->csel);
    b->rsel = b->csel = NULL;
    b->d = d;
    b->path[0] = '\0';
cleanup:
    return err;
}

/* Local: appends a zero block from src to layer c (its matrix made by the caller), keeping the
 * blocks sorted by source. */
static lf_err_t block_add(wmodel_t *w, int c, int src, wblock_t **out)
{
    lf_err_t err = LF_OK;
    wlayer_t *L = &w->layers[c];
    LF_CALL(lf_realloc((size_t)L->n_blocks + 1, sizeof *L->blocks, (void **)&L->blocks));
    int at = L->n_blocks;
    while (at > 0 && L->blocks[at - 1].src > src) {
        L->blocks[at] = L->blocks[at - 1];
        at--;
    }
    L->n_blocks++;
    wblock_t *b = &L->blocks[at];
    memset(b, 0, sizeof *b);
    b->src = src;
    b->rows = L->n_out;
    b->cols = width(w, src);
    *out = b;
cleanup:
    return err;
}

/* The block of layer c from src as a distributed matrix, created as zeros when missing.
 * Collective. */
static lf_err_t block_target(wmodel_t *w, int c, int src, wblock_t **out)
{
    lf_err_t err = LF_OK;
    wblock_t *b = find_block(w, c, src);
    if (!b) {
        LF_CALL(lf_comm_agree(w->comm, block_add(w, c, src, &b)));
        LF_CALL(
            lf_dist_matrix_create(w->grid, b->rows, b->cols, w->opts.block, w->opts.prec, &b->d));
    }
    LF_CALL(block_materialize(w, b));
    *out = b;
cleanup:
    return err;
}

static void remove_block(wlayer_t *L, int src)
{
    for (int b = 0; b < L->n_blocks; b++)
        if (L->blocks[b].src == src) {
            block_free(&L->blocks[b]);
            memmove(&L->blocks[b], &L->blocks[b + 1],
                    (size_t)(L->n_blocks - b - 1) * sizeof *L->blocks);
            L->n_blocks--;
            return;
        }
}

/* Narrows one index list to the positions kept. Local. */
static lf_err_t narrow(int64_t **sel, int64_t n, const int64_t *kept, int64_t n_kept)
{
    lf_err_t err = LF_OK;
    int64_t *next = NULL;
    LF_CALL(compose(*sel, n, kept, n_kept, &next));
    lf_free(*sel);
    *sel = next;
cleanup:
    return err;
}

/* Layer l has no neuron left: the blocks that read it go, and the next live layer gets a (zero)
 * block from the live layer before it, as lf_model_remove_neurons does. Collective. */
static lf_err_t layer_die(wmodel_t *w, int l)
{
    lf_err_t err = LF_OK;
    wlayer_t *L = &w->layers[l];
    L->alive = false;
    for (int b = 0; b < L->n_blocks; b++)
        block_free(&L->blocks[b]);
    L->n_blocks = 0;
    for (int c = l + 1; c < w->n_layers; c++)
        remove_block(&w->layers[c], l);
    int next = l + 1, prev = l - 1;
    while (next < w->n_layers && !w->layers[next].alive)
        next++;
    while (prev >= 0 && !w->layers[prev].alive)
        prev--;
    if (next < w->n_layers) {
        wblock_t *pred = NULL;
        LF_CALL(block_target(w, next, prev >= 0 ? prev : LF_SRC_INPUT, &pred));
    }
cleanup:
    return err;
}

/* Removes the neurons of layer l that keep marks false; a layer left empty dies (layer_die).
 * Collective. */
static lf_err_t remove_neurons(wmodel_t *w, int l, const bool *keep)
{
    lf_err_t err = LF_OK, local = LF_OK;
    wlayer_t *L = &w->layers[l];
    int64_t *kept = NULL, n = L->n_out, n_kept = 0;
    local = lf_malloc((size_t)(n > 0 ? n : 1), sizeof *kept, (void **)&kept);
    for (int64_t j = 0; local == LF_OK && j < n; j++)
        if (keep[j])
            kept[n_kept++] = j;
    if (local == LF_OK && n_kept < n) {
        for (int b = 0; b < L->n_blocks && local == LF_OK; b++) {
            local = narrow(&L->blocks[b].rsel, L->blocks[b].rows, kept, n_kept);
            L->blocks[b].rows = n_kept;
        }
        for (int64_t k = 0; k < n_kept; k++)
            L->bias[k] = L->bias[kept[k]];
        for (int c = l + 1; c < w->n_layers && local == LF_OK; c++) {
            wblock_t *b = w->layers[c].alive ? find_block(w, c, l) : NULL;
            if (b) {
                local = narrow(&b->csel, b->cols, kept, n_kept);
                b->cols = n_kept;
            }
        }
        L->n_out = n_kept;
    }
    LF_CALL(lf_comm_agree(w->comm, local));
    if (n_kept == 0)
        LF_CALL(layer_die(w, l));
cleanup:
    lf_free(kept);
    return err;
}

/* bias[0..rows) += M · v, with v = values[idx[k]] (doubles): one rounding per fold step, as the
 * serial fold. Collective. */
static lf_err_t bias_add(wmodel_t *w, const lf_dist_matrix_t *M, float *bias, const double *v)
{
    lf_err_t err = LF_OK;
    double *y = NULL;
    int64_t rows = M->lay.m;
    double t = lf_log_seconds();
    LF_CALL(
        lf_comm_agree(w->comm, lf_malloc((size_t)(rows > 0 ? rows : 1), sizeof *y, (void **)&y)));
    for (int64_t r = 0; r < rows; r++)
        y[r] = bias[r];
    LF_CALL(lf_dist_matvec_add(M, v, y));
    for (int64_t r = 0; r < rows; r++)
        bias[r] = (float)y[r];
    w->t_bias += lf_log_seconds() - t;
cleanup:
    lf_free(y);
    return err;
}

/* Pruned neurons of layer l leave their mean output shift[j] in every reader's bias. */
static lf_err_t compensate(wmodel_t *w, int l, const bool *keep, const double *shift)
{
    lf_err_t err = LF_OK;
    int64_t *gone = NULL, n = w->layers[l].n_out, n_gone = 0;
    double *v = NULL;
    lf_dist_matrix_t *Cp = NULL;
    lf_err_t local = lf_malloc((size_t)(n > 0 ? n : 1), sizeof *gone, (void **)&gone);
    if (local == LF_OK)
        local = lf_malloc((size_t)(n > 0 ? n : 1), sizeof *v, (void **)&v);
    LF_CALL(lf_comm_agree(w->comm, local));
    for (int64_t j = 0; j < n; j++)
        if (!keep[j]) {
            v[n_gone] = shift[j];
            gone[n_gone++] = j;
        }
    for (int c = l + 1; c < w->n_layers; c++) {
        wblock_t *b = w->layers[c].alive ? find_block(w, c, l) : NULL;
        if (!b)
            continue;
        LF_CALL(block_get(w, b, NULL, 0, gone, n_gone, &Cp));
        LF_CALL(bias_add(w, Cp, w->layers[c].bias, v));
        lf_dist_matrix_destroy(&Cp);
    }
cleanup:
    lf_dist_matrix_destroy(&Cp);
    lf_free(v);
    lf_free(gone);
    return err;
}

/* Folds neurons idx[0..count) (current positions) of layer l into its readers, then removes them.
 * Collective. */
static lf_err_t fold_layer(wmodel_t *w, int l, const int64_t *idx, int64_t count)
{
    lf_err_t err = LF_OK;
    lf_dist_matrix_t *Ca = NULL, *Ba = NULL;
    double *v = NULL;
    bool *keep = NULL;
    wlayer_t *L = &w->layers[l];
    lf_err_t local = lf_malloc((size_t)(count > 0 ? count : 1), sizeof *v, (void **)&v);
    if (local == LF_OK)
        local = lf_calloc((size_t)L->n_out, sizeof *keep, (void **)&keep);
    LF_CALL(lf_comm_agree(w->comm, local));
    if (count == 0)
        goto cleanup;
    for (int64_t k = 0; k < count; k++)
        v[k] = L->bias[idx[k]];
    for (int c = l + 1; c < w->n_layers; c++) {
        wblock_t *reader = w->layers[c].alive ? find_block(w, c, l) : NULL;
        if (!reader)
            continue;
        LF_CALL(block_get(w, reader, NULL, 0, idx, count, &Ca));
        /* Sources are found by index each time: block_target may grow layer c's array, never
         * layer l's. */
        for (int b = 0; b < L->n_blocks; b++) {
            wblock_t *target = NULL;
            LF_CALL(block_get(w, &L->blocks[b], idx, count, NULL, 0, &Ba));
            LF_CALL(block_target(w, c, L->blocks[b].src, &target));
            double t = lf_log_seconds();
            LF_CALL(lf_dist_gemm(Ca, Ba, target->d));
            w->t_gemm += lf_log_seconds() - t;
            w->flops += 2.0 * (double)Ca->lay.m * (double)Ca->lay.n * (double)Ba->lay.n;
            lf_dist_matrix_destroy(&Ba);
        }
        LF_CALL(bias_add(w, Ca, w->layers[c].bias, v));
        lf_dist_matrix_destroy(&Ca);
    }
    for (int64_t j = 0; j < L->n_out; j++)
        keep[j] = true;
    for (int64_t k = 0; k < count; k++)
        keep[idx[k]] = false;
    LF_CALL(remove_neurons(w, l, keep));
cleanup:
    lf_dist_matrix_destroy(&Ba);
    lf_dist_matrix_destroy(&Ca);
    lf_free(keep);
    lf_free(v);
    return err;
}

/* The plan's steps, in lf_fold_apply's order. */
static lf_err_t apply_plan(wmodel_t *w, const lf_plan_t *p)
{
    lf_err_t err = LF_OK;
    int L = w->n_layers;
    int64_t widest = 1;
    bool *keep = NULL;
    int64_t *idx = NULL;
    for (int i = 0; i < L; i++)
        widest = p->n_out[i] > widest ? p->n_out[i] : widest;
    lf_err_t local = lf_calloc((size_t)widest, sizeof *keep, (void **)&keep);
    if (local == LF_OK)
        local = lf_calloc((size_t)widest, sizeof *idx, (void **)&idx);
    LF_CALL(lf_comm_agree(w->comm, local));
    for (int i = 0; i < L - 1; i++) {
        if (!lf_plan_prune_mask(p, i, keep))
            continue;
        LF_CALL(compensate(w, i, keep, p->shift[i]));
        LF_CALL(remove_neurons(w, i, keep));
    }
    for (int i = 0; i < L - 1; i++) {
        if (!p->fold[i] || !w->layers[i].alive)
            continue;
        int64_t count = lf_plan_fold_positions(p, i, idx);
        LF_CALL(lf_comm_agree(w->comm, lf_interrupt_check("folding")));
        LF_CALL(fold_layer(w, i, idx, count));
    }
cleanup:
    lf_free(idx);
    lf_free(keep);
    return err;
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    hid_t file;
    const char *tmp, *path;
    int64_t raw_bytes;
} out_file_t;

/* The new index of original layer i among the live ones. */
static int new_index(const wmodel_t *w, int i)
{
    if (i == LF_SRC_INPUT)
        return LF_SRC_INPUT;
    int k = 0;
    for (int j = 0; j < i; j++)
        k += w->layers[j].alive;
    return k;
}

/* Writes live layer i as layer ni: metadata by every rank (HDF5 metadata is collective), weight
 * blocks by every rank (its own blocks), the bias by rank 0. Collective. */
static lf_err_t write_layer(wmodel_t *w, hid_t layers, int i, int ni)
{
    lf_err_t err = LF_OK, local = LF_OK;
    hid_t grp = H5I_INVALID_HID, skip = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    lf_dist_matrix_t *M = NULL;
    const lf_layer_t *orig = &w->m->layers[i];
    wlayer_t *L = &w->layers[i];
    char name[32];
    snprintf(name, sizeof name, "%d", ni);
    local = lf__h5_create_group(layers, name, &grp);
    if (local == LF_OK)
        local = lf__h5_write_string_attr(grp, "activation", lf_act_name(orig->act));
    if (local == LF_OK && orig->act == LF_ACT_LEAKY_RELU) {
        double alpha = orig->alpha;
        local = lf__h5_write_scalar_attr(grp, "alpha", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &alpha);
    }
    LF_CALL(lf_comm_agree(w->comm, local));
    for (int b = 0; b < L->n_blocks; b++) {
        wblock_t *blk = &L->blocks[b];
        int ns = new_index(w, blk->src);
        hsize_t dims[2] = {(hsize_t)blk->rows, (hsize_t)blk->cols};
        char src[32];
        if (ns == ni - 1) {
            local = lf__h5_create_dataset_early(grp, "weight", 2, dims, &dset);
        } else {
            if (skip < 0)
                local = lf__h5_create_group(grp, "skip", &skip);
            if (ns == LF_SRC_INPUT)
                snprintf(src, sizeof src, "input");
            else
                snprintf(src, sizeof src, "%d", ns);
            if (local == LF_OK)
                local = lf__h5_create_dataset_early(skip, src, 2, dims, &dset);
        }
        LF_CALL(lf_comm_agree(w->comm, local));
        if (blk->d && !blk->rsel && !blk->csel) {
            LF_CALL(lf_dist_write(blk->d, dset, 0, 0));
        } else {
            LF_CALL(block_get(w, blk, NULL, 0, NULL, 0, &M));
            LF_CALL(lf_dist_write(M, dset, 0, 0));
            lf_dist_matrix_destroy(&M);
        }
        /* Done with the block: free its memory before the next one is read. */
        block_free(blk);
        lf__h5_close(&dset);
    }
    hsize_t nb = (hsize_t)L->n_out;
    local = lf__h5_create_dataset_early(grp, "bias", 1, &nb, &dset);
    LF_CALL(lf_comm_agree(w->comm, local));
    if (w->grid->rank == 0 &&
        H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, L->bias) < 0) {
        char h5[256];
        lf__h5_error_text(h5, sizeof h5);
        local = LF_ERR_HDF5;
        lf_error_record(__FILE__, __LINE__, __func__, local,
                        "cannot write the bias of layer %d (HDF5: %s)", ni, h5);
    }
    LF_CALL(lf_comm_agree(w->comm, local));
cleanup:
    lf_dist_matrix_destroy(&M);
    lf__h5_close(&dset);
    lf__h5_close(&skip);
    lf__h5_close(&grp);
    return err;
}

/* Bytes reserved beyond the raw data for HDF5's metadata. */
#define METADATA_SLACK ((int64_t)256 << 10)

static lf_err_t write_model(wmodel_t *w, const char *tmp, const char *path, const lf_attr_t *attrs,
                            int n_attrs)
{
    lf_err_t err = LF_OK, local = LF_OK;
    hid_t fapl = H5I_INVALID_HID, fcpl = H5I_INVALID_HID, file = H5I_INVALID_HID,
          layers = H5I_INVALID_HID;
    int64_t raw = 0, count = 0, version = 1;
    for (int i = 0; i < w->n_layers; i++) {
        if (!w->layers[i].alive)
            continue;
        count++;
        raw += w->layers[i].n_out * (int64_t)sizeof(float);
        for (int b = 0; b < w->layers[i].n_blocks; b++)
            raw +=
                w->layers[i].blocks[b].rows * w->layers[i].blocks[b].cols * (int64_t)sizeof(float);
    }
    LF_CALL(lf_comm_agree(w->comm, w->grid->rank == 0
                                       ? lf__h5_reserve_file(tmp, path, raw + METADATA_SLACK)
                                       : LF_OK));
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_mpio(fapl, w->grid->comm, MPI_INFO_NULL) < 0)
        local = LF_ERR_HDF5;
    if (local == LF_OK) {
        fcpl = lf__h5_create_plist(H5P_FILE_CREATE);
        local = fcpl < 0 ? LF_ERR_HDF5 : LF_OK;
    }
    if (local != LF_OK)
        lf_error_record(__FILE__, __LINE__, __func__, local, "%s: MPI-IO access list", path);
    LF_CALL(lf_comm_agree(w->comm, local));
    file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (file < 0) {
        char h5[256];
        lf__h5_error_text(h5, sizeof h5);
        local = LF_ERR_HDF5;
        lf_error_record(__FILE__, __LINE__, __func__, local, "%s: cannot create %s (HDF5: %s)",
                        path, tmp, h5);
    }
    LF_CALL(lf_comm_agree(w->comm, local));
    local = lf__h5_write_string_attr(file, "format", "linfold-mlp");
    if (local == LF_OK)
        local = lf__h5_write_scalar_attr(file, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                         &version);
    for (int k = 0; k < n_attrs && local == LF_OK; k++)
        local = lf__h5_write_string_attr(file, attrs[k].key, attrs[k].value);
    if (local == LF_OK)
        local = lf__h5_create_group(file, "layers", &layers);
    if (local == LF_OK)
        local = lf__h5_write_scalar_attr(layers, "count", H5T_STD_I64LE, H5T_NATIVE_INT64, &count);
    LF_CALL(lf_comm_agree(w->comm, local));
    for (int i = 0, ni = 0; i < w->n_layers; i++)
        if (w->layers[i].alive)
            LF_CALL(write_layer(w, layers, i, ni++));
    lf__h5_close(&layers);
    LF_CALL(lf_comm_agree(w->comm, lf__h5_close_file(&file, tmp)));
cleanup:
    lf__h5_close(&layers);
    if (file >= 0) {
        /* A failed file is emptied before its close so that the close's metadata finds room. */
        if (w->grid->rank == 0 && truncate(tmp, 0) != 0)
            lf_log(LF_LOG_DEBUG, MPI_COMM_NULL, "%s: could not truncate before closing", tmp);
        MPI_Barrier(w->grid->comm);
        lf__h5_close(&file);
    }
    lf__h5_close(&fcpl);
    lf__h5_close(&fapl);
    return err;
}

/* The grid's orientation. pdgemm_ on a pr x pc grid broadcasts panels of A along process rows
 * (volume ~ m·k per product when pc > 1) and panels of B down process columns (~ k·n when
 * pr > 1). A fold's products are reader (m = its width) times folded neurons (k) times source
 * (n = its width); summed over the plan's folds with the original model's readers and sources,
 * the cheaper side decides. Measured on 1024-8192-8192-8192-10 at P = 2: 2 x 1 ran pdgemm_ at
 * 28-31 GFLOP/s per rank, 1 x 2 at 16-22 (readers 8192 wide, sources 1024 and 819). */
static bool tall_grid_moves_less(const lf_model_t *m, const lf_plan_t *p)
{
    double along_rows = 0, down_cols = 0;
    for (int l = 0; l < m->n_layers - 1; l++) {
        double k = 0;
        for (int64_t j = 0; p->fold[l] && j < p->n_out[l]; j++)
            k += p->fate[l][j] == LF_NEURON_FOLD;
        if (k == 0)
            continue;
        for (int c = l + 1; c < m->n_layers; c++) {
            if (!lf_model_block(m, c, l))
                continue;
            for (int b = 0; b < m->layers[l].n_blocks; b++) {
                along_rows += (double)m->layers[c].n_out * k;
                down_cols += k * (double)lf_model_width(m, m->layers[l].blocks[b].src);
            }
        }
    }
    return down_cols <= along_rows;
}

lf_err_t lf_fold_dist_write(MPI_Comm comm, const char *model_path, const lf_model_t *m,
                            const lf_plan_t *p, const lf_merge_dist_opts_t *opts, const char *tmp,
                            const char *out_path, const lf_attr_t *attrs, int n_attrs,
                            int **where_out)
{
    lf_err_t err = LF_OK;
    wmodel_t w = {.comm = comm, .m = m};
    int *where = NULL;
    w.opts = opts ? *opts : (lf_merge_dist_opts_t){0};
    if (w.opts.block <= 0)
        w.opts.block = LF_GRID_BLOCK_DEFAULT;
    LF_CHECK(p->n_layers == m->n_layers, LF_ERR_ARG,
             "plan for %d layers applied to a model with %d", p->n_layers, m->n_layers);
    LF_CALL(lf_comm_agree(comm, wmodel_init(&w)));
    if (tall_grid_moves_less(m, p))
        LF_CALL(lf_grid_create_tall(comm, &w.grid));
    else
        LF_CALL(lf_grid_create(comm, &w.grid));
    LF_CALL(lf_dist_file_open(w.grid, model_path, &w.file));
    LF_CALL(apply_plan(&w, p));
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)m->n_layers, sizeof *where, (void **)&where)));
    for (int i = 0; i < m->n_layers; i++)
        where[i] = w.layers[i].alive ? new_index(&w, i) : -1;
    double t = lf_log_seconds(), reads = w.t_read, selections = w.t_select;
    LF_CALL(write_model(&w, tmp, out_path, attrs, n_attrs));
    w.t_write = lf_log_seconds() - t - (w.t_read - reads) - (w.t_select - selections);
    lf_log(LF_LOG_INFO, comm,
           "fold: distributed on a %d x %d grid, blocks of %d (%s): reads %.2f s, selections "
           "%.2f s, products %.2f s (%.1f GFLOP/s per rank), bias products %.2f s, writes "
           "%.2f s (rank 0)",
           w.grid->nprow, w.grid->npcol, w.opts.block,
           w.opts.prec == LF_DIST_SINGLE ? "psgemm_" : "pdgemm_", w.t_read, w.t_select, w.t_gemm,
           w.t_gemm > 0 ? w.flops / w.t_gemm / 1e9 / w.grid->size : 0.0, w.t_bias, w.t_write);
    if (where_out) {
        *where_out = where;
        where = NULL;
    }
cleanup:
    lf_free(where);
    wmodel_free(&w);
    lf_dist_file_close(&w.file);
    lf_grid_destroy(&w.grid);
    return err;
}
