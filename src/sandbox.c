/* Disposable child processes for parsing untrusted files; see sandbox_impl.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox_impl.h"
#include "linfold/alloc.h"
#include "linfold/interrupt.h"
#include "linfold/log.h"

struct lf__sandbox {
    pid_t pid;
    int fd;
    char what[512];
    lf__sandbox_limits_t limits;
    double start;
    int64_t base_rss;
    char why[128]; /* set once the child was killed or died: what happened */
    bool outside;  /* killed by someone else (SIGKILL we did not send): not the file's fault */
};

static int child_fd = -1; /* the pipe's write end, in the child only */

/* Present in sanitizer builds only (tests, fuzzing): the callback a sanitizer calls before it
 * ends a process. libFuzzer sets one that saves the current input as a crash of the fuzzer; in
 * a reader process a report is a handled error of the parent's, so the child drops it. */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

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

static int64_t available_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    long long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb > 0 ? (int64_t)kb * 1024 : INT64_MAX;
}

static double env_number(const char *name, double fallback)
{
    const char *text = getenv(name);
    double v = text ? strtod(text, NULL) : 0.0;
    return v > 0.0 ? v : fallback;
}

lf__sandbox_limits_t lf__sandbox_limits_for(int64_t file_bytes)
{
    const int64_t gib = (int64_t)1 << 30;
    int64_t justified = file_bytes < (INT64_MAX - gib) / 1032 ? gib + 1032 * file_bytes : INT64_MAX;
    int64_t cap = available_bytes() / 10 * 9;
    lf__sandbox_limits_t l = {
        .memory_bytes = justified < cap ? justified : cap,
        .cpu_seconds = 60.0 + (double)file_bytes / 1e7,
    };
    l.memory_bytes =
        (int64_t)(env_number("LINFOLD_READ_MEMORY_MB", (double)l.memory_bytes / (1 << 20)) *
                  (1 << 20));
    l.cpu_seconds = env_number("LINFOLD_READ_CPU_SECONDS", l.cpu_seconds);
    l.wall_seconds = 20.0 * l.cpu_seconds;
    return l;
}

/* ---------------------------------------------------------------- the child */

bool lf__sandbox_write(const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(child_fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

void lf__sandbox_send_status(lf_err_t err)
{
    uint32_t code = (uint32_t)err, len = 0;
    const char *msg = err != LF_OK ? lf_error_message() : "";
    len = (uint32_t)strlen(msg);
    /* A failure without a record (it cannot happen, but the parent must get a message). */
    if (err != LF_OK && len == 0) {
        msg = lf_strerror(err);
        len = (uint32_t)strlen(msg);
    }
    if (lf__sandbox_write(&code, sizeof code) && err != LF_OK &&
        lf__sandbox_write(&len, sizeof len))
        lf__sandbox_write(msg, len);
}

_Noreturn static void child_main(int fd, const lf__sandbox_limits_t *limits, lf__sandbox_fn fn,
                                 void *ctx)
{
    child_fd = fd;
    if (__sanitizer_set_death_callback)
        __sanitizer_set_death_callback(NULL);
    /* Ctrl-C reaches the whole process group: the child just dies, the parent reports. */
    for (int sig = 1; sig < 32; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    /* A library's crash report (or a sanitizer's) is not for the user: the parent says what
     * happened. LINFOLD_READ_STDERR=1 keeps it, for debugging. */
    if (!getenv("LINFOLD_READ_STDERR")) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDERR_FILENO);
    }
    /* CPU time, not wall time: a slow parallel file system is not a loop. */
    rlim_t cpu = (rlim_t)(limits->cpu_seconds + 0.5);
    struct rlimit rl = {.rlim_cur = cpu, .rlim_max = cpu + 5};
    setrlimit(RLIMIT_CPU, &rl);
    lf_error_clear();
    lf_err_t err = fn(ctx);
    _exit(err == LF_OK ? 0 : 1);
}

/* ---------------------------------------------------------------- the parent */

lf_err_t lf__sandbox_start(const char *what, const lf__sandbox_limits_t *limits, lf__sandbox_fn fn,
                           void *ctx, lf__sandbox_t **out)
{
    lf_err_t err = LF_OK;
    lf__sandbox_t *sb = NULL;
    int fds[2] = {-1, -1};
    *out = NULL;
    LF_CALL(lf_calloc(1, sizeof *sb, (void **)&sb));
    snprintf(sb->what, sizeof sb->what, "%s", what);
    sb->limits = *limits;
    sb->fd = -1;
    LF_CHECK(pipe(fds) == 0, LF_ERR_IO, "%s: cannot create a pipe for the reader (%s)", what,
             strerror(errno));
    fflush(NULL);
    sb->base_rss = resident_bytes(0);
    sb->start = lf_log_seconds();
    sb->pid = fork();
    LF_CHECK(sb->pid >= 0, LF_ERR_IO, "%s: cannot start the reader process (fork: %s)", what,
             strerror(errno));
    if (sb->pid == 0) {
        close(fds[0]);
        child_main(fds[1], limits, fn, ctx);
    }
    close(fds[1]);
    fds[1] = -1;
    sb->fd = fds[0];
    fds[0] = -1;
    *out = sb;
    sb = NULL;
cleanup:
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    lf_free(sb);
    return err;
}

/* Kills the child and says why, once. */
static void kill_child(lf__sandbox_t *sb, const char *why)
{
    if (!sb->why[0])
        snprintf(sb->why, sizeof sb->why, "%s", why);
    if (sb->pid > 0)
        kill(sb->pid, SIGKILL);
}

/* Waits for the child (once) and turns how it ended into sb->why. */
static void reap(lf__sandbox_t *sb)
{
    int status = 0;
    if (sb->pid <= 0)
        return;
    while (waitpid(sb->pid, &status, 0) < 0 && errno == EINTR) {
    }
    sb->pid = -1;
    if (sb->why[0])
        return;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU)
        snprintf(sb->why, sizeof sb->why, "did not finish within %.0f s of CPU time",
                 sb->limits.cpu_seconds);
    else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
        /* linfold kills a reader only after setting why: this SIGKILL came from outside. */
        snprintf(sb->why, sizeof sb->why,
                 "was killed from outside (SIGKILL: the kernel's out-of-memory killer, a job "
                 "limit or an administrator)");
        sb->outside = true;
    } else if (WIFSIGNALED(status))
        snprintf(sb->why, sizeof sb->why, "crashed (signal %d)", WTERMSIG(status));
    else if (WIFEXITED(status) && WEXITSTATUS(status) > 1)
        snprintf(sb->why, sizeof sb->why, "stopped (status %d)", WEXITSTATUS(status));
}

