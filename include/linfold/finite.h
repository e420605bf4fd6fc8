/* Finding NaN and infinite values in float arrays, at memory speed.
 *
 * Every weight of a model and every row of data is checked before use, so the scan runs over
 * hundreds of megabytes: it tests the exponent bits in a loop the compiler vectorises, and only
 * a chunk that holds a bad value is searched element by element.
 *
 *     int64_t bad = lf_first_nonfinite(w, n);   // -1, or the index of the first NaN/Inf
 */
#ifndef LINFOLD_FINITE_H
#define LINFOLD_FINITE_H

#include <stdint.h>

/* The index of the first NaN or infinite element of x[0 .. n), or -1 when all are finite.
 * Not collective. Thread-safe. */
int64_t lf_first_nonfinite(const float *x, int64_t n);

#endif /* LINFOLD_FINITE_H */
