/* Shared inside the pipeline runner: the state a run carries from stage to stage. */
#ifndef LINFOLD_PIPELINE_IMPL_H
#define LINFOLD_PIPELINE_IMPL_H

#include <mpi.h>
#include <stdbool.h>

#include "linfold/atomic.h"
#include "linfold/eval.h"
#include "linfold/h5io.h"
#include "linfold/model.h"
#include "linfold/pipeline.h"
#include "linfold/plan.h"
#include "linfold/record.h"
#include "linfold/stats.h"

typedef struct {
    const lf_pipeline_t *p;
    bool talk; /* rank 0, not --quiet: prints the human summary on stdout */
    const lf_model_t *model, *reference;
    lf_model_t *own_model, *own_reference; /* what the runner read itself */
    lf_dataset_t *data, *eval_x, *eval_y;
    const lf_stats_t *stats; /* own_stats, or the statistics file the checks already read */
    lf_stats_t *own_stats;
    lf_plan_opts_t popts; /* the plan options the stages so far set */
    bool need_sums;
    /* The result of fold or search: a compressed model, or the original one written as such
     * (an accuracy budget no compressed model meets). */
    lf_model_t *result;
    lf_plan_t *result_plan; /* the plan result was folded by, and where its layers went */
    int *result_where;
    bool write_original;
    lf_plan_opts_t result_opts;
    const char *extra_key, *extra_value; /* one more attribute of the written model */
    char extra_buf[48];
    lf_record_t *record;
    /* A distributed fold writes the model while it folds: into this temporary file, published
     * by lf__run_write_model, removed by lf__run_discard when the run fails ("": none). */
    char pending_tmp[LF_PATH_MAX];
} lf__run_t;

/* The model the evaluate and predict stages use: the result of fold or search, else the input.
 * Not collective. */
const lf_model_t *lf__run_current(const lf__run_t *r);

/* The fold and search stages (pipeline_fold.c).
 * Collective on comm. */
lf_err_t lf__stage_fold(MPI_Comm comm, lf__run_t *r);
lf_err_t lf__stage_search(MPI_Comm comm, lf__run_t *r);
/* Refits the result's layers whose inputs changed (refit.h).
 * Collective on comm. */
lf_err_t lf__stage_reconstruct(MPI_Comm comm, lf__run_t *r);
/* Frees the result and its plan.
 * Collective on comm (a shared result is freed collectively). */
void lf__run_drop_result(MPI_Comm comm, lf__run_t *r);
/* Writes r->result (or the original model) to p->out_model with its attributes, or publishes
 * the file a distributed fold wrote.
 * Collective on comm. */
lf_err_t lf__run_write_model(MPI_Comm comm, lf__run_t *r);
/* Removes the file a distributed fold wrote, if any (a failed run).
 * Collective on comm. */
void lf__run_discard(MPI_Comm comm, lf__run_t *r);
/* Plan options of the pipeline, and whether the statistics need output sums.
 * Not collective. */
lf_err_t lf__run_plan_options(const lf_pipeline_t *p, lf_plan_opts_t *popts, bool *need_sums);
/* "all", "count:3", "fraction:0.5", ...
 * Not collective. */
const char *lf__rule_text(const lf_layer_rule_t *r, char *buf, size_t cap);

#endif /* LINFOLD_PIPELINE_IMPL_H */
