/* Distributed merges: block-cyclic reads and writes of HDF5 datasets, and pdgemm_ / psgemm_.
 *
 * A rank's share of a block-cyclic matrix is, in each dimension, a set of global indices: with
 * the identity map, the blocks iproc, iproc + P, ... (one regular hyperslab pattern, start
 * iproc * nb, stride P * nb, plus the last partial block); through an index list (a gathered
 * column or row subset), the runs of consecutive file indices among its local indices. The
 * selection is the product of the two dimensions' patterns, built as a hyperslab union: one
 * H5Sselect_hyperslab per pair of patterns, so a gathered dimension costs one call per run of
 * consecutive indices, and the other dimension at most two. HDF5 transfers a selection in the
 * file's row-major order, which is the local matrix's order too (the block-cyclic map and the
 * index lists are increasing): one read into a row-major float buffer of the local shape, then a
 * transpose into ScaLAPACK's column-major local matrix. A gathered column subset is read by
 * strips instead (read_strips): a union with one piece per row and column run made MPI-IO crawl.
 *
 * Every step that can fail on some ranks only (allocation, selection, transfer) is agreed over
 * the grid's communicator before the next collective, so a failure never leaves a rank waiting
 * inside HDF5, MPI or ScaLAPACK. */
#include "linfold/merge_dist.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "h5io_impl.h"
#include "merge_dist_impl.h"
#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"

struct lf_dist_file {
    const lf_grid_t *grid;
    lf__h5_file_t f;
    hid_t dxpl;
    char path[LF_PATH_MAX];
};

size_t lf__dist_elem_size(lf_dist_prec_t prec)
{
    return prec == LF_DIST_SINGLE ? sizeof(float) : sizeof(double);
}

lf_err_t lf_dist_matrix_create(const lf_grid_t *g, int64_t m, int64_t n, int nb,
                               lf_dist_prec_t prec, lf_dist_matrix_t **out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    lf_dist_matrix_t *M = NULL;
    *out = NULL;
    local = lf_calloc(1, sizeof *M, (void **)&M);
    if (local == LF_OK) {
        M->grid = g;
        M->prec = prec;
        local = lf_grid_layout(g, m, n, nb, nb, &M->lay);
    }
    if (local == LF_OK)
        local = lf_calloc((size_t)M->lay.lld * (size_t)M->lay.lcols, lf__dist_elem_size(prec),
                          &M->data);
    if (local != LF_OK)
        lf_error_trace(__FILE__, __LINE__, __func__);
    LF_CALL(lf_comm_agree(g->comm, local));
    *out = M;
    M = NULL;
cleanup:
    lf_dist_matrix_destroy(&M);
    return err;
}

void lf_dist_matrix_destroy(lf_dist_matrix_t **M)
{
    if (!M || !*M)
        return;
    lf_free((*M)->data);
    lf_free(*M);
    *M = NULL;
}

double lf_dist_matrix_get(const lf_dist_matrix_t *M, int64_t i, int64_t j)
{
    const lf_grid_t *g = M->grid;
    int pr = 0, pc = 0;
    int64_t li = 0, lj = 0;
    if (i < 0 || j < 0 || i >= M->lay.m || j >= M->lay.n)
        return NAN;
    lf_grid_g2l(i, M->lay.mb, g->nprow, &pr, &li);
    lf_grid_g2l(j, M->lay.nb, g->npcol, &pc, &lj);
    if (pr != g->myrow || pc != g->mycol)
        return NAN;
    size_t at = (size_t)lj * (size_t)M->lay.lld + (size_t)li;
    return M->prec == LF_DIST_SINGLE ? (double)((const float *)M->data)[at]
                                     : ((const double *)M->data)[at];
}

/* ---------------------------------------------------------------- files */

