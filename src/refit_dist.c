/* The refit's distributed solve with ScaLAPACK; see refit_dist.h. */
#include "linfold/refit_dist.h"

#include <math.h>
#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/grid.h"

/* ScaLAPACK and PBLAS, Fortran calling convention (no C header ships with ScaLAPACK). */
extern void pdposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *ia,
                    const int *ja, const int *desca, double *b, const int *ib, const int *jb,
                    const int *descb, int *info);
extern void pdsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia,
                     const int *ja, const int *desca, double *w, double *z, const int *iz,
                     const int *jz, const int *descz, double *work, const int *lwork, int *iwork,
                     const int *liwork, int *info);
extern void pdsymm_(const char *side, const char *uplo, const int *m, const int *n,
                    const double *alpha, const double *a, const int *ia, const int *ja,
                    const int *desca, const double *b, const int *ib, const int *jb,
                    const int *descb, const double *beta, double *c, const int *ic, const int *jc,
                    const int *descc);

static const int ONE = 1;

struct lf_refit_dist {
    lf_grid_t *g;
    int64_t k, o;
    int ik, io;              /* k and o as ScaLAPACK ints */
    int nb;                  /* block size */
    lf_grid_layout_t lg, lb; /* (k, k) and (k, o) on the grid */
    double *gf, *gh;         /* G_fit, G_held, block-cyclic */
    double *bf, *bh;         /* B_fit, B_held */
    double *a, *x, *t;       /* the system, the current solution, a (k, o) scratch */
    double *xs;              /* another (k, o): a solution given whole, distributed */
    double zz_held;
    bool solved;
};

/* Panel q's columns [*c0, *c1) of n_cols. */
static void panel_cols(int64_t n_cols, int64_t panel, int64_t q, int64_t *c0, int64_t *c1)
{
    *c0 = q * panel;
    *c1 = *c0 + panel < n_cols ? *c0 + panel : n_cols;
}

int64_t lf_refit_panel_elems(int64_t k, int64_t n_cols, int64_t panel, bool upper, int64_t p0,
                             int64_t p1)
{
    int64_t n = 0;
    for (int64_t q = p0; q < p1; q++) {
        int64_t c0 = 0, c1 = 0;
        panel_cols(n_cols, panel, q, &c0, &c1);
        n += (upper ? c1 : k) * (c1 - c0);
    }
    return n;
}

void lf_refit_dist_panels(int64_t k, int64_t o, int64_t panel, int rank, int size,
                          lf_refit_panels_t *out)
{
    int64_t ng = (k + panel - 1) / panel, nb = (o + panel - 1) / panel;
    int64_t total = lf_refit_panel_elems(k, k, panel, true, 0, ng), bn = 0;
    /* Rank s starts at the first panel with at least total * s / P elements before it. */
    int64_t cut[2] = {ng, ng};
    for (int side = 0; side < 2; side++) {
        int s = rank + side;
        if (s >= size)
            continue;
        int64_t before = 0, q = 0;
        for (; q < ng; q++) {
            if (before * size >= total * s)
                break;
            before += lf_refit_panel_elems(k, k, panel, true, q, q + 1);
        }
        cut[side] = q;
    }
    *out = (lf_refit_panels_t){.panel = panel, .g0 = cut[0], .g1 = cut[1]};
    lf_comm_shard(nb, rank, size, &out->b0, &bn);
    out->b1 = out->b0 + bn;
}

/* Local (il, jl) of a block-cyclic layout -> global (gi, gj). */
static void global_of(const lf_grid_t *g, const lf_grid_layout_t *l, int64_t il, int64_t jl,
                      int64_t *gi, int64_t *gj)
{
    *gi = lf_grid_l2g(il, l->mb, g->myrow, g->nprow);
    *gj = lf_grid_l2g(jl, l->nb, g->mycol, g->npcol);
}

