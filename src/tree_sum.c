/* Rank-count-invariant sums over a fixed pairwise tree of groups; see tree_sum.h. */
#include "linfold/tree_sum.h"

#include <string.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"

enum { LEVELS_MAX = 64, CHUNK = 1 << 20 }; /* CHUNK: doubles per message (8 MiB) */

typedef struct {
    int level;
    int64_t index; /* the node covers groups [index 2^level, (index + 1) 2^level) */
    double *v;
} node_t;

struct lf_tree_sum {
    int64_t len, n_groups;
    int64_t next; /* the group this rank must push next; -1 before the first */
    int n;        /* nodes on the stack */
    node_t stack[LEVELS_MAX + 2];
};

lf_err_t lf_tree_sum_create(int64_t len, int64_t n_groups, lf_tree_sum_t **out)
{
    lf_err_t err = LF_OK;
    lf_tree_sum_t *t = NULL;
    *out = NULL;
    LF_CHECK(len >= 0 && n_groups >= 0, LF_ERR_ARG, "tree sum of %lld values over %lld groups",
             (long long)len, (long long)n_groups);
    LF_CALL(lf_calloc(1, sizeof *t, (void **)&t));
    t->len = len;
    t->n_groups = n_groups;
    t->next = -1;
    *out = t;
cleanup:
    return err;
}

void lf_tree_sum_destroy(lf_tree_sum_t **t)
{
    if (!t || !*t)
        return;
    for (int k = 0; k < (*t)->n; k++)
        lf_free((*t)->stack[k].v);
    lf_free(*t);
    *t = NULL;
}

static void add_into(double *restrict left, const double *restrict right, int64_t len)
{
    for (int64_t k = 0; k < len; k++)
        left[k] += right[k];
}

/* Pushes a node (taking its vector) and adds siblings: while the top two nodes are the left and
 * right children of one parent, they become that parent (left + right). */
static void push_node(lf_tree_sum_t *t, node_t nd)
{
    t->stack[t->n++] = nd;
    while (t->n >= 2) {
        node_t *l = &t->stack[t->n - 2], *r = &t->stack[t->n - 1];
        if (l->level != r->level || l->index % 2 != 0 || r->index != l->index + 1)
            break;
        add_into(l->v, r->v, t->len);
        lf_free(r->v);
        t->n--;
        l->level++;
        l->index /= 2;
    }
}

lf_err_t lf_tree_sum_push(lf_tree_sum_t *t, int64_t g, const double *v)
{
    lf_err_t err = LF_OK;
    node_t nd = {.level = 0, .index = g, .v = NULL};
    LF_CHECK(g >= 0 && g < t->n_groups && (t->next < 0 || g == t->next), LF_ERR_ARG,
             "tree sum: group %lld of %lld pushed, expected %lld", (long long)g,
             (long long)t->n_groups, (long long)t->next);
    t->next = g + 1;
    LF_CALL(lf_malloc((size_t)t->len, sizeof *nd.v, (void **)&nd.v));
    memcpy(nd.v, v, (size_t)t->len * sizeof *nd.v);
    push_node(t, nd);
cleanup:
    return err;
}

/* The root, once every node of the tree is on the stack in group order (levels strictly
 * falling: the binary counter's form). The last node may be a left child whose right sibling
 * holds no group (the groups end inside it): it then stands for its parent as it is, and rises
 * until it meets its sibling. Returns false on a stack no in-order runs can produce. */
static bool close_tree(lf_tree_sum_t *t)
{
    while (t->n >= 2) {
        node_t *l = &t->stack[t->n - 2], *r = &t->stack[t->n - 1];
        while (r->level < l->level && r->index % 2 == 0) {
            r->level++;
            r->index /= 2;
        }
        if (r->level != l->level || l->index % 2 != 0 || r->index != l->index + 1)
            return false;
        add_into(l->v, r->v, t->len);
        lf_free(r->v);
        t->n--;
        l->level++;
        l->index /= 2;
    }
    return true;
}

