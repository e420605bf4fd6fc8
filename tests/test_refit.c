/* Least-squares reconstruction (refit.h): exact recovery where an exact refit exists, sums that
 * are bitwise identical at any rank and thread count, solves against an independent reference,
 * and the degenerate systems. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/fold.h"
#include "linfold/forward.h"
#include "linfold/plan.h"
#include "linfold/refit.h"

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void) { lf_test_tmpdir_remove(tmpdir); }

enum { N_IN = 12, HID = 8, OUT = 3, ROWS = 777 };

/* 12 -> 8 (relu, every neuron active on inputs in [0, 1)) -> 3 (identity); neuron 7 of the
 * hidden layer is neuron 0 + neuron 1 exactly (weights and bias), so it is redundant. */
static lf_model_t *redundant_model(void)
{
    const int64_t widths[] = {HID, OUT};
    lf_model_t *m = lf_test_mlp(N_IN, widths, 2, -1.0f, 1.0f, -0.5f, 0.5f, 3);
    lf_test_shape_layer(m, 0, HID, 0, 4);
    float *w = lf_model_block(m, 0, LF_SRC_INPUT)->w, *b = m->layers[0].bias;
    for (int c = 0; c < N_IN; c++) /* sums of two floats in [0, 0.5): exact in float32 */
        w[7 * N_IN + c] = w[0 * N_IN + c] + w[1 * N_IN + c];
    b[7] = b[0] + b[1];
    return m;
}

/* m with hidden neuron `drop` removed (its readers' columns too), nothing else changed. */
static lf_model_t *without(const lf_model_t *m, int64_t drop)
{
    lf_model_t *f = NULL;
    bool keep[HID];
    for (int j = 0; j < HID; j++)
        keep[j] = j != drop;
    ck_assert_int_eq(lf_model_copy(m, &f), LF_OK);
    ck_assert_int_eq(lf_model_remove_neurons(f, 0, keep), LF_OK);
    return f;
}

static lf_dataset_t *open_rows(MPI_Comm comm, const char *spec)
{
    lf_dataset_t *x = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(comm, spec, LF_DATA_SAMPLES, &x), LF_OK);
    return x;
}

/* X (k x OUT, inputs then bias) into layer 1 of f. */
static void store(lf_model_t *f, const double *x)
{
    lf_layer_t *L = &f->layers[1];
    int64_t w = f->layers[0].n_out;
    for (int64_t c = 0; c < w; c++)
        for (int j = 0; j < OUT; j++)
            L->blocks[0].w[j * w + c] = (float)x[c * OUT + j];
    for (int j = 0; j < OUT; j++)
        L->bias[j] = (float)x[w * OUT + j];
}

/* Largest |f(x) - m(x)| over the rows, relative to the largest |m(x)|. */
static double rel_diff(const lf_model_t *m, const lf_model_t *f, const float *x, int64_t n)
{
    lf_forward_t *a = NULL, *b = NULL;
    const float *ya = NULL, *yb = NULL;
    ck_assert_int_eq(lf_forward_create(m, n, &a), LF_OK);
    ck_assert_int_eq(lf_forward_create(f, n, &b), LF_OK);
    ck_assert_int_eq(lf_forward_run(a, m, x, n, NULL, NULL, &ya), LF_OK);
    ck_assert_int_eq(lf_forward_run(b, f, x, n, NULL, NULL, &yb), LF_OK);
    double d = 0, top = 0;
    for (int64_t k = 0; k < n * OUT; k++) {
        d = fmax(d, fabs((double)ya[k] - (double)yb[k]));
        top = fmax(top, fabs((double)ya[k]));
    }
    lf_forward_destroy(&a);
    lf_forward_destroy(&b);
    return d / top;
}

static const int64_t ALL_OUT[OUT] = {0, 1, 2};

/* Removing the redundant neuron and refitting its reader recovers the original outputs; mean
 * compensation (the neuron's mean output added through its weights) leaves an error orders of
 * magnitude larger. */
