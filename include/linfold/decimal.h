/* Exact decimal numbers for the decisions that must not depend on rounding.
 *
 * linfold decides "count / n >= threshold", "dropped rows <= budget * n" and "share * n neurons"
 * on integers. Doing it in floating point (ceil(t * n - 1e-9) and the like) misclassifies counts
 * once n reaches about 10^8 and floors 0.29 * 100 to 28; doing it exactly on the double nearest
 * to what the user typed is no better, since the double 0.8 is slightly above 4/5 and would need
 * 9 positive rows of 10. So a threshold, a share or a budget is kept as the decimal that was
 * written, m * 10^e, and compared with counts in 128-bit integers. A threshold that linfold
 * prints for a rate count / n is the shortest decimal in ((count - 1) / n, count / n]: passed
 * back, it selects exactly the neurons with at least `count` positive rows.
 *
 *     lf_decimal_t t;
 *     lf_decimal_parse("0.8", &t);                     // 8 * 10^-1, exactly
 *     int64_t need = lf_decimal_mul_ceil(t, samples);  // least count with count/samples >= 0.8
 */
#ifndef LINFOLD_DECIMAL_H
#define LINFOLD_DECIMAL_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/error.h"

/* m * 10^e, normalised (m has no trailing zero digit; zero is {0, 0}). */
typedef struct {
    uint64_t m;
    int e;
} lf_decimal_t;

/* A decimal constant m * 10^e, e.g. LF_DECIMAL(8, -1) for 0.8 (m without trailing zeros). */
#define LF_DECIMAL(m, e) ((lf_decimal_t){(m), (e)})

/* The largest count the products below accept: 2^62. */
#define LF_DECIMAL_N_MAX (INT64_C(1) << 62)

/* Makes the decimal m * 10^e (normalised). Not collective. */
lf_decimal_t lf_decimal_make(uint64_t m, int e);
/* Parses a non-negative decimal: digits with an optional point and an optional exponent ("0.8",
 * "1", ".25", "1e-12", "2.5E3"), at most 19 significant digits, exponent within +-300.
 * Not collective.
 * LF_ERR_USAGE otherwise (the message quotes text). */
lf_err_t lf_decimal_parse(const char *text, lf_decimal_t *out);
/* Writes d as the shortest plain decimal ("0.8", "12", "0.000125") or, when that would be long,
 * in scientific notation ("1e-12").
 * Not collective. */
void lf_decimal_format(lf_decimal_t d, char *buf, size_t cap);
/* Compares a and b exactly: -1, 0 or 1.
 * Not collective. */
int lf_decimal_cmp(lf_decimal_t a, lf_decimal_t b);

/* Returns floor(d * n), ceil(d * n) and the integer nearest d * n (an exact half rounds down),
 * exactly, for 0 <= n <= LF_DECIMAL_N_MAX; results above INT64_MAX saturate.
 * Not collective. */
int64_t lf_decimal_mul_floor(lf_decimal_t d, int64_t n);
int64_t lf_decimal_mul_ceil(lf_decimal_t d, int64_t n);
int64_t lf_decimal_mul_nearest(lf_decimal_t d, int64_t n);

/* Returns the shortest decimal t with (count - 1) / n < t <= count / n, so that
 * lf_decimal_mul_ceil(t, n) == count: the threshold that selects the neurons with at least
 * `count` positive rows of n.
 * Not collective.
 * For 1 <= count <= n <= 2^62. */
lf_decimal_t lf_decimal_rate(int64_t count, int64_t n);

/* The valid interval of an option: open at an end when *_open; hi_inf: no upper bound. text says
 * it as users read it, "(0, 1]". */
typedef struct {
    lf_decimal_t lo, hi;
    bool lo_open, hi_open, hi_inf;
    const char *text;
} lf_decimal_range_t;

/* The intervals of linfold's options: thresholds (0, 1], shares [0, 1), ratios (0, inf),
 * accuracy drops [0, 1]. */
extern const lf_decimal_range_t LF_RANGE_THRESHOLD, LF_RANGE_SHARE, LF_RANGE_POSITIVE,
    LF_RANGE_UNIT;

/* Returns whether v lies in r.
 * Not collective. */
bool lf_decimal_in_range(const lf_decimal_range_t *r, lf_decimal_t v);

#endif /* LINFOLD_DECIMAL_H */
