/* The in-memory MLP: lifecycle, block bookkeeping, neuron removal, validation.
 *
 * Blocks are kept sorted by source so that the predecessor block (the layer's `weight`, src i-1)
 * is always the last one; forward passes and writers rely on that order, which also makes every
 * traversal deterministic. */
#include "linfold/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/finite.h"

static const char *const act_names[] = {"relu",    "leaky_relu", "identity",
                                        "sigmoid", "tanh",       "softmax"};

const char *lf_act_name(lf_act_t act)
{
    return (unsigned)act < sizeof act_names / sizeof *act_names ? act_names[act] : "?";
}

lf_err_t lf_act_parse(const char *name, lf_act_t *out)
{
    lf_err_t err = LF_OK;
    for (size_t k = 0; k < sizeof act_names / sizeof *act_names; k++) {
        if (strcmp(name, act_names[k]) == 0) {
            *out = (lf_act_t)k;
            return LF_OK;
        }
    }
    LF_FAIL(LF_ERR_FORMAT,
            "unknown activation \"%s\" (expected relu, leaky_relu, identity, sigmoid, tanh or "
            "softmax)",
            name);
cleanup:
    return err;
}

bool lf_act_is_piecewise_linear(lf_act_t act)
{
    return act == LF_ACT_RELU || act == LF_ACT_LEAKY_RELU || act == LF_ACT_IDENTITY;
}

bool lf_model_hidden_relu_like(const lf_model_t *m, int i)
{
    lf_act_t act = m->layers[i].act;
    return i < m->n_layers - 1 && (act == LF_ACT_RELU || act == LF_ACT_LEAKY_RELU);
}

lf_err_t lf_model_create(int64_t n_in, int n_layers, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    *out = NULL;
    LF_CHECK(n_in >= 1 && n_layers >= 1, LF_ERR_ARG,
             "model needs n_in >= 1 and layers >= 1, got %lld and %d", (long long)n_in, n_layers);
    LF_CALL(lf_calloc(1, sizeof *m, (void **)&m));
    LF_CALL(lf_calloc((size_t)n_layers, sizeof *m->layers, (void **)&m->layers));
    m->n_in = n_in;
    m->n_layers = n_layers;
    *out = m;
    m = NULL;
cleanup:
    lf_model_destroy(&m);
    return err;
}

static void layer_free(lf_layer_t *L)
{
    for (int b = 0; b < L->n_blocks; b++)
        lf_free(L->blocks[b].w);
    lf_free(L->blocks);
    lf_free(L->bias);
    memset(L, 0, sizeof *L);
}

/* Frees the model's own memory; the arrays of a shared model belong to its window. */
static void model_free(lf_model_t *m, bool own_arrays)
{
    if (m->layers)
        for (int i = 0; i < m->n_layers; i++) {
            lf_layer_t *L = &m->layers[i];
            if (!own_arrays) {
                L->bias = NULL;
                for (int b = 0; b < L->n_blocks; b++)
                    L->blocks[b].w = NULL;
            }
            layer_free(L);
        }
    lf_free(m->layers);
    lf_free(m);
}

void lf_model_destroy(lf_model_t **m)
{
    if (!m || !*m)
        return;
    if ((*m)->shared)
        lf__assert_fail(__FILE__, __LINE__, __func__,
                        "a shared model is freed by lf_model_release(comm, &m) on every rank");
    model_free(*m, true);
    *m = NULL;
}

int64_t lf_model_width(const lf_model_t *m, int src)
{
    return src == LF_SRC_INPUT ? m->n_in : m->layers[src].n_out;
}

lf_block_t *lf_model_block(const lf_model_t *m, int i, int src)
{
    lf_layer_t *L = &m->layers[i];
    for (int b = 0; b < L->n_blocks; b++)
        if (L->blocks[b].src == src)
            return &L->blocks[b];
    return NULL;
}

