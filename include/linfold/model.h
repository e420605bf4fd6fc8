/* The in-memory MLP in the general form of model format v1.
 *
 * Layer i computes z_i = sum over its blocks (src, W) of W · a_src, plus bias_i, then
 * a_i = act_i(z_i). A block's src is LF_SRC_INPUT (-1, the model input) or an earlier layer j < i;
 * the block from the immediate predecessor (src = i - 1) is the layer's `weight` and is always
 * present (possibly all zeros), the others are skip blocks. Layout everywhere: row-major,
 * W has shape (n_out_i, width(src)), y = W x + b. Every rank holds the same model.
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

typedef struct {
    int64_t n_in;
    int n_layers;
    lf_layer_t *layers;
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
 * Not collective. */
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

/* Returns a 64-bit FNV-1a hash over the structure and all values.
 * Not collective.
 * It identifies the model a statistics file was computed for. */
uint64_t lf_model_fingerprint(const lf_model_t *m);

#endif /* LINFOLD_MODEL_H */
