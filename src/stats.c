/* Activation statistics: accumulation, exact reduction, and the statistics file. */
#include "linfold/stats.h"

#include <math.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "linfold/alloc.h"
#include "linfold/checkpoint.h"
#include "linfold/comm.h"
#include "linfold/interrupt.h"
#include "linfold/log.h"

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
        LF_CALL(lf_calloc(n, sizeof *ls->exact_sq, (void **)&ls->exact_sq));
        LF_CALL(lf_calloc(n, sizeof *ls->sq_sum, (void **)&ls->sq_sum));
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
            lf_free(ls->exact_sq);
            lf_free(ls->sq_sum);
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
    lf_i128 sign = -(lf_i128)(u >> 31);  /* 0 or -1 */
    x->bin[e >> 5] += (t ^ sign) - sign; /* t or -t */
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
    /* Output sums and sums of squares, exact; a separate pass so that the loop above stays
     * vectorised. The square is rounded to float32 by the float multiplication (C11 with
     * FLT_EVAL_METHOD 0, as on x86-64 and aarch64), the same way on every rank, and then added
     * exactly. */
    if (!s->with_sums || !lf_act_is_piecewise_linear(act))
        return;
    float slope = act == LF_ACT_RELU ? 0.0f : (act == LF_ACT_LEAKY_RELU ? alpha : 1.0f);
    lf_xsum_t *restrict acc = ls->exact, *restrict sq = ls->exact_sq;
    for (int64_t r = 0; r < rows; r++) {
        const float *zr = z + r * n;
        for (int64_t j = 0; j < n; j++) {
            float v = zr[j];
            float a = v > 0.0f ? v : slope * v;
            xsum_add(&acc[j], a);
            xsum_add(&sq[j], a * a);
        }
    }
}

lf_err_t lf_stats_merge(lf_stats_t *dst, const lf_stats_t *src)
{
    lf_err_t err = LF_OK;
    LF_CHECK(dst->n_layers == src->n_layers && dst->fingerprint == src->fingerprint &&
                 dst->with_sums == src->with_sums && dst->with_squares == src->with_squares,
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
            for (int b = 0; b < 8; b++) {
                d->exact[j].bin[b] += s->exact[j].bin[b];
                d->exact_sq[j].bin[b] += s->exact_sq[j].bin[b];
            }
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
        if (!s->with_squares)
            continue;
        LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, ls->exact_sq, bins, i128, op, comm));
        for (int64_t j = 0; j < ls->n_out; j++)
            ls->sq_sum[j] = lf_xsum_value(&ls->exact_sq[j]);
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