lf_err_t lf_model_block_ensure(lf_model_t *m, int i, int src, lf_block_t **out)
{
    lf_err_t err = LF_OK;
    float *w = NULL;
    lf_layer_t *L = &m->layers[i];
    LF_ASSERT(src >= LF_SRC_INPUT && src < i);
    LF_ASSERT(!m->shared); /* shared models are read-only */
    *out = lf_model_block(m, i, src);
    if (*out)
        return LF_OK;
    LF_CALL(lf_calloc((size_t)L->n_out * (size_t)lf_model_width(m, src), sizeof *w, (void **)&w));
    LF_CALL(lf_realloc((size_t)L->n_blocks + 1, sizeof *L->blocks, (void **)&L->blocks));
    int pos = L->n_blocks;
    while (pos > 0 && L->blocks[pos - 1].src > src) {
        L->blocks[pos] = L->blocks[pos - 1];
        pos--;
    }
    L->blocks[pos] = (lf_block_t){.src = src, .w = w};
    L->n_blocks++;
    w = NULL;
    *out = &L->blocks[pos];
cleanup:
    lf_free(w);
    return err;
}

lf_err_t lf_model_layer_init(lf_model_t *m, int i, int64_t n_out, lf_act_t act, float alpha)
{
    lf_err_t err = LF_OK;
    lf_block_t *pred = NULL;
    lf_layer_t *L = &m->layers[i];
    LF_CHECK(n_out >= 1, LF_ERR_ARG, "layer %d: n_out = %lld, expected >= 1", i, (long long)n_out);
    LF_ASSERT(L->bias == NULL && L->n_blocks == 0 && !m->shared);
    L->n_out = n_out;
    L->act = act;
    L->alpha = alpha;
    LF_CALL(lf_calloc((size_t)n_out, sizeof *L->bias, (void **)&L->bias));
    LF_CALL(lf_model_block_ensure(m, i, i - 1, &pred));
cleanup:
    return err;
}

lf_err_t lf_model_copy(const lf_model_t *m, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    lf_model_t *c = NULL;
    LF_CALL(lf_model_create(m->n_in, m->n_layers, &c));
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        LF_CALL(lf_model_layer_init(c, i, L->n_out, L->act, L->alpha));
        memcpy(c->layers[i].bias, L->bias, (size_t)L->n_out * sizeof(float));
        for (int b = 0; b < L->n_blocks; b++) {
            lf_block_t *dst = NULL;
            LF_CALL(lf_model_block_ensure(c, i, L->blocks[b].src, &dst));
            memcpy(dst->w, L->blocks[b].w,
                   (size_t)L->n_out * (size_t)lf_model_width(m, L->blocks[b].src) * sizeof(float));
        }
    }
    *out = c;
    c = NULL;
cleanup:
    lf_model_destroy(&c);
    return err;
}

int64_t lf_model_layer_params(const lf_model_t *m, int i)
{
    const lf_layer_t *L = &m->layers[i];
    int64_t p = L->n_out;
    for (int b = 0; b < L->n_blocks; b++)
        p += L->n_out * lf_model_width(m, L->blocks[b].src);
    return p;
}

int64_t lf_model_skip_params(const lf_model_t *m)
{
    int64_t p = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        for (int b = 0; b < L->n_blocks; b++)
            if (L->blocks[b].src != i - 1)
                p += L->n_out * lf_model_width(m, L->blocks[b].src);
    }
    return p;
}

int64_t lf_model_params(const lf_model_t *m)
{
    int64_t p = 0;
    for (int i = 0; i < m->n_layers; i++)
        p += lf_model_layer_params(m, i);
    return p;
}

int64_t lf_model_n_out(const lf_model_t *m) { return m->layers[m->n_layers - 1].n_out; }

/* Keeps the columns of a row-major (rows, cols) matrix whose keep[j] is set, in place. */
static void compact_columns(float *w, int64_t rows, int64_t cols, const bool *keep, int64_t n_keep)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *src = w + r * cols;
        float *dst = w + r * n_keep;
        for (int64_t j = 0, k = 0; j < cols; j++)
            if (keep[j])
                dst[k++] = src[j];
    }
}

/* Keeps the rows whose keep[r] is set, in place. */
static void compact_rows(float *w, int64_t rows, int64_t cols, const bool *keep)
{
    for (int64_t r = 0, k = 0; r < rows; r++)
        if (keep[r]) {
            if (k != r)
                memmove(w + k * cols, w + r * cols, (size_t)cols * sizeof *w);
            k++;
        }
}

