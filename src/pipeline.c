/* The pipeline runner: open and check every input, run the stages in order, write the outputs
 * and the run record. See pipeline.h. */
#include "linfold/pipeline.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "linfold/atomic.h"
#include "linfold/checkpoint.h"
#include "linfold/comm.h"
#include "linfold/hash.h"
#include "linfold/interrupt.h"
#include "linfold/log.h"
#include "linfold/report.h"
#include "pipeline_impl.h"

static const char *const stage_names[LF_STAGE__COUNT] = {
    "calibrate", "prune", "fold", "search", "reconstruct", "evaluate", "predict"};

/* Where a stage may stand: ranks must not fall along the list. */
static const int stage_rank[LF_STAGE__COUNT] = {0, 1, 2, 2, 3, 4, 4};

void lf_pipeline_init(lf_pipeline_t *p)
{
    *p = (lf_pipeline_t){.threshold = LF_DECIMAL(1, 0),
                         .calibrate_batch = 1024,
                         .prune_by = LF_PRUNE_BY_DEFAULT,
                         .search_batch = 1024,
                         .confidence = LF_DECIMAL(95, -2),
                         .evaluate_batch = 1024,
                         .predict_batch = 1024,
                         .threads = 1,
                         .merge = LF_MERGE_AUTO,
                         .dist_threshold = LF_DIST_THRESHOLD_DEFAULT,
                         .dist_block = LF_GRID_BLOCK_DEFAULT,
                         .group = -1};
}

const char *lf_stage_name(lf_stage_t stage)
{
    return stage >= 0 && stage < LF_STAGE__COUNT ? stage_names[stage] : "?";
}

lf_err_t lf_pipeline_add_stage(lf_pipeline_t *p, lf_stage_t stage)
{
    lf_err_t err = LF_OK;
    LF_CHECK(p->n_stages < LF_PIPELINE_STAGES_MAX, LF_ERR_USAGE, "a pipeline has at most %d stages",
             LF_PIPELINE_STAGES_MAX);
    p->stages[p->n_stages++] = stage;
cleanup:
    return err;
}

bool lf_pipeline_has(const lf_pipeline_t *p, lf_stage_t stage)
{
    for (int k = 0; k < p->n_stages; k++)
        if (p->stages[k] == stage)
            return true;
    return false;
}

/* The stage a problem is about: the last of the given ones the pipeline has, else -1. */
static int about(const lf_pipeline_t *p, lf_stage_t a, lf_stage_t b)
{
    int found = -1;
    for (int k = 0; k < p->n_stages; k++)
        if (p->stages[k] == a || p->stages[k] == b)
            found = (int)p->stages[k];
    return found;
}

#define PROBLEM(cond, stage, ...)                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(msg, sizeof msg, __VA_ARGS__);                                                \
            report(ctx, (stage), msg);                                                             \
            n++;                                                                                   \
        }                                                                                          \
    } while (0)

