/* Least-squares reconstruction of the layers whose inputs changed; see refit.h. */
#include "linfold/refit.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/forward.h"
#include "linfold/log.h"
#include "linfold/pool.h"
#include "linfold/refit_dist.h"
#include "linfold/tree_sum.h"

/* LAPACK (OpenBLAS carries it), Fortran calling convention. */
extern void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda,
                   double *b, const int *ldb, int *info);
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info);

enum { GROUP_BLOCKS = 16, HOLD_EVERY = 5 };

/* The default λ grid, relative to diag(G) (refit.h). */
static const double DEFAULT_LAMBDAS[] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1};
#define DEFAULT_LAMBDA 1e-3 /* when no row is held out */

int64_t lf_refit_group_rows(int64_t n) { return GROUP_BLOCKS * lf_batch_block_rows(n, 256); }

int64_t lf_refit_dist_k(const lf_refit_opts_t *opts)
{
    return opts && opts->dist_k > 0 ? opts->dist_k : LF_REFIT_DIST_K_DEFAULT;
}

static bool held_out(int64_t row) { return row % HOLD_EVERY == HOLD_EVERY - 1; }

void lf_refit_sums_free(lf_refit_sums_t *s)
{
    lf_free(s->g_fit);
    lf_free(s->g_held);
    lf_free(s->b_fit);
    lf_free(s->b_held);
    memset(s, 0, sizeof *s);
}

