/* compress, calibrate, eval and predict: each builds the pipeline its flags describe and runs
 * it, so that the command line and pipeline files share one code path (pipeline.h). */
#include "cli_impl.h"
#include "linfold/pipeline.h"
#include "linfold/pipeline_config.h"

#include <stdio.h>

/* What every command shares: the model, batch sizes, threads, logging. */
static void common(const lf__cli_opts_t *o, lf_pipeline_t *p)
{
    lf_pipeline_init(p);
    lf_batch_opts_t bo = lf__cli_batch_opts(o, NULL);
    p->model = o->model;
    p->name = NULL;
    p->calibrate_batch = p->search_batch = p->evaluate_batch = p->predict_batch = o->batch;
    p->threads = bo.threads;
    p->progress = bo.progress;
    p->quiet = o->quiet;
}

lf_err_t lf__cmd_compress(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_pipeline_t p;
    common(o, &p);
    p.calibration = o->data;
    p.statistics = o->stats;
    p.eval_data = o->eval_data;
    p.eval_labels = o->eval_labels;
    p.out_model = o->out;
    p.sweep_out = o->sweep_out;
    p.threshold = o->threshold;
    p.prune_dead = o->prune_dead;
    p.prune_fraction = o->prune_fraction;
    p.prune_global = o->prune_scope && o->prune_scope[0] == 'g';
    if (o->select) {
        LF_CALL(lf_plan_parse_select(o->select, &p.rule));
        p.rule_given = true;
    } else if (o->layer_rule) {
        LF_CALL(lf_plan_parse_layer_rule(o->layer_rule, &p.rule));
        p.rule_given = true;
    }
    for (int k = 0; k < o->n_sweep; k++)
        p.sweep[k] = o->sweep[k];
    p.n_sweep = o->n_sweep;
    for (int k = 0; k < o->n_fractions; k++)
        p.fractions[k] = o->fractions[k];
    p.n_fractions = o->n_fractions;
    p.target = o->target;
    p.target_ratio = o->target_ratio;
    p.budget = o->budget;
    p.max_drop = o->max_drop;
    if (o->data)
        LF_CALL(lf_pipeline_add_stage(&p, LF_STAGE_CALIBRATE));
    if (o->prune_dead || o->prune_fraction.m > 0)
        LF_CALL(lf_pipeline_add_stage(&p, LF_STAGE_PRUNE));
    bool search = o->n_sweep > 0 || o->target || o->budget;
    LF_CALL(lf_pipeline_add_stage(&p, search ? LF_STAGE_SEARCH : LF_STAGE_FOLD));
    LF_CALL(lf_pipeline_check(&p));
    LF_CALL(lf_pipeline_run(comm, &p));
cleanup:
    return err;
}

lf_err_t lf__cmd_calibrate(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_pipeline_t p;
    common(o, &p);
    p.calibration = o->data;
    p.output_sums = o->output_sums;
    p.out_stats = o->out;
    LF_CALL(lf_pipeline_add_stage(&p, LF_STAGE_CALIBRATE));
    LF_CALL(lf_pipeline_check(&p));
    LF_CALL(lf_pipeline_run(comm, &p));
cleanup:
    return err;
}

lf_err_t lf__cmd_eval(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_pipeline_t p;
    common(o, &p);
    p.eval_data = o->data;
    p.eval_labels = o->labels;
    p.reference = o->reference;
    p.json = o->json;
    LF_CALL(lf_pipeline_add_stage(&p, LF_STAGE_EVALUATE));
    LF_CALL(lf_pipeline_check(&p));
    LF_CALL(lf_pipeline_run(comm, &p));
cleanup:
    return err;
}

lf_err_t lf__cmd_predict(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_pipeline_t p;
    common(o, &p);
    p.eval_data = o->data;
    p.predict_out = o->out;
    LF_CALL(lf_pipeline_add_stage(&p, LF_STAGE_PREDICT));
    LF_CALL(lf_pipeline_check(&p));
    LF_CALL(lf_pipeline_run(comm, &p));
cleanup:
    return err;
}

lf_err_t lf__cmd_run(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_pipeline_config_t *cfg = NULL;
    bool rank0 = lf__cli_rank(comm) == 0;
    LF_CALL(lf_pipeline_config_load(comm, o->file, o->sets, o->n_sets, &cfg));
    if (o->print_config) {
        if (rank0)
            fputs(lf_pipeline_config_effective(cfg), stdout);
        goto cleanup;
    }
    LF_CALL(lf_pipeline_config_check_files(comm, cfg));
    if (o->dry_run) {
        if (rank0)
            lf_pipeline_config_print_plan(cfg, stdout);
        goto cleanup;
    }
    LF_CALL(lf_pipeline_config_make_directories(comm, cfg));
    lf_pipeline_t *p = lf_pipeline_config_pipeline_mut(cfg);
    lf_batch_opts_t bo = lf__cli_batch_opts(o, NULL);
    p->threads = bo.threads;
    p->progress = bo.progress;
    p->quiet = o->quiet;
    LF_CALL(lf_pipeline_run(comm, p));
cleanup:
    lf_pipeline_config_destroy(&cfg);
    return err;
}
