/* Checked allocation. Every allocation of linfold goes through these so that size products are
 * checked for overflow and tests can inject failures (lf_alloc_fail_after()). */
#ifndef LINFOLD_ALLOC_H
#define LINFOLD_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "linfold/error.h"

/* *out = zero-filled array of n elements of size bytes; n = 0 gives a valid 1-byte block so that
 * callers need no special case. Fails with LF_ERR_OVERFLOW or LF_ERR_NOMEM. Not collective. */
lf_err_t lf_calloc(size_t n, size_t size, void **out);
/* Like lf_calloc but uninitialised. Not collective. */
lf_err_t lf_malloc(size_t n, size_t size, void **out);
/* Resizes *p to n elements; on failure *p is unchanged. Not collective. */
lf_err_t lf_realloc(size_t n, size_t size, void **p);
/* free(); accepts NULL. Not collective. */
void lf_free(void *p);
/* Test hook: the (k+1)-th allocation from now fails with LF_ERR_NOMEM; k < 0 disables. */
void lf_alloc_fail_after(int64_t k);

#endif /* LINFOLD_ALLOC_H */