static void remove_block(lf_layer_t *L, int b)
{
    lf_free(L->blocks[b].w);
    memmove(&L->blocks[b], &L->blocks[b + 1], (size_t)(L->n_blocks - b - 1) * sizeof *L->blocks);
    L->n_blocks--;
}

lf_err_t lf_model_remove_neurons(lf_model_t *m, int i, const bool *keep)
{
    lf_err_t err = LF_OK;
    lf_layer_t *L = &m->layers[i];
    int64_t n = L->n_out, n_keep = 0;
    LF_ASSERT(!m->shared); /* shared models are read-only */
    for (int64_t j = 0; j < n; j++)
        n_keep += keep[j] ? 1 : 0;
    if (n_keep == n)
        return LF_OK;

    for (int b = 0; b < L->n_blocks; b++)
        compact_rows(L->blocks[b].w, n, lf_model_width(m, L->blocks[b].src), keep);
    compact_rows(L->bias, n, 1, keep);
    for (int c = i + 1; c < m->n_layers; c++) {
        lf_block_t *blk = lf_model_block(m, c, i);
        if (blk)
            compact_columns(blk->w, m->layers[c].n_out, n, keep, n_keep);
    }
    L->n_out = n_keep;
    if (n_keep > 0)
        return LF_OK;

    /* The layer is empty: drop it, the (now zero-width) blocks that read it, and renumber. */
    for (int c = i + 1; c < m->n_layers; c++) {
        lf_layer_t *C = &m->layers[c];
        for (int b = 0; b < C->n_blocks; b++)
            if (C->blocks[b].src == i) {
                remove_block(C, b);
                break;
            }
        for (int b = 0; b < C->n_blocks; b++)
            if (C->blocks[b].src > i)
                C->blocks[b].src--;
    }
    layer_free(L);
    memmove(&m->layers[i], &m->layers[i + 1], (size_t)(m->n_layers - i - 1) * sizeof *m->layers);
    m->n_layers--;
    memset(&m->layers[m->n_layers], 0, sizeof *m->layers);
    if (i < m->n_layers) {
        lf_block_t *pred = NULL;
        LF_CALL(lf_model_block_ensure(m, i, i - 1, &pred));
    }
cleanup:
    return err;
}

void lf_model_block_path(char *buf, size_t cap, int i, int src)
{
    if (src == i - 1)
        snprintf(buf, cap, "/layers/%d/weight", i);
    else if (src == LF_SRC_INPUT)
        snprintf(buf, cap, "/layers/%d/skip/input", i);
    else
        snprintf(buf, cap, "/layers/%d/skip/%d", i, src);
}

static bool all_finite(const float *x, int64_t n, int64_t *bad)
{
    *bad = lf_first_nonfinite(x, n);
    return *bad < 0;
}

lf_err_t lf_model_validate(const lf_model_t *m, const char *name)
{
    lf_err_t err = LF_OK;
    int64_t bad = 0;
    LF_CHECK(m->n_layers >= 1, LF_ERR_FORMAT, "%s: model has no layers", name);
    LF_CHECK(m->n_in >= 1, LF_ERR_SHAPE, "%s: model input width %lld, expected >= 1", name,
             (long long)m->n_in);
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        LF_CHECK(L->n_out >= 1, LF_ERR_SHAPE, "%s: /layers/%d has %lld neurons, expected >= 1",
                 name, i, (long long)L->n_out);
        LF_CHECK(L->n_blocks >= 1 && L->blocks[L->n_blocks - 1].src == i - 1, LF_ERR_FORMAT,
                 "%s: /layers/%d has no weight block", name, i);
        for (int b = 0; b < L->n_blocks; b++) {
            int src = L->blocks[b].src;
            LF_CHECK(src >= LF_SRC_INPUT && src < i && (b == 0 || L->blocks[b - 1].src < src),
                     LF_ERR_FORMAT, "%s: /layers/%d reads from layer %d, expected an earlier layer",
                     name, i, src);
            int64_t cols = lf_model_width(m, src);
            char path[64];
            lf_model_block_path(path, sizeof path, i, src);
            LF_CHECK(all_finite(L->blocks[b].w, L->n_out * cols, &bad), LF_ERR_VALUE,
                     "%s: %s has %s at [%lld, %lld]", name, path,
                     isnan(L->blocks[b].w[bad]) ? "NaN" : "an infinite value",
                     (long long)(bad / cols), (long long)(bad % cols));
        }
        LF_CHECK(all_finite(L->bias, L->n_out, &bad), LF_ERR_VALUE,
                 "%s: /layers/%d/bias has %s at [%lld]", name, i,
                 isnan(L->bias[bad]) ? "NaN" : "an infinite value", (long long)bad);
        LF_CHECK(L->act != LF_ACT_LEAKY_RELU || isfinite(L->alpha), LF_ERR_VALUE,
                 "%s: /layers/%d alpha is not finite", name, i);
    }