double lf_stats_mean_square(const lf_stats_t *s, int layer, int64_t j)
{
    return s->samples > 0 && s->with_squares ? s->layers[layer].sq_sum[j] / (double)s->samples
                                             : 0.0;
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

/* Partial statistics per thread; they merge exactly after the pass. */
typedef struct {
    const lf_model_t *model;
    int threads;
    lf_stats_t **part;
} collect_ctx_t;

static lf_err_t collect_block(const lf_batch_t *b, int tid, void *ctx)
{
    lf_err_t err = LF_OK;
    collect_ctx_t *c = ctx;
    const float *y = NULL;
    hook_ctx_t h = {.model = c->model, .stats = c->part[tid], .first = b->first, .valid = b->valid};
    LF_CALL(lf_batch_forward(b, 0, collect_hook, &h, &y));
    c->part[tid]->samples += b->valid;
cleanup:
    return err;
}

static void collect_free(collect_ctx_t *c)
{
    for (int t = 0; c->part && t < c->threads; t++)
        lf_stats_destroy(&c->part[t]);
    lf_free(c->part);
}

static lf_err_t collect_alloc(collect_ctx_t *c, bool with_sums)
{
    lf_err_t err = LF_OK;
    LF_CALL(lf_calloc((size_t)c->threads, sizeof *c->part, (void **)&c->part));
    for (int t = 0; t < c->threads; t++) {
        LF_CALL(lf_stats_create(c->model, &c->part[t]));
        c->part[t]->with_sums = with_sums;
        c->part[t]->with_squares = with_sums;
    }
cleanup:
    return err;
}

/* ---------------------------------------------------------------- checkpoints
 *
 * The statistics of a checkpoint are the reduction over ranks of every thread's partial
 * statistics, and its rows are every rank's done rows (one prefix of its share per rank) plus
 * those of the checkpoint the pass resumed from, whose statistics rank 0's first partial starts
 * with. Everything merges exactly, so a resumed pass ends with the same bits as one pass. */

typedef struct {
    collect_ctx_t *c;
    const lf_checkpoint_opts_t *ck;
    const lf_checkpoint_key_t *key;
    const lf_row_range_t *base; /* rows of the checkpoint resumed from */
    int64_t n_base;
    int64_t since;   /* batches since the last checkpoint */
    double last;     /* rank 0: when the last one was written, or the pass began */
    lf_stats_t *sum; /* work space for the reduced statistics */
} ckpt_step_t;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Writes the rows done so far (base plus this rank's done) and their statistics. */
static lf_err_t write_partial(MPI_Comm comm, ckpt_step_t *h, const lf_row_range_t *done,
                              int64_t n_done, int64_t *rows_done)
{
    lf_err_t err = LF_OK, local = LF_OK;
    lf_stats_t *sum = h->sum;
    /* Emptied in place: lf_stats_create() would fingerprint the model again. */
    sum->samples = 0;
    for (int i = 0; i < sum->n_layers; i++) {
        lf_layer_stats_t *ls = &sum->layers[i];
        size_t n = (size_t)ls->n_out;
        memset(ls->positive, 0, n * sizeof *ls->positive);
        memset(ls->negative, 0, n * sizeof *ls->negative);
        memset(ls->exact, 0, n * sizeof *ls->exact);
        memset(ls->exact_sq, 0, n * sizeof *ls->exact_sq);
        for (size_t j = 0; j < n; j++) {
            ls->zmin[j] = INFINITY;
            ls->zmax[j] = -INFINITY;
        }
    }
    for (int t = 0; t < h->c->threads && local == LF_OK; t++)
        local = lf_stats_merge(sum, h->c->part[t]);
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL(lf_stats_reduce(comm, sum));
    LF_CALL(lf_checkpoint_write(comm, h->ck->path, h->key, h->base, h->n_base, done, n_done, sum,
                                rows_done));
cleanup:
    return err;
}

/* After every batch: a checkpoint when one is due (by batches or by time, not after the last
 * batch: the pass writes its complete one), or when SIGTERM or SIGUSR1 stops the pass. */
static lf_err_t checkpoint_step(MPI_Comm comm, const lf_batch_state_t *st, void *ctx)
{
    lf_err_t err = LF_OK;
    ckpt_step_t *h = ctx;
    int rank = 0, due = 0;
    int64_t rows_done = 0;
    char a[32], b[32];
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    bool stop = st->signal == SIGTERM || st->signal == SIGUSR1;
    h->since++;
    if (st->batch < st->batches && st->signal == 0) {
        due = h->ck->every_batches > 0 && h->since >= h->ck->every_batches;
        if (h->ck->every_seconds > 0) {
            int late = rank == 0 && now_seconds() - h->last >= h->ck->every_seconds;
            LF_CALL_MPI(MPI_Bcast(&late, 1, MPI_INT, 0, comm));
            due = due || late;
        }
    }
    if (!due && !stop)
        goto cleanup;
    double t0 = now_seconds();
    LF_CALL(write_partial(comm, h, st->done, st->n_done, &rows_done));
    h->since = 0;
    h->last = now_seconds();
    lf_checkpoint_count(rows_done, a, sizeof a);
    lf_checkpoint_count(h->key->rows, b, sizeof b);
    LF_CHECK(!stop, LF_ERR_CHECKPOINT,
             "checkpoint written to %s after %s of %s rows (%s); rerun the same command to resume",
             h->ck->path, a, b, lf_interrupt_name(st->signal));
    lf_log(LF_LOG_DEBUG, comm, "checkpoint: %s of %s rows written to %s in %.3f s", a, b,
           h->ck->path, h->last - t0);
cleanup:
    return err;
}

/* The rows of [0, n) outside done (ascending, disjoint), into *todo (n_done + 1 at most). */
static lf_err_t rows_left(int64_t n, const lf_row_range_t *done, int64_t n_done,
                          lf_row_range_t **todo, int64_t *n_todo)
{
    lf_err_t err = LF_OK;
    int64_t at = 0, k = 0;
    *n_todo = 0;
    LF_CALL(lf_calloc((size_t)(n_done + 1), sizeof **todo, (void **)todo));
    for (; k <= n_done; k++) {
        int64_t lo = k < n_done ? done[k].lo : n;
        if (lo > at)
            (*todo)[(*n_todo)++] = (lf_row_range_t){at, lo};
        at = k < n_done ? done[k].hi : n;
    }
cleanup:
    return err;
}

/* The pass of lf_stats_collect_checkpointed: from the checkpoint `from` (NULL: the start). */
static lf_err_t collect_resumable(MPI_Comm comm, lf_dataset_t *data, const lf_batch_opts_t *opts,
                                  const lf_checkpoint_opts_t *ck, const lf_checkpoint_key_t *key,
                                  const lf_checkpoint_t *from, collect_ctx_t *c, bool *ran)
{
    lf_err_t err = LF_OK;
    lf_row_range_t *todo = NULL;
    ckpt_step_t h = {.sum = NULL};
    int64_t n_todo = 0, n = lf_h5io_dataset_rows(data);
    int rank = 0;
    char a[32], b[32];
    *ran = false;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    if (from) {
        LF_CALL(lf_comm_agree(comm, rank == 0 ? lf_stats_merge(c->part[0], from->stats) : LF_OK));
        lf_log(LF_LOG_INFO, comm,
               "checkpoint: resuming from %s: %s of %s rows done (by %lld rank%s)", ck->path,
               lf_checkpoint_count(from->rows_done, a, sizeof a),
               lf_checkpoint_count(n, b, sizeof b), (long long)from->ranks,
               from->ranks == 1 ? "" : "s");
    }
    const lf_row_range_t whole = {0, 0};
    LF_CALL(lf_comm_agree(
        comm, rows_left(n, from ? from->done : &whole, from ? from->n_done : 0, &todo, &n_todo)));
    if (n_todo == 0)
        goto cleanup;
    lf_log(LF_LOG_DEBUG, comm, "checkpoint: writing %s every %lld batches and %g s (0: never)",
           ck->path, (long long)ck->every_batches, ck->every_seconds);
    h = (ckpt_step_t){.c = c,
                      .ck = ck,
                      .key = key,
                      .base = from ? from->done : NULL,
                      .n_base = from ? from->n_done : 0,
                      .last = now_seconds()};
    LF_CALL(lf_comm_agree(comm, lf_stats_create(c->model, &h.sum)));
    h.sum->with_sums = c->part[0]->with_sums;
    h.sum->with_squares = c->part[0]->with_squares;
    lf_batch_part_t part = {
        .rows = todo, .n_rows = n_todo, .step = checkpoint_step, .step_ctx = &h};
    *ran = true;
    LF_CALL(lf_batch_run_part(comm, data, NULL, &c->model, 1, opts, &part, collect_block, NULL, c));
cleanup:
    lf_stats_destroy(&h.sum);
    lf_free(todo);
    return err;
}

lf_err_t lf_stats_collect(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *data,
                          const lf_batch_opts_t *opts, bool with_sums, lf_stats_t **out)
{
    return lf_stats_collect_checkpointed(comm, m, data, opts, with_sums, NULL, out);
}

lf_err_t lf_stats_collect_checkpointed(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *data,
                                       const lf_batch_opts_t *opts, bool with_sums,
                                       const lf_checkpoint_opts_t *ck, lf_stats_t **out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    collect_ctx_t c = {.model = m, .threads = opts->threads > 1 ? opts->threads : 1};
    lf_checkpoint_key_t *key = NULL;
    lf_checkpoint_t *from = NULL;
    bool checkpoints = ck && ck->path, exists = false, ran = false;
    int rank = 0;
    *out = NULL;
    LF_CHECK(lf_h5io_dataset_rows(data) >= 1, LF_ERR_USAGE,
             "%s has no rows: calibration needs at least one sample", lf_h5io_dataset_spec(data));
    if (checkpoints) {
        LF_CHECK(ck->every_batches >= 0 && isfinite(ck->every_seconds) && ck->every_seconds >= 0,
                 LF_ERR_ARG, "checkpoint every %lld batches and %g s: expected both >= 0",
                 (long long)ck->every_batches, ck->every_seconds);
        LF_CALL(lf_batch_check(data, NULL, &m, 1, opts));
        LF_CALL(lf_comm_agree(comm, lf_calloc(1, sizeof *key, (void **)&key)));
        LF_CALL(lf_checkpoint_key_make(comm, m, data, opts, with_sums, ck->identity, key));
        /* A checkpoint that cannot be written is found now, not at its first write. */
        const lf_atomic_named_t input = {"data", lf_h5io_dataset_file(data)},
                                output = {"checkpoint", ck->path};
        LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
        LF_CALL(lf_comm_agree(comm, rank == 0 ? lf_atomic_check_outputs(&input, 1, &output, 1, true)
                                              : LF_OK));
        LF_CALL(lf_checkpoint_exists(comm, ck->path, &exists));
        LF_CHECK(!exists || ck->resume, LF_ERR_USAGE,
                 "checkpoint %s exists (the progress of an earlier run): resume from it, or "
                 "remove it to start over",
                 ck->path);
        if (exists)
            LF_CALL(lf_checkpoint_read(comm, ck->path, m, key, &from));
    }
    LF_CALL(lf_comm_agree(comm, collect_alloc(&c, with_sums)));
    if (checkpoints)
        LF_CALL(collect_resumable(comm, data, opts, ck, key, from, &c, &ran));
    else
        LF_CALL(lf_batch_run(comm, data, NULL, &m, 1, opts, collect_block, NULL, &c));
    for (int t = 1; t < c.threads && local == LF_OK; t++)
        local = lf_stats_merge(c.part[0], c.part[t]);
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL(lf_stats_reduce(comm, c.part[0]));
    /* The complete checkpoint: a rerun after a later stage was stopped skips the pass. */
    if (ran) {
        const lf_row_range_t all = {0, lf_h5io_dataset_rows(data)};
        LF_CALL(lf_checkpoint_write(comm, ck->path, key, &all, 1, NULL, 0, c.part[0], NULL));
        lf_log(LF_LOG_DEBUG, comm, "checkpoint: every row written to %s", ck->path);
    }
    *out = c.part[0];
    c.part[0] = NULL;
cleanup:
    lf_checkpoint_destroy(&from);
    lf_free(key);
    collect_free(&c);
    return err;
}

lf_err_t lf_stats_bcast(MPI_Comm comm, int root, lf_stats_t *s)
{
    lf_err_t err = LF_OK;
    int n = 0;
    uint8_t flags[2] = {s->with_sums, s->with_squares};
    LF_CALL_MPI(MPI_Bcast(&s->samples, 1, MPI_INT64_T, root, comm));
    LF_CALL_MPI(MPI_Bcast(flags, 2, MPI_UINT8_T, root, comm));
    s->with_sums = flags[0] != 0;
    s->with_squares = flags[1] != 0;
    for (int i = 0; i < s->n_layers; i++) {
        lf_layer_stats_t *ls = &s->layers[i];
        LF_CALL(lf_int_cast(ls->n_out, &n));
        LF_CALL_MPI(MPI_Bcast(ls->positive, n, MPI_INT64_T, root, comm));
        LF_CALL_MPI(MPI_Bcast(ls->negative, n, MPI_INT64_T, root, comm));
        LF_CALL_MPI(MPI_Bcast(ls->zmin, n, MPI_FLOAT, root, comm));
        LF_CALL_MPI(MPI_Bcast(ls->zmax, n, MPI_FLOAT, root, comm));
        if (s->with_sums)
            LF_CALL_MPI(MPI_Bcast(ls->out_sum, n, MPI_DOUBLE, root, comm));
        if (s->with_sums && s->with_squares)
            LF_CALL_MPI(MPI_Bcast(ls->sq_sum, n, MPI_DOUBLE, root, comm));
    }
cleanup:
    return err;
}
