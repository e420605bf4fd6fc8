/* Shared inside the distributed-matrix modules (merge_dist.c, dist_ops.c). */
#ifndef LINFOLD_MERGE_DIST_IMPL_H
#define LINFOLD_MERGE_DIST_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/merge_dist.h"

/* Bytes of one local element.
 * Not collective. */
size_t lf__dist_elem_size(lf_dist_prec_t prec);

/* Checks that idx[0..n) is strictly increasing within [0, dim); messages name `what` ("rows",
 * "columns") of object obj in file (file may name a function instead).
 * Not collective. */
lf_err_t lf__dist_check_index(const int64_t *idx, int64_t n, int64_t dim, const char *what,
                              const char *file, const char *obj);

#endif /* LINFOLD_MERGE_DIST_IMPL_H */