START_TEST(test_exact_refit_recovers_outputs)
{
    lf_model_t *m = redundant_model(), *f = without(m, 7), *mc = without(m, 7);
    char spec[600];
    lf_test_write_samples(tmpdir, "x", ROWS, N_IN, 0.0f, 1.0f, 9, spec, sizeof spec);
    float *x = malloc(ROWS * N_IN * sizeof(float));
    lf_test_fill(x, ROWS * N_IN, 0.0f, 1.0f, 9);
    /* Mean compensation, computed here from the neuron's outputs. */
    double mean = 0;
    const float *w = lf_model_block(m, 0, LF_SRC_INPUT)->w;
    for (int64_t r = 0; r < ROWS; r++) {
        double z = m->layers[0].bias[7];
        for (int c = 0; c < N_IN; c++)
            z += (double)w[7 * N_IN + c] * x[r * N_IN + c];
        mean += z > 0 ? z / ROWS : 0;
    }
    for (int j = 0; j < OUT; j++)
        mc->layers[1].bias[j] += (float)(mean * lf_model_block(m, 1, 0)->w[j * HID + 7]);
    lf_dataset_t *ds = open_rows(LF_TEST_COMM, spec);
    lf_refit_opts_t o = {.threads = 2};
    lf_refit_sums_t s = {0};
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, f, 1, 1, ALL_OUT, ds, &o, &s), LF_OK);
    ck_assert_int_eq(s.k, HID);              /* 7 kept neurons + the bias */
    ck_assert_int_eq(s.held_rows, ROWS / 5); /* rows 4, 9, ..., 774 */
    ck_assert_int_eq(s.fit_rows, ROWS - ROWS / 5);
    double X[HID * OUT];
    bool fb = true;
    ck_assert_int_eq(lf_refit_solve(&s, 0.0, true, X, &fb), LF_OK);
    ck_assert(!fb);
    store(f, X);
    double refit = rel_diff(m, f, x, ROWS), comp = rel_diff(m, mc, x, ROWS);
    ck_assert_msg(refit <= 1e-6, "refit error %.3g", refit);
    ck_assert_msg(comp >= 1e3 * refit && comp > 1e-3, "mean compensation %.3g, refit %.3g", comp,
                  refit);
    /* The held-out error of the exact solution is ~0, of the unrefitted model is not. */
    ck_assert(lf_refit_held_error(&s, X) <= 1e-9 * s.zz_held);
    lf_refit_sums_free(&s);
    lf_h5io_dataset_close(&ds);
    free(x);
    lf_model_destroy(&mc);
    lf_model_destroy(&f);
    lf_model_destroy(&m);
}
END_TEST

/* G and B over P ranks with 2 threads equal, bit for bit, those of this rank alone with one
 * thread (MPI_COMM_SELF): the fixed groups and the fixed tree make the split invisible. */
START_TEST(test_sums_bitwise_at_any_rank_count)
{
    const int64_t widths[] = {HID, 5, OUT};
    lf_model_t *m = lf_test_mlp(N_IN, widths, 3, -1.0f, 1.0f, -0.3f, 0.3f, 11), *f = NULL;
    bool keep[HID] = {1, 0, 1, 1, 0, 1, 1, 1};
    ck_assert_int_eq(lf_model_copy(m, &f), LF_OK);
    ck_assert_int_eq(lf_model_remove_neurons(f, 0, keep), LF_OK);
    char spec[600];
    /* 9,000 rows: three groups of 4,096 rows, the last one partial. */
    lf_test_write_samples(tmpdir, "big", 9000, N_IN, -1.0f, 1.0f, 12, spec, sizeof spec);
    const int64_t kept[5] = {0, 1, 2, 3, 4};
    lf_refit_sums_t a = {0}, b = {0};
    lf_dataset_t *all = open_rows(LF_TEST_COMM, spec), *self = open_rows(MPI_COMM_SELF, spec);
    lf_refit_opts_t two = {.threads = 2}, one = {.threads = 1};
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, f, 1, 1, kept, all, &two, &a), LF_OK);
    ck_assert_int_eq(lf_refit_sums(MPI_COMM_SELF, m, f, 1, 1, kept, self, &one, &b), LF_OK);
    ck_assert_int_eq(a.k, 7);
    ck_assert_int_eq(a.fit_rows + a.held_rows, 9000);
    ck_assert_mem_eq(a.g_fit, b.g_fit, 49 * sizeof(double));
    ck_assert_mem_eq(a.g_held, b.g_held, 49 * sizeof(double));
    ck_assert_mem_eq(a.b_fit, b.b_fit, 35 * sizeof(double));
    ck_assert_mem_eq(a.b_held, b.b_held, 35 * sizeof(double));
    ck_assert(a.zz_fit == b.zz_fit && a.zz_held == b.zz_held);
    lf_refit_sums_free(&a);
    lf_refit_sums_free(&b);
    lf_h5io_dataset_close(&self);
    lf_h5io_dataset_close(&all);
    lf_model_destroy(&f);
    lf_model_destroy(&m);
}
END_TEST

