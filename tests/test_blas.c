/* The BLAS kernel linfold runs on computes correct products.
 *
 * The parent test starts this program again once per OpenBLAS kernel family the CPU supports
 * (OPENBLAS_CORETYPE is read when the library loads, so each kernel needs its own process), plus
 * once with no OPENBLAS_CORETYPE so that linfold's own choice runs. Each child checks cblas_sgemm
 * (both layouts linfold uses), cblas_dgemm (the merge back end) and a whole forward pass against
 * plain double-precision loops, within the standard error bound |error| <= K u sum |a||b| for
 * float32 (u = 2^-24) with a factor 2 of slack. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lf_test.h"
#include "linfold/blas.h"
#include "linfold/forward.h"
#include "linfold/merge.h"

static char self_path[1024];

/* Largest |error| / bound over C = A · op(B), row-major, for A (m, k). */
static double sgemm_error(int m, int n, int k, bool transpose_b, uint64_t seed)
{
    lf_rng_t rng = {seed};
    float *a = malloc((size_t)m * k * sizeof *a), *b = malloc((size_t)n * k * sizeof *b);
    float *c = malloc((size_t)m * n * sizeof *c);
    for (int t = 0; t < m * k; t++)
        a[t] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    for (int t = 0; t < n * k; t++)
        b[t] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    if (transpose_b)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c,
                    n);
    double worst = 0.0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0, mag = 0.0;
            for (int p = 0; p < k; p++) {
                double bv = transpose_b ? b[j * k + p] : b[p * n + j];
                s += (double)a[i * k + p] * bv;
                mag += fabs((double)a[i * k + p] * bv);
            }
            double bound = 2.0 * k * ldexp(1.0, -24) * mag + 1e-30;
            worst = fmax(worst, fabs(s - c[i * n + j]) / bound);
        }
    free(a);
    free(b);
    free(c);
    return worst;
}

static const int shapes[][3] = {
    {1, 1, 1},    {7, 13, 5},   {256, 64, 64},    {256, 10, 256},
    {33, 10, 82}, {3, 2, 1000}, {256, 1024, 784}, {100, 100, 100},
};

START_TEST(test_child_sgemm)
{
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 2; t++) {
            double e = sgemm_error(shapes[s][0], shapes[s][1], shapes[s][2], t, 10 + s);
            ck_assert_msg(e <= 1.0, "%s: sgemm %dx%dx%d (transpose %d) error %.3g x bound",
                          lf_blas_kernel(), shapes[s][0], shapes[s][1], shapes[s][2], t, e);
        }
}
END_TEST

/* The merge back end accumulates in double: exact to double rounding on float inputs. */
START_TEST(test_child_merge)
{
    enum { M = 37, N = 29, K = 301 };
    lf_rng_t rng = {3};
    static float a[M * K], b[K * N], c[M * N], c0[M * N];
    for (int t = 0; t < M * K; t++)
        a[t] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    for (int t = 0; t < K * N; t++)
        b[t] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    for (int t = 0; t < M * N; t++)
        c[t] = c0[t] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    ck_assert_int_eq(lf_merge_add_product(MPI_COMM_SELF, M, N, K, a, b, c), LF_OK);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = c0[i * N + j];
            for (int p = 0; p < K; p++)
                s += (double)a[i * K + p] * b[p * N + j];
            /* One float32 rounding of a sum exact to ~1e-14: at most half an ulp plus that. */
            ck_assert_msg(fabs((double)c[i * N + j] - s) <= 0.5 * ldexp(1.0, -23) * fabs(s) + 1e-12,
                          "merge [%d, %d]: %.9g vs %.17g", i, j, (double)c[i * N + j], s);
        }
}
END_TEST

