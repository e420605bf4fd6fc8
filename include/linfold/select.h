/* Choosing the set of layers to fold: greedy and exact (branch and bound).
 *
 * Input: the shape of the model after pruning and a[i], the number of linear neurons of layer i
 * (0 where layer i cannot fold). Folding a layer folds all of its linear neurons (plan.h explains
 * why a part never does better), so a plan is a subset S of the layers with a[i] > 0, applied
 * from the input side; its cost is the parameter count of the resulting shape.
 *
 *     bool fold[L];
 *     int64_t nodes = 0;
 *     lf_select_optimal(pruned, a, fold, &nodes);   // fold[i]: layer i is in the best set
 */
#ifndef LINFOLD_SELECT_H
#define LINFOLD_SELECT_H

#include <stdbool.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/shape.h"

/* The most layers with linear neurons lf_select_optimal accepts. */
#define LF_SELECT_OPTIMAL_MAX 30

/* Computes the parameters after folding the layers marked in fold (input side first).
 * Not collective. */
lf_err_t lf_select_cost(const lf_shape_t *pruned, const int64_t *a, const bool *fold,
                        int64_t *cost);

/* Chooses the set of layers to fold greedily.
 * Not collective.
 * From no fold, repeatedly adds the layer whose fold lowers the cost most given the layers
 * already chosen, while some fold lowers it. *nodes counts the shapes priced. */
lf_err_t lf_select_greedy(const lf_shape_t *pruned, const int64_t *a, bool *fold, int64_t *nodes);

/* Finds the set of layers to fold with the fewest parameters, exactly.
 * Not collective.
 * Depth-first branch and bound over the layers with a[i] > 0, from the input side, pruned by a
 * lower bound that later folds cannot undercut (docs/algorithm.md has the proof). Ties keep the
 * first set found (folds tried first). LF_ERR_ARG beyond LF_SELECT_OPTIMAL_MAX candidate
 * layers. */
lf_err_t lf_select_optimal(const lf_shape_t *pruned, const int64_t *a, bool *fold, int64_t *nodes);

#endif /* LINFOLD_SELECT_H */
