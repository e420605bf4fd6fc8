/* OpenBLAS kernel detection and selection; see blas.h for why.
 *
 * Kernel families are ranked by the instruction sets their sgemm kernels use. Names OpenBLAS
 * reports that we do not rank (other architectures, future names) are never overridden. */
#include "linfold/blas.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Marks a process that linfold re-executed, with the kernel the library had picked. */
#define REEXEC_VAR "LINFOLD_BLAS_REEXEC"

static int kernel_rank(const char *name)
{
    static const struct {
        const char *name;
        int rank;
    } known[] = {
        {"Prescott", 0},    {"Core2", 0},          {"Penryn", 0},     {"Dunnington", 0},
        {"Nehalem", 0},     {"Atom", 0},           {"Katmai", 0},     {"Coppermine", 0},
        {"Northwood", 0},   {"Banias", 0},         {"Barcelona", 0},  {"Opteron", 0},
        {"Sandybridge", 1}, {"Bulldozer", 1},      {"Piledriver", 1}, {"Steamroller", 1},
        {"Excavator", 1},   {"Haswell", 2},        {"Zen", 2},        {"SkylakeX", 3},
        {"Cooperlake", 3},  {"SapphireRapids", 3},
    };
    for (size_t k = 0; k < sizeof known / sizeof *known; k++)
        if (strcasecmp(name, known[k].name) == 0)
            return known[k].rank;
    return -1;
}

const char *lf_blas_kernel(void)
{
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}

const char *lf_blas_best_kernel(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
    if (__builtin_cpu_supports("avx"))
        return "Sandybridge";
    return "Prescott";
#else
    return lf_blas_kernel();
#endif
}

const char *lf_blas_kernel_origin(void)
{
    if (getenv(REEXEC_VAR))
        return "linfold";
    const char *user = getenv("OPENBLAS_CORETYPE");
    return user && *user ? "user" : "library";
}

void lf_blas_select_kernel(char **argv)
{
    const char *user = getenv("OPENBLAS_CORETYPE"), *automatic = getenv("LINFOLD_BLAS_AUTO");
    if ((user && *user) || getenv(REEXEC_VAR) || (automatic && strcmp(automatic, "0") == 0))
        return;
    /* LINFOLD_BLAS_ASSUME_LOADED lets tests take this path on CPUs that OpenBLAS does know. */
    const char *assumed = getenv("LINFOLD_BLAS_ASSUME_LOADED");
    const char *loaded = assumed && *assumed ? assumed : lf_blas_kernel();
    const char *best = lf_blas_best_kernel();
    int have = kernel_rank(loaded), want = kernel_rank(best);
    if (have < 0 || want <= have)
        return;
    if (setenv("OPENBLAS_CORETYPE", best, 1) != 0 || setenv(REEXEC_VAR, loaded, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the kernel we have. */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(REEXEC_VAR);
}
