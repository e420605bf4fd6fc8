/* Pipeline files into pipelines; see pipeline_config.h and docs/pipeline.md for the schema.
 *
 * Validation collects every problem with the position of the node it concerns, and nothing runs
 * unless there is none. The file's tree is checked against tables of the keys each section and
 * stage takes (named like the command-line flags without their dashes), values against the same
 * intervals the flags use (decimal.h), then the pipeline as a whole (lf_pipeline_check), then
 * the files it names (lf_pipeline_config_check_files). */
#include "linfold/pipeline_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/decimal.h"
#include "linfold/h5io.h"
#include "linfold/plan.h"
#include "pipeline_config_impl.h"
#include "pipeline_impl.h"

const char *const lf__cfg_field_names[F__COUNT] = {"model",
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

/* ---------------------------------------------------------------- problems */

/* Records "FILE:LINE:COLUMN: message", or "--set ARG: message" for a node from an override
 * (line 0, column k + 1 for the k-th --set). */
void lf__cfg_diag(lf_pipeline_config_t *c, const lf_yaml_node_t *node, const char *fmt, ...)
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
void lf__cfg_raw_problem(lf_pipeline_config_t *c, const char *text)
{
    if (c->n_diags < MAX_DIAGS && (c->diags[c->n_diags] = strdup(text)) != NULL)
        c->diag_pos[c->n_diags++] = 0;
}

/* The message recorded by a failed call, as a problem at node; the record is cleared. */
void lf__cfg_diag_error(lf_pipeline_config_t *c, const lf_yaml_node_t *node, lf_err_t e)
{
    const char *msg = lf_error_message();
    /* Messages of the flag parsers name the flag ("--select"); here the key has no dashes. */
    if (msg && msg[0] == '-' && msg[1] == '-')
        msg += 2;
    lf__cfg_diag(c, node, "%s", msg && *msg ? msg : lf_strerror(e));
    lf_error_clear();
}

/* Prints every problem on rank 0 and returns LF_ERR_USAGE when there was one. */
lf_err_t lf__cfg_report_diags(MPI_Comm comm, lf_pipeline_config_t *c, const char *what)
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

const char *lf__cfg_keep(lf_pipeline_config_t *c, char *s)
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
bool lf__cfg_same_place(const char *a, const char *b)
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
const char *lf__cfg_resolve(lf_pipeline_config_t *c, const char *written)
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
    return lf__cfg_keep(c, strdup(!parent || lf__cfg_same_place(joined, norm) ? norm : joined));
}

/* "FILE.h5:/x" with FILE resolved. */
static const char *resolve_spec(lf_pipeline_config_t *c, const lf_yaml_node_t *node,
                                const char *written)
{
    char file[LF_PATH_MAX], obj[1024], out[LF_PATH_MAX + 1024];
    lf_err_t e = lf_h5io_split_spec(written, file, sizeof file, obj, sizeof obj);
    if (e != LF_OK) {
        lf__cfg_diag_error(c, node, e);
        return NULL;
    }
    const char *f = lf__cfg_resolve(c, file);
    if (!f) {
        lf__cfg_diag(c, node, "%s: the path is too long", file);
        return NULL;
    }
    snprintf(out, sizeof out, "%s:%s", f, obj);
    return lf__cfg_keep(c, strdup(out));
}

/* ---------------------------------------------------------------- values */

bool lf__cfg_is_null(const lf_yaml_node_t *n)
{
    return n->kind == LF_YAML_SCALAR && !n->quoted &&
           (n->text[0] == '\0' || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0);
}

const char *lf__cfg_kind_name(const lf_yaml_node_t *n) { return lf_yaml_kind_name(n->kind); }

