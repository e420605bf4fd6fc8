/* The fold and search stages of a pipeline: one plan at a threshold, or a search over plans.
 *
 * Searches: a sweep (a table, no model); a target ratio (the largest threshold within a size);
 * an accuracy budget (the smallest model within it). All of them use one set of statistics and
 * the functions of search.h. The model is written by the runner once every stage succeeded. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build_info.h"
#include "pipeline_impl.h"
#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"
#include "linfold/fold.h"
#include "linfold/fold_dist.h"
#include "linfold/h5io.h"
#include "linfold/log.h"
#include "linfold/model.h"
#include "linfold/plan.h"
#include "linfold/refit.h"
#include "linfold/report.h"
#include "linfold/search.h"
#include "linfold/stats.h"

/* A decimal as written: "0.8", "0.0343", "1e-12". */
static const char *dec(lf_decimal_t d, char *buf, size_t cap)
{
    lf_decimal_format(d, buf, cap);
    return buf;
}

const char *lf__rule_text(const lf_layer_rule_t *r, char *buf, size_t cap)
{
    switch (r->kind) {
    case LF_RULE_ALL: snprintf(buf, cap, "all"); break;
    case LF_RULE_BENEFIT: snprintf(buf, cap, "benefit"); break;
    case LF_RULE_COUNT: snprintf(buf, cap, "count:%lld", (long long)r->count); break;
    case LF_RULE_FRACTION: {
        char f[48];
        snprintf(buf, cap, "fraction:%s", dec(r->fraction, f, sizeof f));
        break;
    }
    case LF_RULE_GREEDY: snprintf(buf, cap, "greedy"); break;
    case LF_RULE_OPTIMAL: snprintf(buf, cap, "optimal"); break;
    }
    return buf;
}

static void print_summary(const lf_model_t *m, const lf_model_t *folded, const lf_plan_t *p,
                          const int *where, int64_t samples)
{
    printf("%-5s %-10s %8s %8s %8s %8s %8s %8s %12s %12s\n", "layer", "activation", "neurons",
           "linear", "dead", "folded", "pruned", "kept", "params", "params_after");
    for (int i = 0; i < m->n_layers; i++) {
        int64_t folded_n = 0, pruned = 0;
        for (int64_t j = 0; j < p->n_out[i]; j++) {
            folded_n += p->fate[i][j] == LF_NEURON_FOLD;
            pruned += p->fate[i][j] == LF_NEURON_PRUNE;
        }
        int64_t after = where[i] >= 0 ? lf_model_layer_params(folded, where[i]) : 0;
        printf("%-5d %-10s %8lld %8lld %8lld %8lld %8lld %8lld %12lld %12lld\n", i,
               lf_act_name(m->layers[i].act), (long long)p->n_out[i], (long long)p->n_linear[i],
               (long long)p->n_dead[i], (long long)folded_n, (long long)pruned,
               (long long)(p->n_out[i] - folded_n - pruned), (long long)lf_model_layer_params(m, i),
               (long long)after);
    }
    int64_t before = lf_model_params(m), total = lf_model_params(folded);
    printf("layers: %d -> %d; calibration samples: %lld\n", m->n_layers, folded->n_layers,
           (long long)samples);
    if (p->params_after_prune != before)
        printf("pruning removed %lld parameters, folding %lld\n",
               (long long)(before - p->params_after_prune),
               (long long)(p->params_after_prune - total));
    printf("parameters: %lld -> %lld (%.2f%% of the original; %lld in skip blocks)\n",
           (long long)before, (long long)total, 100.0 * (double)total / (double)before,
           (long long)lf_model_skip_params(folded));
}

/* ---------------------------------------------------------------- writing */

/* The attributes of a written model. */
typedef struct {
    lf_attr_t a[11];
    int n;
    char threshold[48], count[32], rule[64], fraction[48];
} model_attrs_t;

