/* The effective pipeline: every default filled in, as YAML (--print-config, and the text the
 * pipeline's SHA-256 identity is computed over), and the resolved plan --dry-run prints. */
#include <stdio.h>
#include <string.h>

#include "linfold/decimal.h"
#include "linfold/plan.h"
#include "pipeline_config_impl.h"
#include "pipeline_impl.h"

/* ---------------------------------------------------------------- the effective pipeline */

typedef struct {
    lf_yaml_doc_t *doc;
    bool bad;
} builder_t;

static lf_yaml_node_t *scalar(builder_t *b, const char *text)
{
    lf_yaml_node_t *n = NULL;
    b->bad |= lf_yaml_new_scalar(b->doc, text, false, 0, 0, &n) != LF_OK;
    return n;
}

static lf_yaml_node_t *quoted(builder_t *b, const char *text)
{
    lf_yaml_node_t *n = NULL;
    b->bad |= lf_yaml_new_scalar(b->doc, text, true, 0, 0, &n) != LF_OK;
    return n;
}

static lf_yaml_node_t *map(builder_t *b)
{
    lf_yaml_node_t *n = NULL;
    b->bad |= lf_yaml_new_map(b->doc, 0, 0, &n) != LF_OK;
    return n;
}

static void put(builder_t *b, lf_yaml_node_t *m, const char *key, lf_yaml_node_t *v)
{
    if (m && v)
        b->bad |= lf_yaml_map_set(b->doc, m, key, v) != LF_OK;
    else
        b->bad = true;
}

static void put_dec(builder_t *b, lf_yaml_node_t *m, const char *key, lf_decimal_t d)
{
    char buf[48];
    lf_decimal_format(d, buf, sizeof buf);
    put(b, m, key, scalar(b, buf));
}

static void put_int(builder_t *b, lf_yaml_node_t *m, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    put(b, m, key, scalar(b, buf));
}

static void put_list(builder_t *b, lf_yaml_node_t *m, const char *key, const lf_decimal_t *v, int n)
{
    lf_yaml_node_t *seq = NULL;
    b->bad |= lf_yaml_new_seq(b->doc, 0, 0, &seq) != LF_OK;
    for (int k = 0; seq && k < n; k++) {
        char buf[48];
        lf_decimal_format(v[k], buf, sizeof buf);
        b->bad |= lf_yaml_seq_append(b->doc, seq, scalar(b, buf)) != LF_OK;
    }
    put(b, m, key, seq);
}

static void put_rule(builder_t *b, lf_yaml_node_t *m, const lf_plan_opts_t *po)
{
    char buf[64];
    bool select = po->rule.kind == LF_RULE_GREEDY || po->rule.kind == LF_RULE_OPTIMAL;
    put(b, m, select ? "select" : "layer-rule",
        scalar(b, lf__rule_text(&po->rule, buf, sizeof buf)));
}

static void put_merge(builder_t *b, lf_yaml_node_t *m, const lf_pipeline_t *p)
{
    put(b, m, "merge", scalar(b, lf_merge_path_name(p->merge)));
    put_int(b, m, "dist-threshold", p->dist_threshold);
    put_int(b, m, "dist-block", p->dist_block);
    put(b, m, "merge-precision", scalar(b, p->merge_single ? "single" : "double"));
}

static void put_path(builder_t *b, lf_pipeline_config_t *c, lf_yaml_node_t *m, const char *key,
                     field_t f)
{
    if (c->written[f])
        put(b, m, key, scalar(b, c->written[f]));
}

