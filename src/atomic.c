/* Atomic outputs and the output-versus-input check; see atomic.h. */
#include "linfold/atomic.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"

/* The directory part of path ("." for a bare name), in buf. */
static void directory_of(const char *path, char *buf, size_t cap)
{
    char copy[LF_PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(buf, cap, "%s", dirname(copy));
}

/* mkstemp gives mode 0600; an output should get what the user's umask allows, like any file
 * the user creates. */
static mode_t creation_mode(void)
{
    mode_t mask = umask(0);
    umask(mask);
    return 0666 & ~mask;
}

/* path.KIND-XXXXXX: "tmp" for an output being written, "probe" for the directory check (a
 * different name, so that what watches for an output's temporary is not fooled by the probe). */
static lf_err_t create_temp(const char *path, const char *kind, char *tmp, size_t cap)
{
    lf_err_t err = LF_OK;
    int fd = -1;
    int n = snprintf(tmp, cap, "%s.%s-XXXXXX", path, kind);
    LF_CHECK(n > 0 && (size_t)n < cap, LF_ERR_ARG, "%s: path too long for a temporary name", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        char dir[LF_PATH_MAX];
        directory_of(path, dir, sizeof dir);
        LF_FAIL(LF_ERR_IO, "%s: cannot create a temporary file in %s (%s)", path, dir,
                strerror(errno));
    }
    LF_CHECK(fchmod(fd, creation_mode()) == 0, LF_ERR_IO, "%s: cannot set permissions (%s)", tmp,
             strerror(errno));
cleanup:
    if (fd >= 0)
        close(fd);
    if (err != LF_OK && fd >= 0)
        unlink(tmp);
    return err;
}

lf_err_t lf_atomic_begin(MPI_Comm comm, const char *path, char *tmp, size_t cap)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0, icap = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_int_cast((int64_t)cap, &icap));
    tmp[0] = '\0';
    if (rank == 0)
        local = create_temp(path, "tmp", tmp, cap);
    LF_CALL(lf_comm_agree(comm, local));
    LF_CALL(lf_comm_bcast_string(comm, tmp, icap, 0));
cleanup:
    /* On failure no rank holds a name: mkstemp leaves its template in tmp, and a name on rank 0
     * alone would make rank 0 alone clean it up, a collective the others never join. */
    if (err != LF_OK)
        tmp[0] = '\0';
    return err;
}

/* Flushes a finished file (and, after the rename, its directory) to stable storage. NFS and
 * Lustre may report a full disk or an exceeded quota only here. */
static lf_err_t sync_path(const char *path, bool directory)
{
    lf_err_t err = LF_OK;
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    LF_CHECK(fd >= 0, LF_ERR_IO, "%s: cannot open to flush (%s)", path, strerror(errno));
    /* Directories on some file systems do not support fsync (EINVAL): nothing to flush there. */
    LF_CHECK(fsync(fd) == 0 || (directory && errno == EINVAL), LF_ERR_IO,
             "%s: cannot flush to disk (%s)", path, strerror(errno));
cleanup:
    if (fd >= 0)
        close(fd);
    return err;
}

static lf_err_t publish(const char *tmp, const char *path)
{
    lf_err_t err = LF_OK;
    char dir[LF_PATH_MAX];
    LF_CALL(sync_path(tmp, false));
    LF_CHECK(rename(tmp, path) == 0, LF_ERR_IO, "%s: cannot rename %s into place (%s)", path, tmp,
             strerror(errno));
    directory_of(path, dir, sizeof dir);
    LF_CALL(sync_path(dir, true));
cleanup:
    return err;
}

lf_err_t lf_atomic_finish(MPI_Comm comm, const char *tmp, const char *path, lf_err_t ok)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    if (rank == 0) {
        if (ok == LF_OK)
            local = publish(tmp, path);
        /* Also after a failed publish: whatever is left of the temporary goes. */
        if (ok != LF_OK || local != LF_OK)
            unlink(tmp);
    }
    LF_CALL(lf_comm_agree(comm, local));
cleanup:
    return err;
}

lf_err_t lf_atomic_write_rank0(MPI_Comm comm, const char *path, lf_atomic_writer_t write,
                               const void *ctx)
{
    lf_err_t err = LF_OK, local = LF_OK;
    char tmp[LF_PATH_MAX];
    int rank = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_atomic_begin(comm, path, tmp, sizeof tmp));
    if (rank == 0)
        local = write(tmp, path, ctx);
    local = lf_comm_agree(comm, local);
    LF_CALL(lf_atomic_finish(comm, tmp, path, local));
    LF_CALL(local);