void lf_refit_report_free(lf_refit_report_t *r)
{
    if (!r)
        return;
    lf_free(r->layers);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- the rows */

/* The rows the sums use and this rank's share of them: all groups, or with a row budget that
 * many groups spread evenly over the rows (group i of the sums is group i * all / groups of the
 * data), so a budget samples the whole dataset rather than its head. The groups of the sums are
 * dealt to the ranks in turn: this rank's t-th is g0 + t * stride (g0 its rank, stride the rank
 * count), so that in round t every rank holds one group of t * stride + [0, stride) and the
 * panels' owners receive them in group order (see sums_group). */
typedef struct {
    int64_t n, group_rows, all_groups, groups, g0, stride, ng;
} row_plan_t;

static row_plan_t plan_rows(int64_t n, int64_t max_rows, int rank, int size)
{
    row_plan_t r = {.n = n, .group_rows = lf_refit_group_rows(n), .g0 = rank, .stride = size};
    r.all_groups = (n + r.group_rows - 1) / r.group_rows;
    r.groups = r.all_groups;
    if (max_rows > 0 && max_rows < n) {
        int64_t want = (max_rows + r.group_rows - 1) / r.group_rows;
        r.groups = want < r.all_groups ? want : r.all_groups;
    }
    r.ng = r.groups > rank ? (r.groups - rank + size - 1) / size : 0;
    return r;
}

/* The sums' group of data group g: the smallest i with i * all / groups >= g. */
static int64_t sums_group_of(const row_plan_t *r, int64_t g)
{
    return (g * r->groups + r->all_groups - 1) / r->all_groups;
}

/* This rank's row ranges (*mine, caller frees) for the batch pass. */
static lf_err_t rank_ranges(const row_plan_t *r, lf_row_range_t **mine, int64_t *n_mine)
{
    lf_err_t err = LF_OK;
    *n_mine = 0;
    LF_CALL(lf_malloc((size_t)(r->ng > 0 ? r->ng : 1), sizeof **mine, (void **)mine));
    for (int64_t t = 0; t < r->ng; t++) {
        int64_t i = r->g0 + t * r->stride;
        int64_t g = i * r->all_groups / r->groups, lo = g * r->group_rows;
        int64_t hi = lo + r->group_rows < r->n ? lo + r->group_rows : r->n;
        if (*n_mine > 0 && (*mine)[*n_mine - 1].hi == lo)
            (*mine)[*n_mine - 1].hi = hi;
        else
            (*mine)[(*n_mine)++] = (lf_row_range_t){lo, hi};
    }
cleanup:
    return err;
}

/* Where row `row` (global) of this rank's groups sits in a per-rank table of its rows. */
static int64_t rank_row(const row_plan_t *r, int64_t row)
{
    int64_t g = row / r->group_rows;
    return (sums_group_of(r, g) - r->g0) / r->stride * r->group_rows + (row - g * r->group_rows);
}

/* The original model's pre-activations at the neurons every refitted layer keeps, for this
 * rank's rows, computed in one pass before the refits. Without it each layer's pass runs the
 * original model again up to its targets, about one calibration pass per refitted layer; the
 * values are the same bits either way (the same rows in the same compute blocks). */
typedef struct {
    row_plan_t rows;
    float *z;             /* (ng * group_rows, width), row-major */
    int64_t width;        /* columns: the kept neurons of every cached layer, layer by layer */
    int64_t *col0;        /* (original layers): the layer's first column, or -1 */
    const int64_t **kept; /* (original layers): its kept neurons (borrowed) */
    const int64_t *n_kept;
    int last; /* the last cached layer of the original model */
} targets_t;

/* ---------------------------------------------------------------- the sums */

typedef struct {
    MPI_Comm comm;
    int rank, size;
    const lf_model_t *m, *f;
    int layer_f, layer_m;
    const int64_t *kept;
    int64_t k, n_out;
    double *h, *z;       /* (group_rows, k), (group_rows, n_out): the group's fit rows, then its
                      held-out rows (compact_row) */
    double *send;        /* one owner's part of this rank's group (the largest part fits) */
    double *recv;        /* this rank's part of another rank's group */
    lf_tree_sum_t *tree; /* this rank's parts, over every group */
    int threads;
    row_plan_t rows;        /* the rows the sums use, and this rank's groups */
    int64_t round;          /* I/O batches done: round t holds groups t * size + [0, size) */
    const targets_t *cache; /* the targets, or NULL: the original model runs in each block */
    double product_seconds, product_flops;
} sums_pass_t;

/* Where the row at global index `row` of the group that starts at row g0 goes in the group's
 * h and z: its fit rows first, then its held-out rows, each in row order, so the products take
 * the two sets as they are, without a copy. A group is one I/O batch of whole rows (the rank
 * owns it all). */
static int64_t compact_row(const sums_pass_t *s, int64_t g0, int64_t row)
{
    int64_t end = g0 + s->rows.group_rows < s->rows.n ? g0 + s->rows.group_rows : s->rows.n;
    /* Rows r < x with r mod HOLD_EVERY = HOLD_EVERY - 1 number x / HOLD_EVERY. */
    int64_t held_before = row / HOLD_EVERY - g0 / HOLD_EVERY;
    int64_t n_fit = (end - g0) - (end / HOLD_EVERY - g0 / HOLD_EVERY);
    return held_out(row) ? n_fit + held_before : (row - g0) - held_before;
}

typedef struct {
    const sums_pass_t *s;
    const lf_batch_t *b;
} hook_ctx_t;

/* The original model's pre-activations of the target layer, kept neurons, rows that hold data. */
static lf_err_t take_targets(int layer, const float *z, int64_t rows, int64_t n_out, void *arg)
{
    (void)rows;
    const hook_ctx_t *c = arg;
    const sums_pass_t *s = c->s;
    if (layer != s->layer_m)
        return LF_OK;
    for (int64_t r = c->b->first; r < c->b->first + c->b->valid; r++) {
        double *dst = s->z + compact_row(s, c->b->row0 - c->b->offset, c->b->row0 + r) * s->n_out;
        for (int64_t o = 0; o < s->n_out; o++)
            dst[o] = (double)z[r * n_out + s->kept[o]];
    }
    return LF_OK;
}

/* One compute block: the original model up to the targets, the compressed one for the inputs. */
static lf_err_t sums_block(const lf_batch_t *b, int tid, void *arg)
{
    (void)tid;
    lf_err_t err = LF_OK;
    const sums_pass_t *s = arg;
    const float *y = NULL;
    hook_ctx_t hc = {.s = s, .b = b};
    const lf_layer_t *L = &s->f->layers[s->layer_f];
    /* Each model only as far as the layer needs: the original to the targets, f to the last
     * layer the inputs come from. */
    int n_inputs = 0;
    for (int q = 0; q < L->n_blocks; q++)
        n_inputs = L->blocks[q].src + 1 > n_inputs ? L->blocks[q].src + 1 : n_inputs;
    if (s->cache) {
        const targets_t *t = s->cache;
        for (int64_t r = b->first; r < b->first + b->valid; r++) {
            const float *src =
                t->z + rank_row(&t->rows, b->row0 + r) * t->width + t->col0[s->layer_m];
            double *dst = s->z + compact_row(s, b->row0 - b->offset, b->row0 + r) * s->n_out;
            for (int64_t o = 0; o < s->n_out; o++)
                dst[o] = (double)src[o];
        }
    } else {
        LF_CALL(lf_batch_forward_layers(b, 0, s->layer_m + 1, take_targets, &hc, &y));
    }
    LF_CALL(lf_batch_forward_layers(b, 1, n_inputs, NULL, NULL, &y));
    const lf_forward_t *fw = lf_batch_workspace(b, 1);
    for (int64_t r = b->first; r < b->first + b->valid; r++) {
        double *dst = s->h + compact_row(s, b->row0 - b->offset, b->row0 + r) * s->k;
        int64_t at = 0;
        for (int q = 0; q < L->n_blocks; q++) {
            int src = L->blocks[q].src;
            int64_t w = lf_model_width(s->f, src);
            const float *a =
                src == LF_SRC_INPUT ? b->x + r * b->cols : lf_forward_activations(fw, src) + r * w;
            for (int64_t c = 0; c < w; c++)
                dst[at + c] = (double)a[c];
            at += w;
        }
        dst[at] = 1.0; /* the bias */
    }
cleanup:
    return err;
}

/* ---------------------------------------------------------------- the parts
 *
 * The sums are owned in column panels (refit.h, lf_refit_panels_t): G's upper part and B, each
 * cut into panels of LF_REFIT_PANEL columns, each rank owning a run of them
 * (lf_refit_dist_panels). Rank s's part of a group is the vector
 *
 *     [G_fit panels | G_held panels | B_fit panels | B_held panels | n_fit n_held zz_fit zz_held]
 *
 * over its own panels (the four scalars in every part, so every owner has them). */

/* Where the pieces of rank r's part lie. */
typedef struct {
    lf_refit_panels_t pn;
    int64_t eg, eb, len; /* elements of its G panels, of its B panels; the part's length */
} part_layout_t;

static part_layout_t part_layout(int64_t k, int64_t o, int r, int size)
{
    part_layout_t p;
    lf_refit_dist_panels(k, o, LF_REFIT_PANEL, r, size, &p.pn);
    p.eg = lf_refit_panel_elems(k, k, LF_REFIT_PANEL, true, p.pn.g0, p.pn.g1);
    p.eb = lf_refit_panel_elems(k, o, LF_REFIT_PANEL, false, p.pn.b0, p.pn.b1);
    p.len = 2 * p.eg + 2 * p.eb + 4;
    return p;
}

/* One owner's part of a group's products, in tiles run on the rank's threads: a tile's bits
 * depend only on its shape and rows, never on which thread runs it, how many there are or which
 * rank owns it. Tiles are the panels: G's panel q is G[0 : c1, c0 : c1] = H[:, 0 : c1]ᵀ
 * H[:, c0 : c1] (the upper triangle by block columns), B's is B[:, c0 : c1] = Hᵀ Z[:, c0 : c1]. */
typedef struct {
    int64_t k, o, rows[2]; /* rows[0] fit rows, rows[1] held-out rows */
    const double *h[2], *z[2];
    const part_layout_t *pl;
    double *v; /* the part */
} tiles_t;

static lf_err_t tile_task(int task, int tid, void *arg)
{
    (void)tid;
    const tiles_t *t = arg;
    const lf_refit_panels_t *pn = &t->pl->pn;
    int64_t ng = pn->g1 - pn->g0, nb = pn->b1 - pn->b0, k = t->k, o = t->o;
    int set = (int)(task / (ng + nb)), j = (int)(task % (ng + nb));
    int64_t rows = t->rows[set];
    const double *h = t->h[set];
    bool is_g = j < ng;
    int64_t q = is_g ? pn->g0 + j : pn->b0 + (j - ng), n_cols = is_g ? k : o;
    int64_t c0 = q * LF_REFIT_PANEL,
            c1 = c0 + LF_REFIT_PANEL < n_cols ? c0 + LF_REFIT_PANEL : n_cols;
    int64_t w = c1 - c0, height = is_g ? c1 : k;
    double *out =
        is_g ? t->v + set * t->pl->eg + lf_refit_panel_elems(k, k, LF_REFIT_PANEL, true, pn->g0, q)
             : t->v + 2 * t->pl->eg + set * t->pl->eb +
                   lf_refit_panel_elems(k, o, LF_REFIT_PANEL, false, pn->b0, q);
    if (rows == 0) {
        memset(out, 0, (size_t)(height * w) * sizeof *out);
        return LF_OK;
    }
    if (is_g)
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c1, (int)w, (int)rows, 1.0, h,
                    (int)k, h + c0, (int)k, 0.0, out, (int)w);
    else
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)w, (int)rows, 1.0, h,
                    (int)k, t->z[set] + c0, (int)o, 0.0, out, (int)w);
    return LF_OK;
}

