/* MPI helpers: row ranges of a shard, error agreement, MPI error checks.
 *
 * Our communicators use MPI_ERRORS_RETURN, so every MPI call is checked with LF_CALL_MPI. */
#ifndef LINFOLD_COMM_H
#define LINFOLD_COMM_H

#include <mpi.h>
#include <stdint.h>

#include "linfold/error.h"

/* Records the MPI error string of a failed call and jumps to cleanup. */
#define LF_CALL_MPI(expr)                                                                          \
    do {                                                                                           \
        int lf__rc = (expr);                                                                       \
        if (lf__rc != MPI_SUCCESS) {                                                               \
            char lf__msg[MPI_MAX_ERROR_STRING];                                                    \
            int lf__len = 0;                                                                       \
            MPI_Error_string(lf__rc, lf__msg, &lf__len);                                           \
            err = LF_ERR_MPI;                                                                      \
            lf_error_record(__FILE__, __LINE__, __func__, err, "%s failed: %s", #expr, lf__msg);   \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

/* Computes the rows [*begin, *begin + *count) of n global rows that rank of size ranks owns.
 * Not collective.
 * Contiguous blocks whose sizes differ by at most one, lower ranks taking the larger ones. */
void lf_comm_shard(int64_t n, int rank, int size, int64_t *begin, int64_t *count);

/* Agrees on one error code: returns the largest of the codes passed by all ranks.
 * Collective on comm.
 * Every rank then leaves a failing step together. The failing rank keeps its own error record.
 * A failure of the allreduce itself aborts the job (LF_ASSERT). */
lf_err_t lf_comm_agree(MPI_Comm comm, lf_err_t local);

/* Prints the error record once per job, from the lowest rank that recorded one.
 * Collective on comm.
 * Prints nothing when no rank recorded a failure, even if agreed is an error. traceback adds the
 * location and traceback lines. Ends with a barrier so that no rank exits before the message is
 * out. */
void lf_comm_report_error(MPI_Comm comm, lf_err_t agreed, int traceback);

/* Broadcasts a NUL-terminated string in buf from root.
 * Collective on comm.
 * Its length including the NUL must fit in cap, else LF_ERR_ARG. cap must be equal on all ranks:
 * every rank checks the broadcast length against its own cap before the second broadcast. */
lf_err_t lf_comm_bcast_string(MPI_Comm comm, char *buf, int cap, int root);

/* Checks that v[0..n) are equal on all ranks (an allreduce of (-v, v) under MAX) and records
 * LF_ERR_ARG naming `what` when they are not. The check behind "Logically collective": callers
 * run it in debug builds only (#ifndef NDEBUG).
 * Collective on comm. */
lf_err_t lf_comm_check_equal(MPI_Comm comm, const int64_t *v, int n, const char *what);

/* Returns the number of nodes (shared-memory domains) the ranks of comm run on; 1 when MPI
 * cannot tell.
 * Collective on comm. */
int lf_comm_node_count(MPI_Comm comm);

/* Returns this process's rank in comm.
 * Not collective. */
int lf_comm_rank(MPI_Comm comm);

#endif /* LINFOLD_COMM_H */
