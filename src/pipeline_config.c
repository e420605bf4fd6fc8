/* Pipeline files into pipelines; see pipeline_config.h and docs/pipeline.md for the schema.
 *
 * Validation collects every problem with the position of the node it concerns, and nothing runs
 * unless there is none. The file's tree is checked against tables of the keys each section and
 * stage takes (named like the command-line flags without their dashes), values against the same
 * intervals the flags use (decimal.h), then the pipeline as a whole (lf_pipeline_check), then
 * the files it names (lf_pipeline_config_check_files). */
#include "linfold/pipeline_config.h"

#include <errno.h>
#include <fnmatch.h>
#include <glob.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"
#include "linfold/decimal.h"
#include "linfold/h5io.h"
#include "linfold/hash.h"
#include "linfold/model.h"
#include "linfold/plan.h"
#include "linfold/stats.h"
#include "linfold/yaml_doc.h"
#include "pipeline_impl.h"

enum { MAX_DIAGS = 200, MAX_STRINGS = 64 };

/* The nodes (or --set arguments) each path came from, for messages about the files. */
typedef enum {
    F_MODEL,
    F_CALIBRATION,
    F_STATISTICS,
    F_EVAL_DATA,
    F_EVAL_LABELS,
    F_REFERENCE,
    F_OUT_MODEL,
    F_OUT_REPORT,
    F_OUT_STATS,
    F_OUT_PREDICTIONS,
    F_SWEEP_OUT,
    F_CHECKPOINT,
    F__COUNT
} field_t;

static const char *const field_names[F__COUNT] = {"model",
                                                  "calibration",
                                                  "statistics",
                                                  "evaluation.data",
                                                  "evaluation.labels",
                                                  "reference",
                                                  "output.model",
                                                  "output.report",
                                                  "output.statistics",
                                                  "output.predictions",
                                                  "search.sweep-out",
                                                  "checkpoint.path"};

struct lf_pipeline_config {
    lf_pipeline_t p;
    char *path;            /* the pipeline file as given */
    char dir[LF_PATH_MAX]; /* its directory */
    char *text;            /* its bytes */
    lf_yaml_doc_t *doc;
    const char *const *sets;
    int n_sets;
    const lf_yaml_node_t *where[F__COUNT]; /* the node each path came from */
    const char *written[F__COUNT];         /* each path as written */
    const lf_yaml_node_t *stages_node, *stage_node[LF_PIPELINE_STAGES_MAX];
    char *strings[MAX_STRINGS]; /* resolved paths, owned */
    int n_strings;
    char *diags[MAX_DIAGS];
    long diag_pos[MAX_DIAGS]; /* line * 2^20 + column: problems print in reading order */
    int n_diags, dropped;
    char *effective;
    char identity[LF_SHA256_HEX];
    /* Shapes found by check_files, for --dry-run. */
    bool checked, name_given;
    bool keep_problems; /* a registry member: problems are kept, not printed */
    /* Registries (models: ...): the members, and what a member is built from. */
    bool registry;
    lf_registry_model_t *models;
    int n_models;
    int64_t groups; /* 0: auto */
    const char *summary, *state;
    const char *member_written; /* a member: its model as written (relative to dir) */
    const char *member_stem;
    char *mkdirs[F__COUNT]; /* output directories to create before the run */
    int n_mkdirs;
    int64_t model_in, model_out, model_params, calib_rows, eval_rows;
    int model_layers;
};

/* ---------------------------------------------------------------- problems */