/* Owner r's part of this rank's group (compacted rows: nf fit rows, then nh held-out rows, of
 * h / z) into s->send. */
static lf_err_t group_part(sums_pass_t *s, int r, int64_t nf, int64_t nh)
{
    int64_t k = s->k, o = s->n_out;
    part_layout_t pl = part_layout(k, o, r, s->size);
    tiles_t t = {.k = k,
                 .o = o,
                 .rows = {nf, nh},
                 .h = {s->h, s->h + nf * k},
                 .z = {s->z, s->z + nf * o},
                 .pl = &pl,
                 .v = s->send};
    double t0 = lf_log_seconds();
    int64_t tasks = 2 * (pl.pn.g1 - pl.pn.g0 + pl.pn.b1 - pl.pn.b0);
    lf_err_t err = tasks > 0 ? lf_pool_run(s->threads, (int)tasks, tile_task, &t) : LF_OK;
    s->product_seconds += lf_log_seconds() - t0;
    double *tail = s->send + pl.len - 4;
    tail[0] = (double)nf;
    tail[1] = (double)nh;
    tail[2] = tail[3] = 0.0; /* Σ‖z‖² over the fit rows and the held-out rows */
    for (int64_t r2 = 0; r2 < nf + nh; r2++)
        for (int64_t j = 0; j < o; j++)
            tail[r2 < nf ? 2 : 3] += s->z[r2 * o + j] * s->z[r2 * o + j];
    return err;
}

enum { CHUNK = 1 << 20, PART_TAG = 7 }; /* CHUNK: doubles per message (8 MiB) */

static lf_err_t send_part(MPI_Comm comm, const double *v, int64_t len, int to)
{
    lf_err_t err = LF_OK;
    for (int64_t at = 0; at < len; at += CHUNK) {
        int n = (int)(len - at < CHUNK ? len - at : CHUNK);
        LF_CALL_MPI(MPI_Send(v + at, n, MPI_DOUBLE, to, PART_TAG, comm));
    }
cleanup:
    return err;
}

static lf_err_t recv_part(MPI_Comm comm, double *v, int64_t len, int from)
{
    lf_err_t err = LF_OK;
    for (int64_t at = 0; at < len; at += CHUNK) {
        int n = (int)(len - at < CHUNK ? len - at : CHUNK);
        LF_CALL_MPI(MPI_Recv(v + at, n, MPI_DOUBLE, from, PART_TAG, comm, MPI_STATUS_IGNORE));
    }
cleanup:
    return err;
}

/* The batch must be group g of the sums, whole: its rows were placed for that (compact_row). */
static lf_err_t check_batch(const sums_pass_t *s, const lf_batch_t *io, int64_t g)
{
    lf_err_t err = LF_OK;
    const row_plan_t *r = &s->rows;
    int64_t whole = io->row0 + r->group_rows < r->n ? r->group_rows : r->n - io->row0;
    LF_CHECK(io->row0 % r->group_rows == 0 && sums_group_of(r, io->row0 / r->group_rows) == g &&
                 io->first == 0 && io->valid == whole,
             LF_ERR_INTERNAL,
             "refit sums: batch of rows %lld + [%lld, %lld) is not group %lld of the sums, whole",
             (long long)io->row0, (long long)io->first, (long long)(io->first + io->valid),
             (long long)g);
cleanup:
    return err;
}

/* After each I/O batch: round t of the sums. Every rank holds at most one group of t * P +
 * [0, P) (rank r group t P + r, if it exists). For each owner in turn every rank with a group
 * forms that owner's part and sends it; the owner adds the round's groups to its tree in group
 * order, so every owner's tree sees groups 0, 1, 2, ... as one rank would. A rank never holds
 * more than one owner's part of a group besides its own tree: no whole G, at any K.
 * Collective on s->comm (the batch's callback). */
