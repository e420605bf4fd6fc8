/* The sharded, streaming, block-aligned loop shared by calibration, evaluation and prediction. */
#include "linfold/batch.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "linfold/alloc.h"
#include "linfold/background.h"
#include "linfold/finite.h"
#include "linfold/comm.h"
#include "linfold/interrupt.h"
#include "linfold/log.h"
#include "linfold/pool.h"

enum { BLOCK_ROWS_MAX = 256 };

struct lf_batch_pass {
    const lf_model_t *const *models;
    int n_models, threads;
    lf_forward_t **fw; /* (threads * n_models): thread t, model k at t * n_models + k */
    const char *source;
};

int64_t lf_batch_block_rows(int64_t n, int64_t batch)
{
    int64_t r = BLOCK_ROWS_MAX;
    r = batch < r ? batch : r;
    r = n < r ? n : r;
    return r < 1 ? 1 : r;
}

int64_t lf_batch_io_rows(int64_t n, int64_t batch)
{
    int64_t R = lf_batch_block_rows(n, batch);
    return (batch / R > 0 ? batch / R : 1) * R;
}

/* ---------------------------------------------------------------- workspaces */

static void pass_free(lf_batch_pass_t *p)
{
    for (int k = 0; p->fw && k < p->threads * p->n_models; k++)
        lf_forward_destroy(&p->fw[k]);
    lf_free(p->fw);
    p->fw = NULL;
}

static lf_err_t pass_alloc(lf_batch_pass_t *p, int64_t block_rows)
{
    lf_err_t err = LF_OK;
    int count = p->threads * p->n_models;
    LF_CALL(lf_calloc((size_t)(count > 0 ? count : 1), sizeof *p->fw, (void **)&p->fw));
    for (int k = 0; k < count; k++) {
        LF_CALL(lf_forward_create(p->models[k % p->n_models], block_rows, &p->fw[k]));
        lf_forward_set_origin(p->fw[k], p->source, 0);
    }
cleanup:
    return err;
}

lf_err_t lf_batch_forward(const lf_batch_t *b, int k, lf_forward_hook_t hook, void *hook_ctx,
                          const float **y)
{
    lf_batch_pass_t *p = b->pass;
    LF_ASSERT(k >= 0 && k < p->n_models);
    lf_forward_t *fw = p->fw[b->tid * p->n_models + k];
    lf_forward_set_origin(fw, p->source, b->row0);
    return lf_forward_run(fw, p->models[k], b->x, b->rows, hook, hook_ctx, y);
}

lf_err_t lf_batch_forward_layers(const lf_batch_t *b, int k, int n_run, lf_forward_hook_t hook,
                                 void *hook_ctx, const float **y)
{
    lf_batch_pass_t *p = b->pass;
    LF_ASSERT(k >= 0 && k < p->n_models);
    lf_forward_t *fw = p->fw[b->tid * p->n_models + k];
    lf_forward_set_origin(fw, p->source, b->row0);
    return lf_forward_run_layers(fw, p->models[k], n_run, b->x, b->rows, hook, hook_ctx, y);
}

const lf_forward_t *lf_batch_workspace(const lf_batch_t *b, int k)
{
    LF_ASSERT(k >= 0 && k < b->pass->n_models);
    return b->pass->fw[b->tid * b->pass->n_models + k];
}

/* ---------------------------------------------------------------- checks */

lf_err_t lf_batch_check(lf_dataset_t *x, lf_dataset_t *labels, const lf_model_t *const *models,
                        int n_models, const lf_batch_opts_t *opts)
{
    lf_err_t err = LF_OK;
    int64_t n = lf_h5io_dataset_rows(x), cols = lf_h5io_dataset_cols(x);
    LF_CHECK(opts->batch_rows >= 1, LF_ERR_ARG, "batch size %lld, expected >= 1",
             (long long)opts->batch_rows);
    LF_CHECK(!labels || lf_h5io_dataset_rows(labels) == n, LF_ERR_SHAPE,
             "%s has %lld rows but %s has %lld", labels ? lf_h5io_dataset_spec(labels) : "",
             (long long)(labels ? lf_h5io_dataset_rows(labels) : 0), lf_h5io_dataset_spec(x),
             (long long)n);
    for (int k = 0; k < n_models; k++)
        LF_CHECK(models[k]->n_in == cols, LF_ERR_SHAPE,
                 "%s has %lld features per row, the model expects %lld", lf_h5io_dataset_spec(x),
                 (long long)cols, (long long)models[k]->n_in);
cleanup:
    return err;
}

