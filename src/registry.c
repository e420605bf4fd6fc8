/* Registry runs: groups of ranks, per-model state, isolation and the summary; see registry.h. */
#include "linfold/registry.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"
#include "linfold/h5io.h"
#include "linfold/hash.h"
#include "linfold/interrupt.h"
#include "linfold/log.h"
#include "linfold/pipeline.h"
#include "linfold/report.h"

/* What happened to a model in this run (reduced over the ranks with MPI_MAX). */
enum { NOT_RUN = 0, SKIPPED = 1, COMPRESSED = 2, FAILED = 3 };
static const char *const this_run_names[] = {"not run", "skipped", "compressed", "failed"};

enum { MAX_FILES = 6 };

/* Work (rows x parameters) one rank gets through in about a second or two; a model that has
 * less than this per rank gains nothing from more ranks. */
#define WORK_PER_RANK 4294967296.0

int lf_registry_groups(int size, int n_models, int64_t groups, double max_work)
{
    int g = 1;
    if (groups > 0) {
        g = groups > size ? size : (int)groups;
    } else {
        double need = ceil(max_work / WORK_PER_RANK);
        int per_group = need < 1 ? 1 : (need > size ? size : (int)need);
        g = size / per_group;
    }
    if (g > n_models)
        g = n_models;
    return g < 1 ? 1 : g;
}

/* ---------------------------------------------------------------- state files */

static void state_path(const lf_pipeline_config_t *reg, const lf_registry_model_t *m, char *buf,
                       size_t cap)
{
    snprintf(buf, cap, "%s/%s.json", lf_pipeline_config_state(reg), m->stem);
}

/* The previous state of a model, or NULL (absent or unreadable: the model is simply rerun). */
static json_t *load_state(const char *path)
{
    json_t *s = json_load_file(path, 0, NULL);
    if (s &&
        (!json_is_object(s) || !json_is_string(json_object_get(s, "schema")) ||
         strcmp(json_string_value(json_object_get(s, "schema")), LF_REGISTRY_STATE_SCHEMA) != 0)) {
        json_decref(s);
        s = NULL;
    }
    return s;
}

/* The SHA-256 of a file, from the previous state when its size, modification time and inode are
 * unchanged. Adds {path, size, mtime_ns, inode, sha256} to files. */
