/* The JSON run record through jansson; see record.h. */
#include "linfold/record.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "build_info.h"
#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/blas.h"
#include "linfold/comm.h"
#include "linfold/decimal.h"
#include "report_impl.h"

struct lf_record {
    json_t *root;
};

lf_err_t lf_record_create(lf_record_t **out)
{
    lf_err_t err = LF_OK;
    lf_record_t *r = NULL;
    *out = NULL;
    LF_CALL(lf_calloc(1, sizeof *r, (void **)&r));
    r->root = json_object();
    LF_CHECK(r->root != NULL, LF_ERR_NOMEM, "cannot create the run record");
    LF_CALL(lf_record_set_string(r, "schema", LF_RECORD_SCHEMA));
    LF_CALL(lf_record_set_int(r, "schema_version", LF_RECORD_VERSION));
    *out = r;
    r = NULL;
cleanup:
    lf_record_destroy(&r);
    return err;
}

void lf_record_destroy(lf_record_t **r)
{
    if (!r || !*r)
        return;
    json_decref((*r)->root);
    lf_free(*r);
    *r = NULL;
}

/* Sets key (or "object.key") to value, which it takes over (also on failure). */
static lf_err_t set_value(lf_record_t *r, const char *key, json_t *value)
{
    lf_err_t err = LF_OK;
    json_t *obj = r->root;
    const char *dot = strchr(key, '.');
    char head[64];
    LF_CHECK(value != NULL, LF_ERR_NOMEM, "cannot build the run record member %s", key);
    if (dot) {
        size_t len = (size_t)(dot - key);
        LF_ASSERT(len < sizeof head);
        memcpy(head, key, len);
        head[len] = '\0';
        json_t *inner = json_object_get(r->root, head);
        if (!inner) {
            inner = json_object();
            LF_CHECK(inner && json_object_set_new(r->root, head, inner) == 0, LF_ERR_NOMEM,
                     "cannot build the run record member %s", head);
        }
        obj = inner;
        key = dot + 1;
    }
    int bad = json_object_set_new(obj, key, value);
    value = NULL;
    LF_CHECK(bad == 0, LF_ERR_NOMEM, "cannot build the run record member %s", key);
cleanup:
    json_decref(value);
    return err;
}

lf_err_t lf_record_set_string(lf_record_t *r, const char *key, const char *value)
{
    return r ? set_value(r, key, value ? json_string(value) : json_null()) : LF_OK;
}

lf_err_t lf_record_set_int(lf_record_t *r, const char *key, int64_t value)
{
    return r ? set_value(r, key, json_integer(value)) : LF_OK;
}

lf_err_t lf_record_set_real(lf_record_t *r, const char *key, double value)
{
    return r ? set_value(r, key, json_real(value)) : LF_OK;
}

lf_err_t lf_record_set_bool(lf_record_t *r, const char *key, bool value)
{
    return r ? set_value(r, key, json_boolean(value)) : LF_OK;
}

/* A decimal as written ("0.8"), for figures that must read back exactly as given. */
static json_t *decimal_string(lf_decimal_t d)
{
    char buf[48];
    lf_decimal_format(d, buf, sizeof buf);
    return json_string(buf);
}

static const char *rule_name(const lf_layer_rule_t *rule, char *buf, size_t cap)
{
    switch (rule->kind) {
    case LF_RULE_ALL: return "all";
    case LF_RULE_BENEFIT: return "benefit";
    case LF_RULE_GREEDY: return "greedy";
    case LF_RULE_OPTIMAL: return "optimal";
    case LF_RULE_COUNT: snprintf(buf, cap, "count:%lld", (long long)rule->count); return buf;
    case LF_RULE_FRACTION: {
        char f[48];
        lf_decimal_format(rule->fraction, f, sizeof f);
        snprintf(buf, cap, "fraction:%s", f);
        return buf;
    }
    }
    return "?";
}

