/* Registries: a pipeline over many models (models: a list, a glob or a manifest), each model's
 * pipeline made from the file as a template ({stem}, {name}, {dir}) with the overrides that
 * match it. The runs themselves are registry.c's. See docs/pipeline.md. */
#include <errno.h>
#include <fnmatch.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "pipeline_config_impl.h"

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
lf_err_t lf__cfg_parse_registry(MPI_Comm comm, lf_pipeline_config_t *c)
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
        lf__cfg_diag(c, lf_yaml_get(root, "model"), "give model or models, not both");
    bool shape_ok = models->kind == LF_YAML_SEQ;
    if (models->kind == LF_YAML_MAP) {
        lf__cfg_check_keys(c, models, model_keys, "models");
        int kinds = 0;
        for (const char *const *k = model_keys; *k; k++)
            if ((v = lf_yaml_get(models, *k))) {
                kinds++;
                if (strcmp(*k, "list") == 0 ? v->kind != LF_YAML_SEQ : v->kind != LF_YAML_SCALAR)
                    lf__cfg_diag(c, v, "models.%s must be %s", *k,
                                 strcmp(*k, "list") == 0 ? "a list of model files" : "a path");
            }
        shape_ok = kinds == 1;
        if (kinds != 1)
            lf__cfg_diag(c, models, "models needs exactly one of list, glob and manifest");
    } else if (!shape_ok) {
        lf__cfg_diag(c, models,
                     "models must be a list of files or a mapping with list, glob or "
                     "manifest");
    }
    const lf_yaml_node_t *list = models->kind == LF_YAML_SEQ ? models : lf_yaml_get(models, "list");
    for (int k = 0; list && list->kind == LF_YAML_SEQ && k < list->n; k++)
        if (list->items[k]->kind != LF_YAML_SCALAR || lf__cfg_is_null(list->items[k]))
            lf__cfg_diag(c, list->items[k], "a model in the list must be a path");
    if ((v = lf_yaml_get(root, "groups")) &&
        !(v->kind == LF_YAML_SCALAR && !v->quoted && strcmp(v->text, "auto") == 0))
        lf__cfg_get_count(c, "groups", v, &c->groups);
    if ((v = lf_yaml_get(root, "overrides"))) {
        if (v->kind != LF_YAML_SEQ)
            lf__cfg_diag(c, v, "overrides must be a list of {match: GLOB, set: {KEY: VALUE, ...}}");
        for (int k = 0; v->kind == LF_YAML_SEQ && k < v->n; k++) {
            const lf_yaml_node_t *o = v->items[k], *m, *set;
            if (o->kind != LF_YAML_MAP) {
                lf__cfg_diag(c, o, "an override is {match: GLOB, set: {KEY: VALUE, ...}}");
                continue;
            }
            lf__cfg_check_keys(c, o, override_keys, "an override");
            if (!(m = lf_yaml_get(o, "match")) || m->kind != LF_YAML_SCALAR)
                lf__cfg_diag(c, m ? m : o, "an override needs match: a glob on the model's stem");
            if (!(set = lf_yaml_get(o, "set")) || set->kind != LF_YAML_MAP)
                lf__cfg_diag(c, set ? set : o, "an override needs set: {KEY: VALUE, ...}");
        }
    }
    const lf_yaml_node_t *out = lf_yaml_get(root, "output");
    const lf_yaml_node_t *sum =
        out && out->kind == LF_YAML_MAP ? lf_yaml_get(out, "summary") : NULL;
    if (!sum)
        lf__cfg_diag(c, out ? out : root,
                     "a registry needs output.summary (where its summary JSON "
                     "and CSV go, without extension)");
    else if (lf__cfg_get_string(c, "output.summary", sum, &c->summary))
        c->summary = lf__cfg_resolve(c, c->summary);
    const lf_yaml_node_t *st = out && out->kind == LF_YAML_MAP ? lf_yaml_get(out, "state") : NULL;
    if (st && lf__cfg_get_string(c, "output.state", st, &c->state)) {
        c->state = lf__cfg_resolve(c, c->state);
    } else if (c->summary) {
        char def[LF_PATH_MAX];
        snprintf(def, sizeof def, "%s.state", c->summary);
        c->state = lf__cfg_keep(c, strdup(def));
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
        lf__cfg_diag(c, models, "%s", msg);
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
        const char *r = lf__cfg_resolve(c, e);
        m->path = r ? strdup(r) : NULL;
        LF_CHECK(m->written && m->stem && m->path, LF_ERR_NOMEM, "no memory for the model list");
        for (int j = 0; j < c->n_models - 1; j++)
            if (strcmp(c->models[j].stem, m->stem) == 0)
                lf__cfg_diag(
                    c, models,
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
                    lf__cfg_diag(
                        c, item,
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
                    lf__cfg_diag(c, item, "the value is too long once its templates are filled in");
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
            lf__cfg_set_key(c, set->keys[j]->text, set->items[j], set->keys[j]);
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
        lf__cfg_apply_set(c, k);
    fill_templates(c, root, true);
    lf__cfg_parse_root(c, root);
    c->p.name = c->member_stem;
    lf_pipeline_problems(&c->p, lf__cfg_stage_problem, c);
    if (c->n_diags == 0)
        LF_CALL(lf__cfg_build_effective(c));
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

void lf__cfg_free_models(lf_pipeline_config_t *c)
{
    for (int k = 0; k < c->n_models; k++) {
        free(c->models[k].written);
        free(c->models[k].path);
        free(c->models[k].stem);
    }
    lf_free(c->models);
    c->models = NULL;
    c->n_models = 0;
}
