/* The sharded, streaming batch loop shared by calibration, evaluation and prediction. */
#include "linfold/batch.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/log.h"

int64_t lf_batch_rows(int64_t n, int64_t batch)
{
    int64_t r = n < batch ? n : batch;
    return r < 1 ? 1 : r;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static lf_err_t check_finite(const lf_batch_t *b, const char *spec)
{
    lf_err_t err = LF_OK;
    for (int64_t k = 0; k < b->valid * b->cols; k++)
        LF_CHECK(isfinite(b->x[k]), LF_ERR_VALUE, "%s: row %lld, column %lld is %s", spec,
                 (long long)(b->row0 + k / b->cols), (long long)(k % b->cols),
                 isnan(b->x[k]) ? "NaN" : "infinite");
cleanup:
    return err;
}

static void print_progress(MPI_Comm comm, const char *what, int64_t done, int64_t total,
                           double elapsed)
{
    double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0.0;
    lf_log(LF_LOG_INFO, comm, "%s: %lld/%lld rows (%.1f%%), %.0f rows/s, ETA %.0f s", what,
           (long long)done, (long long)total, total ? 100.0 * (double)done / (double)total : 100.0,
           rate, eta);
}

lf_err_t lf_batch_run(MPI_Comm comm, lf_dataset_t *x, lf_dataset_t *labels,
                      const lf_batch_opts_t *opts, lf_batch_fn fn, lf_batch_fn collective_fn,
                      void *ctx)
{
    lf_err_t err = LF_OK, local = LF_OK;
    float *xbuf = NULL;
    int64_t *ybuf = NULL;
    int rank = 0, size = 1;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL_MPI(MPI_Comm_size(comm, &size));
    int64_t n = lf_h5io_dataset_rows(x), cols = lf_h5io_dataset_cols(x);
    LF_CHECK(opts->batch_rows >= 1, LF_ERR_ARG, "batch size %lld, expected >= 1",
             (long long)opts->batch_rows);
    LF_CHECK(!labels || lf_h5io_dataset_rows(labels) == n, LF_ERR_SHAPE,
             "%s has %lld rows but %s has %lld", lf_h5io_dataset_spec(labels),
             (long long)(labels ? lf_h5io_dataset_rows(labels) : 0), lf_h5io_dataset_spec(x),
             (long long)n);
    int64_t rows = lf_batch_rows(n, opts->batch_rows);
    int64_t begin = 0, count = 0, max_count = 0, unused = 0;
    lf_comm_shard(n, rank, size, &begin, &count);
    lf_comm_shard(n, 0, size, &unused, &max_count); /* rank 0 owns the largest shard */
    int64_t n_batches = (max_count + rows - 1) / rows;

    local = lf_malloc((size_t)(rows * cols), sizeof *xbuf, (void **)&xbuf);
    if (local == LF_OK && labels)
        local = lf_calloc((size_t)rows, sizeof *ybuf, (void **)&ybuf);
    LF_CALL(lf_comm_agree(comm, local));

    double t0 = now_seconds(), last = t0;
    for (int64_t k = 0; k < n_batches; k++) {
        int64_t off = k * rows;
        int64_t valid = off < count ? (count - off < rows ? count - off : rows) : 0;
        LF_CALL(lf_h5io_dataset_read_rows(x, begin + (valid ? off : 0), valid, xbuf));
        if (labels)
            LF_CALL(lf_h5io_dataset_read_rows(labels, begin + (valid ? off : 0), valid, ybuf));
        memset(xbuf + valid * cols, 0, (size_t)((rows - valid) * cols) * sizeof *xbuf);
        lf_batch_t b = {.x = xbuf, .labels = ybuf, .rows = rows, .valid = valid, .cols = cols,
                        .row0 = begin + (valid ? off : 0)};
        local = check_finite(&b, lf_h5io_dataset_spec(x));
        if (local == LF_OK && valid > 0)
            local = fn(&b, ctx);
        LF_CALL(lf_comm_agree(comm, local));
        if (collective_fn)
            LF_CALL(collective_fn(&b, ctx));
        if (opts->progress && rank == 0) {
            double t = now_seconds();
            if (t - last >= 1.0 || k + 1 == n_batches) {
                /* Rank 0 owns the largest shard, so its share of rows done is the job's. */
                int64_t done = (off + valid) * size < n ? (off + valid) * size : n;
                if (k + 1 == n_batches)
                    done = n;
                print_progress(MPI_COMM_NULL, opts->what, done, n, t - t0);
                last = t;
            }
        }
    }
cleanup:
    lf_free(ybuf);
    lf_free(xbuf);
    return err;
}