int lf_pipeline_problems(const lf_pipeline_t *p, lf_pipeline_report_fn report, void *ctx)
{
    char msg[512];
    int n = 0, seen[LF_STAGE__COUNT] = {0}, last = 0;
    const char *prev = NULL;
    for (int k = 0; k < p->n_stages; k++) {
        lf_stage_t s = p->stages[k];
        const char *name = lf_stage_name(s);
        PROBLEM(!seen[s], (int)s, "stage %s appears twice", name);
        PROBLEM(stage_rank[s] >= last, (int)s,
                "stage %s cannot come after %s (the order is calibrate, prune, fold or search, "
                "reconstruct, then evaluate and predict)",
                name, prev);
        seen[s] = 1;
        last = stage_rank[s] > last ? stage_rank[s] : last;
        prev = name;
    }
    bool planning = seen[LF_STAGE_FOLD] || seen[LF_STAGE_SEARCH];
    int plan_stage = about(p, LF_STAGE_FOLD, LF_STAGE_SEARCH);
    const char *plan_name = seen[LF_STAGE_FOLD] ? "fold" : "search";
    bool sweep = p->n_sweep > 0;
    PROBLEM(!(seen[LF_STAGE_FOLD] && seen[LF_STAGE_SEARCH]), LF_STAGE_SEARCH,
            "fold and search exclude each other: a search chooses its own fold");
    PROBLEM(!seen[LF_STAGE_CALIBRATE] || p->calibration, LF_STAGE_CALIBRATE,
            "stage calibrate needs calibration data");
    PROBLEM(!(seen[LF_STAGE_CALIBRATE] && p->statistics), LF_STAGE_CALIBRATE,
            "give calibration statistics or a calibrate stage, not both");
    PROBLEM(!planning || seen[LF_STAGE_CALIBRATE] || p->statistics, plan_stage,
            "stage %s needs statistics: a calibrate stage before it, or statistics from an "
            "earlier calibration",
            plan_name);
    PROBLEM(!seen[LF_STAGE_PRUNE] || planning, LF_STAGE_PRUNE,
            "stage prune sets what fold or search removes: add a fold or search stage after it");
    PROBLEM(!seen[LF_STAGE_RECONSTRUCT] || planning, LF_STAGE_RECONSTRUCT,
            "stage reconstruct refits what a fold or search stage makes: add one before it");
    PROBLEM(!seen[LF_STAGE_RECONSTRUCT] || p->calibration, LF_STAGE_RECONSTRUCT,
            "stage reconstruct needs calibration data: the rows it refits the layers on");
    PROBLEM(!p->out_stats || seen[LF_STAGE_CALIBRATE], -1,
            "output statistics need a calibrate stage");
    PROBLEM(!seen[LF_STAGE_SEARCH] || sweep + p->target + p->budget == 1, LF_STAGE_SEARCH,
            "stage search needs exactly one of sweep, target-ratio and max-accuracy-drop");
    PROBLEM(!p->out_model || (planning && !sweep), plan_stage,
            "an output model needs a fold stage or a search for a target ratio or an accuracy "
            "budget (a sweep writes no model)");
    PROBLEM(!(planning && !sweep) || p->out_model, plan_stage,
            "stage %s makes a model: name the output model", plan_name);
    PROBLEM(!(seen[LF_STAGE_EVALUATE] || seen[LF_STAGE_PREDICT]) || p->eval_data,
            about(p, LF_STAGE_EVALUATE, LF_STAGE_PREDICT),
            "stages evaluate and predict need evaluation data");
    PROBLEM(!p->budget || (p->eval_data && p->eval_labels), LF_STAGE_SEARCH,
            "an accuracy budget needs evaluation data and labels");
    PROBLEM(!p->budget || !(p->prune_dead || p->prune_fraction.m > 0), LF_STAGE_PRUNE,
            "stage prune has no effect with max-accuracy-drop: the accuracy search tries "
            "pruning itself (use search-fractions)");
    PROBLEM(!p->eval_labels || p->eval_data, -1, "evaluation labels need evaluation data");
    PROBLEM(!seen[LF_STAGE_PREDICT] || p->predict_out, LF_STAGE_PREDICT,
            "stage predict needs its output file (output: {predictions: FILE.h5})");
    PROBLEM(!p->predict_out || seen[LF_STAGE_PREDICT], -1,
            "output predictions need a predict stage");
    PROBLEM(!p->sweep_out || sweep, LF_STAGE_SEARCH, "sweep-out goes with a sweep");
    PROBLEM(!p->prune_global || p->prune_fraction.m > 0 || p->budget, LF_STAGE_PRUNE,
            "prune scope global has no effect without a prune fraction above 0");
    return n;
}
#undef PROBLEM

static void record_first(void *ctx, int stage, const char *msg)
{
    lf_err_t *first = ctx;
    (void)stage;
    if (*first == LF_OK) {
        *first = LF_ERR_USAGE;
        lf_error_record(__FILE__, __LINE__, "lf_pipeline_check", LF_ERR_USAGE, "%s", msg);
    }
}

lf_err_t lf_pipeline_check(const lf_pipeline_t *p)
{
    lf_err_t first = LF_OK;
    if (!p->model)
        record_first(&first, -1, "no model");
    lf_pipeline_problems(p, record_first, &first);
    return first;
}

/* ---------------------------------------------------------------- the run */