cleanup:
    return err;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t k = 0; k < n; k++) {
        h ^= p[k];
        h *= 1099511628211ULL;
    }
    return h;
}

static uint64_t fingerprint_compute(const lf_model_t *m)
{
    uint64_t h = 14695981039346656037ULL;
    h = fnv(h, &m->n_in, sizeof m->n_in);
    h = fnv(h, &m->n_layers, sizeof m->n_layers);
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        int32_t act = (int32_t)L->act;
        h = fnv(h, &L->n_out, sizeof L->n_out);
        h = fnv(h, &act, sizeof act);
        h = fnv(h, &L->alpha, sizeof L->alpha);
        h = fnv(h, L->bias, (size_t)L->n_out * sizeof(float));
        for (int b = 0; b < L->n_blocks; b++) {
            int32_t src = L->blocks[b].src;
            h = fnv(h, &src, sizeof src);
            h = fnv(h, L->blocks[b].w, (size_t)(L->n_out * lf_model_width(m, src)) * sizeof(float));
        }
    }
    return h;
}

/* Broadcasts n floats in pieces that fit MPI's int counts. */
static lf_err_t bcast_floats(MPI_Comm comm, int root, float *v, int64_t n)
{
    lf_err_t err = LF_OK;
    const int64_t piece = (int64_t)1 << 28;
    for (int64_t k = 0; k < n; k += piece) {
        int count = (int)(n - k < piece ? n - k : piece);
        LF_CALL_MPI(MPI_Bcast(v + k, count, MPI_FLOAT, root, comm));
    }
cleanup:
    return err;
}

/* The structure on root as int64s: n_in, n_layers, then per layer n_out, act, alpha's bits,
 * n_blocks and the sources. */
static lf_err_t pack_structure(const lf_model_t *m, int64_t **out, int *n)
{
    lf_err_t err = LF_OK;
    int64_t count = 2;
    for (int i = 0; i < m->n_layers; i++)
        count += 4 + m->layers[i].n_blocks;
    LF_CALL(lf_int_cast(count, n));
    LF_CALL(lf_malloc((size_t)count, sizeof **out, (void **)out));
    int64_t *p = *out;
    *p++ = m->n_in;
    *p++ = m->n_layers;
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        uint32_t bits;
        memcpy(&bits, &L->alpha, sizeof bits);
        *p++ = L->n_out;
        *p++ = L->act;
        *p++ = bits;
        *p++ = L->n_blocks;
        for (int b = 0; b < L->n_blocks; b++)
            *p++ = L->blocks[b].src;
    }
cleanup:
    return err;
}

static lf_err_t unpack_structure(const int64_t *p, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    LF_CALL(lf_model_create(p[0], (int)p[1], &m));
    p += 2;
    for (int i = 0; i < m->n_layers; i++) {
        uint32_t bits = (uint32_t)p[2];
        float alpha;
        memcpy(&alpha, &bits, sizeof alpha);
        LF_CALL(lf_model_layer_init(m, i, p[0], (lf_act_t)p[1], alpha));
        int n_blocks = (int)p[3];
        p += 4;
        for (int b = 0; b < n_blocks; b++) {
            lf_block_t *blk = NULL;
            LF_CALL(lf_model_block_ensure(m, i, (int)*p++, &blk));
        }
    }
    *out = m;
    m = NULL;
cleanup:
    lf_model_destroy(&m);
    return err;
}

