/* Moving and reducing distributed matrices: row and column selections (one all-to-all) and
 * matrix-vector products whose result every rank holds bit for bit.
 *
 * A selection sends every kept element once, straight from its owner in M to its owner in the
 * result, with no index traffic: the sender walks its local elements in (column, row) order and
 * the receiver walks its local result elements in (new column, new row) order; because the index
 * lists are strictly increasing, the two orders agree for every pair of processes. Counts and
 * displacements of MPI_Alltoallv are ints, so a selection whose local share exceeds what they can
 * address moves in several rounds of result-column strips. */
#include <limits.h>
#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/merge_dist.h"
#include "merge_dist_impl.h"

/* One element of es bytes (4 or 8): constant-size copies the compiler inlines. */
static inline void copy_elem(char *dst, const char *src, size_t es)
{
    if (es == sizeof(double))
        memcpy(dst, src, sizeof(double));
    else
        memcpy(dst, src, sizeof(float));
}

/* Position of g in the strictly increasing list idx[0..n), or -1 (idx NULL: g itself). */
static int64_t position(const int64_t *idx, int64_t n, int64_t g)
{
    if (!idx)
        return g < n ? g : -1;
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (idx[mid] < g)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && idx[lo] == g ? lo : -1;
}

static lf_err_t check_list(const int64_t *idx, int64_t n, int64_t dim, const char *what)
{
    lf_err_t err = LF_OK;
    LF_CHECK(n >= 0 && (idx || n == dim), LF_ERR_ARG,
             "lf_dist_select: %lld %s of %lld without an index list", (long long)n, what,
             (long long)dim);
    if (idx)
        LF_CALL(lf__dist_check_index(idx, n, dim, what, "lf_dist_select", "the matrix"));
cleanup:
    return err;
}

/* What one process knows of a selection: for its local rows and columns of M, their positions
 * in the result (-1: not kept); for its local rows and columns of the result, the process row and
 * column that own their source. */
typedef struct {
    int64_t *src_row_pos, *src_col_pos; /* lrows / lcols of M */
    int *dst_row_proc, *dst_col_proc;   /* lrows / lcols of the result: owner in M */
    int64_t *dst_col_global;            /* lcols of the result: its global column */
} sel_maps_t;

static void maps_free(sel_maps_t *s)
{
    lf_free(s->src_row_pos);
    lf_free(s->src_col_pos);
    lf_free(s->dst_row_proc);
    lf_free(s->dst_col_proc);
    lf_free(s->dst_col_global);
}

static lf_err_t maps_build(const lf_dist_matrix_t *M, const lf_dist_matrix_t *R,
                           const int64_t *rows, int64_t n_rows, const int64_t *cols, int64_t n_cols,
                           sel_maps_t *s)
{
    lf_err_t err = LF_OK;
    const lf_grid_t *g = M->grid;
    int64_t nb = M->lay.nb;
    int64_t lr = M->lay.lrows, lc = M->lay.lcols, rr = R->lay.lrows, rc = R->lay.lcols;
    LF_CALL(lf_malloc((size_t)(lr > 0 ? lr : 1), sizeof *s->src_row_pos, (void **)&s->src_row_pos));
    LF_CALL(lf_malloc((size_t)(lc > 0 ? lc : 1), sizeof *s->src_col_pos, (void **)&s->src_col_pos));
    LF_CALL(
        lf_malloc((size_t)(rr > 0 ? rr : 1), sizeof *s->dst_row_proc, (void **)&s->dst_row_proc));
    LF_CALL(
        lf_malloc((size_t)(rc > 0 ? rc : 1), sizeof *s->dst_col_proc, (void **)&s->dst_col_proc));
    LF_CALL(lf_malloc((size_t)(rc > 0 ? rc : 1), sizeof *s->dst_col_global,
                      (void **)&s->dst_col_global));
    for (int64_t k = 0; k < lr; k++)
        s->src_row_pos[k] = position(rows, n_rows, lf_grid_l2g(k, nb, g->myrow, g->nprow));
    for (int64_t k = 0; k < lc; k++)
        s->src_col_pos[k] = position(cols, n_cols, lf_grid_l2g(k, nb, g->mycol, g->npcol));
    for (int64_t k = 0; k < rr; k++) {
        int64_t i = lf_grid_l2g(k, nb, g->myrow, g->nprow), li = 0;
        lf_grid_g2l(rows ? rows[i] : i, nb, g->nprow, &s->dst_row_proc[k], &li);
    }
    for (int64_t k = 0; k < rc; k++) {
        int64_t j = lf_grid_l2g(k, nb, g->mycol, g->npcol), lj = 0;
        s->dst_col_global[k] = j;
        lf_grid_g2l(cols ? cols[j] : j, nb, g->npcol, &s->dst_col_proc[k], &lj);
    }
cleanup:
    return err;
}

