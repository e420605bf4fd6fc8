/* The in-memory MLP in the general form of model format v1.
 *
 * Layer i computes z_i = sum over its blocks (src, W) of W · a_src, plus bias_i, then
 * a_i = act_i(z_i). A block's src is LF_SRC_INPUT (-1, the model input) or an earlier layer j < i;
 * the block from the immediate predecessor (src = i - 1) is the layer's `weight` and is always
 * present (possibly all zeros), the others are skip blocks. Layout everywhere: row-major,
 * W has shape (n_out_i, width(src)), y = W x + b. Every rank holds the same model, either its own
 * copy or, for a shared model (below), one copy per node.
 *
 *     lf_model_t *m = NULL;
 *     lf_model_create(64, 2, &m);
 *     lf_model_layer_init(m, 0, 32, LF_ACT_RELU, 0.0f);
 *     lf_model_layer_init(m, 1, 10, LF_ACT_IDENTITY, 0.0f);
 *     ... fill lf_model_block(m, i, i - 1)->w and m->layers[i].bias ...
 *     lf_model_destroy(&m);
 */
#ifndef LINFOLD_MODEL_H
#define LINFOLD_MODEL_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "linfold/error.h"

#define LF_SRC_INPUT (-1)

typedef enum {
    LF_ACT_RELU,
    LF_ACT_LEAKY_RELU,
    LF_ACT_IDENTITY,
    LF_ACT_SIGMOID,
    LF_ACT_TANH,
    LF_ACT_SOFTMAX,
} lf_act_t;

typedef struct {
    int src;  /* LF_SRC_INPUT or the index of an earlier layer */
    float *w; /* row-major (n_out of the layer, width(src)) */
} lf_block_t;

typedef struct {
    int64_t n_out;
    lf_act_t act;
    float alpha; /* negative slope, leaky_relu only */
    float *bias; /* (n_out) */
    int n_blocks;
    lf_block_t *blocks; /* sorted by src, ascending; the last one is the predecessor block */
} lf_layer_t;

/* The node's shared window a model's arrays live in (model.c); NULL for a private model. */
typedef struct lf_model_shared lf_model_shared_t;

typedef struct {
    int64_t n_in;
    int n_layers;
    lf_layer_t *layers;
    lf_model_shared_t *shared; /* set by lf_model_share*(): biases and weights are in its window */
} lf_model_t;

/* Returns the name of act used in files ("relu", ...).
 * Not collective. */
const char *lf_act_name(lf_act_t act);
/* Parses an activation name into *out.
 * Not collective.
 * LF_ERR_FORMAT for an unknown one. */
lf_err_t lf_act_parse(const char *name, lf_act_t *out);
/* Returns true for the activations whose neurons can be linear.
 * Not collective.
 * Those are the identity on z > 0 (relu, leaky_relu) or everywhere (identity). */
bool lf_act_is_piecewise_linear(lf_act_t act);

/* Returns true for a hidden layer (not the output layer) with relu or leaky_relu neurons: the
 * layers whose neurons can be linear on some rows and not others, be pruned by importance, or
 * be provably linear.
 * Not collective. */
bool lf_model_hidden_relu_like(const lf_model_t *m, int i);

/* Creates a model with n_layers uninitialised layers (n_out = 0).
 * Not collective.
 * Caller destroys. LF_ERR_ARG unless n_in >= 1 and n_layers >= 1. */
lf_err_t lf_model_create(int64_t n_in, int n_layers, lf_model_t **out);
/* Initialises layer i, allocating its bias and a zero predecessor block.
 * Not collective.
 * Layers below i must be initialised. LF_ERR_ARG unless n_out >= 1. */
lf_err_t lf_model_layer_init(lf_model_t *m, int i, int64_t n_out, lf_act_t act, float alpha);
/* Frees *m and sets it to NULL; accepts NULL.
 * Not collective.
 * A shared model (lf_model_is_shared) must be freed with lf_model_release(): freeing its window
 * is collective, so lf_model_destroy() of one aborts the job (LF_ASSERT) instead of hanging. */
