/* The refit's distributed solve (refit_dist.h) against the serial LAPACK path (refit.h): the same
 * systems give the same X to 1e-10 relative, the same held-out errors and the same λ; a singular
 * system goes to the eigendecomposition in both and gives the same minimum-norm X; a whole
 * lf_refit_apply with the threshold forced down gives the weights of the serial path. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/plan.h"
#include "linfold/refit.h"
#include "linfold/refit_dist.h"

enum { O = 5 };

/* The whole sums of a least-squares problem, built here by plain loops in double: H (rows x k)
 * uniform in [-1, 1), column c scaled by 10^(c mod 7 - 3) when `scaled` (so that D = diag(G)
 * matters), the last column 1 (a bias); column 1 a copy of column 0 when `dup` (G singular);
 * z = H W + noise, the rows r with r mod 5 = 4 held out as in the refit. G is exactly
 * symmetric, as the refit's sums are. */
static void make_system(int64_t k, int64_t rows, bool scaled, bool dup, double noise, uint64_t seed,
                        lf_refit_sums_t *s)
{
    lf_rng_t rng = {seed};
    double *h = malloc((size_t)(rows * k) * sizeof *h), *w = malloc((size_t)(k * O) * sizeof *w);
    double z[O];
    memset(s, 0, sizeof *s);
    s->k = k;
    s->n_out = O;
    s->g_fit = calloc((size_t)(k * k), sizeof(double));
    s->g_held = calloc((size_t)(k * k), sizeof(double));
    s->b_fit = calloc((size_t)(k * O), sizeof(double));
    s->b_held = calloc((size_t)(k * O), sizeof(double));
    for (int64_t i = 0; i < k * O; i++)
        w[i] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    for (int64_t r = 0; r < rows; r++) {
        double *hr = h + r * k;
        for (int64_t c = 0; c < k; c++)
            hr[c] =
                lf_rng_uniform(&rng, -1.0f, 1.0f) * (scaled ? pow(10.0, (double)(c % 7) - 3) : 1);
        hr[k - 1] = 1.0;
        if (dup)
            hr[1] = hr[0];
        bool held = r % 5 == 4;
        double *g = held ? s->g_held : s->g_fit, *b = held ? s->b_held : s->b_fit;
        for (int j = 0; j < O; j++) {
            z[j] = noise * lf_rng_uniform(&rng, -1.0f, 1.0f);
            for (int64_t c = 0; c < k; c++)
                z[j] += hr[c] * w[c * O + j] / (scaled ? pow(10.0, (double)(c % 7) - 3) : 1);
            *(held ? &s->zz_held : &s->zz_fit) += z[j] * z[j];
        }
        for (int64_t a = 0; a < k; a++) {
            for (int64_t c = a; c < k; c++)
                g[a * k + c] += hr[a] * hr[c];
            for (int j = 0; j < O; j++)
                b[a * O + j] += hr[a] * z[j];
        }
        *(held ? &s->held_rows : &s->fit_rows) += 1;
    }
    for (double *g = s->g_fit; g; g = g == s->g_fit ? s->g_held : NULL)
        for (int64_t a = 0; a < k; a++)
            for (int64_t c = 0; c < a; c++)
                g[a * k + c] = g[c * k + a];
    free(w);
    free(h);
}

/* This rank's panels of the whole sums s, as lf_refit_sums gives them above the threshold but in
 * panels of `panel` columns (narrow ones here, so that several ranks own some of a small G). */
static void panels_of(const lf_refit_sums_t *s, int64_t panel, lf_refit_sums_t *out)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    int64_t k = s->k;
    *out = *s;
    out->dist = true;
    lf_refit_dist_panels(k, O, panel, rank, size, &out->panels);
    const lf_refit_panels_t *pn = &out->panels;
    int64_t eg = lf_refit_panel_elems(k, k, panel, true, pn->g0, pn->g1),
            eb = lf_refit_panel_elems(k, O, panel, false, pn->b0, pn->b1);
    out->g_fit = malloc((size_t)(eg + 1) * sizeof(double));
    out->g_held = malloc((size_t)(eg + 1) * sizeof(double));
    out->b_fit = malloc((size_t)(eb + 1) * sizeof(double));
    out->b_held = malloc((size_t)(eb + 1) * sizeof(double));
    for (int set = 0; set < 4; set++) {
        bool g = set < 2;
        int64_t n_cols = g ? k : O, at = 0;
        const double *src = set == 0   ? s->g_fit
                            : set == 1 ? s->g_held
                            : set == 2 ? s->b_fit
                                       : s->b_held;
        double *dst = set == 0   ? out->g_fit
                      : set == 1 ? out->g_held
                      : set == 2 ? out->b_fit
                                 : out->b_held;
        for (int64_t q = g ? pn->g0 : pn->b0; q < (g ? pn->g1 : pn->b1); q++) {
            int64_t c0 = q * panel, c1 = c0 + panel < n_cols ? c0 + panel : n_cols;
            for (int64_t i = 0; i < (g ? c1 : k); i++)
                for (int64_t j = c0; j < c1; j++)
                    dst[at++] = src[i * n_cols + j];
        }
    }
}