cleanup:
    return err;
}

/* What a path names: the file's device and inode when it exists; for a file not created yet,
 * its directory's device and inode and its name, so that two outputs spelled differently but
 * naming the same new file are caught too. */
typedef struct {
    bool exists;
    dev_t dev;
    ino_t ino;
    char name[256];
} identity_t;

static void identify(const char *path, const struct stat *dir, identity_t *id)
{
    struct stat st;
    memset(id, 0, sizeof *id);
    if (stat(path, &st) == 0) {
        *id = (identity_t){.exists = true, .dev = st.st_dev, .ino = st.st_ino};
        return;
    }
    char copy[LF_PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    *id = (identity_t){.dev = dir->st_dev, .ino = dir->st_ino};
    snprintf(id->name, sizeof id->name, "%s", basename(copy));
}

static bool same(const identity_t *a, const identity_t *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
           strcmp(a->name, b->name) == 0;
}

/* Creates and removes a file beside path: the one way to know that the directory takes new
 * files (access() says yes for /proc, and knows nothing of quotas or full inode tables). */
static lf_err_t probe_directory(const lf_atomic_named_t *out)
{
    lf_err_t err = LF_OK;
    char tmp[LF_PATH_MAX];
    LF_CALL(create_temp(out->path, "probe", tmp, sizeof tmp));
    unlink(tmp);
cleanup:
    return err;
}

lf_err_t lf_atomic_check_outputs(const lf_atomic_named_t *inputs, int n_inputs,
                                 const lf_atomic_named_t *outputs, int n_outputs, bool probe)
{
    lf_err_t err = LF_OK;
    identity_t *seen = NULL;
    LF_CALL(lf_calloc((size_t)n_outputs, sizeof *seen, (void **)&seen));
    for (int o = 0; o < n_outputs; o++) {
        const lf_atomic_named_t *out = &outputs[o];
        if (!out->path)
            continue;
        char dir[LF_PATH_MAX];
        directory_of(out->path, dir, sizeof dir);
        struct stat ds, os;
        LF_CHECK(stat(dir, &ds) == 0 && S_ISDIR(ds.st_mode), LF_ERR_IO,
                 "%s %s: directory %s does not exist", out->flag, out->path, dir);
        LF_CHECK(access(dir, W_OK | X_OK) == 0, LF_ERR_IO, "%s %s: directory %s is not writable",
                 out->flag, out->path, dir);
        LF_CHECK(stat(out->path, &os) != 0 || !S_ISDIR(os.st_mode), LF_ERR_USAGE,
                 "%s %s is a directory, expected a file name", out->flag, out->path);
        if (probe)
            LF_CALL(probe_directory(out));
        identify(out->path, &ds, &seen[o]);
        for (int k = 0; k < n_inputs && seen[o].exists; k++) {
            struct stat is;
            if (!inputs[k].path || stat(inputs[k].path, &is) != 0)
                continue;
            LF_CHECK(is.st_dev != seen[o].dev || is.st_ino != seen[o].ino, LF_ERR_USAGE,
                     "%s %s is the same file as %s %s: refusing to overwrite an input", out->flag,
                     out->path, inputs[k].flag, inputs[k].path);
        }
        for (int k = 0; k < o; k++)
            LF_CHECK(!outputs[k].path || !same(&seen[k], &seen[o]), LF_ERR_USAGE,
                     "%s %s and %s %s name the same file", outputs[k].flag, outputs[k].path,
                     out->flag, out->path);
    }
cleanup:
    lf_free(seen);
    return err;
}

lf_err_t lf_atomic_mkdirs(const char *dir)
{
    lf_err_t err = LF_OK;
    char part[LF_PATH_MAX];
    int w = snprintf(part, sizeof part, "%s", dir);
    LF_CHECK(w > 0 && (size_t)w < sizeof part, LF_ERR_IO, "directory name too long: %s", dir);
    for (char *s = part + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char was = *s;
        *s = '\0';
        LF_CHECK(mkdir(part, 0777) == 0 || errno == EEXIST, LF_ERR_IO,
                 "cannot create directory %s (%s)", part, strerror(errno));
        *s = was;
        if (was == '\0')
            break;
    }
cleanup:
    return err;
}