static void model_attrs(const lf__run_t *r, model_attrs_t *out)
{
    const lf_pipeline_t *p = r->p;
    const lf_plan_opts_t *popts = &r->result_opts;
    dec(popts->threshold, out->threshold, sizeof out->threshold);
    snprintf(out->count, sizeof out->count, "%lld", (long long)r->stats->samples);
    dec(popts->prune_fraction, out->fraction, sizeof out->fraction);
    const lf_attr_t attrs[] = {
        {"linfold_version", LF_VERSION},
        {"source_model", p->model},
        {"calibration", p->statistics ? p->statistics : p->calibration},
        {"calibration_samples", out->count},
        {"threshold", out->threshold},
        {"layer_rule", lf__rule_text(&popts->rule, out->rule, sizeof out->rule)},
        {"prune_dead", popts->prune_dead ? "true" : "false"},
        {"prune_fraction", out->fraction},
        {"prune_scope", popts->prune_global ? "global" : "layer"},
        {"prune_by", lf_plan_prune_by_name(popts->prune_by)},
        {r->extra_key, r->extra_value},
    };
    memcpy(out->a, attrs, sizeof attrs);
    out->n = (int)(sizeof attrs / sizeof *attrs) - (r->extra_key ? 0 : 1);
}

lf_err_t lf__run_write_model(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    /* A distributed fold wrote the model already (write_original never follows one). */
    if (r->pending_tmp[0]) {
        err = lf_atomic_finish(comm, r->pending_tmp, p->out_model, LF_OK);
        r->pending_tmp[0] = '\0';
        return err;
    }
    model_attrs_t attrs;
    model_attrs(r, &attrs);
    return lf_h5io_write_model(comm, p->out_model, r->write_original ? r->model : r->result,
                               attrs.a, attrs.n);
}

void lf__run_discard(MPI_Comm comm, lf__run_t *r)
{
    if (r->pending_tmp[0])
        lf_atomic_finish(comm, r->pending_tmp, r->p->out_model, LF_ERR_IO);
    r->pending_tmp[0] = '\0';
}

/* The process grid's options for this run's distributed folds. */
static lf_merge_dist_opts_t dist_opts(const lf_pipeline_t *p)
{
    return (lf_merge_dist_opts_t){.block = (int)p->dist_block,
                                  .prec = p->merge_single ? LF_DIST_SINGLE : LF_DIST_DOUBLE};
}

/* The distributed fold: the plan applied on the process grid and written to a temporary file
 * beside the output, which is then read back (one copy per node) for the summary, the record
 * and the stages after this one, and published once every stage succeeded. */
static lf_err_t fold_distributed(MPI_Comm comm, lf__run_t *r, const lf_plan_t *plan,
                                 lf_model_t **folded, int **where)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    model_attrs_t attrs;
    model_attrs(r, &attrs);
    lf__run_discard(comm, r);
    LF_CALL(lf_atomic_begin(comm, p->out_model, r->pending_tmp, sizeof r->pending_tmp));
    lf_merge_dist_opts_t o = dist_opts(p);
    LF_CALL(lf_fold_dist_write(comm, p->model, r->model, plan, &o, r->pending_tmp, p->out_model,
                               attrs.a, attrs.n, where));
    LF_CALL(lf_h5io_read_model_shared(comm, r->pending_tmp, folded));
    /* The plan's shape arithmetic and the algebra must agree, as in lf_fold_apply. */
    LF_CHECK(lf_model_params(*folded) == plan->params_after, LF_ERR_INTERNAL,
             "the plan predicted %lld parameters, the distributed fold wrote %lld",
             (long long)plan->params_after, (long long)lf_model_params(*folded));
cleanup:
    if (err != LF_OK)
        lf__run_discard(comm, r);
    return err;
}

/* Whether this run folds on the process grid: a model at or above the distributed threshold, and
 * an output file to put temporaries beside. */
static bool folds_distributed(const lf__run_t *r)
{
    return r->p->out_model && lf_fold_dist_should(r->p->merge, r->p->dist_threshold, r->model);
}

/* The file a search's candidates are written beside when they fold on the grid: the output
 * model, or for a search that writes none, its CSV or its record. Parallel HDF5 needs a file
 * system every rank sees, which is where outputs go; NULL (no output at all): candidates fold in
 * memory. */
