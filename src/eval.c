/* Evaluation and prediction on sharded rows. */
#include "linfold/eval.h"

#include <math.h>
#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"

int64_t lf_eval_class(lf_act_t act, const float *row, int64_t n)
{
    if (n == 1)
        return row[0] > (act == LF_ACT_SIGMOID ? 0.5f : 0.0f) ? 1 : 0;
    int64_t best = 0;
    for (int64_t j = 1; j < n; j++)
        if (row[j] > row[best])
            best = j;
    return best;
}

/* Per-thread partial counts, summed after the pass. */
typedef struct {
    const lf_model_t *m, *ref;
    const char *labels_spec;
    int threads;
    lf_eval_result_t *acc; /* (threads) */
} eval_ctx_t;

static lf_err_t eval_block(const lf_batch_t *b, int tid, void *ctx)
{
    lf_err_t err = LF_OK;
    eval_ctx_t *e = ctx;
    lf_eval_result_t *acc = &e->acc[tid];
    const float *y = NULL, *yr = NULL;
    int64_t n_out = lf_model_n_out(e->m);
    lf_act_t act = e->m->layers[e->m->n_layers - 1].act;
    int64_t n_classes = n_out == 1 ? 2 : n_out;
    /* Each model has its own workspace, so y stays valid while the reference runs. */
    LF_CALL(lf_batch_forward(b, 0, NULL, NULL, &y));
    if (e->ref)
        LF_CALL(lf_batch_forward(b, 1, NULL, NULL, &yr));
    lf_act_t ref_act = e->ref ? e->ref->layers[e->ref->n_layers - 1].act : act;
    for (int64_t r = b->first; r < b->first + b->valid; r++) {
        const float *row = y + r * n_out;
        int64_t cls = lf_eval_class(act, row, n_out);
        if (b->labels) {
            int64_t label = b->labels[r];
            LF_CHECK(label >= 0 && label < n_classes, LF_ERR_VALUE,
                     "%s: row %lld has label %lld, expected 0 to %lld for a model with %lld "
                     "output%s",
                     e->labels_spec, (long long)(b->row0 + r), (long long)label,
                     (long long)(n_classes - 1), (long long)n_out, n_out == 1 ? "" : "s");
            acc->correct += cls == label;
        }
        if (e->ref) {
            const float *rrow = yr + r * n_out;
            int64_t rcls = lf_eval_class(ref_act, rrow, n_out);
            acc->agree += cls == rcls;
            if (b->labels) {
                int64_t label = b->labels[r];
                acc->ref_correct += rcls == label;
                acc->worse += rcls == label && cls != label;
                acc->better += cls == label && rcls != label;
            }
            for (int64_t j = 0; j < n_out; j++) {
                double d = fabs((double)row[j] - (double)rrow[j]);
                acc->max_abs_diff = d > acc->max_abs_diff ? d : acc->max_abs_diff;
            }
        }
    }
    acc->samples += b->valid;
cleanup:
    return err;
}

lf_err_t lf_eval_run(MPI_Comm comm, const lf_model_t *m, const lf_model_t *reference,
                     lf_dataset_t *x, lf_dataset_t *labels, const lf_batch_opts_t *opts,
                     lf_eval_result_t *res)
{
    lf_err_t err = LF_OK;
    eval_ctx_t e = {.m = m,
                    .ref = reference,
                    .labels_spec = labels ? lf_h5io_dataset_spec(labels) : "",
                    .threads = opts->threads > 1 ? opts->threads : 1};
    const lf_model_t *models[2] = {m, reference};
    LF_CHECK(lf_h5io_dataset_rows(x) >= 1, LF_ERR_USAGE,
             "%s has no rows: there is nothing to evaluate", lf_h5io_dataset_spec(x));
    LF_CHECK(!reference ||
                 (reference->n_in == m->n_in && lf_model_n_out(reference) == lf_model_n_out(m)),
             LF_ERR_SHAPE,
             "the reference model maps %lld inputs to %lld outputs, the model %lld to %lld",
             (long long)(reference ? reference->n_in : 0),
             (long long)(reference ? lf_model_n_out(reference) : 0), (long long)m->n_in,
             (long long)lf_model_n_out(m));
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)e.threads, sizeof *e.acc, (void **)&e.acc)));
    LF_CALL(lf_batch_run(comm, x, labels, models, reference ? 2 : 1, opts, eval_block, NULL, &e));
    int64_t counts[6] = {0, 0, 0, 0, 0, 0};
    double max_diff = 0.0;
    for (int k = 0; k < e.threads; k++) {
        const lf_eval_result_t *a = &e.acc[k];
        counts[0] += a->samples;
        counts[1] += a->correct;
        counts[2] += a->ref_correct;
        counts[3] += a->agree;
        counts[4] += a->worse;
        counts[5] += a->better;
        max_diff = a->max_abs_diff > max_diff ? a->max_abs_diff : max_diff;
    }
    LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, counts, 6, MPI_INT64_T, MPI_SUM, comm));
    LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, &max_diff, 1, MPI_DOUBLE, MPI_MAX, comm));
    *res = (lf_eval_result_t){
        .samples = counts[0],
        .params = lf_model_params(m),
        .has_labels = labels != NULL,
        .correct = counts[1],
        .has_reference = reference != NULL,
        .ref_params = reference ? lf_model_params(reference) : 0,
        .ref_correct = counts[2],
        .agree = counts[3],
        .worse = counts[4],
        .better = counts[5],
        .max_abs_diff = max_diff,
    };
cleanup:
    lf_free(e.acc);
    return err;
}

typedef struct {
    const lf_model_t *m;
    float *y; /* outputs of one I/O batch, (batch rows, n_out) */
    lf_output_t *out;
} predict_ctx_t;

static lf_err_t predict_block(const lf_batch_t *b, int tid, void *ctx)
{
    lf_err_t err = LF_OK;
    (void)tid;
    predict_ctx_t *p = ctx;
    const float *y = NULL;
    int64_t n_out = lf_model_n_out(p->m);
    LF_CALL(lf_batch_forward(b, 0, NULL, NULL, &y));
    memcpy(p->y + (b->offset + b->first) * n_out, y + b->first * n_out,
           (size_t)(b->valid * n_out) * sizeof *y);
cleanup:
    return err;
}

static lf_err_t predict_write(const lf_batch_t *b, void *ctx)
{
    predict_ctx_t *p = ctx;
    return lf_h5io_output_write_rows(p->out, b->row0 + b->first, b->valid,
                                     p->y + b->first * lf_model_n_out(p->m));
}

lf_err_t lf_eval_predict(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *x, const char *path,
                         const lf_batch_opts_t *opts)
{
    lf_err_t err = LF_OK;
    predict_ctx_t p = {.m = m};
    int64_t n = lf_h5io_dataset_rows(x);
    /* Before the output file exists: a mismatch must not leave a temporary behind. */
    LF_CALL(lf_batch_check(x, NULL, &m, 1, opts));
    LF_CALL(lf_comm_agree(comm, lf_malloc((size_t)lf_batch_io_rows(n, opts->batch_rows),
                                          (size_t)lf_model_n_out(m) * sizeof *p.y, (void **)&p.y)));
    LF_CALL(lf_h5io_output_create(comm, path, "/outputs", n, lf_model_n_out(m), &p.out));
    LF_CALL(lf_batch_run(comm, x, NULL, &m, 1, opts, predict_block, predict_write, &p));
    LF_CALL(lf_h5io_output_commit(&p.out));
cleanup:
    lf_h5io_output_abort(&p.out);
    lf_free(p.y);
    return err;
}