static lf_err_t fail(lf__sandbox_t *sb)
{
    lf_err_t err = LF_OK;
    reap(sb);
    LF_CALL(lf_interrupt_check("reading a file"));
    LF_CHECK(!sb->outside, LF_ERR_IO, "%s: the process reading it %s; nothing says the file is bad",
             sb->what, sb->why);
    LF_FAIL(LF_ERR_FORMAT, "%s: reading it %s inside the HDF5 library; the file is corrupt",
            sb->what, sb->why[0] ? sb->why : "ended early");
cleanup:
    return err;
}

lf_err_t lf__sandbox_read(lf__sandbox_t *sb, void *buf, size_t n)
{
    char *p = buf;
    double last_check = 0.0;
    while (n > 0) {
        if (sb->why[0] || sb->pid <= 0)
            return fail(sb);
        struct pollfd pfd = {.fd = sb->fd, .events = POLLIN};
        int ready = poll(&pfd, 1, 50);
        if (ready > 0) {
            ssize_t r = read(sb->fd, p, n);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN))
                return fail(sb); /* the child closed the pipe early: it died or gave up */
            if (r > 0) {
                p += r;
                n -= (size_t)r;
            }
        }
        double t = lf_log_seconds();
        if (t - last_check < 0.05 && ready > 0)
            continue;
        last_check = t;
        char why[128];
        if (lf_interrupt_signal()) {
            kill_child(sb, "was stopped");
            reap(sb);
            return lf_interrupt_check("reading a file");
        }
        if (t - sb->start > sb->limits.wall_seconds) {
            snprintf(why, sizeof why, "did not finish within %.0f s", sb->limits.wall_seconds);
            kill_child(sb, why);
        } else if (resident_bytes(sb->pid) - sb->base_rss > sb->limits.memory_bytes) {
            snprintf(why, sizeof why, "used more than %lld MiB of memory",
                     (long long)(sb->limits.memory_bytes >> 20));
            kill_child(sb, why);
        }
    }
    return LF_OK;
}

lf_err_t lf__sandbox_receive_status(lf__sandbox_t *sb)
{
    lf_err_t err = LF_OK;
    uint32_t code = 0, len = 0;
    char msg[1100];
    LF_CALL(lf__sandbox_read(sb, &code, sizeof code));
    if (code == LF_OK)
        goto cleanup;
    LF_CALL(lf__sandbox_read(sb, &len, sizeof len));
    LF_CHECK(len < sizeof msg && code < LF_ERR__COUNT, LF_ERR_INTERNAL,
             "%s: the reader process sent a malformed error", sb->what);
    LF_CALL(lf__sandbox_read(sb, msg, len));
    msg[len] = '\0';
    /* The child's error is this process's: same code, same message. */
    LF_FAIL((lf_err_t)code, "%s", msg);
cleanup:
    return err;
}

lf_err_t lf__sandbox_finish(lf__sandbox_t **psb)
{
    lf_err_t err = LF_OK;
    lf__sandbox_t *sb = psb ? *psb : NULL;
    if (!sb)
        return LF_OK;
    if (sb->fd >= 0)
        close(sb->fd);
    sb->fd = -1;
    bool clean = sb->why[0] == '\0' && sb->pid > 0;
    reap(sb);
    LF_CHECK(!clean || sb->why[0] == '\0', LF_ERR_FORMAT,
             "%s: reading it %s inside the HDF5 library; the file is corrupt", sb->what, sb->why);
cleanup:
    lf_free(sb);
    *psb = NULL;
    return err;
}
