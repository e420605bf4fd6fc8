/* The run record: one JSON object per model run, written with jansson (docs/pipeline.md has the
 * schema, "linfold-run-record" version 1).
 *
 * It says what was run (pipeline, inputs and their SHA-256, version, revision, ranks, BLAS
 * kernel), what the plan did to every layer (neurons kept, folded, pruned, dead, a histogram of
 * activation rates), parameters before and after, the evaluation, per-stage wall times (min and
 * max over ranks), peak memory per rank, and how the run ended (exit status and message). A
 * record is also written for a failed run, so a registry's summary can say why a model failed.
 *
 *     lf_record_t *r = NULL;
 *     lf_record_create(&r);
 *     lf_record_set_string(r, "pipeline", "digits.yaml");
 *     lf_record_plan(r, model, stats, plan, &opts, folded);
 *     lf_record_stage_time(comm, r, "calibrate", seconds);    // collective
 *     lf_record_finish(comm, r, err, status);                 // collective
 *     lf_record_write(comm, r, "report.json");                // collective, atomic
 *     lf_record_destroy(&r);
 *
 * Every function accepts a NULL record and then does nothing (returns LF_OK), so that callers
 * need not test whether a record is wanted; collective ones still communicate.
 */
#ifndef LINFOLD_RECORD_H
#define LINFOLD_RECORD_H

#include <mpi.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/eval.h"
#include "linfold/model.h"
#include "linfold/plan.h"
#include "linfold/search.h"
#include "linfold/stats.h"

#define LF_RECORD_SCHEMA "linfold-run-record"
#define LF_RECORD_VERSION 1
/* Activation-rate histogram: 10 bins [0, 0.1), ..., [0.9, 1), and an 11th for rate = 1. */
#define LF_RECORD_RATE_BINS 11

typedef struct lf_record lf_record_t;

/* Creates an empty record with its schema name and version.
 * Not collective. */
lf_err_t lf_record_create(lf_record_t **out);
/* Frees *r and sets it to NULL; accepts NULL.
 * Not collective. */
void lf_record_destroy(lf_record_t **r);

/* Sets a member. key "a.b" sets member b of object a (created when absent); one level only.
 * value NULL sets JSON null.
 * Not collective. */
lf_err_t lf_record_set_string(lf_record_t *r, const char *key, const char *value);
lf_err_t lf_record_set_int(lf_record_t *r, const char *key, int64_t value);
lf_err_t lf_record_set_real(lf_record_t *r, const char *key, double value);
lf_err_t lf_record_set_bool(lf_record_t *r, const char *key, bool value);

/* Records the plan and its effect: "plan", "layers" and "params".
 * Not collective. */
lf_err_t lf_record_plan(lf_record_t *r, const lf_model_t *m, const lf_stats_t *s,
                        const lf_plan_t *plan, const lf_plan_opts_t *opts,
                        const lf_model_t *folded);
/* Records the activation-rate histogram of every layer without a plan (a calibrate-only run).
 * Not collective. */
lf_err_t lf_record_stats(lf_record_t *r, const lf_model_t *m, const lf_stats_t *s);
/* Records the points of a search under key ("sweep" or "frontier").
 * Not collective. */
lf_err_t lf_record_points(lf_record_t *r, const char *key, const lf_search_point_t *pts, int n);
/* Records an evaluation as "evaluation".
 * Not collective. */
lf_err_t lf_record_eval(lf_record_t *r, const lf_eval_result_t *res);
/* Appends a stage to "stages" with the min and max of seconds over the ranks of comm.
 * Collective on comm. */
lf_err_t lf_record_stage_time(MPI_Comm comm, lf_record_t *r, const char *stage, double seconds);
/* Records ranks, peak memory per rank (MiB, in rank order), the exit status and, when err is
 * not LF_OK, the error's name and message (this process's record, or the agreed code's
 * description on ranks that only received it).
 * Collective on comm. */
lf_err_t lf_record_finish(MPI_Comm comm, lf_record_t *r, lf_err_t err, int status);
/* Writes the record to path (pretty-printed, keys in insertion order) through a temporary file.
 * Collective on comm.
 * Rank 0's record is written. */
lf_err_t lf_record_write(MPI_Comm comm, const lf_record_t *r, const char *path);
/* The record as compact JSON text (caller frees with free()); NULL for a NULL record.
 * Not collective. */
lf_err_t lf_record_dump(const lf_record_t *r, char **text);

#endif /* LINFOLD_RECORD_H */