static lf_err_t check_finite(const float *x, int64_t bad, int64_t cols, int64_t row0,
                             const char *spec)
{
    lf_err_t err = LF_OK;
    LF_CHECK(bad < 0, LF_ERR_VALUE, "%s: row %lld, column %lld is %s", spec,
             (long long)(row0 + bad / cols), (long long)(bad % cols),
             isnan(x[bad]) ? "NaN" : "infinite");
cleanup:
    return err;
}

/* ---------------------------------------------------------------- the loop */

typedef struct {
    const lf_batch_t *batch;
    int64_t block_rows;
    lf_block_fn fn;
    void *ctx;
} blocks_t;

static lf_err_t run_block(int k, int tid, void *arg)
{
    const blocks_t *b = arg;
    const lf_batch_t *io = b->batch;
    int64_t R = b->block_rows, start = (int64_t)k * R;
    int64_t lo = io->first > start ? io->first : start;
    int64_t hi = io->first + io->valid < start + R ? io->first + io->valid : start + R;
    lf_batch_t blk = {
        .x = io->x + start * io->cols,
        .labels = io->labels ? io->labels + start : NULL,
        .rows = R,
        .first = lo - start,
        .valid = hi > lo ? hi - lo : 0,
        .cols = io->cols,
        .row0 = io->row0 + start,
        .offset = start,
        .tid = tid,
        .pass = io->pass,
    };
    return blk.valid > 0 ? b->fn(&blk, tid, b->ctx) : LF_OK;
}

static void progress_line(const lf_batch_opts_t *opts, int64_t done, int64_t n, double elapsed)
{
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    double eta = rate > 0 ? (double)(n - done) / rate : 0.0;
    lf_log(LF_LOG_INFO, MPI_COMM_NULL, "%s: %lld/%lld rows (%.1f%%), %.0f rows/s, ETA %.0f s",
           opts->what ? opts->what : "rows", (long long)done, (long long)n,
           n ? 100.0 * (double)done / (double)n : 100.0, rate, eta);
}

/* The interruption message says what was stopped and how far it had got: batch numbers are the
 * same on every rank, whichever rank saw the signal first. */
static lf_err_t check_signal(const lf_batch_opts_t *opts, int sig, int64_t batch, int64_t batches)
{
    lf_err_t err = LF_OK;
    LF_CHECK(sig == 0, LF_ERR_INTERRUPTED, "interrupted by %s during %s at batch %lld of %lld",
             lf_interrupt_name(sig), opts->what ? opts->what : "a pass over the data",
             (long long)batch, (long long)batches);
cleanup:
    return err;
}

/* This rank's share of the rows a pass covers (part's ranges, or all n rows): the rows ranked
 * [begin, begin + count) among them in row order, with lf_comm_shard of their number, as ranges
 * (*n_share of them) into *share. *total receives the number of rows the pass covers. Without
 * ranges the share is lf_comm_shard(n) itself, the pass of lf_batch_run(). */