/* The rank owning element (i, j) of a matrix in blocks of nb on g (row-major ranks). */
static int owner(const lf_grid_t *g, int64_t i, int64_t j, int64_t nb)
{
    return (int)((i / nb) % g->nprow) * g->npcol + (int)((j / nb) % g->npcol);
}

/* One round: the result columns [j0, j1). Local but for the one MPI_Alltoallv. */
static lf_err_t move_round(const lf_dist_matrix_t *M, lf_dist_matrix_t *R, const sel_maps_t *s,
                           int64_t j0, int64_t j1, int *scount, int *sdispl, int *rcount,
                           int *rdispl, char *sbuf, char *rbuf, int *cursor)
{
    lf_err_t err = LF_OK;
    const lf_grid_t *g = M->grid;
    int P = g->size;
    size_t es = lf__dist_elem_size(M->prec);
    int64_t nb = M->lay.nb;
    MPI_Datatype type = M->prec == LF_DIST_SINGLE ? MPI_FLOAT : MPI_DOUBLE;
    memset(scount, 0, (size_t)P * sizeof *scount);
    memset(rcount, 0, (size_t)P * sizeof *rcount);
    /* Counts: what this process sends to and receives from each rank in this strip. */
    for (int c = 0; c < M->lay.lcols; c++) {
        int64_t j = s->src_col_pos[c];
        if (j < j0 || j >= j1)
            continue;
        for (int r = 0; r < M->lay.lrows; r++)
            if (s->src_row_pos[r] >= 0)
                scount[owner(g, s->src_row_pos[r], j, nb)]++;
    }
    for (int c = 0; c < R->lay.lcols; c++) {
        if (s->dst_col_global[c] < j0 || s->dst_col_global[c] >= j1)
            continue;
        for (int r = 0; r < R->lay.lrows; r++)
            rcount[s->dst_row_proc[r] * g->npcol + s->dst_col_proc[c]]++;
    }
    int64_t st = 0, rt = 0;
    for (int p = 0; p < P; p++) {
        sdispl[p] = (int)st;
        rdispl[p] = (int)rt;
        st += scount[p];
        rt += rcount[p];
    }
    /* Pack in (column, row) order. */
    memcpy(cursor, sdispl, (size_t)P * sizeof *cursor);
    for (int c = 0; c < M->lay.lcols; c++) {
        int64_t j = s->src_col_pos[c];
        if (j < j0 || j >= j1)
            continue;
        for (int r = 0; r < M->lay.lrows; r++) {
            if (s->src_row_pos[r] < 0)
                continue;
            int p = owner(g, s->src_row_pos[r], j, nb);
            size_t from = ((size_t)c * (size_t)M->lay.lld + (size_t)r) * es;
            copy_elem(sbuf + (size_t)cursor[p]++ * es, (const char *)M->data + from, es);
        }
    }
    LF_CALL_MPI(MPI_Alltoallv(sbuf, scount, sdispl, type, rbuf, rcount, rdispl, type, g->comm));
    /* Unpack in (new column, new row) order. */
    memcpy(cursor, rdispl, (size_t)P * sizeof *cursor);
    for (int c = 0; c < R->lay.lcols; c++) {
        if (s->dst_col_global[c] < j0 || s->dst_col_global[c] >= j1)
            continue;
        for (int r = 0; r < R->lay.lrows; r++) {
            int p = s->dst_row_proc[r] * g->npcol + s->dst_col_proc[c];
            size_t to = ((size_t)c * (size_t)R->lay.lld + (size_t)r) * es;
            copy_elem((char *)R->data + to, rbuf + (size_t)cursor[p]++ * es, es);
        }
    }
cleanup:
    return err;
}

