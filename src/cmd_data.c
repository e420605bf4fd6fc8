/* linfold calibrate, eval and predict: the data passes. */
#include <stdio.h>
#include <string.h>

#include "cli_impl.h"
#include "linfold/comm.h"
#include "linfold/eval.h"
#include "linfold/h5io.h"
#include "linfold/log.h"
#include "linfold/model.h"
#include "linfold/report.h"
#include "linfold/stats.h"

/* ---------------------------------------------------------------- calibrate */

lf_err_t lf__cmd_calibrate(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    lf_dataset_t *data = NULL;
    lf_stats_t *stats = NULL;
    lf_batch_opts_t bo = lf__cli_batch_opts(o, "calibrate");
    LF_CALL(lf_h5io_read_model(comm, o->model, &m));
    LF_CALL(lf_h5io_dataset_open(comm, o->data, LF_DATA_SAMPLES, &data));
    LF_CALL(lf_stats_collect(comm, m, data, &bo, o->output_sums, &stats));
    LF_CALL(lf_stats_write(comm, o->out, stats));
    lf_log(LF_LOG_INFO, comm, "calibrate: %lld samples, statistics written to %s",
           (long long)stats->samples, o->out);
cleanup:
    lf_stats_destroy(&stats);
    lf_h5io_dataset_close(&data);
    lf_model_destroy(&m);
    return err;
}

/* ---------------------------------------------------------------- eval */

static lf_err_t print_eval(const lf_eval_result_t *r, bool json)
{
    lf_err_t err = LF_OK;
    double n = (double)r->samples;
    if (json) {
        char *text = NULL;
        LF_CALL(lf_report_eval_json(r, &text));
        printf("%s\n", text);
        lf_report_free(text);
        return LF_OK;
    }
    printf("samples: %lld\nparams: %lld\n", (long long)r->samples, (long long)r->params);
    if (r->has_labels)
        printf("accuracy: %.4f (%lld of %lld)\n", (double)r->correct / n, (long long)r->correct,
               (long long)r->samples);
    if (r->has_reference) {
        printf("reference params: %lld\n", (long long)r->ref_params);
        if (r->has_labels)
            printf("reference accuracy: %.4f (%lld of %lld)\n", (double)r->ref_correct / n,
                   (long long)r->ref_correct, (long long)r->samples);
        printf("top-1 agreement: %.4f (%lld of %lld)\nmax |difference|: %.6g\n",
               (double)r->agree / n, (long long)r->agree, (long long)r->samples, r->max_abs_diff);
    }
cleanup:
    return err;
}

lf_err_t lf__cmd_eval(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL, *ref = NULL;
    lf_dataset_t *x = NULL, *y = NULL;
    lf_eval_result_t r;
    lf_batch_opts_t bo = lf__cli_batch_opts(o, "eval");
    LF_CALL(lf_h5io_read_model(comm, o->model, &m));
    if (o->reference)
        LF_CALL(lf_h5io_read_model(comm, o->reference, &ref));
    LF_CALL(lf_h5io_dataset_open(comm, o->data, LF_DATA_SAMPLES, &x));
    if (o->labels)
        LF_CALL(lf_h5io_dataset_open(comm, o->labels, LF_DATA_LABELS, &y));
    LF_CALL(lf_eval_run(comm, m, ref, x, y, &bo, &r));
    LF_CALL(lf_comm_agree(comm, lf__cli_rank(comm) == 0 ? print_eval(&r, o->json) : LF_OK));
cleanup:
    lf_h5io_dataset_close(&y);
    lf_h5io_dataset_close(&x);
    lf_model_destroy(&ref);
    lf_model_destroy(&m);
    return err;
}

/* ---------------------------------------------------------------- predict */

lf_err_t lf__cmd_predict(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    lf_dataset_t *x = NULL;
    lf_batch_opts_t bo = lf__cli_batch_opts(o, "predict");
    LF_CALL(lf_h5io_read_model(comm, o->model, &m));
    LF_CALL(lf_h5io_dataset_open(comm, o->data, LF_DATA_SAMPLES, &x));
    LF_CALL(lf_eval_predict(comm, m, x, o->out, &bo));
    lf_log(LF_LOG_INFO, comm, "predict: %lld rows written to %s:/outputs",
           (long long)lf_h5io_dataset_rows(x), o->out);
cleanup:
    lf_h5io_dataset_close(&x);
    lf_model_destroy(&m);
    return err;
}