static void diag(lf_pipeline_config_t *c, const lf_yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records "FILE:LINE:COLUMN: message", or "--set ARG: message" for a node from an override
 * (line 0, column k + 1 for the k-th --set). */
static void diag(lf_pipeline_config_t *c, const lf_yaml_node_t *node, const char *fmt, ...)
{
    char msg[1024], line[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (node && node->line == 0 && node->column >= 1 && node->column <= c->n_sets)
        snprintf(line, sizeof line, "--set %s: %s", c->sets[node->column - 1], msg);
    else if (node)
        snprintf(line, sizeof line, "%s:%d:%d: %s", c->path, node->line, node->column, msg);
    else
        snprintf(line, sizeof line, "%s: %s", c->path, msg);
    if (c->n_diags >= MAX_DIAGS) {
        c->dropped++;
        return;
    }
    c->diags[c->n_diags] = strdup(line);
    c->diag_pos[c->n_diags] = node ? (long)node->line * (1L << 20) + node->column : 0;
    if (c->diags[c->n_diags])
        c->n_diags++;
}

/* A problem whose text already says where it is. */
static void raw_problem(lf_pipeline_config_t *c, const char *text)
{
    if (c->n_diags < MAX_DIAGS && (c->diags[c->n_diags] = strdup(text)) != NULL)
        c->diag_pos[c->n_diags++] = 0;
}

/* The message recorded by a failed call, as a problem at node; the record is cleared. */
static void diag_error(lf_pipeline_config_t *c, const lf_yaml_node_t *node, lf_err_t e)
{
    const char *msg = lf_error_message();
    /* Messages of the flag parsers name the flag ("--select"); here the key has no dashes. */
    if (msg && msg[0] == '-' && msg[1] == '-')
        msg += 2;
    diag(c, node, "%s", msg && *msg ? msg : lf_strerror(e));
    lf_error_clear();
}

/* Prints every problem on rank 0 and returns LF_ERR_USAGE when there was one. */
static lf_err_t report_diags(MPI_Comm comm, lf_pipeline_config_t *c, const char *what)
{
    lf_err_t err = LF_OK;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    if (c->n_diags == 0)
        return LF_OK;
    /* Stable insertion sort: overrides (line 0) first, in their order, then the file's lines. */
    for (int k = 1; k < c->n_diags; k++)
        for (int j = k; j > 0 && c->diag_pos[j - 1] > c->diag_pos[j]; j--) {
            long t = c->diag_pos[j];
            c->diag_pos[j] = c->diag_pos[j - 1];
            c->diag_pos[j - 1] = t;
            char *d = c->diags[j];
            c->diags[j] = c->diags[j - 1];
            c->diags[j - 1] = d;
        }
    if (rank == 0 && !c->keep_problems) {
        for (int k = 0; k < c->n_diags; k++)
            fprintf(stderr, "%s\n", c->diags[k]);
        if (c->dropped)
            fprintf(stderr, "%s: %d more problems not shown\n", c->path, c->dropped);
        fflush(stderr);
    }
    LF_FAIL(LF_ERR_USAGE, "%s: %d problem%s %s; nothing was run or written", c->path,
            c->n_diags + c->dropped, c->n_diags + c->dropped == 1 ? "" : "s", what);
cleanup:
    return err;
}

/* ---------------------------------------------------------------- paths */

static const char *keep(lf_pipeline_config_t *c, char *s)
{
    if (!s || c->n_strings >= MAX_STRINGS) {
        free(s);
        return NULL;
    }
    c->strings[c->n_strings++] = s;
    return s;
}

/* "a/./b/../c" into "a/c"; ".." that leaves a relative path's start is kept. */
static void normalize(const char *in, char *out, size_t cap)
{
    const char *parts[512];
    size_t lens[512];
    int n = 0;
    bool absolute = in[0] == '/';
    for (const char *p = in; *p;) {
        while (*p == '/')
            p++;
        size_t len = strcspn(p, "/");
        if (len == 0)
            break;
        if (len == 1 && p[0] == '.') {
        } else if (len == 2 && p[0] == '.' && p[1] == '.' && n > 0 &&
                   !(lens[n - 1] == 2 && strncmp(parts[n - 1], "..", 2) == 0)) {
            n--;
        } else if (!(len == 2 && p[0] == '.' && p[1] == '.' && absolute) && n < 512) {
            parts[n] = p;
            lens[n++] = len;
        }
        p += len;
    }
    size_t o = 0;
    out[0] = '\0';
    if (absolute && o + 1 < cap)
        out[o++] = '/';
    for (int k = 0; k < n && o + lens[k] + 2 < cap; k++) {
        if (k > 0)
            out[o++] = '/';
        memcpy(out + o, parts[k], lens[k]);
        o += lens[k];
    }
    if (o == 0 && o + 1 < cap)
        out[o++] = '.';
    out[o] = '\0';
}

/* Whether two spellings name the same file, or (for files not yet there) the same directory. */
static bool same_place(const char *a, const char *b)
{
    struct stat sa, sb;
    bool ha = stat(a, &sa) == 0, hb = stat(b, &sb) == 0;
    if (ha || hb)
        return ha && hb && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char da[LF_PATH_MAX], db[LF_PATH_MAX];
    snprintf(da, sizeof da, "%s", a);
    snprintf(db, sizeof db, "%s", b);
    char *sa_ = strrchr(da, '/'), *sb_ = strrchr(db, '/');
    if (!sa_ || !sb_)
        return false;
    *sa_ = '\0';
    *sb_ = '\0';
    ha = stat(da[0] ? da : "/", &sa) == 0;
    hb = stat(db[0] ? db : "/", &sb) == 0;
    return ha && hb && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* A path as written, relative to the pipeline file's directory. The lexically shortest spelling
 * is used when it names the same file (so records and model attributes read like the paths a
 * user types), the plain join otherwise (a ".." after a symbolic link). */
static const char *resolve(lf_pipeline_config_t *c, const char *written)
{
    char joined[LF_PATH_MAX], norm[LF_PATH_MAX];
    int w = written[0] == '/' ? snprintf(joined, sizeof joined, "%s", written)
                              : snprintf(joined, sizeof joined, "%s/%s", c->dir, written);
    if (w < 0 || (size_t)w >= sizeof joined)
        return NULL;
    normalize(joined, norm, sizeof norm);
    /* Dropping "." and doubled slashes never changes the file named; dropping "x/.." can (x a
     * symbolic link), so then both spellings must name the same file. */
    bool parent = strstr(joined, "/../") || strncmp(joined, "../", 3) == 0 ||
                  (strlen(joined) >= 3 && strcmp(joined + strlen(joined) - 3, "/..") == 0);
    return keep(c, strdup(!parent || same_place(joined, norm) ? norm : joined));
}

/* "FILE.h5:/x" with FILE resolved. */
static const char *resolve_spec(lf_pipeline_config_t *c, const lf_yaml_node_t *node,
                                const char *written)
{
    char file[LF_PATH_MAX], obj[1024], out[LF_PATH_MAX + 1024];
    lf_err_t e = lf_h5io_split_spec(written, file, sizeof file, obj, sizeof obj);
    if (e != LF_OK) {
        diag_error(c, node, e);
        return NULL;
    }
    const char *f = resolve(c, file);
    if (!f) {
        diag(c, node, "%s: the path is too long", file);
        return NULL;
    }
    snprintf(out, sizeof out, "%s:%s", f, obj);
    return keep(c, strdup(out));
}

/* ---------------------------------------------------------------- values */

static bool is_null(const lf_yaml_node_t *n)
{
    return n->kind == LF_YAML_SCALAR && !n->quoted &&
           (n->text[0] == '\0' || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0);
}

static const char *kind_name(const lf_yaml_node_t *n) { return lf_yaml_kind_name(n->kind); }

static bool get_string(lf_pipeline_config_t *c, const char *key, const lf_yaml_node_t *n,
                       const char **out)
{
    if (n->kind != LF_YAML_SCALAR || is_null(n)) {
        diag(c, n, "%s must be a non-empty string, not %s", key,
             n->kind == LF_YAML_SCALAR ? "empty" : kind_name(n));
        return false;
    }
    *out = n->text;
    return true;
}

static bool get_bool(lf_pipeline_config_t *c, const char *key, const lf_yaml_node_t *n, bool *out)
{
    if (n->kind == LF_YAML_SCALAR && !n->quoted &&
        (strcmp(n->text, "true") == 0 || strcmp(n->text, "false") == 0)) {
        *out = n->text[0] == 't';
        return true;
    }
    diag(c, n, "%s must be true or false, not %s%s%s", key, n->kind == LF_YAML_SCALAR ? "'" : "a ",
         n->kind == LF_YAML_SCALAR ? n->text : kind_name(n), n->kind == LF_YAML_SCALAR ? "'" : "");
    return false;
}

static bool get_count(lf_pipeline_config_t *c, const char *key, const lf_yaml_node_t *n,
                      int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = n->kind == LF_YAML_SCALAR && !n->quoted ? strtoll(n->text, &end, 10) : 0;
    if (n->kind != LF_YAML_SCALAR || n->quoted || !n->text[0] || *end || errno || v < 1) {
        diag(c, n, "%s must be a whole number >= 1, not %s%s%s", key,
             n->kind == LF_YAML_SCALAR ? "'" : "a ",
             n->kind == LF_YAML_SCALAR ? n->text : kind_name(n),
             n->kind == LF_YAML_SCALAR ? "'" : "");
        return false;
    }
    *out = v;
    return true;
}

static bool parse_decimal(const lf_yaml_node_t *n, const char *text, lf_decimal_t *out)
{
    if (n->kind != LF_YAML_SCALAR || n->quoted)
        return false;
    bool ok = lf_decimal_parse(text, out) == LF_OK;
    lf_error_clear();
    return ok;
}

static bool get_decimal(lf_pipeline_config_t *c, const char *key, const lf_yaml_node_t *n,
                        const lf_decimal_range_t *range, lf_decimal_t *out)
{
    lf_decimal_t v;
    if (!parse_decimal(n, n->kind == LF_YAML_SCALAR ? n->text : "", &v)) {
        bool negative =
            n->kind == LF_YAML_SCALAR && n->text[0] == '-' && parse_decimal(n, n->text + 1, &v);
        if (negative)
            diag(c, n, "%s %s is outside %s", key, n->text, range->text);
        else
            diag(c, n, "%s must be a number in %s, not %s%s%s", key, range->text,
                 n->kind == LF_YAML_SCALAR ? "'" : "a ",
                 n->kind == LF_YAML_SCALAR ? n->text : kind_name(n),
                 n->kind == LF_YAML_SCALAR ? "'" : "");
        return false;
    }
    if (!lf_decimal_in_range(range, v)) {
        diag(c, n, "%s %s is outside %s", key, n->text, range->text);
        return false;
    }
    *out = v;
    return true;
}

/* A list of numbers: a sequence, or one scalar "0.9,0.95,1" as on the command line. */
static bool get_list(lf_pipeline_config_t *c, const char *key, const lf_yaml_node_t *n,
                     const lf_decimal_range_t *range, lf_decimal_t *values, int *count)
{
    *count = 0;
    if (n->kind == LF_YAML_SEQ) {
        bool ok = n->n > 0;
        if (!ok)
            diag(c, n, "%s needs at least one value", key);
        for (int k = 0; k < n->n; k++) {
            if (*count >= LF_PIPELINE_LIST_MAX) {
                diag(c, n->items[k], "%s has more than %d values", key, LF_PIPELINE_LIST_MAX);
                return false;
            }
            ok = get_decimal(c, key, n->items[k], range, &values[(*count)++]) && ok;
        }
        return ok;
    }
    if (n->kind != LF_YAML_SCALAR || n->quoted || !n->text[0]) {
        diag(c, n, "%s must be a list of numbers in %s", key, range->text);
        return false;
    }
    const char *p = n->text;
    while (*p) {
        size_t len = strcspn(p, ",");
        char item[64];
        lf_decimal_t v;
        if (len == 0 || len >= sizeof item || *count >= LF_PIPELINE_LIST_MAX) {
            diag(c, n, "%s: '%s' is not a comma-separated list of at most %d numbers", key, n->text,
                 LF_PIPELINE_LIST_MAX);
            return false;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        while (len > 0 && item[0] == ' ')
            memmove(item, item + 1, len--);
        if (!parse_decimal(n, item, &v) || !lf_decimal_in_range(range, v)) {
            diag(c, n, "%s: '%s' is not a number in %s", key, item, range->text);
            return false;
        }
        values[(*count)++] = v;
        p += strcspn(p, ",");
        if (*p == ',')
            p++;
    }
    return true;
}

/* ---------------------------------------------------------------- keys */

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    int d[41][41];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

/* Reports every key of map that allowed (NULL-terminated) does not list, with a did-you-mean;
 * returns whether all were known. */
static bool check_keys(lf_pipeline_config_t *c, const lf_yaml_node_t *map,
                       const char *const *allowed, const char *where)
{
    bool ok = true;
    for (int k = 0; k < map->n; k++) {
        const char *key = map->keys[k]->text;
        int best = 99;
        const char *guess = NULL;
        bool known = false;
        for (const char *const *a = allowed; *a; a++) {
            known = known || strcmp(*a, key) == 0;
            int d = edit_distance(key, *a);
            if (d < best) {
                best = d;
                guess = *a;
            }
        }
        if (known)
            continue;
        ok = false;
        char list[512] = "";
        for (const char *const *a = allowed; *a; a++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                     a == allowed ? "" : ", ", *a);
        size_t len = strlen(key);
        if (guess && (best <= 2 || (size_t)best * 3 <= len))
            diag(c, map->keys[k], "unknown key '%s' in %s (did you mean '%s'?)", key, where, guess);
        else
            diag(c, map->keys[k], "unknown key '%s' in %s (expected %s)", key, where, list);
    }
    return ok;
}

/* The options of a stage (a mapping, or nothing: `- evaluate`, `- evaluate:`, `- evaluate: {}`).
 */
static const lf_yaml_node_t *stage_options(lf_pipeline_config_t *c, const char *name,
                                           const lf_yaml_node_t *v)
{
    if (!v || v->kind == LF_YAML_MAP)
        return v;
    if (!is_null(v))
        diag(c, v, "the options of stage %s must be a mapping ({key: value, ...}), not %s", name,
             v->kind == LF_YAML_SCALAR ? "a scalar" : kind_name(v));
    return NULL;
}

/* layer-rule and select, in fold and search. */
static void parse_rule(lf_pipeline_config_t *c, const lf_yaml_node_t *o)
{
    lf_pipeline_t *p = &c->p;
    const lf_yaml_node_t *rule = lf_yaml_get(o, "layer-rule"), *sel = lf_yaml_get(o, "select");
    const char *text = NULL;
    if (rule && sel) {
        diag(c, sel, "layer-rule and select exclude each other");
        return;
    }
    if (rule && get_string(c, "layer-rule", rule, &text)) {
        lf_err_t e = lf_plan_parse_layer_rule(text, &p->rule);
        if (e != LF_OK)
            diag_error(c, rule, e);
        p->rule_given = e == LF_OK;
    }
    if (sel && get_string(c, "select", sel, &text)) {
        lf_err_t e = lf_plan_parse_select(text, &p->rule);
        if (e != LF_OK)
            diag_error(c, sel, e);
        p->rule_given = e == LF_OK;
    }
}

static const char *path_of(lf_pipeline_config_t *c, field_t f, const lf_yaml_node_t *n, bool spec)
{
    const char *text = NULL;
    if (!get_string(c, field_names[f], n, &text))
        return NULL;
    c->where[f] = n;
    c->written[f] = text;
    const char *path = spec ? resolve_spec(c, n, text) : resolve(c, text);
    if (!path && !spec)
        diag(c, n, "%s: the path is too long", field_names[f]);
    return path;
}

static void parse_stage(lf_pipeline_config_t *c, lf_stage_t s, const lf_yaml_node_t *o)
{
    lf_pipeline_t *p = &c->p;
    const lf_yaml_node_t *v;
    static const char *const calibrate_keys[] = {"batch", "output-sums", NULL};
    static const char *const prune_keys[] = {"dead",           "fraction",    "scope", "prune-dead",
                                             "prune-fraction", "prune-scope", NULL};
    static const char *const fold_keys[] = {"threshold", "layer-rule", "select", NULL};
    static const char *const search_keys[] = {"sweep",
                                              "sweep-out",
                                              "target-ratio",
                                              "max-accuracy-drop",
                                              "search-fractions",
                                              "batch",
                                              "layer-rule",
                                              "select",
                                              NULL};
    static const char *const batch_keys[] = {"batch", NULL};
    static const char *const *const keys[LF_STAGE__COUNT] = {
        calibrate_keys, prune_keys, fold_keys, search_keys, batch_keys, batch_keys};
    char where[64];
    snprintf(where, sizeof where, "stage %s", lf_stage_name(s));
    if (!o)
        return;
    check_keys(c, o, keys[s], where);
    switch (s) {
    case LF_STAGE_CALIBRATE:
        if ((v = lf_yaml_get(o, "batch")))
            get_count(c, "batch", v, &p->calibrate_batch);
        if ((v = lf_yaml_get(o, "output-sums")))
            get_bool(c, "output-sums", v, &p->output_sums);
        break;
    case LF_STAGE_PRUNE: {
        static const char *const pairs[3][2] = {
            {"dead", "prune-dead"}, {"fraction", "prune-fraction"}, {"scope", "prune-scope"}};
        const lf_yaml_node_t *n[3];
        for (int k = 0; k < 3; k++) {
            const lf_yaml_node_t *a = lf_yaml_get(o, pairs[k][0]), *b = lf_yaml_get(o, pairs[k][1]);
            if (a && b)
                diag(c, b, "%s and %s are the same option: give one", pairs[k][0], pairs[k][1]);
            n[k] = a ? a : b;
        }
        if (n[0])
            get_bool(c, "dead", n[0], &p->prune_dead);
        if (n[1])
            get_decimal(c, "fraction", n[1], &LF_RANGE_SHARE, &p->prune_fraction);
        const char *scope = NULL;
        if (n[2] && get_string(c, "scope", n[2], &scope)) {
            if (strcmp(scope, "global") != 0 && strcmp(scope, "layer") != 0)
                diag(c, n[2], "scope must be layer or global, not '%s'", scope);
            p->prune_global = strcmp(scope, "global") == 0;
            if (p->prune_global && p->prune_fraction.m == 0 && n[1] == NULL)
                diag(c, n[2], "scope global has no effect without a fraction above 0");
        }
        break;
    }
    case LF_STAGE_FOLD:
        if ((v = lf_yaml_get(o, "threshold")))
            get_decimal(c, "threshold", v, &LF_RANGE_THRESHOLD, &p->threshold);
        parse_rule(c, o);
        break;
    case LF_STAGE_SEARCH: {
        int modes = 0;
        const lf_yaml_node_t *last = NULL;
        if ((v = lf_yaml_get(o, "sweep"))) {
            get_list(c, "sweep", v, &LF_RANGE_THRESHOLD, p->sweep, &p->n_sweep);
            modes++;
            last = v;
        }
        if ((v = lf_yaml_get(o, "target-ratio"))) {
            p->target = get_decimal(c, "target-ratio", v, &LF_RANGE_POSITIVE, &p->target_ratio);
            modes++;
            last = v;
        }
        if ((v = lf_yaml_get(o, "max-accuracy-drop"))) {
            p->budget = get_decimal(c, "max-accuracy-drop", v, &LF_RANGE_UNIT, &p->max_drop);
            modes++;
            last = v;
        }
        if (modes != 1)
            diag(c, modes ? last : o,
                 "stage search needs exactly one of sweep, target-ratio and max-accuracy-drop");
        if ((v = lf_yaml_get(o, "sweep-out"))) {
            p->sweep_out = path_of(c, F_SWEEP_OUT, v, false);
            if (!lf_yaml_get(o, "sweep"))
                diag(c, v, "sweep-out goes with sweep");
        }
        if ((v = lf_yaml_get(o, "search-fractions"))) {
            get_list(c, "search-fractions", v, &LF_RANGE_SHARE, p->fractions, &p->n_fractions);
            if (!lf_yaml_get(o, "max-accuracy-drop"))
                diag(c, v, "search-fractions goes with max-accuracy-drop");
        }
        if ((v = lf_yaml_get(o, "batch")))
            get_count(c, "batch", v, &p->search_batch);
        parse_rule(c, o);
        break;
    }
    case LF_STAGE_EVALUATE:
        if ((v = lf_yaml_get(o, "batch")))
            get_count(c, "batch", v, &p->evaluate_batch);
        break;
    case LF_STAGE_PREDICT:
        if ((v = lf_yaml_get(o, "batch")))
            get_count(c, "batch", v, &p->predict_batch);
        break;
    case LF_STAGE__COUNT: break;
    }
}

static int stage_of(const char *name)
{
    for (int s = 0; s < LF_STAGE__COUNT; s++)
        if (strcmp(lf_stage_name((lf_stage_t)s), name) == 0)
            return s;
    return -1;
}

static void parse_stages(lf_pipeline_config_t *c, const lf_yaml_node_t *seq)
{
    static const char *const names[] = {"calibrate", "prune",   "fold", "search",
                                        "evaluate",  "predict", NULL};
    const lf_yaml_node_t *seen[LF_STAGE__COUNT] = {0};
    c->stages_node = seq;
    if (seq->kind != LF_YAML_SEQ || seq->n == 0) {
        diag(c, seq, "stages must be a non-empty list (- calibrate: {...})");
        return;
    }
    for (int k = 0; k < seq->n; k++) {
        const lf_yaml_node_t *item = seq->items[k], *name_node = item, *opts = NULL;
        if (item->kind == LF_YAML_MAP && item->n == 1) {
            name_node = item->keys[0];
            opts = item->items[0];
        } else if (item->kind != LF_YAML_SCALAR || item->quoted) {
            diag(c, item,
                 "a stage is one name with its options (- fold: {threshold: 0.9}), not "
                 "a %s%s",
                 kind_name(item), item->kind == LF_YAML_MAP ? " of several keys" : "");
            continue;
        }
        int s = stage_of(name_node->text);
        if (s < 0) {
            const lf_yaml_node_t fake = {
                .kind = LF_YAML_MAP, .n = 1, .keys = (lf_yaml_node_t **)&name_node};
            check_keys(c, &fake, names, "stages");
            continue;
        }
        if (seen[s]) {
            diag(c, name_node, "stage %s appears twice (first at line %d)", name_node->text,
                 seen[s]->line);
            continue;
        }
        seen[s] = name_node; /* the order is lf_pipeline_problems()'s to check */
        c->stage_node[c->p.n_stages] = name_node;
        if (lf_pipeline_add_stage(&c->p, (lf_stage_t)s) != LF_OK) {
            diag_error(c, name_node, LF_ERR_USAGE);
            return;
        }
        parse_stage(c, (lf_stage_t)s, stage_options(c, name_node->text, opts));
    }
    if (seen[LF_STAGE_FOLD] && seen[LF_STAGE_SEARCH])
        diag(c, seen[LF_STAGE_SEARCH],
             "fold and search exclude each other: a search chooses "
             "its own fold");
}

static void parse_root(lf_pipeline_config_t *c, const lf_yaml_node_t *root)
{
    lf_pipeline_t *p = &c->p;
    const lf_yaml_node_t *v;
    static const char *const top[] = {"version",    "name",       "model",     "calibration",
                                      "statistics", "evaluation", "reference", "stages",
                                      "output",     "checkpoint", NULL};
    static const char *const top_registry[] = {
        "version",    "name",      "models", "groups", "overrides",  "calibration", "statistics",
        "evaluation", "reference", "stages", "output", "checkpoint", NULL};
    static const char *const eval_keys[] = {"data", "labels", NULL};
    static const char *const out_keys[] = {"model", "report", "statistics", "predictions", NULL};
    static const char *const out_keys_registry[] = {
        "model", "report", "statistics", "predictions", "summary", "state", NULL};
    bool member = c->member_written != NULL;
    static const char *const ck_keys[] = {"every-batches", "every-seconds", "path", NULL};
    if (!root || root->kind != LF_YAML_MAP) {
        diag(c, root, "a pipeline is a mapping (version: 1, model: ..., stages: [...])");
        return;
    }
    check_keys(c, root, member ? top_registry : top, "the pipeline");
    if (!(v = lf_yaml_get(root, "version")))
        diag(c, root, "missing key 'version' (this linfold reads version: 1)");
    else if (v->kind != LF_YAML_SCALAR || v->quoted || strcmp(v->text, "1") != 0)
        diag(c, v, "version must be 1 (the pipeline format this linfold reads), not '%s'",
             v->kind == LF_YAML_SCALAR ? v->text : kind_name(v));
    if ((v = lf_yaml_get(root, "name")))
        c->name_given = get_string(c, "name", v, &p->name);
    if (member) {
        /* The model comes from models:, the rest of the file is the template. */
        p->model = resolve(c, c->member_written);
        c->where[F_MODEL] = lf_yaml_get(root, "models");
        c->written[F_MODEL] = c->member_written;
    } else if (!(v = lf_yaml_get(root, "model"))) {
        diag(c, root, "missing key 'model' (the model file to compress)");
    } else {
        p->model = path_of(c, F_MODEL, v, false);
    }
    if ((v = lf_yaml_get(root, "calibration")))
        p->calibration = path_of(c, F_CALIBRATION, v, true);
    if ((v = lf_yaml_get(root, "statistics")))
        p->statistics = path_of(c, F_STATISTICS, v, false);
    if ((v = lf_yaml_get(root, "reference")))
        p->reference = path_of(c, F_REFERENCE, v, false);
    if ((v = lf_yaml_get(root, "evaluation"))) {
        if (v->kind == LF_YAML_MAP) {
            check_keys(c, v, eval_keys, "evaluation");
            const lf_yaml_node_t *d = lf_yaml_get(v, "data"), *l = lf_yaml_get(v, "labels");
            if (d)
                p->eval_data = path_of(c, F_EVAL_DATA, d, true);
            else
                diag(c, v, "evaluation needs data (data: FILE.h5:/x)");
            if (l)
                p->eval_labels = path_of(c, F_EVAL_LABELS, l, true);
        } else {
            p->eval_data = path_of(c, F_EVAL_DATA, v, true);
        }
    }
    if ((v = lf_yaml_get(root, "output"))) {
        if (v->kind != LF_YAML_MAP) {
            diag(c, v, "output must be a mapping (model: ..., report: ...)");
        } else {
            check_keys(c, v, member ? out_keys_registry : out_keys, "output");
            const lf_yaml_node_t *o;
            if ((o = lf_yaml_get(v, "model")))
                p->out_model = path_of(c, F_OUT_MODEL, o, false);
            if ((o = lf_yaml_get(v, "report")))
                p->out_report = path_of(c, F_OUT_REPORT, o, false);
            if ((o = lf_yaml_get(v, "statistics")))
                p->out_stats = path_of(c, F_OUT_STATS, o, false);
            if ((o = lf_yaml_get(v, "predictions")))
                p->predict_out = path_of(c, F_OUT_PREDICTIONS, o, false);
        }
    }
    if ((v = lf_yaml_get(root, "checkpoint"))) {
        if (v->kind != LF_YAML_MAP) {
            diag(c, v, "checkpoint must be a mapping (every-batches: N, every-seconds: T)");
        } else {
            check_keys(c, v, ck_keys, "checkpoint");
            const lf_yaml_node_t *o;
            lf_decimal_t secs;
            if ((o = lf_yaml_get(v, "every-batches")))
                get_count(c, "every-batches", o, &p->checkpoint_batches);
            if ((o = lf_yaml_get(v, "every-seconds")) &&
                get_decimal(c, "every-seconds", o, &LF_RANGE_POSITIVE, &secs)) {
                char buf[48];
                lf_decimal_format(secs, buf, sizeof buf);
                p->checkpoint_seconds = strtod(buf, NULL);
            }
            if ((o = lf_yaml_get(v, "path")))
                p->checkpoint_path = path_of(c, F_CHECKPOINT, o, false);
        }
    }
    if (!(v = lf_yaml_get(root, "stages")))
        diag(c, root, "missing key 'stages' (the list of stages to run)");
    else
        parse_stages(c, v);
}

/* A problem of the pipeline as a whole, at the stage it concerns (else at stages:). */
static void stage_problem(void *ctx, int stage, const char *msg)
{
    lf_pipeline_config_t *c = ctx;
    const lf_yaml_node_t *at = c->stages_node;
    for (int k = 0; stage >= 0 && k < c->p.n_stages; k++)
        if ((int)c->p.stages[k] == stage)
            at = c->stage_node[k];
    diag(c, at ? at : lf_yaml_root(c->doc), "%s", msg);
}

/* ---------------------------------------------------------------- overrides */

/* --set KEY=VALUE with KEY "stage.option", "section.key" or a top-level key. The value becomes a
 * plain scalar at line 0, column k + 1, which messages print as the --set argument. */
/* Sets key ("stage.option", "section.key" or a top-level key) to value in the tree; problems
 * are reported at pos. */
static void set_key(lf_pipeline_config_t *c, const char *key_text, lf_yaml_node_t *value,
                    const lf_yaml_node_t *pos)
{
    char key[256];
    lf_yaml_node_t *root = (lf_yaml_node_t *)lf_yaml_root(c->doc), *target = root;
    if (snprintf(key, sizeof key, "%s", key_text) >= (int)sizeof key || !key[0]) {
        diag(c, pos, "'%s' is not a key of the pipeline", key_text);
        return;
    }
    if (!root || root->kind != LF_YAML_MAP)
        return;
    char *dot = strchr(key, '.');
    if (dot) {
        *dot = '\0';
        const char *section = key;
        target = NULL;
        const lf_yaml_node_t *stages = lf_yaml_get(root, "stages");
        if (stage_of(section) >= 0) {
            for (int s = 0; stages && stages->kind == LF_YAML_SEQ && s < stages->n; s++) {
                lf_yaml_node_t *item = stages->items[s];
                if (item->kind == LF_YAML_MAP && item->n == 1 &&
                    strcmp(item->keys[0]->text, section) == 0) {
                    if (item->items[0]->kind != LF_YAML_MAP) {
                        lf_yaml_node_t *m = NULL;
                        if (lf_yaml_new_map(c->doc, pos->line, pos->column, &m) != LF_OK ||
                            lf_yaml_map_set(c->doc, item, section, m) != LF_OK) {
                            diag_error(c, pos, LF_ERR_NOMEM);
                            return;
                        }
                    }
                    target = item->items[0];
                } else if (item->kind == LF_YAML_SCALAR && strcmp(item->text, section) == 0) {
                    diag(c, pos, "give stage %s its options in the file (- %s: {}) to set them",
                         section, section);
                    return;
                }
            }
            if (!target) {
                diag(c, pos, "the pipeline has no %s stage", section);
                return;
            }
        } else {
            target = (lf_yaml_node_t *)lf_yaml_get(root, section);
            if (!target) {
                lf_yaml_node_t *m = NULL;
                if (lf_yaml_new_map(c->doc, pos->line, pos->column, &m) != LF_OK ||
                    lf_yaml_map_set(c->doc, root, section, m) != LF_OK) {
                    diag_error(c, pos, LF_ERR_NOMEM);
                    return;
                }
                target = m;
            }
            if (target->kind != LF_YAML_MAP) {
                diag(c, pos, "%s is not a mapping in the pipeline", section);
                return;
            }
        }
        memmove(key, dot + 1, strlen(dot + 1) + 1);
    }
    if (lf_yaml_map_set(c->doc, target, key, value) != LF_OK)
        diag_error(c, pos, LF_ERR_ARG);
}

/* --set KEY=VALUE: the value becomes a plain scalar at line 0, column k + 1, which messages
 * print as the --set argument. */
static void apply_set(lf_pipeline_config_t *c, int k)
{
    const char *arg = c->sets[k];
    const lf_yaml_node_t pos = {.kind = LF_YAML_SCALAR, .line = 0, .column = k + 1, .text = ""};
    const char *eq = strchr(arg, '=');
    char key[256];
    lf_yaml_node_t *value = NULL;
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof key) {
        diag(c, &pos, "expected KEY=VALUE, for example fold.threshold=0.9");
        return;
    }
    memcpy(key, arg, (size_t)(eq - arg));
    key[eq - arg] = '\0';
    if (lf_yaml_new_scalar(c->doc, eq + 1, false, 0, k + 1, &value) != LF_OK) {
        diag_error(c, &pos, LF_ERR_ARG);
        return;
    }
    set_key(c, key, value, &pos);
}

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

static void put_path(builder_t *b, lf_pipeline_config_t *c, lf_yaml_node_t *m, const char *key,
                     field_t f)
{
    if (c->written[f])
        put(b, m, key, scalar(b, c->written[f]));
}

static lf_err_t build_effective(lf_pipeline_config_t *c)
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
            break;
        case LF_STAGE_FOLD:
            put_dec(&b, o, "threshold", p->threshold);
            put_rule(&b, o, &po);
            break;
        case LF_STAGE_SEARCH:
            if (p->n_sweep)
                put_list(&b, o, "sweep", p->sweep, p->n_sweep);
            if (p->target)
                put_dec(&b, o, "target-ratio", p->target_ratio);
            if (p->budget)
                put_dec(&b, o, "max-accuracy-drop", p->max_drop);
            if (p->n_fractions)
                put_list(&b, o, "search-fractions", p->fractions, p->n_fractions);
            put_path(&b, c, o, "sweep-out", F_SWEEP_OUT);
            put_rule(&b, o, &po);
            put_int(&b, o, "batch", p->search_batch);
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
cleanup:
    lf_yaml_destroy(&b.doc);
    return err;
}

/* ---------------------------------------------------------------- registries */

/* The file name of path without its last extension. */
static char *stem_of(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, base, len);
        s[len] = '\0';
    }
    return s;
}

