/* linfold compress: calibrate (or read statistics), plan, fold, write, report. */
#include "build_info.h"
#include <stdio.h>
#include <string.h>

#include "cli_impl.h"
#include "linfold/comm.h"
#include "linfold/eval.h"
#include "linfold/fold.h"
#include "linfold/h5io.h"
#include "linfold/log.h"
#include "linfold/model.h"
#include "linfold/plan.h"
#include "linfold/stats.h"
#include "linfold/alloc.h"

/* ---------------------------------------------------------------- compress */

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
    printf("parameters: %lld -> %lld (%.2f%% of the original; %lld in skip blocks)\n",
           (long long)before, (long long)total, 100.0 * (double)total / (double)before,
           (long long)lf_model_skip_params(folded));
}

lf_err_t lf__cmd_compress(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL, *folded = NULL;
    lf_dataset_t *data = NULL;
    lf_stats_t *stats = NULL;
    lf_plan_t *plan = NULL;
    int *where = NULL;
    lf_plan_opts_t popts = {.threshold = o->threshold, .prune_dead = o->prune_dead};
    LF_CALL(lf_plan_parse_rule(o->layer_rule, &popts.rule));
    LF_CALL(lf_h5io_read_model(comm, o->model, &m));
    if (o->stats) {
        LF_CALL(lf_stats_read(comm, o->stats, m, &stats));
    } else {
        lf_batch_opts_t bo = lf__cli_batch_opts(o, "calibrate");
        LF_CALL(lf_h5io_dataset_open(comm, o->data, LF_DATA_SAMPLES, &data));
        LF_CALL(lf_stats_collect(comm, m, data, &bo, false, &stats));
    }
    LF_CALL(lf_plan_create(m, stats, &popts, &plan));
    LF_CALL(lf_fold_apply(comm, m, plan, &folded, &where));

    char threshold[32], samples[32], rule_buf[64], prune[8];
    snprintf(threshold, sizeof threshold, "%.17g", o->threshold);
    snprintf(samples, sizeof samples, "%lld", (long long)stats->samples);
    snprintf(prune, sizeof prune, "%s", o->prune_dead ? "true" : "false");
    const lf_attr_t attrs[] = {
        {"linfold_version", LF_VERSION},
        {"source_model", o->model},
        {"calibration", o->stats ? o->stats : o->data},
        {"calibration_samples", samples},
        {"threshold", threshold},
        {"layer_rule", rule_text(&popts.rule, rule_buf, sizeof rule_buf)},
        {"prune_dead", prune},
    };
    LF_CALL(lf_h5io_write_model(comm, o->out, folded, attrs, (int)(sizeof attrs / sizeof *attrs)));
    if (lf__cli_rank(comm) == 0 && !o->quiet) {
        print_summary(m, folded, plan, where, stats->samples);
        printf("wrote %s\n", o->out);
    }
cleanup:
    lf_free(where);
    lf_model_destroy(&folded);
    lf_plan_destroy(&plan);
    lf_stats_destroy(&stats);
    lf_h5io_dataset_close(&data);
    lf_model_destroy(&m);
    return err;
}