static const char *candidate_anchor(const lf__run_t *r)
{
    const lf_pipeline_t *p = r->p;
    if (!lf_fold_dist_should(p->merge, p->dist_threshold, r->model))
        return NULL;
    return p->out_model ? p->out_model : p->sweep_out ? p->sweep_out : p->out_report;
}

/* A search's candidate folded on the process grid: written to a temporary file beside the
 * anchor, read back (one copy per node) and the file removed at once. A model too wide to fold
 * in memory is then never folded in memory, candidates included. where (may be NULL) as in
 * lf_fold_dist_write. */
static lf_err_t fold_on_grid(MPI_Comm comm, const lf__run_t *r, const lf_model_t *m,
                             const lf_plan_t *plan, lf_model_t **out, int **where)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    const char *anchor = candidate_anchor(r);
    char tmp[LF_PATH_MAX] = "";
    lf_merge_dist_opts_t o = dist_opts(p);
    LF_CALL(lf_atomic_begin(comm, anchor, tmp, sizeof tmp));
    LF_CALL(lf_fold_dist_write(comm, p->model, m, plan, &o, tmp, anchor, NULL, 0, where));
    LF_CALL(lf_h5io_read_model_shared(comm, tmp, out));
cleanup:
    if (tmp[0])
        lf_atomic_finish(comm, tmp, anchor, LF_ERR_IO); /* removes it */
    return err;
}

/* A search's candidate folded on the process grid (lf_search_fold_fn; fold_on_grid). */
static lf_err_t fold_candidate(MPI_Comm comm, const lf_model_t *m, const lf_plan_t *plan, void *ctx,
                               lf_model_t **out)
{
    return fold_on_grid(comm, ctx, m, plan, out, NULL);
}

void lf__run_drop_result(MPI_Comm comm, lf__run_t *r)
{
    lf_model_release(comm, &r->result);
    lf_plan_destroy(&r->result_plan);
    lf_free(r->result_where);
    r->result_where = NULL;
}

lf_err_t lf__stage_reconstruct(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    lf_refit_report_t rep = {0};
    bool *rewrite = NULL;
    if (r->p->n_sweep > 0) { /* a sweep writes no model: its candidates were refitted */
        if (r->talk)
            printf("reconstruction: every threshold of the sweep was evaluated refitted\n");
        return LF_OK;
    }
    if (r->write_original) { /* an accuracy budget kept the original model: nothing changed */
        if (r->talk)
            printf("reconstruction: nothing to refit, the original model is kept\n");
        return LF_OK;
    }
    LF_CHECK(r->result && r->result_plan && r->result_where, LF_ERR_INTERNAL,
             "reconstruction without a compressed model");
    /* Rows a refit was fitted to flatter it: the judging rows should be others (refit.h). */
    if (r->p->eval_data && strcmp(r->p->eval_data, r->p->calibration) == 0)
        lf_log(LF_LOG_WARN, comm,
               "reconstruct: the evaluation rows (%s) are the rows the layers are refitted on; "
               "accuracy measured there overstates the refit: evaluate on other rows",
               r->p->eval_data);
    lf_refit_opts_t o = {.threads = r->p->threads,
                         .what = r->talk ? "reconstruct" : NULL,
                         .max_rows = r->p->reconstruct_rows};
    /* After a distributed fold r->result is the node's shared copy, refitted in its window. */
    LF_CALL(lf_refit_apply(comm, r->model, r->result, r->result_plan, r->result_where, r->data, &o,
                           &rep));
    LF_CALL(lf_comm_agree(comm, lf_model_validate(r->result, "the reconstructed model")));
    if (r->pending_tmp[0]) {
        /* The distributed fold's file (not published yet) holds the weights before the refit:
         * only the refitted layers' arrays change, rewritten in place, so the file keeps the
         * fold's attributes and layout, and no rank ever holds a second copy of the model (as
         * lf_h5io_write_model's file image in memory would). A failure leaves the temporary
         * for lf__run_discard: nothing is published. */
        LF_CALL(lf_comm_agree(
            comm, lf_calloc((size_t)r->result->n_layers, sizeof *rewrite, (void **)&rewrite)));
        for (int k = 0; k < rep.n_layers; k++)
            rewrite[rep.layers[k].layer] = true;
        LF_CALL(lf_h5io_rewrite_layers(comm, r->pending_tmp, r->result, rewrite));
    }
    if (r->talk)
        printf("reconstruction: %d layer%s refitted by least squares in %.2f s\n", rep.n_layers,
               rep.n_layers == 1 ? "" : "s", rep.seconds);
cleanup:
    lf_free(rewrite);
    lf_refit_report_free(&rep);
    return err;
}

