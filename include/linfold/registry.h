/* Registry runs: one pipeline file over many models (the nightly job), incremental, isolated,
 * and several models at once on groups of ranks.
 *
 * - Incremental: a state file per model (STATE/<stem>.json) records the SHA-256 of the model,
 *   of every data file it reads and of its effective pipeline, and the result. A model whose
 *   inputs and pipeline are unchanged and that succeeded before is skipped; a failed one is
 *   retried. Files whose size, modification time and inode are unchanged keep their recorded
 *   digest, so an unchanged registry is not re-read.
 * - Isolated: one model's failure (a corrupt file, bad data, no memory for its plan) is recorded
 *   with its message and the others go on; the run then ends with LF_ERR_PARTIAL (exit 3).
 *   A signal stops every group at its next batch boundary (LF_ERR_INTERRUPTED, or
 *   LF_ERR_CHECKPOINT when the pipeline checkpoints): the models done so far are recorded, and a
 *   rerun continues with the others.
 * - Groups: the ranks split into groups (MPI_Comm_split), each compressing its share of the
 *   models with its own sharded calibration. Every result is rank-count invariant, so a grouped
 *   run writes the same files as a one-group run.
 * - A summary (SUMMARY.json and SUMMARY.csv) with a row per model of the whole registry is
 *   written by rank 0 at the end of every run, from the state files.
 *
 *     lf_registry_opts_t o = {.threads = 1, .shard = 0, .shards = 1};
 *     lf_registry_run(comm, cfg, &o);   // collective; cfg from lf_pipeline_config_load
 */
#ifndef LINFOLD_REGISTRY_H
#define LINFOLD_REGISTRY_H

#include <mpi.h>
#include <stdbool.h>

#include "linfold/error.h"
#include "linfold/pipeline_config.h"

#define LF_REGISTRY_STATE_SCHEMA "linfold-registry-state"
#define LF_REGISTRY_SUMMARY_SCHEMA "linfold-registry-summary"

typedef struct {
    int threads;
    bool progress, quiet;
    int shard, shards; /* run models i with i % shards == shard (shards <= 1: all) */
} lf_registry_opts_t;

/* Runs every model of the registry cfg names (those of this shard).
 * Collective on comm.
 * LF_ERR_PARTIAL when some models failed (the summary says which and why), LF_ERR_INTERRUPTED
 * or LF_ERR_CHECKPOINT when a signal stopped the run, LF_OK otherwise. */
lf_err_t lf_registry_run(MPI_Comm comm, const lf_pipeline_config_t *cfg,
                         const lf_registry_opts_t *o);

/* Rank groups for n models on size ranks: groups (> 0) as asked, else sized from the largest
 * model's work, rows x parameters: one group per 2^32 of it a rank (docs/pipeline.md).
 * Not collective. Never more groups than ranks or models, at least 1. */
int lf_registry_groups(int size, int n_models, int64_t groups, double max_work);

#endif /* LINFOLD_REGISTRY_H */