/* The transfer list of block-cyclic reads and writes: every rank calls H5Dread / H5Dwrite (the
 * HDF5 call stays collective), but each moves its own blocks with independent MPI-IO. Open MPI
 * 4.1.4's default collective-buffering component (OMPIO's fcoll "vulcan") writes a 3-rank
 * block-cyclic hyperslab union wrongly: stray values outside the selection (measured; Open MPI
 * issue 12718 reports the same at 3 processes). ROMIO, the "two_phase" component and independent
 * transfers write it correctly. */
static hid_t block_dxpl(void)
{
    hid_t dxpl = lf__h5_collective_dxpl();
    if (dxpl >= 0 && H5Pset_dxpl_mpio_collective_opt(dxpl, H5FD_MPIO_INDIVIDUAL_IO) < 0)
        lf__h5_close(&dxpl);
    return dxpl;
}

lf_err_t lf_dist_file_open(const lf_grid_t *g, const char *path, lf_dist_file_t **out)
{
    lf_err_t err = LF_OK;
    lf_dist_file_t *f = NULL;
    *out = NULL;
    LF_CALL(lf_comm_agree(g->comm, lf_calloc(1, sizeof *f, (void **)&f)));
    f->grid = g;
    f->f = LF__H5_FILE_NONE;
    f->dxpl = H5I_INVALID_HID;
    snprintf(f->path, sizeof f->path, "%s", path);
    /* Checks agreed before the collective open (lf__h5_open_file); the open's result agreed
     * after it. */
    lf_err_t opened = lf__h5_open_file(g->comm, f->path, &f->f);
    if (opened == LF_OK) {
        f->dxpl = block_dxpl();
        if (f->dxpl < 0) {
            opened = LF_ERR_HDF5;
            lf_error_record(__FILE__, __LINE__, __func__, opened, "%s: transfer list", path);
        }
    }
    LF_CALL(lf_comm_agree(g->comm, opened));
    *out = f;
    f = NULL;
cleanup:
    lf_dist_file_close(&f);
    return err;
}

void lf_dist_file_close(lf_dist_file_t **f)
{
    if (!f || !*f)
        return;
    lf__h5_close(&(*f)->dxpl);
    lf__h5_close_file(&(*f)->f.id, (*f)->path);
    lf_free(*f);
    *f = NULL;
}

/* ---------------------------------------------------------------- selections */

/* One 1-D hyperslab pattern: count blocks of `block` indices, `stride` apart, from start. */
typedef struct {
    hsize_t start, stride, count, block;
} pattern_t;

/* The patterns of this process's indices of one dimension: n global indices in blocks of nb over
 * nprocs processes, mapped to file indices by idx (strictly increasing) or, without idx, by
 * offset + index. *pats is allocated (at least one entry); *n_pats may be 0. */
static lf_err_t dim_patterns(int64_t n, int nb, int iproc, int nprocs, const int64_t *idx,
                             int64_t offset, pattern_t **pats, int64_t *n_pats)
{
    lf_err_t err = LF_OK;
    int64_t local = lf_grid_numroc(n, nb, iproc, nprocs), k = 0;
    *n_pats = 0;
    if (!idx) {
        LF_CALL(lf_malloc(2, sizeof **pats, (void **)pats));
        int64_t blocks = (n + nb - 1) / nb, mine = (local + nb - 1) / nb;
        bool partial = n % nb != 0 && (blocks - 1) % nprocs == iproc;
        int64_t full = mine - (partial ? 1 : 0);
        /* One process holds the whole dimension: one contiguous run, so that HDF5 and MPI-IO
         * see one piece per row instead of one per block. */
        if (nprocs == 1) {
            if (n > 0)
                (*pats)[k++] = (pattern_t){(hsize_t)offset, 1, 1, (hsize_t)n};
            *n_pats = k;
            goto cleanup;
        }
        /* A stride only where blocks repeat. */
        if (full > 0)
            (*pats)[k++] = (pattern_t){(hsize_t)(offset + (int64_t)iproc * nb),
                                       full > 1 ? (hsize_t)nprocs * (hsize_t)nb : 1, (hsize_t)full,
                                       (hsize_t)nb};
        if (partial)
            (*pats)[k++] =
                (pattern_t){(hsize_t)(offset + (blocks - 1) * nb), 1, 1, (hsize_t)(n % nb)};
        *n_pats = k;
        goto cleanup;
    }
    /* Runs of consecutive file indices among the local indices, in local order. */
    LF_CALL(lf_malloc((size_t)(local > 0 ? local : 1), sizeof **pats, (void **)pats));
    for (int64_t li = 0; li < local; li++) {
        int64_t fi = idx[lf_grid_l2g(li, nb, iproc, nprocs)];
        if (k > 0 && (int64_t)((*pats)[k - 1].start + (*pats)[k - 1].block) == fi)
            (*pats)[k - 1].block++;
        else
            (*pats)[k++] = (pattern_t){(hsize_t)fi, 1, 1, 1};
    }
    *n_pats = k;
cleanup:
    return err;
}