/* A search's candidate folded and refitted (a reconstruct stage follows the search): the search
 * then judges each candidate as it will be written. Each candidate costs one pass over the
 * calibration rows per refitted layer on top of its evaluation. It folds where the model
 * written would (on the grid when there is an anchor, then refitted in the node's window). */
static lf_err_t fold_candidate_refit(MPI_Comm comm, const lf_model_t *m, const lf_plan_t *plan,
                                     void *ctx, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    const lf__run_t *r = ctx;
    int *where = NULL;
    if (candidate_anchor(r))
        LF_CALL(fold_on_grid(comm, r, m, plan, out, &where));
    else
        LF_CALL(lf_fold_apply(comm, m, plan, out, &where));
    lf_refit_opts_t o = {.threads = r->p->threads, .max_rows = r->p->reconstruct_rows};
    LF_CALL(lf_refit_apply(comm, m, *out, plan, where, r->data, &o, NULL));
cleanup:
    lf_free(where);
    return err;
}

/* Plans and folds one compression, summarises it and keeps the result in r. */
static lf_err_t compress_with(MPI_Comm comm, lf__run_t *r, const lf_plan_opts_t *popts,
                              const char *extra_key, const char *extra_value)
{
    lf_err_t err = LF_OK;
    lf_plan_t *plan = NULL;
    lf_model_t *folded = NULL;
    int *where = NULL;
    const lf_model_t *m = r->model;
    const lf_pipeline_t *p = r->p;
    LF_CALL(lf_comm_agree(comm, lf_plan_create(m, r->stats, popts, &plan)));
    r->result_opts = *popts;
    r->extra_key = extra_key;
    r->extra_value = extra_value;
    if (folds_distributed(r)) {
        if (r->talk)
            printf("merges: distributed (ScaLAPACK, blocks of %lld, %s)\n",
                   (long long)p->dist_block, p->merge_single ? "psgemm_" : "pdgemm_");
        LF_CALL(fold_distributed(comm, r, plan, &folded, &where));
    } else {
        LF_CALL(lf_fold_apply(comm, m, plan, &folded, &where));
    }
    LF_CALL(lf_comm_agree(comm, lf_record_plan(r->record, m, r->stats, plan, popts, folded)));
    if (r->talk) {
        print_summary(m, folded, plan, where, r->stats->samples);
        if (plan->search_nodes)
            printf("layer selection: %s, %lld plans priced\n",
                   popts->rule.kind == LF_RULE_OPTIMAL ? "optimal" : "greedy",
                   (long long)plan->search_nodes);
    }
    lf__run_drop_result(comm, r);
    r->result = folded;
    r->result_plan = plan;
    r->result_where = where;
    folded = NULL;
    plan = NULL;
    where = NULL;
cleanup:
    lf_free(where);
    lf_model_release(comm, &folded);
    lf_plan_destroy(&plan);
    return err;
}

/* ---------------------------------------------------------------- searches */

static void print_point_header(bool evaluated, bool bounded)
{
    printf("%-10s %-8s %-6s %-8s %-6s %12s %12s %12s %8s", "threshold", "rule", "dead", "pruned",
           "scope", "params_layer", "params_skip", "params", "ratio");
    if (evaluated)
        printf(" %9s %9s", "accuracy", "agreement");
    if (bounded)
        printf(" %8s %8s %9s %9s", "worse", "better", "drop", "bound");
    printf("\n");
}

