/* The BLACS process grid, block-cyclic index maps, descriptors, and ScaLAPACK info codes.
 *
 * BLACS has no error returns: a context that could not be made shows only in Cblacs_gridinfo
 * (myrow -1), and PBLAS routines given an illegal argument print a message and may abort the job.
 * So linfold checks every argument itself before a call (lf_grid_desc_info and the callers'
 * shape checks), agrees the verdict over the grid's communicator, and calls ScaLAPACK only when
 * every rank will; the info decoding then serves descinit_ and the LAPACK-style routines that do
 * return info. */
#include "linfold/grid.h"

#include <stdio.h>
#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"

void lf_grid_shape(int p, int *pr, int *pc)
{
    int r = 1;
    for (int d = 1; (int64_t)d * d <= p; d++)
        if (p % d == 0)
            r = d;
    *pr = r;
    *pc = p / r;
}

static void grid_free(lf_grid_t **g, bool in_grid)
{
    if (!*g)
        return;
    if (in_grid) {
        Cblacs_gridexit((*g)->ctxt);
        Cfree_blacs_system_handle((*g)->handle);
    }
    if ((*g)->comm != MPI_COMM_NULL)
        MPI_Comm_free(&(*g)->comm);
    lf_free(*g);
    *g = NULL;
}

static lf_err_t grid_create(MPI_Comm comm, bool tall, lf_grid_t **out)
{
    lf_err_t err = LF_OK;
    lf_grid_t *g = NULL;
    bool in_grid = false;
    *out = NULL;
    LF_CALL(lf_comm_agree(comm, lf_calloc(1, sizeof *g, (void **)&g)));
    g->comm = MPI_COMM_NULL;
    /* A failed duplicate on one rank is agreed like any other failure. */
    int rc = MPI_Comm_dup(comm, &g->comm);
    if (rc != MPI_SUCCESS)
        g->comm = MPI_COMM_NULL;
    LF_CHECK(lf_comm_agree(comm, rc == MPI_SUCCESS ? LF_OK : LF_ERR_MPI) == LF_OK, LF_ERR_MPI,
             "cannot duplicate the communicator for the process grid");
    LF_CALL_MPI(MPI_Comm_rank(g->comm, &g->rank));
    LF_CALL_MPI(MPI_Comm_size(g->comm, &g->size));
    if (tall)
        lf_grid_shape(g->size, &g->npcol, &g->nprow);
    else
        lf_grid_shape(g->size, &g->nprow, &g->npcol);
    int me = 0, np = 0;
    Cblacs_pinfo(&me, &np); /* initialises BLACS when this is its first use */
    g->handle = Csys2blacs_handle(g->comm);
    g->ctxt = g->handle;
    Cblacs_gridinit(&g->ctxt, "Row", g->nprow, g->npcol);
    in_grid = true;
    int nprow = 0, npcol = 0;
    Cblacs_gridinfo(g->ctxt, &nprow, &npcol, &g->myrow, &g->mycol);
    lf_err_t placed = LF_OK;
    if (nprow != g->nprow || npcol != g->npcol || g->myrow != g->rank / g->npcol ||
        g->mycol != g->rank % g->npcol) {
        placed = LF_ERR_INTERNAL;
        lf_error_record(__FILE__, __LINE__, __func__, placed,
                        "BLACS placed rank %d of %d at (%d, %d) of a %d x %d grid, expected (%d, "
                        "%d) of %d x %d",
                        g->rank, g->size, g->myrow, g->mycol, nprow, npcol, g->rank / g->npcol,
                        g->rank % g->npcol, g->nprow, g->npcol);
    }
    LF_CALL(lf_comm_agree(g->comm, placed));
    *out = g;
    g = NULL;
cleanup:
    grid_free(&g, in_grid);
    return err;
}

lf_err_t lf_grid_create(MPI_Comm comm, lf_grid_t **out) { return grid_create(comm, false, out); }

lf_err_t lf_grid_create_tall(MPI_Comm comm, lf_grid_t **out)
{
    return grid_create(comm, true, out);
}

void lf_grid_destroy(lf_grid_t **g)
{
    if (g)
        grid_free(g, true);
}

int64_t lf_grid_numroc(int64_t n, int64_t nb, int iproc, int nprocs)
{
    int64_t nblocks = n / nb, extra = nblocks % nprocs;
    int64_t count = nblocks / nprocs * nb;
    if (iproc < extra)
        count += nb;
    else if (iproc == extra)
        count += n % nb;
    return count;
}

void lf_grid_g2l(int64_t gi, int64_t nb, int nprocs, int *owner, int64_t *li)
{
    int64_t block = gi / nb;
    *owner = (int)(block % nprocs);
    *li = block / nprocs * nb + gi % nb;
}

int64_t lf_grid_l2g(int64_t li, int64_t nb, int iproc, int nprocs)
{
    return (li / nb * nprocs + iproc) * nb + li % nb;
}

