/* Running untrusted parsing in a disposable child process (internal to src/).
 *
 * HDF5 1.10.8 trusts the bytes of a file: corrupted metadata makes it read and write out of
 * bounds, allocate without bound or loop (docs/fuzzing.md lists what our fuzzing found). No check
 * outside the library can rule that out, so every reader that parses a file linfold did not write
 * runs in a child forked for the purpose: the child opens the file, reads and validates it, and
 * sends its result through a pipe; the parent only ever sees plain bytes. The parent watches the
 * child: CPU time is limited in the child (RLIMIT_CPU, so a slow file system is not mistaken for
 * a loop), resident memory is polled from the parent, and wall time has a generous backstop. A
 * child that crashes, is killed, or stops early becomes an ordinary error naming the file.
 *
 * The child calls no MPI and leaves with _exit: no atexit handlers, no stdio flush of the
 * parent's buffers, no HDF5 shutdown.
 *
 *     lf__sandbox_t *sb = NULL;
 *     LF_CALL(lf__sandbox_start("model.h5", &limits, child_fn, ctx, &sb));   // forks
 *     LF_CALL(lf__sandbox_read(sb, &header, sizeof header));                // watched reads
 *     ...
 *     LF_CALL(lf__sandbox_finish(&sb));                                      // reaps the child
 */
#ifndef LINFOLD_SANDBOX_IMPL_H
#define LINFOLD_SANDBOX_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "linfold/error.h"

/* What the child may use. */
typedef struct {
    int64_t memory_bytes; /* growth of resident memory over the parent's at the fork */
    double cpu_seconds;   /* CPU time (the child's own) */
    double wall_seconds;  /* backstop for a child that waits forever */
} lf__sandbox_limits_t;

/* The limits for reading a file of file_bytes: memory 1 GiB + 1,032 x the file (what the file
 * can justify, deflate's largest expansion), at most 90 % of the memory available; CPU 60 s +
 * 1 s per 10 MB; wall 20 x the CPU limit. LINFOLD_READ_MEMORY_MB and LINFOLD_READ_CPU_SECONDS
 * override the first two (docs/hpc.md). */
lf__sandbox_limits_t lf__sandbox_limits_for(int64_t file_bytes);

/* Runs in the child: writes its result with lf__sandbox_write(); its return value becomes the
 * child's exit status (0 for LF_OK). */
typedef lf_err_t (*lf__sandbox_fn)(void *ctx);

typedef struct lf__sandbox lf__sandbox_t;

/* Forks a child that runs fn(ctx). what (a file path) names the work in messages.
 * Not collective. */
lf_err_t lf__sandbox_start(const char *what, const lf__sandbox_limits_t *limits, lf__sandbox_fn fn,
                           void *ctx, lf__sandbox_t **out);
/* Child side: writes n bytes to the parent. Returns false when the parent is gone. */
bool lf__sandbox_write(const void *buf, size_t n);
/* Parent side: reads exactly n bytes from the child, watching its limits. A child that died,
 * was killed or ended early gives LF_ERR_FORMAT naming what and what happened ("crashed (signal
 * 11) inside the HDF5 library; the file is corrupt"); a signal to this process gives
 * LF_ERR_INTERRUPTED. The child is killed on any failure. */
lf_err_t lf__sandbox_read(lf__sandbox_t *sb, void *buf, size_t n);
/* Parent side: waits for the child and frees sb; accepts NULL. LF_ERR_FORMAT when the child did
 * not exit 0 (an error was already recorded by a failed read is kept). */
lf_err_t lf__sandbox_finish(lf__sandbox_t **sb);

/* The error frame both sides use: the child sends lf__sandbox_send_status(err) before its
 * result (the record's code and message, or LF_OK); the parent's lf__sandbox_receive_status()
 * records the child's error as its own and returns its code. */
void lf__sandbox_send_status(lf_err_t err);
lf_err_t lf__sandbox_receive_status(lf__sandbox_t *sb);

#endif /* LINFOLD_SANDBOX_IMPL_H */
