/* Which OpenBLAS kernel runs, and choosing a better one than the library's own guess.
 *
 * OpenBLAS built with DYNAMIC_ARCH picks its kernels from the CPU model when it is loaded. Debian
 * 12's 0.3.21 does not know recent CPUs (AVX-512 Xeons, Zen 4) and falls back to its generic SSE3
 * "Prescott" kernels, a factor 2.5 to 5 below the machine's rate. The choice is read from
 * OPENBLAS_CORETYPE when the library loads, so linfold sets it and re-executes itself once, before
 * MPI_Init, when the CPU supports a better kernel than the one loaded. A user's own
 * OPENBLAS_CORETYPE is always honoured, and LINFOLD_BLAS_AUTO=0 turns the choice off.
 *
 *     int main(int argc, char **argv) {
 *         lf_blas_select_kernel(argv);   // first statement: may not return (re-exec)
 *         MPI_Init(&argc, &argv); ...
 */
#ifndef LINFOLD_BLAS_H
#define LINFOLD_BLAS_H

#include <stdbool.h>

/* Returns the kernel family OpenBLAS is running ("Haswell", "SkylakeX", ...).
 * Not collective. */
const char *lf_blas_kernel(void);
/* Returns the best kernel family this CPU supports that OpenBLAS 0.3.21 ships.
 * Not collective.
 * "SkylakeX" (AVX-512 F, BW, VL, DQ, CD), "Haswell" (AVX2 + FMA), "Sandybridge" (AVX) or
 * "Prescott"; off x86-64, the kernel that is loaded. */
const char *lf_blas_best_kernel(void);
/* Returns how the kernel was chosen.
 * Not collective.
 * "library" (OpenBLAS's own detection), "user" (OPENBLAS_CORETYPE was set), or "linfold" (set
 * by lf_blas_select_kernel). */
const char *lf_blas_kernel_origin(void);

/* Re-executes the program with OPENBLAS_CORETYPE set to lf_blas_best_kernel() when that pays.
 * Not collective.
 * It re-executes when the best kernel beats the loaded one, no OPENBLAS_CORETYPE was given and
 * LINFOLD_BLAS_AUTO is not 0. Returns normally otherwise (also when exec fails). Call it before
 * MPI_Init. */
void lf_blas_select_kernel(char **argv);

#endif /* LINFOLD_BLAS_H */