/* A row budget takes whole groups spread over the data: 17,000 rows are 5 groups of 4,096 (the
 * last partial), and a budget of 8,000 rows takes 2 of them, groups 0 and 2 (i * 5 / 2), not the
 * head of the data. The sums equal those of the two groups' rows alone (to rounding: the split
 * into fit and held-out rows follows the global row index) and are bitwise the same at any rank
 * and thread count. */
START_TEST(test_row_budget_takes_groups_spread_over_the_data)
{
    const int64_t widths[] = {HID, OUT};
    lf_model_t *m = lf_test_mlp(N_IN, widths, 2, -1.0f, 1.0f, -0.3f, 0.3f, 17), *f = NULL;
    bool keep[HID] = {1, 1, 0, 1, 1, 1, 0, 1};
    ck_assert_int_eq(lf_model_copy(m, &f), LF_OK);
    ck_assert_int_eq(lf_model_remove_neurons(f, 0, keep), LF_OK);
    enum { N = 17000, GR = 4096 };
    float *x = malloc((size_t)N * N_IN * sizeof(float));
    lf_test_fill(x, (int64_t)N * N_IN, -1.0f, 1.0f, 31);
    char big[600], part0[600], part2[600];
    snprintf(big, sizeof big, "%s/budget.h5", tmpdir);
    snprintf(part0, sizeof part0, "%s/group0.h5", tmpdir);
    snprintf(part2, sizeof part2, "%s/group2.h5", tmpdir);
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    if (rank == 0) {
        lf_test_write_data(big, "/x", x, N, N_IN, NULL, NULL);
        lf_test_write_data(part0, "/x", x, GR, N_IN, NULL, NULL);
        lf_test_write_data(part2, "/x", x + (size_t)2 * GR * N_IN, GR, N_IN, NULL, NULL);
    }
    MPI_Barrier(LF_TEST_COMM);
    free(x);
    strcat(big, ":/x");
    strcat(part0, ":/x");
    strcat(part2, ":/x");
    const int64_t kept[OUT] = {0, 1, 2};
    lf_refit_sums_t a = {0}, b = {0}, g0 = {0}, g2 = {0};
    lf_dataset_t *all = open_rows(LF_TEST_COMM, big), *self = open_rows(MPI_COMM_SELF, big);
    lf_dataset_t *d0 = open_rows(LF_TEST_COMM, part0), *d2 = open_rows(LF_TEST_COMM, part2);
    lf_refit_opts_t two = {.threads = 2, .max_rows = 8000}, one = {.threads = 1, .max_rows = 8000};
    lf_refit_opts_t every = {.threads = 1};
    ck_assert_int_eq(lf_refit_group_rows(N), GR);
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, f, 1, 1, kept, all, &two, &a), LF_OK);
    ck_assert_int_eq(lf_refit_sums(MPI_COMM_SELF, m, f, 1, 1, kept, self, &one, &b), LF_OK);
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, f, 1, 1, kept, d0, &every, &g0), LF_OK);
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, f, 1, 1, kept, d2, &every, &g2), LF_OK);
    int64_t k = a.k;
    ck_assert_int_eq(k, HID - 2 + 1);
    ck_assert_int_eq(a.fit_rows + a.held_rows, 2 * GR);
    ck_assert_mem_eq(a.g_fit, b.g_fit, (size_t)(k * k) * sizeof(double));
    ck_assert_mem_eq(a.g_held, b.g_held, (size_t)(k * k) * sizeof(double));
    ck_assert_mem_eq(a.b_fit, b.b_fit, (size_t)(k * OUT) * sizeof(double));
    ck_assert_mem_eq(a.b_held, b.b_held, (size_t)(k * OUT) * sizeof(double));
    double top = 0, d = 0;
    for (int64_t i = 0; i < k * k; i++) {
        double want = g0.g_fit[i] + g0.g_held[i] + g2.g_fit[i] + g2.g_held[i];
        top = fmax(top, fabs(want));
        d = fmax(d, fabs(want - a.g_fit[i] - a.g_held[i]));
    }
    for (int64_t i = 0; i < k * OUT; i++) {
        double want = g0.b_fit[i] + g0.b_held[i] + g2.b_fit[i] + g2.b_held[i];
        top = fmax(top, fabs(want));
        d = fmax(d, fabs(want - a.b_fit[i] - a.b_held[i]));
    }
    ck_assert_msg(d <= 1e-12 * top, "budget sums differ from groups 0 and 2 by %.3g", d / top);
    lf_refit_sums_free(&a);
    lf_refit_sums_free(&b);
    lf_refit_sums_free(&g0);
    lf_refit_sums_free(&g2);
    lf_h5io_dataset_close(&d2);
    lf_h5io_dataset_close(&d0);
    lf_h5io_dataset_close(&self);
    lf_h5io_dataset_close(&all);
    lf_model_destroy(&f);
    lf_model_destroy(&m);
}
END_TEST