lf_err_t lf_model_bcast(MPI_Comm comm, int root, lf_model_t **m)
{
    lf_err_t err = LF_OK;
    int64_t *structure = NULL;
    int rank = 0, n = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_comm_agree(comm, rank == root ? pack_structure(*m, &structure, &n) : LF_OK));
    LF_CALL_MPI(MPI_Bcast(&n, 1, MPI_INT, root, comm));
    LF_CALL(lf_comm_agree(
        comm, rank == root ? LF_OK : lf_malloc((size_t)n, sizeof *structure, (void **)&structure)));
    LF_CALL_MPI(MPI_Bcast(structure, n, MPI_INT64_T, root, comm));
    LF_CALL(lf_comm_agree(comm, rank == root ? LF_OK : unpack_structure(structure, m)));
    lf_model_t *mm = *m;
    for (int i = 0; i < mm->n_layers; i++) {
        lf_layer_t *L = &mm->layers[i];
        LF_CALL(bcast_floats(comm, root, L->bias, L->n_out));
        for (int b = 0; b < L->n_blocks; b++)
            LF_CALL(bcast_floats(comm, root, L->blocks[b].w,
                                 L->n_out * lf_model_width(mm, L->blocks[b].src)));
    }
cleanup:
    lf_free(structure);
    if (err != LF_OK && rank != root)
        lf_model_destroy(m);
    return err;
}

/* ---------------------------------------------------------------- one copy per node */

struct lf_model_shared {
    MPI_Win win;   /* the node's window; MPI_WIN_NULL until allocated */
    MPI_Comm node; /* the ranks sharing it */
    int64_t bytes; /* its size, as the node's first rank allocated it */
    int ranks;     /* the node communicator's size */
    /* A shared model is read-only, so its fingerprint is computed once: a run asks for it when
     * it reads statistics, checks them, plans and checkpoints, and at 571 MB each FNV-1a pass
     * took about 1.5 s. */
    bool fingerprint_known;
    uint64_t fingerprint;
};

uint64_t lf_model_fingerprint(const lf_model_t *m)
{
    if (m->shared && m->shared->fingerprint_known)
        return m->shared->fingerprint;
    uint64_t h = fingerprint_compute(m);
    if (m->shared) {
        m->shared->fingerprint = h;
        m->shared->fingerprint_known = true;
    }
    return h;
}

static int share_group = 0;

void lf_model_share_test_group(int ranks) { share_group = ranks > 0 ? ranks : 0; }

bool lf_model_is_shared(const lf_model_t *m) { return m->shared != NULL; }

int64_t lf_model_shared_window_bytes(const lf_model_t *m)
{
    return m->shared ? m->shared->bytes : 0;
}

int lf_model_shared_ranks(const lf_model_t *m) { return m->shared ? m->shared->ranks : 1; }

static int64_t padded(int64_t bytes)
{
    return (bytes + LF_MODEL_SHARED_ALIGN - 1) / LF_MODEL_SHARED_ALIGN * LF_MODEL_SHARED_ALIGN;
}

int64_t lf_model_shared_layout_bytes(const lf_model_t *m)
{
    int64_t total = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        total += padded(L->n_out * (int64_t)sizeof(float));
        for (int b = 0; b < L->n_blocks; b++)
            total +=
                padded(L->n_out * lf_model_width(m, L->blocks[b].src) * (int64_t)sizeof(float));
    }
    return total;
}

/* Adds one array of rows x cols floats to the layout size, refusing what overflows int64. */
static bool layout_add(int64_t *total, int64_t rows, int64_t cols)
{
    const int64_t limit = INT64_MAX / 2;
    if (rows < 1 || cols < 1 || rows > limit / (int64_t)sizeof(float) / cols)
        return false;
    int64_t bytes = padded(rows * cols * (int64_t)sizeof(float));
    if (bytes > limit - *total)
        return false;
    *total += bytes;
    return true;
}

/* The bookkeeping of a model from pack_structure()'s layout, arrays left NULL, and the bytes its
 * shared layout takes. The structure comes from root's validated model; the checks guard the
 * arithmetic, not against a hostile peer. */
