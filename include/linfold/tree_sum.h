/* Sums of long vectors over ordered groups of rows, bitwise identical at any rank count.
 *
 * Floating-point addition is not associative, so a sum reduced over ranks (MPI_Allreduce) or
 * threads depends on how the work was split. Here the rows are cut into groups of a fixed size
 * (the caller's), each group's vector is computed the same way wherever it runs, and the groups
 * are added along one fixed pairwise tree over their global indices: node (level l, index k)
 * covers groups [k 2^l, (k + 1) 2^l) and is the sum of its two children, left + right (a node
 * whose right child holds no group is its left child). Each rank owns a contiguous run of groups
 * and adds the subtrees that lie inside it as the groups arrive, keeping at most one node per
 * level (a binary counter); the nodes that cross ranks are added on rank 0 in the same tree. The
 * total is the tree's root, whatever the rank count; pairwise addition is also more accurate
 * than a running sum (error O(log n) instead of O(n) roundings). A rank that receives every
 * group (the refit's panel owners, refit.c) finishes its tree alone, on MPI_COMM_SELF.
 *
 *     lf_tree_sum_t *t = NULL;
 *     lf_tree_sum_create(len, n_groups, &t);
 *     for (g = first; g < last; g++) { ...v = this group's sums...; lf_tree_sum_push(t, g, v); }
 *     lf_tree_sum_finish(comm, t, total);   // collective: the root on every rank
 *     lf_tree_sum_destroy(&t);
 */
#ifndef LINFOLD_TREE_SUM_H
#define LINFOLD_TREE_SUM_H

#include <mpi.h>
#include <stdint.h>

#include "linfold/error.h"

typedef struct lf_tree_sum lf_tree_sum_t;

/* A tree for vectors of len doubles over groups 0 .. n_groups - 1.
 * Not collective.
 * Holds at most one vector per level (log2(n_groups) + 1 of them) on each rank. */
lf_err_t lf_tree_sum_create(int64_t len, int64_t n_groups, lf_tree_sum_t **out);
/* Adds group g's vector v (copied).
 * Not collective.
 * A rank pushes its groups in ascending order, one contiguous run of them. */
lf_err_t lf_tree_sum_push(lf_tree_sum_t *t, int64_t g, const double *v);
/* Completes the tree from every rank's nodes and writes the total (len doubles, zeros when no
 * group was pushed anywhere) to total on every rank.
 * Collective on comm.
 * The ranks' runs must follow each other in rank order (rank 0 the first groups) and together
 * cover every group once. Errors are agreed. */
lf_err_t lf_tree_sum_finish(MPI_Comm comm, lf_tree_sum_t *t, double *total);
/* Frees *t and sets it to NULL; accepts NULL.
 * Not collective. */
void lf_tree_sum_destroy(lf_tree_sum_t **t);

#endif /* LINFOLD_TREE_SUM_H */