/* Whether two models have the same weights and biases, bit for bit. */
static bool same_weights(const lf_model_t *a, const lf_model_t *b)
{
    if (a->n_layers != b->n_layers)
        return false;
    for (int i = 0; i < a->n_layers; i++) {
        const lf_layer_t *p = &a->layers[i], *q = &b->layers[i];
        if (p->n_out != q->n_out || p->n_blocks != q->n_blocks ||
            memcmp(p->bias, q->bias, (size_t)p->n_out * sizeof *p->bias) != 0)
            return false;
        for (int k = 0; k < p->n_blocks; k++) {
            size_t n = (size_t)(p->n_out * lf_model_width(a, p->blocks[k].src));
            if (memcmp(p->blocks[k].w, q->blocks[k].w, n * sizeof(float)) != 0)
                return false;
        }
    }
    return true;
}

/* The original model's targets computed once for every layer (the default when they fit) give
 * the same refitted model, bit for bit, as running the original model again for each layer,
 * with a row budget too (9,000 rows: 3 groups, of which the budget takes 2). */
START_TEST(test_target_cache_changes_no_bit)
{
    const int64_t widths[] = {16, 16, 12, OUT};
    lf_model_t *m = lf_test_mlp(N_IN, widths, 4, -1.0f, 1.0f, -0.3f, 0.3f, 61);
    char spec[600];
    lf_test_write_samples(tmpdir, "cache", 9000, N_IN, -1.0f, 1.0f, 62, spec, sizeof spec);
    lf_stats_t *st = lf_test_collect(m, spec, 1024, true);
    lf_plan_opts_t po = {.threshold = LF_DECIMAL(1, 0), .prune_fraction = LF_DECIMAL(25, -2)};
    ck_assert_int_eq(lf_plan_parse_layer_rule("count:0", &po.rule), LF_OK); /* no fold */
    lf_plan_t *p = NULL;
    ck_assert_int_eq(lf_plan_create(m, st, &po, &p), LF_OK);
    lf_dataset_t *ds = open_rows(LF_TEST_COMM, spec);
    for (int budget = 0; budget < 2; budget++) {
        lf_model_t *f[2] = {NULL, NULL};
        lf_refit_report_t rep[2] = {{0}, {0}};
        for (int c = 0; c < 2; c++) {
            int *where = NULL;
            ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f[c], &where), LF_OK);
            lf_refit_opts_t o = {
                .threads = 2, .max_rows = budget ? 5000 : 0, .target_cache_bytes = c == 0 ? 0 : -1};
            ck_assert_int_eq(lf_refit_apply(LF_TEST_COMM, m, f[c], p, where, ds, &o, &rep[c]),
                             LF_OK);
            lf_free(where);
        }
        ck_assert(rep[0].targets_cached && !rep[1].targets_cached);
        ck_assert_int_eq(rep[0].n_layers, 3);
        ck_assert_int_eq(rep[1].n_layers, 3);
        ck_assert_int_eq(rep[0].layers[0].fit_rows + rep[0].layers[0].held_rows,
                         budget ? 8192 : 9000);
        ck_assert(same_weights(f[0], f[1]));
        for (int c = 0; c < 2; c++) {
            lf_refit_report_free(&rep[c]);
            lf_model_destroy(&f[c]);
        }
    }
    lf_h5io_dataset_close(&ds);
    lf_plan_destroy(&p);
    lf_stats_destroy(&st);
    lf_model_destroy(&m);
}
END_TEST

