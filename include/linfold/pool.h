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

/* Runs one task; tid in [0, threads) identifies per-thread state.
 * Not collective.
 * Must not call MPI. */
typedef lf_err_t (*lf_pool_task_t)(int task, int tid, void *ctx);

/* Runs tasks 0..n_tasks-1 and returns the error of the lowest failing task.
 * Not collective.
 * Task k runs on thread k % threads (threads <= 1: inline, in order). */
lf_err_t lf_pool_run(int threads, int n_tasks, lf_pool_task_t task, void *ctx);

/* Chooses the compute threads of this rank.
 * Collective on comm.
 * OPENBLAS_NUM_THREADS when set (a user's explicit choice); else the CPUs this process is bound
 * to when the launcher bound it to fewer than the online CPUs, or the online CPUs divided by the
 * ranks that share its node; at least 1. Identical on the ranks of a node unless the launcher
 * binds them to different numbers of CPUs. With OPENBLAS_NUM_THREADS set it returns before the
 * collective MPI_Comm_split_type, so that variable must be set on all ranks or on none. */
lf_err_t lf_pool_default_threads(MPI_Comm comm, int *threads);

/* Makes BLAS single-threaded for this process (see above).
 * Not collective. */
void lf_pool_serial_blas(void);

#endif /* LINFOLD_POOL_H */