lf_err_t lf_grid_layout(const lf_grid_t *g, int64_t m, int64_t n, int mb, int nb,
                        lf_grid_layout_t *out)
{
    lf_err_t err = LF_OK;
    int im = 0, in = 0, lr = 0, lc = 0, info = 0;
    const int zero = 0;
    memset(out, 0, sizeof *out);
    LF_CHECK(m >= 0 && n >= 0, LF_ERR_ARG, "matrix shape (%lld, %lld) is negative", (long long)m,
             (long long)n);
    LF_CHECK(mb >= 1 && nb >= 1, LF_ERR_ARG, "block shape (%d, %d), expected >= 1", mb, nb);
    LF_CALL(lf_int_cast(m, &im));
    LF_CALL(lf_int_cast(n, &in));
    LF_CALL(lf_int_cast(lf_grid_numroc(m, mb, g->myrow, g->nprow), &lr));
    LF_CALL(lf_int_cast(lf_grid_numroc(n, nb, g->mycol, g->npcol), &lc));
    *out = (lf_grid_layout_t){.m = m, .n = n, .mb = mb, .nb = nb, .lrows = lr, .lcols = lc};
    out->lld = lr > 1 ? lr : 1;
    descinit_(out->desc, &im, &in, &mb, &nb, &zero, &zero, &g->ctxt, &out->lld, &info);
    LF_CALL(lf_grid_info_check("descinit_", info));
cleanup:
    return err;
}

int lf_grid_desc_info(const lf_grid_t *g, const int *desc, int arg)
{
    int base = -arg * 100;
    if (desc[0] != 1)
        return base - 1;
    if (desc[1] != g->ctxt)
        return base - 2;
    if (desc[2] < 0)
        return base - 3;
    if (desc[3] < 0)
        return base - 4;
    if (desc[4] < 1)
        return base - 5;
    if (desc[5] < 1)
        return base - 6;
    if (desc[6] != 0)
        return base - 7;
    if (desc[7] != 0)
        return base - 8;
    int64_t lr = lf_grid_numroc(desc[2], desc[4], g->myrow, g->nprow);
    if (desc[8] < (lr > 1 ? lr : 1))
        return base - 9;
    return 0;
}

/* ---------------------------------------------------------------- info codes */

typedef struct {
    const char *routine;
    const char *const *args; /* 1-based argument i is args[i - 1]; NULL-terminated */
    const char *positive;    /* what info > 0 means, with %d for info; NULL: generic */
} routine_t;

static const char *const DESCINIT_ARGS[] = {"DESC",  "M",     "N",   "MB",   "NB", "IRSRC",
                                            "ICSRC", "ICTXT", "LLD", "INFO", NULL};
static const char *const NUMROC_ARGS[] = {"N", "NB", "IPROC", "ISRCPROC", "NPROCS", NULL};
static const char *const GEMM_ARGS[] = {
    "TRANSA", "TRANSB", "M",  "N",     "K",    "ALPHA", "A",  "IA", "JA",    "DESCA",
    "B",      "IB",     "JB", "DESCB", "BETA", "C",     "IC", "JC", "DESCC", NULL};
static const char *const GEMR2D_ARGS[] = {"M", "N",  "A",  "IA",    "JA",    "DESCA",
                                          "B", "IB", "JB", "DESCB", "ICTXT", NULL};
static const char *const POSV_ARGS[] = {"UPLO", "N",  "NRHS", "A",     "IA",   "JA", "DESCA",
                                        "B",    "IB", "JB",   "DESCB", "INFO", NULL};
static const char *const DESC_ENTRIES[LF_DESC_LEN] = {"DTYPE_", "CTXT_", "M_",    "N_",  "MB_",
                                                      "NB_",    "RSRC_", "CSRC_", "LLD_"};

static const routine_t ROUTINES[] = {
    {"descinit_", DESCINIT_ARGS, NULL},
    {"numroc_", NUMROC_ARGS, NULL},
    {"pdgemm_", GEMM_ARGS, NULL},
    {"psgemm_", GEMM_ARGS, NULL},
    {"pdgemr2d_", GEMR2D_ARGS, NULL},
    {"pdposv_", POSV_ARGS,
     "the leading minor of order %d is not positive definite: no Cholesky factor exists"},
};

static const char *arg_name(const routine_t *r, int i)
{
    if (!r || i < 1)
        return NULL;
    for (int k = 0; r->args[k]; k++)
        if (k == i - 1)
            return r->args[k];
    return NULL;
}

lf_err_t lf_grid_info_check(const char *routine, int info)
{
    lf_err_t err = LF_OK;
    const routine_t *r = NULL;
    if (info == 0)
        return LF_OK;
    for (size_t k = 0; k < sizeof ROUTINES / sizeof ROUTINES[0]; k++)
        if (strcmp(ROUTINES[k].routine, routine) == 0)
            r = &ROUTINES[k];
    if (info > 0) {
        char what[256];
        if (r && r->positive)
            snprintf(what, sizeof what, r->positive, info);
        else
            snprintf(what, sizeof what, "a numerical failure (info = %d)", info);
        LF_FAIL(LF_ERR_INTERNAL, "%s reported %s", routine, what);
    }
    /* info = -i: argument i; info = -(i * 100 + j): entry j of the descriptor argument i. */
    int code = -info, arg = code, entry = 0;
    if (code > 100) {
        arg = code / 100;
        entry = code % 100;
    }
    const char *name = arg_name(r, arg);
    char argtext[64];
    if (name)
        snprintf(argtext, sizeof argtext, "argument %d (%s)", arg, name);
    else
        snprintf(argtext, sizeof argtext, "argument %d", arg);
    if (entry >= 1 && entry <= LF_DESC_LEN)
        LF_FAIL(LF_ERR_ARG, "%s: %s has an illegal descriptor entry %d (%s) (info = %d)", routine,
                argtext, entry, DESC_ENTRIES[entry - 1], info);
    LF_FAIL(LF_ERR_ARG, "%s: %s has an illegal value (info = %d)", routine, argtext, info);
cleanup:
    return err;
}
