/* MPI helpers shared by every data-parallel stage.
 *
 * Error agreement is an MPI_Allreduce(MAX) of error codes: cheap, and it keeps every rank issuing
 * the same collectives in the same order, which is what prevents hangs when one rank fails. */
#include "linfold/comm.h"

#include <stdio.h>
#include <string.h>

void lf_comm_shard(int64_t n, int rank, int size, int64_t *begin, int64_t *count)
{
    int64_t base = n / size, extra = n % size;
    *count = base + (rank < extra ? 1 : 0);
    *begin = rank * base + (rank < extra ? rank : extra);
}

lf_err_t lf_comm_agree(MPI_Comm comm, lf_err_t local)
{
    int in = (int)local, out = 0;
    if (MPI_Allreduce(&in, &out, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS)
        LF_ASSERT(!"MPI_Allreduce failed during error agreement");
    return (lf_err_t)out;
}

void lf_comm_report_error(MPI_Comm comm, lf_err_t agreed, int traceback)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int mine = lf_error_is_local() ? rank : size, first = size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == rank)
        lf_error_print(traceback != 0);
    else if (first == size && rank == 0 && agreed != LF_OK)
        fprintf(stderr, "linfold: error: %s (%s)\n", lf_strerror(agreed), lf_err_name(agreed));
    /* mpirun kills the job as soon as one rank exits non-zero: no rank may exit before the
     * message is out, or the printing rank can be killed mid-sentence. */
    MPI_Barrier(comm);
}

lf_err_t lf_comm_bcast_string(MPI_Comm comm, char *buf, int cap, int root)
{
    lf_err_t err = LF_OK;
    /* The root decides whether the string fits and every rank follows its verdict (-1). */
    int len = (int)strnlen(buf, (size_t)cap);
    if (len >= cap)
        len = -1;
    LF_CALL_MPI(MPI_Bcast(&len, 1, MPI_INT, root, comm));
    LF_CHECK(len >= 0 && len < cap, LF_ERR_ARG, "a string of at least %d bytes exceeds the buffer",
             cap);
    LF_CALL_MPI(MPI_Bcast(buf, len + 1, MPI_CHAR, root, comm));
cleanup:
    return err;
}

lf_err_t lf_comm_check_equal(MPI_Comm comm, const int64_t *v, int n, const char *what)
{
    lf_err_t err = LF_OK;
    int64_t buf[16];
    int initialized = 0;
    LF_ASSERT(n >= 1 && n <= 8);
    /* Serial callers (tools, serial tests) pass MPI_COMM_SELF without MPI: nothing to compare. */
    MPI_Initialized(&initialized);
    if (!initialized)
        return LF_OK;
    for (int k = 0; k < n; k++) {
        buf[k] = -v[k];
        buf[n + k] = v[k];
    }
    LF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, buf, 2 * n, MPI_INT64_T, MPI_MAX, comm));
    for (int k = 0; k < n; k++)
        LF_CHECK(-buf[k] == buf[n + k], LF_ERR_ARG,
                 "%s: argument %d differs between ranks (%lld to %lld)", what, k,
                 (long long)-buf[k], (long long)buf[n + k]);
cleanup:
    return err;
}

int lf_comm_node_count(MPI_Comm comm)
{
    MPI_Comm node = MPI_COMM_NULL;
    int rank = 0, node_rank = 0, leaders = 1;
    if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS ||
        MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node) != MPI_SUCCESS)
        return 1;
    MPI_Comm_rank(node, &node_rank);
    int leader = node_rank == 0;
    MPI_Allreduce(&leader, &leaders, 1, MPI_INT, MPI_SUM, comm);
    MPI_Comm_free(&node);
    return leaders;
}

int lf_comm_rank(MPI_Comm comm)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    return rank;
}