bool lf__cfg_get_string(lf_pipeline_config_t *c, const char *key, const lf_yaml_node_t *n,
                        const char **out)
{
    if (n->kind != LF_YAML_SCALAR || lf__cfg_is_null(n)) {
        lf__cfg_diag(c, n, "%s must be a non-empty string, not %s", key,
                     n->kind == LF_YAML_SCALAR ? "empty" : lf__cfg_kind_name(n));
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
    lf__cfg_diag(c, n, "%s must be true or false, not %s%s%s", key,
                 n->kind == LF_YAML_SCALAR ? "'" : "a ",
                 n->kind == LF_YAML_SCALAR ? n->text : lf__cfg_kind_name(n),
                 n->kind == LF_YAML_SCALAR ? "'" : "");
    return false;
}

bool lf__cfg_get_count(lf_pipeline_config_t *c, const char *key, const lf_yaml_node_t *n,
                       int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = n->kind == LF_YAML_SCALAR && !n->quoted ? strtoll(n->text, &end, 10) : 0;
    if (n->kind != LF_YAML_SCALAR || n->quoted || !n->text[0] || *end || errno || v < 1) {
        lf__cfg_diag(c, n, "%s must be a whole number >= 1, not %s%s%s", key,
                     n->kind == LF_YAML_SCALAR ? "'" : "a ",
                     n->kind == LF_YAML_SCALAR ? n->text : lf__cfg_kind_name(n),
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
            lf__cfg_diag(c, n, "%s %s is outside %s", key, n->text, range->text);
        else
            lf__cfg_diag(c, n, "%s must be a number in %s, not %s%s%s", key, range->text,
                         n->kind == LF_YAML_SCALAR ? "'" : "a ",
                         n->kind == LF_YAML_SCALAR ? n->text : lf__cfg_kind_name(n),
                         n->kind == LF_YAML_SCALAR ? "'" : "");
        return false;
    }
    if (!lf_decimal_in_range(range, v)) {
        lf__cfg_diag(c, n, "%s %s is outside %s", key, n->text, range->text);
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
            lf__cfg_diag(c, n, "%s needs at least one value", key);
        for (int k = 0; k < n->n; k++) {
            if (*count >= LF_PIPELINE_LIST_MAX) {
                lf__cfg_diag(c, n->items[k], "%s has more than %d values", key,
                             LF_PIPELINE_LIST_MAX);
                return false;
            }
            ok = get_decimal(c, key, n->items[k], range, &values[(*count)++]) && ok;
        }
        return ok;
    }
    if (n->kind != LF_YAML_SCALAR || n->quoted || !n->text[0]) {
        lf__cfg_diag(c, n, "%s must be a list of numbers in %s", key, range->text);
        return false;
    }
    const char *p = n->text;
    while (*p) {
        size_t len = strcspn(p, ",");
        char item[64];
        lf_decimal_t v;
        if (len == 0 || len >= sizeof item || *count >= LF_PIPELINE_LIST_MAX) {
            lf__cfg_diag(c, n, "%s: '%s' is not a comma-separated list of at most %d numbers", key,
                         n->text, LF_PIPELINE_LIST_MAX);
            return false;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        while (len > 0 && item[0] == ' ')
            memmove(item, item + 1, len--);
        if (!parse_decimal(n, item, &v) || !lf_decimal_in_range(range, v)) {
            lf__cfg_diag(c, n, "%s: '%s' is not a number in %s", key, item, range->text);
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
bool lf__cfg_check_keys(lf_pipeline_config_t *c, const lf_yaml_node_t *map,
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
            lf__cfg_diag(c, map->keys[k], "unknown key '%s' in %s (did you mean '%s'?)", key, where,
                         guess);
        else
            lf__cfg_diag(c, map->keys[k], "unknown key '%s' in %s (expected %s)", key, where, list);
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
    if (!lf__cfg_is_null(v))
        lf__cfg_diag(c, v, "the options of stage %s must be a mapping ({key: value, ...}), not %s",
                     name, v->kind == LF_YAML_SCALAR ? "a scalar" : lf__cfg_kind_name(v));
    return NULL;
}

/* layer-rule and select, in fold and search. */
static void parse_rule(lf_pipeline_config_t *c, const lf_yaml_node_t *o)
{
    lf_pipeline_t *p = &c->p;
    const lf_yaml_node_t *rule = lf_yaml_get(o, "layer-rule"), *sel = lf_yaml_get(o, "select");
    const char *text = NULL;
    if (rule && sel) {
        lf__cfg_diag(c, sel, "layer-rule and select exclude each other");
        return;
    }
    if (rule && lf__cfg_get_string(c, "layer-rule", rule, &text)) {
        lf_err_t e = lf_plan_parse_layer_rule(text, &p->rule);
        if (e != LF_OK)
            lf__cfg_diag_error(c, rule, e);
        p->rule_given = e == LF_OK;
    }
    if (sel && lf__cfg_get_string(c, "select", sel, &text)) {
        lf_err_t e = lf_plan_parse_select(text, &p->rule);
        if (e != LF_OK)
            lf__cfg_diag_error(c, sel, e);
        p->rule_given = e == LF_OK;
    }
}

/* merge, dist-threshold, dist-block and merge-precision, in fold and search. */
static void parse_merge(lf_pipeline_config_t *c, const lf_yaml_node_t *o)
{
    lf_pipeline_t *p = &c->p;
    const lf_yaml_node_t *v;
    const char *text = NULL;
    if ((v = lf_yaml_get(o, "merge")) && lf__cfg_get_string(c, "merge", v, &text)) {
        lf_err_t e = lf_merge_path_parse(text, &p->merge);
        if (e != LF_OK)
            lf__cfg_diag_error(c, v, e);
    }
    if ((v = lf_yaml_get(o, "dist-threshold")))
        lf__cfg_get_count(c, "dist-threshold", v, &p->dist_threshold);
    if ((v = lf_yaml_get(o, "dist-block"))) {
        if (lf__cfg_get_count(c, "dist-block", v, &p->dist_block) && p->dist_block > 4096)
            lf__cfg_diag(c, v, "dist-block must be at most 4096, not %lld",
                         (long long)p->dist_block);
    }
    if ((v = lf_yaml_get(o, "merge-precision")) &&
        lf__cfg_get_string(c, "merge-precision", v, &text)) {
        if (strcmp(text, "double") != 0 && strcmp(text, "single") != 0)
            lf__cfg_diag(c, v, "merge-precision must be double or single, not '%s'", text);
        p->merge_single = strcmp(text, "single") == 0;
    }
}

static const char *path_of(lf_pipeline_config_t *c, field_t f, const lf_yaml_node_t *n, bool spec)
{
    const char *text = NULL;
    if (!lf__cfg_get_string(c, lf__cfg_field_names[f], n, &text))
        return NULL;
    c->where[f] = n;
    c->written[f] = text;
    const char *path = spec ? resolve_spec(c, n, text) : lf__cfg_resolve(c, text);
    if (!path && !spec)
        lf__cfg_diag(c, n, "%s: the path is too long", lf__cfg_field_names[f]);
    return path;
}

static void parse_stage(lf_pipeline_config_t *c, lf_stage_t s, const lf_yaml_node_t *o)
{
    lf_pipeline_t *p = &c->p;
    const lf_yaml_node_t *v;
    static const char *const calibrate_keys[] = {"batch", "output-sums", NULL};
    static const char *const prune_keys[] = {"dead",        "fraction",   "scope",
                                             "by",          "prune-dead", "prune-fraction",
                                             "prune-scope", "prune-by",   NULL};
    static const char *const fold_keys[] = {
        "threshold",      "layer-rule", "select",          "merge",
        "dist-threshold", "dist-block", "merge-precision", NULL};
    static const char *const search_keys[] = {"sweep",
                                              "sweep-out",
                                              "target-ratio",
                                              "max-accuracy-drop",
                                              "search-fractions",
                                              "confidence",
                                              "batch",
                                              "layer-rule",
                                              "select",
                                              "merge",
                                              "dist-threshold",
                                              "dist-block",
                                              "merge-precision",
                                              NULL};
    static const char *const batch_keys[] = {"batch", NULL};
    static const char *const reconstruct_keys[] = {"rows", NULL};
    static const char *const *const keys[LF_STAGE__COUNT] = {
        calibrate_keys,   prune_keys, fold_keys, search_keys,
        reconstruct_keys, batch_keys, batch_keys};
    char where[64];
    snprintf(where, sizeof where, "stage %s", lf_stage_name(s));
    if (!o)
        return;
    lf__cfg_check_keys(c, o, keys[s], where);
    switch (s) {
    case LF_STAGE_CALIBRATE:
        if ((v = lf_yaml_get(o, "batch")))
            lf__cfg_get_count(c, "batch", v, &p->calibrate_batch);
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
                lf__cfg_diag(c, b, "%s and %s are the same option: give one", pairs[k][0],
                             pairs[k][1]);
            n[k] = a ? a : b;
        }
        if (n[0])
            get_bool(c, "dead", n[0], &p->prune_dead);
        if (n[1])
            get_decimal(c, "fraction", n[1], &LF_RANGE_SHARE, &p->prune_fraction);
        const char *scope = NULL;
        if (n[2] && lf__cfg_get_string(c, "scope", n[2], &scope)) {
            if (strcmp(scope, "global") != 0 && strcmp(scope, "layer") != 0)
                lf__cfg_diag(c, n[2], "scope must be layer or global, not '%s'", scope);
            p->prune_global = strcmp(scope, "global") == 0;
            if (p->prune_global && p->prune_fraction.m == 0 && n[1] == NULL)
                lf__cfg_diag(c, n[2], "scope global has no effect without a fraction above 0");
        }
        const lf_yaml_node_t *by_a = lf_yaml_get(o, "by"), *by_b = lf_yaml_get(o, "prune-by");
        const char *by = NULL;
        if (by_a && by_b)
            lf__cfg_diag(c, by_b, "by and prune-by are the same option: give one");
        if ((by_a || by_b) && lf__cfg_get_string(c, "by", by_a ? by_a : by_b, &by) &&
            lf_plan_parse_prune_by(by, &p->prune_by) != LF_OK) {
            lf_error_clear();
            lf__cfg_diag(c, by_a ? by_a : by_b, "by must be rate, energy or variance, not '%s'",
                         by);
        }
        break;
    }
    case LF_STAGE_FOLD:
        if ((v = lf_yaml_get(o, "threshold")))
            get_decimal(c, "threshold", v, &LF_RANGE_THRESHOLD, &p->threshold);
        parse_rule(c, o);
        parse_merge(c, o);
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
            lf__cfg_diag(
                c, modes ? last : o,
                "stage search needs exactly one of sweep, target-ratio and max-accuracy-drop");
        if ((v = lf_yaml_get(o, "sweep-out"))) {
            p->sweep_out = path_of(c, F_SWEEP_OUT, v, false);
            if (!lf_yaml_get(o, "sweep"))
                lf__cfg_diag(c, v, "sweep-out goes with sweep");
        }
        if ((v = lf_yaml_get(o, "search-fractions"))) {
            get_list(c, "search-fractions", v, &LF_RANGE_SHARE, p->fractions, &p->n_fractions);
            if (!lf_yaml_get(o, "max-accuracy-drop"))
                lf__cfg_diag(c, v, "search-fractions goes with max-accuracy-drop");
        }
        if ((v = lf_yaml_get(o, "confidence"))) {
            get_decimal(c, "confidence", v, &LF_RANGE_SHARE, &p->confidence);
            if (!lf_yaml_get(o, "max-accuracy-drop"))
                lf__cfg_diag(c, v, "confidence goes with max-accuracy-drop");
        }
        if ((v = lf_yaml_get(o, "batch")))
            lf__cfg_get_count(c, "batch", v, &p->search_batch);
        parse_rule(c, o);
        parse_merge(c, o);
        break;
    }
    case LF_STAGE_RECONSTRUCT:
        if ((v = lf_yaml_get(o, "rows")))
            lf__cfg_get_count(c, "rows", v, &p->reconstruct_rows);
        break;
    case LF_STAGE_EVALUATE:
        if ((v = lf_yaml_get(o, "batch")))
            lf__cfg_get_count(c, "batch", v, &p->evaluate_batch);
        break;
    case LF_STAGE_PREDICT:
        if ((v = lf_yaml_get(o, "batch")))
            lf__cfg_get_count(c, "batch", v, &p->predict_batch);
        break;
    case LF_STAGE__COUNT: break;
    }
}

int lf__cfg_stage_of(const char *name)
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
        lf__cfg_diag(c, seq, "stages must be a non-empty list (- calibrate: {...})");
        return;
    }
    for (int k = 0; k < seq->n; k++) {
        const lf_yaml_node_t *item = seq->items[k], *name_node = item, *opts = NULL;
        if (item->kind == LF_YAML_MAP && item->n == 1) {
            name_node = item->keys[0];
            opts = item->items[0];
        } else if (item->kind != LF_YAML_SCALAR || item->quoted) {
            lf__cfg_diag(c, item,
                         "a stage is one name with its options (- fold: {threshold: 0.9}), not "
                         "a %s%s",
                         lf__cfg_kind_name(item),
                         item->kind == LF_YAML_MAP ? " of several keys" : "");
            continue;
        }
        int s = lf__cfg_stage_of(name_node->text);
        if (s < 0) {
            const lf_yaml_node_t fake = {
                .kind = LF_YAML_MAP, .n = 1, .keys = (lf_yaml_node_t **)&name_node};
            lf__cfg_check_keys(c, &fake, names, "stages");
            continue;
        }
        if (seen[s]) {
            lf__cfg_diag(c, name_node, "stage %s appears twice (first at line %d)", name_node->text,
                         seen[s]->line);
            continue;
        }
        seen[s] = name_node; /* the order is lf_pipeline_problems()'s to check */
        c->stage_node[c->p.n_stages] = name_node;
        if (lf_pipeline_add_stage(&c->p, (lf_stage_t)s) != LF_OK) {
            lf__cfg_diag_error(c, name_node, LF_ERR_USAGE);
            return;
        }
        parse_stage(c, (lf_stage_t)s, stage_options(c, name_node->text, opts));
    }
    if (seen[LF_STAGE_FOLD] && seen[LF_STAGE_SEARCH])
        lf__cfg_diag(c, seen[LF_STAGE_SEARCH],
                     "fold and search exclude each other: a search chooses "
                     "its own fold");
}

void lf__cfg_parse_root(lf_pipeline_config_t *c, const lf_yaml_node_t *root)
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
        lf__cfg_diag(c, root, "a pipeline is a mapping (version: 1, model: ..., stages: [...])");
        return;
    }
    lf__cfg_check_keys(c, root, member ? top_registry : top, "the pipeline");
    if (!(v = lf_yaml_get(root, "version")))
        lf__cfg_diag(c, root, "missing key 'version' (this linfold reads version: 1)");
    else if (v->kind != LF_YAML_SCALAR || v->quoted || strcmp(v->text, "1") != 0)
        lf__cfg_diag(c, v, "version must be 1 (the pipeline format this linfold reads), not '%s'",
                     v->kind == LF_YAML_SCALAR ? v->text : lf__cfg_kind_name(v));
    if ((v = lf_yaml_get(root, "name")))
        c->name_given = lf__cfg_get_string(c, "name", v, &p->name);
    if (member) {
        /* The model comes from models:, the rest of the file is the template. */
        p->model = lf__cfg_resolve(c, c->member_written);
        c->where[F_MODEL] = lf_yaml_get(root, "models");
        c->written[F_MODEL] = c->member_written;
    } else if (!(v = lf_yaml_get(root, "model"))) {
        lf__cfg_diag(c, root, "missing key 'model' (the model file to compress)");
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
            lf__cfg_check_keys(c, v, eval_keys, "evaluation");
            const lf_yaml_node_t *d = lf_yaml_get(v, "data"), *l = lf_yaml_get(v, "labels");
            if (d)
                p->eval_data = path_of(c, F_EVAL_DATA, d, true);
            else
                lf__cfg_diag(c, v, "evaluation needs data (data: FILE.h5:/x)");
            if (l)
                p->eval_labels = path_of(c, F_EVAL_LABELS, l, true);
        } else {
            p->eval_data = path_of(c, F_EVAL_DATA, v, true);
        }
    }
    if ((v = lf_yaml_get(root, "output"))) {
        if (v->kind != LF_YAML_MAP) {
            lf__cfg_diag(c, v, "output must be a mapping (model: ..., report: ...)");
        } else {
            lf__cfg_check_keys(c, v, member ? out_keys_registry : out_keys, "output");
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
            lf__cfg_diag(c, v, "checkpoint must be a mapping (every-batches: N, every-seconds: T)");
        } else {
            lf__cfg_check_keys(c, v, ck_keys, "checkpoint");
            const lf_yaml_node_t *o;
            lf_decimal_t secs;
            if ((o = lf_yaml_get(v, "every-batches")))
                lf__cfg_get_count(c, "every-batches", o, &p->checkpoint_batches);
            if ((o = lf_yaml_get(v, "every-seconds")) &&
                get_decimal(c, "every-seconds", o, &LF_RANGE_POSITIVE, &secs)) {
                char buf[48];
                lf_decimal_format(secs, buf, sizeof buf);
                p->checkpoint_seconds = strtod(buf, NULL);
            }
            if ((o = lf_yaml_get(v, "path")))
                p->checkpoint_path = path_of(c, F_CHECKPOINT, o, false);
            /* By default the checkpoint sits beside the first output. */
            const char *first = p->out_model    ? p->out_model
                                : p->out_stats  ? p->out_stats
                                : p->out_report ? p->out_report
                                                : p->predict_out;
            if (!p->checkpoint_path && first) {
                char def[LF_PATH_MAX];
                if (snprintf(def, sizeof def, "%s.ckpt.h5", first) < (int)sizeof def)
                    p->checkpoint_path = lf__cfg_keep(c, strdup(def));
            } else if (!p->checkpoint_path) {
                lf__cfg_diag(c, v, "checkpoint needs checkpoint.path, or an output to sit beside");
            }
        }
    }
    if (!(v = lf_yaml_get(root, "stages")))
        lf__cfg_diag(c, root, "missing key 'stages' (the list of stages to run)");
    else
        parse_stages(c, v);
    if ((v = lf_yaml_get(root, "checkpoint")) && !lf_pipeline_has(p, LF_STAGE_CALIBRATE))
        lf__cfg_diag(c, v,
                     "checkpoint has nothing to do without a calibrate stage (only the "
                     "calibration pass checkpoints)");
}

