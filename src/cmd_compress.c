/* linfold compress: statistics, then one plan (or a search over plans), fold, write, report.
 *
 * Modes: a plain compression at --threshold; --sweep (a table, no model); --target-ratio (the
 * largest threshold within a size); --max-accuracy-drop (the smallest model within an accuracy
 * budget). All of them use one set of statistics and the functions of search.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build_info.h"
#include "cli_impl.h"
#include "h5io_impl.h"
#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/fold.h"
#include "linfold/h5io.h"
#include "linfold/log.h"
#include "linfold/model.h"
#include "linfold/plan.h"
#include "linfold/search.h"
#include "linfold/stats.h"

/* The shortest decimal that reads back as v: "0.0343", not "0.034299999999999997". */
static void shortest(double v, char *buf, size_t cap)
{
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, cap, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static const char *rule_text(const lf_layer_rule_t *r, char *buf, size_t cap)
{
    switch (r->kind) {
    case LF_RULE_ALL: return "all";
    case LF_RULE_BENEFIT: return "benefit";
    case LF_RULE_COUNT: snprintf(buf, cap, "count:%lld", (long long)r->count); return buf;
    case LF_RULE_FRACTION: snprintf(buf, cap, "fraction:%g", r->fraction); return buf;
    case LF_RULE_GREEDY: return "greedy";
    case LF_RULE_OPTIMAL: return "optimal";
    }
    return "?";
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

static lf_err_t write_model(MPI_Comm comm, const lf__cli_opts_t *o, const lf_model_t *model,
                            const lf_plan_opts_t *popts, int64_t samples, const char *extra_key,
                            const char *extra_value)
{
    char threshold[32], count[32], rule_buf[64], fraction[32];
    snprintf(threshold, sizeof threshold, "%.17g", popts->threshold);
    snprintf(count, sizeof count, "%lld", (long long)samples);
    snprintf(fraction, sizeof fraction, "%.17g", popts->prune_fraction);
    lf_attr_t attrs[] = {
        {"linfold_version", LF_VERSION},
        {"source_model", o->model},
        {"calibration", o->stats ? o->stats : o->data},
        {"calibration_samples", count},
        {"threshold", threshold},
        {"layer_rule", rule_text(&popts->rule, rule_buf, sizeof rule_buf)},
        {"prune_dead", popts->prune_dead ? "true" : "false"},
        {"prune_fraction", fraction},
        {"prune_scope", popts->prune_global ? "global" : "layer"},
        {extra_key, extra_value},
    };
    int n = (int)(sizeof attrs / sizeof *attrs) - (extra_key ? 0 : 1);
    return lf_h5io_write_model(comm, o->out, model, attrs, n);
}

/* Plans, folds, writes and summarises one compression. */
static lf_err_t compress_with(MPI_Comm comm, const lf__cli_opts_t *o, const lf_model_t *m,
                              const lf_stats_t *stats, const lf_plan_opts_t *popts,
                              const char *extra_key, const char *extra_value)
{
    lf_err_t err = LF_OK;
    lf_plan_t *plan = NULL;
    lf_model_t *folded = NULL;
    int *where = NULL;
    LF_CALL(lf_comm_agree(comm, lf_plan_create(m, stats, popts, &plan)));
    LF_CALL(lf_fold_apply(comm, m, plan, &folded, &where));
    LF_CALL(write_model(comm, o, folded, popts, stats->samples, extra_key, extra_value));
    if (lf__cli_rank(comm) == 0 && !o->quiet) {
        print_summary(m, folded, plan, where, stats->samples);
        if (plan->search_nodes)
            printf("layer selection: %s, %lld plans priced\n",
                   popts->rule.kind == LF_RULE_OPTIMAL ? "optimal" : "greedy",
                   (long long)plan->search_nodes);
        printf("wrote %s\n", o->out);
    }
cleanup:
    lf_free(where);
    lf_model_destroy(&folded);
    lf_plan_destroy(&plan);
    return err;
}

/* ---------------------------------------------------------------- searches */

static void print_point_header(bool evaluated)
{
    printf("%-10s %-8s %-6s %-8s %-6s %12s %12s %12s %8s", "threshold", "rule", "dead", "pruned",
           "scope", "params_layer", "params_skip", "params", "ratio");
    if (evaluated)
        printf(" %9s %9s", "accuracy", "agreement");
    printf("\n");
}

static void print_point(const lf_search_point_t *pt, const char *mark)
{
    char rule_buf[64];
    printf("%-10.6g %-8s %-6s %-8g %-6s %12lld %12lld %12lld %8.4f", pt->opts.threshold,
           rule_text(&pt->opts.rule, rule_buf, sizeof rule_buf), pt->opts.prune_dead ? "yes" : "no",
           pt->opts.prune_fraction, pt->opts.prune_global ? "global" : "layer",
           (long long)(pt->params - pt->skip_params),
           (long long)pt->skip_params, (long long)pt->params, pt->ratio);
    if (pt->evaluated)
        printf(" %9.4f %9.4f", pt->accuracy, pt->agreement);
    printf("%s\n", mark);
}

typedef struct {
    const lf_search_point_t *pts;
    int n;
} sweep_table_t;

static lf_err_t write_csv(const char *tmp, const void *ctx)
{
    lf_err_t err = LF_OK;
    const sweep_table_t *t = ctx;
    char rule_buf[64];
    FILE *f = fopen(tmp, "w");
    LF_CHECK(f != NULL, LF_ERR_IO, "%s: cannot create", tmp);
    fprintf(f, "threshold,rule,prune_dead,prune_fraction,params_layers,params_skip,"
               "params_total,ratio,accuracy,top1_agreement,prune_scope\n");
    for (int k = 0; k < t->n; k++) {
        const lf_search_point_t *pt = &t->pts[k];
        char tau[32], share[32];
        shortest(pt->opts.threshold, tau, sizeof tau);
        shortest(pt->opts.prune_fraction, share, sizeof share);
        fprintf(f, "%s,%s,%d,%s,%lld,%lld,%lld,%.17g,", tau,
                rule_text(&pt->opts.rule, rule_buf, sizeof rule_buf), pt->opts.prune_dead, share,
                (long long)(pt->params - pt->skip_params), (long long)pt->skip_params,
                (long long)pt->params, pt->ratio);
        if (pt->evaluated)
            fprintf(f, "%.17g,%.17g,", pt->accuracy, pt->agreement);
        else
            fprintf(f, ",,");
        fprintf(f, "%s\n", pt->opts.prune_global ? "global" : "layer");
    }
    int closed = fclose(f);
    LF_CHECK(closed == 0, LF_ERR_IO, "%s: write failed", tmp);
cleanup:
    return err;
}

static lf_err_t run_sweep(MPI_Comm comm, const lf__cli_opts_t *o, const lf_model_t *m,
                          const lf_stats_t *stats, const lf_plan_opts_t *popts,
                          const lf_search_eval_t *eval)
{
    lf_err_t err = LF_OK;
    lf_search_point_t *pts = NULL;
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)o->n_sweep, sizeof *pts, (void **)&pts)));
    LF_CALL(lf_search_sweep(comm, m, stats, popts, o->sweep, o->n_sweep, eval, pts));
    if (lf__cli_rank(comm) == 0 && !o->quiet) {
        printf("sweep over %d thresholds; original: %lld parameters\n", o->n_sweep,
               (long long)lf_model_params(m));
        print_point_header(eval->x != NULL);
        for (int k = 0; k < o->n_sweep; k++)
            print_point(&pts[k], "");
    }
    if (o->sweep_out) {
        sweep_table_t table = {.pts = pts, .n = o->n_sweep};
        LF_CALL(lf__write_atomic_rank0(comm, o->sweep_out, write_csv, &table));
    }
