/* String attributes read in a disposable child process.
 *
 * HDF5 1.10.8 converts a variable-length string (what h5py writes for every str attribute) by
 * following a reference into the file's global heap, trusting the heap's stored sizes and
 * indices: corrupted bytes there make H5Aread read out of bounds (a segfault), allocate without
 * bound (10 GB in a minute was measured) or loop. Nothing outside the library can check those
 * bytes before the conversion runs, so linfold runs it where a crash cannot hurt: rank 0 forks a
 * child that opens the file with the serial driver, reads the requested attributes one by one,
 * and writes one fixed-size record per attribute into a pipe. The parent watches the child: it
 * is killed after LINFOLD_ATTR_TIMEOUT seconds (default 20) or when its resident memory grows by
 * more than 1 GiB. Records received before a failure are kept, so the message names the
 * attribute that broke the reader. Every rank then gets the same records by broadcast.
 *
 * The child calls only HDF5, malloc and write, and leaves with _exit: no MPI, no atexit
 * handlers, no stdio flush of the parent's buffers. Fixed-length strings are read the same way:
 * one path for every string keeps the checks in one place, and a fork per file costs about a
 * millisecond. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "h5io_impl.h"
#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "linfold/interrupt.h"

enum { RECORD_BYTES = 1 + LF__STR_MAX, END_MAGIC = 0x4C46 /* "LF" */ };
#define GROWTH_MAX_BYTES ((int64_t)1 << 30)
#define TIMEOUT_DEFAULT_S 20.0

/* ---------------------------------------------------------------- one attribute, in-process */