/* The sums against a direct double loop over the rows, and the solve against a Cholesky
 * factorisation written out here; a constant-zero input gets weight 0. */
START_TEST(test_against_direct_reference)
{
    lf_model_t *m = redundant_model(), *f = without(m, 3);
    /* Hidden neuron 5 of f (original 6) reads nothing and has bias 0: its output is 0 on every
     * row, a zero column of G. */
    float *w = lf_model_block(f, 0, LF_SRC_INPUT)->w;
    memset(w + 5 * N_IN, 0, N_IN * sizeof(float));
    f->layers[0].bias[5] = 0.0f;
    char spec[600];
    lf_test_write_samples(tmpdir, "ref", 500, N_IN, 0.0f, 1.0f, 21, spec, sizeof spec);
    float *x = malloc(500 * N_IN * sizeof(float));
    lf_test_fill(x, 500 * N_IN, 0.0f, 1.0f, 21);
    lf_dataset_t *ds = open_rows(LF_TEST_COMM, spec);
    lf_refit_opts_t o = {.threads = 1};
    lf_refit_sums_t s = {0};
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, f, 1, 1, ALL_OUT, ds, &o, &s), LF_OK);
    /* Direct sums over all rows, from one forward pass of each model. */
    enum { K = HID };
    double G[K * K] = {0}, B[K * OUT] = {0};
    lf_forward_t *fa = NULL, *fb = NULL;
    const float *y = NULL;
    ck_assert_int_eq(lf_forward_create(f, 500, &fa), LF_OK);
    ck_assert_int_eq(lf_forward_create(m, 500, &fb), LF_OK);
    ck_assert_int_eq(lf_forward_run(fa, f, x, 500, NULL, NULL, &y), LF_OK);
    ck_assert_int_eq(lf_forward_run(fb, m, x, 500, NULL, NULL, &y), LF_OK);
    const float *h = lf_forward_activations(fa, 0); /* (500, 7) */
    for (int64_t r = 0; r < 500; r++) {
        double hv[K];
        for (int c = 0; c < K - 1; c++)
            hv[c] = h[r * (K - 1) + c];
        hv[K - 1] = 1.0;
        for (int a = 0; a < K; a++) {
            for (int b = 0; b < K; b++)
                G[a * K + b] += hv[a] * hv[b];
            for (int j = 0; j < OUT; j++)
                B[a * OUT + j] += hv[a] * y[r * OUT + j]; /* identity output: y = z */
        }
    }
    double gmax = 0, gdiff = 0, bmax = 0, bdiff = 0;
    for (int k = 0; k < K * K; k++) {
        gmax = fmax(gmax, fabs(G[k]));
        gdiff = fmax(gdiff, fabs(G[k] - s.g_fit[k] - s.g_held[k]));
    }
    for (int k = 0; k < K * OUT; k++) {
        bmax = fmax(bmax, fabs(B[k]));
        bdiff = fmax(bdiff, fabs(B[k] - s.b_fit[k] - s.b_held[k]));
    }
    /* The activations differ from those of 256-row blocks in their last float bits. */
    ck_assert_msg(gdiff <= 1e-6 * gmax && bdiff <= 1e-6 * bmax, "G %.3g, B %.3g", gdiff / gmax,
                  bdiff / bmax);
    ck_assert(s.g_fit[5 * K + 5] == 0.0 && s.g_held[5 * K + 5] == 0.0);
    /* Reference: (G + λ D) X = B on all rows by Cholesky, D = diag(G) with 1 for a zero column. */
    const double lambda = 1e-3;
    double A[K * K], L[K * K] = {0}, X[K * OUT], R[K * OUT];
    for (int k = 0; k < K * K; k++)
        A[k] = s.g_fit[k] + s.g_held[k];
    for (int i = 0; i < K; i++)
        A[i * K + i] += lambda * (A[i * K + i] > 0 ? A[i * K + i] : 1.0);
    for (int i = 0; i < K; i++)
        for (int j = 0; j <= i; j++) {
            double v = A[i * K + j];
            for (int q = 0; q < j; q++)
                v -= L[i * K + q] * L[j * K + q];
            L[i * K + j] = i == j ? sqrt(v) : v / L[j * K + j];
        }
    for (int c = 0; c < OUT; c++) {
        double t[K];
        for (int i = 0; i < K; i++) {
            double v = s.b_fit[i * OUT + c] + s.b_held[i * OUT + c];
            for (int q = 0; q < i; q++)
                v -= L[i * K + q] * t[q];
            t[i] = v / L[i * K + i];
        }
        for (int i = K - 1; i >= 0; i--) {
            double v = t[i];
            for (int q = i + 1; q < K; q++)
                v -= L[q * K + i] * R[q * OUT + c];
            R[i * OUT + c] = v / L[i * K + i];
        }
    }
    bool fallback = true;
    ck_assert_int_eq(lf_refit_solve(&s, lambda, true, X, &fallback), LF_OK);
    ck_assert(!fallback);
    double top = 0, d = 0;
    for (int k = 0; k < K * OUT; k++) {
        top = fmax(top, fabs(R[k]));
        d = fmax(d, fabs(R[k] - X[k]));
    }
    ck_assert_msg(d <= 1e-10 * top, "solve differs from the reference by %.3g", d / top);
    for (int j = 0; j < OUT; j++)
        ck_assert(X[5 * OUT + j] == 0.0); /* the zero input gets weight 0 */
    lf_forward_destroy(&fa);
    lf_forward_destroy(&fb);
    lf_refit_sums_free(&s);
    lf_h5io_dataset_close(&ds);
    free(x);
    lf_model_destroy(&f);
    lf_model_destroy(&m);
}
END_TEST