cleanup:
    lf_free(pts);
    return err;
}

static lf_err_t run_target(MPI_Comm comm, const lf__cli_opts_t *o, const lf_model_t *m,
                           const lf_stats_t *stats, const lf_plan_opts_t *popts)
{
    lf_err_t err = LF_OK;
    lf_search_point_t pt;
    bool found = false;
    LF_CALL(lf_comm_agree(comm, lf_search_target_ratio(m, stats, popts, o->target_ratio, &found,
                                                       &pt)));
    LF_CHECK(found, LF_ERR_ARG,
             "no threshold reaches %g x the original parameters: the smallest plan (threshold "
             "%.6g) has %lld of %lld (%.4f)",
             o->target_ratio, pt.opts.threshold, (long long)pt.params,
             (long long)lf_model_params(m), pt.ratio);
    char tau[32];
    shortest(pt.opts.threshold, tau, sizeof tau);
    if (lf__cli_rank(comm) == 0 && !o->quiet)
        printf("target ratio %g: threshold %s gives %lld parameters (%.4f of the original)\n",
               o->target_ratio, tau, (long long)pt.params, pt.ratio);
    char value[32];
    snprintf(value, sizeof value, "%.17g", o->target_ratio);
    LF_CALL(compress_with(comm, o, m, stats, &pt.opts, "target_ratio", value));
cleanup:
    return err;
}

static int cmp_params(const void *x, const void *y)
{
    const lf_search_point_t *a = x, *b = y;
    if (a->params != b->params)
        return a->params < b->params ? -1 : 1;
    return a->accuracy > b->accuracy ? -1 : (a->accuracy < b->accuracy);
}