static json_t *plan_options_object(const lf_plan_opts_t *o)
{
    char rule[64];
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    int bad = json_object_set_new(obj, "threshold", decimal_string(o->threshold));
    bad |=
        json_object_set_new(obj, "layer_rule", json_string(rule_name(&o->rule, rule, sizeof rule)));
    bad |= json_object_set_new(obj, "prune_dead", json_boolean(o->prune_dead));
    bad |= json_object_set_new(obj, "prune_fraction", decimal_string(o->prune_fraction));
    bad |=
        json_object_set_new(obj, "prune_scope", json_string(o->prune_global ? "global" : "layer"));
    bad |= json_object_set_new(obj, "prune_by", json_string(lf_plan_prune_by_name(o->prune_by)));
    if (bad) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Layer i's activation rates in LF_RECORD_RATE_BINS bins. */
static json_t *rate_histogram(const lf_stats_t *s, int i)
{
    int64_t bins[LF_RECORD_RATE_BINS] = {0};
    /* Integer arithmetic: a rate of exactly 0.3 lands in [0.3, 0.4), whatever 0.3 * 10 rounds to. */
    for (int64_t j = 0; s->samples > 0 && j < s->layers[i].n_out; j++) {
        lf_i128 pos = s->layers[i].positive[j];
        bins[(int)(pos * 10 / s->samples)]++;
    }
    json_t *a = json_array();
    for (int b = 0; a && b < LF_RECORD_RATE_BINS; b++)
        if (json_array_append_new(a, json_integer(bins[b])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *layer_object(const lf_model_t *m, const lf_stats_t *s, const lf_plan_t *p, int i)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = json_object_set_new(o, "index", json_integer(i));
    bad |= json_object_set_new(o, "activation", json_string(lf_act_name(m->layers[i].act)));
    bad |= json_object_set_new(o, "neurons", json_integer(m->layers[i].n_out));
    if (p) {
        int64_t folded = 0, pruned = 0;
        for (int64_t j = 0; j < p->n_out[i]; j++) {
            folded += p->fate[i][j] == LF_NEURON_FOLD;
            pruned += p->fate[i][j] == LF_NEURON_PRUNE;
        }
        bad |= json_object_set_new(o, "linear", json_integer(p->n_linear[i]));
        bad |= json_object_set_new(o, "dead", json_integer(p->n_dead[i]));
        bad |= json_object_set_new(o, "folded", json_integer(folded));
        bad |= json_object_set_new(o, "pruned", json_integer(pruned));
        bad |= json_object_set_new(o, "kept", json_integer(p->n_out[i] - folded - pruned));
        bad |= json_object_set_new(o, "layer_folds", json_boolean(p->fold[i]));
    }
    bad |= json_object_set_new(o, "params", json_integer(lf_model_layer_params(m, i)));
    bad |= json_object_set_new(o, "activation_rate_histogram", rate_histogram(s, i));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static lf_err_t set_layers(lf_record_t *r, const lf_model_t *m, const lf_stats_t *s,
                           const lf_plan_t *plan)
{
    lf_err_t err = LF_OK;
    json_t *layers = json_array();
    LF_CHECK(layers != NULL, LF_ERR_NOMEM, "cannot build the run record's layers");
    for (int i = 0; i < m->n_layers; i++)
        LF_CHECK(json_array_append_new(layers, layer_object(m, s, plan, i)) == 0, LF_ERR_NOMEM,
                 "cannot build the run record's layer %d", i);
    LF_CALL(set_value(r, "layers", layers));
    layers = NULL;
cleanup:
    json_decref(layers);
    return err;
}

lf_err_t lf_record_plan(lf_record_t *r, const lf_model_t *m, const lf_stats_t *s,
                        const lf_plan_t *plan, const lf_plan_opts_t *opts, const lf_model_t *folded)
{
    lf_err_t err = LF_OK;
    if (!r)
        return LF_OK;
    json_t *po = plan_options_object(opts);
    if (po && plan->search_nodes)
        json_object_set_new(po, "plans_priced", json_integer(plan->search_nodes));
    LF_CALL(set_value(r, "plan", po));
    LF_CALL(set_layers(r, m, s, plan));
    LF_CALL(lf_record_set_int(r, "params.before", lf_model_params(m)));
    LF_CALL(lf_record_set_int(r, "params.after", lf_model_params(folded)));
    LF_CALL(lf_record_set_int(r, "params.after_pruning", plan->params_after_prune));
    LF_CALL(lf_record_set_int(r, "params.skip_blocks", lf_model_skip_params(folded)));
    LF_CALL(lf_record_set_real(r, "params.ratio",
                               (double)lf_model_params(folded) / (double)lf_model_params(m)));
    LF_CALL(lf_record_set_int(r, "layers_after", folded->n_layers));
cleanup:
    return err;
}

lf_err_t lf_record_stats(lf_record_t *r, const lf_model_t *m, const lf_stats_t *s)
{
    return r ? set_layers(r, m, s, NULL) : LF_OK;
}

lf_err_t lf_record_points(lf_record_t *r, const char *key, const lf_search_point_t *pts, int n)
{
    lf_err_t err = LF_OK;
    if (!r)
        return LF_OK;
    json_t *a = json_array();
    LF_CHECK(a != NULL, LF_ERR_NOMEM, "cannot build the run record's %s", key);
    for (int k = 0; k < n; k++) {
        json_t *o = plan_options_object(&pts[k].opts);
        LF_CHECK(o != NULL, LF_ERR_NOMEM, "cannot build the run record's %s", key);
        int bad = json_array_append_new(a, o);
        bad |= json_object_set_new(o, "params", json_integer(pts[k].params));
        bad |= json_object_set_new(o, "skip_params", json_integer(pts[k].skip_params));
        bad |= json_object_set_new(o, "ratio", json_real(pts[k].ratio));
        if (pts[k].evaluated) {
            bad |= json_object_set_new(o, "accuracy", json_real(pts[k].accuracy));
            bad |= json_object_set_new(o, "top1_agreement", json_real(pts[k].agreement));
        }
        if (pts[k].bounded) { /* an accuracy-budget candidate: its drop, measured and bounded */
            bad |= json_object_set_new(o, "worse", json_integer(pts[k].worse));
            bad |= json_object_set_new(o, "better", json_integer(pts[k].better));
            bad |= json_object_set_new(o, "drop", json_real(pts[k].drop));
            bad |= json_object_set_new(o, "drop_upper_bound", json_real(pts[k].drop_bound));
        }
        LF_CHECK(bad == 0, LF_ERR_NOMEM, "cannot build the run record's %s", key);
    }
    LF_CALL(set_value(r, key, a));
    a = NULL;
cleanup:
    json_decref(a);
    return err;
}

lf_err_t lf_record_eval(lf_record_t *r, const lf_eval_result_t *res)
{
    return r ? set_value(r, "evaluation", lf__report_eval_object(res)) : LF_OK;
}

lf_err_t lf_record_stage_time(MPI_Comm comm, lf_record_t *r, const char *stage, double seconds)
{
    lf_err_t err = LF_OK;
    double lo = seconds, hi = seconds;
    MPI_Allreduce(&seconds, &lo, 1, MPI_DOUBLE, MPI_MIN, comm);
    MPI_Allreduce(&seconds, &hi, 1, MPI_DOUBLE, MPI_MAX, comm);
    if (!r)
        return LF_OK;
    json_t *stages = json_object_get(r->root, "stages");
    if (!stages) {
        LF_CALL(set_value(r, "stages", json_array()));
        stages = json_object_get(r->root, "stages");
    }
    json_t *o = json_pack("{s:s, s:f, s:f}", "stage", stage, "seconds_min", lo, "seconds_max", hi);
    LF_CHECK(o && json_array_append_new(stages, o) == 0, LF_ERR_NOMEM,
             "cannot build the run record's stages");
cleanup:
    return err;
}

/* This process's proportional set size in MiB (-1 where /proc/self/smaps_rollup is missing):
 * shared pages counted once per node in total, which peak RSS cannot show. */
static double pss_mib(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    double kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "Pss:", 4) == 0) {
            kib = strtod(line + 4, NULL);
            break;
        }
    if (f)
        fclose(f);
    return kib < 0 ? -1 : kib / 1024.0;
}

lf_err_t lf_record_finish(MPI_Comm comm, lf_record_t *r, lf_err_t status_err, int status)
{
    lf_err_t err = LF_OK;
    int size = 1, rank = 0;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double mine[2] = {(double)ru.ru_maxrss / 1024.0, pss_mib()}, *all = NULL;
    lf_err_t mem = rank == 0 ? lf_calloc(2 * (size_t)size, sizeof *all, (void **)&all) : LF_OK;
    if (lf_comm_agree(comm, mem) == LF_OK)
        MPI_Gather(mine, 2, MPI_DOUBLE, all, 2, MPI_DOUBLE, 0, comm);
    else if (mem != LF_OK)
        lf_error_clear(); /* the record goes without the memory figures */
    /* The message of the first rank that failed, on rank 0 which writes the record. */
    char msg_buf[1024] = "";
    int mine_first = lf_error_is_local() ? rank : size, first = size;
    MPI_Allreduce(&mine_first, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first < size) {
        if (rank == first)
            snprintf(msg_buf, sizeof msg_buf, "%s", lf_error_message());
        if (lf_comm_bcast_string(comm, msg_buf, (int)sizeof msg_buf, first) != LF_OK)
            lf_error_clear();
    }
    if (!r)
        goto cleanup;
    LF_CALL(lf_record_set_string(r, "linfold_version", LF_VERSION));
    LF_CALL(lf_record_set_string(r, "git_revision", LF_GIT_HASH));
    LF_CALL(lf_record_set_string(r, "blas_kernel", lf_blas_kernel()));
    LF_CALL(lf_record_set_int(r, "ranks", size));
    if (all && rank == 0) {
        json_t *peak = json_array(), *pss = json_array();
        for (int k = 0; peak && pss && k < size; k++) {
            json_array_append_new(peak, json_real(all[2 * k]));
            json_array_append_new(pss,
                                  all[2 * k + 1] >= 0 ? json_real(all[2 * k + 1]) : json_null());
        }
        LF_CALL(set_value(r, "peak_memory_mib", peak));
        LF_CALL(set_value(r, "pss_mib", pss));
    }
    LF_CALL(lf_record_set_int(r, "exit_status", status));
    if (status_err != LF_OK) {
        const char *msg = msg_buf;
        LF_CALL(lf_record_set_string(r, "error.code", lf_err_name(status_err)));
        LF_CALL(
            lf_record_set_string(r, "error.message", msg && *msg ? msg : lf_strerror(status_err)));
    } else {
        LF_CALL(lf_record_set_string(r, "error", NULL));
    }
cleanup:
    lf_free(all);
    return err;
}

static lf_err_t write_json(const char *tmp, const char *path, const void *ctx)
{
    lf_err_t err = LF_OK;
    const lf_record_t *r = ctx;
    int bad = json_dump_file(r->root, tmp,
                             JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    LF_CHECK(bad == 0, LF_ERR_IO, "%s: cannot write the run record (%s)", path,
             errno ? strerror(errno) : "jansson failed");
cleanup:
    return err;
}

lf_err_t lf_record_write(MPI_Comm comm, const lf_record_t *r, const char *path)
{
    if (!r || !path)
        return LF_OK;
    return lf_atomic_write_rank0(comm, path, write_json, r);
}

lf_err_t lf_record_dump(const lf_record_t *r, char **text)
{
    lf_err_t err = LF_OK;
    *text = NULL;
    if (!r)
        return LF_OK;
    *text = json_dumps(r->root, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_REAL_PRECISION(17));
    LF_CHECK(*text != NULL, LF_ERR_NOMEM, "cannot format the run record");
cleanup:
    return err;
}