/* Selects in space (2-D) this process's elements of a layout whose rows and columns map to the
 * file by rows / cols (NULL: offset row0 / col0 plus the index), and makes the 1-D memory space
 * of the local element count. */
static lf_err_t select_local(const lf_grid_t *g, const lf_grid_layout_t *lay, const int64_t *rows,
                             int64_t row0, const int64_t *cols, int64_t col0, hid_t space,
                             hid_t *mspace)
{
    lf_err_t err = LF_OK;
    pattern_t *rp = NULL, *cp = NULL;
    int64_t nr = 0, nc = 0;
    hsize_t total = (hsize_t)lay->lrows * (hsize_t)lay->lcols;
    LF_CALL(dim_patterns(lay->m, lay->mb, g->myrow, g->nprow, rows, row0, &rp, &nr));
    LF_CALL(dim_patterns(lay->n, lay->nb, g->mycol, g->npcol, cols, col0, &cp, &nc));
    if (total == 0 || nr == 0 || nc == 0) {
        hsize_t one = 1;
        LF_CALL_H5(H5Sselect_none(space), "empty selection");
        *mspace = H5Screate_simple(1, &one, NULL);
        LF_CALL_H5(*mspace, "memory space");
        LF_CALL_H5(H5Sselect_none(*mspace), "empty selection");
        goto cleanup;
    }
    for (int64_t a = 0; a < nr; a++)
        for (int64_t b = 0; b < nc; b++) {
            hsize_t start[2] = {rp[a].start, cp[b].start};
            hsize_t stride[2] = {rp[a].stride, cp[b].stride};
            hsize_t count[2] = {rp[a].count, cp[b].count};
            hsize_t block[2] = {rp[a].block, cp[b].block};
            LF_CALL_H5(H5Sselect_hyperslab(space, a == 0 && b == 0 ? H5S_SELECT_SET : H5S_SELECT_OR,
                                           start, stride, count, block),
                       "block-cyclic selection");
        }
    hssize_t selected = H5Sget_select_npoints(space);
    LF_CHECK(selected >= 0 && (hsize_t)selected == total, LF_ERR_INTERNAL,
             "block-cyclic selection has %lld elements, expected %llu (%d x %d)",
             (long long)selected, (unsigned long long)total, lay->lrows, lay->lcols);
    *mspace = H5Screate_simple(1, &total, NULL);
    LF_CALL_H5(*mspace, "memory space");
cleanup:
    lf_free(cp);
    lf_free(rp);
    return err;
}

lf_err_t lf__dist_check_index(const int64_t *idx, int64_t n, int64_t dim, const char *what,
                              const char *file, const char *obj)
{
    lf_err_t err = LF_OK;
    for (int64_t t = 0; t < n; t++) {
        LF_CHECK(idx[t] >= 0 && idx[t] < dim, LF_ERR_ARG,
                 "%s: %s has %lld %s, index %lld of the subset is %lld", file, obj, (long long)dim,
                 what, (long long)t, (long long)idx[t]);
        LF_CHECK(t == 0 || idx[t] > idx[t - 1], LF_ERR_ARG,
                 "%s: %s subset is not strictly increasing at index %lld (%lld after %lld)", file,
                 what, (long long)t, (long long)idx[t], (long long)idx[t - 1]);
    }
cleanup:
    return err;
}