static void print_point(const lf_search_point_t *pt, const char *mark)
{
    char rule_buf[64], tau[48], share[48];
    printf("%-10s %-8s %-6s %-8s %-6s %12lld %12lld %12lld %8.4f",
           dec(pt->opts.threshold, tau, sizeof tau),
           lf__rule_text(&pt->opts.rule, rule_buf, sizeof rule_buf),
           pt->opts.prune_dead ? "yes" : "no", dec(pt->opts.prune_fraction, share, sizeof share),
           pt->opts.prune_global ? "global" : "layer", (long long)(pt->params - pt->skip_params),
           (long long)pt->skip_params, (long long)pt->params, pt->ratio);
    if (pt->evaluated)
        printf(" %9.4f %9.4f", pt->accuracy, pt->agreement);
    if (pt->bounded) /* budget search: rows the original gets right and this wrong, and back */
        printf(" %8lld %8lld %9.5f %9.5f", (long long)pt->worse, (long long)pt->better, pt->drop,
               pt->drop_bound);
    printf("%s\n", mark);
}

typedef struct {
    const lf_search_point_t *pts;
    int n;
} sweep_table_t;

static lf_err_t write_csv(const char *tmp, const char *path, const void *ctx)
{
    lf_err_t err = LF_OK;
    const sweep_table_t *t = ctx;
    FILE *f = fopen(tmp, "w");
    LF_CHECK(f != NULL, LF_ERR_IO, "%s: cannot open %s (%s)", path, tmp, strerror(errno));
    static const char *const header[] = {
        "threshold",    "rule",  "prune_dead", "prune_fraction", "params_layers", "params_skip",
        "params_total", "ratio", "accuracy",   "top1_agreement", "prune_scope"};
    LF_CALL(lf_report_csv_row(f, header, (int)(sizeof header / sizeof *header)));
    for (int k = 0; k < t->n; k++) {
        const lf_search_point_t *pt = &t->pts[k];
        char cells[11][64];
        dec(pt->opts.threshold, cells[0], sizeof cells[0]);
        lf__rule_text(&pt->opts.rule, cells[1], sizeof cells[1]);
        snprintf(cells[2], sizeof cells[2], "%d", pt->opts.prune_dead);
        dec(pt->opts.prune_fraction, cells[3], sizeof cells[3]);
        snprintf(cells[4], sizeof cells[4], "%lld", (long long)(pt->params - pt->skip_params));
        snprintf(cells[5], sizeof cells[5], "%lld", (long long)pt->skip_params);
        snprintf(cells[6], sizeof cells[6], "%lld", (long long)pt->params);
        snprintf(cells[7], sizeof cells[7], "%.17g", pt->ratio);
        snprintf(cells[8], sizeof cells[8], "%.17g", pt->accuracy);
        snprintf(cells[9], sizeof cells[9], "%.17g", pt->agreement);
        snprintf(cells[10], sizeof cells[10], "%s", pt->opts.prune_global ? "global" : "layer");
        const char *row[11];
        for (int c = 0; c < 11; c++)
            row[c] = (c == 8 || c == 9) && !pt->evaluated ? NULL : cells[c];
        LF_CALL(lf_report_csv_row(f, row, 11));
    }
    int closed = fclose(f);
    f = NULL;
    LF_CHECK(closed == 0, LF_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
cleanup:
    if (f)
        fclose(f);
    return err;
}

static lf_err_t run_sweep(MPI_Comm comm, lf__run_t *r, const lf_search_eval_t *eval)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    lf_search_point_t *pts = NULL;
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)p->n_sweep, sizeof *pts, (void **)&pts)));
    LF_CALL(lf_search_sweep(comm, r->model, r->stats, &r->popts, p->sweep, p->n_sweep, eval, pts));
    if (r->talk) {
        printf("sweep over %d thresholds; original: %lld parameters\n", p->n_sweep,
               (long long)lf_model_params(r->model));
        print_point_header(eval->x != NULL, false);
        for (int k = 0; k < p->n_sweep; k++)
            print_point(&pts[k], "");
    }
    LF_CALL(lf_comm_agree(comm, lf_record_points(r->record, "sweep", pts, p->n_sweep)));
    if (p->sweep_out) {
        sweep_table_t table = {.pts = pts, .n = p->n_sweep};
        LF_CALL(lf_atomic_write_rank0(comm, p->sweep_out, write_csv, &table));
    }
