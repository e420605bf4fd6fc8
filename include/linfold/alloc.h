/* Checked allocation. Every allocation of linfold goes through these so that size products are
 * checked for overflow and tests can inject failures (lf_alloc_fail_after()). */
#ifndef LINFOLD_ALLOC_H
#define LINFOLD_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "linfold/error.h"

/* Allocates a zero-filled array of n elements of size bytes into *out.
 * Not collective.
 * n = 0 gives a valid 1-byte block so that callers need no special case. Fails with
 * LF_ERR_OVERFLOW or LF_ERR_NOMEM. */
lf_err_t lf_calloc(size_t n, size_t size, void **out);
/* Allocates like lf_calloc but leaves the memory uninitialised.
 * Not collective. */
lf_err_t lf_malloc(size_t n, size_t size, void **out);
/* Resizes *p to n elements of size bytes.
 * Not collective.
 * On failure *p is unchanged. */
lf_err_t lf_realloc(size_t n, size_t size, void **p);
/* Frees p with free().
 * Not collective.
 * Accepts NULL. */
void lf_free(void *p);
/* Test hook: makes the (k+1)-th allocation from now fail with LF_ERR_NOMEM.
 * Not collective.
 * k < 0 disables it. */
void lf_alloc_fail_after(int64_t k);

#endif /* LINFOLD_ALLOC_H */