static void sanitise(char *s)
{
    /* Values end up in error messages and logs: no terminal control sequences from a file. */
    for (unsigned char *p = (unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
}

static lf__str_status_t read_attr(hid_t attr, char *value)
{
    lf__str_status_t status = LF__STR_UNREADABLE;
    hid_t type = H5Aget_type(attr), space = H5Aget_space(attr), mem = H5I_INVALID_HID;
    char *vstr = NULL;
    if (type < 0 || space < 0)
        goto done;
    status = LF__STR_NOT_STRING;
    if (H5Tget_class(type) != H5T_STRING)
        goto done;
    status = LF__STR_NOT_SCALAR;
    if (H5Sget_simple_extent_type(space) != H5S_SCALAR)
        goto done;
    status = LF__STR_UNREADABLE;
    mem = H5Tcopy(H5T_C_S1);
    if (mem < 0)
        goto done;
    htri_t variable = H5Tis_variable_str(type);
    if (variable < 0)
        goto done;
    if (variable) {
        if (H5Tset_size(mem, H5T_VARIABLE) < 0 || H5Tset_cset(mem, H5Tget_cset(type)) < 0 ||
            H5Aread(attr, mem, &vstr) < 0)
            goto done;
        status = LF__STR_TOO_LONG;
        if (vstr && strlen(vstr) >= LF__STR_MAX)
            goto done;
        snprintf(value, LF__STR_MAX, "%s", vstr ? vstr : "");
    } else {
        size_t size = H5Tget_size(type);
        status = LF__STR_TOO_LONG;
        if (size == 0 || size >= LF__STR_MAX)
            goto done;
        status = LF__STR_UNREADABLE;
        memset(value, 0, LF__STR_MAX);
        if (H5Tset_size(mem, size + 1) < 0 || H5Tset_strpad(mem, H5T_STR_NULLTERM) < 0 ||
            H5Aread(attr, mem, value) < 0)
            goto done;
        value[LF__STR_MAX - 1] = '\0';
    }
    sanitise(value);
    status = LF__STR_OK;
done:
    if (vstr)
        H5free_memory(vstr);
    lf__h5_close(&mem);
    lf__h5_close(&space);
    lf__h5_close(&type);
    H5Eclear2(H5E_DEFAULT);
    return status;
}

void lf__h5_read_string_here(hid_t file, lf__str_attr_t *item)
{
    lf__h5_file_t f = {.id = file, .path = ""};
    lf_err_t ignored = LF_OK;
    hid_t attr = H5I_INVALID_HID;
    item->value[0] = '\0';
    item->status = LF__STR_NO_OBJECT;
    int found = lf__h5_exists(&f, item->object, &ignored);
    lf_error_clear(); /* the parent reports; the child's record goes nowhere */
    if (found <= 0)
        return;
    item->status = LF__STR_MISSING;
    htri_t exists = H5Aexists_by_name(file, item->object, item->name, lf__h5_lapl());
    if (exists <= 0) {
        item->status = exists < 0 ? LF__STR_UNREADABLE : LF__STR_MISSING;
        H5Eclear2(H5E_DEFAULT);
        return;
    }
    attr = H5Aopen_by_name(file, item->object, item->name, H5P_DEFAULT, lf__h5_lapl());
    item->status = attr < 0 ? LF__STR_UNREADABLE : read_attr(attr, item->value);
    lf__h5_close(&attr);
}

/* ---------------------------------------------------------------- the child */

static bool write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

_Noreturn static void child_main(int fd, const char *path, lf__str_attr_t *items, int n)
{
    /* Ctrl-C reaches the whole process group: the child just dies, the parent reports. */
    for (int sig = 1; sig < 32; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    /* A library crash report (or a sanitizer's) is not for the user: the parent says what
     * happened. */
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0)
        dup2(null, STDERR_FILENO);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    /* Read-only, no locks: file locking fails on some parallel file systems. */
    if (fapl < 0 || H5Pset_fapl_sec2(fapl) < 0 || H5Pset_file_locking(fapl, 0, 1) < 0)
        _exit(3);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (file < 0)
        _exit(4);
    for (int k = 0; k < n; k++) {
        unsigned char record[RECORD_BYTES];
        lf__h5_read_string_here(file, &items[k]);
        record[0] = (unsigned char)items[k].status;
        memcpy(record + 1, items[k].value, LF__STR_MAX);
        if (!write_all(fd, record, sizeof record))
            _exit(5);
    }
    uint16_t magic = END_MAGIC;
    _exit(write_all(fd, &magic, sizeof magic) ? 0 : 5);
}

/* ---------------------------------------------------------------- the parent */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t resident_bytes(pid_t pid)
{
    char path[64];
    long pages = 0, resident = 0;
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/statm");
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return (int64_t)resident * (int64_t)sysconf(_SC_PAGESIZE);
}

static double timeout_seconds(void)
{
    const char *env = getenv("LINFOLD_ATTR_TIMEOUT");
    double t = env ? strtod(env, NULL) : 0.0;
    return t > 0.0 ? t : TIMEOUT_DEFAULT_S;
}

/* Reads the child's records into buf until EOF, the timeout, or too much memory. *why receives
 * the reason the child was killed ("" when it was not). Returns the bytes received. */
static size_t collect(int fd, pid_t pid, unsigned char *buf, size_t cap, char *why, size_t why_cap)
{
    size_t got = 0;
    double start = now_seconds(), limit = timeout_seconds();
    int64_t base = resident_bytes(0);
    why[0] = '\0';
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, 50);
        if (ready > 0) {
            ssize_t r = read(fd, buf + got, cap - got);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                break;
            if (r > 0)
                got += (size_t)r;
            if (got == cap)
                break;
        }
        if (lf_interrupt_signal())
            snprintf(why, why_cap, "stopped by %s", lf_interrupt_name(lf_interrupt_signal()));
        else if (now_seconds() - start > limit)
            snprintf(why, why_cap, "did not finish within %.0f s", limit);
        else if (resident_bytes(pid) - base > GROWTH_MAX_BYTES)
            snprintf(why, why_cap, "used more than %lld MiB of memory",
                     (long long)(GROWTH_MAX_BYTES >> 20));
        if (why[0]) {
            kill(pid, SIGKILL);
            break;
        }
    }
    return got;
}