lf_err_t lf__cfg_build_effective(lf_pipeline_config_t *c)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = &c->p;
    builder_t b = {0};
    lf_plan_opts_t po;
    bool sums = false;
    LF_CALL(lf__run_plan_options(p, &po, &sums));
    LF_CALL(lf_yaml_doc_create(c->path, &b.doc));
    lf_yaml_node_t *root = map(&b);
    put(&b, root, "version", scalar(&b, "1"));
    if (c->name_given)
        put(&b, root, "name", quoted(&b, p->name));
    put_path(&b, c, root, "model", F_MODEL);
    put_path(&b, c, root, "calibration", F_CALIBRATION);
    put_path(&b, c, root, "statistics", F_STATISTICS);
    if (c->written[F_EVAL_DATA]) {
        lf_yaml_node_t *e = map(&b);
        put_path(&b, c, e, "data", F_EVAL_DATA);
        put_path(&b, c, e, "labels", F_EVAL_LABELS);
        put(&b, root, "evaluation", e);
    }
    put_path(&b, c, root, "reference", F_REFERENCE);
    lf_yaml_node_t *stages = NULL;
    b.bad |= lf_yaml_new_seq(b.doc, 0, 0, &stages) != LF_OK;
    for (int k = 0; k < p->n_stages; k++) {
        lf_yaml_node_t *item = map(&b), *o = map(&b);
        switch (p->stages[k]) {
        case LF_STAGE_CALIBRATE:
            put_int(&b, o, "batch", p->calibrate_batch);
            put(&b, o, "output-sums", scalar(&b, p->output_sums ? "true" : "false"));
            break;
        case LF_STAGE_PRUNE:
            put(&b, o, "dead", scalar(&b, p->prune_dead ? "true" : "false"));
            put_dec(&b, o, "fraction", p->prune_fraction);
            put(&b, o, "scope", scalar(&b, p->prune_global ? "global" : "layer"));
            put(&b, o, "by", scalar(&b, lf_plan_prune_by_name(p->prune_by)));
            break;
        case LF_STAGE_FOLD:
            put_dec(&b, o, "threshold", p->threshold);
            put_rule(&b, o, &po);
            put_merge(&b, o, p);
            break;
        case LF_STAGE_SEARCH:
            if (p->n_sweep)
                put_list(&b, o, "sweep", p->sweep, p->n_sweep);
            if (p->target)
                put_dec(&b, o, "target-ratio", p->target_ratio);
            if (p->budget) {
                put_dec(&b, o, "max-accuracy-drop", p->max_drop);
                put_dec(&b, o, "confidence", p->confidence);
            }
            if (p->n_fractions)
                put_list(&b, o, "search-fractions", p->fractions, p->n_fractions);
            put_path(&b, c, o, "sweep-out", F_SWEEP_OUT);
            put_rule(&b, o, &po);
            put_int(&b, o, "batch", p->search_batch);
            put_merge(&b, o, p);
            break;
        case LF_STAGE_RECONSTRUCT:
            if (p->reconstruct_rows)
                put_int(&b, o, "rows", p->reconstruct_rows);
            break;
        case LF_STAGE_EVALUATE: put_int(&b, o, "batch", p->evaluate_batch); break;
        case LF_STAGE_PREDICT: put_int(&b, o, "batch", p->predict_batch); break;
        case LF_STAGE__COUNT: break;
        }
        put(&b, item, lf_stage_name(p->stages[k]), o);
        b.bad |= !stages || lf_yaml_seq_append(b.doc, stages, item) != LF_OK;
    }
    put(&b, root, "stages", stages);
    lf_yaml_node_t *out = map(&b);
    put_path(&b, c, out, "model", F_OUT_MODEL);
    put_path(&b, c, out, "report", F_OUT_REPORT);
    put_path(&b, c, out, "statistics", F_OUT_STATS);
    put_path(&b, c, out, "predictions", F_OUT_PREDICTIONS);
    if (out && out->n)
        put(&b, root, "output", out);
    if (p->checkpoint_path || p->checkpoint_batches || p->checkpoint_seconds > 0) {
        lf_yaml_node_t *ck = map(&b);
        if (p->checkpoint_batches)
            put_int(&b, ck, "every-batches", p->checkpoint_batches);
        if (p->checkpoint_seconds > 0) {
            char buf[48];
            snprintf(buf, sizeof buf, "%.17g", p->checkpoint_seconds);
            put(&b, ck, "every-seconds", scalar(&b, buf));
        }
        put_path(&b, c, ck, "path", F_CHECKPOINT);
        put(&b, root, "checkpoint", ck);
    }
    LF_CHECK(!b.bad, LF_ERR_NOMEM, "cannot build the effective pipeline of %s", c->path);
    LF_CALL(lf_yaml_set_root(b.doc, root));
    LF_CALL(lf_yaml_emit(root, &c->effective));
    LF_CALL(lf_hash_bytes(c->effective, strlen(c->effective), c->identity));
    c->p.identity = c->identity;
    LF_CALL(lf_hash_bytes(c->text, strlen(c->text), c->file_sha256));
    c->p.file_sha256 = c->file_sha256;
cleanup:
    lf_yaml_destroy(&b.doc);
    return err;
}