static lf_err_t alloc_local(const lf_grid_layout_t *l, double **p)
{
    size_t n = (size_t)l->lld * (size_t)(l->lcols > 0 ? l->lcols : 1);
    return lf_malloc(n, sizeof **p, (void **)p);
}

enum { CHUNK = 1 << 20 }; /* doubles per message (8 MiB) */

enum { TILE = 64 }; /* rows per tile of a transposing copy: TILE streams, not one per column */

/* One matrix's panels as every rank holds them: G (k x k, upper: column j holds rows [0, j]) or
 * B (k x o, every row). */
typedef struct {
    int64_t k, n_cols, panel;
    bool upper;
} panel_matrix_t;

static void run_of(const panel_matrix_t *pm, int64_t o, int rank, int size, int64_t *p0,
                   int64_t *p1)
{
    lf_refit_panels_t pn;
    lf_refit_dist_panels(pm->k, o, pm->panel, rank, size, &pn);
    *p0 = pm->upper ? pn.g0 : pn.b0;
    *p1 = pm->upper ? pn.g1 : pn.b1;
}

/* Walks the elements of the panels [p0, p1) (stored from base) that grid process (prow, pcol)
 * holds in layout l, in one fixed order (panel, column, row ascending): with out set it packs
 * them there, with dst set it places them into the local matrix dst of (prow, pcol) (this
 * rank), with neither (base may be NULL) it only counts. Returns the count. Sender and receiver
 * walk the same order, so only values travel. */
static int64_t walk_panels(const panel_matrix_t *pm, const lf_grid_t *g, const lf_grid_layout_t *l,
                           int64_t p0, int64_t p1, int prow, int pcol, const double *base,
                           double *out, double *dst)
{
    int64_t n = 0, at = 0;
    int64_t nrows = lf_grid_numroc(pm->k, l->mb, prow, g->nprow);
    for (int64_t q = p0; q < p1; q++) {
        int64_t c0 = q * pm->panel, c1 = c0 + pm->panel < pm->n_cols ? c0 + pm->panel : pm->n_cols;
        int64_t w = c1 - c0;
        for (int64_t j = c0; j < c1; j++) {
            int owner = 0;
            int64_t jl = 0;
            lf_grid_g2l(j, l->nb, g->npcol, &owner, &jl);
            if (owner != pcol)
                continue;
            int64_t height = pm->upper ? j + 1 : pm->k;
            for (int64_t il = 0; il < nrows; il++) {
                int64_t i = lf_grid_l2g(il, l->mb, prow, g->nprow);
                if (i >= height)
                    break; /* rows ascend with il */
                if (out)
                    out[n] = base[at + i * w + (j - c0)];
                else if (dst)
                    dst[jl * l->lld + il] = base[at + i * w + (j - c0)];
                n++;
            }
        }
        at += (pm->upper ? c1 : pm->k) * w;
    }
    return n;
}

/* Places n values of vals, in walk_panels' order for the panels [p0, p1), into dst. */
static void place_panels(const panel_matrix_t *pm, const lf_grid_t *g, const lf_grid_layout_t *l,
                         int64_t p0, int64_t p1, const double *vals, double *dst)
{
    int64_t n = 0;
    int64_t nrows = lf_grid_numroc(pm->k, l->mb, g->myrow, g->nprow);
    for (int64_t q = p0; q < p1; q++) {
        int64_t c0 = q * pm->panel, c1 = c0 + pm->panel < pm->n_cols ? c0 + pm->panel : pm->n_cols;
        for (int64_t j = c0; j < c1; j++) {
            int owner = 0;
            int64_t jl = 0;
            lf_grid_g2l(j, l->nb, g->npcol, &owner, &jl);
            if (owner != g->mycol)
                continue;
            int64_t height = pm->upper ? j + 1 : pm->k;
            for (int64_t il = 0; il < nrows; il++) {
                if (lf_grid_l2g(il, l->mb, g->myrow, g->nprow) >= height)
                    break;
                dst[jl * l->lld + il] = vals[n++];
            }
        }
    }
}