/* Duplicated neurons make G singular: with λ = 0 the eigendecomposition solves it and still
 * reproduces the outputs; fewer rows than unknowns with a ridge give a finite solution. */
START_TEST(test_degenerate_systems)
{
    lf_model_t *m = redundant_model(), *f = without(m, 7);
    /* f's hidden neurons 2 and 3 made identical: columns 2 and 3 of G are equal. */
    float *w = lf_model_block(f, 0, LF_SRC_INPUT)->w;
    memcpy(w + 3 * N_IN, w + 2 * N_IN, N_IN * sizeof(float));
    f->layers[0].bias[3] = f->layers[0].bias[2];
    lf_model_t *target = NULL;
    ck_assert_int_eq(lf_model_copy(f, &target), LF_OK); /* a target f can reproduce exactly */
    char spec[600];
    lf_test_write_samples(tmpdir, "dup", 300, N_IN, 0.0f, 1.0f, 31, spec, sizeof spec);
    float *x = malloc(300 * N_IN * sizeof(float));
    lf_test_fill(x, 300 * N_IN, 0.0f, 1.0f, 31);
    lf_dataset_t *ds = open_rows(LF_TEST_COMM, spec);
    lf_refit_opts_t o = {.threads = 1};
    lf_refit_sums_t s = {0};
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, target, f, 1, 1, ALL_OUT, ds, &o, &s), LF_OK);
    double X[HID * OUT];
    bool fb = false;
    ck_assert_int_eq(lf_refit_solve(&s, 0.0, true, X, &fb), LF_OK);
    ck_assert(fb);
    store(f, X);
    ck_assert_msg(rel_diff(target, f, x, 300) <= 1e-5, "%.3g", rel_diff(target, f, x, 300));
    /* The minimum-norm solution splits the weight evenly between the twins. */
    for (int j = 0; j < OUT; j++)
        ck_assert(fabs(X[2 * OUT + j] - X[3 * OUT + j]) <= 1e-6 * (fabs(X[2 * OUT + j]) + 1e-12));
    lf_refit_sums_free(&s);
    lf_h5io_dataset_close(&ds);
    /* 6 rows, 8 unknowns. */
    lf_test_write_samples(tmpdir, "few", 6, N_IN, 0.0f, 1.0f, 41, spec, sizeof spec);
    ds = open_rows(LF_TEST_COMM, spec);
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, f, 1, 1, ALL_OUT, ds, &o, &s), LF_OK);
    ck_assert_int_eq(s.fit_rows + s.held_rows, 6);
    ck_assert_int_eq(lf_refit_solve(&s, 1e-3, true, X, &fb), LF_OK);
    ck_assert(!fb);
    for (int k = 0; k < HID * OUT; k++)
        ck_assert(isfinite(X[k]));
    lf_refit_sums_free(&s);
    lf_h5io_dataset_close(&ds);
    free(x);
    lf_model_destroy(&target);
    lf_model_destroy(&f);
    lf_model_destroy(&m);
}
END_TEST

