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

/* Frees *cfg and sets it to NULL; accepts NULL.
 * Not collective. */
void lf_pipeline_config_destroy(lf_pipeline_config_t **cfg);

#endif /* LINFOLD_PIPELINE_CONFIG_H */