/* Moves this rank's panels (data) of one matrix to its block-cyclic layout l on the grid (dst
 * zeroed first: G's lower triangle stays 0, never read). P rounds, round t sending to rank + t
 * and receiving from rank - t (round 0, this rank's own elements, a plain copy). */
static lf_err_t panels_to_cyclic(const lf_refit_dist_t *d, const panel_matrix_t *pm,
                                 const double *data, const lf_grid_layout_t *l, double *dst)
{
    lf_err_t err = LF_OK, local = LF_OK;
    const lf_grid_t *g = d->g;
    double *sbuf = NULL, *rbuf = NULL;
    int64_t p0 = 0, p1 = 0;
    run_of(pm, d->o, g->rank, g->size, &p0, &p1);
    int64_t mine = lf_refit_panel_elems(pm->k, pm->n_cols, pm->panel, pm->upper, p0, p1);
    size_t local_n = (size_t)l->lld * (size_t)(l->lcols > 0 ? l->lcols : 1);
    memset(dst, 0, local_n * sizeof *dst);
    if (g->size > 1)
        local = lf_malloc((size_t)(mine > 0 ? mine : 1), sizeof *sbuf, (void **)&sbuf);
    if (local == LF_OK && g->size > 1)
        local = lf_malloc(local_n, sizeof *rbuf, (void **)&rbuf);
    LF_CALL(lf_comm_agree(g->comm, local));
    for (int t = 0; t < g->size; t++) {
        int to = (g->rank + t) % g->size, from = (g->rank - t + g->size) % g->size;
        if (t == 0) { /* this rank's own elements: straight into place */
            walk_panels(pm, g, l, p0, p1, g->myrow, g->mycol, data, NULL, dst);
            continue;
        }
        int64_t f0 = 0, f1 = 0;
        run_of(pm, d->o, from, g->size, &f0, &f1);
        int64_t ns = walk_panels(pm, g, l, p0, p1, to / g->npcol, to % g->npcol, data, sbuf, NULL);
        int64_t nr = walk_panels(pm, g, l, f0, f1, g->myrow, g->mycol, NULL, NULL, NULL);
        /* One message per chunk each way (none for nothing): both ends count them alike. */
        for (int64_t a = 0, b = 0; a < ns || b < nr; a += CHUNK, b += CHUNK) {
            int cs = (int)(ns - a < CHUNK ? ns - a : CHUNK),
                cr = (int)(nr - b < CHUNK ? nr - b : CHUNK);
            MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
            if (b < nr)
                LF_CALL_MPI(MPI_Irecv(rbuf + b, cr, MPI_DOUBLE, from, 0, g->comm, &req[0]));
            if (a < ns)
                LF_CALL_MPI(MPI_Isend(sbuf + a, cs, MPI_DOUBLE, to, 0, g->comm, &req[1]));
            LF_CALL_MPI(MPI_Waitall(2, req, MPI_STATUSES_IGNORE));
        }
        place_panels(pm, g, l, f0, f1, rbuf, dst);
    }
cleanup:
    lf_free(rbuf);
    lf_free(sbuf);
    return err;
}

void lf_refit_dist_destroy(lf_refit_dist_t **d)
{
    if (!d || !*d)
        return;
    lf_free((*d)->xs);
    lf_free((*d)->t);
    lf_free((*d)->x);
    lf_free((*d)->a);
    lf_free((*d)->bh);
    lf_free((*d)->bf);
    lf_free((*d)->gh);
    lf_free((*d)->gf);
    lf_grid_destroy(&(*d)->g);
    lf_free(*d);
    *d = NULL;
}