const lf_model_t *lf__run_current(const lf__run_t *r) { return r->result ? r->result : r->model; }

static lf_batch_opts_t batch_opts(const lf_pipeline_t *p, int64_t rows, const char *what)
{
    return (lf_batch_opts_t){
        .batch_rows = rows, .threads = p->threads, .progress = p->progress, .what = what};
}

/* Every input is opened and checked against the model before the first pass: a wrong
 * evaluation set must not be found after an hour of calibration. */
static lf_err_t open_inputs(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    LF_CALL(lf__run_plan_options(p, &r->popts, &r->need_sums));
    /* A pipeline file's check has read them already: a wide model is read once. */
    /* One copy of the weights per node, shared by its ranks (h5io.h). */
    if (!p->loaded_model)
        LF_CALL(lf_h5io_read_model_shared(comm, p->model, &r->own_model));
    r->model = p->loaded_model ? p->loaded_model : r->own_model;
    if (p->reference && !p->loaded_reference)
        LF_CALL(lf_h5io_read_model_shared(comm, p->reference, &r->own_reference));
    r->reference = p->loaded_reference ? p->loaded_reference : r->own_reference;
    if (lf_pipeline_has(p, LF_STAGE_CALIBRATE) || lf_pipeline_has(p, LF_STAGE_RECONSTRUCT))
        LF_CALL(lf_h5io_dataset_open(comm, p->calibration, LF_DATA_SAMPLES, &r->data));
    if (p->eval_data)
        LF_CALL(lf_h5io_dataset_open(comm, p->eval_data, LF_DATA_SAMPLES, &r->eval_x));
    if (p->eval_labels)
        LF_CALL(lf_h5io_dataset_open(comm, p->eval_labels, LF_DATA_LABELS, &r->eval_y));
    if (r->eval_x) {
        const lf_model_t *models[] = {r->model, r->reference};
        lf_batch_opts_t bo = batch_opts(p, p->evaluate_batch, NULL);
        LF_CALL(lf_batch_check(r->eval_x, r->eval_y, models, r->reference ? 2 : 1, &bo));
        LF_CHECK(lf_h5io_dataset_rows(r->eval_x) >= 1, LF_ERR_USAGE,
                 "%s has no rows: there is nothing to evaluate", lf_h5io_dataset_spec(r->eval_x));
    }
    if (p->statistics) {
        if (p->loaded_stats)
            r->stats = p->loaded_stats;
        else
            LF_CALL(lf_stats_read(comm, p->statistics, r->model, p->model, &r->own_stats));
        if (!r->stats)
            r->stats = r->own_stats;
        LF_CHECK(!r->need_sums || r->stats->with_sums, LF_ERR_ARG,
                 "%s has no output sums, which importance pruning needs: calibrate with "
                 "--output-sums",
                 p->statistics);
    }
cleanup:
    return err;
}

static lf_err_t stage_calibrate(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    lf_batch_opts_t bo = batch_opts(p, p->calibrate_batch, "calibrate");
    /* Every rerun resumes: the checkpoint must belong to this pipeline (its SHA-256). */
    char identity[128];
    snprintf(identity, sizeof identity, "the pipeline with SHA-256 %s",
             p->identity ? p->identity : "(none)");
    lf_checkpoint_opts_t ck = {.path = p->checkpoint_path,
                               .every_batches = p->checkpoint_batches,
                               .every_seconds = p->checkpoint_seconds,
                               .identity = identity,
                               .resume = true};
    LF_CALL(lf_stats_collect_checkpointed(comm, r->model, r->data, &bo, r->need_sums, &ck,
                                          &r->own_stats));
    r->stats = r->own_stats;
    LF_CALL(lf_comm_agree(comm,
                          lf_record_set_int(r->record, "calibration_samples", r->stats->samples)));
cleanup:
    return err;
}

