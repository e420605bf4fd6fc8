/* The per-layer statistics of the files that hold them (internal to src/).
 *
 * The statistics file and the checkpoint file (docs/format.md) keep the same datasets in the
 * group /layers/<i> of every layer i: positive and negative (int64), zmin and zmax (float32),
 * n_out elements each, followed by the layer's output sums in the form of the file (the sums
 * rounded, or exact). Their readers send the same figures from their reader process
 * (sandbox_impl.h) in the same order, and check them with the same rules. stats_file.c holds the
 * one implementation of each, for both files.
 *
 *     LF_CALL(lf__stats_write_layers(file, s, LF__STATS_SUMS_EXACT));        // writing
 *     LF_CALL(lf__stats_read_layer(&f, i, &s->layers[i]));                   // reading
 *     LF_CALL(lf__stats_read_sums(&f, i, LF__STATS_SUMS_EXACT, &s->layers[i]));
 */
#ifndef LINFOLD_STATS_FILE_IMPL_H
#define LINFOLD_STATS_FILE_IMPL_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "h5io_impl.h"
#include "sandbox_impl.h"
#include "linfold/error.h"
#include "linfold/stats.h"

/* The output sums a file holds for each layer. */
typedef enum {
    LF__STATS_SUMS_NONE,    /* none */
    LF__STATS_SUMS_ROUNDED, /* output_sum: float64 (n_out), out_sum (the statistics file), and
                               output_square_sum, sq_sum, when s->with_squares */
    LF__STATS_SUMS_EXACT,   /* exact and exact_square: uint64 (n_out, 16), exact and exact_sq
                               (the checkpoint file) */
} lf__stats_sums_t;

/* Writes the group /layers of file: its attribute count, and for every layer of s the group
 * /layers/<i> with positive, negative, zmin, zmax and the sums of the kind given.
 * Not collective (the file is rank 0's, in memory). */
lf_err_t lf__stats_write_layers(hid_t file, const lf_stats_t *s, lf__stats_sums_t sums);

/* Reads positive, negative, zmin and zmax of /layers/<i> of f into ls, ls->n_out elements each.
 * Not collective.
 * A dataset of another length is LF_ERR_SHAPE; one that is missing or of another kind is the
 * error of lf__h5_open_dataset. */
lf_err_t lf__stats_read_layer(const lf__h5_file_t *f, int i, lf_layer_stats_t *ls);

/* Reads the sums of /layers/<i> of f of the kind given into ls (nothing for LF__STATS_SUMS_NONE).
 * Not collective.
 * Errors as lf__stats_read_layer's. */
lf_err_t lf__stats_read_sums(const lf__h5_file_t *f, int i, lf__stats_sums_t sums,
                             lf_layer_stats_t *ls);

/* Reads the sums of squares of /layers/<i> of f of the kind given into ls: output_square_sum
 * into sq_sum (LF__STATS_SUMS_ROUNDED), exact_square into exact_sq (LF__STATS_SUMS_EXACT).
 * Not collective.
 * Errors as lf__stats_read_layer's. */
lf_err_t lf__stats_read_squares(const lf__h5_file_t *f, int i, lf__stats_sums_t sums,
                                lf_layer_stats_t *ls);

/* Checks that the counts and extremes of neuron j of ls, layer gpath ("/layers/2") of file,
 * are ones a pass over `samples` rows produces: LF_ERR_FORMAT for counts below zero or above
 * the samples, range_err for extremes that are not finite, not in order, or disagree with the
 * counts.
 * Not collective. */
lf_err_t lf__stats_check_neuron(const char *file, const char *gpath, const lf_layer_stats_t *ls,
                                int64_t j, int64_t samples, lf_err_t range_err);

/* Reader process side: sends every layer's positive, negative, zmin, zmax and sums of the kind
 * given, as they are in memory (out_sum, and sq_sum when s->with_squares; exact and exact_sq).
 * Not collective.
 * false when the parent is gone. */
bool lf__stats_send_layers(const lf_stats_t *s, lf__stats_sums_t sums);

/* Parent side: receives what lf__stats_send_layers() sent into s, created for the model (the
 * sizes are the model's, never the child's), with s->with_squares set as the sender's.
 * Not collective. */
lf_err_t lf__stats_receive_layers(lf__sandbox_t *sb, lf_stats_t *s, lf__stats_sums_t sums);

#endif /* LINFOLD_STATS_FILE_IMPL_H */