static void sums_free(lf_refit_sums_t *s)
{
    free(s->g_fit);
    free(s->g_held);
    free(s->b_fit);
    free(s->b_held);
    memset(s, 0, sizeof *s);
}

/* max |a - b| / max |a|. */
static double rel(const double *a, const double *b, int64_t n)
{
    double d = 0, top = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        top = fmax(top, fabs(a[i]));
    }
    return d / top;
}

static const double GRID[] = {1e-6, 1e-4, 1e-2, 1e-1, 1.0, 10.0, 100.0};
enum { N_GRID = sizeof GRID / sizeof *GRID };

/* Every solve and held-out error of the distributed path against lf_refit_solve and
 * lf_refit_held_error on K not a multiple of the block, then the whole λ choice against a loop
 * written here over the serial functions (the first minimum in the grid's order). */
START_TEST(test_solves_agree_with_lapack)
{
    const struct {
        int64_t k;
        int nb;
    } cases[] = {{37, 16}, {70, 16}, {131, 16}, {131, 0}, {5, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int64_t k = cases[c].k;
        lf_refit_sums_t s, sl;
        make_system(k, k + k / 2 + 20, true, false, 4.0, 100 + c, &s);
        panels_of(&s, 7, &sl);
        double *xs = malloc((size_t)(k * O) * sizeof *xs),
               *xd = malloc((size_t)(k * O) * sizeof *xd);
        lf_refit_dist_t *d = NULL;
        ck_assert_int_eq(lf_refit_dist_create(LF_TEST_COMM, &sl, cases[c].nb, &d), LF_OK);
        const double lambdas[] = {0.0, 1e-4, 1e-1};
        for (int l = 0; l < 3; l++)
            for (int all = 0; all < 2; all++) {
                bool fs = true, fd = true;
                ck_assert_int_eq(lf_refit_solve(&s, lambdas[l], all, xs, &fs), LF_OK);
                ck_assert_int_eq(lf_refit_dist_solve(d, lambdas[l], all, &fd), LF_OK);
                ck_assert(!fs && !fd);
                ck_assert_int_eq(lf_refit_dist_gather(d, xd), LF_OK);
                double r = rel(xs, xd, k * O);
                ck_assert_msg(r <= 1e-10, "K %lld, λ %g, all %d: X differs by %.3g", (long long)k,
                              lambdas[l], all, r);
                /* The held-out error, of the distributed solution and of one given whole; the
                 * tolerance is relative to Σ‖z‖², the size of the terms that cancel. */
                double es = lf_refit_held_error(&s, xs), ed = NAN, eg = NAN;
                ck_assert_int_eq(lf_refit_dist_held_error(d, NULL, &ed), LF_OK);
                ck_assert_int_eq(lf_refit_dist_held_error(d, xs, &eg), LF_OK);
                ck_assert_msg(fabs(es - ed) <= 1e-10 * s.zz_held &&
                                  fabs(es - eg) <= 1e-10 * s.zz_held,
                              "K %lld: held-out error %.17g, distributed %.17g and %.17g",
                              (long long)k, es, ed, eg);
            }
        lf_refit_dist_destroy(&d);
        /* The λ choice: the first minimum of the serial held-out errors; it must not be the first
         * λ of the grid, or the choice would prove nothing. */
        double best = INFINITY, lambda = -1, e[N_GRID] = {0};
        for (int g = 0; g < N_GRID; g++) {
            bool fb = false;
            ck_assert_int_eq(lf_refit_solve(&s, GRID[g], false, xs, &fb), LF_OK);
            e[g] = lf_refit_held_error(&s, xs);
            if (e[g] < best) {
                best = e[g];
                lambda = GRID[g];
            }
        }
        ck_assert_msg(lambda != GRID[0] && lambda != GRID[N_GRID - 1],
                      "K %lld: λ %g chosen (%g %g %g %g %g %g %g)", (long long)k, lambda, e[0],
                      e[1], e[2], e[3], e[4], e[5], e[6]);
        bool fb = true;
        ck_assert_int_eq(lf_refit_solve(&s, lambda, true, xs, &fb), LF_OK);
        double *x0 = calloc((size_t)(k * O), sizeof *x0); /* weights 0: the refit must win */
        lf_refit_layer_t rec = {0};
        ck_assert_int_eq(
            lf_refit_dist_fit(LF_TEST_COMM, &sl, GRID, N_GRID, 1e-3, cases[c].nb, x0, xd, &rec),
            LF_OK);
        ck_assert(rec.lambda == lambda);
        ck_assert(!rec.kept && !rec.fallback);
        ck_assert_msg(rel(xs, xd, k * O) <= 1e-10, "K %lld: fit X differs by %.3g", (long long)k,
                      rel(xs, xd, k * O));
        double per = 1.0 / ((double)s.held_rows * O);
        ck_assert(fabs(rec.held_after - best * per) <= 1e-10 * s.zz_held * per);
        ck_assert(fabs(rec.held_before - s.zz_held * per) <= 1e-10 * s.zz_held * per);
        /* Weights fitted on all rows, held-out ones included, beat the refit on the held-out
         * rows: the layer keeps them, bit for bit. */
        memcpy(x0, xs, (size_t)(k * O) * sizeof *x0);
        ck_assert_int_eq(
            lf_refit_dist_fit(LF_TEST_COMM, &sl, GRID, N_GRID, 1e-3, cases[c].nb, x0, xd, &rec),
            LF_OK);
        ck_assert(rec.kept && rec.held_before < rec.held_after);
        ck_assert_mem_eq(xd, x0, (size_t)(k * O) * sizeof *xd);
        free(x0);
        free(xd);
        free(xs);
        sums_free(&sl);
        sums_free(&s);
    }
}
END_TEST

/* Duplicated columns and λ = 0: G is singular, both paths fall back to the eigendecomposition and
 * give the same minimum-norm X (the twins' weights equal). */
START_TEST(test_singular_system_falls_back_in_both)
{
    const int64_t ks[] = {37, 70};
    for (size_t c = 0; c < 2; c++) {
        int64_t k = ks[c];
        lf_refit_sums_t s, sl;
        make_system(k, 2 * k + 40, false, true, 0.1, 200 + c, &s);
        panels_of(&s, 7, &sl);
        double *xs = malloc((size_t)(k * O) * sizeof *xs),
               *xd = malloc((size_t)(k * O) * sizeof *xd);
        lf_refit_dist_t *d = NULL;
        bool fs = false, fd = false;
        ck_assert_int_eq(lf_refit_solve(&s, 0.0, true, xs, &fs), LF_OK);
        ck_assert_int_eq(lf_refit_dist_create(LF_TEST_COMM, &sl, 16, &d), LF_OK);
        ck_assert_int_eq(lf_refit_dist_solve(d, 0.0, true, &fd), LF_OK);
        ck_assert_int_eq(lf_refit_dist_gather(d, xd), LF_OK);
        ck_assert(fs && fd);
        ck_assert_msg(rel(xs, xd, k * O) <= 1e-8, "K %lld: X differs by %.3g", (long long)k,
                      rel(xs, xd, k * O));
        for (int j = 0; j < O; j++)
            ck_assert(fabs(xd[0 * O + j] - xd[1 * O + j]) <= 1e-8 * fabs(xd[j]) + 1e-12);
        /* With a ridge the same system is positive definite again. */
        ck_assert_int_eq(lf_refit_dist_solve(d, 1e-3, true, &fd), LF_OK);
        ck_assert(!fd);
        lf_refit_dist_destroy(&d);
        free(xd);
        free(xs);
        sums_free(&sl);
        sums_free(&s);
    }
}
END_TEST

/* A whole refit with the threshold forced down (every layer distributed, blocks of 4) against the
 * serial one: the same λ, held-out errors and fallbacks, and the same weights. The weights are
 * float32: a double X that differs by 1e-13 may round to the neighbouring float, so a weight
 * passes when it is within 1e-10 relative or one float step of the serial one. */
START_TEST(test_refit_apply_distributed_matches_serial)
{
    enum { N_IN = 12, HID = 40, N = 600 };
    char dir[256], spec[600];
    lf_test_tmpdir(dir, sizeof dir);
    const int64_t widths[] = {HID, O};
    lf_model_t *m = lf_test_mlp(N_IN, widths, 2, -1.0f, 1.0f, -0.2f, 0.6f, 301);
    lf_model_t *f[2] = {NULL, NULL};
    bool keep[HID];
    for (int j = 0; j < HID; j++)
        keep[j] = j != 3 && j != 17 && j != 29;
    /* The plan that removes those three neurons (by hand: only fate and n_out are read). */
    uint8_t fate0[HID], fate1[O] = {0};
    for (int j = 0; j < HID; j++)
        fate0[j] = keep[j] ? LF_NEURON_KEEP : LF_NEURON_PRUNE;
    int64_t n_out[2] = {HID, O};
    uint8_t *fates[2] = {fate0, fate1};
    lf_plan_t p = {.n_layers = 2, .n_out = n_out, .fate = fates};
    int where[2] = {0, 1};
    lf_test_write_samples(dir, "x", N, N_IN, 0.0f, 1.0f, 302, spec, sizeof spec);
    lf_refit_report_t rep[2] = {{0}, {0}};
    for (int v = 0; v < 2; v++) {
        lf_dataset_t *ds = NULL;
        ck_assert_int_eq(lf_model_copy(m, &f[v]), LF_OK);
        ck_assert_int_eq(lf_model_remove_neurons(f[v], 0, keep), LF_OK);
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
        lf_refit_opts_t o = {.threads = 1, .dist_k = v == 1 ? 1 : 0, .dist_block = 4};
        ck_assert_int_eq(lf_refit_apply(LF_TEST_COMM, m, f[v], &p, where, ds, &o, &rep[v]), LF_OK);
        lf_h5io_dataset_close(&ds);
    }
    ck_assert_int_eq(rep[0].n_layers, 1);
    ck_assert_int_eq(rep[1].n_layers, 1);
    const lf_refit_layer_t *a = &rep[0].layers[0], *b = &rep[1].layers[0];
    ck_assert_int_eq(a->k, HID - 3 + 1);
    ck_assert(!a->kept && !b->kept); /* the refit changed the weights */
    ck_assert(a->lambda == b->lambda && a->fallback == b->fallback);
    ck_assert_msg(fabs(a->held_before - b->held_before) <= 1e-10 * a->held_before &&
                      fabs(a->held_after - b->held_after) <= 1e-10 * a->held_before,
                  "held-out errors %.17g %.17g against %.17g %.17g", a->held_before, a->held_after,
                  b->held_before, b->held_after);
    ck_assert(a->held_after < a->held_before);
    const lf_layer_t *la = &f[0]->layers[1], *lb = &f[1]->layers[1];
    int64_t nw = (HID - 3) * O;
    float top = 0;
    for (int64_t i = 0; i < nw; i++)
        top = fmaxf(top, fabsf(la->blocks[0].w[i]));
    for (int64_t i = 0; i < nw + O; i++) {
        float x = i < nw ? la->blocks[0].w[i] : la->bias[i - nw];
        float y = i < nw ? lb->blocks[0].w[i] : lb->bias[i - nw];
        ck_assert_msg(fabsf(x - y) <= 1e-10f * top || nextafterf(x, y) == y,
                      "weight %lld: %.9g against %.9g", (long long)i, x, y);
    }
    /* The first layer is not refitted and stays as it was. */
    ck_assert_mem_eq(f[0]->layers[0].blocks[0].w, f[1]->layers[0].blocks[0].w,
                     (size_t)((HID - 3) * N_IN) * sizeof(float));
    lf_refit_report_free(&rep[0]);
    lf_refit_report_free(&rep[1]);
    lf_model_destroy(&f[0]);
    lf_model_destroy(&f[1]);
    lf_model_destroy(&m);
    lf_test_tmpdir_remove(dir);
}
END_TEST

/* Above the threshold lf_refit_sums leaves each rank its panels of the sums: bit for bit the
 * upper triangle of the whole sums below it (and all of B), and the same scalars. K = 301 makes
 * three panels of G (128, 128, 45 columns), owned by different ranks from P = 2 on. */
START_TEST(test_panel_sums_are_panels_of_the_sums)
{
    enum { N_IN = 12, HID = 300 };
    int rank = 0, size = 1;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    char dir[256], spec[600];
    lf_test_tmpdir(dir, sizeof dir);
    const int64_t widths[] = {HID, O};
    lf_model_t *m = lf_test_mlp(N_IN, widths, 2, -1.0f, 1.0f, -0.2f, 0.6f, 501);
    /* 9,000 rows: three groups of 4,096, the last partial, so the tree has crossing nodes. */
    lf_test_write_samples(dir, "x", 9000, N_IN, 0.0f, 1.0f, 502, spec, sizeof spec);
    lf_dataset_t *ds = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    const int64_t kept[O] = {0, 1, 2, 3, 4};
    lf_refit_sums_t w = {0}, sl = {0};
    lf_refit_opts_t whole = {.threads = 2}, dist = {.threads = 2, .dist_k = HID + 1};
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, m, 1, 1, kept, ds, &whole, &w), LF_OK);
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, m, 1, 1, kept, ds, &dist, &sl), LF_OK);
    int64_t k = HID + 1;
    lf_refit_panels_t want;
    lf_refit_dist_panels(k, O, LF_REFIT_PANEL, rank, size, &want);
    ck_assert(!w.dist && sl.dist && sl.k == k && sl.n_out == O);
    ck_assert_mem_eq(&sl.panels, &want, sizeof want);
    /* The runs of G's panels, balanced by elements (16,384, 32,768 and 13,545): rank s starts at
     * the first panel with at least s / P of the 62,697 before it. */
    const int64_t g_cut[4][5] = {{0, 3}, {0, 2, 3}, {0, 2, 2, 3}, {0, 1, 2, 2, 3}};
    ck_assert_int_eq(want.g0, g_cut[size - 1][rank]);
    ck_assert_int_eq(want.g1, g_cut[size - 1][rank + 1]);
    ck_assert_int_eq(want.b1 - want.b0, rank == 0); /* one B panel (5 outputs): rank 0's */
    ck_assert_int_eq(want.b0, rank == 0 ? 0 : 1);
    int64_t at = 0, bad = 0;
    for (int64_t q = want.g0; q < want.g1; q++) {
        int64_t c0 = q * LF_REFIT_PANEL, c1 = c0 + LF_REFIT_PANEL < k ? c0 + LF_REFIT_PANEL : k;
        for (int64_t i = 0; i < c1; i++, at += c1 - c0)
            for (int64_t j = c0; j < c1; j++) /* the upper triangle: mirrored in the whole */
                if (i <= j && (memcmp(&sl.g_fit[at + j - c0], &w.g_fit[i * k + j], 8) != 0 ||
                               memcmp(&sl.g_held[at + j - c0], &w.g_held[i * k + j], 8) != 0))
                    bad++;
    }
    ck_assert_int_eq(at, lf_refit_panel_elems(k, k, LF_REFIT_PANEL, true, want.g0, want.g1));
    ck_assert_int_eq(bad, 0);
    if (want.b1 > want.b0) {
        ck_assert_mem_eq(sl.b_fit, w.b_fit, (size_t)(k * O) * sizeof(double));
        ck_assert_mem_eq(sl.b_held, w.b_held, (size_t)(k * O) * sizeof(double));
    }
    ck_assert(sl.fit_rows == w.fit_rows && sl.held_rows == w.held_rows);
    ck_assert(sl.zz_fit == w.zz_fit && sl.zz_held == w.zz_held);
    ck_assert_int_eq(w.fit_rows + w.held_rows, 9000);
    /* One below the threshold: whole again. */
    lf_refit_sums_free(&sl);
    dist.dist_k = k + 1;
    ck_assert_int_eq(lf_refit_sums(LF_TEST_COMM, m, m, 1, 1, kept, ds, &dist, &sl), LF_OK);
    ck_assert(!sl.dist);
    ck_assert_mem_eq(sl.g_fit, w.g_fit, (size_t)(k * k) * sizeof(double));
    lf_refit_sums_free(&sl);
    lf_refit_sums_free(&w);
    lf_h5io_dataset_close(&ds);
    lf_model_destroy(&m);
    lf_test_tmpdir_remove(dir);
}
END_TEST

