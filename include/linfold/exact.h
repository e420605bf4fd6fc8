/* Exact products of a double and a count, for decisions that must not depend on rounding.
 *
 * linfold decides "count / n >= threshold", "drop <= budget * n" and "share * n neurons" on
 * integers. Doing it in floating point (ceil(t * n - 1e-9) and the like) misclassifies counts once
 * n reaches about 10^8, and floors 0.29 * 100 to 28. These functions compute floor, ceiling and
 * nearest integer of x * n exactly: a double x is M * 2^-k with an integer M < 2^53, so
 * x * n = M * n / 2^k with M * n < 2^117 held in 128-bit integers.
 *
 *     int64_t need = lf_exact_mul_ceil(threshold, samples);  // smallest count with count/n >= t
 *     double t = lf_exact_ratio_floor(count, samples);       // largest double <= count/n
 */
#ifndef LINFOLD_EXACT_H
#define LINFOLD_EXACT_H

#include <stdint.h>

/* The largest n the functions below accept: 2^62. */
#define LF_EXACT_N_MAX (INT64_C(1) << 62)

/* Returns floor(x * n) exactly, for 0 <= x <= 1 and 0 <= n <= LF_EXACT_N_MAX.
 * Not collective. */
int64_t lf_exact_mul_floor(double x, int64_t n);
/* Returns ceil(x * n) exactly, for 0 <= x <= 1 and 0 <= n <= LF_EXACT_N_MAX.
 * Not collective. */
int64_t lf_exact_mul_ceil(double x, int64_t n);
/* Returns the integer nearest to x * n, exactly; an exact half rounds down (to the smaller count).
 * Not collective.
 * For 0 <= x <= 1 and 0 <= n <= LF_EXACT_N_MAX. */
int64_t lf_exact_mul_nearest(double x, int64_t n);
/* Returns the largest double t <= count / n, so that lf_exact_mul_ceil(t, n) == count.
 * Not collective.
 * For 0 <= count <= n, 1 <= n <= 2^53. Printing t in its shortest round-trip form and reading it
 * back gives t again, so a threshold printed from a rate selects the same neurons. */
double lf_exact_ratio_floor(int64_t count, int64_t n);

#endif /* LINFOLD_EXACT_H */