static lf_err_t sums_group(const lf_batch_t *io, void *arg)
{
    lf_err_t err = LF_OK, local = LF_OK;
    sums_pass_t *s = arg;
    int64_t k = s->k, o = s->n_out, nf = 0, nh = 0, t = s->round++;
    int64_t first = t * s->size; /* the round's first group */
    bool mine = io->valid > 0;
    if (mine) { /* the group's fit and held-out rows, placed by sums_block */
        local = check_batch(s, io, first + s->rank);
        int64_t end = io->row0 + io->valid;
        nh = end / HOLD_EVERY - io->row0 / HOLD_EVERY;
        nf = io->valid - nh;
    }
    /* The work as a dsyrk + dgemm would count it (rows k (k + 1) + 2 rows k n_out), so that
     * rates compare with those routines' (bench/gram_rate.c); the tiles also compute the lower
     * halves of G's diagonal blocks. */
    s->product_flops += (double)(nf + nh) * (double)k * ((double)k + 1.0 + 2.0 * (double)o);
    for (int d = 0; d < s->size; d++) {
        part_layout_t pl = part_layout(k, o, d, s->size);
        if (mine && local == LF_OK)
            local = group_part(s, d, nf, nh);
        if (d != s->rank) {
            if (mine) /* sent even after an error: the owner expects it; agreed below */
                LF_CALL(send_part(s->comm, s->send, pl.len, d));
            continue;
        }
        for (int src = 0; src < s->size && first + src < s->rows.groups; src++) {
            const double *v = s->send;
            if (src != s->rank) {
                LF_CALL(recv_part(s->comm, s->recv, pl.len, src));
                v = s->recv;
            }
            if (local == LF_OK)
                local = lf_tree_sum_push(s->tree, first + src, v);
        }
    }
    LF_CALL(lf_comm_agree(s->comm, local));
cleanup:
    return err;
}

/* Completes the sums from the owners' trees into out: with dist each rank keeps its panels;
 * otherwise the owners share theirs and every rank assembles the whole sums, G mirrored from its
 * upper part. Collective on comm. */
static lf_err_t finish_sums(sums_pass_t *s, bool dist, lf_refit_sums_t *out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int64_t k = s->k, o = s->n_out;
    part_layout_t me = part_layout(k, o, s->rank, s->size);
    double *total = NULL, *buf = NULL;
    out->k = k;
    out->n_out = o;
    out->dist = dist;
    out->panels = me.pn;
    local = lf_malloc((size_t)me.len, sizeof *total, (void **)&total);
    if (local == LF_OK)
        local = lf_tree_sum_finish(MPI_COMM_SELF, s->tree, total);
    int64_t ng = dist ? me.eg : k * k, nb = dist ? me.eb : k * o;
    if (local == LF_OK)
        local = lf_malloc((size_t)(ng > 0 ? ng : 1), sizeof *out->g_fit, (void **)&out->g_fit);
    if (local == LF_OK)
        local = lf_malloc((size_t)(ng > 0 ? ng : 1), sizeof *out->g_held, (void **)&out->g_held);
    if (local == LF_OK)
        local = lf_malloc((size_t)(nb > 0 ? nb : 1), sizeof *out->b_fit, (void **)&out->b_fit);
    if (local == LF_OK)
        local = lf_malloc((size_t)(nb > 0 ? nb : 1), sizeof *out->b_held, (void **)&out->b_held);
    LF_CALL(lf_comm_agree(s->comm, local));
    const double *tail = total + me.len - 4; /* the same in every part */
    out->fit_rows = (int64_t)tail[0];
    out->held_rows = (int64_t)tail[1];
    out->zz_fit = tail[2];
    out->zz_held = tail[3];
    if (dist) {
        memcpy(out->g_fit, total, (size_t)me.eg * sizeof *total);
        memcpy(out->g_held, total + me.eg, (size_t)me.eg * sizeof *total);
        memcpy(out->b_fit, total + 2 * me.eg, (size_t)me.eb * sizeof *total);
        memcpy(out->b_held, total + 2 * me.eg + me.eb, (size_t)me.eb * sizeof *total);
        goto cleanup;
    }
    int64_t most = 0;
    for (int r = 0; r < s->size; r++) {
        part_layout_t pl = part_layout(k, o, r, s->size);
        most = pl.len > most ? pl.len : most;
    }
    LF_CALL(lf_comm_agree(s->comm, lf_malloc((size_t)most, sizeof *buf, (void **)&buf)));
    for (int r = 0; r < s->size; r++) { /* each owner's panels to every rank, placed */
        part_layout_t pl = part_layout(k, o, r, s->size);
        if (r == s->rank)
            memcpy(buf, total, (size_t)pl.len * sizeof *buf);
        for (int64_t at = 0; at < pl.len; at += CHUNK) {
            int n = (int)(pl.len - at < CHUNK ? pl.len - at : CHUNK);
            LF_CALL_MPI(MPI_Bcast(buf + at, n, MPI_DOUBLE, r, s->comm));
        }
        const double *v = buf;
        for (int set = 0; set < 4; set++) {
            bool is_g = set < 2;
            int64_t q0 = is_g ? pl.pn.g0 : pl.pn.b0, q1 = is_g ? pl.pn.g1 : pl.pn.b1;
            int64_t n_cols = is_g ? k : o;
            double *dst = set == 0   ? out->g_fit
                          : set == 1 ? out->g_held
                          : set == 2 ? out->b_fit
                                     : out->b_held;
            for (int64_t q = q0; q < q1; q++) {
                int64_t c0 = q * LF_REFIT_PANEL,
                        c1 = c0 + LF_REFIT_PANEL < n_cols ? c0 + LF_REFIT_PANEL : n_cols;
                int64_t w = c1 - c0, height = is_g ? c1 : k;
                for (int64_t i = 0; i < height; i++)
                    memcpy(dst + i * n_cols + c0, v + i * w, (size_t)w * sizeof *v);
                v += height * w;
            }
        }
    }
    for (double *g = out->g_fit; g; g = g == out->g_fit ? out->g_held : NULL)
        for (int64_t i = 0; i < k; i++) /* the lower triangle from the upper */
            for (int64_t j = 0; j < i; j++)
                g[i * k + j] = g[j * k + i];
cleanup:
    lf_free(buf);
    lf_free(total);
    return err;
}