cleanup:
    lf_free(pts);
    return err;
}

static lf_err_t run_target(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    const lf_model_t *m = r->model;
    lf_search_point_t pt;
    bool found = false;
    char tau[48];
    char *ratio = r->extra_buf;
    dec(p->target_ratio, ratio, sizeof r->extra_buf);
    LF_CALL(lf_comm_agree(
        comm, lf_search_target_ratio(m, r->stats, &r->popts, p->target_ratio, &found, &pt)));
    dec(pt.opts.threshold, tau, sizeof tau);
    LF_CHECK(found, LF_ERR_ARG,
             "no threshold reaches %s x the original parameters: the smallest plan (threshold "
             "%s) has %lld of %lld (%.4f)",
             ratio, tau, (long long)pt.params, (long long)lf_model_params(m), pt.ratio);
    if (r->talk)
        printf("target ratio %s: threshold %s gives %lld parameters (%.4f of the original)\n",
               ratio, tau, (long long)pt.params, pt.ratio);
    LF_CALL(compress_with(comm, r, &pt.opts, "target_ratio", ratio));
cleanup:
    return err;
}

static int cmp_params(const void *x, const void *y)
{
    const lf_search_point_t *a = x, *b = y;
    if (a->params != b->params)
        return a->params < b->params ? -1 : 1;
    return a->correct > b->correct ? -1 : (a->correct < b->correct);
}

/* The frontier of a budget search: print_point's columns, then the discordant rows against the
 * original (worse, better), the measured drop and its upper bound. */
static void print_frontier(const lf_pipeline_t *p, const lf_model_t *m,
                           const lf_budget_opts_t *bopts, lf_budget_result_t *res)
{
    char drop[48], conf[48];
    dec(p->max_drop, drop, sizeof drop);
    dec(p->confidence, conf, sizeof conf);
    printf("accuracy budget: original accuracy %.4f (%lld of %lld), %lld parameters; allowed "
           "drop %s",
           res->original_accuracy, (long long)res->original_correct, (long long)res->samples,
           (long long)lf_model_params(m), drop);
    if (p->confidence.m == 0)
        printf(" (%lld rows), on the measured drop\n",
               (long long)lf_decimal_mul_floor(p->max_drop, res->samples));
    else
        printf(", on its upper bound at confidence %s (exact, Clopper-Pearson with "
               "Bonferroni)\n",
               conf);
    printf("frontier explored (%d plans, %d of them distinct and evaluated; * within budget):\n",
           res->n_frontier, res->n_distinct);
    print_point_header(true, true);
    for (int k = 0; k < res->n_frontier; k++) {
        const lf_search_point_t *pt = &res->frontier[k];
        bool within = lf_search_within_budget(bopts, pt);
        print_point(pt, within ? " *" : "");
    }
}