void lf_model_destroy(lf_model_t **m);
/* Makes a deep copy of m.
 * Not collective.
 * Caller destroys. */
lf_err_t lf_model_copy(const lf_model_t *m, lf_model_t **out);

/* Returns the width of a source: n_in for LF_SRC_INPUT, else the layer's n_out.
 * Not collective. */
int64_t lf_model_width(const lf_model_t *m, int src);
/* Returns layer i's block from src, or NULL.
 * Not collective. */
lf_block_t *lf_model_block(const lf_model_t *m, int i, int src);
/* Returns layer i's block from src, created zero-filled when missing.
 * Not collective. */
lf_err_t lf_model_block_ensure(lf_model_t *m, int i, int src, lf_block_t **out);

/* Returns the parameter count of layer i: every weight element of its blocks plus its biases.
 * Not collective. */
int64_t lf_model_layer_params(const lf_model_t *m, int i);
/* Returns the elements of non-predecessor (skip) blocks.
 * Not collective. */
int64_t lf_model_skip_params(const lf_model_t *m);
/* Returns the parameter count: every weight element of every block plus biases.
 * Not collective. */
int64_t lf_model_params(const lf_model_t *m);
/* Returns the width of the model output.
 * Not collective. */
int64_t lf_model_n_out(const lf_model_t *m);

/* Deletes the neurons of layer i whose keep[j] is false.
 * Not collective.
 * Removes their rows in layer i's blocks and bias and their columns in every block that reads
 * layer i. A layer left empty is removed and later layers are renumbered; a consumer left
 * without a predecessor block gets a zero one. */
lf_err_t lf_model_remove_neurons(lf_model_t *m, int i, const bool *keep);

/* Writes the file path of layer i's block from src to buf.
 * Not collective.
 * "/layers/3/weight", "/layers/3/skip/input" or "/layers/3/skip/1". */
void lf_model_block_path(char *buf, size_t cap, int i, int src);

/* Checks the structure (sources, widths) and that every value is finite.
 * Not collective.
 * `name` (a file path) prefixes the messages. LF_ERR_FORMAT, LF_ERR_SHAPE or LF_ERR_VALUE. */
lf_err_t lf_model_validate(const lf_model_t *m, const char *name);

/* Gives every rank root's model: *m on root, a new model (caller destroys) elsewhere.
 * Collective on comm.
 * *m must be NULL on the other ranks. */
lf_err_t lf_model_bcast(MPI_Comm comm, int root, lf_model_t **m);

/* ---------------------------------------------------------------- one copy per node
 *
 * A shared model is an ordinary lf_model_t whose biases and weights point into one MPI-3
 * shared-memory window per node (MPI_Win_allocate_shared on the node's ranks, all of it
 * allocated by the node's first rank): the ranks of a node hold one copy between them. Only its
 * small bookkeeping (layer and block arrays) is per rank. Everything that reads a model (forward,
 * statistics, evaluation, prediction, fold's lf_fold_apply, writing, lf_model_copy) takes it
 * unchanged; the mutators (lf_model_layer_init, lf_model_block_ensure, lf_model_remove_neurons,
 * hence lf_fold_layer) refuse it with LF_ASSERT. Its structure is fixed; its values change only
 * through lf_model_update (a plain store into the window would race with the node's readers).
 * Layout: per layer its bias, then its blocks in order, each array starting at a multiple of
 * LF_MODEL_SHARED_ALIGN bytes from the window base (zero padding between), so the window holds
 * lf_model_shared_layout_bytes() bytes.
 *
 *     lf_model_t *m = NULL;
 *     lf_h5io_read_model_shared(comm, "model.h5", &m);   // collective (h5io.h)
 *     lf_stats_collect(comm, m, data, &opts, false, &s);  // as with any model
 *     lf_model_release(comm, &m);                         // collective; not lf_model_destroy */

#define LF_MODEL_SHARED_ALIGN 64 /* a cache line; also the widest SIMD load */

