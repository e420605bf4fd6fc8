/* The sharded, streaming, block-aligned loop shared by calibration, evaluation and prediction. */
#include "linfold/batch.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "linfold/alloc.h"
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

static lf_err_t check_finite(const float *x, int64_t rows, int64_t cols, int64_t row0,
                             const char *spec)
{
    lf_err_t err = LF_OK;
    for (int64_t k = 0; k < rows * cols; k++)
        LF_CHECK(isfinite(x[k]), LF_ERR_VALUE, "%s: row %lld, column %lld is %s", spec,
                 (long long)(row0 + k / cols), (long long)(k % cols),
                 isnan(x[k]) ? "NaN" : "infinite");
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
    float *xbuf = NULL;
    int64_t *ybuf = NULL;
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
    for (int64_t k = 0; k < n_share; k++) {
        int64_t b0 = 0, b1 = 0;
        range_blocks(&share[k], R, &b0, &b1);
        my_iters += (b1 - b0 + per_batch - 1) / per_batch;
    }
    LF_CALL_MPI(MPI_Allreduce(&my_iters, &iters, 1, MPI_INT64_T, MPI_MAX, comm));

    local = pass_alloc(&pass, R);
    if (local == LF_OK)
        local = lf_malloc((size_t)(per_batch * R * cols), sizeof *xbuf, (void **)&xbuf);
    if (local == LF_OK && labels)
        local = lf_calloc((size_t)(per_batch * R), sizeof *ybuf, (void **)&ybuf);
    if (local == LF_OK && stepping)
        local = lf_calloc((size_t)(n_share > 0 ? n_share : 1), sizeof *done, (void **)&done);
    LF_CALL(lf_comm_agree(comm, local));

    double t0 = lf_log_seconds(), last = t0;
    int64_t seg = 0, chunk = 0, rows_done = 0; /* the range in progress, its next batch */
    for (int64_t it = 0; it < iters; it++) {
        int64_t b0 = 0, b1 = 0, lo = 0, hi = 0, range_end = 0;
        if (seg < n_share) {
            const lf_row_range_t *g = &share[seg];
            range_blocks(g, R, &b0, &range_end);
            b0 += chunk * per_batch;
            b1 = b0 + per_batch < range_end ? b0 + per_batch : range_end;
            lo = b0 * R > g->lo ? b0 * R : g->lo;
            hi = b1 * R < g->hi ? b1 * R : g->hi;
        }
        int64_t valid = hi - lo;
        int64_t first = valid ? lo - b0 * R : 0, rows = (b1 - b0) * R;
        /* Zero only the rows this rank does not own; the read fills the others. */
        memset(xbuf, 0, (size_t)(first * cols) * sizeof *xbuf);
        memset(xbuf + (first + valid) * cols, 0,
               (size_t)((per_batch * R - first - valid) * cols) * sizeof *xbuf);
        /* A collective read can fail on one rank only (an I/O error): its error joins the
         * batch's agreement instead of leaving the loop alone. */
        local = lf_h5io_dataset_read_rows(x, valid ? lo : 0, valid, xbuf + first * cols);
        if (labels) {
            lf_err_t read_labels =
                lf_h5io_dataset_read_rows(labels, valid ? lo : 0, valid, ybuf + first);
            local = local != LF_OK ? local : read_labels;
        }
        lf_batch_t io = {.x = xbuf,
                         .labels = ybuf,
                         .rows = rows,
                         .first = first,
                         .valid = valid,
                         .cols = cols,
                         .row0 = b0 * R,
                         .pass = &pass};
        if (local == LF_OK)
            local = check_finite(xbuf + first * cols, valid, cols, lo, lf_h5io_dataset_spec(x));
        if (local == LF_OK && valid > 0) {
            blocks_t blocks = {.batch = &io, .block_rows = R, .fn = block_fn, .ctx = ctx};
            local = lf_pool_run(pass.threads, (int)(b1 - b0), run_block, &blocks);
        }
        lf_interrupt_tick();
        /* With a step, the signal is the step's to see first (it is agreed below). */
        if (local == LF_OK && !stepping)
            local = check_signal(opts, lf_interrupt_signal(), it + 1, iters);
        LF_CALL(lf_comm_agree(comm, local));
        if (batch_fn)
            LF_CALL(lf_comm_agree(comm, batch_fn(&io, ctx)));
        rows_done += valid;
        if (valid > 0 && b1 == range_end) {
            seg++;
            chunk = 0;
        } else if (valid > 0) {
            chunk++;
        }
        if (stepping) {
            /* Done: the ranges before the one in progress, and that one up to hi. */
            int64_t n_done = seg < n_share ? seg : n_share;
            memcpy(done, share, (size_t)n_done * sizeof *done);
            if (seg < n_share && chunk > 0)
                done[n_done++] = (lf_row_range_t){share[seg].lo, hi};
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
    pass_free(&pass);
    lf_free(done);
    lf_free(share);
    lf_free(ybuf);
    lf_free(xbuf);
    return err;
}