/* Appends a NUL-terminated entry to a growing buffer of entries. */
static int push_entry(char **buf, size_t *len, size_t *cap, const char *entry)
{
    size_t n = strlen(entry) + 1;
    if (*len + n > *cap) {
        size_t want = (*cap ? *cap * 2 : 4096) + n;
        char *grown = realloc(*buf, want);
        if (!grown)
            return -1;
        *buf = grown;
        *cap = want;
    }
    memcpy(*buf + *len, entry, n);
    *len += n;
    return 0;
}

/* The models a registry names, as written relative to the pipeline's directory: a list, a glob
 * (sorted) or a manifest (one path a line, relative to the manifest; # comments). Rank 0 reads the
 * file system; *msg is its problem, if any. */
static void list_models(lf_pipeline_config_t *c, const lf_yaml_node_t *models, char **buf,
                        size_t *len, char *msg, size_t cap)
{
    size_t bcap = 0;
    const lf_yaml_node_t *list = models, *g = NULL, *man = NULL;
    if (models->kind == LF_YAML_MAP) {
        list = lf_yaml_get(models, "list");
        g = lf_yaml_get(models, "glob");
        man = lf_yaml_get(models, "manifest");
    }
    if (list && list->kind == LF_YAML_SEQ) {
        for (int k = 0; k < list->n; k++)
            if (list->items[k]->kind == LF_YAML_SCALAR &&
                push_entry(buf, len, &bcap, list->items[k]->text) != 0)
                snprintf(msg, cap, "no memory for the model list");
    } else if (g && g->kind == LF_YAML_SCALAR) {
        char pattern[LF_PATH_MAX];
        bool relative = g->text[0] != '/';
        int w = relative ? snprintf(pattern, sizeof pattern, "%s/%s", c->dir, g->text)
                         : snprintf(pattern, sizeof pattern, "%s", g->text);
        glob_t gl = {0};
        int rc = w > 0 && (size_t)w < sizeof pattern ? glob(pattern, 0, NULL, &gl) : GLOB_NOSPACE;
        if (rc == GLOB_NOMATCH)
            snprintf(msg, cap, "models: the glob %.400s matches no file (in %.400s)", g->text,
                     c->dir);
        else if (rc != 0)
            snprintf(msg, cap, "models: cannot expand the glob %.900s (%s)", pattern,
                     rc == GLOB_ABORTED ? "a directory cannot be read" : "no memory");
        size_t skip = relative ? strlen(c->dir) + 1 : 0;
        for (size_t k = 0; rc == 0 && k < gl.gl_pathc; k++)
            if (push_entry(buf, len, &bcap, gl.gl_pathv[k] + skip) != 0)
                snprintf(msg, cap, "no memory for the model list");
        globfree(&gl);
    } else if (man && man->kind == LF_YAML_SCALAR) {
        char path[LF_PATH_MAX], line[LF_PATH_MAX], entry[2 * LF_PATH_MAX + 2];
        int w = snprintf(path, sizeof path, "%s%s%s", man->text[0] == '/' ? "" : c->dir,
                         man->text[0] == '/' ? "" : "/", man->text);
        if (w < 0 || (size_t)w >= sizeof path) {
            snprintf(msg, cap, "models: the manifest's path is too long");
            return;
        }
        /* Entries are relative to the manifest: prefix them with its directory as written. */
        char mdir[LF_PATH_MAX];
        snprintf(mdir, sizeof mdir, "%s", man->text);
        char *slash = strrchr(mdir, '/');
        if (slash)
            slash[1] = '\0';
        else
            mdir[0] = '\0';
        FILE *f = fopen(path, "r");
        if (!f)
            snprintf(msg, cap, "models: cannot open the manifest %.900s (%s)", path,
                     strerror(errno));
        int number = 0;
        while (f && fgets(line, sizeof line, f)) {
            number++;
            size_t n = strlen(line);
            if (n == sizeof line - 1 && line[n - 1] != '\n') {
                snprintf(msg, cap, "%.900s:%d: line too long", path, number);
                break;
            }
            while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                             line[n - 1] == '\t'))
                line[--n] = '\0';
            char *e = line + strspn(line, " \t");
            if (!*e || *e == '#')
                continue;
            if (snprintf(entry, sizeof entry, "%s%s", e[0] == '/' ? "" : mdir, e) >=
                (int)sizeof entry) {
                snprintf(msg, cap, "%.900s:%d: path too long", path, number);
                break;
            }
            if (push_entry(buf, len, &bcap, entry) != 0)
                snprintf(msg, cap, "no memory for the model list");
        }
        if (f && ferror(f))
            snprintf(msg, cap, "models: cannot read the manifest %.900s", path);
        if (f)
            fclose(f);
        if (!msg[0] && *len == 0)
            snprintf(msg, cap, "models: the manifest %.900s names no model", path);
    }
}