lf_err_t lf_refit_dist_create(MPI_Comm comm, const lf_refit_sums_t *s, int nb,
                              lf_refit_dist_t **out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    lf_refit_dist_t *d = NULL;
    int rank = 0, size = 1;
    *out = NULL;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL_MPI(MPI_Comm_size(comm, &size));
    int64_t k = s->k, o = s->n_out;
    lf_refit_panels_t want;
    lf_refit_dist_panels(k, o, s->panels.panel > 0 ? s->panels.panel : 1, rank, size, &want);
    if (!s->dist || s->panels.panel < 1 || memcmp(&want, &s->panels, sizeof want) != 0)
        local = LF_ERR_ARG;
    LF_CHECK(lf_comm_agree(comm, local) == LF_OK, LF_ERR_ARG,
             "the distributed refit needs this rank's panels of the sums (G panels %lld-%lld, B "
             "panels %lld-%lld here; %lld-%lld and %lld-%lld expected)",
             (long long)s->panels.g0, (long long)s->panels.g1, (long long)s->panels.b0,
             (long long)s->panels.b1, (long long)want.g0, (long long)want.g1, (long long)want.b0,
             (long long)want.b1);
    LF_CALL(lf_comm_agree(comm, lf_calloc(1, sizeof *d, (void **)&d)));
    d->k = k;
    d->o = o;
    d->nb = nb > 0 ? nb : LF_GRID_BLOCK_DEFAULT;
    d->zz_held = s->zz_held;
    local = lf_int_cast(k, &d->ik);
    if (local == LF_OK)
        local = lf_int_cast(o, &d->io);
    LF_CALL(lf_comm_agree(comm, local));
    /* A sum that is not finite makes every solve meaningless: refused as the serial path does. */
    int64_t n_g = lf_refit_panel_elems(k, k, want.panel, true, want.g0, want.g1);
    for (int64_t i = 0; i < n_g && local == LF_OK; i++)
        if (!isfinite(s->g_fit[i]) || !isfinite(s->g_held[i]))
            local = LF_ERR_VALUE;
    LF_CHECK(lf_comm_agree(comm, local) == LF_OK, LF_ERR_VALUE,
             "the refit's sums are not finite (overflow in double): inputs too large");
    LF_CALL(lf_grid_create(comm, &d->g));
    LF_CALL(lf_grid_layout(d->g, k, k, d->nb, d->nb, &d->lg));
    LF_CALL(lf_grid_layout(d->g, k, o, d->nb, d->nb, &d->lb));
    local = alloc_local(&d->lg, &d->gf);
    if (local == LF_OK)
        local = alloc_local(&d->lg, &d->gh);
    if (local == LF_OK)
        local = alloc_local(&d->lg, &d->a);
    if (local == LF_OK)
        local = alloc_local(&d->lb, &d->bf);
    if (local == LF_OK)
        local = alloc_local(&d->lb, &d->bh);
    if (local == LF_OK)
        local = alloc_local(&d->lb, &d->x);
    if (local == LF_OK)
        local = alloc_local(&d->lb, &d->t);
    if (local == LF_OK)
        local = alloc_local(&d->lb, &d->xs);
    LF_CALL(lf_comm_agree(comm, local));
    const panel_matrix_t pg = {.k = k, .n_cols = k, .panel = want.panel, .upper = true},
                         pb = {.k = k, .n_cols = o, .panel = want.panel, .upper = false};
    LF_CALL(panels_to_cyclic(d, &pg, s->g_fit, &d->lg, d->gf));
    LF_CALL(panels_to_cyclic(d, &pg, s->g_held, &d->lg, d->gh));
    LF_CALL(panels_to_cyclic(d, &pb, s->b_fit, &d->lb, d->bf));
    LF_CALL(panels_to_cyclic(d, &pb, s->b_held, &d->lb, d->bh));
    *out = d;
    d = NULL;
cleanup:
    lf_refit_dist_destroy(&d);
    return err;
}

