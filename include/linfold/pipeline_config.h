/* Pipeline files: YAML (docs/pipeline.md) into an lf_pipeline_t, with every problem reported at
 * once as "FILE:LINE:COLUMN: message" before any work.
 *
 * Rank 0 reads the file and broadcasts its bytes; every rank parses the same text, so every rank
 * reaches the same verdict without further communication. Paths in the file are relative to the
 * file's directory. `--set STAGE.KEY=VALUE` overrides apply to the parsed tree before validation,
 * and their problems are reported as "--set STAGE.KEY=VALUE: message".
 *
 *     lf_pipeline_config_t *cfg = NULL;
 *     err = lf_pipeline_config_load(comm, "pipelines/digits.yaml", sets, n_sets, &cfg);
 *     err = lf_pipeline_config_check_files(comm, cfg);          // inputs exist and fit
 *     lf_pipeline_run(comm, lf_pipeline_config_pipeline(cfg));
 *     lf_pipeline_config_destroy(&cfg);
 */
#ifndef LINFOLD_PIPELINE_CONFIG_H
#define LINFOLD_PIPELINE_CONFIG_H

#include <mpi.h>
#include <stdio.h>

#include "linfold/error.h"
#include "linfold/pipeline.h"

typedef struct lf_pipeline_config lf_pipeline_config_t;

/* A model of a registry (a pipeline with `models:`). */
typedef struct {
    char *written; /* as the pipeline names it: relative to the pipeline's directory, or absolute */
    char *path;    /* resolved */
    char *stem;    /* its file name without the extension: {stem} in templates */
} lf_registry_model_t;

/* Reads, parses, overrides and validates the pipeline file at path.
 * Collective on comm.
 * Problems are printed by rank 0 on stderr, one line each, and the call returns LF_ERR_USAGE
 * (the same on every rank). */
lf_err_t lf_pipeline_config_load(MPI_Comm comm, const char *path, const char *const *sets,
                                 int n_sets, lf_pipeline_config_t **out);

/* Opens every input named by the pipeline and checks it against the model: files and data sets
 * exist, widths and row counts match, outputs replace no input. Problems are reported like
 * lf_pipeline_config_load()'s, all at once.
 * Collective on comm. */
lf_err_t lf_pipeline_config_check_files(MPI_Comm comm, lf_pipeline_config_t *cfg);

/* Creates the output directories that check_files found missing (rank 0, like mkdir -p).
 * Collective on comm. */
lf_err_t lf_pipeline_config_make_directories(MPI_Comm comm, const lf_pipeline_config_t *cfg);

/* The pipeline the file describes (paths resolved).
 * Not collective. */
const lf_pipeline_t *lf_pipeline_config_pipeline(const lf_pipeline_config_t *cfg);
lf_pipeline_t *lf_pipeline_config_pipeline_mut(lf_pipeline_config_t *cfg);

/* The effective pipeline as YAML, every default filled in and paths as written (relative to the
 * file): what --print-config prints and what the pipeline's SHA-256 is computed over.
 * Not collective. */
const char *lf_pipeline_config_effective(const lf_pipeline_config_t *cfg);

/* Prints the resolved plan (--dry-run): inputs with their shapes, each stage with every option,
 * outputs.
 * Not collective. */
void lf_pipeline_config_print_plan(const lf_pipeline_config_t *cfg, FILE *f);

/* Whether the file is a registry (names many models), and its models, groups (0: auto),
 * summary (path without extension) and state directory.
 * Not collective. */
bool lf_pipeline_config_is_registry(const lf_pipeline_config_t *cfg);
const lf_registry_model_t *lf_pipeline_config_models(const lf_pipeline_config_t *cfg, int *n);
int64_t lf_pipeline_config_groups(const lf_pipeline_config_t *cfg);
const char *lf_pipeline_config_summary(const lf_pipeline_config_t *cfg);
const char *lf_pipeline_config_state(const lf_pipeline_config_t *cfg);

/* Builds the pipeline of model i of a registry: its templates ({stem}, {name}, {dir}) filled
 * in, the overrides that match it and the --set values applied, validated like a pipeline file.
 * Not collective (every rank that calls it gets the same answer).
 * *out is made even when the member has problems: lf_pipeline_config_problems() says which. */
lf_err_t lf_pipeline_config_member(const lf_pipeline_config_t *registry, int i,
                                   lf_pipeline_config_t **out);

/* The problems found so far ("FILE:LINE:COLUMN: message" each), and their number.
 * Not collective. */
int lf_pipeline_config_problems(const lf_pipeline_config_t *cfg, const char *const **lines);

/* Like lf_pipeline_config_check_files(), but keeps the problems in cfg instead of printing them
 * (a registry records them as the model's failure).
 * Collective on comm. */
lf_err_t lf_pipeline_config_check_files_quietly(MPI_Comm comm, lf_pipeline_config_t *cfg);

/* Frees *cfg and sets it to NULL; accepts NULL.
 * Collective on the communicator of lf_pipeline_config_check_files() once that has run (the
 * models it read are shared by the ranks of a node); not collective before. */
void lf_pipeline_config_destroy(lf_pipeline_config_t **cfg);

#endif /* LINFOLD_PIPELINE_CONFIG_H */