static lf_err_t sums_pass(MPI_Comm comm, const lf_model_t *m, const lf_model_t *f, int layer_f,
                          int layer_m, const int64_t *kept, lf_dataset_t *x,
                          const lf_refit_opts_t *opts, const targets_t *cache, lf_refit_sums_t *out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    lf_row_range_t *mine = NULL;
    double t0 = lf_log_seconds();
    memset(out, 0, sizeof *out);
    const lf_layer_t *L = &f->layers[layer_f];
    sums_pass_t s = {.comm = comm,
                     .m = m,
                     .f = f,
                     .layer_f = layer_f,
                     .layer_m = layer_m,
                     .kept = kept,
                     .n_out = L->n_out,
                     .threads = opts->threads,
                     .cache = cache};
    LF_CALL_MPI(MPI_Comm_rank(comm, &s.rank));
    LF_CALL_MPI(MPI_Comm_size(comm, &s.size));
    s.k = 1;
    for (int q = 0; q < L->n_blocks; q++)
        s.k += lf_model_width(f, L->blocks[q].src);
    int64_t k = s.k, o = s.n_out, most = 0;
    for (int r = 0; r < s.size; r++) {
        part_layout_t pl = part_layout(k, o, r, s.size);
        most = pl.len > most ? pl.len : most;
    }
    part_layout_t me = part_layout(k, o, s.rank, s.size);
    s.rows = plan_rows(lf_h5io_dataset_rows(x), opts->max_rows, s.rank, s.size);
    int64_t n_mine = 0;
    LF_CALL(lf_comm_agree(comm, rank_ranges(&s.rows, &mine, &n_mine)));
    lf_batch_part_t part = {.rows = mine, .n_rows = n_mine, .own = true};
    size_t rows_x_k = (size_t)(s.rows.group_rows * k), rows_x_o = (size_t)(s.rows.group_rows * o);
    local = lf_tree_sum_create(me.len, s.rows.groups, &s.tree);
    if (local == LF_OK)
        local = lf_malloc(rows_x_k, sizeof *s.h, (void **)&s.h);
    if (local == LF_OK)
        local = lf_malloc(rows_x_o > 0 ? rows_x_o : 1, sizeof *s.z, (void **)&s.z);
    if (local == LF_OK)
        local = lf_malloc((size_t)most, sizeof *s.send, (void **)&s.send);
    if (local == LF_OK)
        local = lf_malloc((size_t)me.len, sizeof *s.recv, (void **)&s.recv);
    LF_CALL(lf_comm_agree(comm, local));
    const lf_model_t *models[] = {m, f};
    lf_batch_opts_t bo = {.batch_rows = s.rows.group_rows, .threads = opts->threads};
    LF_CALL(lf_batch_run_part(comm, x, NULL, models, 2, &bo, &part, sums_block, sums_group, &s));
    /* Every round must have run: the pass makes as many batches as the busiest rank has groups. */
    LF_CHECK(s.round == (s.rows.groups + s.size - 1) / s.size, LF_ERR_INTERNAL,
             "the refit's sums ran %lld rounds for %lld groups on %d ranks", (long long)s.round,
             (long long)s.rows.groups, s.size);
    /* One rank gains nothing from the grid (the same memory, 1.6-1.8 times the time of dposv
     * at K = 4,097): the default threshold applies from two ranks; an explicit one always. */
    bool dist = k >= lf_refit_dist_k(opts) && (s.size > 1 || opts->dist_k > 0);
    LF_CALL(finish_sums(&s, dist, out));
    out->seconds = lf_log_seconds() - t0;
    out->product_seconds = s.product_seconds;
    out->product_flops = s.product_flops;
cleanup:
    if (err != LF_OK)
        lf_refit_sums_free(out);
    lf_free(mine);
    lf_tree_sum_destroy(&s.tree);
    lf_free(s.recv);
    lf_free(s.send);
    lf_free(s.z);
    lf_free(s.h);
    return err;
}

lf_err_t lf_refit_sums(MPI_Comm comm, const lf_model_t *m, const lf_model_t *f, int layer_f,
                       int layer_m, const int64_t *kept, lf_dataset_t *x,
                       const lf_refit_opts_t *opts, lf_refit_sums_t *out)
{
    return sums_pass(comm, m, f, layer_f, layer_m, kept, x, opts, NULL, out);
}

/* ---------------------------------------------------------------- the targets */

typedef struct {
    targets_t *t;
    const lf_batch_t *b;
} cache_hook_t;

static lf_err_t keep_targets(int layer, const float *z, int64_t rows, int64_t n_out, void *arg)
{
    (void)rows;
    const cache_hook_t *c = arg;
    const targets_t *t = c->t;
    if (t->col0[layer] < 0)
        return LF_OK;
    for (int64_t r = c->b->first; r < c->b->first + c->b->valid; r++) {
        float *dst = t->z + rank_row(&t->rows, c->b->row0 + r) * t->width + t->col0[layer];
        for (int64_t o = 0; o < t->n_kept[layer]; o++)
            dst[o] = z[r * n_out + t->kept[layer][o]];
    }
    return LF_OK;
}

static lf_err_t cache_block(const lf_batch_t *b, int tid, void *arg)
{
    (void)tid;
    const float *y = NULL;
    cache_hook_t c = {.t = arg, .b = b};
    return lf_batch_forward_layers(b, 0, c.t->last + 1, keep_targets, &c, &y);
}

/* Fills t (its kept, n_kept, col0, width and last set) for this rank's rows of x, when the table
 * fits in limit bytes on the rank with the most rows; *made says whether it was made (the same on
 * every rank). Collective on comm. */
static lf_err_t cache_targets(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *x,
                              const lf_refit_opts_t *opts, int64_t limit, targets_t *t, bool *made)
{
    lf_err_t err = LF_OK;
    int rank = 0, size = 1;
    lf_row_range_t *mine = NULL;
    int64_t n_mine = 0;
    *made = false;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL_MPI(MPI_Comm_size(comm, &size));
    t->rows = plan_rows(lf_h5io_dataset_rows(x), opts->max_rows, rank, size);
    /* The largest share is the first rank's: decided alike on every rank. */
    int64_t most = (t->rows.groups + size - 1) / size * t->rows.group_rows;
    if (t->width == 0 || limit <= 0 || (double)most * (double)t->width * 4.0 > (double)limit)
        return LF_OK;
    LF_CALL(lf_comm_agree(comm, lf_malloc((size_t)(t->rows.ng * t->rows.group_rows > 0
                                                       ? t->rows.ng * t->rows.group_rows * t->width
                                                       : 1),
                                          sizeof *t->z, (void **)&t->z)));
    LF_CALL(lf_comm_agree(comm, rank_ranges(&t->rows, &mine, &n_mine)));
    lf_batch_part_t part = {.rows = mine, .n_rows = n_mine, .own = true};
    const lf_model_t *models[] = {m};
    lf_batch_opts_t bo = {.batch_rows = t->rows.group_rows, .threads = opts->threads};
    LF_CALL(lf_batch_run_part(comm, x, NULL, models, 1, &bo, &part, cache_block, NULL, t));
    *made = true;
cleanup:
    lf_free(mine);
    return err;
}

