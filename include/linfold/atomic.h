/* Output files that appear whole or not at all, and outputs that never replace an input.
 *
 * Every output is written to a temporary file beside it (same directory, so the final rename is
 * atomic on POSIX file systems), named `<output>.tmp-XXXXXX` by mkstemp: unique even for two jobs
 * whose rank 0 has the same PID (containers, two nodes on a shared file system). On success it is
 * flushed to disk (fsync: some file systems report a full disk or quota only there), given the
 * permissions the umask allows, and renamed into place; on failure it is removed.
 *
 *     char tmp[LF_PATH_MAX];
 *     lf_atomic_begin(comm, "out.h5", tmp, sizeof tmp);        // collective: rank 0 creates tmp
 *     err = ... write tmp (any ranks) ...;
 *     err = lf_atomic_finish(comm, tmp, "out.h5", lf_comm_agree(comm, err));
 */
#ifndef LINFOLD_ATOMIC_H
#define LINFOLD_ATOMIC_H

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

#include "linfold/error.h"

#define LF_PATH_MAX 4096

/* Creates an empty temporary file beside path on rank 0 and gives its name to every rank.
 * Collective on comm.
 * tmp is identical on all ranks. LF_ERR_IO when the directory is not writable. */
lf_err_t lf_atomic_begin(MPI_Comm comm, const char *path, char *tmp, size_t cap);
/* Rank 0 publishes tmp as path (fsync, permissions, rename) when ok is LF_OK, else removes tmp.
 * Collective on comm.
 * Only rank 0's ok is used, so callers pass an agreed code. Returns the agreed result of
 * publishing (LF_OK after a removal). */
lf_err_t lf_atomic_finish(MPI_Comm comm, const char *tmp, const char *path, lf_err_t ok);

/* Writes the whole file at tmp (an empty file that exists); runs on rank 0 only. path is the
 * output's final name, for messages. */
typedef lf_err_t (*lf_atomic_writer_t)(const char *tmp, const char *path, const void *ctx);
/* Rank 0 writes path through a temporary file with write(); the result is agreed by all ranks.
 * Collective on comm. */
lf_err_t lf_atomic_write_rank0(MPI_Comm comm, const char *path, lf_atomic_writer_t write,
                               const void *ctx);

/* A file named on the command line (or in a pipeline): the flag that named it and its path. */
typedef struct {
    const char *flag; /* "--out", "--data", ... */
    const char *path; /* a file path (for "F.h5:/x" specs, the file part) */
} lf_atomic_named_t;

/* Refuses outputs that are the same file as an input or as another output.
 * Not collective.
 * Files are compared by device and inode (so hard links, symbolic links and different spellings
 * of one path are caught); an output that does not exist yet conflicts with nothing, but its
 * directory must exist and be writable; with probe (one rank of a job is enough), a file
 * (`<output>.probe-XXXXXX`) is created and removed there to prove it. LF_ERR_USAGE for a conflict, LF_ERR_IO for the
 * directory. Entries with a NULL path are skipped. */
lf_err_t lf_atomic_check_outputs(const lf_atomic_named_t *inputs, int n_inputs,
                                 const lf_atomic_named_t *outputs, int n_outputs, bool probe);

/* Creates dir and its missing parents (like mkdir -p; permissions from the umask).
 * Not collective.
 * LF_ERR_IO naming the directory that cannot be created. */
lf_err_t lf_atomic_mkdirs(const char *dir);

#endif /* LINFOLD_ATOMIC_H */