static lf_err_t unpack_skeleton(const int64_t *p, int n, lf_model_t **out, int64_t *bytes)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    const int64_t *end = p + n;
    *bytes = 0;
    LF_CHECK(n >= 2 && p[1] >= 1 && p[1] <= INT32_MAX, LF_ERR_INTERNAL,
             "malformed model structure");
    LF_CALL(lf_model_create(p[0], (int)p[1], &m));
    p += 2;
    for (int i = 0; i < m->n_layers; i++) {
        lf_layer_t *L = &m->layers[i];
        LF_CHECK(end - p >= 4 && p[0] >= 1 && p[3] >= 1 && p[3] <= i + 1 && end - p - 4 >= p[3],
                 LF_ERR_INTERNAL, "malformed structure of layer %d", i);
        uint32_t bits = (uint32_t)p[2];
        L->n_out = p[0];
        L->act = (lf_act_t)p[1];
        memcpy(&L->alpha, &bits, sizeof L->alpha);
        int n_blocks = (int)p[3];
        p += 4;
        LF_CALL(lf_calloc((size_t)n_blocks, sizeof *L->blocks, (void **)&L->blocks));
        L->n_blocks = n_blocks;
        LF_CHECK(layout_add(bytes, L->n_out, 1), LF_ERR_OVERFLOW, "model too large to share");
        for (int b = 0; b < n_blocks; b++) {
            int64_t src = *p++;
            LF_CHECK(src >= LF_SRC_INPUT && src < i && (b == 0 || src > L->blocks[b - 1].src),
                     LF_ERR_INTERNAL, "malformed block list of layer %d", i);
            L->blocks[b].src = (int)src;
            LF_CHECK(layout_add(bytes, L->n_out, lf_model_width(m, (int)src)), LF_ERR_OVERFLOW,
                     "model too large to share");
        }
        LF_CHECK(L->blocks[n_blocks - 1].src == i - 1, LF_ERR_INTERNAL,
                 "layer %d has no predecessor block", i);
    }
    *out = m;
    m = NULL;
cleanup:
    lf_model_destroy(&m);
    return err;
}

/* Points the arrays of m into base, in the layout order; zero_pad clears the padding. */
static void point_into(lf_model_t *m, char *base, bool zero_pad)
{
    int64_t off = 0;
    for (int i = 0; i < m->n_layers; i++) {
        lf_layer_t *L = &m->layers[i];
        for (int b = -1; b < L->n_blocks; b++) {
            int64_t cols = b < 0 ? 1 : lf_model_width(m, L->blocks[b].src);
            int64_t bytes = L->n_out * cols * (int64_t)sizeof(float);
            float *a = (float *)(void *)(base + off);
            if (b < 0)
                L->bias = a;
            else
                L->blocks[b].w = a;
            if (zero_pad)
                memset(base + off + bytes, 0, (size_t)(padded(bytes) - bytes));
            off += padded(bytes);
        }
    }
}

/* Records a failed MPI call whose failure the caller agrees on before jumping. */
static lf_err_t mpi_failed(int rc, const char *call, int64_t bytes)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    lf_error_record(__FILE__, __LINE__, __func__, LF_ERR_MPI,
                    "%s of %lld bytes for the node's copy of the model failed: %s", call,
                    (long long)bytes, msg);
    return LF_ERR_MPI;
}

/* The node's ranks, root first on its node; split further for the test hook. */
static lf_err_t split_node(MPI_Comm comm, int key, MPI_Comm *node)
{
    lf_err_t err = LF_OK;
    MPI_Comm part = MPI_COMM_NULL;
    LF_CALL_MPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, key, MPI_INFO_NULL, node));
    if (share_group > 0) {
        int r = 0;
        LF_CALL_MPI(MPI_Comm_rank(*node, &r));
        LF_CALL_MPI(MPI_Comm_split(*node, r / share_group, r, &part));
        LF_CALL_MPI(MPI_Comm_free(node));
        *node = part;
        part = MPI_COMM_NULL;
    }
cleanup:
    if (part != MPI_COMM_NULL)
        MPI_Comm_free(&part);
    return err;
}

