/* Shared inside the pipeline-file modules (pipeline_config.c: parsing and validation;
 * pipeline_effective.c: the effective YAML and --dry-run's plan; pipeline_registry.c: registries;
 * pipeline_files.c: the files a pipeline names). None of it is collective unless it says so. */
#ifndef LINFOLD_PIPELINE_CONFIG_IMPL_H
#define LINFOLD_PIPELINE_CONFIG_IMPL_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/atomic.h"
#include "linfold/hash.h"
#include "linfold/model.h"
#include "linfold/pipeline.h"
#include "linfold/pipeline_config.h"
#include "linfold/yaml_doc.h"

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

extern const char *const lf__cfg_field_names[F__COUNT];

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
    char file_sha256[LF_SHA256_HEX]; /* of the file's bytes */
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
    lf_model_t *model, *reference; /* read by check_files (node-shared), lent to the run */
    lf_stats_t *stats;             /* the statistics file, read and checked there, lent too */
    MPI_Comm comm;                 /* the communicator they are shared on */
    int64_t model_in, model_out, model_params, calib_rows, eval_rows;
    int model_layers;
};

/* Problems: "FILE:LINE:COLUMN: message" at node (or "--set ARG: message" for an override). */
void lf__cfg_diag(lf_pipeline_config_t *c, const lf_yaml_node_t *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A problem whose text already says where it is. */
void lf__cfg_raw_problem(lf_pipeline_config_t *c, const char *text);
/* The message a failed call recorded, as a problem at node; the record is cleared. */
void lf__cfg_diag_error(lf_pipeline_config_t *c, const lf_yaml_node_t *node, lf_err_t e);
/* Prints the problems in reading order on rank 0 (unless kept) and returns LF_ERR_USAGE when
 * there is one. Collective on comm. */
lf_err_t lf__cfg_report_diags(MPI_Comm comm, lf_pipeline_config_t *c, const char *what);
/* Keeps s (owned by c from now on), or frees it and returns NULL when c cannot keep more. */
const char *lf__cfg_keep(lf_pipeline_config_t *c, char *s);
/* A path as written, resolved against the pipeline's directory (NULL when too long). */
const char *lf__cfg_resolve(lf_pipeline_config_t *c, const char *written);
/* Whether two spellings name the same file, or for files not there yet the same directory. */
bool lf__cfg_same_place(const char *a, const char *b);
/* Values: a null scalar; a node's kind for messages; typed getters reporting their problems. */
bool lf__cfg_is_null(const lf_yaml_node_t *n);
const char *lf__cfg_kind_name(const lf_yaml_node_t *n);
bool lf__cfg_get_string(lf_pipeline_config_t *c, const char *key, const lf_yaml_node_t *n,
                        const char **out);
bool lf__cfg_get_count(lf_pipeline_config_t *c, const char *key, const lf_yaml_node_t *n,
                       int64_t *out);
/* Reports every key of map that allowed (NULL-terminated) does not list, with a did-you-mean. */
bool lf__cfg_check_keys(lf_pipeline_config_t *c, const lf_yaml_node_t *map,
                        const char *const *allowed, const char *where);
/* The stage named name, or -1. */
int lf__cfg_stage_of(const char *name);
/* Sets "stage.option", "section.key" or a top-level key to value; problems at pos. */
void lf__cfg_set_key(lf_pipeline_config_t *c, const char *key_text, lf_yaml_node_t *value,
                     const lf_yaml_node_t *pos);
/* Applies the k-th --set. */
void lf__cfg_apply_set(lf_pipeline_config_t *c, int k);
/* The tree into c->p, every problem reported. */
void lf__cfg_parse_root(lf_pipeline_config_t *c, const lf_yaml_node_t *root);
/* An lf_pipeline_report_fn: a problem of the whole pipeline, at the stage it is about. */
void lf__cfg_stage_problem(void *ctx, int stage, const char *msg);
/* The effective YAML of c->p and its SHA-256, the pipeline's identity. */
lf_err_t lf__cfg_build_effective(lf_pipeline_config_t *c);
/* Registries: models:, groups:, overrides:, output.summary/state (collective on comm: rank 0
 * expands the model list), and the members' model list freed. */
lf_err_t lf__cfg_parse_registry(MPI_Comm comm, lf_pipeline_config_t *c);
void lf__cfg_free_models(lf_pipeline_config_t *c);
/* Releases the models check_files read (collective on the communicator it ran on). */
void lf__cfg_release_models(lf_pipeline_config_t *c);

#endif /* LINFOLD_PIPELINE_CONFIG_IMPL_H */
