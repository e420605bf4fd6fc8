/* Shapes: parameter arithmetic of folds without touching weights.
 *
 * A shape is a model reduced to its layer widths and the sources of its blocks. Folding the
 * linear set A (a neurons) of layer l removes a rows from each of l's blocks and its bias,
 * removes a columns from every block that reads l, and gives every reader c of l a block from
 * every source s of l (if it had none); pruning removes rows and columns only. A shape tracks
 * exactly this, so plans and searches can price any set of folds in microseconds; lf_fold_apply
 * checks on every run that the folded model has the parameter count its shape predicted.
 *
 *     lf_shape_t *s = NULL;
 *     lf_shape_create(model, &s);
 *     lf_shape_fold(s, 2, 17);               // fold 17 neurons of layer 2
 *     int64_t params = lf_shape_params(s);
 *     lf_shape_destroy(&s);
 */
#ifndef LINFOLD_SHAPE_H
#define LINFOLD_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/model.h"

typedef struct {
    int n_layers;
    int64_t n_in;
    int64_t *n_out;  /* (n_layers); 0 once removed */
    bool *has_block; /* (n_layers)(n_layers + 1): has_block[i * (L + 1) + src + 1] */
} lf_shape_t;

/* Creates the shape of model m.
 * Not collective.
 * Caller destroys. */
lf_err_t lf_shape_create(const lf_model_t *m, lf_shape_t **out);
/* Makes a copy of shape s.
 * Not collective.
 * Caller destroys. */
lf_err_t lf_shape_copy(const lf_shape_t *s, lf_shape_t **out);
/* Frees *s and sets it to NULL; accepts NULL.
 * Not collective. */
void lf_shape_destroy(lf_shape_t **s);
/* Returns the parameters of the model this shape describes (blocks + biases).
 * Not collective.
 * Counts the zero weight block a layer gets when its predecessor is removed and it had no block
 * from the new predecessor. */
int64_t lf_shape_params(const lf_shape_t *s);
/* Returns the parameters in blocks that are not a layer's weight (skip blocks).
 * Not collective. */
int64_t lf_shape_skip_params(const lf_shape_t *s);
/* Returns the parameters of layer i alone (0 once removed).
 * Not collective. */
int64_t lf_shape_layer_params(const lf_shape_t *s, int i);
/* Returns true when layer i has a block from src.
 * Not collective. */
bool lf_shape_has_block(const lf_shape_t *s, int i, int src);
/* Sets dst = src for two shapes of the same model.
 * Not collective. */
void lf_shape_copy_into(lf_shape_t *dst, const lf_shape_t *src);
/* Removes `count` neurons of layer i without folding them (dead-neuron pruning).
 * Not collective. */
void lf_shape_prune(lf_shape_t *s, int i, int64_t count);
/* Folds `count` linear neurons of layer i into every layer that reads it.
 * Not collective. */
void lf_shape_fold(lf_shape_t *s, int i, int64_t count);

#endif /* LINFOLD_SHAPE_H */