/* A = G_fit (+ G_held) + λ D, element for element the serial build_system; X = B_fit (+ B_held). */
static void build_system(lf_refit_dist_t *d, double lambda, bool all_rows)
{
    const lf_grid_layout_t *l = &d->lg;
    for (int64_t jl = 0; jl < l->lcols; jl++)
        for (int64_t il = 0; il < l->lrows; il++) {
            int64_t at = jl * l->lld + il, gi = 0, gj = 0;
            d->a[at] = d->gf[at] + (all_rows ? d->gh[at] : 0.0);
            global_of(d->g, l, il, jl, &gi, &gj);
            if (gi == gj) {
                double v = d->a[at];
                d->a[at] += lambda * (v > 0.0 ? v : 1.0);
            }
        }
    const lf_grid_layout_t *lb = &d->lb;
    for (int64_t jl = 0; jl < lb->lcols; jl++)
        for (int64_t il = 0; il < lb->lrows; il++) {
            int64_t at = jl * lb->lld + il;
            d->x[at] = d->bf[at] + (all_rows ? d->bh[at] : 0.0);
        }
}

/* X = V diag(1 / w) Vᵀ B over the eigenvalues w above k ε max(w), as the serial solve_eigen; a
 * holds the system, x the right-hand side, and x receives X. */
static lf_err_t solve_eigen(lf_refit_dist_t *d)
{
    lf_err_t err = LF_OK, local = LF_OK;
    double *w = NULL, *z = NULL, *work = NULL, wq = 0, one = 1.0, zero = 0.0;
    int *iwork = NULL, lwork = -1, liwork = -1, iq = 0, info = 0;
    local = lf_malloc((size_t)d->k, sizeof *w, (void **)&w);
    if (local == LF_OK)
        local = alloc_local(&d->lg, &z);
    LF_CALL(lf_comm_agree(d->g->comm, local));
    pdsyevd_("V", "U", &d->ik, d->a, &ONE, &ONE, d->lg.desc, w, z, &ONE, &ONE, d->lg.desc, &wq,
             &lwork, &iq, &liwork, &info);
    LF_CHECK(lf_comm_agree(d->g->comm, info == 0 ? LF_OK : LF_ERR_INTERNAL) == LF_OK,
             LF_ERR_INTERNAL, "pdsyevd_ workspace query failed (info %d)", info);
    /* The query's figure, with room to spare: some ScaLAPACK versions under-report it. */
    lwork = (int)wq + 2 * d->ik + 1024;
    liwork = iq > 1 ? iq : 1;
    local = lf_malloc((size_t)lwork, sizeof *work, (void **)&work);
    if (local == LF_OK)
        local = lf_malloc((size_t)liwork, sizeof *iwork, (void **)&iwork);
    LF_CALL(lf_comm_agree(d->g->comm, local));
    pdsyevd_("V", "U", &d->ik, d->a, &ONE, &ONE, d->lg.desc, w, z, &ONE, &ONE, d->lg.desc, work,
             &lwork, iwork, &liwork, &info);
    LF_CHECK(lf_comm_agree(d->g->comm, info == 0 ? LF_OK : LF_ERR_VALUE) == LF_OK, LF_ERR_VALUE,
             "the eigendecomposition of a %lld x %lld system did not converge (pdsyevd_ info %d)",
             (long long)d->k, (long long)d->k, info);
    double cut = (double)d->k * 2.220446049250313e-16 * fabs(w[d->k - 1]);
    /* t = Vᵀ B, its rows scaled by 1 / w (0 below the cut); then X = V t. */
    pdgemm_("T", "N", &d->ik, &d->io, &d->ik, &one, z, &ONE, &ONE, d->lg.desc, d->x, &ONE, &ONE,
            d->lb.desc, &zero, d->t, &ONE, &ONE, d->lb.desc);
    for (int64_t jl = 0; jl < d->lb.lcols; jl++)
        for (int64_t il = 0; il < d->lb.lrows; il++) {
            int64_t gi = lf_grid_l2g(il, d->lb.mb, d->g->myrow, d->g->nprow);
            double *v = &d->t[jl * d->lb.lld + il];
            *v = w[gi] > cut ? *v / w[gi] : 0.0;
        }
    pdgemm_("N", "N", &d->ik, &d->io, &d->ik, &one, z, &ONE, &ONE, d->lg.desc, d->t, &ONE, &ONE,
            d->lb.desc, &zero, d->x, &ONE, &ONE, d->lb.desc);
cleanup:
    lf_free(iwork);
    lf_free(work);
    lf_free(z);
    lf_free(w);
    return err;
}