/* Reads this process's elements of a gathered-column layout into buf (row-major lr x lc) by
 * strips: for each of its row blocks, the rows of the block times the contiguous column span
 * between its first and last local file column, then picks its columns out of the strip. A
 * hyperslab union of every row times every column run costs one MPI-IO piece per row and run
 * (2 MB/s measured for an 8192 x 5501 gather); strips are a few contiguous pieces per block, at
 * the price of reading the unselected columns inside the span. At most nb x span floats are
 * held at once, never the whole matrix. Independent transfers: ranks hold different numbers of
 * row blocks. Not collective. */
static lf_err_t read_strips(const lf_dist_file_t *f, hid_t dset, const char *dset_path,
                            const lf_grid_layout_t *lay, const int64_t *rows, const int64_t *cols,
                            float *buf)
{
    lf_err_t err = LF_OK;
    const lf_grid_t *g = f->grid;
    const int lr = lay->lrows, lc = lay->lcols;
    int64_t *fc = NULL;
    float *strip = NULL;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    if (lr == 0 || lc == 0)
        return LF_OK;
    LF_CALL(lf_malloc((size_t)lc, sizeof *fc, (void **)&fc));
    for (int c = 0; c < lc; c++)
        fc[c] = cols[lf_grid_l2g(c, lay->nb, g->mycol, g->npcol)];
    const int64_t c0 = fc[0], span = fc[lc - 1] - fc[0] + 1;
    LF_CALL(lf_malloc((size_t)lay->mb * (size_t)span, sizeof *strip, (void **)&strip));
    fspace = H5Dget_space(dset);
    LF_CALL_H5(fspace, "%s: %s dataspace", f->path, dset_path);
    for (int li0 = 0; li0 < lr; li0 += lay->mb) {
        const int h = lr - li0 < lay->mb ? lr - li0 : lay->mb;
        /* The block's file rows, as runs of consecutive indices. */
        int64_t run0 = -1, len = 0;
        bool first = true;
        for (int r = 0; r <= h; r++) {
            int64_t fr = -2;
            if (r < h) {
                int64_t gi = lf_grid_l2g(li0 + r, lay->mb, g->myrow, g->nprow);
                fr = rows ? rows[gi] : gi;
            }
            if (len > 0 && fr == run0 + len) {
                len++;
                continue;
            }
            if (len > 0) {
                hsize_t start[2] = {(hsize_t)run0, (hsize_t)c0},
                        count[2] = {(hsize_t)len, (hsize_t)span};
                LF_CALL_H5(H5Sselect_hyperslab(fspace, first ? H5S_SELECT_SET : H5S_SELECT_OR,
                                               start, NULL, count, NULL),
                           "%s: %s strip selection", f->path, dset_path);
                first = false;
            }
            run0 = fr;
            len = 1;
        }
        hsize_t total = (hsize_t)h * (hsize_t)span;
        mspace = H5Screate_simple(1, &total, NULL);
        LF_CALL_H5(mspace, "memory space");
        LF_CALL_H5(H5Dread(dset, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, strip),
                   "%s: cannot read rows of %s", f->path, dset_path);
        lf__h5_close(&mspace);
        for (int r = 0; r < h; r++)
            for (int c = 0; c < lc; c++)
                buf[(size_t)(li0 + r) * (size_t)lc + (size_t)c] =
                    strip[(size_t)r * (size_t)span + (size_t)(fc[c] - c0)];
    }
cleanup:
    lf__h5_close(&mspace);
    lf__h5_close(&fspace);
    lf_free(strip);
    lf_free(fc);
    return err;
}