/* ---------------------------------------------------------------- solving */

/* The system for the fit rows, or all rows: A = G + λ D (column-major = row-major, symmetric) and
 * the right-hand side B in column-major (k x n_out). */
static void build_system(const lf_refit_sums_t *s, double lambda, bool all_rows, double *a,
                         double *bc)
{
    int64_t k = s->k, o = s->n_out;
    for (int64_t i = 0; i < k * k; i++)
        a[i] = s->g_fit[i] + (all_rows ? s->g_held[i] : 0.0);
    for (int64_t i = 0; i < k; i++) {
        double d = a[i * k + i];
        a[i * k + i] += lambda * (d > 0.0 ? d : 1.0);
    }
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < o; j++)
            bc[j * k + i] = s->b_fit[i * o + j] + (all_rows ? s->b_held[i * o + j] : 0.0);
}

/* X = V diag(1 / w) Vᵀ B over the eigenvalues w above k ε max(w): the minimum-norm solution
 * when A is singular. a is overwritten by V; bc (column-major) by X. */
static lf_err_t solve_eigen(double *a, double *bc, int64_t k, int64_t o)
{
    lf_err_t err = LF_OK;
    double *w = NULL, *work = NULL, *t = NULL, wq = 0;
    int *iwork = NULL, n = (int)k, info = 0, lwork = -1, liwork = -1, iq = 0;
    dsyevd_("V", "U", &n, a, &n, w, &wq, &lwork, &iq, &liwork, &info);
    LF_CHECK(info == 0, LF_ERR_VALUE, "dsyevd workspace query failed (info %d)", info);
    lwork = (int)wq;
    liwork = iq;
    LF_CALL(lf_malloc((size_t)k, sizeof *w, (void **)&w));
    LF_CALL(lf_malloc((size_t)lwork, sizeof *work, (void **)&work));
    LF_CALL(lf_malloc((size_t)liwork, sizeof *iwork, (void **)&iwork));
    LF_CALL(lf_malloc((size_t)(k * (o > 0 ? o : 1)), sizeof *t, (void **)&t));
    dsyevd_("V", "U", &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
    LF_CHECK(info == 0, LF_ERR_VALUE,
             "the eigendecomposition of a %lld x %lld system did not converge (dsyevd info %d)",
             (long long)k, (long long)k, info);
    double cut = (double)k * 2.220446049250313e-16 * fabs(w[k - 1]);
    /* t = Vᵀ B, scaled by 1 / w; then X = V t. */
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, n, (int)o, n, 1.0, a, n, bc, n, 0.0, t, n);
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < o; j++)
            t[j * k + i] = w[i] > cut ? t[j * k + i] / w[i] : 0.0;
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, (int)o, n, 1.0, a, n, t, n, 0.0, bc,
                n);
cleanup:
    lf_free(t);
    lf_free(iwork);
    lf_free(work);
    lf_free(w);
    return err;
}

lf_err_t lf_refit_solve(const lf_refit_sums_t *s, double lambda, bool all_rows, double *x,
                        bool *fallback)
{
    lf_err_t err = LF_OK;
    int64_t k = s->k, o = s->n_out;
    double *a = NULL, *bc = NULL;
    int n = (int)k, nrhs = (int)o, info = 0;
    *fallback = false;
    LF_CHECK(!s->dist, LF_ERR_ARG, "lf_refit_solve needs the whole sums, not a slab of them");
    LF_CALL(lf_malloc((size_t)(k * k), sizeof *a, (void **)&a));
    LF_CALL(lf_malloc((size_t)(k * (o > 0 ? o : 1)), sizeof *bc, (void **)&bc));
    build_system(s, lambda, all_rows, a, bc);
    for (int64_t i = 0; i < k * k; i++)
        LF_CHECK(isfinite(a[i]), LF_ERR_VALUE,
                 "the refit's sums are not finite (overflow in double): inputs too large");
    dposv_("U", &n, &nrhs, a, &n, bc, &n, &info);
    LF_CHECK(info >= 0, LF_ERR_INTERNAL, "dposv: illegal argument %d", -info);
    if (info > 0) { /* not positive definite: start again from the system itself */
        *fallback = true;
        build_system(s, lambda, all_rows, a, bc);
        LF_CALL(solve_eigen(a, bc, k, o));
    }
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < o; j++)
            x[i * o + j] = bc[j * k + i];
cleanup:
    lf_free(bc);
    lf_free(a);
    return err;
}

double lf_refit_held_error(const lf_refit_sums_t *s, const double *x)
{
    int64_t k = s->k, o = s->n_out;
    double *t = NULL, e = 0.0;
    if (s->dist)
        return NAN;
    if (k * o == 0)
        return s->zz_held;
    if (lf_malloc((size_t)(k * o), sizeof *t, (void **)&t) != LF_OK)
        return NAN;
    /* T = G_h X; Σ‖z - hX‖² = Σ‖z‖² + Σ_aj X_aj (T_aj - 2 B_h,aj). */
    cblas_dsymm(CblasRowMajor, CblasLeft, CblasUpper, (int)k, (int)o, 1.0, s->g_held, (int)k, x,
                (int)o, 0.0, t, (int)o);
    for (int64_t i = 0; i < k * o; i++)
        e += x[i] * (t[i] - 2.0 * s->b_held[i]);
    lf_free(t);
    return s->zz_held + e;
}

/* ---------------------------------------------------------------- the refit */