/* Elements an MPI_Alltoallv round may address on one rank. */
#define ROUND_LIMIT ((int64_t)INT_MAX / 2)

lf_err_t lf_dist_select(const lf_dist_matrix_t *M, const int64_t *rows, int64_t n_rows,
                        const int64_t *cols, int64_t n_cols, lf_dist_matrix_t **out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    const lf_grid_t *g = M->grid;
    lf_dist_matrix_t *R = NULL;
    sel_maps_t s = {0};
    int *counts = NULL;
    char *sbuf = NULL, *rbuf = NULL;
    int P = g->size;
    *out = NULL;
    if (!rows)
        n_rows = M->lay.m;
    if (!cols)
        n_cols = M->lay.n;
    local = check_list(rows, n_rows, M->lay.m, "rows");
    if (local == LF_OK)
        local = check_list(cols, n_cols, M->lay.n, "columns");
    LF_CALL(lf_comm_agree(g->comm, local));
    LF_CALL(lf_dist_matrix_create(g, n_rows, n_cols, M->lay.nb, M->prec, &R));
    /* Element counts of this rank's whole share, both ways, to size the rounds. */
    local = maps_build(M, R, rows, n_rows, cols, n_cols, &s);
    int64_t kept_rows = 0, kept_cols = 0;
    for (int r = 0; local == LF_OK && r < M->lay.lrows; r++)
        kept_rows += s.src_row_pos[r] >= 0;
    for (int c = 0; local == LF_OK && c < M->lay.lcols; c++)
        kept_cols += s.src_col_pos[c] >= 0;
    int64_t mine = kept_rows * kept_cols;
    int64_t theirs = (int64_t)R->lay.lrows * R->lay.lcols;
    int64_t need = (mine > theirs ? mine : theirs) / ROUND_LIMIT + 1, rounds = 0;
    LF_CALL(lf_comm_agree(g->comm, local));
    LF_CALL_MPI(MPI_Allreduce(&need, &rounds, 1, MPI_INT64_T, MPI_MAX, g->comm));
    /* Column strips hold about 1/rounds of every share; twice as many keeps the unevenness of
     * the block-cyclic map inside the limit. */
    if (rounds > 1)
        rounds *= 2;
    int64_t strip = n_cols / rounds + 1;
    size_t es = lf__dist_elem_size(M->prec);
    int64_t sbytes = (mine < ROUND_LIMIT ? mine : ROUND_LIMIT) * (int64_t)es;
    int64_t rbytes = (theirs < ROUND_LIMIT ? theirs : ROUND_LIMIT) * (int64_t)es;
    local = lf_malloc((size_t)P * 5, sizeof *counts, (void **)&counts);
    if (local == LF_OK)
        local = lf_malloc((size_t)(sbytes > 0 ? sbytes : 1), 1, (void **)&sbuf);
    if (local == LF_OK)
        local = lf_malloc((size_t)(rbytes > 0 ? rbytes : 1), 1, (void **)&rbuf);
    LF_CALL(lf_comm_agree(g->comm, local));
    for (int64_t j0 = 0; j0 < n_cols || (j0 == 0 && n_cols == 0); j0 += strip) {
        int64_t j1 = j0 + strip < n_cols ? j0 + strip : n_cols;
        /* A strip beyond the limit on any rank is an error, agreed before the collective. */
        int64_t ms = 0, mr = 0;
        for (int c = 0; c < M->lay.lcols; c++)
            if (s.src_col_pos[c] >= j0 && s.src_col_pos[c] < j1)
                ms += kept_rows;
        for (int c = 0; c < R->lay.lcols; c++)
            if (s.dst_col_global[c] >= j0 && s.dst_col_global[c] < j1)
                mr += R->lay.lrows;
        local = ms <= ROUND_LIMIT && mr <= ROUND_LIMIT ? LF_OK : LF_ERR_OVERFLOW;
        if (local != LF_OK)
            lf_error_record(__FILE__, __LINE__, __func__, local,
                            "lf_dist_select: a column strip of %lld elements on one rank",
                            (long long)(ms > mr ? ms : mr));
        LF_CALL(lf_comm_agree(g->comm, local));
        LF_CALL(
            lf_comm_agree(g->comm, move_round(M, R, &s, j0, j1, counts, counts + P, counts + 2 * P,
                                              counts + 3 * P, sbuf, rbuf, counts + 4 * P)));
        if (n_cols == 0)
            break;
    }
    *out = R;
    R = NULL;
cleanup:
    lf_free(rbuf);
    lf_free(sbuf);
    lf_free(counts);
    maps_free(&s);
    lf_dist_matrix_destroy(&R);
    return err;
}