static lf_err_t print_eval(const lf_eval_result_t *res, bool json)
{
    lf_err_t err = LF_OK;
    double n = (double)res->samples;
    if (json) {
        char *text = NULL;
        LF_CALL(lf_report_eval_json(res, &text));
        printf("%s\n", text);
        lf_report_free(text);
        return LF_OK;
    }
    printf("samples: %lld\nparams: %lld\n", (long long)res->samples, (long long)res->params);
    if (res->has_labels)
        printf("accuracy: %.4f (%lld of %lld)\n", (double)res->correct / n, (long long)res->correct,
               (long long)res->samples);
    if (res->has_reference) {
        printf("reference params: %lld\n", (long long)res->ref_params);
        if (res->has_labels)
            printf("reference accuracy: %.4f (%lld of %lld)\n", (double)res->ref_correct / n,
                   (long long)res->ref_correct, (long long)res->samples);
        printf("top-1 agreement: %.4f (%lld of %lld)\nmax |difference|: %.6g\n",
               (double)res->agree / n, (long long)res->agree, (long long)res->samples,
               res->max_abs_diff);
    }
cleanup:
    return err;
}

/* Evaluates the current model; a compressed one against the original unless a reference was
 * named. */
static lf_err_t stage_evaluate(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    lf_eval_result_t res;
    lf_batch_opts_t bo = batch_opts(p, p->evaluate_batch, "evaluate");
    const lf_model_t *ref = r->reference ? r->reference : (r->result ? r->model : NULL);
    LF_CALL(lf_eval_run(comm, lf__run_current(r), ref, r->eval_x, r->eval_y, &bo, &res));
    /* --json is the command's answer, printed also with --quiet (which silences the log). */
    bool print = lf_comm_rank(comm) == 0 && (!p->quiet || p->json);
    LF_CALL(lf_comm_agree(comm, print ? print_eval(&res, p->json) : LF_OK));
    LF_CALL(lf_comm_agree(comm, lf_record_eval(r->record, &res)));
cleanup:
    return err;
}

static lf_err_t stage_predict(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    lf_batch_opts_t bo = batch_opts(p, p->predict_batch, "predict");
    LF_CALL(lf_eval_predict(comm, lf__run_current(r), r->eval_x, p->predict_out, &bo));
    lf_log(LF_LOG_INFO, comm, "predict: %lld rows written to %s:/outputs",
           (long long)lf_h5io_dataset_rows(r->eval_x), p->predict_out);
cleanup:
    return err;
}

static lf_err_t run_stage(MPI_Comm comm, lf__run_t *r, lf_stage_t s)
{
    switch (s) {
    case LF_STAGE_CALIBRATE: return stage_calibrate(comm, r);
    case LF_STAGE_PRUNE: return LF_OK; /* its options are in r->popts */
    case LF_STAGE_FOLD: return lf__stage_fold(comm, r);
    case LF_STAGE_SEARCH: return lf__stage_search(comm, r);
    case LF_STAGE_RECONSTRUCT: return lf__stage_reconstruct(comm, r);
    case LF_STAGE_EVALUATE: return stage_evaluate(comm, r);
    case LF_STAGE_PREDICT: return stage_predict(comm, r);
    case LF_STAGE__COUNT: break;
    }
    return LF_OK;
}

static lf_err_t write_outputs(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    if (p->out_stats) {
        LF_CALL(lf_stats_write(comm, p->out_stats, r->stats));
        lf_log(LF_LOG_INFO, comm, "calibrate: %lld samples, statistics written to %s",
               (long long)r->stats->samples, p->out_stats);
    }
    if (p->out_model && (r->result || r->write_original)) {
        LF_CALL(lf__run_write_model(comm, r));
        if (r->talk)
            printf("wrote %s\n", p->out_model);
    }
    /* The outputs are safe: the calibration's checkpoint has done its job. */
    if (p->checkpoint_path)
        LF_CALL(lf_checkpoint_remove(comm, p->checkpoint_path));
cleanup:
    return err;
}