/* models:, groups:, overrides: and output.summary/state of a registry. Collective: rank 0
 * expands the model list and broadcasts it. */
static lf_err_t parse_registry(MPI_Comm comm, lf_pipeline_config_t *c)
{
    lf_err_t err = LF_OK;
    const lf_yaml_node_t *root = lf_yaml_root(c->doc), *models = lf_yaml_get(root, "models"), *v;
    static const char *const model_keys[] = {"list", "glob", "manifest", NULL};
    static const char *const override_keys[] = {"match", "set", NULL};
    char *buf = NULL, msg[1024] = "";
    size_t len = 0;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    c->registry = true;
    if (lf_yaml_get(root, "model"))
        diag(c, lf_yaml_get(root, "model"), "give model or models, not both");
    bool shape_ok = models->kind == LF_YAML_SEQ;
    if (models->kind == LF_YAML_MAP) {
        check_keys(c, models, model_keys, "models");
        int kinds = 0;
        for (const char *const *k = model_keys; *k; k++)
            if ((v = lf_yaml_get(models, *k))) {
                kinds++;
                if (strcmp(*k, "list") == 0 ? v->kind != LF_YAML_SEQ : v->kind != LF_YAML_SCALAR)
                    diag(c, v, "models.%s must be %s", *k,
                         strcmp(*k, "list") == 0 ? "a list of model files" : "a path");
            }
        shape_ok = kinds == 1;
        if (kinds != 1)
            diag(c, models, "models needs exactly one of list, glob and manifest");
    } else if (!shape_ok) {
        diag(c, models,
             "models must be a list of files or a mapping with list, glob or "
             "manifest");
    }
    const lf_yaml_node_t *list = models->kind == LF_YAML_SEQ ? models : lf_yaml_get(models, "list");
    for (int k = 0; list && list->kind == LF_YAML_SEQ && k < list->n; k++)
        if (list->items[k]->kind != LF_YAML_SCALAR || is_null(list->items[k]))
            diag(c, list->items[k], "a model in the list must be a path");
    if ((v = lf_yaml_get(root, "groups")) &&
        !(v->kind == LF_YAML_SCALAR && !v->quoted && strcmp(v->text, "auto") == 0))
        get_count(c, "groups", v, &c->groups);
    if ((v = lf_yaml_get(root, "overrides"))) {
        if (v->kind != LF_YAML_SEQ)
            diag(c, v, "overrides must be a list of {match: GLOB, set: {KEY: VALUE, ...}}");
        for (int k = 0; v->kind == LF_YAML_SEQ && k < v->n; k++) {
            const lf_yaml_node_t *o = v->items[k], *m, *set;
            if (o->kind != LF_YAML_MAP) {
                diag(c, o, "an override is {match: GLOB, set: {KEY: VALUE, ...}}");
                continue;
            }
            check_keys(c, o, override_keys, "an override");
            if (!(m = lf_yaml_get(o, "match")) || m->kind != LF_YAML_SCALAR)
                diag(c, m ? m : o, "an override needs match: a glob on the model's stem");
            if (!(set = lf_yaml_get(o, "set")) || set->kind != LF_YAML_MAP)
                diag(c, set ? set : o, "an override needs set: {KEY: VALUE, ...}");
        }
    }
    const lf_yaml_node_t *out = lf_yaml_get(root, "output");
    const lf_yaml_node_t *sum =
        out && out->kind == LF_YAML_MAP ? lf_yaml_get(out, "summary") : NULL;
    if (!sum)
        diag(c, out ? out : root,
             "a registry needs output.summary (where its summary JSON "
             "and CSV go, without extension)");
    else if (get_string(c, "output.summary", sum, &c->summary))
        c->summary = resolve(c, c->summary);
    const lf_yaml_node_t *st = out && out->kind == LF_YAML_MAP ? lf_yaml_get(out, "state") : NULL;
    if (st && get_string(c, "output.state", st, &c->state)) {
        c->state = resolve(c, c->state);
    } else if (c->summary) {
        char def[LF_PATH_MAX];
        snprintf(def, sizeof def, "%s.state", c->summary);
        c->state = keep(c, strdup(def));
    }
    /* The list itself, from rank 0. */
    long long n_bytes = 0;
    if (rank == 0 && shape_ok) {
        list_models(c, models, &buf, &len, msg, sizeof msg);
        n_bytes = msg[0] ? -1 : (long long)len;
    }
    MPI_Bcast(&n_bytes, 1, MPI_LONG_LONG, 0, comm);
    if (n_bytes < 0) {
        LF_CALL(lf_comm_bcast_string(comm, msg, (int)sizeof msg, 0));
        diag(c, models, "%s", msg);
        goto cleanup;
    }
    if (rank != 0 && n_bytes > 0)
        buf = malloc((size_t)n_bytes);
    LF_CHECK(lf_comm_agree(comm, n_bytes == 0 || buf ? LF_OK : LF_ERR_NOMEM) == LF_OK, LF_ERR_NOMEM,
             "no memory for the model list");
    int n_int = 0;
    LF_CALL(lf_int_cast(n_bytes, &n_int));
    if (n_int > 0)
        MPI_Bcast(buf, n_int, MPI_CHAR, 0, comm);
    int count = 0;
    for (long long k = 0; k < n_bytes; k++)
        count += buf[k] == '\0';
    LF_CALL(
        lf_comm_agree(comm, lf_calloc((size_t)count + 1, sizeof *c->models, (void **)&c->models)));
    for (const char *e = buf; e < buf + n_bytes; e += strlen(e) + 1) {
        lf_registry_model_t *m = &c->models[c->n_models++];
        m->written = strdup(e);
        m->stem = stem_of(e);
        const char *r = resolve(c, e);
        m->path = r ? strdup(r) : NULL;
        LF_CHECK(m->written && m->stem && m->path, LF_ERR_NOMEM, "no memory for the model list");
        for (int j = 0; j < c->n_models - 1; j++)
            if (strcmp(c->models[j].stem, m->stem) == 0)
                diag(c, models,
                     "models %s and %s have the same stem '%s': their outputs and state would "
                     "collide",
                     c->models[j].written, m->written, m->stem);
    }
cleanup:
    free(buf);
    return err;
}