lf_err_t lf_dist_matvec_add(const lf_dist_matrix_t *M, const double *v, double *y)
{
    lf_err_t err = LF_OK, local = LF_OK;
    const lf_grid_t *g = M->grid;
    int P = g->size;
    int64_t nb = M->lay.nb, lr = M->lay.lrows, lc = M->lay.lcols, m = M->lay.m;
    double *part = NULL, *all = NULL;
    int *counts = NULL, *displs = NULL;
    local = lf_malloc((size_t)(lr > 0 ? lr : 1), sizeof *part, (void **)&part);
    if (local == LF_OK)
        local = lf_malloc((size_t)P, sizeof *counts, (void **)&counts);
    if (local == LF_OK)
        local = lf_malloc((size_t)P, sizeof *displs, (void **)&displs);
    /* Every process row's rows, once per process column of the grid. */
    int64_t total = m * g->npcol;
    if (local == LF_OK && total > INT_MAX) {
        local = LF_ERR_OVERFLOW;
        lf_error_record(__FILE__, __LINE__, __func__, local,
                        "lf_dist_matvec_add: %lld rows x %d process columns", (long long)m,
                        g->npcol);
    }
    if (local == LF_OK)
        local = lf_malloc((size_t)(total > 0 ? total : 1), sizeof *all, (void **)&all);
    LF_CALL(lf_comm_agree(g->comm, local));
    /* This process's partial sums, each row's columns added in increasing local order; walked
     * column by column, the order of the column-major storage. */
    for (int64_t r = 0; r < lr; r++)
        part[r] = 0;
    for (int64_t c = 0; c < lc; c++) {
        double vc = v[lf_grid_l2g(c, nb, g->mycol, g->npcol)];
        if (M->prec == LF_DIST_SINGLE) {
            const float *col = (const float *)M->data + c * M->lay.lld;
            for (int64_t r = 0; r < lr; r++)
                part[r] += (double)col[r] * vc;
        } else {
            const double *col = (const double *)M->data + c * M->lay.lld;
            for (int64_t r = 0; r < lr; r++)
                part[r] += col[r] * vc;
        }
    }
    int64_t at = 0;
    for (int p = 0; p < P; p++) {
        counts[p] = (int)lf_grid_numroc(m, nb, p / g->npcol, g->nprow);
        displs[p] = (int)at;
        at += counts[p];
    }
    LF_CALL_MPI(
        MPI_Allgatherv(part, (int)lr, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, g->comm));
    /* Process columns summed in order 0, 1, ...: the same bits on every rank. */
    for (int pr = 0; pr < g->nprow; pr++) {
        int64_t rows_here = lf_grid_numroc(m, nb, pr, g->nprow);
        for (int64_t li = 0; li < rows_here; li++) {
            double acc = 0;
            for (int pc = 0; pc < g->npcol; pc++)
                acc += all[displs[pr * g->npcol + pc] + li];
            y[lf_grid_l2g(li, nb, pr, g->nprow)] += acc;
        }
    }
cleanup:
    lf_free(all);
    lf_free(displs);
    lf_free(counts);
    lf_free(part);
    return err;
}