/* A forward pass with skip blocks and every activation against a double-precision loop. */
START_TEST(test_child_forward)
{
    const int64_t widths[] = {9, 8, 7, 6, 5, 4};
    lf_model_t *m = lf_test_mlp(6, widths, 6, -0.7f, 0.7f, -0.2f, 0.2f, 5);
    const lf_act_t acts[] = {LF_ACT_RELU,    LF_ACT_LEAKY_RELU, LF_ACT_TANH,
                             LF_ACT_SIGMOID, LF_ACT_IDENTITY,   LF_ACT_SOFTMAX};
    for (int i = 0; i < 6; i++) {
        m->layers[i].act = acts[i];
        m->layers[i].alpha = 0.1f;
    }
    lf_block_t *b = NULL;
    lf_rng_t rng = {6};
    ck_assert_int_eq(lf_model_block_ensure(m, 3, LF_SRC_INPUT, &b), LF_OK);
    for (int t = 0; t < 6 * 6; t++)
        b->w[t] = lf_rng_uniform(&rng, -0.5f, 0.5f);
    ck_assert_int_eq(lf_model_block_ensure(m, 5, 1, &b), LF_OK);
    for (int t = 0; t < 4 * 8; t++)
        b->w[t] = lf_rng_uniform(&rng, -0.5f, 0.5f);
    enum { R = 19 };
    float x[R * 6];
    for (int t = 0; t < R * 6; t++)
        x[t] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    lf_forward_t *fw = NULL;
    const float *y = NULL;
    ck_assert_int_eq(lf_forward_create(m, R, &fw), LF_OK);
    ck_assert_int_eq(lf_forward_run(fw, m, x, R, NULL, NULL, &y), LF_OK);
    double worst = 0.0;
    for (int r = 0; r < R; r++) {
        double act[7][16];
        for (int k = 0; k < 6; k++)
            act[0][k] = x[r * 6 + k];
        for (int i = 0; i < 6; i++) {
            const lf_layer_t *L = &m->layers[i];
            double z[16], sum = 0.0, mx = -INFINITY;
            for (int64_t j = 0; j < L->n_out; j++) {
                z[j] = L->bias[j];
                for (int bb = 0; bb < L->n_blocks; bb++) {
                    int src = L->blocks[bb].src;
                    int64_t w = lf_model_width(m, src);
                    for (int64_t k = 0; k < w; k++)
                        z[j] += (double)L->blocks[bb].w[j * w + k] * act[src + 1][k];
                }
                mx = fmax(mx, z[j]);
            }
            for (int64_t j = 0; j < L->n_out; j++) {
                double v = z[j];
                switch (L->act) {
                case LF_ACT_RELU: v = v > 0 ? v : 0; break;
                case LF_ACT_LEAKY_RELU: v = v > 0 ? v : 0.1 * v; break;
                case LF_ACT_TANH: v = tanh(v); break;
                case LF_ACT_SIGMOID: v = 1.0 / (1.0 + exp(-v)); break;
                case LF_ACT_SOFTMAX:
                    v = exp(v - mx);
                    sum += v;
                    break;
                case LF_ACT_IDENTITY: break;
                }
                act[i + 1][j] = v;
            }
            if (L->act == LF_ACT_SOFTMAX)
                for (int64_t j = 0; j < L->n_out; j++)
                    act[i + 1][j] /= sum;
        }
        for (int j = 0; j < 4; j++)
            worst = fmax(worst, fabs(act[6][j] - y[r * 4 + j]));
    }
    /* float32 through six small layers: a few ulps of values of order 1. */
    ck_assert_msg(worst <= 1e-5, "%s: forward differs from double by %g", lf_blas_kernel(), worst);
    lf_forward_destroy(&fw);
    lf_model_destroy(&m);
}
END_TEST

static Suite *child_suite(void)
{
    Suite *s = suite_create("blas kernel");
    TCase *tc = tcase_create("kernel");
    tcase_set_timeout(tc, 120); /* the reference loops are slow in sanitizer (-O0) builds */
    tcase_add_test(tc, test_child_sgemm);
    tcase_add_test(tc, test_child_merge);
    tcase_add_test(tc, test_child_forward);
    suite_add_tcase(s, tc);
    return s;
}

/* Runs this program as a child with the given environment prefix; returns its exit status and
 * the kernel it reported. */
static int run_child(const char *env, char *kernel, size_t cap)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s' --child", env, self_path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char line[256];
    kernel[0] = '\0';
    while (fgets(line, sizeof line, p))
        if (strncmp(line, "kernel: ", 8) == 0) {
            snprintf(kernel, cap, "%.100s", line + 8);
            kernel[strcspn(kernel, "\n")] = '\0';
        }
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

START_TEST(test_every_supported_kernel)
{
    static const char *const families[] = {"Prescott", "Sandybridge", "Haswell", "SkylakeX"};
    const char *best = lf_blas_best_kernel();
    for (size_t f = 0; f < sizeof families / sizeof *families; f++) {
        char env[128], kernel[128];
        snprintf(env, sizeof env, "OPENBLAS_CORETYPE=%s", families[f]);
        ck_assert_msg(run_child(env, kernel, sizeof kernel) == 0, "kernel %s fails", families[f]);
        ck_assert_msg(strcasecmp(kernel, families[f]) == 0, "asked for %s, ran %s", families[f],
                      kernel);
        if (strcmp(families[f], best) == 0)
            break; /* the CPU has no instructions for the families above */
    }
}
END_TEST

/* With no OPENBLAS_CORETYPE, linfold's choice runs: never below what the CPU supports. */
START_TEST(test_automatic_choice)
{
    char kernel[128];
    ck_assert_int_eq(run_child("env -u OPENBLAS_CORETYPE", kernel, sizeof kernel), 0);
    const char *best = lf_blas_best_kernel();
    bool ok = strcasecmp(kernel, best) == 0 || strcasecmp(kernel, "Cooperlake") == 0 ||
              strcasecmp(kernel, "SapphireRapids") == 0 ||
              (strcmp(best, "Haswell") == 0 && strcasecmp(kernel, "Zen") == 0);
    ck_assert_msg(ok, "automatic kernel %s on a CPU that supports %s", kernel, best);
}
END_TEST

/* The re-execution itself: pretend the library loaded Prescott; the child must come back running
 * the best kernel, chosen by linfold. */
START_TEST(test_reexecution)
{
    char kernel[128];
    ck_assert_int_eq(run_child("env -u OPENBLAS_CORETYPE LINFOLD_BLAS_ASSUME_LOADED=Prescott",
                               kernel, sizeof kernel),
                     0);
    const char *best = lf_blas_best_kernel();
    if (strcmp(best, "Prescott") != 0)
        ck_assert_msg(strcasecmp(kernel, best) == 0, "re-executed with %s, expected %s", kernel,
                      best);
}
END_TEST

static Suite *parent_suite(void)
{
    Suite *s = suite_create("blas");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_every_supported_kernel);
    tcase_add_test(tc, test_automatic_choice);
    tcase_add_test(tc, test_reexecution);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    lf_blas_select_kernel(argv); /* as linfold's main does */
    snprintf(self_path, sizeof self_path, "%s", argv[0]);
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        printf("kernel: %s\n", lf_blas_kernel());
        fflush(stdout);
        return lf_test_run_serial(child_suite);
    }
    return lf_test_run_serial(parent_suite);
}