/* Fills {stem}, {name} and {dir} in every scalar of the tree but models: and overrides:
 * ({{ and }} stand for braces). */
static void fill_templates(lf_pipeline_config_t *c, lf_yaml_node_t *node, bool top)
{
    if (node->kind != LF_YAML_SCALAR) {
        for (int k = 0; k < node->n; k++) {
            if (top && node->kind == LF_YAML_MAP &&
                (strcmp(node->keys[k]->text, "models") == 0 ||
                 strcmp(node->keys[k]->text, "overrides") == 0))
                continue;
            lf_yaml_node_t *item = node->items[k];
            if (item->kind == LF_YAML_SCALAR && strchr(item->text, '{') == NULL &&
                strchr(item->text, '}') == NULL)
                continue;
            if (item->kind != LF_YAML_SCALAR) {
                fill_templates(c, item, false);
                continue;
            }
            char out[LF_PATH_MAX], name[LF_PATH_MAX], dir[LF_PATH_MAX];
            const char *w = c->member_written, *slash = strrchr(w, '/');
            snprintf(name, sizeof name, "%s", slash ? slash + 1 : w);
            if (slash)
                snprintf(dir, sizeof dir, "%.*s", (int)(slash - w), w);
            else
                snprintf(dir, sizeof dir, ".");
            size_t o = 0;
            bool ok = true;
            for (const char *p = item->text; *p && ok;) {
                const char *rep = NULL;
                size_t skip = 1;
                char one[2] = {*p, '\0'};
                if (strncmp(p, "{{", 2) == 0 || strncmp(p, "}}", 2) == 0) {
                    one[0] = *p;
                    rep = one;
                    skip = 2;
                } else if (strncmp(p, "{stem}", 6) == 0) {
                    rep = c->member_stem;
                    skip = 6;
                } else if (strncmp(p, "{name}", 6) == 0) {
                    rep = name;
                    skip = 6;
                } else if (strncmp(p, "{dir}", 5) == 0) {
                    rep = dir;
                    skip = 5;
                } else if (*p == '{' || *p == '}') {
                    diag(c, item,
                         "unknown template '%.*s' (known: {stem}, {name}, {dir}; {{ and }} for "
                         "braces)",
                         (int)(strcspn(p + 1, "}") + 2), p);
                    ok = false;
                    break;
                } else {
                    rep = one;
                }
                size_t n = strlen(rep);
                if (o + n + 1 > sizeof out) {
                    diag(c, item, "the value is too long once its templates are filled in");
                    ok = false;
                    break;
                }
                memcpy(out + o, rep, n);
                o += n;
                p += skip;
            }
            out[o] = '\0';
            lf_yaml_node_t *filled = NULL;
            if (ok && lf_yaml_new_scalar(c->doc, out, item->quoted, item->line, item->column,
                                         &filled) == LF_OK)
                node->items[k] = filled;
        }
    }
}