static lf_err_t file_digest(const char *path, json_t *prev, json_t *files, char hex[LF_SHA256_HEX])
{
    lf_err_t err = LF_OK;
    struct stat st;
    LF_CHECK(stat(path, &st) == 0, LF_ERR_IO, "%s: %s", path, strerror(errno));
    json_int_t mtime = (json_int_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    bool cached = false;
    size_t k;
    json_t *f;
    json_array_foreach(json_object_get(prev, "files"), k, f)
    {
        if (json_is_string(json_object_get(f, "path")) &&
            strcmp(json_string_value(json_object_get(f, "path")), path) == 0 &&
            json_integer_value(json_object_get(f, "size")) == (json_int_t)st.st_size &&
            json_integer_value(json_object_get(f, "mtime_ns")) == mtime &&
            json_integer_value(json_object_get(f, "inode")) == (json_int_t)st.st_ino &&
            json_is_string(json_object_get(f, "sha256")) &&
            strlen(json_string_value(json_object_get(f, "sha256"))) == LF_SHA256_HEX - 1) {
            snprintf(hex, LF_SHA256_HEX, "%s", json_string_value(json_object_get(f, "sha256")));
            cached = true;
        }
    }
    if (!cached)
        LF_CALL(lf_hash_file(path, hex));
    json_array_append_new(files, json_pack("{s:s, s:I, s:I, s:I, s:s}", "path", path, "size",
                                           (json_int_t)st.st_size, "mtime_ns", mtime, "inode",
                                           (json_int_t)st.st_ino, "sha256", hex));
cleanup:
    return err;
}

/* The files a member reads: the model, then its data (file parts of data set specs). */
static int input_files(const lf_pipeline_t *p, char files[MAX_FILES][LF_PATH_MAX])
{
    const char *specs[] = {p->calibration, p->eval_data, p->eval_labels};
    const char *plain[] = {p->model, p->statistics, p->reference};
    char obj[1024];
    int n = 0;
    for (int k = 0; k < 3; k++)
        if (plain[k])
            snprintf(files[n++], LF_PATH_MAX, "%s", plain[k]);
    for (int k = 0; k < 3; k++)
        if (specs[k] &&
            lf_h5io_split_spec(specs[k], files[n], LF_PATH_MAX, obj, sizeof obj) == LF_OK) {
            bool dup = false;
            for (int j = 0; j < n; j++)
                dup = dup || strcmp(files[j], files[n]) == 0;
            n += !dup;
        }
    lf_error_clear();
    return n;
}

/* Digests of a member's inputs; *same when they, the pipeline and a success all match prev and
 * the outputs still exist. Rank 0 of the group only. */
static lf_err_t digests(const lf_pipeline_t *p, const char *identity, json_t *prev, json_t *files,
                        bool *same)
{
    lf_err_t err = LF_OK;
    char names[MAX_FILES][LF_PATH_MAX], hex[LF_SHA256_HEX];
    int n = input_files(p, names);
    *same = prev && json_is_string(json_object_get(prev, "status")) &&
            strcmp(json_string_value(json_object_get(prev, "status")), "ok") == 0 && identity &&
            json_is_string(json_object_get(prev, "pipeline_sha256")) &&
            strcmp(json_string_value(json_object_get(prev, "pipeline_sha256")), identity) == 0 &&
            json_array_size(json_object_get(prev, "files")) == (size_t)n;
    for (int k = 0; k < n; k++) {
        LF_CALL(file_digest(names[k], prev, files, hex));
        json_t *old = json_array_get(json_object_get(prev, "files"), (size_t)k);
        *same = *same && old && json_is_string(json_object_get(old, "sha256")) &&
                strcmp(json_string_value(json_object_get(old, "sha256")), hex) == 0 &&
                strcmp(json_string_value(json_object_get(old, "path")), names[k]) == 0;
    }
    const char *outs[] = {p->out_model, p->out_report, p->out_stats, p->predict_out, p->sweep_out};
    for (int k = 0; k < 5; k++)
        *same = *same && (!outs[k] || access(outs[k], F_OK) == 0);
cleanup:
    return err;
}

typedef struct {
    const lf_registry_model_t *model;
    json_t *files; /* digests of the inputs (rank 0 of the group) */
    const char *identity;
    const char *status; /* "ok", "failed", "interrupted" */
    int exit_status;
    char message[2048];
    double seconds;
    json_t *record;
} outcome_t;

static lf_err_t write_state_file(const char *tmp, const char *path, const void *ctx)
{
    lf_err_t err = LF_OK;
    const outcome_t *o = ctx;
    char when[64];
    time_t t = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
    json_t *s =
        json_pack("{s:s, s:i, s:s, s:s, s:s, s:i, s:s?, s:s?, s:O?, s:f, s:s, s:O?}", "schema",
                  LF_REGISTRY_STATE_SCHEMA, "schema_version", 1, "model", o->model->written, "stem",
                  o->model->stem, "status", o->status, "exit_status", o->exit_status, "error",
                  o->message[0] ? o->message : NULL, "pipeline_sha256", o->identity, "files",
                  o->files, "seconds", o->seconds, "finished", when, "record", o->record);
    LF_CHECK(s != NULL, LF_ERR_NOMEM, "%s: cannot build the state", path);
    int bad =
        json_dump_file(s, tmp, JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(s);
    LF_CHECK(bad == 0, LF_ERR_IO, "%s: cannot write the state (%s)", path, strerror(errno));
cleanup:
    return err;
}

/* ---------------------------------------------------------------- one model */

/* Joins a member's problems into one message. */
static void problems_text(const lf_pipeline_config_t *m, char *buf, size_t cap)
{
    const char *const *lines = NULL;
    int n = lf_pipeline_config_problems(m, &lines);
    buf[0] = '\0';
    for (int k = 0; k < n; k++)
        snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", k ? "; " : "", lines[k]);
}

/* Runs model i on the group: skip, check, run; fills o. Collective on group. Returns the error
 * that stops the whole registry (a signal), LF_OK otherwise. */
static lf_err_t run_model(MPI_Comm group, int color, const lf_pipeline_config_t *reg, int i,
                          const lf_registry_opts_t *ro, outcome_t *o, int *what)
{
    lf_err_t err = LF_OK, e = LF_OK;
    lf_pipeline_config_t *m = NULL;
    int grank = 0, size = 1;
    MPI_Comm_rank(group, &grank);
    MPI_Comm_size(group, &size);
    char path[LF_PATH_MAX], *record = NULL;
    json_t *prev = NULL;
    double t0 = lf_log_seconds();
    int models = 0;
    const lf_registry_model_t *all = lf_pipeline_config_models(reg, &models);
    o->model = &all[i];
    o->status = "failed";
    o->exit_status = 1;
    state_path(reg, o->model, path, sizeof path);
    e = lf_pipeline_config_member(reg, i, &m);
    if (e != LF_OK || lf_pipeline_config_problems(m, &(const char *const *){NULL}) > 0) {
        /* The template gave this model a bad pipeline (the first model's was checked at load). */
        if (m)
            problems_text(m, o->message, sizeof o->message);
        else
            snprintf(o->message, sizeof o->message, "%s", lf_error_message());
        lf_error_clear();
        o->exit_status = 2;
        *what = FAILED;
        goto done;
    }
    lf_pipeline_t *p = lf_pipeline_config_pipeline_mut(m);
    o->identity = p->identity;
    /* Skip what is done: rank 0 of the group hashes, the group follows its verdict. */
    int skip = 0;
    if (grank == 0) {
        bool same = false;
        prev = load_state(path);
        o->files = json_array();
        e = o->files ? digests(p, p->identity, prev, o->files, &same) : LF_ERR_NOMEM;
        if (e != LF_OK) {
            snprintf(o->message, sizeof o->message, "%s", lf_error_message());
            lf_error_clear();
            skip = -1;
        } else {
            skip = same;
        }
    }
    MPI_Bcast(&skip, 1, MPI_INT, 0, group);
    MPI_Bcast(o->message, (int)sizeof o->message, MPI_CHAR, 0, group);
    if (skip == 1) {
        o->status = "ok";
        o->exit_status = 0;
        *what = SKIPPED;
        goto cleanup; /* its state stays as it is */
    }
    if (skip < 0) {
        *what = FAILED;
        goto done;
    }
    e = lf_pipeline_config_check_files_quietly(group, m);
    if (e == LF_OK)
        e = lf_pipeline_config_make_directories(group, m);
    if (e != LF_OK) {
        problems_text(m, o->message, sizeof o->message);
        if (!o->message[0])
            snprintf(o->message, sizeof o->message, "%s", lf_error_message());
        lf_error_clear();
        o->exit_status = lf_pipeline_exit_status(group, e);
        *what = FAILED;
        goto done;
    }
    p->threads = ro->threads;
    p->progress = ro->progress;
    p->quiet = true; /* lines in the log instead of each model's tables */
    p->group = color;
    e = lf_pipeline_run_recorded(group, p, &record);
    o->record = record ? json_loads(record, 0, NULL) : NULL;
    if (e == LF_OK) {
        o->status = "ok";
        o->exit_status = 0;
        *what = COMPRESSED;
    } else {
        /* The record carries the first failing rank's message to every rank. */
        json_t *msg = json_object_get(json_object_get(o->record, "error"), "message");
        snprintf(o->message, sizeof o->message, "%s",
                 json_is_string(msg) ? json_string_value(msg) : lf_strerror(e));
        o->exit_status = lf_pipeline_exit_status(group, e);
        lf_error_clear();
        *what = FAILED;
        if (e == LF_ERR_INTERRUPTED || e == LF_ERR_CHECKPOINT) {
            o->status = "interrupted";
            err = e;
        }
    }
done:
    o->seconds = lf_log_seconds() - t0;
    LF_CALL(lf_atomic_write_rank0(group, path, write_state_file, o));
cleanup:
    free(record);
    json_decref(prev);
    lf_pipeline_config_destroy(&m);
    return err;
}

/* ---------------------------------------------------------------- the summary */

static const char *const columns[] = {
    "model",          "stem",         "status",  "this_run", "exit_status",
    "params_before",  "params_after", "ratio",   "accuracy", "reference_accuracy",
    "top1_agreement", "max_abs_diff", "seconds", "error",    "state"};
enum { N_COLUMNS = (int)(sizeof columns / sizeof *columns) };

static json_t *summary_row(const lf_pipeline_config_t *reg, int i, int what)
{
    int n = 0;
    const lf_registry_model_t *m = &lf_pipeline_config_models(reg, &n)[i];
    char path[LF_PATH_MAX];
    state_path(reg, m, path, sizeof path);
    json_t *s = load_state(path);
    json_t *rec = json_object_get(s, "record"), *params = json_object_get(rec, "params");
    json_t *ev = json_object_get(rec, "evaluation");
    json_t *row = json_object();
    json_object_set_new(row, "model", json_string(m->written));
    json_object_set_new(row, "stem", json_string(m->stem));
    json_t *status = json_object_get(s, "status");
    json_object_set_new(row, "status", status ? json_incref(status) : json_string("never run"));
    json_object_set_new(row, "this_run", json_string(this_run_names[what]));
    json_object_set(row, "exit_status", json_object_get(s, "exit_status"));
    json_object_set(row, "params_before", json_object_get(params, "before"));
    json_object_set(row, "params_after", json_object_get(params, "after"));
    json_object_set(row, "ratio", json_object_get(params, "ratio"));
    json_object_set(row, "accuracy", json_object_get(ev, "accuracy"));
    json_object_set(row, "reference_accuracy", json_object_get(ev, "reference_accuracy"));
    json_object_set(row, "top1_agreement", json_object_get(ev, "top1_agreement"));
    json_object_set(row, "max_abs_diff", json_object_get(ev, "max_abs_diff"));
    json_object_set(row, "seconds", json_object_get(s, "seconds"));
    json_object_set(row, "error", json_object_get(s, "error"));
    json_object_set_new(row, "state", json_string(path));
    /* Members absent from the state keep JSON null. */
    for (int c = 0; c < N_COLUMNS; c++)
        if (!json_object_get(row, columns[c]))
            json_object_set_new(row, columns[c], json_null());
    json_decref(s);
    return row;
}

static lf_err_t write_summary_json(const char *tmp, const char *path, const void *ctx)
{
    lf_err_t err = LF_OK;
    const json_t *summary = ctx;
    LF_CHECK(json_dump_file(summary, tmp,
                            JSON_PRESERVE_ORDER | JSON_INDENT(2) | JSON_REAL_PRECISION(17)) == 0,
             LF_ERR_IO, "%s: cannot write the summary (%s)", path, strerror(errno));
cleanup:
    return err;
}

static lf_err_t write_summary_csv(const char *tmp, const char *path, const void *ctx)
{
    lf_err_t err = LF_OK;
    const json_t *summary = ctx;
    FILE *f = fopen(tmp, "w");
    LF_CHECK(f != NULL, LF_ERR_IO, "%s: cannot open %s (%s)", path, tmp, strerror(errno));
    LF_CALL(lf_report_csv_row(f, columns, N_COLUMNS));
    size_t k;
    json_t *row;
    json_array_foreach(json_object_get(summary, "rows"), k, row)
    {
        char cells[N_COLUMNS][64];
        const char *fields[N_COLUMNS];
        for (int c = 0; c < N_COLUMNS; c++) {
            json_t *v = json_object_get(row, columns[c]);
            fields[c] = cells[c];
            if (json_is_string(v))
                fields[c] = json_string_value(v);
            else if (json_is_integer(v))
                snprintf(cells[c], sizeof cells[c], "%lld", (long long)json_integer_value(v));
            else if (json_is_real(v))
                snprintf(cells[c], sizeof cells[c], "%.17g", json_real_value(v));
            else
                fields[c] = NULL;
        }
        LF_CALL(lf_report_csv_row(f, fields, N_COLUMNS));
    }
    int closed = fclose(f);
    f = NULL;
    LF_CHECK(closed == 0, LF_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
cleanup:
    if (f)
        fclose(f);
    return err;
}

/* Rank 0 gathers every model's state into SUMMARY.json and SUMMARY.csv. Collective. */
static lf_err_t write_summary(MPI_Comm comm, const lf_pipeline_config_t *reg, const int *what,
                              int *ok_total)
{
    lf_err_t err = LF_OK;
    int n = 0, rank = 0;
    MPI_Comm_rank(comm, &rank);
    lf_pipeline_config_models(reg, &n);
    json_t *summary = NULL;
    char path[LF_PATH_MAX];
    int counts[4] = {0}, ok = 0, failed = 0;
    if (rank == 0) {
        json_t *rows = json_array();
        for (int i = 0; i < n; i++) {
            json_t *row = summary_row(reg, i, what[i]);
            const char *st = json_string_value(json_object_get(row, "status"));
            ok += st && strcmp(st, "ok") == 0;
            failed += st && strcmp(st, "ok") != 0 && strcmp(st, "never run") != 0;
            counts[what[i]]++;
            json_array_append_new(rows, row);
        }
        const char *name = lf_pipeline_config_pipeline(reg)->name;
        summary = json_object();
        if (summary && rows) {
            json_object_set_new(summary, "schema", json_string(LF_REGISTRY_SUMMARY_SCHEMA));
            json_object_set_new(summary, "schema_version", json_integer(1));
            json_object_set_new(summary, "pipeline", json_string(name ? name : ""));
            json_object_set_new(summary, "models", json_integer(n));
            json_object_set_new(summary, "ok", json_integer(ok));
            json_object_set_new(summary, "failed", json_integer(failed));
            json_object_set_new(summary, "compressed_this_run", json_integer(counts[COMPRESSED]));
            json_object_set_new(summary, "skipped_this_run", json_integer(counts[SKIPPED]));
            json_object_set_new(summary, "failed_this_run", json_integer(counts[FAILED]));
            json_object_set_new(summary, "not_run_this_run", json_integer(counts[NOT_RUN]));
            json_object_set_new(summary, "rows", rows);
            rows = NULL;
        }
        json_decref(rows);
    }
    LF_CALL(lf_comm_agree(comm, rank == 0 && !summary ? LF_ERR_NOMEM : LF_OK));
    snprintf(path, sizeof path, "%s.json", lf_pipeline_config_summary(reg));
    LF_CALL(lf_atomic_write_rank0(comm, path, write_summary_json, summary));
    snprintf(path, sizeof path, "%s.csv", lf_pipeline_config_summary(reg));
    LF_CALL(lf_atomic_write_rank0(comm, path, write_summary_csv, summary));
    *ok_total = ok;
    MPI_Bcast(ok_total, 1, MPI_INT, 0, comm);
cleanup:
    json_decref(summary);
    return err;
}

/* ---------------------------------------------------------------- the run */

/* Rows x parameters of the largest model of the shard (rank 0: data set shapes and file sizes
 * only, nothing read). */
static double largest_work(const lf_pipeline_config_t *reg, const int *todo, int n_todo)
{
    double most = 0;
    for (int k = 0; k < n_todo; k++) {
        lf_pipeline_config_t *m = NULL;
        lf_dataset_t *ds = NULL;
        struct stat st;
        if (lf_pipeline_config_member(reg, todo[k], &m) == LF_OK) {
            const lf_pipeline_t *p = lf_pipeline_config_pipeline(m);
            double params = p->model && stat(p->model, &st) == 0 ? (double)st.st_size / 4 : 0;
            if (p->calibration && lf_h5io_dataset_open(MPI_COMM_SELF, p->calibration,
                                                       LF_DATA_SAMPLES, &ds) == LF_OK) {
                double work = params * (double)lf_h5io_dataset_rows(ds);
                most = work > most ? work : most;
            }
            lf_h5io_dataset_close(&ds);
        }
        lf_error_clear();
        lf_pipeline_config_destroy(&m);
    }
    return most;
}

static lf_err_t make_state_dir(MPI_Comm comm, const char *dir)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    if (rank == 0)
        local = lf_atomic_mkdirs(dir);
    LF_CALL(lf_comm_agree(comm, local));
cleanup:
    return err;
}

lf_err_t lf_registry_run(MPI_Comm comm, const lf_pipeline_config_t *reg,
                         const lf_registry_opts_t *ro)
{
    lf_err_t err = LF_OK, stop = LF_OK;
    int n = 0, size = 1, rank = 0, *todo = NULL, *what = NULL, *all_what = NULL;
    MPI_Comm group = MPI_COMM_NULL;
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    lf_pipeline_config_models(reg, &n);
    int shards = ro->shards > 1 ? ro->shards : 1;
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)n + 1, sizeof *todo, (void **)&todo)));
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)n + 1, sizeof *what, (void **)&what)));
    LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)n + 1, sizeof *all_what, (void **)&all_what)));
    int n_todo = 0;
    for (int i = 0; i < n; i++)
        if (i % shards == ro->shard)
            todo[n_todo++] = i;
    LF_CALL(make_state_dir(comm, lf_pipeline_config_state(reg)));

    double work = 0;
    if (lf_pipeline_config_groups(reg) == 0 && size > 1 && rank == 0)
        work = largest_work(reg, todo, n_todo);
    MPI_Bcast(&work, 1, MPI_DOUBLE, 0, comm);
    int groups = lf_registry_groups(size, n_todo, lf_pipeline_config_groups(reg), work);
    int color = (int)((int64_t)rank * groups / size);
    LF_CHECK(MPI_Comm_split(comm, color, rank, &group) == MPI_SUCCESS, LF_ERR_MPI,
             "MPI_Comm_split into %d groups failed", groups);
    int gsize = 1;
    MPI_Comm_size(group, &gsize);
    lf_log(LF_LOG_INFO, comm, "registry: %d models (%d in this run%s), %d group%s of %d rank%s", n,
           n_todo, shards > 1 ? ", one shard" : "", groups, groups == 1 ? "" : "s", size / groups,
           size / groups == 1 ? "" : "s");

    /* Group g takes the shard's models g, g + groups, ...: a fixed assignment, so a rerun
     * makes the same groups do the same models. */
    double t0 = lf_log_seconds();
    int done = 0, mine = 0;
    double last_line = -1e30;
    for (int k = color; k < n_todo; k += groups)
        mine++;
    for (int k = color; k < n_todo && stop == LF_OK; k += groups) {
        outcome_t o = {0};
        int i = todo[k];
        stop = run_model(group, color, reg, i, ro, &o, &what[i]);
        done++;
        double now = lf_log_seconds(), elapsed = now - t0, left = elapsed / done * (mine - done);
        /* At most one line a second per group, but every failure and the group's last model. */
        bool line = what[i] == FAILED || done == mine || now - last_line >= 1.0;
        if (line)
            last_line = now;
        if (!line)
            ;
        else if (what[i] == SKIPPED)
            lf_log(LF_LOG_INFO, group,
                   "model %d of %d (group %d): %s unchanged, skipped; %d left in this group", k + 1,
                   n_todo, color, o.model->stem, mine - done);
        else if (what[i] == COMPRESSED)
            lf_log(LF_LOG_INFO, group,
                   "model %d of %d (group %d): %s compressed, %lld -> %lld parameters in %.2f "
                   "s; %d left in this group, about %.0f s",
                   k + 1, n_todo, color, o.model->stem,
                   (long long)json_integer_value(
                       json_object_get(json_object_get(o.record, "params"), "before")),
                   (long long)json_integer_value(
                       json_object_get(json_object_get(o.record, "params"), "after")),
                   o.seconds, mine - done, left);
        else
            lf_log(LF_LOG_INFO, group, "model %d of %d (group %d): %s FAILED (exit %d): %s", k + 1,
                   n_todo, color, o.model->stem, o.exit_status, o.message);
        json_decref(o.files);
        json_decref(o.record);
        if (stop == LF_OK)
            stop = lf_comm_agree(group, lf_interrupt_check("the registry"));
        lf_error_clear();
    }
    /* Every group is done (or stopped); the whole job agrees on what happened. */
    stop = lf_comm_agree(comm, stop);
    MPI_Allreduce(what, all_what, n, MPI_INT, MPI_MAX, comm);
    int ok = 0;
    LF_CALL(write_summary(comm, reg, all_what, &ok));
    int failed_now = 0;
    for (int i = 0; i < n; i++)
        failed_now += all_what[i] == FAILED;
    int counts[4] = {0};
    for (int i = 0; i < n; i++)
        counts[all_what[i]]++;
    lf_log(LF_LOG_INFO, comm,
           "registry: %d of %d models in this run: %d compressed, %d unchanged (skipped), %d "
           "failed; %d of %d ok overall; summary in %s.json and %s.csv",
           n_todo, n, counts[COMPRESSED], counts[SKIPPED], counts[FAILED], ok, n,
           lf_pipeline_config_summary(reg), lf_pipeline_config_summary(reg));
    if (stop != LF_OK)
        LF_FAIL(stop, "the registry run stopped on a signal; rerun it to continue with the "
                      "models not done");
    LF_CHECK(failed_now == 0, LF_ERR_PARTIAL,
             "%d of %d models failed (%s.csv has each model's error)", failed_now, n_todo,
             lf_pipeline_config_summary(reg));
cleanup:
    if (group != MPI_COMM_NULL)
        MPI_Comm_free(&group);
    lf_free(all_what);
    lf_free(what);
    lf_free(todo);
    return err;
}