static lf_err_t share_rows(int64_t n, const lf_batch_part_t *part, int rank, int size,
                           lf_row_range_t **share, int64_t *n_share, int64_t *total)
{
    lf_err_t err = LF_OK;
    lf_row_range_t all = {0, n};
    const lf_row_range_t *rows = part && part->rows ? part->rows : &all;
    int64_t n_rows = part && part->rows ? part->n_rows : (n > 0 ? 1 : 0), m = 0, prev = 0;
    *share = NULL;
    *n_share = 0;
    LF_CHECK(n_rows >= 0, LF_ERR_ARG, "%lld row ranges, expected >= 0", (long long)n_rows);
    for (int64_t k = 0; k < n_rows; k++) {
        LF_CHECK(rows[k].lo >= prev && rows[k].lo < rows[k].hi && rows[k].hi <= n, LF_ERR_ARG,
                 "row range %lld is [%lld, %lld): expected ascending, disjoint, non-empty ranges "
                 "within the %lld rows",
                 (long long)k, (long long)rows[k].lo, (long long)rows[k].hi, (long long)n);
        prev = rows[k].hi;
        m += rows[k].hi - rows[k].lo;
    }
    LF_CALL(lf_calloc((size_t)(n_rows > 0 ? n_rows : 1), sizeof **share, (void **)share));
    if (part && part->own) { /* the caller shared them out already */
        memcpy(*share, rows, (size_t)n_rows * sizeof **share);
        *n_share = n_rows;
        *total = m;
        goto cleanup;
    }
    int64_t skip = 0, count = 0;
    lf_comm_shard(m, rank, size, &skip, &count);
    for (int64_t k = 0; k < n_rows && count > 0; k++) {
        int64_t len = rows[k].hi - rows[k].lo;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        int64_t take = len - skip < count ? len - skip : count;
        (*share)[(*n_share)++] = (lf_row_range_t){rows[k].lo + skip, rows[k].lo + skip + take};
        count -= take;
        skip = 0;
    }
    *total = m;
cleanup:
    return err;
}

/* Blocks [*b0, *b1) of range g, for R-row blocks: the ones it touches. */
static void range_blocks(const lf_row_range_t *g, int64_t R, int64_t *b0, int64_t *b1)
{
    *b0 = g->lo / R;
    *b1 = (g->hi - 1) / R + 1;
}

/* ---------------------------------------------------------------- reading ahead
 *
 * A rank's rows are read one I/O batch ahead: while batch i is computed, the background thread
 * (background.h) reads batch i + 1 into the other of two buffers with pread, zeroes the rows
 * the rank does not own and finds the first NaN or infinity; the loop turns what it found into
 * errors once it needs the batch. The values, and so every result, are those of a read in
 * place. Datasets HDF5 must convert or fill (float64 or big-endian samples, narrower labels,
 * chunked or compressed storage) are read when needed with the collective HDF5 transfer. */

/* Where the loop is in this rank's share: range seg, batch chunk of that range. */
typedef struct {
    int64_t seg, chunk;
} cursor_t;

/* One I/O batch of this rank: blocks [b0, b1) and rows [lo, hi) of a range whose blocks end at
 * range_end; no rows (lo == hi == 0) once the share is done. */
typedef struct {
    int64_t b0, b1, lo, hi, range_end;
} span_t;

static span_t batch_span(const cursor_t *c, const lf_row_range_t *share, int64_t n_share, int64_t R,
                         int64_t per_batch)
{
    span_t s = {0, 0, 0, 0, 0};
    if (c->seg >= n_share)
        return s;
    const lf_row_range_t *g = &share[c->seg];
    range_blocks(g, R, &s.b0, &s.range_end);
    s.b0 += c->chunk * per_batch;
    s.b1 = s.b0 + per_batch < s.range_end ? s.b0 + per_batch : s.range_end;
    s.lo = s.b0 * R > g->lo ? s.b0 * R : g->lo;
    s.hi = s.b1 * R < g->hi ? s.b1 * R : g->hi;
    return s;
}

static void cursor_advance(cursor_t *c, const span_t *s)
{
    if (s->hi > s->lo && s->b1 == s->range_end) {
        c->seg++;
        c->chunk = 0;
    } else if (s->hi > s->lo) {
        c->chunk++;
    }
}

/* One of the two buffers, and what reading its batch found. */
typedef struct {
    float *x;
    int64_t *y;
    span_t span;
    int x_result, y_result; /* lf_h5io_dataset_pread_rows() results, for direct reads */
    int64_t bad;            /* first non-finite element of the rows read, or -1 */
} slot_t;