/* The refit never makes a layer worse on the held-out rows: here hidden neuron 6 reads only input
 * 0, which is 0 on every fit row and positive on the held-out ones (r mod 5 = 4), so a fit on
 * the fit rows gives it weight 0 while the weights as they are (after removing the dead neuron
 * 7, which changes nothing on the data) are exact. The layer keeps them, bit for bit. */
START_TEST(test_refit_never_makes_a_layer_worse)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    const int64_t widths[] = {HID, OUT};
    lf_model_t *m = lf_test_mlp(N_IN, widths, 2, -1.0f, 1.0f, -0.5f, 0.5f, 51), *f = NULL;
    lf_test_shape_layer(m, 0, 7, 1, 52); /* neurons 0-6 active, 7 dead on inputs >= 0 */
    float *w = lf_model_block(m, 0, LF_SRC_INPUT)->w;
    memset(w + 6 * N_IN, 0, N_IN * sizeof(float));
    w[6 * N_IN + 0] = 1.0f;
    m->layers[0].bias[6] = 0.0f;
    enum { N = 500 };
    float *x = malloc(N * N_IN * sizeof(float));
    lf_test_fill(x, N * N_IN, 0.0f, 1.0f, 53);
    for (int r = 0; r < N; r++)
        if (r % 5 != 4)
            x[r * N_IN + 0] = 0.0f;
    char path[300], spec[320];
    snprintf(path, sizeof path, "%s/holdout.h5", tmpdir);
    snprintf(spec, sizeof spec, "%s:/x", path);
    if (rank == 0)
        lf_test_write_data(path, "/x", x, N, N_IN, NULL, NULL);
    MPI_Barrier(LF_TEST_COMM);
    lf_stats_t *st = lf_test_collect(m, spec, 256, true);
    lf_plan_opts_t po = {.threshold = LF_DECIMAL(1, 0), .prune_dead = true};
    ck_assert_int_eq(lf_plan_parse_layer_rule("count:0", &po.rule), LF_OK); /* no fold */
    lf_plan_t *p = NULL;
    int *where = NULL;
    ck_assert_int_eq(lf_plan_create(m, st, &po, &p), LF_OK);
    ck_assert_int_eq(p->n_pruned[0], 1);
    ck_assert_int_eq(lf_fold_apply(LF_TEST_COMM, m, p, &f, &where), LF_OK);
    float before[(HID - 1) * OUT];
    memcpy(before, lf_model_block(f, 1, 0)->w, sizeof before);
    lf_dataset_t *ds = open_rows(LF_TEST_COMM, spec);
    lf_refit_opts_t o = {.threads = 1};
    lf_refit_report_t rep = {0};
    ck_assert_int_eq(lf_refit_apply(LF_TEST_COMM, m, f, p, where, ds, &o, &rep), LF_OK);
    ck_assert_int_eq(rep.n_layers, 1);
    ck_assert(rep.layers[0].kept);
    ck_assert(rep.layers[0].held_after > rep.layers[0].held_before);
    ck_assert_mem_eq(lf_model_block(f, 1, 0)->w, before, sizeof before);
    lf_refit_report_free(&rep);
    lf_h5io_dataset_close(&ds);
    lf_free(where);
    lf_plan_destroy(&p);
    lf_stats_destroy(&st);
    free(x);
    lf_model_destroy(&f);
    lf_model_destroy(&m);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("refit");
    TCase *tc = tcase_create("refit");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_exact_refit_recovers_outputs);
    tcase_add_test(tc, test_sums_bitwise_at_any_rank_count);
    tcase_add_test(tc, test_row_budget_takes_groups_spread_over_the_data);
    tcase_add_test(tc, test_target_cache_changes_no_bit);
    tcase_add_test(tc, test_against_direct_reference);
    tcase_add_test(tc, test_degenerate_systems);
    tcase_add_test(tc, test_refit_never_makes_a_layer_worse);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