/* The overrides whose match: fits the member's stem, in file order. */
static void apply_overrides(lf_pipeline_config_t *c)
{
    const lf_yaml_node_t *ov = lf_yaml_get(lf_yaml_root(c->doc), "overrides");
    for (int k = 0; ov && ov->kind == LF_YAML_SEQ && k < ov->n; k++) {
        const lf_yaml_node_t *o = ov->items[k];
        const lf_yaml_node_t *m = lf_yaml_get(o, "match"), *set = lf_yaml_get(o, "set");
        if (!m || m->kind != LF_YAML_SCALAR || !set || set->kind != LF_YAML_MAP ||
            fnmatch(m->text, c->member_stem, 0) != 0)
            continue;
        for (int j = 0; j < set->n; j++)
            set_key(c, set->keys[j]->text, set->items[j], set->keys[j]);
    }
}

lf_err_t lf_pipeline_config_member(const lf_pipeline_config_t *reg, int i,
                                   lf_pipeline_config_t **out)
{
    lf_err_t err = LF_OK;
    lf_pipeline_config_t *c = NULL;
    *out = NULL;
    LF_CHECK(i >= 0 && i < reg->n_models, LF_ERR_INTERNAL, "no model %d in the registry", i);
    LF_CALL(lf_calloc(1, sizeof *c, (void **)&c));
    lf_pipeline_init(&c->p);
    c->keep_problems = true;
    c->path = strdup(reg->path);
    c->text = strdup(reg->text);
    LF_CHECK(c->path && c->text, LF_ERR_NOMEM, "no memory for a registry member");
    memcpy(c->dir, reg->dir, sizeof c->dir);
    c->sets = reg->sets;
    c->n_sets = reg->n_sets;
    c->member_written = reg->models[i].written;
    c->member_stem = reg->models[i].stem;
    LF_CALL(lf_yaml_parse(c->path, c->text, strlen(c->text), &c->doc));
    lf_yaml_node_t *root = (lf_yaml_node_t *)lf_yaml_root(c->doc);
    /* Overrides and --set values first, so that their values get templates filled in too. */
    apply_overrides(c);
    for (int k = 0; k < c->n_sets; k++)
        apply_set(c, k);
    fill_templates(c, root, true);
    parse_root(c, root);
    c->p.name = c->member_stem;
    lf_pipeline_problems(&c->p, stage_problem, c);
    if (c->n_diags == 0)
        LF_CALL(build_effective(c));
    *out = c;
    c = NULL;
cleanup:
    lf_pipeline_config_destroy(&c);
    return err;
}