lf_err_t lf_model_share_filled(MPI_Comm comm, int root, const lf_model_t *shape,
                               lf_model_fill_fn fill, void *ctx, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    int64_t *structure = NULL, bytes = 0;
    lf_model_t *m = NULL;
    lf_model_shared_t *sh = NULL;
    MPI_Comm leaders = MPI_COMM_NULL;
    bool locked = false;
    int rank = 0, n = 0, node_rank = 0;
    *out = NULL;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));

    /* The structure (a few integers per layer) goes to every rank, as in lf_model_bcast. */
    LF_CALL(lf_comm_agree(comm, rank == root ? pack_structure(shape, &structure, &n) : LF_OK));
    LF_CALL_MPI(MPI_Bcast(&n, 1, MPI_INT, root, comm));
    LF_CALL(lf_comm_agree(
        comm, rank == root ? LF_OK : lf_malloc((size_t)n, sizeof *structure, (void **)&structure)));
    LF_CALL_MPI(MPI_Bcast(structure, n, MPI_INT64_T, root, comm));
    lf_err_t local = unpack_skeleton(structure, n, &m, &bytes);
    if (local == LF_OK) {
        local = lf_calloc(1, sizeof *sh, (void **)&sh);
        if (local == LF_OK) {
            sh->win = MPI_WIN_NULL;
            sh->node = MPI_COMM_NULL;
            m->shared = sh; /* from here on m is freed by lf_model_release, collectively */
        }
    }
    LF_CALL(lf_comm_agree(comm, local));

    /* Root is the first rank of its node and of the leaders (the nodes' first ranks). */
    int key = rank == root ? 0 : 1;
    LF_CALL(split_node(comm, key, &sh->node));
    LF_CALL_MPI(MPI_Comm_rank(sh->node, &node_rank));
    LF_CALL_MPI(MPI_Comm_size(sh->node, &sh->ranks));
    LF_CALL_MPI(MPI_Comm_split(comm, node_rank == 0 ? 0 : MPI_UNDEFINED, key, &leaders));

    /* One window per node: its first rank allocates all of it, the others nothing, and every
     * rank addresses the first rank's segment. */
    void *mine = NULL, *base = NULL;
    MPI_Aint size = 0;
    int disp = 0;
    int rc = MPI_Win_allocate_shared(node_rank == 0 ? (MPI_Aint)bytes : 0, 1, MPI_INFO_NULL,
                                     sh->node, &mine, &sh->win);
    if (rc != MPI_SUCCESS)
        sh->win = MPI_WIN_NULL;
    LF_CALL(lf_comm_agree(
        comm, rc == MPI_SUCCESS ? LF_OK : mpi_failed(rc, "MPI_Win_allocate_shared", bytes)));
    LF_CALL_MPI(MPI_Win_set_errhandler(sh->win, MPI_ERRORS_RETURN));
    LF_CALL_MPI(MPI_Win_shared_query(sh->win, 0, &size, &disp, &base));
    sh->bytes = (int64_t)size;
    point_into(m, base, rank == root);

    /* Publishing the values (MPI-3 shared memory, unified model, MPI 4.0 section 12.7).
     * The writers are root (fill: plain stores into its node's window) and the other nodes'
     * first ranks (MPI_Bcast among the leaders receives into their node's window); the readers
     * are every rank of each node, with plain loads. Plain stores and loads of different
     * processes on shared memory are ordered only by a process synchronisation plus memory
     * barriers on both sides: each writer's MPI_Win_sync after its last store, then a barrier on
     * the node, then each reader's MPI_Win_sync before its first load (the pattern of the
     * standard's shared-memory examples). MPI_Win_sync is only defined inside a passive-target
     * epoch, hence the lock_all (MPI_MODE_NOCHECK: nobody locks exclusively, it costs nothing).
     * The agreements below are allreduces: they order the steps but are not a memory barrier on
     * their own. After the unlock the window is written again only inside lf_model_update,
     * which repeats this synchronisation, so later loads need no further synchronisation;
     * MPI_Win_free in lf_model_release is collective on the node, so no rank's mapping goes away
     * while another could still be in a collective reading it. */
    LF_CALL_MPI(MPI_Win_lock_all(MPI_MODE_NOCHECK, sh->win));
    locked = true;
    LF_CALL(lf_comm_agree(comm, rank == root ? fill(ctx, m) : LF_OK));
    local = LF_OK;
    if (leaders != MPI_COMM_NULL) {
        int n_leaders = 1;
        LF_CALL_MPI(MPI_Comm_size(leaders, &n_leaders));
        if (n_leaders > 1)
            local = bcast_floats(leaders, 0, base, bytes / (int64_t)sizeof(float));
    }
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL_MPI(MPI_Win_sync(sh->win)); /* writers: every store before the barrier */
    LF_CALL_MPI(MPI_Barrier(sh->node));
    LF_CALL_MPI(MPI_Win_sync(sh->win)); /* readers: every load after it */
    locked = false;
    LF_CALL_MPI(MPI_Win_unlock_all(sh->win));
    *out = m;
    m = NULL;
