/* Exact products of a double and a count; see exact.h.
 *
 * frexp splits x into f * 2^e with f in [0.5, 1); M = f * 2^53 is an integer for every finite
 * double (subnormals included), so x = M * 2^(e - 53) = M / 2^k with k = 53 - e >= 52 for x <= 1.
 * M * n < 2^53 * 2^62 fits in an unsigned 128-bit integer, and floor(M * n / 2^k) is a shift. */
#include "linfold/exact.h"

#include <math.h>
#include <stdbool.h>

#include "linfold/error.h"

__extension__ typedef unsigned __int128 u128;

/* x * n = q + r / 2^k with 0 <= r < 2^k: *q, whether r > 0, and r compared with 2^(k-1) as
 * -1, 0 or 1. */
static void split(double x, int64_t n, int64_t *q, bool *rem_nonzero, int *vs_half)
{
    LF_ASSERT(x >= 0.0 && x <= 1.0 && n >= 0 && n <= LF_EXACT_N_MAX);
    int e = 0;
    double f = frexp(x, &e);
    u128 prod = (u128)(uint64_t)ldexp(f, 53) * (u128)(uint64_t)n;
    int k = 53 - e;
    if (k >= 127) {
        /* prod < 2^117 <= 2^(k - 10): the quotient is 0 and the remainder below half. */
        *q = 0;
        *rem_nonzero = prod != 0;
        *vs_half = -1;
        return;
    }
    u128 one = 1;
    u128 rem = prod & ((one << k) - 1), half = one << (k - 1);
    *q = (int64_t)(prod >> k);
    *rem_nonzero = rem != 0;
    *vs_half = rem < half ? -1 : (rem > half ? 1 : 0);
}

int64_t lf_exact_mul_floor(double x, int64_t n)
{
    int64_t q = 0;
    bool rem = false;
    int half = 0;
    split(x, n, &q, &rem, &half);
    return q;
}

int64_t lf_exact_mul_ceil(double x, int64_t n)
{
    int64_t q = 0;
    bool rem = false;
    int half = 0;
    split(x, n, &q, &rem, &half);
    return q + (rem ? 1 : 0);
}

int64_t lf_exact_mul_nearest(double x, int64_t n)
{
    int64_t q = 0;
    bool rem = false;
    int half = 0;
    split(x, n, &q, &rem, &half);
    return q + (half > 0 ? 1 : 0);
}

double lf_exact_ratio_floor(int64_t count, int64_t n)
{
    LF_ASSERT(n >= 1 && n <= (INT64_C(1) << 53) && count >= 0 && count <= n);
    /* Both convert exactly and the quotient is correctly rounded, so it is at most one step too
     * high; t * n > count exactly when ceil(t * n) > count. One step down is then below count / n
     * and still above (count - 1) / n, since 1 / n is at least the spacing of doubles below 1. */
    double t = (double)count / (double)n;
    if (lf_exact_mul_ceil(t, n) > count)
        t = nextafter(t, 0.0);
    return t;
}