/* Tiles of the transposes between HDF5's row-major buffers and ScaLAPACK's column-major local
 * matrices: 32 x 32 floats and doubles stay in L1, where element-wise strided copies of whole
 * rows spent most of a read in cache misses. */
enum { TILE = 32 };

/* M's local matrix = buf (lr, lc), row-major, widened to M's precision. */
static void to_column_major(const float *buf, int lr, int lc, lf_dist_matrix_t *M)
{
    const size_t lld = (size_t)M->lay.lld;
    for (int r0 = 0; r0 < lr; r0 += TILE)
        for (int c0 = 0; c0 < lc; c0 += TILE) {
            int r1 = r0 + TILE < lr ? r0 + TILE : lr, c1 = c0 + TILE < lc ? c0 + TILE : lc;
            for (int c = c0; c < c1; c++) {
                const float *src = buf + (size_t)c;
                if (M->prec == LF_DIST_SINGLE) {
                    float *d = (float *)M->data + (size_t)c * lld;
                    for (int r = r0; r < r1; r++)
                        d[r] = src[(size_t)r * (size_t)lc];
                } else {
                    double *d = (double *)M->data + (size_t)c * lld;
                    for (int r = r0; r < r1; r++)
                        d[r] = src[(size_t)r * (size_t)lc];
                }
            }
        }
}

/* buf (lr, lc), row-major = M's local matrix rounded to float32 (the one rounding). */
static void to_row_major(const lf_dist_matrix_t *M, int lr, int lc, float *buf)
{
    const size_t lld = (size_t)M->lay.lld;
    for (int r0 = 0; r0 < lr; r0 += TILE)
        for (int c0 = 0; c0 < lc; c0 += TILE) {
            int r1 = r0 + TILE < lr ? r0 + TILE : lr, c1 = c0 + TILE < lc ? c0 + TILE : lc;
            for (int c = c0; c < c1; c++) {
                float *dst = buf + (size_t)c;
                if (M->prec == LF_DIST_SINGLE) {
                    const float *s = (const float *)M->data + (size_t)c * lld;
                    for (int r = r0; r < r1; r++)
                        dst[(size_t)r * (size_t)lc] = s[r];
                } else {
                    const double *s = (const double *)M->data + (size_t)c * lld;
                    for (int r = r0; r < r1; r++)
                        dst[(size_t)r * (size_t)lc] = (float)s[r];
                }
            }
        }
}

static const lf__h5_want_t WANT_WEIGHT = {H5T_FLOAT, 2, "a 2-D float dataset"};