bool lf_pipeline_config_is_registry(const lf_pipeline_config_t *c) { return c->registry; }

const lf_registry_model_t *lf_pipeline_config_models(const lf_pipeline_config_t *c, int *n)
{
    *n = c->n_models;
    return c->models;
}

int64_t lf_pipeline_config_groups(const lf_pipeline_config_t *c) { return c->groups; }

const char *lf_pipeline_config_summary(const lf_pipeline_config_t *c) { return c->summary; }

const char *lf_pipeline_config_state(const lf_pipeline_config_t *c) { return c->state; }

int lf_pipeline_config_problems(const lf_pipeline_config_t *c, const char *const **lines)
{
    *lines = (const char *const *)c->diags;
    return c->n_diags;
}

/* ---------------------------------------------------------------- loading */

/* Rank 0 reads at most one byte more than the parser accepts (so that a huge file is refused
 * without reading it) and broadcasts the bytes. */
static lf_err_t read_and_share(MPI_Comm comm, lf_pipeline_config_t *c)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    long long len = 0;
    char msg[512] = "";
    if (rank == 0) {
        FILE *f = fopen(c->path, "rb");
        struct stat st;
        size_t cap = LF_YAML_MAX_BYTES + 1;
        if (!f) {
            snprintf(msg, sizeof msg, "%s: cannot open the pipeline file (%s)", c->path,
                     strerror(errno));
        } else if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) &&
                   (uintmax_t)st.st_size > LF_YAML_MAX_BYTES) {
            snprintf(msg, sizeof msg,
                     "%s:1:1: pipeline files are limited to 1 MiB; %s has %jd bytes", c->path,
                     c->path, (intmax_t)st.st_size);
        } else if ((local = lf_malloc(cap + 1, 1, (void **)&c->text)) != LF_OK) {
            snprintf(msg, sizeof msg, "%s: no memory to read it", c->path);
            lf_error_clear();
        } else {
            len = (long long)fread(c->text, 1, cap, f);
            if (ferror(f))
                snprintf(msg, sizeof msg, "%s: cannot read the pipeline file (%s)", c->path,
                         strerror(errno));
        }
        if (f)
            fclose(f);
        if (msg[0])
            len = -1;
    }
    MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, comm);
    if (len < 0) {
        LF_CALL(lf_comm_bcast_string(comm, msg, (int)sizeof msg, 0));
        raw_problem(c, msg);
        LF_CALL(report_diags(comm, c, "in the pipeline"));
    }
    if (rank != 0)
        LF_CALL(lf_comm_agree(comm, lf_malloc((size_t)len + 1, 1, (void **)&c->text)));
    else
        LF_CALL(lf_comm_agree(comm, LF_OK));
    int n = 0;
    LF_CALL(lf_int_cast(len, &n));
    MPI_Bcast(c->text, n, MPI_CHAR, 0, comm);
    c->text[len] = '\0';
    /* The parser takes the length: NUL bytes inside are found and reported by it. Its message
     * is already "FILE:LINE:COLUMN: what". */
    lf_err_t parsed = lf_yaml_parse(c->path, c->text, (size_t)len, &c->doc);
    LF_CHECK(parsed != LF_ERR_NOMEM, LF_ERR_NOMEM, "no memory to parse %s", c->path);
    if (parsed != LF_OK) {
        raw_problem(c, lf_error_message());
        lf_error_clear();
        LF_CALL(report_diags(comm, c, "in the pipeline"));
    }
cleanup:
    return err;
}

lf_err_t lf_pipeline_config_load(MPI_Comm comm, const char *path, const char *const *sets,
                                 int n_sets, lf_pipeline_config_t **out)
{
    lf_err_t err = LF_OK;
    lf_pipeline_config_t *c = NULL;
    *out = NULL;
    LF_CALL(lf_comm_agree(comm, lf_calloc(1, sizeof *c, (void **)&c)));
    lf_pipeline_init(&c->p);
    c->path = strdup(path);
    LF_CHECK(lf_comm_agree(comm, c->path ? LF_OK : LF_ERR_NOMEM) == LF_OK, LF_ERR_NOMEM,
             "no memory");
    c->sets = sets;
    c->n_sets = n_sets;
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(c->dir, sizeof c->dir, ".");
    else if (slash == path)
        snprintf(c->dir, sizeof c->dir, "/");
    else
        snprintf(c->dir, sizeof c->dir, "%.*s", (int)(slash - path), path);
    LF_CALL(read_and_share(comm, c));
    const lf_yaml_node_t *root = lf_yaml_root(c->doc);
    if (root && root->kind == LF_YAML_MAP && lf_yaml_get(root, "models")) {
        /* A registry: the rest of the file is a template, checked on its first model. --set
         * applies to the registry's own keys (groups, output.summary) here, and again to every
         * member. */
        for (int k = 0; k < n_sets; k++)
            apply_set(c, k);
        LF_CALL(parse_registry(comm, c));
        lf_pipeline_config_t *first = NULL;
        if (c->n_diags == 0 && c->n_models > 0) {
            LF_CALL(lf_pipeline_config_member(c, 0, &first));
            for (int k = 0; k < first->n_diags; k++) {
                raw_problem(c, first->diags[k]);
                c->diag_pos[c->n_diags - 1] = first->diag_pos[k];
            }
            lf_pipeline_config_destroy(&first);
        }
        LF_CALL(report_diags(comm, c, "in the pipeline"));
        *out = c;
        c = NULL;
        goto cleanup;
    }
    for (int k = 0; k < n_sets; k++)
        apply_set(c, k);
    parse_root(c, lf_yaml_root(c->doc));
    if (c->p.name == NULL)
        c->p.name = c->path;
    lf_pipeline_problems(&c->p, stage_problem, c);
    LF_CALL(report_diags(comm, c, "in the pipeline"));
    LF_CALL(build_effective(c));
    *out = c;
    c = NULL;
cleanup:
    lf_pipeline_config_destroy(&c);
    return err;
}

/* ---------------------------------------------------------------- files */

/* Runs a collective check and turns its agreed failure into a problem at node. */
static bool checked(MPI_Comm comm, lf_pipeline_config_t *c, field_t f, lf_err_t e)
{
    e = lf_comm_agree(comm, e);
    if (e == LF_OK)
        return true;
    diag_error(c, c->where[f], e);
    return false;
}

static void check_width(lf_pipeline_config_t *c, field_t f, lf_dataset_t *ds, int64_t want)
{
    if (ds && want > 0 && lf_h5io_dataset_cols(ds) != want)
        diag(c, c->where[f], "%s has %lld columns, but the model takes %lld inputs",
             lf_h5io_dataset_spec(ds), (long long)lf_h5io_dataset_cols(ds), (long long)want);
}

/* Whether two outputs are one file: the same inode when both exist, else the same spelling
 * (paths here are already normalised). */
static bool same_output(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return strcmp(a, b) == 0;
}

/* When path's directory does not exist: records it to be created (rank 0) if its nearest
 * existing ancestor is a writable directory, else fails naming it. */
static lf_err_t missing_directory(lf_pipeline_config_t *c, const char *path, char *note, size_t cap)
{
    lf_err_t err = LF_OK;
    char dir[LF_PATH_MAX], up[LF_PATH_MAX];
    struct stat st;
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return LF_OK; /* the working directory */
    *slash = '\0';
    if (dir[0] == '\0' || stat(dir, &st) == 0)
        return LF_OK;
    snprintf(up, sizeof up, "%s", dir);
    while (stat(up, &st) != 0) {
        char *s = strrchr(up, '/');
        if (!s) {
            snprintf(up, sizeof up, ".");
            continue;
        }
        *s = '\0';
        if (up[0] == '\0')
            snprintf(up, sizeof up, "/");
    }
    LF_CHECK(S_ISDIR(st.st_mode) && access(up, W_OK | X_OK) == 0, LF_ERR_IO,
             "%s: directory %s does not exist and %s does not take new directories", path, dir, up);
    snprintf(note, cap, "created");
    for (int k = 0; k < c->n_mkdirs; k++)
        if (strcmp(c->mkdirs[k], dir) == 0)
            goto cleanup;
    if (c->n_mkdirs < F__COUNT)
        c->mkdirs[c->n_mkdirs++] = strdup(dir);
cleanup:
    return err;
}

