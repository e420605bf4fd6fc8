/* A pipeline: one model, its inputs, an ordered list of stages and its outputs, run by one
 * runner. Every command builds one: `linfold run` from a YAML file (pipeline_config.h), and
 * `compress`, `calibrate`, `eval` and `predict` from their flags, so the same code does the work
 * behind both.
 *
 * Stages, in the only order that makes sense (each at most once):
 *
 *     calibrate            statistics of every neuron over the calibration rows
 *     prune                dead-neuron and importance pruning (options of the plan)
 *     fold | search        one plan at a threshold, or a search over plans (a sweep, a target
 *                          size, an accuracy budget)
 *     evaluate, predict    the current model (compressed once fold or search ran) on the
 *                          evaluation rows
 *
 * Outputs are written only when every stage succeeded: a failed run leaves no model, statistics
 * or predictions behind (the run record, which says why it failed, is the exception).
 *
 *     lf_pipeline_t p;
 *     lf_pipeline_init(&p);
 *     p.model = "model.h5"; p.calibration = "data.h5:/val/x"; p.out_model = "small.h5";
 *     lf_pipeline_add_stage(&p, LF_STAGE_CALIBRATE);
 *     lf_pipeline_add_stage(&p, LF_STAGE_FOLD);
 *     lf_pipeline_run(comm, &p, NULL);   // collective
 */
#ifndef LINFOLD_PIPELINE_H
#define LINFOLD_PIPELINE_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/decimal.h"
#include "linfold/error.h"
#include "linfold/fold_dist.h"
#include "linfold/model.h"
#include "linfold/plan.h"

enum { LF_PIPELINE_LIST_MAX = 64, LF_PIPELINE_STAGES_MAX = 8 };

typedef enum {
    LF_STAGE_CALIBRATE,
    LF_STAGE_PRUNE,
    LF_STAGE_FOLD,
    LF_STAGE_SEARCH,
    LF_STAGE_RECONSTRUCT,
    LF_STAGE_EVALUATE,
    LF_STAGE_PREDICT,
    LF_STAGE__COUNT
} lf_stage_t;

typedef struct {
    /* Inputs. Data sets are "FILE.h5:/path". statistics replaces a calibrate stage. */
    const char *model, *calibration, *statistics, *eval_data, *eval_labels, *reference;
    const char *name; /* what the run is called in messages and records (e.g. the YAML file) */

    lf_stage_t stages[LF_PIPELINE_STAGES_MAX];
    int n_stages;

    /* calibrate */
    int64_t calibrate_batch;
    bool output_sums;
    /* prune */
    bool prune_dead, prune_global;
    lf_decimal_t prune_fraction;
    lf_prune_by_t prune_by;
    /* fold */
    lf_decimal_t threshold;
    lf_layer_rule_t rule;
    bool rule_given; /* else: benefit, or the exact optimal selection for searches */
    /* fold and search: how the merges of the model written run (fold_dist.h) */
    lf_merge_path_t merge;
    int64_t dist_threshold; /* elements of the largest product; auto goes distributed above */
    int64_t dist_block;     /* block size of the process grid's layout */
    bool merge_single;      /* psgemm_ (float32) instead of pdgemm_ */
    /* search: exactly one of a sweep, a target ratio and an accuracy budget */
    lf_decimal_t sweep[LF_PIPELINE_LIST_MAX], fractions[LF_PIPELINE_LIST_MAX];
    int n_sweep, n_fractions;
    bool target, budget;
    lf_decimal_t target_ratio, max_drop;
    lf_decimal_t confidence; /* of the budget's upper bound on the drop; 0: point estimate */
    int64_t search_batch;
    /* reconstruct */
    int64_t reconstruct_rows; /* 0: every calibration row; else about that many (refit.h) */
    /* evaluate */
    int64_t evaluate_batch;
    bool json; /* print the evaluation as one JSON object */
    /* predict */
    int64_t predict_batch;
    const char *predict_out;

    /* Outputs (NULL: not written). */
    const char *out_model, *out_report, *out_stats, *sweep_out;

    /* Checkpoints of the calibration (checkpoint.h); path NULL: none. */
    const char *checkpoint_path;
    int64_t checkpoint_batches;
    double checkpoint_seconds;
    const char *identity;    /* SHA-256 of the effective pipeline: a checkpoint must match it */
    const char *file_sha256; /* SHA-256 of the pipeline file's bytes (NULL: none) */

    /* The model and reference already read and checked (by lf_pipeline_config_check_files), or
     * NULL: the runner reads them. Borrowed: the runner neither changes nor frees them. */
    const lf_model_t *loaded_model, *loaded_reference;
    /* The statistics file already read and checked against loaded_model, or NULL. Borrowed. */
    const lf_stats_t *loaded_stats;

    /* How to run. */
    int threads;
    bool progress, quiet;
    int group; /* the rank group of a registry run (-1: none), for the record */
} lf_pipeline_t;

/* Fills p with the defaults: threshold 1, batches of 1024 rows, nothing else.
 * Not collective. */
void lf_pipeline_init(lf_pipeline_t *p);

/* Appends a stage.
 * Not collective.
 * LF_ERR_USAGE beyond LF_PIPELINE_STAGES_MAX stages. */
lf_err_t lf_pipeline_add_stage(lf_pipeline_t *p, lf_stage_t stage);

/* Returns the stage's name as written in pipeline files ("calibrate", ...).
 * Not collective. */
const char *lf_stage_name(lf_stage_t stage);

/* Returns whether p has the stage.
 * Not collective. */
bool lf_pipeline_has(const lf_pipeline_t *p, lf_stage_t stage);

/* Receives one problem of a pipeline: the stage it is about (an lf_stage_t, or -1 for the
 * pipeline as a whole) and the message. */
typedef void (*lf_pipeline_report_fn)(void *ctx, int stage, const char *msg);

/* Checks what can be checked without files: stage order, the inputs and outputs each stage
 * needs, options that exclude each other. Reports every problem and returns their number.
 * Not collective. */
int lf_pipeline_problems(const lf_pipeline_t *p, lf_pipeline_report_fn report, void *ctx);

/* lf_pipeline_problems() for callers that stop at the first problem: records it as
 * LF_ERR_USAGE and returns that (LF_OK when there is none).
 * Not collective. */
lf_err_t lf_pipeline_check(const lf_pipeline_t *p);

/* Runs the stages, then writes the outputs.
 * Collective on comm.
 * The error is agreed on every rank. With p->out_report a JSON run record (record.h) is written
 * there whether the run succeeded or not. */
lf_err_t lf_pipeline_run(MPI_Comm comm, const lf_pipeline_t *p);

/* lf_pipeline_run() that also returns the run record as compact JSON in *record_json (on every
 * rank; rank 0's is the one with the peak memory of all ranks; caller frees with free()), also
 * when the run failed.
 * Collective on comm. */
lf_err_t lf_pipeline_run_recorded(MPI_Comm comm, const lf_pipeline_t *p, char **record_json);

/* The process exit status of an agreed error (docs/pipeline.md has the table): 0 success,
 * 2 bad input or configuration, 3 some models of a registry failed, 75 stopped at a checkpoint,
 * 128 + N stopped by signal N, 1 any other error.
 * Collective on comm (a signal's number is agreed over the ranks). */
int lf_pipeline_exit_status(MPI_Comm comm, lf_err_t agreed);

#endif /* LINFOLD_PIPELINE_H */