cleanup:
    if (locked)
        MPI_Win_unlock_all(sh->win);
    if (leaders != MPI_COMM_NULL)
        MPI_Comm_free(&leaders);
    lf_free(structure);
    lf_model_release(comm, &m);
    return err;
}

typedef struct {
    const lf_model_t *m;
} copy_job_t;

static lf_err_t copy_values(void *ctx, lf_model_t *dst)
{
    const lf_model_t *m = ((const copy_job_t *)ctx)->m;
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        memcpy(dst->layers[i].bias, L->bias, (size_t)L->n_out * sizeof(float));
        for (int b = 0; b < L->n_blocks; b++)
            memcpy(dst->layers[i].blocks[b].w, L->blocks[b].w,
                   (size_t)(L->n_out * lf_model_width(m, L->blocks[b].src)) * sizeof(float));
    }
    return LF_OK;
}

lf_err_t lf_model_share(MPI_Comm comm, int root, const lf_model_t *m, lf_model_t **out)
{
    copy_job_t job = {.m = m};
    return lf_model_share_filled(comm, root, m, copy_values, &job, out);
}

lf_err_t lf_model_update(MPI_Comm comm, lf_model_t *m, lf_model_fill_fn write, void *ctx)
{
    lf_err_t err = LF_OK, local = LF_OK;
    lf_model_shared_t *sh = m->shared;
    bool locked = false;
    int node_rank = 0;
    if (!sh) {
        LF_CALL(lf_comm_agree(comm, write(ctx, m)));
        goto cleanup;
    }
    /* The pattern of lf_model_share_filled, with one more step in front: the node's ranks may
     * have read the window until they entered this call, so each one's MPI_Win_sync and the
     * barrier put all those loads before the first rank's first store (a store that overtook a
     * load of another rank would change what that rank computed). Then the publication: the
     * writer's sync, the barrier, every reader's sync. Only the node's first rank writes: every
     * rank of the node maps the same memory. */
    sh->fingerprint_known = false; /* the values change, from the first store on */
    LF_CALL_MPI(MPI_Comm_rank(sh->node, &node_rank));
    LF_CALL_MPI(MPI_Win_lock_all(MPI_MODE_NOCHECK, sh->win));
    locked = true;
    LF_CALL_MPI(MPI_Win_sync(sh->win)); /* readers: every load before the barrier */
    LF_CALL_MPI(MPI_Barrier(sh->node));
    LF_CALL_MPI(MPI_Win_sync(sh->win)); /* writer: every store after it */
    if (node_rank == 0)
        local = write(ctx, m);
    /* Published even after a failed write, so that every rank leaves with the same (partial)
     * values and the error is agreed below, outside the epoch. */
    LF_CALL_MPI(MPI_Win_sync(sh->win)); /* writer: every store before the barrier */
    LF_CALL_MPI(MPI_Barrier(sh->node));
    LF_CALL_MPI(MPI_Win_sync(sh->win)); /* readers: every load after it */
    locked = false;
    LF_CALL_MPI(MPI_Win_unlock_all(sh->win));
    LF_CALL(lf_comm_agree(comm, local));
cleanup:
    if (locked)
        MPI_Win_unlock_all(sh->win);
    return err;
}

void lf_model_release(MPI_Comm comm, lf_model_t **m)
{
    (void)comm; /* the window's own group (the node) is what MPI_Win_free synchronises */
    if (!m || !*m)
        return;
    lf_model_shared_t *sh = (*m)->shared;
    (*m)->shared = NULL;
    model_free(*m, sh == NULL);
    *m = NULL;
    if (!sh)
        return;
    if (sh->win != MPI_WIN_NULL)
        MPI_Win_free(&sh->win);
    if (sh->node != MPI_COMM_NULL)
        MPI_Comm_free(&sh->node);
    lf_free(sh);
}
