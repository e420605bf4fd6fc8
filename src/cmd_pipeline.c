/* compress, calibrate, eval and predict: each builds the pipeline its flags describe and runs
 * it, so that the command line and pipeline files share one code path (pipeline.h). */
#include "cli_impl.h"
#include "linfold/checkpoint.h"
#include "linfold/pipeline.h"
#include "linfold/pipeline_config.h"
#include "linfold/registry.h"

#include <stdlib.h>
#include <string.h>

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
    if (o->prune_by)
        LF_CALL(lf_plan_parse_prune_by(o->prune_by, &p.prune_by));
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
    if (lf__cli_given(o, "--confidence"))
        p.confidence = o->confidence;
    if (o->merge)
        LF_CALL(lf_merge_path_parse(o->merge, &p.merge));
    if (o->dist_threshold)
        p.dist_threshold = o->dist_threshold;
    if (o->dist_block)
        p.dist_block = o->dist_block;
    p.merge_single = o->merge_precision && strcmp(o->merge_precision, "single") == 0;
    if (o->data)
        LF_CALL(lf_pipeline_add_stage(&p, LF_STAGE_CALIBRATE));
    if (o->prune_dead || o->prune_fraction.m > 0)
        LF_CALL(lf_pipeline_add_stage(&p, LF_STAGE_PRUNE));
    bool search = o->n_sweep > 0 || o->target || o->budget;
    LF_CALL(lf_pipeline_add_stage(&p, search ? LF_STAGE_SEARCH : LF_STAGE_FOLD));
    if (o->reconstruct)
        LF_CALL(lf_pipeline_add_stage(&p, LF_STAGE_RECONSTRUCT));
    p.reconstruct_rows = o->reconstruct_rows;
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

/* "K/N" with 0 <= K < N. */
static lf_err_t parse_shard(const char *text, int *k, int *n)
{
    lf_err_t err = LF_OK;
    char *end = NULL;
    long a = strtol(text, &end, 10), b = -1;
    if (end != text && *end == '/') {
        const char *rest = end + 1;
        b = strtol(rest, &end, 10);
        if (end == rest || *end)
            b = -1;
    }
    LF_CHECK(b >= 1 && b <= 1000000 && a >= 0 && a < b, LF_ERR_USAGE,
             "--shard expects K/N with 0 <= K < N, got '%s'", text);
    *k = (int)a;
    *n = (int)b;
cleanup:
    return err;
}

/* A registry: --dry-run lists the models and the first one's plan. */
static lf_err_t run_registry(MPI_Comm comm, const lf__cli_opts_t *o, lf_pipeline_config_t *cfg)
{
    lf_err_t err = LF_OK;
    lf_pipeline_config_t *first = NULL;
    lf_registry_opts_t ro = {.shard = 0, .shards = 1};
    lf_batch_opts_t bo = lf__cli_batch_opts(o, NULL);
    int n = 0;
    const lf_registry_model_t *models = lf_pipeline_config_models(cfg, &n);
    if (o->shard)
        LF_CALL(parse_shard(o->shard, &ro.shard, &ro.shards));
    if (o->print_config || o->dry_run) {
        LF_CALL(lf_pipeline_config_member(cfg, 0, &first));
        if (lf__cli_rank(comm) == 0) {
            if (o->print_config) {
                printf("# the pipeline of the registry's first model, %s\n", models[0].written);
                fputs(lf_pipeline_config_effective(first), stdout);
            } else {
                printf("registry %s: %d models; summary %s.json and .csv, state in %s\n", o->file,
                       n, lf_pipeline_config_summary(cfg), lf_pipeline_config_state(cfg));
                for (int k = 0; k < n; k++)
                    printf("  %d. %s (%s)%s\n", k + 1, models[k].written, models[k].stem,
                           ro.shards > 1 && k % ro.shards != ro.shard ? " [other shard]" : "");
                printf("the first model's plan:\n");
            }
        }
        if (o->dry_run) {
            LF_CALL(lf_pipeline_config_check_files(comm, first));
            if (lf__cli_rank(comm) == 0)
                lf_pipeline_config_print_plan(first, stdout);
        }
        goto cleanup;
    }
    ro.threads = bo.threads;
    ro.progress = bo.progress;
    ro.quiet = o->quiet;
    LF_CALL(lf_registry_run(comm, cfg, &ro));
cleanup:
    lf_pipeline_config_destroy(&first);
    return err;
}

lf_err_t lf__cmd_run(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_pipeline_config_t *cfg = NULL;
    bool rank0 = lf__cli_rank(comm) == 0;
    LF_CALL(lf_pipeline_config_load(comm, o->file, o->sets, o->n_sets, &cfg));
    if (lf_pipeline_config_is_registry(cfg)) {
        LF_CALL(run_registry(comm, o, cfg));
        goto cleanup;
    }
    LF_CHECK(!o->shard, LF_ERR_USAGE, "--shard goes with registries (models: in the pipeline)");
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
    lf_pipeline_t *p = lf_pipeline_config_pipeline_mut(cfg);
    if (o->resume) {
        bool exists = false;
        LF_CHECK(p->checkpoint_path, LF_ERR_USAGE,
                 "--resume: %s has no checkpoint section, so there is nothing to resume", o->file);
        LF_CALL(lf_checkpoint_exists(comm, p->checkpoint_path, &exists));
        LF_CHECK(exists, LF_ERR_USAGE,
                 "--resume: there is no checkpoint at %s (without --resume the run starts "
                 "afresh)",
                 p->checkpoint_path);
    }
    LF_CALL(lf_pipeline_config_make_directories(comm, cfg));
    lf_batch_opts_t bo = lf__cli_batch_opts(o, NULL);
    p->threads = bo.threads;
    p->progress = bo.progress;
    p->quiet = o->quiet;
    LF_CALL(lf_pipeline_run(comm, p));
cleanup:
    lf_pipeline_config_destroy(&cfg);
    return err;
}
