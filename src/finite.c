/* NaN and infinity scans; see finite.h. */
#include "linfold/finite.h"

#include <math.h>
#include <string.h>

enum { CHUNK = 4096 };

/* Whether any of x[0 .. n) has an all-ones exponent (NaN or infinite). No early exit, so GCC
 * and clang vectorise it; the bits are read with memcpy, which is how C allows it. */
static int chunk_has_nonfinite(const float *x, int64_t n)
{
    uint32_t any = 0;
    for (int64_t k = 0; k < n; k++) {
        uint32_t bits;
        memcpy(&bits, &x[k], sizeof bits);
        any |= (uint32_t)((bits & 0x7f800000u) == 0x7f800000u);
    }
    return any != 0;
}

int64_t lf_first_nonfinite(const float *x, int64_t n)
{
    for (int64_t at = 0; at < n; at += CHUNK) {
        int64_t len = n - at < CHUNK ? n - at : CHUNK;
        if (!chunk_has_nonfinite(x + at, len))
            continue;
        for (int64_t k = at; k < at + len; k++)
            if (!isfinite(x[k]))
                return k;
    }
    return -1;
}