lf_err_t lf_dist_read(lf_dist_file_t *f, const char *dset_path, const int64_t *rows, int64_t n_rows,
                      const int64_t *cols, int64_t n_cols, int nb, lf_dist_prec_t prec,
                      lf_dist_matrix_t **out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    const lf_grid_t *g = f->grid;
    hid_t dset = H5I_INVALID_HID, fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    hsize_t dims[2] = {0, 0};
    float *buf = NULL;
    lf_dist_matrix_t *M = NULL;
    *out = NULL;
    local = lf__h5_open_dataset(&f->f, dset_path, &WANT_WEIGHT, &dset, dims);
    if (local == LF_OK && rows)
        local = lf__dist_check_index(rows, n_rows, (int64_t)dims[0], "rows", f->path, dset_path);
    if (local == LF_OK && cols)
        local = lf__dist_check_index(cols, n_cols, (int64_t)dims[1], "columns", f->path, dset_path);
    LF_CALL(lf_comm_agree(g->comm, local));
    int64_t m = rows ? n_rows : (int64_t)dims[0], n = cols ? n_cols : (int64_t)dims[1];
    LF_CALL(lf_dist_matrix_create(g, m, n, nb, prec, &M));
    const int lr = M->lay.lrows, lc = M->lay.lcols;
    local = lf_malloc((size_t)lr * (size_t)lc, sizeof *buf, (void **)&buf);
    if (local == LF_OK && cols) {
        /* A gathered column subset: strips, independently per rank. */
        local = read_strips(f, dset, dset_path, &M->lay, rows, cols, buf);
        LF_CALL(lf_comm_agree(g->comm, local));
    } else {
        if (local == LF_OK) {
            fspace = H5Dget_space(dset);
            if (fspace < 0) {
                local = LF_ERR_HDF5;
                lf_error_record(__FILE__, __LINE__, __func__, local, "%s: %s dataspace", f->path,
                                dset_path);
            }
        }
        if (local == LF_OK)
            local = select_local(g, &M->lay, rows, 0, cols, 0, fspace, &mspace);
        LF_CALL(lf_comm_agree(g->comm, local));
        /* Every rank reaches the read, with an empty selection when it holds nothing. */
        herr_t rc = H5Dread(dset, H5T_NATIVE_FLOAT, mspace, fspace, f->dxpl, buf);
        if (rc < 0) {
            char h5[256];
            lf__h5_error_text(h5, sizeof h5);
            local = LF_ERR_HDF5;
            lf_error_record(__FILE__, __LINE__, __func__, local,
                            "%s: cannot read this rank's blocks of %s (HDF5: %s)", f->path,
                            dset_path, h5);
        }
        LF_CALL(lf_comm_agree(g->comm, local));
    }
    /* Row-major (lr, lc) to column-major (lld, lc), widened once. */
    to_column_major(buf, lr, lc, M);
    *out = M;
    M = NULL;
cleanup:
    lf_dist_matrix_destroy(&M);
    lf_free(buf);
    lf__h5_close(&mspace);
    lf__h5_close(&fspace);
    lf__h5_close(&dset);
    return err;
}

/* ---------------------------------------------------------------- products */

/* The argument positions of A, B and C's descriptors in pdgemm_ / psgemm_. */
enum { ARG_DESCA = 10, ARG_DESCB = 14, ARG_DESCC = 19 };

static lf_err_t gemm_check(const lf_dist_matrix_t *A, const lf_dist_matrix_t *B,
                           const lf_dist_matrix_t *C, const char *routine)
{
    lf_err_t err = LF_OK;
    const lf_grid_t *g = C->grid;
    LF_CHECK(A->grid == g && B->grid == g, LF_ERR_ARG,
             "%s: the operands live on different process grids", routine);
    LF_CHECK(A->prec == C->prec && B->prec == C->prec, LF_ERR_ARG,
             "%s: the operands mix single and double precision", routine);
    LF_CHECK(A->lay.n == B->lay.m && C->lay.m == A->lay.m && C->lay.n == B->lay.n, LF_ERR_SHAPE,
             "%s: C (%lld, %lld) += A (%lld, %lld) · B (%lld, %lld): shapes do not match", routine,
             (long long)C->lay.m, (long long)C->lay.n, (long long)A->lay.m, (long long)A->lay.n,
             (long long)B->lay.m, (long long)B->lay.n);
    LF_CALL(lf_grid_info_check(routine, lf_grid_desc_info(g, A->lay.desc, ARG_DESCA)));
    LF_CALL(lf_grid_info_check(routine, lf_grid_desc_info(g, B->lay.desc, ARG_DESCB)));
    LF_CALL(lf_grid_info_check(routine, lf_grid_desc_info(g, C->lay.desc, ARG_DESCC)));
    /* The descriptors must also describe the matrices as linfold holds them. */
    const lf_dist_matrix_t *ms[3] = {A, B, C};
    for (int t = 0; t < 3; t++) {
        const int *d = ms[t]->lay.desc;
        LF_CHECK(d[2] == ms[t]->lay.m && d[3] == ms[t]->lay.n && d[8] == ms[t]->lay.lld, LF_ERR_ARG,
                 "%s: the descriptor of %c does not match its layout", routine, "ABC"[t]);
    }
    /* Conforming blocks: A's columns are cut like B's rows, C's like A's rows and B's columns. */
    LF_CHECK(A->lay.desc[5] == B->lay.desc[4] && C->lay.desc[4] == A->lay.desc[4] &&
                 C->lay.desc[5] == B->lay.desc[5],
             LF_ERR_ARG,
             "%s: block sizes do not conform: A %d x %d, B %d x %d, C %d x %d (need A's column "
             "blocks = B's row blocks, C's = A's rows x B's columns)",
             routine, A->lay.desc[4], A->lay.desc[5], B->lay.desc[4], B->lay.desc[5],
             C->lay.desc[4], C->lay.desc[5]);
cleanup:
    return err;
}

