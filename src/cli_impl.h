/* Shared inside the command-line module: the parsed options and the subcommands. Each
 * subcommand is collective on comm and returns an error agreed by all ranks. */
#ifndef LINFOLD_CLI_IMPL_H
#define LINFOLD_CLI_IMPL_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/batch.h"
#include "linfold/decimal.h"
#include "linfold/error.h"

enum { LF_CLI_LIST_MAX = 64 };

typedef struct {
    const char *model, *data, *labels, *stats, *out, *reference, *layer_rule, *select, *file;
    const char *eval_data, *eval_labels, *sweep_text, *sweep_out, *fractions_text, *prune_scope;
    const char *prune_by;
    lf_decimal_t threshold, prune_fraction, target_ratio, max_drop; /* exact, as written */
    lf_decimal_t confidence;                                        /* --confidence */
    bool target, budget; /* --target-ratio, --max-accuracy-drop given */
    bool prune_dead, json, verbose, quiet, progress, no_progress, help, output_sums, reconstruct;
    bool provable, input_nonnegative;
    int64_t batch;
    lf_decimal_t sweep[LF_CLI_LIST_MAX], fractions[LF_CLI_LIST_MAX]; /* parsed lists */
    int n_sweep, n_fractions;
    bool dry_run, print_config, resume; /* run */
    const char *shard;
    const char *merge, *merge_precision; /* compress: the merge path */
    int64_t dist_threshold, dist_block, reconstruct_rows;
    const char *sets[LF_CLI_LIST_MAX]; /* run: --set KEY=VALUE, in order */
    int n_sets;
    uint64_t given; /* bit k: the k-th flag of the flag table was on the command line */
} lf__cli_opts_t;

/* Whether the flag named (e.g. "--threshold") was given. */
bool lf__cli_given(const lf__cli_opts_t *o, const char *flag);
/* Batch options from the flags, with this rank's compute threads. */
lf_batch_opts_t lf__cli_batch_opts(const lf__cli_opts_t *o, const char *what);
int lf__cli_rank(MPI_Comm comm);

lf_err_t lf__cmd_compress(MPI_Comm comm, const lf__cli_opts_t *o);
lf_err_t lf__cmd_calibrate(MPI_Comm comm, const lf__cli_opts_t *o);
lf_err_t lf__cmd_eval(MPI_Comm comm, const lf__cli_opts_t *o);
lf_err_t lf__cmd_predict(MPI_Comm comm, const lf__cli_opts_t *o);
lf_err_t lf__cmd_run(MPI_Comm comm, const lf__cli_opts_t *o);
lf_err_t lf__cmd_inspect(MPI_Comm comm, const lf__cli_opts_t *o);

#endif /* LINFOLD_CLI_IMPL_H */