/* A problem of the pipeline as a whole, at the stage it concerns (else at stages:). */
void lf__cfg_stage_problem(void *ctx, int stage, const char *msg)
{
    lf_pipeline_config_t *c = ctx;
    const lf_yaml_node_t *at = c->stages_node;
    for (int k = 0; stage >= 0 && k < c->p.n_stages; k++)
        if ((int)c->p.stages[k] == stage)
            at = c->stage_node[k];
    lf__cfg_diag(c, at ? at : lf_yaml_root(c->doc), "%s", msg);
}

/* ---------------------------------------------------------------- overrides */

/* --set KEY=VALUE with KEY "stage.option", "section.key" or a top-level key. The value becomes a
 * plain scalar at line 0, column k + 1, which messages print as the --set argument. */
/* Sets key ("stage.option", "section.key" or a top-level key) to value in the tree; problems
 * are reported at pos. */
void lf__cfg_set_key(lf_pipeline_config_t *c, const char *key_text, lf_yaml_node_t *value,
                     const lf_yaml_node_t *pos)
{
    char key[256];
    lf_yaml_node_t *root = (lf_yaml_node_t *)lf_yaml_root(c->doc), *target = root;
    if (snprintf(key, sizeof key, "%s", key_text) >= (int)sizeof key || !key[0]) {
        lf__cfg_diag(c, pos, "'%s' is not a key of the pipeline", key_text);
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
        if (lf__cfg_stage_of(section) >= 0) {
            for (int s = 0; stages && stages->kind == LF_YAML_SEQ && s < stages->n; s++) {
                lf_yaml_node_t *item = stages->items[s];
                if (item->kind == LF_YAML_MAP && item->n == 1 &&
                    strcmp(item->keys[0]->text, section) == 0) {
                    if (item->items[0]->kind != LF_YAML_MAP) {
                        lf_yaml_node_t *m = NULL;
                        if (lf_yaml_new_map(c->doc, pos->line, pos->column, &m) != LF_OK ||
                            lf_yaml_map_set(c->doc, item, section, m) != LF_OK) {
                            lf__cfg_diag_error(c, pos, LF_ERR_NOMEM);
                            return;
                        }
                    }
                    target = item->items[0];
                } else if (item->kind == LF_YAML_SCALAR && strcmp(item->text, section) == 0) {
                    lf__cfg_diag(c, pos,
                                 "give stage %s its options in the file (- %s: {}) to set them",
                                 section, section);
                    return;
                }
            }
            if (!target) {
                lf__cfg_diag(c, pos, "the pipeline has no %s stage", section);
                return;
            }
        } else {
            target = (lf_yaml_node_t *)lf_yaml_get(root, section);
            if (!target) {
                lf_yaml_node_t *m = NULL;
                if (lf_yaml_new_map(c->doc, pos->line, pos->column, &m) != LF_OK ||
                    lf_yaml_map_set(c->doc, root, section, m) != LF_OK) {
                    lf__cfg_diag_error(c, pos, LF_ERR_NOMEM);
                    return;
                }
                target = m;
            }
            if (target->kind != LF_YAML_MAP) {
                lf__cfg_diag(c, pos, "%s is not a mapping in the pipeline", section);
                return;
            }
        }
        memmove(key, dot + 1, strlen(dot + 1) + 1);
    }
    if (lf_yaml_map_set(c->doc, target, key, value) != LF_OK)
        lf__cfg_diag_error(c, pos, LF_ERR_ARG);
}