lf_err_t lf_dist_gemm(const lf_dist_matrix_t *A, const lf_dist_matrix_t *B, lf_dist_matrix_t *C)
{
    lf_err_t err = LF_OK;
    const lf_grid_t *g = C->grid;
    const bool single = C->prec == LF_DIST_SINGLE;
    const char *routine = single ? "psgemm_" : "pdgemm_";
    LF_CALL(lf_comm_agree(g->comm, gemm_check(A, B, C, routine)));
    int m = C->lay.desc[2], n = C->lay.desc[3], k = A->lay.desc[3], one = 1;
    if (m == 0 || n == 0 || k == 0)
        return LF_OK;
    if (single) {
        const float alpha = 1.0f, beta = 1.0f;
        psgemm_("N", "N", &m, &n, &k, &alpha, A->data, &one, &one, A->lay.desc, B->data, &one, &one,
                B->lay.desc, &beta, C->data, &one, &one, C->lay.desc);
    } else {
        const double alpha = 1.0, beta = 1.0;
        pdgemm_("N", "N", &m, &n, &k, &alpha, A->data, &one, &one, A->lay.desc, B->data, &one, &one,
                B->lay.desc, &beta, C->data, &one, &one, C->lay.desc);
    }
cleanup:
    return err;
}

/* ---------------------------------------------------------------- writing */

lf_err_t lf_dist_write(const lf_dist_matrix_t *M, hid_t dset, int64_t row0, int64_t col0)
{
    lf_err_t err = LF_OK, local = LF_OK;
    const lf_grid_t *g = M->grid;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    float *buf = NULL;
    const int lr = M->lay.lrows, lc = M->lay.lcols;
    hsize_t dims[2] = {0, 0};
    fspace = H5Dget_space(dset);
    if (fspace < 0 || H5Sget_simple_extent_ndims(fspace) != 2 ||
        H5Sget_simple_extent_dims(fspace, dims, NULL) < 0) {
        H5Eclear2(H5E_DEFAULT);
        local = LF_ERR_HDF5;
        lf_error_record(__FILE__, __LINE__, __func__, local,
                        "the output dataset is not an open 2-D dataset");
    } else if (row0 < 0 || col0 < 0 || row0 + M->lay.m > (int64_t)dims[0] ||
               col0 + M->lay.n > (int64_t)dims[1]) {
        local = LF_ERR_SHAPE;
        lf_error_record(__FILE__, __LINE__, __func__, local,
                        "a (%lld, %lld) result at (%lld, %lld) does not fit the output dataset "
                        "(%llu, %llu)",
                        (long long)M->lay.m, (long long)M->lay.n, (long long)row0, (long long)col0,
                        (unsigned long long)dims[0], (unsigned long long)dims[1]);
    }
    if (local == LF_OK)
        local = lf_malloc((size_t)lr * (size_t)lc, sizeof *buf, (void **)&buf);
    if (local == LF_OK)
        local = select_local(g, &M->lay, NULL, row0, NULL, col0, fspace, &mspace);
    if (local == LF_OK) {
        dxpl = block_dxpl();
        if (dxpl < 0) {
            local = LF_ERR_HDF5;
            lf_error_record(__FILE__, __LINE__, __func__, local, "transfer list");
        }
    }
    LF_CALL(lf_comm_agree(g->comm, local));
    /* Column-major (lld, lc) to row-major (lr, lc): the one rounding to float32. */
    to_row_major(M, lr, lc, buf);
    herr_t rc = H5Dwrite(dset, H5T_NATIVE_FLOAT, mspace, fspace, dxpl, buf);
    if (rc < 0) {
        char h5[256];
        lf__h5_error_text(h5, sizeof h5);
        local = LF_ERR_HDF5;
        lf_error_record(__FILE__, __LINE__, __func__, local,
                        "cannot write this rank's blocks of a (%lld, %lld) result (HDF5: %s)",
                        (long long)M->lay.m, (long long)M->lay.n, h5);
    }
    LF_CALL(lf_comm_agree(g->comm, local));
cleanup:
    lf_free(buf);
    lf__h5_close(&dxpl);
    lf__h5_close(&mspace);
    lf__h5_close(&fspace);
    return err;
}