/* Fills dst, a model whose arrays point into the new window, with the values; run on root only
 * (lf_model_share_filled), or stores new values into a model (lf_model_update).
 * Returns an error to abandon the load or the change (every rank then fails with it agreed). */
typedef lf_err_t (*lf_model_fill_fn)(void *ctx, lf_model_t *dst);

/* Returns true when m's arrays live in a node's shared window.
 * Not collective. */
bool lf_model_is_shared(const lf_model_t *m);
/* Returns the bytes the shared layout of m takes: the sum over its bias and block arrays of their
 * size rounded up to LF_MODEL_SHARED_ALIGN. Works on any model.
 * Not collective. */
int64_t lf_model_shared_layout_bytes(const lf_model_t *m);
/* Returns the size in bytes of the node's window m lives in (as MPI_Win_shared_query reports it
 * for the node's first rank): lf_model_shared_layout_bytes(m) for a shared model, 0 for a private
 * one.
 * Not collective. */
int64_t lf_model_shared_window_bytes(const lf_model_t *m);
/* Returns the number of ranks sharing m's window (1 for a private model).
 * Not collective. */
int lf_model_shared_ranks(const lf_model_t *m);

/* Builds a shared model with the structure of `shape` (root only; its arrays are not read and may
 * be NULL) and has fill() write its values on root, then gives them to every node: root's node
 * sees root's stores, the other nodes receive a broadcast among the nodes' first ranks.
 * Collective on comm.
 * *out (caller releases with lf_model_release) is the same model on every rank; comm must stay
 * valid until then. Errors (including fill's) are agreed: on failure *out is NULL everywhere. */
lf_err_t lf_model_share_filled(MPI_Comm comm, int root, const lf_model_t *shape,
                               lf_model_fill_fn fill, void *ctx, lf_model_t **out);
/* Gives every rank root's model m as a shared model; m is read on root only (NULL elsewhere) and
 * stays the caller's.
 * Collective on comm.
 * Root holds m and the window's copy until it destroys m. */
lf_err_t lf_model_share(MPI_Comm comm, int root, const lf_model_t *m, lf_model_t **out);
/* Changes m's values in place: write(ctx, m) stores the new values (it must not change the
 * structure), and afterwards every rank of comm sees them. For a shared model write runs on the
 * first rank of each node's window only, between two synchronisations of the window (every rank
 * of the node has finished its loads before the first store, and sees every store after the
 * call); every node has its own copy, so write must store the same values on every node's first
 * rank, from data all of them hold. For a private model write runs on every rank.
 * Collective on comm (for a shared model, the communicator it was shared on).
 * Errors (write's included) are agreed; after one the values are unspecified (partly written,
 * possibly different between nodes). A shared model's remembered fingerprint is forgotten. */
lf_err_t lf_model_update(MPI_Comm comm, lf_model_t *m, lf_model_fill_fn write, void *ctx);
/* Frees *m, shared or private, and sets it to NULL.
 * Collective on comm (the communicator the model was shared on).
 * For a shared model every rank of comm must call it, in the same order as for its other shared
 * models (it frees the node's window, MPI_Win_free); for a private model it is lf_model_destroy.
 * *m must be of the same kind on every rank: all NULL, all private or all shared. Whoever may
 * hold a shared model frees it here; lf_model_destroy stays for models known to be private. */
void lf_model_release(MPI_Comm comm, lf_model_t **m);
/* Test hook: splits every node further into groups of `ranks` consecutive ranks, each with its
 * own window, so that one machine exercises the broadcast among windows; 0 restores one window
 * per node.
 * Not collective, but must be equal on every rank before lf_model_share*. */
void lf_model_share_test_group(int ranks);

/* Returns a 64-bit FNV-1a hash over the structure and all values.
 * Not collective.
 * It identifies the model a statistics file was computed for. A shared model's hash is computed
 * on the first call and remembered until lf_model_update changes its values (not thread-safe on
 * that first call). */
uint64_t lf_model_fingerprint(const lf_model_t *m);

#endif /* LINFOLD_MODEL_H */