/* X (k x n_out) from layer i of f as it is: the blocks' weights, then the bias. */
static void current_weights(const lf_model_t *f, int i, double *x)
{
    const lf_layer_t *L = &f->layers[i];
    int64_t o = L->n_out, at = 0;
    for (int q = 0; q < L->n_blocks; q++) {
        int64_t w = lf_model_width(f, L->blocks[q].src);
        for (int64_t c = 0; c < w; c++)
            for (int64_t j = 0; j < o; j++)
                x[(at + c) * o + j] = (double)L->blocks[q].w[j * w + c];
        at += w;
    }
    for (int64_t j = 0; j < o; j++)
        x[at * o + j] = (double)L->bias[j];
}

/* What store_weights writes: X (k x n_out, the same on every rank) into layer `layer`. */
typedef struct {
    int layer;
    const double *x;
} store_job_t;

/* The inverse of current_weights (lf_model_fill_fn): run through lf_model_update, so that in a
 * shared model only the node's first rank stores, with every reader of the window synchronised. */
static lf_err_t store_weights(void *ctx, lf_model_t *f)
{
    const store_job_t *job = ctx;
    int i = job->layer;
    const double *x = job->x;
    lf_layer_t *L = &f->layers[i];
    int64_t o = L->n_out, at = 0;
    for (int q = 0; q < L->n_blocks; q++) {
        int64_t w = lf_model_width(f, L->blocks[q].src);
        for (int64_t c = 0; c < w; c++)
            for (int64_t j = 0; j < o; j++)
                L->blocks[q].w[j * w + c] = (float)x[(at + c) * o + j];
        at += w;
    }
    for (int64_t j = 0; j < o; j++)
        L->bias[j] = (float)x[at * o + j];
    return LF_OK;
}

/* Which layers of f to refit: those reading a layer that lost neurons or was refitted, and those
 * whose sources are not their original layer's (a layer between disappeared). src_of[k]: the
 * original index of f's layer k. */
static void choose_layers(const lf_model_t *m, const lf_model_t *f, const int *where,
                          const int *src_of, bool *refit, bool *changed)
{
    for (int k = 0; k < f->n_layers; k++) {
        const lf_layer_t *L = &f->layers[k], *O = &m->layers[src_of[k]];
        bool r = L->n_blocks != O->n_blocks;
        for (int q = 0; q < L->n_blocks && !r; q++) {
            int s = L->blocks[q].src, so = O->blocks[q].src;
            int mapped = so == LF_SRC_INPUT ? LF_SRC_INPUT : where[so];
            r = s != mapped || (s != LF_SRC_INPUT && changed[s]);
        }
        refit[k] = r;
        changed[k] = r || L->n_out != O->n_out;
    }
}

/* Rank 0 chooses λ on the held-out rows and solves on all rows; X goes to every rank. Slab sums
 * (s->dist) are solved on the process grid instead (refit_dist.h). */
static lf_err_t fit_layer(MPI_Comm comm, const lf_refit_sums_t *s, const lf_refit_opts_t *opts,
                          const double *x0, double *x, lf_refit_layer_t *rec)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0;
    int64_t n = s->k * s->n_out;
    double *trial = NULL, info[5] = {0};
    const double *grid = opts->n_lambdas > 0 ? opts->lambdas : DEFAULT_LAMBDAS;
    int n_grid = opts->n_lambdas > 0 ? opts->n_lambdas
                                     : (int)(sizeof DEFAULT_LAMBDAS / sizeof *DEFAULT_LAMBDAS);
    if (s->dist) { /* the same choice, on the process grid */
        LF_CALL(
            lf_refit_dist_fit(comm, s, grid, n_grid, DEFAULT_LAMBDA, opts->dist_block, x0, x, rec));
        goto cleanup;
    }
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    if (rank == 0) {
        double best = INFINITY, lambda = DEFAULT_LAMBDA;
        bool fb = false, any_fb = false;
        local = lf_malloc((size_t)(n > 0 ? n : 1), sizeof *trial, (void **)&trial);
        for (int g = 0; g < n_grid && local == LF_OK && s->held_rows > 0; g++) {
            local = lf_refit_solve(s, grid[g], false, trial, &fb);
            double e = local == LF_OK ? lf_refit_held_error(s, trial) : NAN;
            if (local == LF_OK && e < best) {
                best = e;
                lambda = grid[g];
            }
        }
        double after = s->held_rows > 0 ? best : 0.0; /* the chosen λ's, from the grid */
        if (local == LF_OK)
            local = lf_refit_solve(s, lambda, true, x, &any_fb);
        double per = s->held_rows > 0 && s->n_out > 0
                         ? 1.0 / ((double)s->held_rows * (double)s->n_out)
                         : 0.0;
        double before = lf_refit_held_error(s, x0);
        /* Never a worse layer: weights the refit does not beat on the held-out rows stay. */
        bool keep = local == LF_OK && s->held_rows > 0 && !(after < before);
        if (keep)
            memcpy(x, x0, (size_t)n * sizeof *x);
        info[0] = lambda;
        info[1] = before * per;
        info[2] = after * per;
        info[3] = any_fb;
        info[4] = keep;
    }
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL_MPI(MPI_Bcast(info, 5, MPI_DOUBLE, 0, comm));
    for (int64_t at = 0; at < n; at += 1 << 20) {
        int len = (int)(n - at < (1 << 20) ? n - at : (1 << 20));
        LF_CALL_MPI(MPI_Bcast(x + at, len, MPI_DOUBLE, 0, comm));
    }
    rec->lambda = info[0];
    rec->held_before = info[1];
    rec->held_after = info[2];
    rec->fallback = info[3] != 0.0;
    rec->kept = info[4] != 0.0;
cleanup:
    lf_free(trial);
    return err;
}