/* ---------------------------------------------------------------- merges */

/* The shape of a 2-D float dataset of f (opened and checked, then closed), agreed. */
static lf_err_t dataset_dims(lf_dist_file_t *f, const char *path, hsize_t dims[2])
{
    lf_err_t err = LF_OK;
    hid_t dset = H5I_INVALID_HID;
    lf_err_t local = lf__h5_open_dataset(&f->f, path, &WANT_WEIGHT, &dset, dims);
    lf__h5_close(&dset);
    LF_CALL(lf_comm_agree(f->grid->comm, local));
cleanup:
    return err;
}

lf_err_t lf_merge_dist_product(lf_dist_file_t *f, int i, int j, const int64_t *cols, int64_t n_cols,
                               const char *skip_path, const lf_merge_dist_opts_t *opts,
                               lf_dist_matrix_t **C)
{
    lf_err_t err = LF_OK;
    lf_dist_matrix_t *A = NULL, *B = NULL, *made = NULL;
    int nb = opts && opts->block > 0 ? opts->block : LF_GRID_BLOCK_DEFAULT;
    lf_dist_prec_t prec = opts ? opts->prec : LF_DIST_DOUBLE;
    char wi[64], wj[64];
    hsize_t di[2], dj[2];
    LF_CHECK(cols != NULL, LF_ERR_ARG, "lf_merge_dist_product: no column subset");
    snprintf(wi, sizeof wi, "/layers/%d/weight", i);
    snprintf(wj, sizeof wj, "/layers/%d/weight", j);
    LF_CALL(dataset_dims(f, wi, di));
    LF_CALL(dataset_dims(f, wj, dj));
    if (!*C) {
        if (skip_path)
            LF_CALL(lf_dist_read(f, skip_path, NULL, 0, NULL, 0, nb, prec, &made));
        else
            LF_CALL(
                lf_dist_matrix_create(f->grid, (int64_t)di[0], (int64_t)dj[1], nb, prec, &made));
        LF_CHECK(made->lay.m == (int64_t)di[0] && made->lay.n == (int64_t)dj[1], LF_ERR_SHAPE,
                 "%s: %s has shape (%lld, %lld), expected (%llu, %llu): the outputs of %s by the "
                 "inputs of %s",
                 f->path, skip_path, (long long)made->lay.m, (long long)made->lay.n,
                 (unsigned long long)di[0], (unsigned long long)dj[1], wi, wj);
    }
    LF_CALL(lf_dist_read(f, wi, NULL, 0, cols, n_cols, nb, prec, &A));
    LF_CALL(lf_dist_read(f, wj, cols, n_cols, NULL, 0, nb, prec, &B));
    LF_CALL(lf_dist_gemm(A, B, made ? made : *C));
    if (made) {
        *C = made;
        made = NULL;
    }
cleanup:
    lf_dist_matrix_destroy(&B);
    lf_dist_matrix_destroy(&A);
    lf_dist_matrix_destroy(&made);
    return err;
}
