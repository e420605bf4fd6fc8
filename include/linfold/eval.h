/* Accuracy, agreement and output differences over sharded rows, and sharded prediction.
 *
 * The predicted class of an output row is its argmax (first maximum on ties); a model with a
 * single output is a binary classifier whose class is 1 when the output exceeds 0.5 (sigmoid) or
 * 0 (any other activation: a logit). Counts are reduced as int64 sums and the largest difference
 * with MPI_MAX, so every figure is identical at any rank count.
 *
 *     lf_eval_result_t r;
 *     lf_eval_run(comm, model, reference, x, labels, &opts, &r);   // collective
 */
#ifndef LINFOLD_EVAL_H
#define LINFOLD_EVAL_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/batch.h"
#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/model.h"

typedef struct {
    int64_t samples;
    int64_t params;
    bool has_labels;
    int64_t correct; /* with labels */
    bool has_reference;
    int64_t ref_params;
    int64_t ref_correct; /* with labels and a reference */
    int64_t agree;       /* rows whose predicted class equals the reference's */
    /* The discordant pairs (with labels and a reference): rows the reference classifies right
     * and the model wrong, and the reverse. ref_correct - correct == worse - better. */
    int64_t worse, better;
    double max_abs_diff; /* largest |output - reference output| over all rows and outputs */
} lf_eval_result_t;

/* Returns the predicted class of one output row of width n (see above).
 * Not collective. */
int64_t lf_eval_class(lf_act_t act, const float *row, int64_t n);

/* Evaluates m, and optionally a reference model, on the rows of x sharded over comm.
 * Collective on comm.
 * reference and labels may be NULL. *res is identical on all ranks. LF_ERR_SHAPE when x or
 * reference do not fit m, LF_ERR_VALUE on a label outside the model's classes. */
lf_err_t lf_eval_run(MPI_Comm comm, const lf_model_t *m, const lf_model_t *reference,
                     lf_dataset_t *x, lf_dataset_t *labels, const lf_batch_opts_t *opts,
                     lf_eval_result_t *res);

/* Writes m's outputs on x to `path` as /outputs (n, n_out), rows in dataset order, atomically.
 * Collective on comm.
 * Rows are written with collective transfers to a temporary file that is renamed into place
 * only when complete. */
lf_err_t lf_eval_predict(MPI_Comm comm, const lf_model_t *m, lf_dataset_t *x, const char *path,
                         const lf_batch_opts_t *opts);

#endif /* LINFOLD_EVAL_H */