void lf_pipeline_config_print_plan(const lf_pipeline_config_t *c, FILE *f)
{
    const lf_pipeline_t *p = &c->p;
    char a[48], b[48], rule[64];
    lf_plan_opts_t po;
    bool sums = false;
    lf__run_plan_options(p, &po, &sums);
    fprintf(f, "pipeline %s (sha256 %s): valid; nothing was run\n", c->path, c->identity);
    fprintf(f, "model        %s", p->model);
    if (c->checked)
        fprintf(f, "  (%d layers, %lld inputs, %lld outputs, %lld parameters)", c->model_layers,
                (long long)c->model_in, (long long)c->model_out, (long long)c->model_params);
    fprintf(f, "\n");
    if (p->calibration)
        fprintf(f, "calibration  %s  (%lld rows)\n", p->calibration, (long long)c->calib_rows);
    if (p->statistics)
        fprintf(f, "statistics   %s\n", p->statistics);
    if (p->eval_data)
        fprintf(f, "evaluation   %s  (%lld rows)%s%s\n", p->eval_data, (long long)c->eval_rows,
                p->eval_labels ? ", labels " : "", p->eval_labels ? p->eval_labels : "");
    if (p->reference)
        fprintf(f, "reference    %s\n", p->reference);
    fprintf(f, "stages:\n");
    for (int k = 0; k < p->n_stages; k++) {
        fprintf(f, "  %d. %-12s", k + 1, lf_stage_name(p->stages[k]));
        switch (p->stages[k]) {
        case LF_STAGE_CALIBRATE:
            fprintf(f, "batch %lld rows, output sums %s%s\n", (long long)p->calibrate_batch,
                    sums ? "yes" : "no",
                    sums && !p->output_sums ? " (importance pruning needs them)" : "");
            break;
        case LF_STAGE_PRUNE:
            lf_decimal_format(p->prune_fraction, a, sizeof a);
            fprintf(f, "dead neurons %s, importance share %s (%s, by %s)\n",
                    p->prune_dead ? "removed" : "kept", a, p->prune_global ? "global" : "per layer",
                    lf_plan_prune_by_name(p->prune_by));
            break;
        case LF_STAGE_FOLD:
            lf_decimal_format(p->threshold, a, sizeof a);
            fprintf(f, "threshold %s, layers %s\n", a, lf__rule_text(&po.rule, rule, sizeof rule));
            break;
        case LF_STAGE_SEARCH:
            if (p->n_sweep)
                fprintf(f, "sweep over %d thresholds", p->n_sweep);
            else if (p->target)
                fprintf(f, "largest threshold within %s x the parameters",
                        (lf_decimal_format(p->target_ratio, a, sizeof a), a));
            else if (p->confidence.m == 0)
                fprintf(f, "smallest model within an accuracy drop of %s (point estimate)",
                        (lf_decimal_format(p->max_drop, b, sizeof b), b));
            else
                fprintf(f,
                        "smallest model within an accuracy drop of %s (upper bound at "
                        "confidence %s)",
                        (lf_decimal_format(p->max_drop, b, sizeof b), b),
                        (lf_decimal_format(p->confidence, a, sizeof a), a));
            fprintf(f, ", layers %s, batch %lld rows\n", lf__rule_text(&po.rule, rule, sizeof rule),
                    (long long)p->search_batch);
            break;
        case LF_STAGE_RECONSTRUCT:
            if (p->reconstruct_rows)
                fprintf(f,
                        "refit the layers whose inputs changed on about %lld calibration rows "
                        "spread over the data (ridge least squares, lambda chosen on held-out "
                        "rows)\n",
                        (long long)p->reconstruct_rows);
            else
                fprintf(f, "refit the layers whose inputs changed on the calibration rows (ridge "
                           "least squares, lambda chosen on held-out rows)\n");
            break;
        case LF_STAGE_EVALUATE:
            fprintf(f, "batch %lld rows, %s%s\n", (long long)p->evaluate_batch,
                    p->eval_labels ? "accuracy" : "outputs",
                    p->reference ? " against the reference"
                    : (lf_pipeline_has(p, LF_STAGE_FOLD) || lf_pipeline_has(p, LF_STAGE_SEARCH))
                        ? " against the original model"
                        : "");
            break;
        case LF_STAGE_PREDICT:
            fprintf(f, "batch %lld rows, outputs to %s\n", (long long)p->predict_batch,
                    p->predict_out);
            break;
        case LF_STAGE__COUNT: break;
        }
    }
    for (int k = 0; k < c->n_mkdirs; k++)
        fprintf(f, "directory %s will be created\n", c->mkdirs[k]);
    const char *outs[] = {p->out_model, p->out_report, p->out_stats, p->sweep_out,
                          p->checkpoint_path};
    const char *names[] = {"model", "report", "statistics", "sweep table", "checkpoint"};
    for (int k = 0; k < 5; k++)
        if (outs[k])
            fprintf(f, "output %-11s %s\n", names[k], outs[k]);
}
