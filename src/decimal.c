/* Exact decimals; see decimal.h.
 *
 * A decimal is m * 10^e with m < 10^19. Products with a count n <= 2^62 are m * n < 2^126 and fit
 * an unsigned 128-bit integer, as do the powers of ten up to 10^38, so floor, ceiling and nearest
 * of m * n / 10^k are one division. */
#include "linfold/decimal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128;

enum { DIGITS_MAX = 19, POW_MAX = 38, EXPONENT_MAX = 300 };

static u128 pow10_u128(int k)
{
    u128 p = 1;
    for (int i = 0; i < k; i++)
        p *= 10;
    return p;
}

static int digit_count(uint64_t m)
{
    int n = 1;
    while (m >= 10) {
        m /= 10;
        n++;
    }
    return n;
}

lf_decimal_t lf_decimal_make(uint64_t m, int e)
{
    if (m == 0)
        return (lf_decimal_t){0, 0};
    while (m % 10 == 0) {
        m /= 10;
        e++;
    }
    return (lf_decimal_t){m, e};
}

lf_err_t lf_decimal_parse(const char *text, lf_decimal_t *out)
{
    lf_err_t err = LF_OK;
    const char *p = text;
    uint64_t m = 0;
    int e = 0, significant = 0;
    bool digits = false, point = false, dropped_nonzero = false;
    if (*p == '+')
        p++;
    for (; *p; p++) {
        if (*p == '.' && !point) {
            point = true;
            continue;
        }
        if (*p < '0' || *p > '9')
            break;
        digits = true;
        int d = *p - '0';
        if (significant == 0 && d == 0) {
            e -= point ? 1 : 0; /* a leading zero after the point scales, before it does not */
            continue;
        }
        if (significant < DIGITS_MAX) {
            m = m * 10 + (uint64_t)d;
            significant++;
            e -= point ? 1 : 0;
        } else {
            dropped_nonzero = dropped_nonzero || d != 0;
            e += point ? 0 : 1; /* a digit past the 19th before the point is a power of ten */
        }
    }
    LF_CHECK(digits && !dropped_nonzero, LF_ERR_USAGE,
             "'%s' is not a decimal number of at most %d significant digits", text, DIGITS_MAX);
    if (*p == 'e' || *p == 'E') {
        char *end = NULL;
        long x = strtol(p + 1, &end, 10);
        LF_CHECK(end != p + 1 && *end == '\0' && x >= -EXPONENT_MAX && x <= EXPONENT_MAX,
                 LF_ERR_USAGE, "'%s' has an exponent outside +-%d", text, EXPONENT_MAX);
        e += (int)x;
        p = end;
    }
    LF_CHECK(*p == '\0', LF_ERR_USAGE, "'%s' is not a decimal number", text);
    LF_CHECK(e >= -2 * EXPONENT_MAX && e <= EXPONENT_MAX, LF_ERR_USAGE, "'%s' is out of range",
             text);
    *out = lf_decimal_make(m, e);
cleanup:
    return err;
}

void lf_decimal_format(lf_decimal_t d, char *buf, size_t cap)
{
    char digits[24];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)d.m);
    int len = (int)strlen(digits), point = len + d.e; /* digits before the decimal point */
    if (d.m == 0) {
        snprintf(buf, cap, "0");
    } else if (d.e >= 0 && point <= 21) {
        snprintf(buf, cap, "%s%0*d", digits, d.e, 0);
        if (d.e == 0)
            snprintf(buf, cap, "%s", digits);
    } else if (d.e < 0 && point > 0) {
        snprintf(buf, cap, "%.*s.%s", point, digits, digits + point);
    } else if (d.e < 0 && point > -6) {
        snprintf(buf, cap, "0.%0*d%s", -point, 0, digits);
        if (point == 0)
            snprintf(buf, cap, "0.%s", digits);
    } else if (len == 1) {
        snprintf(buf, cap, "%se%d", digits, point - 1);
    } else {
        snprintf(buf, cap, "%c.%se%d", digits[0], digits + 1, point - 1);
    }
}