static lf_err_t run_budget(MPI_Comm comm, lf__run_t *r, const lf_search_eval_t *eval)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    const lf_model_t *m = r->model;
    lf_budget_opts_t bopts = {.max_drop = p->max_drop,
                              .confidence = p->confidence,
                              .fractions = p->fractions,
                              .n_fractions = p->n_fractions};
    lf_budget_result_t res = {0};
    LF_CALL(lf_search_accuracy_budget(comm, m, r->stats, &r->popts, &bopts, eval, &res));
    char drop[48];
    qsort(res.frontier, (size_t)res.n_frontier, sizeof *res.frontier, cmp_params);
    if (r->talk)
        print_frontier(p, m, &bopts, &res);
    LF_CALL(
        lf_comm_agree(comm, lf_record_points(r->record, "frontier", res.frontier, res.n_frontier)));
    if (res.met) {
        const lf_search_point_t *best = &res.best;
        char tau[48], share[48];
        dec(best->opts.threshold, tau, sizeof tau);
        dec(best->opts.prune_fraction, share, sizeof share);
        if (r->talk)
            printf("status: budget met: %lld parameters (%.4f), accuracy %.4f, at threshold %s, "
                   "dead-neuron pruning %s, importance pruning %s (%s); drop %.5f, upper bound "
                   "%.5f\n",
                   (long long)best->params, best->ratio, best->accuracy, tau,
                   best->opts.prune_dead ? "on" : "off", share,
                   best->opts.prune_global ? "global" : "per layer", best->drop, best->drop_bound);
        LF_CALL(compress_with(comm, r, &best->opts, "accuracy_budget", "met"));
    } else {
        /* How far the best candidate was: its bound decided, at confidence 0 its drop. */
        double least = INFINITY;
        for (int k = 0; k < res.n_frontier; k++)
            least = res.frontier[k].drop_bound < least ? res.frontier[k].drop_bound : least;
        if (r->talk)
            printf("status: budget not met: no compressed model within %s of %.4f (least upper "
                   "bound on the drop %.5f); writing the original model\n",
                   dec(p->max_drop, drop, sizeof drop), res.original_accuracy, least);
        r->write_original = true;
        r->result_opts = r->popts;
        r->extra_key = "accuracy_budget";
        r->extra_value = "not met";
    }
cleanup:
    lf_free(res.frontier);
    return err;
}

/* Plan options from the pipeline. Searches default to the exact selection: it makes sizes fall
 * monotonically with the threshold, which the target-ratio bisection relies on. */
lf_err_t lf__run_plan_options(const lf_pipeline_t *p, lf_plan_opts_t *popts, bool *need_sums)
{
    bool searching = p->target || p->budget;
    *popts = (lf_plan_opts_t){.threshold = p->threshold,
                              .prune_dead = p->prune_dead,
                              .prune_fraction = p->prune_fraction,
                              .prune_global = p->prune_global,
                              .prune_by = p->prune_by};
    if (p->rule_given)
        popts->rule = p->rule;
    else
        popts->rule.kind = searching ? LF_RULE_OPTIMAL : LF_RULE_BENEFIT;
    /* Importance pruning needs the mean outputs; the accuracy search tries it unless told
     * otherwise. */
    *need_sums = p->output_sums || p->prune_fraction.m > 0 || (p->budget && p->n_fractions == 0);
    for (int k = 0; p->budget && k < p->n_fractions; k++)
        *need_sums = *need_sums || p->fractions[k].m > 0;
    return LF_OK;
}

lf_err_t lf__stage_fold(MPI_Comm comm, lf__run_t *r)
{
    return compress_with(comm, r, &r->popts, NULL, NULL);
}

lf_err_t lf__stage_search(MPI_Comm comm, lf__run_t *r)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = r->p;
    lf_search_eval_t eval = {.x = r->eval_x, .labels = r->eval_y};
    eval.batch = (lf_batch_opts_t){.batch_rows = p->search_batch,
                                   .threads = p->threads,
                                   .progress = p->progress,
                                   .what = NULL};
    bool refit = lf_pipeline_has(p, LF_STAGE_RECONSTRUCT);
    if (refit) {
        eval.fold = fold_candidate_refit;
        eval.fold_ctx = r;
    } else if (candidate_anchor(r)) {
        eval.fold = fold_candidate;
        eval.fold_ctx = r;
    }
    LF_CHECK(candidate_anchor(r) || !eval.x || p->merge != LF_MERGE_DISTRIBUTED, LF_ERR_USAGE,
             "merge: distributed: this search writes no file (no model, sweep-out or report) "
             "beside which the models it evaluates could be written; give one");
    if (p->n_sweep > 0)
        LF_CALL(run_sweep(comm, r, &eval));
    else if (p->target)
        LF_CALL(run_target(comm, r));
    else
        LF_CALL(run_budget(comm, r, &eval));
cleanup:
    return err;
}