static lf_err_t run_budget(MPI_Comm comm, const lf__cli_opts_t *o, const lf_model_t *m,
                           const lf_stats_t *stats, const lf_plan_opts_t *popts,
                           const lf_search_eval_t *eval)
{
    lf_err_t err = LF_OK;
    lf_search_point_t *frontier = NULL, best;
    int n = 0;
    bool met = false;
    double original = 0.0;
    LF_CALL(lf_search_accuracy_budget(comm, m, stats, popts, o->fractions, o->n_fractions,
                                      o->max_drop, eval, &frontier, &n, &best, &met, &original));
    if (lf__cli_rank(comm) == 0 && !o->quiet) {
        qsort(frontier, (size_t)n, sizeof *frontier, cmp_params);
        printf("accuracy budget: original accuracy %.4f, %lld parameters; allowed drop %g\n",
               original, (long long)lf_model_params(m), o->max_drop);
        printf("frontier explored (%d plans evaluated; * within budget):\n", n);
        print_point_header(true);
        for (int k = 0; k < n; k++) {
            bool within = frontier[k].accuracy >= original - o->max_drop - 1e-12;
            print_point(&frontier[k], within ? " *" : "");
        }
    }
    if (met) {
        char tau[32], share[32];
        shortest(best.opts.threshold, tau, sizeof tau);
        shortest(best.opts.prune_fraction, share, sizeof share);
        if (lf__cli_rank(comm) == 0 && !o->quiet)
            printf("status: budget met: %lld parameters (%.4f), accuracy %.4f, at threshold %s, "
                   "dead-neuron pruning %s, importance pruning %s (%s)\n",
                   (long long)best.params, best.ratio, best.accuracy, tau,
                   best.opts.prune_dead ? "on" : "off", share,
                   best.opts.prune_global ? "global" : "per layer");
        LF_CALL(compress_with(comm, o, m, stats, &best.opts, "accuracy_budget", "met"));
    } else {
        if (lf__cli_rank(comm) == 0 && !o->quiet)
            printf("status: budget not met: no compressed model within %g of %.4f; writing the "
                   "original model\n",
                   o->max_drop, original);
        LF_CALL(write_model(comm, o, m, popts, stats->samples, "accuracy_budget", "not met"));
        if (lf__cli_rank(comm) == 0 && !o->quiet)
            printf("wrote %s\n", o->out);
    }
cleanup:
    lf_free(frontier);
    return err;
}

/* ---------------------------------------------------------------- entry */

lf_err_t lf__cmd_compress(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    lf_dataset_t *data = NULL;
    lf_stats_t *stats = NULL;
    lf_search_eval_t eval = {.batch = lf__cli_batch_opts(o, NULL)};
    bool searching = o->target_ratio >= 0 || o->max_drop >= 0;
    lf_plan_opts_t popts = {.threshold = o->threshold, .prune_dead = o->prune_dead,
                            .prune_fraction = o->prune_fraction,
                            .prune_global = o->prune_scope && strcmp(o->prune_scope, "global") == 0};
    /* Searches default to the exact selection: it makes sizes fall monotonically with the
     * threshold, which the target-ratio bisection relies on. */
    const char *rule = o->select ? o->select
                                 : (o->layer_rule ? o->layer_rule : (searching ? "optimal" : "benefit"));
    LF_CALL(lf_plan_parse_rule(rule, &popts.rule));
    /* Importance pruning needs the mean outputs; the accuracy search tries it unless told
     * otherwise. */
    bool need_sums = o->prune_fraction > 0.0 || (o->max_drop >= 0 && o->n_fractions == 0);
    for (int k = 0; o->max_drop >= 0 && k < o->n_fractions; k++)
        need_sums = need_sums || o->fractions[k] > 0.0;

    LF_CALL(lf_h5io_read_model(comm, o->model, &m));
    if (o->stats) {
        LF_CALL(lf_stats_read(comm, o->stats, m, &stats));
        LF_CHECK(!need_sums || stats->with_sums, LF_ERR_ARG,
                 "%s has no output sums, which importance pruning needs: calibrate with "
                 "--output-sums",
                 o->stats);
    } else {
        lf_batch_opts_t bo = lf__cli_batch_opts(o, "calibrate");
        LF_CALL(lf_h5io_dataset_open(comm, o->data, LF_DATA_SAMPLES, &data));
        LF_CALL(lf_stats_collect(comm, m, data, &bo, need_sums, &stats));
    }
    if (o->eval_data)
        LF_CALL(lf_h5io_dataset_open(comm, o->eval_data, LF_DATA_SAMPLES, &eval.x));
    if (o->eval_labels)
        LF_CALL(lf_h5io_dataset_open(comm, o->eval_labels, LF_DATA_LABELS, &eval.labels));

    if (o->sweep_text)
        LF_CALL(run_sweep(comm, o, m, stats, &popts, &eval));
    else if (o->target_ratio >= 0)
        LF_CALL(run_target(comm, o, m, stats, &popts));
    else if (o->max_drop >= 0)
        LF_CALL(run_budget(comm, o, m, stats, &popts, &eval));
    else
        LF_CALL(compress_with(comm, o, m, stats, &popts, NULL, NULL));
cleanup:
    lf_h5io_dataset_close(&eval.labels);
    lf_h5io_dataset_close(&eval.x);
    lf_stats_destroy(&stats);
    lf_h5io_dataset_close(&data);
    lf_model_destroy(&m);
    return err;
}