typedef struct {
    lf_dataset_t *x, *labels;
    int64_t R, cols, capacity; /* capacity: rows of a buffer */
    lf_background_t *bg;       /* NULL: x is read through HDF5 */
    const slot_t *job;         /* the slot the background thread is reading */
    slot_t slot[2];
} reader_t;

/* Zeroes only the rows this rank does not own; the read fills the others. */
static void zero_unowned(const reader_t *rd, const slot_t *sl)
{
    int64_t valid = sl->span.hi - sl->span.lo;
    int64_t first = valid ? sl->span.lo - sl->span.b0 * rd->R : 0;
    memset(sl->x, 0, (size_t)(first * rd->cols) * sizeof *sl->x);
    memset(sl->x + (first + valid) * rd->cols, 0,
           (size_t)((rd->capacity - first - valid) * rd->cols) * sizeof *sl->x);
}

/* Labels are read by the background thread only beside samples it reads: without it they go
 * through HDF5 like the samples. */
static bool labels_direct(const reader_t *rd)
{
    return rd->labels && rd->bg && lf_h5io_dataset_direct(rd->labels);
}

/* The background job: read slot rd->job. No MPI, no HDF5, no error record (background.h). */
static void read_direct(void *arg)
{
    const reader_t *rd = arg;
    slot_t *sl = (slot_t *)rd->job;
    int64_t valid = sl->span.hi - sl->span.lo;
    int64_t first = valid ? sl->span.lo - sl->span.b0 * rd->R : 0;
    zero_unowned(rd, sl);
    sl->x_result = lf_h5io_dataset_pread_rows(rd->x, sl->span.lo, valid, sl->x + first * rd->cols);
    sl->y_result = labels_direct(rd)
                       ? lf_h5io_dataset_pread_rows(rd->labels, sl->span.lo, valid, sl->y + first)
                       : 0;
    sl->bad =
        sl->x_result == 0 ? lf_first_nonfinite(sl->x + first * rd->cols, valid * rd->cols) : -1;
}

static lf_err_t reader_create(lf_dataset_t *x, lf_dataset_t *labels, int64_t R, int64_t per_batch,
                              reader_t *rd)
{
    lf_err_t err = LF_OK;
    *rd = (reader_t){.x = x,
                     .labels = labels,
                     .R = R,
                     .cols = lf_h5io_dataset_cols(x),
                     .capacity = per_batch * R};
    for (int k = 0; k < 2; k++) {
        LF_CALL(lf_malloc((size_t)(rd->capacity * rd->cols), sizeof *rd->slot[k].x,
                          (void **)&rd->slot[k].x));
        if (labels)
            LF_CALL(
                lf_calloc((size_t)rd->capacity, sizeof *rd->slot[k].y, (void **)&rd->slot[k].y));
    }
    if (lf_h5io_dataset_direct(x))
        LF_CALL(lf_background_create(&rd->bg));
cleanup:
    return err;
}

static void reader_destroy(reader_t *rd)
{
    lf_background_destroy(&rd->bg); /* waits for a read in flight into the buffers below */
    for (int k = 0; k < 2; k++) {
        lf_free(rd->slot[k].x);
        lf_free(rd->slot[k].y);
    }
}

/* Starts reading the batch of span into the slot of iteration it (direct reads only).
 * Not collective. */
static void reader_start(reader_t *rd, int64_t it, const span_t *span)
{
    slot_t *sl = &rd->slot[it & 1];
    sl->span = *span;
    if (!rd->bg)
        return;
    rd->job = sl;
    lf_background_start(rd->bg, read_direct, rd);
}

/* The slot of iteration it, read: waits for its direct read, or reads it now through HDF5.
 * Collective on the datasets (the HDF5 transfers).
 * A read that fails on one rank only returns its error there; the caller agrees it. */