lf_err_t lf_refit_dist_solve(lf_refit_dist_t *d, double lambda, bool all_rows, bool *fallback)
{
    lf_err_t err = LF_OK;
    int info = 0;
    *fallback = false;
    d->solved = false;
    build_system(d, lambda, all_rows);
    pdposv_("U", &d->ik, &d->io, d->a, &ONE, &ONE, d->lg.desc, d->x, &ONE, &ONE, d->lb.desc, &info);
    LF_CALL(lf_comm_agree(d->g->comm, info < 0 ? lf_grid_info_check("pdposv_", info) : LF_OK));
    /* Every rank must take the same branch: a positive info anywhere is the fallback. */
    int any = info > 0, all = 0;
    LF_CALL_MPI(MPI_Allreduce(&any, &all, 1, MPI_INT, MPI_MAX, d->g->comm));
    if (all) { /* not positive definite: start again from the system itself */
        *fallback = true;
        build_system(d, lambda, all_rows);
        LF_CALL(solve_eigen(d));
    }
    d->solved = true;
cleanup:
    return err;
}

lf_err_t lf_refit_dist_held_error(lf_refit_dist_t *d, const double *x, double *e)
{
    lf_err_t err = LF_OK;
    double *parts = NULL, *xl = d->x, one = 1.0, zero = 0.0, mine = 0.0;
    const lf_grid_layout_t *lb = &d->lb;
    *e = NAN;
    LF_CHECK(x || d->solved, LF_ERR_INTERNAL, "held-out error of a solution not computed");
    LF_CALL(
        lf_comm_agree(d->g->comm, lf_malloc((size_t)d->g->size, sizeof *parts, (void **)&parts)));
    if (d->k * d->o == 0) {
        *e = d->zz_held;
        goto cleanup;
    }
    if (x) { /* this rank's elements of x (x is on every rank) */
        xl = d->xs;
        for (int64_t t0 = 0; t0 < lb->lrows; t0 += TILE) /* a tile of rows of x at a time */
            for (int64_t jl = 0; jl < lb->lcols; jl++)
                for (int64_t il = t0; il < t0 + TILE && il < lb->lrows; il++) {
                    int64_t gi = 0, gj = 0;
                    global_of(d->g, lb, il, jl, &gi, &gj);
                    xl[jl * lb->lld + il] = x[gi * d->o + gj];
                }
    }
    /* T = G_h X; Σ‖z - hX‖² = Σ‖z‖² + Σ_aj X_aj (T_aj - 2 B_h,aj). */
    pdsymm_("L", "U", &d->ik, &d->io, &one, d->gh, &ONE, &ONE, d->lg.desc, xl, &ONE, &ONE, lb->desc,
            &zero, d->t, &ONE, &ONE, lb->desc);
    for (int64_t jl = 0; jl < lb->lcols; jl++)
        for (int64_t il = 0; il < lb->lrows; il++) {
            int64_t at = jl * lb->lld + il;
            mine += xl[at] * (d->t[at] - 2.0 * d->bh[at]);
        }
    /* The ranks' parts added in rank order on every rank: the same value everywhere. */
    LF_CALL_MPI(MPI_Allgather(&mine, 1, MPI_DOUBLE, parts, 1, MPI_DOUBLE, d->g->comm));
    double sum = 0.0;
    for (int r = 0; r < d->g->size; r++)
        sum += parts[r];
    *e = d->zz_held + sum;
cleanup:
    lf_free(parts);
    return err;
}

