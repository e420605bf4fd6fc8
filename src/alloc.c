/* Checked allocation with an allocation-failure injector for tests. */
#include "linfold/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

static int64_t fail_countdown = -1;

void lf_alloc_fail_after(int64_t k) { fail_countdown = k; }

static lf_err_t check_size(size_t n, size_t size, size_t *bytes)
{
    lf_err_t err = LF_OK;
    LF_CHECK(size == 0 || n <= SIZE_MAX / size, LF_ERR_OVERFLOW,
             "allocation of %zu elements of %zu bytes overflows size_t", n, size);
    *bytes = (n * size) != 0 ? n * size : 1;
    if (fail_countdown >= 0) {
        LF_CHECK(fail_countdown-- != 0, LF_ERR_NOMEM, "injected allocation failure (%zu bytes)",
                 *bytes);
    }
cleanup:
    return err;
}

/* Large buffers (model arrays, I/O batches, distributed operands) ask for transparent huge
 * pages: where the kernel grants them only on request (THP "madvise", common on HPC nodes and
 * VMs), first touching a 2 MiB page costs one fault instead of 512. Only the aligned inside of
 * the allocation is advised; a refusal changes nothing but speed. */
enum { LARGE_BYTES = 8 << 20, HUGE_PAGE = 2 << 20 };

static void advise_large(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    if (!p || bytes < LARGE_BYTES)
        return;
    uintptr_t lo = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(uintptr_t)(HUGE_PAGE - 1);
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

lf_err_t lf_calloc(size_t n, size_t size, void **out)
{
    lf_err_t err = LF_OK;
    size_t bytes = 0;
    LF_CALL(check_size(n, size, &bytes));
    *out = calloc(1, bytes);
    LF_CHECK(*out != NULL, LF_ERR_NOMEM, "cannot allocate %zu bytes", bytes);
    advise_large(*out, bytes);
cleanup:
    return err;
}

lf_err_t lf_malloc(size_t n, size_t size, void **out)
{
    lf_err_t err = LF_OK;
    size_t bytes = 0;
    LF_CALL(check_size(n, size, &bytes));
    *out = malloc(bytes);
    LF_CHECK(*out != NULL, LF_ERR_NOMEM, "cannot allocate %zu bytes", bytes);
    advise_large(*out, bytes);
cleanup:
    return err;
}

lf_err_t lf_realloc(size_t n, size_t size, void **p)
{
    lf_err_t err = LF_OK;
    size_t bytes = 0;
    LF_CALL(check_size(n, size, &bytes));
    void *q = realloc(*p, bytes);
    LF_CHECK(q != NULL, LF_ERR_NOMEM, "cannot allocate %zu bytes", bytes);
    *p = q;
cleanup:
    return err;
}

void lf_free(void *p) { free(p); }