/* Panels that are not this rank's are refused on every rank. */
START_TEST(test_wrong_panels_are_refused)
{
    lf_refit_sums_t s, sl;
    make_system(9, 40, false, false, 0.1, 400, &s);
    panels_of(&s, 7, &sl);
    sl.dist = false;
    lf_refit_dist_t *d = NULL;
    ck_assert_int_eq(lf_refit_dist_create(LF_TEST_COMM, &sl, 2, &d), LF_ERR_ARG);
    ck_assert(d == NULL);
    lf_error_clear();
    /* And the serial solve refuses panels. */
    sl.dist = true;
    double x[9 * O];
    bool fb = false;
    ck_assert_int_eq(lf_refit_solve(&sl, 1e-3, true, x, &fb), LF_ERR_ARG);
    ck_assert(isnan(lf_refit_held_error(&sl, x)));
    lf_error_clear();
    sums_free(&sl);
    sums_free(&s);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("refit_dist");
    TCase *tc = tcase_create("refit_dist");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_solves_agree_with_lapack);
    tcase_add_test(tc, test_singular_system_falls_back_in_both);
    tcase_add_test(tc, test_refit_apply_distributed_matches_serial);
    tcase_add_test(tc, test_panel_sums_are_panels_of_the_sums);
    tcase_add_test(tc, test_wrong_panels_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