lf_err_t lf_refit_dist_gather(lf_refit_dist_t *d, double *x)
{
    lf_err_t err = LF_OK, local = LF_OK;
    const lf_grid_t *g = d->g;
    const lf_grid_layout_t *l = &d->lb;
    double *buf = NULL;
    int64_t o = d->o, nb = l->mb, most = 0;
    LF_CHECK(d->solved, LF_ERR_INTERNAL, "gather of a solution not computed");
    if (d->k * o == 0)
        goto cleanup;
    for (int r = 0; r < g->size; r++) {
        int64_t n = lf_grid_numroc(d->k, nb, r / g->npcol, g->nprow) *
                    lf_grid_numroc(o, nb, r % g->npcol, g->npcol);
        most = n > most ? n : most;
    }
    local = lf_malloc((size_t)(most > 0 ? most : 1), sizeof *buf, (void **)&buf);
    LF_CALL(lf_comm_agree(g->comm, local));
    /* Each rank's local part to every rank in turn (X is wanted whole everywhere), placed by the
     * sender's layout. */
    for (int r = 0; r < g->size; r++) {
        int prow = r / g->npcol, pcol = r % g->npcol;
        int64_t lr = lf_grid_numroc(d->k, nb, prow, g->nprow),
                lc = lf_grid_numroc(o, nb, pcol, g->npcol);
        if (r == g->rank)
            for (int64_t jl = 0; jl < lc; jl++)
                memcpy(buf + jl * lr, d->x + jl * l->lld, (size_t)lr * sizeof *buf);
        for (int64_t at = 0; at < lr * lc; at += CHUNK) {
            int len = (int)(lr * lc - at < CHUNK ? lr * lc - at : CHUNK);
            LF_CALL_MPI(MPI_Bcast(buf + at, len, MPI_DOUBLE, r, g->comm));
        }
        for (int64_t t0 = 0; t0 < lr; t0 += TILE) /* a tile of rows of x at a time */
            for (int64_t jl = 0; jl < lc; jl++) {
                int64_t gj = lf_grid_l2g(jl, nb, pcol, g->npcol);
                for (int64_t il = t0; il < t0 + TILE && il < lr; il++)
                    x[lf_grid_l2g(il, nb, prow, g->nprow) * o + gj] = buf[jl * lr + il];
            }
    }
cleanup:
    lf_free(buf);
    return err;
}

lf_err_t lf_refit_dist_fit(MPI_Comm comm, const lf_refit_sums_t *s, const double *grid, int n_grid,
                           double default_lambda, int nb, const double *x0, double *x,
                           lf_refit_layer_t *rec)
{
    lf_err_t err = LF_OK;
    lf_refit_dist_t *d = NULL;
    int64_t n = s->k * s->n_out;
    double best = INFINITY, lambda = default_lambda, before = NAN;
    bool fb = false, any_fb = false;
    LF_CALL(lf_refit_dist_create(comm, s, nb, &d));
    for (int g = 0; g < n_grid && s->held_rows > 0; g++) {
        double e = NAN;
        LF_CALL(lf_refit_dist_solve(d, grid[g], false, &fb));
        LF_CALL(lf_refit_dist_held_error(d, NULL, &e));
        if (e < best) { /* the first minimum in the grid's order, as the serial path */
            best = e;
            lambda = grid[g];
        }
    }
    double after = s->held_rows > 0 ? best : 0.0; /* the chosen λ's, from the grid */
    LF_CALL(lf_refit_dist_solve(d, lambda, true, &any_fb));
    LF_CALL(lf_refit_dist_held_error(d, x0, &before));
    double per =
        s->held_rows > 0 && s->n_out > 0 ? 1.0 / ((double)s->held_rows * (double)s->n_out) : 0.0;
    /* Never a worse layer: weights the refit does not beat on the held-out rows stay. */
    bool keep = s->held_rows > 0 && !(after < before);
    if (keep)
        memcpy(x, x0, (size_t)n * sizeof *x);
    else
        LF_CALL(lf_refit_dist_gather(d, x));
    rec->lambda = lambda;
    rec->held_before = before * per;
    rec->held_after = after * per;
    rec->fallback = any_fb;
    rec->kept = keep;
cleanup:
    lf_refit_dist_destroy(&d);
    return err;
}
