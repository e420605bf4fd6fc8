/* Runs independent tasks on a few threads of this rank.
 *
 * linfold calls BLAS single-threaded and parallelises over row blocks itself: a block's result
 * then depends only on the block (shape and the row's position in it), never on how many threads
 * or ranks share the work, which is what makes results bitwise identical at any rank count.
 *
 *     lf_pool_run(threads, n_blocks, run_block, ctx);   // task k runs on thread k % threads
 */
#ifndef LINFOLD_POOL_H
#define LINFOLD_POOL_H

#include <mpi.h>

#include "linfold/error.h"

/* One task; tid in [0, threads) identifies per-thread state. Must not call MPI. */
typedef lf_err_t (*lf_pool_task_t)(int task, int tid, void *ctx);

/* Runs tasks 0..n_tasks-1, task k on thread k % threads (threads <= 1: inline, in order), and
 * returns the error of the lowest failing task. Not collective. */
lf_err_t lf_pool_run(int threads, int n_tasks, lf_pool_task_t task, void *ctx);

/* Threads per rank for compute: OPENBLAS_NUM_THREADS when set (a user's explicit choice), else
 * the CPUs this process may run on divided by the ranks that share its node, at least 1.
 * Identical on the ranks of a node. Collective on comm. */
lf_err_t lf_pool_default_threads(MPI_Comm comm, int *threads);

/* Makes BLAS single-threaded for this process (see above). Not collective. */
void lf_pool_serial_blas(void);

#endif /* LINFOLD_POOL_H */