/* --set KEY=VALUE: the value becomes a plain scalar at line 0, column k + 1, which messages
 * print as the --set argument. */
void lf__cfg_apply_set(lf_pipeline_config_t *c, int k)
{
    const char *arg = c->sets[k];
    const lf_yaml_node_t pos = {.kind = LF_YAML_SCALAR, .line = 0, .column = k + 1, .text = ""};
    const char *eq = strchr(arg, '=');
    char key[256];
    lf_yaml_node_t *value = NULL;
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof key) {
        lf__cfg_diag(c, &pos, "expected KEY=VALUE, for example fold.threshold=0.9");
        return;
    }
    memcpy(key, arg, (size_t)(eq - arg));
    key[eq - arg] = '\0';
    if (lf_yaml_new_scalar(c->doc, eq + 1, false, 0, k + 1, &value) != LF_OK) {
        lf__cfg_diag_error(c, &pos, LF_ERR_ARG);
        return;
    }
    lf__cfg_set_key(c, key, value, &pos);
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
        lf__cfg_raw_problem(c, msg);
        LF_CALL(lf__cfg_report_diags(comm, c, "in the pipeline"));
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
        lf__cfg_raw_problem(c, lf_error_message());
        lf_error_clear();
        LF_CALL(lf__cfg_report_diags(comm, c, "in the pipeline"));
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
            lf__cfg_apply_set(c, k);
        LF_CALL(lf__cfg_parse_registry(comm, c));
        lf_pipeline_config_t *first = NULL;
        if (c->n_diags == 0 && c->n_models > 0) {
            LF_CALL(lf_pipeline_config_member(c, 0, &first));
            for (int k = 0; k < first->n_diags; k++) {
                lf__cfg_raw_problem(c, first->diags[k]);
                c->diag_pos[c->n_diags - 1] = first->diag_pos[k];
            }
            lf_pipeline_config_destroy(&first);
        }
        LF_CALL(lf__cfg_report_diags(comm, c, "in the pipeline"));
        *out = c;
        c = NULL;
        goto cleanup;
    }
    for (int k = 0; k < n_sets; k++)
        lf__cfg_apply_set(c, k);
    lf__cfg_parse_root(c, lf_yaml_root(c->doc));
    if (c->p.name == NULL)
        c->p.name = c->path;
    lf_pipeline_problems(&c->p, lf__cfg_stage_problem, c);
    LF_CALL(lf__cfg_report_diags(comm, c, "in the pipeline"));
    LF_CALL(lf__cfg_build_effective(c));
    *out = c;
    c = NULL;
cleanup:
    lf_pipeline_config_destroy(&c);
    return err;
}

/* ---------------------------------------------------------------- access and printing */

const lf_pipeline_t *lf_pipeline_config_pipeline(const lf_pipeline_config_t *c) { return &c->p; }

lf_pipeline_t *lf_pipeline_config_pipeline_mut(lf_pipeline_config_t *c) { return &c->p; }

const char *lf_pipeline_config_effective(const lf_pipeline_config_t *c) { return c->effective; }

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
    lf__cfg_free_models(c);
    lf__cfg_release_models(c);
    free(c->effective);
    lf_yaml_destroy(&c->doc);
    lf_free(c->text);
    free(c->path);
    lf_free(c);
    *cp = NULL;
}