/* SHA-256 of the model and the calibration file, for the record; rank 0 only. */
static lf_err_t record_inputs(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    char hex[LF_SHA256_HEX], file[LF_PATH_MAX], obj[1024];
    if (!r->record)
        return LF_OK;
    LF_CALL(lf_record_set_string(r->record, "pipeline", p->name));
    LF_CALL(lf_record_set_string(r->record, "model", p->model));
    LF_CALL(lf_record_set_string(r->record, "calibration",
                                 p->statistics ? p->statistics : p->calibration));
    LF_CALL(lf_record_set_string(r->record, "evaluation_data", p->eval_data));
    LF_CALL(lf_record_set_int(r->record, "threads_per_rank", p->threads));
    if (p->group >= 0)
        LF_CALL(lf_record_set_int(r->record, "group", p->group));
    if (lf_comm_rank(comm) != 0)
        return LF_OK;
    LF_CALL(lf_hash_file(p->model, hex));
    LF_CALL(lf_record_set_string(r->record, "sha256.model", hex));
    const char *data = p->statistics ? p->statistics : p->calibration;
    if (data) {
        if (p->statistics)
            snprintf(file, sizeof file, "%s", data);
        else
            LF_CALL(lf_h5io_split_spec(data, file, sizeof file, obj, sizeof obj));
        LF_CALL(lf_hash_file(file, hex));
        LF_CALL(lf_record_set_string(r->record, "sha256.data", hex));
    }
    LF_CALL(lf_record_set_string(r->record, "sha256.pipeline", p->identity));
    if (p->file_sha256)
        LF_CALL(lf_record_set_string(r->record, "sha256.pipeline_file", p->file_sha256));
cleanup:
    return err;
}

int lf_pipeline_exit_status(MPI_Comm comm, lf_err_t agreed)
{
    switch (agreed) {
    case LF_OK: return 0;
    case LF_ERR_USAGE: return 2;
    case LF_ERR_PARTIAL: return 3;
    case LF_ERR_CHECKPOINT: return 75;
    case LF_ERR_INTERRUPTED: {
        int sig = lf_interrupt_agree(comm);
        return sig > 0 ? 128 + sig : 1;
    }
    default: return 1;
    }
}

lf_err_t lf_pipeline_run(MPI_Comm comm, const lf_pipeline_t *p)
{
    return lf_pipeline_run_recorded(comm, p, NULL);
}

lf_err_t lf_pipeline_run_recorded(MPI_Comm comm, const lf_pipeline_t *p, char **record_json)
{
    lf_err_t err = LF_OK;
    lf__run_t r = {.p = p, .talk = lf_comm_rank(comm) == 0 && !p->quiet};
    if (record_json)
        *record_json = NULL;
    if (p->out_report || record_json)
        LF_CALL(lf_comm_agree(comm, lf_record_create(&r.record)));
    LF_CALL(lf_comm_agree(comm, record_inputs(comm, &r)));
    double t = lf_log_seconds();
    LF_CALL(open_inputs(comm, &r));
    LF_CALL(lf_record_stage_time(comm, r.record, "read", lf_log_seconds() - t));
    for (int k = 0; k < p->n_stages; k++) {
        t = lf_log_seconds();
        LF_CALL(run_stage(comm, &r, p->stages[k]));
        LF_CALL(lf_record_stage_time(comm, r.record, lf_stage_name(p->stages[k]),
                                     lf_log_seconds() - t));
    }
    t = lf_log_seconds();
    LF_CALL(write_outputs(comm, &r));
    LF_CALL(lf_record_stage_time(comm, r.record, "write", lf_log_seconds() - t));
cleanup:
    err = lf_comm_agree(comm, err);
    if (r.record) {
        int status = lf_pipeline_exit_status(comm, err);
        lf_err_t rec = lf_record_finish(comm, r.record, err, status);
        rec = lf_comm_agree(comm, rec);
        if (rec == LF_OK)
            rec = lf_record_write(comm, r.record, p->out_report);
        if (rec == LF_OK && record_json)
            rec = lf_comm_agree(comm, lf_record_dump(r.record, record_json));
        if (err == LF_OK)
            err = rec;
    }
    lf_record_destroy(&r.record);
    lf__run_discard(comm, &r);
    lf__run_drop_result(comm, &r);
    lf_stats_destroy(&r.own_stats);
    lf_h5io_dataset_close(&r.eval_y);
    lf_h5io_dataset_close(&r.eval_x);
    lf_h5io_dataset_close(&r.data);
    lf_model_release(comm, &r.own_reference);
    lf_model_release(comm, &r.own_model);
    return err;
}