lf_err_t lf_pipeline_config_make_directories(MPI_Comm comm, const lf_pipeline_config_t *c)
{
    lf_err_t local = LF_OK;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    for (int k = 0; rank == 0 && local == LF_OK && k < c->n_mkdirs; k++)
        if (c->mkdirs[k])
            local = lf_atomic_mkdirs(c->mkdirs[k]);
    return lf_comm_agree(comm, local);
}

lf_err_t lf_pipeline_config_check_files(MPI_Comm comm, lf_pipeline_config_t *c)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = &c->p;
    lf_model_t *m = NULL, *ref = NULL;
    lf_dataset_t *data = NULL, *x = NULL, *y = NULL;
    lf_stats_t *stats = NULL;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    if (checked(comm, c, F_MODEL, lf_h5io_read_model(comm, p->model, &m))) {
        c->model_in = m->n_in;
        c->model_out = lf_model_n_out(m);
        c->model_params = lf_model_params(m);
        c->model_layers = m->n_layers;
    }
    int64_t n_in = m ? m->n_in : 0;
    if (p->reference &&
        checked(comm, c, F_REFERENCE, lf_h5io_read_model(comm, p->reference, &ref)) && m &&
        (ref->n_in != m->n_in || lf_model_n_out(ref) != lf_model_n_out(m)))
        diag(c, c->where[F_REFERENCE],
             "the reference model maps %lld inputs to %lld outputs, the model %lld to %lld",
             (long long)ref->n_in, (long long)lf_model_n_out(ref), (long long)m->n_in,
             (long long)lf_model_n_out(m));
    if (p->calibration && lf_pipeline_has(p, LF_STAGE_CALIBRATE) &&
        checked(comm, c, F_CALIBRATION,
                lf_h5io_dataset_open(comm, p->calibration, LF_DATA_SAMPLES, &data))) {
        check_width(c, F_CALIBRATION, data, n_in);
        c->calib_rows = lf_h5io_dataset_rows(data);
        if (c->calib_rows == 0)
            diag(c, c->where[F_CALIBRATION], "%s has no rows: there is nothing to calibrate on",
                 p->calibration);
    }
    if (p->eval_data && checked(comm, c, F_EVAL_DATA,
                                lf_h5io_dataset_open(comm, p->eval_data, LF_DATA_SAMPLES, &x))) {
        check_width(c, F_EVAL_DATA, x, n_in);
        c->eval_rows = lf_h5io_dataset_rows(x);
        if (c->eval_rows == 0)
            diag(c, c->where[F_EVAL_DATA], "%s has no rows: there is nothing to evaluate",
                 p->eval_data);
    }
    if (p->eval_labels &&
        checked(comm, c, F_EVAL_LABELS,
                lf_h5io_dataset_open(comm, p->eval_labels, LF_DATA_LABELS, &y)) &&
        x && lf_h5io_dataset_rows(y) != lf_h5io_dataset_rows(x))
        diag(c, c->where[F_EVAL_LABELS], "%s has %lld rows, the evaluation data %lld",
             p->eval_labels, (long long)lf_h5io_dataset_rows(y),
             (long long)lf_h5io_dataset_rows(x));
    if (p->statistics && m)
        checked(comm, c, F_STATISTICS, lf_stats_read(comm, p->statistics, m, p->model, &stats));
    /* Outputs: none may be an input or another output, and their directories take files. */
    char files[3][LF_PATH_MAX], obj[1024];
    const char *specs[3] = {p->calibration, p->eval_data, p->eval_labels};
    lf_atomic_named_t inputs[6];
    int n = 0;
    for (int k = 0; k < 3; k++)
        if (specs[k] &&
            lf_h5io_split_spec(specs[k], files[k], sizeof files[k], obj, sizeof obj) == LF_OK)
            inputs[n++] = (lf_atomic_named_t){
                field_names[k == 0 ? F_CALIBRATION : F_EVAL_DATA + k - 1], files[k]};
    inputs[n++] = (lf_atomic_named_t){"model", p->model};
    inputs[n++] = (lf_atomic_named_t){"statistics", p->statistics};
    inputs[n++] = (lf_atomic_named_t){"reference", p->reference};
    static const field_t outs[] = {F_OUT_MODEL,       F_OUT_REPORT, F_OUT_STATS,
                                   F_OUT_PREDICTIONS, F_SWEEP_OUT,  F_CHECKPOINT};
    const char *out_paths[] = {p->out_model,   p->out_report, p->out_stats,
                               p->predict_out, p->sweep_out,  p->checkpoint_path};
    for (int k = 0; k < 6; k++) {
        if (!out_paths[k])
            continue;
        /* Each output against the inputs and the outputs before it, so that the message lands
         * on the output's own line. A directory that does not exist yet is created before the
         * run when its nearest existing ancestor takes new directories. */
        char msg[1024] = "";
        lf_err_t e = LF_OK;
        if (rank == 0) {
            e = missing_directory(c, out_paths[k], msg, sizeof msg);
            if (e == LF_OK && !msg[0]) {
                lf_atomic_named_t mine[1] = {{field_names[outs[k]], out_paths[k]}};
                e = lf_atomic_check_outputs(inputs, n, mine, 1, true);
                for (int j = 0; e == LF_OK && j < k; j++)
                    if (out_paths[j] && same_output(out_paths[j], out_paths[k])) {
                        e = LF_ERR_USAGE;
                        lf_error_record(__FILE__, __LINE__, __func__, e,
                                        "%s and %s are the same file (%s)", field_names[outs[j]],
                                        field_names[outs[k]], out_paths[k]);
                    }
            } else {
                msg[0] = '\0';
            }
            if (e != LF_OK)
                snprintf(msg, sizeof msg, "%s", lf_error_message());
            lf_error_clear();
        }
        e = lf_comm_agree(comm, e);
        if (lf_comm_bcast_string(comm, msg, (int)sizeof msg, 0) != LF_OK)
            lf_error_clear();
        if (e != LF_OK)
            diag(c, c->where[outs[k]], "%s", msg[0] ? msg : lf_strerror(e));
    }
    c->checked = true;
    LF_CALL(report_diags(comm, c, "with the files the pipeline names"));
cleanup:
    lf_stats_destroy(&stats);
    lf_h5io_dataset_close(&y);
    lf_h5io_dataset_close(&x);
    lf_h5io_dataset_close(&data);
    lf_model_destroy(&ref);
    lf_model_destroy(&m);
    return err;
}

lf_err_t lf_pipeline_config_check_files_quietly(MPI_Comm comm, lf_pipeline_config_t *c)
{
    bool keep = c->keep_problems;
    c->keep_problems = true;
    lf_err_t err = lf_pipeline_config_check_files(comm, c);
    c->keep_problems = keep;
    return err;
}

/* ---------------------------------------------------------------- access and printing */

const lf_pipeline_t *lf_pipeline_config_pipeline(const lf_pipeline_config_t *c) { return &c->p; }

lf_pipeline_t *lf_pipeline_config_pipeline_mut(lf_pipeline_config_t *c) { return &c->p; }

const char *lf_pipeline_config_effective(const lf_pipeline_config_t *c) { return c->effective; }

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
        fprintf(f, "  %d. %-10s", k + 1, lf_stage_name(p->stages[k]));
        switch (p->stages[k]) {
        case LF_STAGE_CALIBRATE:
            fprintf(f, "batch %lld rows, output sums %s%s\n", (long long)p->calibrate_batch,
                    sums ? "yes" : "no",
                    sums && !p->output_sums ? " (importance pruning needs them)" : "");
            break;
        case LF_STAGE_PRUNE:
            lf_decimal_format(p->prune_fraction, a, sizeof a);
            fprintf(f, "dead neurons %s, importance share %s (%s)\n",
                    p->prune_dead ? "removed" : "kept", a,
                    p->prune_global ? "global" : "per layer");
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
            else
                fprintf(f, "smallest model within an accuracy drop of %s",
                        (lf_decimal_format(p->max_drop, b, sizeof b), b));
            fprintf(f, ", layers %s, batch %lld rows\n", lf__rule_text(&po.rule, rule, sizeof rule),
                    (long long)p->search_batch);
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

void lf_pipeline_config_destroy(lf_pipeline_config_t **cp)
{
    if (!cp || !*cp)
        return;
    lf_pipeline_config_t *c = *cp;
    for (int k = 0; k < c->n_strings; k++)
        free(c->strings[k]);
    for (int k = 0; k < c->n_diags; k++)
        free(c->diags[k]);
    for (int k = 0; k < c->n_mkdirs; k++)
        free(c->mkdirs[k]);
    for (int k = 0; k < c->n_models; k++) {
        free(c->models[k].written);
        free(c->models[k].path);
        free(c->models[k].stem);
    }
    lf_free(c->models);
    free(c->effective);
    lf_yaml_destroy(&c->doc);
    lf_free(c->text);
    free(c->path);
    lf_free(c);
    *cp = NULL;
}
