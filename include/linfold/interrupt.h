/* Stopping cleanly on a signal: SIGINT, SIGTERM, SIGHUP and SIGUSR1.
 *
 * A job at 3 a.m. is stopped by SLURM (scancel, preemption, the time limit: SIGTERM to every task),
 * by a user's Ctrl-C, or on request with `sbatch --signal=USR1@120`. The handler only records the
 * signal; long loops poll lf_interrupt_signal() at their natural boundaries (every I/O batch,
 * every folded layer, every search probe) and fail with LF_ERR_INTERRUPTED, which is agreed
 * across ranks like any error. Every rank therefore stops at the same boundary, the usual cleanup
 * removes temporary files, and the job exits with status 128 + the signal number (130 for SIGINT,
 * 143 for SIGTERM). A second identical signal is not caught: it ends the process at once. A
 * calibration pass with checkpoints (checkpoint.h) answers SIGTERM and SIGUSR1 differently: every
 * rank finishes its batch, one checkpoint is written, and the pass fails with LF_ERR_CHECKPOINT.
 *
 *     lf_interrupt_install();                      // after MPI_Init, once
 *     ...
 *     if (lf_interrupt_signal())
 *         LF_FAIL(LF_ERR_INTERRUPTED, "interrupted by %s during calibrate",
 *                 lf_interrupt_name(lf_interrupt_signal()));
 */
#ifndef LINFOLD_INTERRUPT_H
#define LINFOLD_INTERRUPT_H

#include <mpi.h>

#include "linfold/error.h"

/* Installs the handlers (one-shot: the second delivery of a signal gets the default action).
 * Not collective. */
void lf_interrupt_install(void);
/* Returns the first signal received since lf_interrupt_install(), or 0.
 * Not collective.
 * Async-signal-safe reads only; callable from any thread. */
int lf_interrupt_signal(void);
/* Returns "SIGTERM", "SIGINT", ... for a signal number.
 * Not collective. */
const char *lf_interrupt_name(int sig);
/* Records LF_ERR_INTERRUPTED ("interrupted by SIGTERM during <during>") when a signal arrived.
 * Not collective.
 * Returns LF_OK otherwise. Callers agree the result across ranks like any local error. */
lf_err_t lf_interrupt_check(const char *during);
/* Returns the largest signal number received by any rank, for the exit status.
 * Collective on comm. */
int lf_interrupt_agree(MPI_Comm comm);
/* Marks the end of one step of a long loop (an I/O batch of a data pass), for
 * lf_interrupt_raise_after_for_test().
 * Not collective. */
void lf_interrupt_tick(void);
/* Test hook: behaves as if sig had been received (0 clears, and cancels a pending one).
 * Not collective. */
void lf_interrupt_raise_for_test(int sig);
/* Test hook: behaves as if sig were received at the ticks-th lf_interrupt_tick() from now
 * (ticks >= 1): a signal that arrives during a given batch of the next pass, after whatever
 * reading precedes it.
 * Not collective. */
void lf_interrupt_raise_after_for_test(int sig, int ticks);

#endif /* LINFOLD_INTERRUPT_H */