static lf_err_t send_vector(MPI_Comm comm, const double *v, int64_t len, int to)
{
    lf_err_t err = LF_OK;
    for (int64_t at = 0; at < len; at += CHUNK) {
        int n = (int)(len - at < CHUNK ? len - at : CHUNK);
        LF_CALL_MPI(MPI_Send(v + at, n, MPI_DOUBLE, to, 0, comm));
    }
cleanup:
    return err;
}

static lf_err_t recv_vector(MPI_Comm comm, double *v, int64_t len, int from)
{
    lf_err_t err = LF_OK;
    for (int64_t at = 0; at < len; at += CHUNK) {
        int n = (int)(len - at < CHUNK ? len - at : CHUNK);
        LF_CALL_MPI(MPI_Recv(v + at, n, MPI_DOUBLE, from, 0, comm, MPI_STATUS_IGNORE));
    }
cleanup:
    return err;
}

static lf_err_t order_error(void)
{
    lf_err_t err = LF_OK;
    LF_FAIL(LF_ERR_INTERNAL, "tree sum: the ranks' groups do not follow each other in rank order");
cleanup:
    return err;
}

lf_err_t lf_tree_sum_finish(MPI_Comm comm, lf_tree_sum_t *t, double *total)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0, size = 1;
    int64_t *heads = NULL;
    double *drain = NULL;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL_MPI(MPI_Comm_size(comm, &size));
    /* Every rank's node list (level, index): rank 0 takes them over in rank order. */
    int64_t mine[2 * LEVELS_MAX + 1] = {t->n};
    for (int k = 0; k < t->n; k++) {
        mine[1 + 2 * k] = t->stack[k].level;
        mine[2 + 2 * k] = t->stack[k].index;
    }
    /* Rank 0 receives into nodes it allocates as they come; should one allocation fail, the rest
     * still arrive (into drain, one chunk at a time), so no sender is left waiting. */
    if (rank == 0) {
        local = lf_calloc((size_t)size * (2 * LEVELS_MAX + 1), sizeof *heads, (void **)&heads);
        if (local == LF_OK)
            local = lf_malloc(CHUNK, sizeof *drain, (void **)&drain);
    }
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL_MPI(MPI_Gather(mine, 2 * LEVELS_MAX + 1, MPI_INT64_T, heads, 2 * LEVELS_MAX + 1,
                           MPI_INT64_T, 0, comm));
    if (rank != 0) {
        for (int k = 0; k < t->n; k++)
            local = local != LF_OK ? local : send_vector(comm, t->stack[k].v, t->len, 0);
    } else {
        for (int r = 1; r < size; r++) {
            const int64_t *h = heads + (size_t)r * (2 * LEVELS_MAX + 1);
            for (int64_t k = 0; k < h[0]; k++) {
                node_t nd = {.level = (int)h[1 + 2 * k], .index = h[2 + 2 * k], .v = NULL};
                if (local == LF_OK && t->n >= LEVELS_MAX)
                    local = LF_ERR_INTERNAL;
                if (local == LF_OK)
                    local = lf_malloc((size_t)t->len, sizeof *nd.v, (void **)&nd.v);
                if (local == LF_OK) {
                    local = recv_vector(comm, nd.v, t->len, r);
                    push_node(t, nd);
                    continue;
                }
                for (int64_t at = 0; at < t->len; at += CHUNK) /* drain, keep the error */
                    MPI_Recv(drain, (int)(t->len - at < CHUNK ? t->len - at : CHUNK), MPI_DOUBLE, r,
                             0, comm, MPI_STATUS_IGNORE);
            }
        }
        if (local == LF_OK && !close_tree(t))
            local = order_error();
        if (local == LF_OK && t->n == 1)
            memcpy(total, t->stack[0].v, (size_t)t->len * sizeof *total);
        else if (local == LF_OK)
            memset(total, 0, (size_t)t->len * sizeof *total);
    }
    LF_CALL(lf_comm_agree(comm, local));
    for (int64_t at = 0; at < t->len; at += CHUNK) {
        int n = (int)(t->len - at < CHUNK ? t->len - at : CHUNK);
        LF_CALL_MPI(MPI_Bcast(total + at, n, MPI_DOUBLE, 0, comm));
    }
cleanup:
    lf_free(drain);
    lf_free(heads);
    return err;
}