/* Runs the child for items and fills their statuses (rank 0 only). */
static lf_err_t read_in_child(const char *path, lf__str_attr_t *items, int n)
{
    lf_err_t err = LF_OK;
    int fds[2] = {-1, -1};
    unsigned char *buf = NULL;
    size_t cap = (size_t)n * RECORD_BYTES + sizeof(uint16_t);
    pid_t pid = -1;
    LF_CALL(lf_malloc(cap, 1, (void **)&buf));
    LF_CHECK(pipe(fds) == 0, LF_ERR_IO, "%s: cannot create a pipe to read attributes (%s)", path,
             strerror(errno));
    fflush(NULL);
    pid = fork();
    LF_CHECK(pid >= 0, LF_ERR_IO, "%s: cannot start the attribute reader (fork: %s)", path,
             strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        child_main(fds[1], path, items, n);
    }
    close(fds[1]);
    fds[1] = -1;
    char why[96];
    size_t got = collect(fds[0], pid, buf, cap, why, sizeof why);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!why[0] && WIFSIGNALED(status))
        snprintf(why, sizeof why, "crashed (signal %d)", WTERMSIG(status));
    else if (!why[0] && WIFEXITED(status) && WEXITSTATUS(status) == 4)
        snprintf(why, sizeof why, "could not open the file");
    else if (!why[0] && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        snprintf(why, sizeof why, "failed (status %d)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    LF_CALL(lf_interrupt_check("reading string attributes"));
    /* Records are written whole (one write of fewer than PIPE_BUF bytes each): every record
     * received is good, and the first one missing names the attribute the reader died on. */
    for (int k = 0; k < n; k++) {
        if ((size_t)(k + 1) * RECORD_BYTES <= got) {
            const unsigned char *r = buf + (size_t)k * RECORD_BYTES;
            items[k].status = r[0] <= LF__STR_NOT_READ ? (lf__str_status_t)r[0] : LF__STR_FAILED;
            memcpy(items[k].value, r + 1, LF__STR_MAX);
            items[k].value[LF__STR_MAX - 1] = '\0';
            items[k].detail[0] = '\0';
        } else if ((size_t)k * RECORD_BYTES <= got) {
            items[k].status = LF__STR_FAILED;
            snprintf(items[k].detail, sizeof items[k].detail, "%s",
                     why[0] ? why : "stopped early");
        } else {
            items[k].status = LF__STR_NOT_READ;
        }
    }
cleanup:
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    lf_free(buf);
    return err;
}

lf_err_t lf__h5_read_strings(MPI_Comm comm, const lf__h5_file_t *f, lf__str_attr_t *items, int n)
{
    lf_err_t err = LF_OK, local = LF_OK;
    unsigned char *packed = NULL;
    int rank = 0, bytes = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_int_cast((int64_t)n * (RECORD_BYTES + (int64_t)sizeof items->detail), &bytes));
    if (rank == 0)
        local = read_in_child(f->path, items, n);
    if (local == LF_OK)
        local = lf_malloc((size_t)bytes, 1, (void **)&packed);
    LF_CALL(lf_comm_agree(comm, local));
    /* Rank 0's records for everyone: status, value and detail of each item, packed. */
    size_t one = RECORD_BYTES + sizeof items->detail;
    for (int k = 0; rank == 0 && k < n; k++) {
        packed[(size_t)k * one] = (unsigned char)items[k].status;
        memcpy(packed + (size_t)k * one + 1, items[k].value, LF__STR_MAX);
        memcpy(packed + (size_t)k * one + RECORD_BYTES, items[k].detail, sizeof items->detail);
    }
    LF_CALL_MPI(MPI_Bcast(packed, bytes, MPI_BYTE, 0, comm));
    for (int k = 0; k < n; k++) {
        items[k].status = (lf__str_status_t)packed[(size_t)k * one];
        memcpy(items[k].value, packed + (size_t)k * one + 1, LF__STR_MAX);
        memcpy(items[k].detail, packed + (size_t)k * one + RECORD_BYTES, sizeof items->detail);
    }
cleanup:
    lf_free(packed);
    return err;
}

lf_err_t lf__h5_string_value(const lf__str_attr_t *item, const char *file, const char **value)
{
    lf_err_t err = LF_OK;
    const char *name = item->name;
    /* "file: /layers/2: attribute ..." for a group, "file: attribute ..." for the root. */
    char obj[64] = "";
    if (strcmp(item->object, "/") != 0)
        snprintf(obj, sizeof obj, " %s:", item->object);
    *value = NULL;
    switch (item->status) {
    case LF__STR_OK: *value = item->value; break;
    case LF__STR_NO_OBJECT: LF_FAIL(LF_ERR_FORMAT, "%s: missing group %s", file, item->object);
    case LF__STR_MISSING: LF_FAIL(LF_ERR_FORMAT, "%s:%s missing attribute '%s'", file, obj, name);
    case LF__STR_NOT_STRING:
        LF_FAIL(LF_ERR_FORMAT, "%s:%s attribute '%s' is not a string", file, obj, name);
    case LF__STR_NOT_SCALAR:
        LF_FAIL(LF_ERR_FORMAT, "%s:%s attribute '%s' is not a single string (an array?)", file,
                obj, name);
    case LF__STR_TOO_LONG:
        LF_FAIL(LF_ERR_FORMAT, "%s:%s attribute '%s' is %d bytes or longer", file, obj, name,
                LF__STR_MAX);
    case LF__STR_UNREADABLE:
        LF_FAIL(LF_ERR_FORMAT, "%s:%s attribute '%s' cannot be read (corrupt file?)", file, obj,
                name);
    case LF__STR_FAILED:
        LF_FAIL(LF_ERR_FORMAT,
                "%s:%s reading attribute '%s' %s inside the HDF5 library; the file is corrupt",
                file, obj, name, item->detail);
    case LF__STR_NOT_READ:
        LF_FAIL(LF_ERR_FORMAT, "%s:%s attribute '%s' was not read (an earlier one failed)", file,
                obj, name);
    }
cleanup:
    return err;
}