static lf_err_t reader_finish(reader_t *rd, int64_t it, slot_t **out)
{
    lf_err_t err = LF_OK, y_err = LF_OK;
    slot_t *sl = &rd->slot[it & 1];
    int64_t lo = sl->span.lo, valid = sl->span.hi - sl->span.lo;
    int64_t first = valid ? lo - sl->span.b0 * rd->R : 0;
    *out = sl;
    if (rd->bg) {
        lf_background_wait(rd->bg);
    } else {
        zero_unowned(rd, sl);
        err = lf_h5io_dataset_read_rows(rd->x, valid ? lo : 0, valid, sl->x + first * rd->cols);
        sl->bad =
            err == LF_OK ? lf_first_nonfinite(sl->x + first * rd->cols, valid * rd->cols) : -1;
    }
    /* Labels read through HDF5 are read here on every rank, whatever happened to the samples:
     * the transfer is collective. */
    if (rd->labels && !labels_direct(rd))
        y_err = lf_h5io_dataset_read_rows(rd->labels, valid ? lo : 0, valid, sl->y + first);
    LF_CALL(err);
    if (rd->bg)
        LF_CALL(lf_h5io_dataset_pread_check(rd->x, lo, valid, sl->x_result));
    LF_CALL(y_err);
    if (labels_direct(rd))
        LF_CALL(lf_h5io_dataset_pread_check(rd->labels, lo, valid, sl->y_result));
    LF_CALL(
        check_finite(sl->x + first * rd->cols, sl->bad, rd->cols, lo, lf_h5io_dataset_spec(rd->x)));
cleanup:
    return err;
}

lf_err_t lf_batch_run(MPI_Comm comm, lf_dataset_t *x, lf_dataset_t *labels,
                      const lf_model_t *const *models, int n_models, const lf_batch_opts_t *opts,
                      lf_block_fn block_fn, lf_batch_fn batch_fn, void *ctx)
{
    return lf_batch_run_part(comm, x, labels, models, n_models, opts, NULL, block_fn, batch_fn,
                             ctx);
}