lf_err_t lf_refit_apply(MPI_Comm comm, const lf_model_t *m, lf_model_t *f, const lf_plan_t *p,
                        const int *where, lf_dataset_t *x, const lf_refit_opts_t *opts,
                        lf_refit_report_t *report)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int *src_of = NULL;
    bool *refit = NULL, *changed = NULL, cached = false;
    int64_t **kept = NULL, *n_kept = NULL, *col0 = NULL;
    double *x0 = NULL, *xs = NULL;
    lf_refit_sums_t sums = {0};
    lf_refit_report_t rep = {0};
    targets_t cache = {0};
    double t0 = lf_log_seconds();
    LF_CHECK(p->n_layers == m->n_layers, LF_ERR_ARG, "the plan was made for another model");
    local = lf_calloc((size_t)f->n_layers, sizeof *src_of, (void **)&src_of);
    if (local == LF_OK)
        local = lf_calloc((size_t)f->n_layers, sizeof *refit, (void **)&refit);
    if (local == LF_OK)
        local = lf_calloc((size_t)f->n_layers, sizeof *changed, (void **)&changed);
    if (local == LF_OK)
        local = lf_calloc((size_t)f->n_layers, sizeof *rep.layers, (void **)&rep.layers);
    if (local == LF_OK)
        local = lf_calloc((size_t)m->n_layers, sizeof *kept, (void **)&kept);
    if (local == LF_OK)
        local = lf_calloc((size_t)m->n_layers, sizeof *n_kept, (void **)&n_kept);
    if (local == LF_OK)
        local = lf_malloc((size_t)m->n_layers, sizeof *col0, (void **)&col0);
    LF_CALL(lf_comm_agree(comm, local));
    for (int i = 0; i < m->n_layers; i++)
        if (where[i] >= 0)
            src_of[where[i]] = i;
    choose_layers(m, f, where, src_of, refit, changed);
    /* The targets of every refitted layer: the neurons the plan keeps there. */
    cache = (targets_t){.col0 = col0, .kept = (const int64_t **)kept, .n_kept = n_kept};
    for (int i = 0; i < m->n_layers; i++)
        col0[i] = -1;
    for (int k = 0; k < f->n_layers; k++) {
        if (!refit[k])
            continue;
        int i = src_of[k];
        const lf_layer_t *L = &f->layers[k];
        LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)(L->n_out > 0 ? L->n_out : 1), sizeof **kept,
                                              (void **)&kept[i])));
        for (int64_t j = 0; j < p->n_out[i]; j++)
            if (p->fate[i][j] == LF_NEURON_KEEP && n_kept[i] < L->n_out)
                kept[i][n_kept[i]++] = j;
        LF_CHECK(n_kept[i] == L->n_out, LF_ERR_INTERNAL,
                 "layer %d keeps %lld neurons by the plan, the compressed model has %lld", i,
                 (long long)n_kept[i], (long long)L->n_out);
        col0[i] = cache.width;
        cache.width += n_kept[i];
        cache.last = i;
    }
    int64_t limit =
        opts->target_cache_bytes == 0 ? LF_REFIT_TARGET_CACHE_DEFAULT : opts->target_cache_bytes;
    LF_CALL(cache_targets(comm, m, x, opts, limit, &cache, &cached));
    for (int k = 0; k < f->n_layers; k++) {
        if (!refit[k])
            continue;
        double tl = lf_log_seconds();
        int i = src_of[k];
        LF_CALL(sums_pass(comm, m, f, k, i, kept[i], x, opts, cached ? &cache : NULL, &sums));
        int64_t n = sums.k * sums.n_out;
        lf_free(x0);
        lf_free(xs);
        x0 = xs = NULL;
        local = lf_malloc((size_t)(n > 0 ? n : 1), sizeof *x0, (void **)&x0);
        if (local == LF_OK)
            local = lf_malloc((size_t)(n > 0 ? n : 1), sizeof *xs, (void **)&xs);
        LF_CALL(lf_comm_agree(comm, local));
        current_weights(f, k, x0);
        lf_refit_layer_t *rec = &rep.layers[rep.n_layers++];
        *rec = (lf_refit_layer_t){.layer = k,
                                  .source_layer = i,
                                  .k = sums.k,
                                  .n_out = sums.n_out,
                                  .fit_rows = sums.fit_rows,
                                  .held_rows = sums.held_rows,
                                  .sums_seconds = sums.seconds,
                                  .product_seconds = sums.product_seconds,
                                  .product_flops = sums.product_flops};
        LF_CALL(fit_layer(comm, &sums, opts, x0, xs, rec));
        /* xs is the same on every rank (fit_layer): a shared f's node needs one store of it. */
        LF_CALL(lf_model_update(comm, f, store_weights, &(store_job_t){.layer = k, .x = xs}));
        rec->seconds = lf_log_seconds() - tl;
        if (opts->what)
            lf_log(LF_LOG_INFO, comm,
                   "%s: layer %d (%lld inputs + bias, %lld outputs, %lld fit + %lld held-out "
                   "rows): lambda %g, held-out error %.4g -> %.4g%s; %.2f s (pass %.2f s, of "
                   "which G and B products %.2f s at %.1f GFLOP/s on rank 0)",
                   opts->what, i, (long long)(sums.k - 1), (long long)rec->n_out,
                   (long long)rec->fit_rows, (long long)rec->held_rows, rec->lambda,
                   rec->held_before, rec->held_after,
                   rec->kept       ? " (the layer keeps its weights: the refit did not lower the "
                                     "held-out error)"
                   : rec->fallback ? " (singular: eigendecomposition)"
                                   : "",
                   rec->seconds, rec->sums_seconds, rec->product_seconds,
                   rec->product_seconds > 0 ? 1e-9 * rec->product_flops / rec->product_seconds
                                            : 0.0);
        lf_refit_sums_free(&sums);
    }
    rep.seconds = lf_log_seconds() - t0;
    rep.targets_cached = cached;
    if (report) {
        *report = rep;
        rep.layers = NULL;
    }
cleanup:
    lf_refit_sums_free(&sums);
    lf_refit_report_free(&rep);
    lf_free(xs);
    lf_free(x0);
    for (int i = 0; kept && i < m->n_layers; i++)
        lf_free(kept[i]);
    lf_free(kept);
    lf_free(n_kept);
    lf_free(col0);
    lf_free(cache.z);
    lf_free(changed);
    lf_free(refit);
    lf_free(src_of);
    return err;
}