int lf_decimal_cmp(lf_decimal_t a, lf_decimal_t b)
{
    if (a.m == 0 || b.m == 0)
        return a.m == b.m ? 0 : (a.m == 0 ? -1 : 1);
    /* Orders of magnitude first: the value lies in [10^(order - 1), 10^order). */
    int oa = digit_count(a.m) + a.e, ob = digit_count(b.m) + b.e;
    if (oa != ob)
        return oa < ob ? -1 : 1;
    /* Same order: the exponents differ by fewer than 19, so the scaled mantissas fit. */
    u128 x = a.m, y = b.m;
    if (a.e > b.e)
        x *= pow10_u128(a.e - b.e);
    else
        y *= pow10_u128(b.e - a.e);
    return x < y ? -1 : (x > y ? 1 : 0);
}

/* d * n = q + r / 10^k: q (saturated), whether r > 0, and r against 10^k / 2 (-1, 0, 1). */
static void product(lf_decimal_t d, int64_t n, int64_t *q, bool *rem, int *vs_half)
{
    LF_ASSERT(n >= 0 && n <= LF_DECIMAL_N_MAX);
    u128 prod = (u128)d.m * (u128)n;
    *rem = false;
    *vs_half = -1;
    if (d.e >= 0) {
        u128 limit = (u128)INT64_MAX;
        for (int i = 0; i < d.e && prod <= limit; i++)
            prod *= 10;
        *q = prod > limit ? INT64_MAX : (int64_t)prod;
        return;
    }
    int k = -d.e;
    if (k > POW_MAX) {
        /* prod < 2^126 < 10^38 < 10^k / 2: quotient 0, remainder below half. */
        *q = 0;
        *rem = prod != 0;
        return;
    }
    u128 p = pow10_u128(k), quot = prod / p, r = prod % p;
    *q = quot > (u128)INT64_MAX ? INT64_MAX : (int64_t)quot;
    *rem = r != 0;
    *vs_half = 2 * r < p ? -1 : (2 * r > p ? 1 : 0);
}

int64_t lf_decimal_mul_floor(lf_decimal_t d, int64_t n)
{
    int64_t q = 0;
    bool rem = false;
    int half = 0;
    product(d, n, &q, &rem, &half);
    return q;
}

int64_t lf_decimal_mul_ceil(lf_decimal_t d, int64_t n)
{
    int64_t q = 0;
    bool rem = false;
    int half = 0;
    product(d, n, &q, &rem, &half);
    return q + (rem && q < INT64_MAX ? 1 : 0);
}

int64_t lf_decimal_mul_nearest(lf_decimal_t d, int64_t n)
{
    int64_t q = 0;
    bool rem = false;
    int half = 0;
    product(d, n, &q, &rem, &half);
    return q + (half > 0 && q < INT64_MAX ? 1 : 0);
}

lf_decimal_t lf_decimal_rate(int64_t count, int64_t n)
{
    LF_ASSERT(n >= 1 && n <= LF_DECIMAL_N_MAX && count >= 1 && count <= n);
    /* The first k whose truncation floor(count * 10^k / n) / 10^k is above (count - 1) / n; by
     * k = 19, 10^-k < 1 / n and the truncation, within 10^-k of count / n, is. */
    for (int k = 0;; k++) {
        u128 scale = pow10_u128(k);
        u128 t = (u128)count * scale / (u128)n;
        if (t * (u128)n > (u128)(count - 1) * scale)
            return lf_decimal_make((uint64_t)t, -k);
    }
}

/* Plain initialisers ({m, e}): compound literals are not constant expressions. */
const lf_decimal_range_t LF_RANGE_THRESHOLD = {{0, 0}, {1, 0}, true, false, false, "(0, 1]"};
const lf_decimal_range_t LF_RANGE_SHARE = {{0, 0}, {1, 0}, false, true, false, "[0, 1)"};
const lf_decimal_range_t LF_RANGE_POSITIVE = {{0, 0}, {0, 0}, true, true, true, "(0, inf)"};
const lf_decimal_range_t LF_RANGE_UNIT = {{0, 0}, {1, 0}, false, false, false, "[0, 1]"};

bool lf_decimal_in_range(const lf_decimal_range_t *r, lf_decimal_t v)
{
    int lo = lf_decimal_cmp(v, r->lo), hi = lf_decimal_cmp(v, r->hi);
    return (r->lo_open ? lo > 0 : lo >= 0) && (r->hi_inf || (r->hi_open ? hi < 0 : hi <= 0));
}