lf_err_t lf_batch_run_part(MPI_Comm comm, lf_dataset_t *x, lf_dataset_t *labels,
                           const lf_model_t *const *models, int n_models,
                           const lf_batch_opts_t *opts, const lf_batch_part_t *part,
                           lf_block_fn block_fn, lf_batch_fn batch_fn, void *ctx)
{
    lf_err_t err = LF_OK, local = LF_OK;
    reader_t rd = {0};
    lf_row_range_t *share = NULL, *done = NULL;
    int rank = 0, size = 1;
    bool stepping = part && part->step;
    lf_batch_pass_t pass = {.models = models,
                            .n_models = n_models,
                            .threads = opts->threads > 1 ? opts->threads : 1,
                            .source = lf_h5io_dataset_spec(x)};
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL_MPI(MPI_Comm_size(comm, &size));
    LF_CALL(lf_batch_check(x, labels, models, n_models, opts));
    int64_t n = lf_h5io_dataset_rows(x), cols = lf_h5io_dataset_cols(x);

    int64_t R = lf_batch_block_rows(n, opts->batch_rows);
    int64_t per_batch = lf_batch_io_rows(n, opts->batch_rows) / R; /* blocks */
    /* This rank's rows: one contiguous shard for a whole pass, maybe several ranges for part of
     * one. Each range is cut into I/O batches of per_batch blocks on its own. */
    int64_t n_share = 0, total = 0, my_iters = 0, iters = 0;
    LF_CALL(share_rows(n, part, rank, size, &share, &n_share, &total));
    if (part && part->own) /* each rank knows only its own rows: the pass covers their sum */
        LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT64_T, MPI_SUM, comm));
    for (int64_t k = 0; k < n_share; k++) {
        int64_t b0 = 0, b1 = 0;
        range_blocks(&share[k], R, &b0, &b1);
        my_iters += (b1 - b0 + per_batch - 1) / per_batch;
    }
    LF_CALL_MPI(MPI_Allreduce(&my_iters, &iters, 1, MPI_INT64_T, MPI_MAX, comm));

    local = pass_alloc(&pass, R);
    if (local == LF_OK)
        local = reader_create(x, labels, R, per_batch, &rd);
    if (local == LF_OK && stepping)
        local = lf_calloc((size_t)(n_share > 0 ? n_share : 1), sizeof *done, (void **)&done);
    LF_CALL(lf_comm_agree(comm, local));

    double t0 = lf_log_seconds(), last = t0;
    /* cur: the batch in progress, for the rows done; ahead: the next one to read. */
    cursor_t cur = {0, 0}, ahead = {0, 0};
    int64_t rows_done = 0;
    span_t next = batch_span(&ahead, share, n_share, R, per_batch);
    cursor_advance(&ahead, &next);
    if (iters > 0)
        reader_start(&rd, 0, &next);
    for (int64_t it = 0; it < iters; it++) {
        slot_t *sl = NULL;
        /* A collective read can fail on one rank only (an I/O error): its error joins the
         * batch's agreement instead of leaving the loop alone. */
        local = reader_finish(&rd, it, &sl);
        const span_t sp = sl->span;
        if (it + 1 < iters) {
            next = batch_span(&ahead, share, n_share, R, per_batch);
            cursor_advance(&ahead, &next);
            reader_start(&rd, it + 1, &next);
        }
        int64_t valid = sp.hi - sp.lo;
        lf_batch_t io = {.x = sl->x,
                         .labels = sl->y,
                         .rows = (sp.b1 - sp.b0) * R,
                         .first = valid ? sp.lo - sp.b0 * R : 0,
                         .valid = valid,
                         .cols = cols,
                         .row0 = sp.b0 * R,
                         .pass = &pass};
        if (local == LF_OK && valid > 0) {
            blocks_t blocks = {.batch = &io, .block_rows = R, .fn = block_fn, .ctx = ctx};
            local = lf_pool_run(pass.threads, (int)(sp.b1 - sp.b0), run_block, &blocks);
        }
        lf_interrupt_tick();
        /* With a step, the signal is the step's to see first (it is agreed below). */
        if (local == LF_OK && !stepping)
            local = check_signal(opts, lf_interrupt_signal(), it + 1, iters);
        LF_CALL(lf_comm_agree(comm, local));
        if (batch_fn)
            LF_CALL(lf_comm_agree(comm, batch_fn(&io, ctx)));
        rows_done += valid;
        cursor_advance(&cur, &sp);
        if (stepping) {
            /* Done: the ranges before the one in progress, and that one up to hi. */
            int64_t n_done = cur.seg < n_share ? cur.seg : n_share;
            memcpy(done, share, (size_t)n_done * sizeof *done);
            if (cur.seg < n_share && cur.chunk > 0)
                done[n_done++] = (lf_row_range_t){share[cur.seg].lo, sp.hi};
            int sig = lf_interrupt_agree(comm);
            lf_batch_state_t st = {
                .batch = it + 1, .batches = iters, .signal = sig, .done = done, .n_done = n_done};
            LF_CALL(lf_comm_agree(comm, part->step(comm, &st, part->step_ctx)));
            LF_CALL(check_signal(opts, sig, it + 1, iters));
        }
        if (opts->progress && opts->what && rank == 0 && it + 1 < iters) {
            double t = lf_log_seconds();
            if (t - last >= 1.0) {
                /* Rank 0 owns the largest share, so its share done is the job's. */
                int64_t done_rows = n - total + rows_done * size;
                progress_line(opts, done_rows < n ? done_rows : n, n, t - t0);
                last = t;
            }
        }
    }
    double elapsed = lf_log_seconds() - t0;
    if (opts->what) /* unnamed passes (inside searches) stay quiet */
        lf_log(LF_LOG_INFO, comm,
               "%s: %lld rows in %.3f s (%.0f rows/s) on %d rank%s x %d thread%s", opts->what,
               (long long)total, elapsed, elapsed > 0 ? (double)total / elapsed : 0.0, size,
               size == 1 ? "" : "s", pass.threads, pass.threads > 1 ? "s" : "");
cleanup:
    reader_destroy(&rd);
    pass_free(&pass);
    lf_free(done);
    lf_free(share);
    return err;
}
