/* End-to-end tests of the linfold command line: exit statuses, error messages and atomic outputs.
 *
 * Each test runs the real `linfold` executable (LF_BINARY) through system(), as an MPI singleton
 * or under `LF_MPIEXEC -n 2`, with stdout and stderr captured to files, and checks
 *   - the exit status: 2 for usage errors, 1 for every other error, 0 on success;
 *   - that stderr names the file, the object (e.g. /layers/1/weight) and the problem;
 *   - the shape of stderr: a run that gets past argument parsing logs a header line first
 *     ("linfold: version ... | COMMAND ... | N ranks x T threads ...") and a closing line last
 *     ("linfold: COMMAND finished in X s" or "... stopped after X s (exit status S)"), and a
 *     failed run prints exactly one error line (see is_error_line) in between; a usage error
 *     found while parsing prints that one line and nothing else;
 *   - that a failed run leaves neither its output file nor a temporary `OUT.h5.tmp-*` beside it.
 *
 * Hostile files (arrays where a string belongs, storage outside the file, external links,
 * shapes the file cannot hold, a corrupt global heap) are refused with one error line naming
 * the file and the object. Outputs naming an input (by any spelling or link) are usage errors
 * that leave the input byte-for-byte unchanged. The faults that need processes, signals or a
 * mount (full disk, SIGTERM/SIGINT, concurrent writers, a file truncated mid-read) are in
 * cli_faults.py.
 *
 * This process never calls MPI_Init (lf_test_run_serial), so Check may fork per test. Every
 * command runs under `timeout -s KILL 60`, so a hang shows up as exit status 137 instead of a
 * stuck suite (KILL: mpiexec forwards TERM to ranks that may be deadlocked).
 *
 * Broken model files are written here with the serial HDF5 C API: write_model() writes a small
 * valid format-v1 model and a defect_t knob breaks exactly one thing in it, so each failure can be
 * attributed to that one defect (test_valid_fixture checks that the unbroken model is accepted).
 *
 * Temporary files: each test case gets a directory made with mkdtemp() inside a per-TCase root
 * under /tmp. The checked teardown removes the test's directory; because a failing assertion ends
 * the forked test before its teardown runs, the unchecked teardown (in the parent) also removes
 * the whole root.
 *
 * Time: a singleton linfold spends about a second starting MPI. The long tables therefore run
 * their commands PARALLEL at a time: the usage table inside one test (which reports every failing
 * case at once), the model and data tables in an unchecked fixture of their TCase (pre_case_t),
 * after which each case's forked test checks its own results. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lf_test.h"

#define DIGITS_DIR LF_SOURCE_DIR "/tests/data/digits"

/* ---------------------------------------------------------------- temporary directories */

static char g_root[256]; /* per TCase, made by the unchecked setup (parent process) */
static char g_dir[512];  /* per test, made by the checked setup (forked child) */
/* Paths inside g_dir; the fixtures below always use these names. */
static char g_model[640], g_data[640], g_out[640], g_stats[640];

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            struct stat st;
            if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(child);
            else
                unlink(child);
        }
        closedir(d);
    }
    rmdir(path);
}

static void root_setup(void)
{
    snprintf(g_root, sizeof g_root, "/tmp/linfold-test-cli-XXXXXX");
    if (!mkdtemp(g_root))
        g_root[0] = '\0';
}

static void root_teardown(void)
{
    if (g_root[0])
        remove_tree(g_root);
    g_root[0] = '\0';
}

static void write_data(const char *path);
static void write_good_model(const char *path);

static void test_setup(void)
{
    ck_assert_msg(g_root[0] != '\0', "mkdtemp under /tmp failed");
    snprintf(g_dir, sizeof g_dir, "%s/case-XXXXXX", g_root);
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_model, sizeof g_model, "%s/model.h5", g_dir);
    snprintf(g_data, sizeof g_data, "%s/data.h5", g_dir);
    snprintf(g_out, sizeof g_out, "%s/OUT.h5", g_dir);
    snprintf(g_stats, sizeof g_stats, "%s/STATS.h5", g_dir);
    write_data(g_data);
    write_good_model(g_model);
}

static void test_teardown(void) { remove_tree(g_dir); }

/* ---------------------------------------------------------------- running linfold */

typedef struct {
    char cmd[4096];
    int status; /* exit status; -1 when the shell did not exit normally */
    char out[32768];
    char err[32768];
} run_t;

static run_t g_run;

static void read_text(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Replaces {M}, {D}, {O}, {S} and {G} in tmpl with the model, data, output and statistics paths
 * and the directory of the current test, so that the case tables below can name files before
 * they exist. */
static void expand(const char *tmpl, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (const char *p = tmpl; *p && n + 1 < cap; p++) {
        const char *sub = NULL;
        if (p[0] == '{' && p[1] && p[2] == '}') {
            switch (p[1]) {
            case 'M': sub = g_model; break;
            case 'D': sub = g_data; break;
            case 'O': sub = g_out; break;
            case 'S': sub = g_stats; break;
            case 'G': sub = g_dir; break;
            default: break;
            }
        }
        if (sub) {
            n += (size_t)snprintf(buf + n, cap - n, "%s", sub);
            if (n >= cap)
                n = cap - 1;
            p += 2;
        } else {
            buf[n++] = *p;
            buf[n] = '\0';
        }
    }
}

/* The shell command that runs linfold with the argument template args ({M}... expanded) on np
 * ranks (np == 1: a plain singleton start, otherwise LF_MPIEXEC -n np), with env (may be "")
 * in front and the streams redirected to outp and errp. cmd receives the command without
 * redirections, for messages. */
static int g_timeout = 60; /* seconds; a test may lower it where a hang is the bug to catch */

static void shell_command(int np, const char *env, const char *args, const char *outp,
                          const char *errp, char *cmd, size_t cmd_cap, char *shell,
                          size_t shell_cap)
{
    char expanded[2048], launcher[512];
    expand(args, expanded, sizeof expanded);
    if (np == 1)
        snprintf(launcher, sizeof launcher, "%s", LF_BINARY);
    else
        snprintf(launcher, sizeof launcher, "%s -n %d %s", LF_MPIEXEC, np, LF_BINARY);
    snprintf(cmd, cmd_cap, "%s%stimeout -s KILL %d %s %s", env, env[0] ? " " : "", g_timeout,
             launcher, expanded);
    snprintf(shell, shell_cap, "%s </dev/null >'%s' 2>'%s'", cmd, outp, errp);
}

static int status_of(int rc) { return (rc != -1 && WIFEXITED(rc)) ? WEXITSTATUS(rc) : -1; }

/* Kills and reaps what a killed run left behind: Open MPI gives each rank a process group of its
 * own, so `timeout` killing mpiexec does not reach ranks stuck in a collective; they are
 * reparented to this process (a child subreaper) and killed here by PID. */
static void reap_orphans(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char path[300], text[512];
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        read_text(path, text, sizeof text);
        const char *close = strrchr(text, ')');
        int ppid = 0;
        char state = 0;
        if (close && sscanf(close + 1, " %c %d", &state, &ppid) == 2 && ppid == (int)getpid()) {
            pid_t pid = (pid_t)atoi(e->d_name);
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    closedir(d);
}

/* Runs linfold with env in front (e.g. "SLURM_JOB_ID=7", or ""). Fills g_run. */
static void run_linfold_env(int np, const char *env, const char *args)
{
    char outp[700], errp[700];
    /* The captured streams live in the test directory under names that cannot be mistaken for an
     * output (OUT.h5) or its temporary (OUT.h5.tmp-*). */
    snprintf(outp, sizeof outp, "%s/cmd.stdout", g_dir);
    snprintf(errp, sizeof errp, "%s/cmd.stderr", g_dir);
    char shell[sizeof g_run.cmd + 2 * sizeof outp + 32];
    shell_command(np, env, args, outp, errp, g_run.cmd, sizeof g_run.cmd, shell, sizeof shell);
    prctl(PR_SET_CHILD_SUBREAPER, 1L, 0L, 0L, 0L);
    g_run.status = status_of(system(shell));
    reap_orphans();
    read_text(outp, g_run.out, sizeof g_run.out);
    read_text(errp, g_run.err, sizeof g_run.err);
}

/* Runs linfold on np ranks. Fills g_run. */
static void run_linfold(int np, const char *args) { run_linfold_env(np, "", args); }

/* Commands run side by side: a singleton spends most of its second starting MPI, not
 * computing, so the case tables run their commands 4 at a time and check the results after. */
typedef struct {
    run_t *run;
    char shell[sizeof((run_t *)0)->cmd + 1500];
    pid_t pid;
    char outp[720], errp[720];
} job_t;

enum { PARALLEL = 4 };

/* Prepares job j to run args on np ranks, expanded with the current g_* paths; its streams go to
 * STEM.stdout and STEM.stderr. */
static void job_prepare(job_t *j, run_t *run, int np, const char *args, const char *stem)
{
    j->run = run;
    j->pid = 0;
    snprintf(j->outp, sizeof j->outp, "%s.stdout", stem);
    snprintf(j->errp, sizeof j->errp, "%s.stderr", stem);
    shell_command(np, "", args, j->outp, j->errp, run->cmd, sizeof run->cmd, j->shell,
                  sizeof j->shell);
}

/* Runs the jobs, at most PARALLEL at a time, and fills their run_t. Safe in Check's parent
 * process (an unchecked fixture): only the jobs' own children are waited for. */
static void jobs_run(job_t *jobs, int n)
{
    int started = 0, running = 0;
    while (started < n || running > 0) {
        while (running < PARALLEL && started < n) {
            job_t *j = &jobs[started++];
            fflush(NULL);
            j->pid = fork();
            if (j->pid == 0) {
                execl("/bin/sh", "sh", "-c", j->shell, (char *)NULL);
                _exit(127);
            }
            if (j->pid < 0) {
                j->run->status = -1;
                continue;
            }
            running++;
        }
        for (int k = 0; k < started && running > 0; k++) {
            job_t *j = &jobs[k];
            int rc = 0;
            if (j->pid <= 0 || waitpid(j->pid, &rc, WNOHANG) != j->pid)
                continue;
            j->run->status = status_of(rc);
            j->pid = 0;
            running--;
        }
        if (running >= PARALLEL || (started == n && running > 0))
            nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
    for (int k = 0; k < n; k++) {
        read_text(jobs[k].outp, jobs[k].run->out, sizeof jobs[k].run->out);
        read_text(jobs[k].errp, jobs[k].run->err, sizeof jobs[k].run->err);
    }
}

/* ---------------------------------------------------------------- commands run in advance */

/* For the model and data tables, an unchecked fixture (Check's parent process, once per TCase)
 * writes every case's files into a directory of its own and runs all the commands PARALLEL at
 * a time; each case's forked test then only checks its results, with the usual helpers. */
enum { PRE_COMMANDS = 2 };
typedef struct {
    char dir[512];
    run_t run[PRE_COMMANDS];
    int n_runs;
} pre_case_t;

static pre_case_t *g_pre;
static int g_n_pre;

/* Points g_dir, g_model, g_data, g_out and g_stats at pre-run case k (making its directory when
 * create is set). */
static void pre_select(int k, bool create)
{
    if (create)
        snprintf(g_pre[k].dir, sizeof g_pre[k].dir, "%s/pre-%d", g_root, k);
    snprintf(g_dir, sizeof g_dir, "%s", g_pre[k].dir);
    if (create)
        mkdir(g_dir, 0700);
    snprintf(g_model, sizeof g_model, "%s/model.h5", g_dir);
    snprintf(g_data, sizeof g_data, "%s/data.h5", g_dir);
    snprintf(g_out, sizeof g_out, "%s/OUT.h5", g_dir);
    snprintf(g_stats, sizeof g_stats, "%s/STATS.h5", g_dir);
}

static void pre_alloc(int n)
{
    g_pre = calloc((size_t)n, sizeof *g_pre);
    g_n_pre = g_pre ? n : 0;
}

static void pre_teardown(void)
{
    free(g_pre);
    g_pre = NULL;
    g_n_pre = 0;
    root_teardown();
}

/* Copies pre-run case k's command c into g_run (and selects its paths). */
static void pre_result(int k, int c)
{
    ck_assert_msg(k < g_n_pre && c < g_pre[k].n_runs, "case %d was not run in advance", k);
    pre_select(k, false);
    g_run = g_pre[k].run[c];
}

static void assert_status(const char *what, int expected)
{
    ck_assert_msg(g_run.status == expected,
                  "%s: exit status %d, expected %d (137 = timed out)\n$ %s\nstderr:\n%s", what,
                  g_run.status, expected, g_run.cmd, g_run.err);
}

/* fragment may hold {M}, {D}, {O}, {S}, {G}. */
static void assert_stderr_has(const char *what, const char *fragment)
{
    char want[1024];
    expand(fragment, want, sizeof want);
    ck_assert_msg(strstr(g_run.err, want) != NULL, "%s: stderr lacks \"%s\"\n$ %s\nstderr:\n%s",
                  what, want, g_run.cmd, g_run.err);
}

static int count_lines_starting(const char *text, const char *prefix)
{
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; *p;) {
        n += strncmp(p, prefix, len) == 0;
        const char *eol = strchr(p, '\n');
        if (!eol)
            break;
        p = eol + 1;
    }
    return n;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

/* ---------------------------------------------------------------- the shape of stderr */

/* An error line: "linfold: error: ...", "linfold: [rank r/n] error: ...", or the interruption
 * line "linfold: [rank r/n] interrupted by SIG... " (no rank prefix on a singleton). line points
 * at the start of a line. */
static bool is_error_line(const char *line)
{
    if (strncmp(line, "linfold: ", 9) != 0)
        return false;
    const char *p = line + 9;
    if (*p == '[') {
        int r = -1, size = -1, len = 0;
        if (sscanf(p, "[rank %d/%d]%n", &r, &size, &len) != 2 || len == 0 || r < 0 || r >= size ||
            p[len] != ' ')
            return false;
        p += len + 1;
    }
    return strncmp(p, "error: ", 7) == 0 || strncmp(p, "interrupted by SIG", 18) == 0;
}

static int count_error_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; *p;) {
        n += is_error_line(p);
        const char *eol = strchr(p, '\n');
        if (!eol)
            break;
        p = eol + 1;
    }
    return n;
}

/* True for a line another rank than 0 printed ("linfold: [rank r/n] ..." or "linfold: [r/n] ...",
 * r > 0). Under mpiexec each rank's lines reach stderr in order, but lines of different ranks
 * may interleave either way: rank 1's error line may come after rank 0's closing line. */
static bool from_other_rank(const char *line)
{
    int r = 0;
    return (sscanf(line, "linfold: [rank %d/", &r) == 1 ||
            sscanf(line, "linfold: [%d/", &r) == 1) &&
           r != 0;
}

/* The k-th line (from 0) of text that starts with "linfold: " and comes from rank 0, into buf
 * without its newline; k == -1 means the last one. Returns false when there is no such line. */
static bool linfold_line(const char *text, int k, char *buf, size_t cap)
{
    int seen = 0;
    bool found = false;
    buf[0] = '\0';
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (strncmp(p, "linfold: ", 9) == 0 && !from_other_rank(p)) {
            if (k == -1 || seen == k) {
                snprintf(buf, cap, "%.*s", (int)len, p);
                found = true;
                if (k != -1)
                    return true;
            }
            seen++;
        }
        if (!eol)
            break;
        p = eol + 1;
    }
    return found;
}

/* The header line: "linfold: version V (REV) | COMMAND ARGS | N rank(s) x T thread(s) on K
 * node(s) | BLAS KERNEL | host HOST[ | SLURM job ...]". */
static bool is_header_line(const char *line, const char *command, int np)
{
    char words[128];
    snprintf(words, sizeof words, " | %s ", command);
    char ranks[64];
    snprintf(ranks, sizeof ranks, "| %d rank%s x ", np, np == 1 ? "" : "s");
    return strncmp(line, "linfold: version ", 17) == 0 && strstr(line, words) != NULL &&
           strstr(line, ranks) != NULL && strstr(line, " on 1 node | BLAS ") != NULL &&
           strstr(line, " | host ") != NULL;
}

/* A run that got past argument parsing and failed with `status`: the header is the first line,
 * exactly one error line, and "COMMAND stopped after X s (exit status S)" is the last linfold
 * line (of rank 0's: see from_other_rank). On a singleton every line of stderr is linfold's own:
 * no traceback, no library noise. (Under mpiexec, mpiexec's banner about the non-zero exit
 * follows.) */
static void assert_failed_run(const char *what, const char *command, int np, int status)
{
    char line[4096], want[128];
    assert_status(what, status);
    ck_assert_msg(count_error_lines(g_run.err) == 1,
                  "%s: expected exactly one error line, got %d:\n$ %s\n%s", what,
                  count_error_lines(g_run.err), g_run.cmd, g_run.err);
    ck_assert_msg(
        linfold_line(g_run.err, 0, line, sizeof line) && is_header_line(line, command, np),
        "%s: the first line is not the log header:\n$ %s\n%s", what, g_run.cmd, g_run.err);
    ck_assert_msg(count_lines_starting(g_run.err, "linfold: version ") == 1,
                  "%s: the header appears more than once:\n%s", what, g_run.err);
    snprintf(want, sizeof want, "linfold: %s stopped after ", command);
    char tail[64];
    snprintf(tail, sizeof tail, " s (exit status %d)", status);
    size_t len = strlen(line), tlen = strlen(tail);
    ck_assert_msg(linfold_line(g_run.err, -1, line, sizeof line) &&
                      strncmp(line, want, strlen(want)) == 0 && (len = strlen(line)) > tlen &&
                      strcmp(line + len - tlen, tail) == 0,
                  "%s: the last line is not \"%s... s (exit status %d)\":\n$ %s\n%s", what, want,
                  status, g_run.cmd, g_run.err);
    ck_assert_msg(count_lines_starting(g_run.err, want) == 1, "%s: two closing lines:\n%s", what,
                  g_run.err);
    if (np == 1)
        ck_assert_msg(count_lines_starting(g_run.err, "linfold: ") == count_lines(g_run.err),
                      "%s: stderr has lines that are not linfold's:\n$ %s\n%s", what, g_run.cmd,
                      g_run.err);
}

/* A successful run: the header first, "COMMAND finished in X s" last, no error line. */
static void assert_ok_run(const char *what, const char *command, int np)
{
    char line[4096], want[128];
    assert_status(what, 0);
    ck_assert_msg(count_error_lines(g_run.err) == 0, "%s: error lines on success:\n%s", what,
                  g_run.err);
    ck_assert_msg(
        linfold_line(g_run.err, 0, line, sizeof line) && is_header_line(line, command, np),
        "%s: the first line is not the log header:\n$ %s\n%s", what, g_run.cmd, g_run.err);
    snprintf(want, sizeof want, "linfold: %s finished in ", command);
    ck_assert_msg(
        linfold_line(g_run.err, -1, line, sizeof line) && strncmp(line, want, strlen(want)) == 0 &&
            strcmp(line + strlen(line) - 2, " s") == 0,
        "%s: the last line is not \"%sX s\":\n$ %s\n%s", what, want, g_run.cmd, g_run.err);
}

/* A usage error found while parsing: status 2 and one error line, nothing else (no header: the
 * run never started). */
static void assert_usage_run(const char *what)
{
    assert_status(what, 2);
    ck_assert_msg(count_lines(g_run.err) == 1 && is_error_line(g_run.err),
                  "%s: expected exactly one error line and nothing else:\n$ %s\n%s", what,
                  g_run.cmd, g_run.err);
}

/* No lines of a crash: a signal report from the shell, MPI or a sanitizer. */
static void assert_no_crash(const char *what)
{
    static const char *const words[] = {
        "Segmentation fault", "exited on signal", "Signal: ", "core dumped", "Aborted",
        "AddressSanitizer",   "HDF5-DIAG"};
    for (size_t k = 0; k < sizeof words / sizeof *words; k++)
        ck_assert_msg(strstr(g_run.err, words[k]) == NULL && strstr(g_run.out, words[k]) == NULL,
                      "%s: output mentions \"%s\":\n$ %s\n%s", what, words[k], g_run.cmd,
                      g_run.err);
}

/* The output must not exist, nor any "<name>.tmp-*" left by an interrupted atomic write. */
static void assert_no_output(const char *what, const char *path)
{
    ck_assert_msg(access(path, F_OK) != 0, "%s: %s exists after a failed run\n$ %s", what, path,
                  g_run.cmd);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char prefix[sizeof g_out + 8];
    snprintf(prefix, sizeof prefix, "%s.tmp-", base);
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    char leftover[256] = "";
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            snprintf(leftover, sizeof leftover, "%s", e->d_name);
    closedir(d);
    ck_assert_msg(leftover[0] == '\0', "%s: temporary %s left in %s\n$ %s", what, leftover, g_dir,
                  g_run.cmd);
}

/* No temporary of any output in the test directory. */
static void assert_no_temporaries(const char *what)
{
    DIR *d = opendir(g_dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    char leftover[256] = "";
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp-") != NULL)
            snprintf(leftover, sizeof leftover, "%s", e->d_name);
    closedir(d);
    ck_assert_msg(leftover[0] == '\0', "%s: temporary %s left in %s\n$ %s", what, leftover, g_dir,
                  g_run.cmd);
}

/* Reads a whole file (for byte-for-byte comparisons); caller frees. */
static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    ck_assert_int_ge(size, 0);
    rewind(f);
    unsigned char *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

static void spit(const char *path, const unsigned char *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(buf, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* ---------------------------------------------------------------- HDF5 fixtures */

static void h5_dataset(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank,
                       const hsize_t *dims, const void *data)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    ck_assert_int_ge(space, 0);
    hid_t dset = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(dset >= 0, "cannot create dataset %s", name);
    ck_assert_int_ge(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
    H5Dclose(dset);
    H5Sclose(space);
}

static void h5_f32(hid_t loc, const char *name, int rank, const hsize_t *dims, const float *data)
{
    h5_dataset(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rank, dims, data);
}

static void h5_attr(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    ck_assert_int_ge(space, 0);
    hid_t attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(attr >= 0, "cannot create attribute %s", name);
    ck_assert_int_ge(H5Awrite(attr, mem_type, value), 0);
    H5Aclose(attr);
    H5Sclose(space);
}

/* A fixed-length, NUL-terminated string attribute (what linfold itself writes). */
static void h5_str_attr(hid_t loc, const char *name, const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    ck_assert_int_ge(type, 0);
    ck_assert_int_ge(H5Tset_size(type, strlen(value) + 1), 0);
    ck_assert_int_ge(H5Tset_strpad(type, H5T_STR_NULLTERM), 0);
    h5_attr(loc, name, type, type, value);
    H5Tclose(type);
}

static void h5_i64_attr(hid_t loc, const char *name, int64_t value)
{
    h5_attr(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

/* An attribute holding an array of n copies of "relu": fixed-length (5 bytes each) or
 * variable-length strings. */
static void h5_str_array_attr(hid_t loc, const char *name, hsize_t n, bool variable)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    ck_assert_int_ge(type, 0);
    ck_assert_int_ge(H5Tset_size(type, variable ? H5T_VARIABLE : 5), 0);
    hid_t space = H5Screate_simple(1, &n, NULL);
    ck_assert_int_ge(space, 0);
    hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(attr >= 0, "cannot create attribute %s", name);
    if (variable) {
        const char **v = malloc(n * sizeof *v);
        ck_assert_ptr_nonnull(v);
        for (hsize_t k = 0; k < n; k++)
            v[k] = "relu";
        ck_assert_int_ge(H5Awrite(attr, type, v), 0);
        free(v);
    } else {
        char *v = calloc(n, 5);
        ck_assert_ptr_nonnull(v);
        for (hsize_t k = 0; k < n; k++)
            memcpy(v + 5 * k, "relu", 5);
        ck_assert_int_ge(H5Awrite(attr, type, v), 0);
        free(v);
    }
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
}

/* A scalar variable-length string attribute (what h5py writes for a str). */
static void h5_vlen_str_attr(hid_t loc, const char *name, const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    ck_assert_int_ge(type, 0);
    ck_assert_int_ge(H5Tset_size(type, H5T_VARIABLE), 0);
    h5_attr(loc, name, type, type, &value);
    H5Tclose(type);
}

/* An unwritten float32 dataset with creation list dcpl (external or virtual storage, chunks,
 * filters); nothing is written, so nothing outside the file is touched. */
static void h5_unwritten(hid_t loc, const char *name, int rank, const hsize_t *dims, hid_t dcpl)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    ck_assert_int_ge(space, 0);
    hid_t dset = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert_msg(dset >= 0, "cannot create dataset %s", name);
    H5Dclose(dset);
    H5Sclose(space);
}

/* A dataset whose storage is bytes [0, n floats) of /etc/passwd. Fill values are never written,
 * so creating it leaves /etc/passwd alone. */
static void h5_external_passwd(hid_t loc, const char *name, int rank, const hsize_t *dims)
{
    hsize_t n = 1;
    for (int k = 0; k < rank; k++)
        n *= dims[k];
    struct stat st;
    ck_assert_int_eq(stat("/etc/passwd", &st), 0);
    ck_assert_msg((hsize_t)st.st_size >= 4 * n, "/etc/passwd is too short for the fixture");
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert_int_ge(dcpl, 0);
    ck_assert_int_ge(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), 0);
    ck_assert_int_ge(H5Pset_external(dcpl, "/etc/passwd", 0, 4 * n), 0);
    h5_unwritten(loc, name, rank, dims, dcpl);
    H5Pclose(dcpl);
}

/* A chunked dataset that claims dims but was never written: the file stores none of it. */
static void h5_huge(hid_t loc, const char *name, int rank, const hsize_t *dims)
{
    hsize_t chunk[2] = {64, 64};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ck_assert_int_ge(dcpl, 0);
    if (rank == 2 && dims[1] < chunk[1])
        chunk[1] = dims[1];
    ck_assert_int_ge(H5Pset_chunk(dcpl, rank, chunk), 0);
    h5_unwritten(loc, name, rank, dims, dcpl);
    H5Pclose(dcpl);
}

/* Makes every object of the file's global heap collection claim 512 GiB: reading a
 * variable-length string from it then runs off the end of the buffer inside HDF5. Collection
 * layout: "GCOL", version, 3 reserved, 8-byte size; objects: 2-byte index (0 = free space),
 * 2-byte reference count, 4 reserved, 8-byte size, data padded to 8 bytes. */
static void corrupt_global_heap(const char *path)
{
    size_t n = 0;
    unsigned char *buf = slurp(path, &n);
    unsigned char *gcol = NULL;
    for (size_t k = 0; k + 4 <= n && !gcol; k++)
        if (memcmp(buf + k, "GCOL", 4) == 0)
            gcol = buf + k;
    ck_assert_msg(gcol != NULL, "%s has no global heap", path);
    uint64_t size = 0;
    for (int b = 7; b >= 0; b--)
        size = size << 8 | gcol[8 + b];
    int patched = 0;
    for (unsigned char *o = gcol + 16; o + 16 <= gcol + size && o + 16 <= buf + n;) {
        unsigned index = (unsigned)o[0] | (unsigned)o[1] << 8;
        uint64_t osize = 0;
        for (int b = 7; b >= 0; b--)
            osize = osize << 8 | o[8 + b];
        if (index == 0)
            break;
        uint64_t huge = (uint64_t)1 << 39;
        for (int b = 0; b < 8; b++)
            o[8 + b] = (unsigned char)(huge >> (8 * b));
        patched++;
        o += 16 + (osize + 7) / 8 * 8;
    }
    ck_assert_msg(patched > 0, "%s: no global heap object to corrupt", path);
    spit(path, buf, n);
    free(buf);
}

static hid_t h5_group(hid_t loc, const char *name)
{
    hid_t g = H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(g >= 0, "cannot create group %s", name);
    return g;
}

static void fill(float *v, int64_t n, lf_rng_t *rng)
{
    for (int64_t k = 0; k < n; k++)
        v[k] = lf_rng_uniform(rng, -1.0f, 1.0f);
}

/* One defect per broken model; D_NONE is the valid fixture. */
typedef enum {
    D_NONE,
    D_MISSING_FILE,   /* no file at all */
    D_TEXT_FILE,      /* a text file, not HDF5 */
    D_NO_FORMAT,      /* root attribute `format` missing */
    D_FORMAT_VALUE,   /* format = "linfold-cnn" */
    D_VERSION_2,      /* format_version = 2 */
    D_NO_LAYERS,      /* group /layers missing */
    D_NO_COUNT,       /* /layers has no `count` */
    D_COUNT_TOO_BIG,  /* count = 4, groups 0..2 only */
    D_NO_WEIGHT,      /* /layers/1/weight missing */
    D_NO_BIAS,        /* /layers/1/bias missing */
    D_WEIGHT_INT32,   /* /layers/1/weight is int32 */
    D_WEIGHT_RANK1,   /* /layers/1/weight is 1-D */
    D_WEIGHT_CHAIN,   /* /layers/1/weight is (4, 5) but layer 0 has 3 outputs */
    D_BIAS_LENGTH,    /* /layers/1/bias has 3 entries, the layer 4 neurons */
    D_WEIGHT_NAN,     /* /layers/1/weight[2, 1] = NaN */
    D_BIAS_INF,       /* /layers/2/bias[1] = +Inf */
    D_ACT_GELU,       /* /layers/1 activation "gelu" */
    D_LEAKY_NO_ALPHA, /* /layers/1 is leaky_relu without `alpha` */
    D_NO_ACTIVATION,  /* /layers/1 has no `activation` attribute */
    D_SKIP_FROM_PRED, /* /layers/1/skip/0: layer 0 is layer 1's predecessor (its weight) */
    D_SKIP_FROM_SELF, /* /layers/2/skip/2: a layer cannot read itself */
    D_SKIP_FOO,       /* /layers/2/skip/foo */
    D_SKIP_SHAPE,     /* /layers/2/skip/0 is (2, 5), expected (2, 3) */
    D_SKIP_PRED_ONLY, /* /layers/1/skip holds only "0", layer 1's predecessor */
    /* Hostile files: each would make a careless reader crash, allocate without bound or read
     * outside the file. */
    D_ACT_ARRAY_1000, /* /layers/1 activation: an array of 1000 fixed-length strings */
    D_ACT_ARRAY_5000, /* ... of 5000 */
    D_ACT_VLEN_ARRAY, /* ... an array of 1000 variable-length strings (what h5py writes) */
    D_ACT_LONG,       /* ... a 64-byte string */
    D_ACT_INT,        /* ... an integer */
    D_FORMAT_HEAP,    /* root `format` a variable-length string whose global heap object claims
                         a size of 512 GiB */
    D_BIAS_EXTERNAL,  /* /layers/1/bias keeps its data in /etc/passwd (H5Pset_external) */
    D_WEIGHT_VIRTUAL, /* /layers/1/weight is a virtual dataset over /source in the same file */
    D_LAYER_ELINK,    /* /layers/1 is an external link to /layers/1 of a valid copy */
    D_WEIGHT_HUGE,    /* /layers/1/weight is chunked (1e6, 1e6) and was never written */
    D_WEIGHT_FILTER,  /* /layers/1/weight is filtered by 32000 (LZF), not built into HDF5 */
    D_TRUNCATED,      /* the valid file cut to half its size */
} defect_t;

/* The valid fixture: 3 inputs -> layer 0 (3, relu) -> layer 1 (4, relu) -> layer 2 (2, identity),
 * with skip blocks /layers/1/skip/input (4, 3) and /layers/2/skip/0 (2, 3), so that the valid
 * model already exercises skip reading. Weights are seeded uniform values in [-1, 1). */
enum { N_IN = 3, N_LAYERS = 3 };
static const int64_t widths[N_LAYERS] = {3, 4, 2};

static void write_model(const char *path, defect_t d)
{
    unlink(path);
    if (d == D_MISSING_FILE)
        return;
    if (d == D_TEXT_FILE) {
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs("layer 0: 3 neurons, relu\nthis is a text file, not HDF5\n", f);
        fclose(f);
        return;
    }
    /* The target of the external link: a valid model beside this one. */
    char target[700];
    snprintf(target, sizeof target, "%s.target.h5", path);
    if (d == D_LAYER_ELINK)
        write_model(target, D_NONE);
    lf_rng_t rng = {20240601};
    float w[64], b[16];
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(file >= 0, "cannot create %s", path);
    if (d == D_FORMAT_HEAP)
        h5_vlen_str_attr(file, "format", "linfold-mlp");
    else if (d != D_NO_FORMAT)
        h5_str_attr(file, "format", d == D_FORMAT_VALUE ? "linfold-cnn" : "linfold-mlp");
    h5_i64_attr(file, "format_version", d == D_VERSION_2 ? 2 : 1);
    if (d == D_NO_LAYERS) {
        H5Fclose(file);
        return;
    }
    hid_t layers = h5_group(file, "layers");
    if (d != D_NO_COUNT)
        h5_i64_attr(layers, "count", d == D_COUNT_TOO_BIG ? N_LAYERS + 1 : N_LAYERS);
    for (int i = 0; i < N_LAYERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        bool one = i == 1, two = i == 2;
        if (one && d == D_LAYER_ELINK) {
            ck_assert_int_ge(
                H5Lcreate_external(target, "/layers/1", layers, name, H5P_DEFAULT, H5P_DEFAULT), 0);
            continue; /* the link target holds a valid layer 1 */
        }
        hid_t g = h5_group(layers, name);

        const char *act = two ? "identity" : "relu";
        if (one && d == D_ACT_GELU)
            act = "gelu";
        if (one && d == D_LEAKY_NO_ALPHA)
            act = "leaky_relu";
        if (one && d == D_ACT_ARRAY_1000)
            h5_str_array_attr(g, "activation", 1000, false);
        else if (one && d == D_ACT_ARRAY_5000)
            h5_str_array_attr(g, "activation", 5000, false);
        else if (one && d == D_ACT_VLEN_ARRAY)
            h5_str_array_attr(g, "activation", 1000, true);
        else if (one && d == D_ACT_LONG)
            h5_str_attr(g, "activation",
                        "relu_relu_relu_relu_relu_relu_relu_relu_relu_relu_relu_relu_rel");
        else if (one && d == D_ACT_INT)
            h5_i64_attr(g, "activation", 1);
        else if (!(one && d == D_NO_ACTIVATION))
            h5_str_attr(g, "activation", act);

        int64_t n_out = widths[i], n_in = i == 0 ? N_IN : widths[i - 1];
        if (one && d == D_WEIGHT_CHAIN)
            n_in = 5;
        fill(w, n_out * n_in, &rng);
        if (one && d == D_WEIGHT_NAN)
            w[2 * n_in + 1] = NAN;
        hsize_t wdims[2] = {(hsize_t)n_out, (hsize_t)n_in};
        if (one && d == D_WEIGHT_INT32) {
            int32_t iw[64];
            for (int64_t k = 0; k < n_out * n_in; k++)
                iw[k] = (int32_t)k;
            h5_dataset(g, "weight", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, wdims, iw);
        } else if (one && d == D_WEIGHT_RANK1) {
            hsize_t flat = (hsize_t)(n_out * n_in);
            h5_f32(g, "weight", 1, &flat, w);
        } else if (one && d == D_WEIGHT_VIRTUAL) {
            /* The data is in the file (/source); the weight maps it, and is refused anyway. */
            h5_f32(file, "source", 2, wdims, w);
            hid_t space = H5Screate_simple(2, wdims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
            ck_assert_int_ge(H5Pset_virtual(dcpl, space, ".", "/source", space), 0);
            h5_unwritten(g, "weight", 2, wdims, dcpl);
            H5Pclose(dcpl);
            H5Sclose(space);
        } else if (one && d == D_WEIGHT_HUGE) {
            hsize_t huge[2] = {1000000, 1000000};
            h5_huge(g, "weight", 2, huge);
        } else if (one && d == D_WEIGHT_FILTER) {
            hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
            ck_assert_int_ge(H5Pset_chunk(dcpl, 2, wdims), 0);
            /* Optional: HDF5 stores the data unfiltered but records the filter. */
            ck_assert_int_ge(H5Pset_filter(dcpl, 32000, H5Z_FLAG_OPTIONAL, 0, NULL), 0);
            hid_t space = H5Screate_simple(2, wdims, NULL);
            hid_t dset =
                H5Dcreate2(g, "weight", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
            ck_assert_int_ge(dset, 0);
            ck_assert_int_ge(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w), 0);
            H5Dclose(dset);
            H5Sclose(space);
            H5Pclose(dcpl);
        } else if (!(one && d == D_NO_WEIGHT)) {
            h5_f32(g, "weight", 2, wdims, w);
        }

        hsize_t blen = (hsize_t)n_out;
        if (one && d == D_BIAS_LENGTH)
            blen = 3;
        fill(b, (int64_t)blen, &rng);
        if (two && d == D_BIAS_INF)
            b[1] = INFINITY;
        if (one && d == D_BIAS_EXTERNAL)
            h5_external_passwd(g, "bias", 1, &blen);
        else if (!(one && d == D_NO_BIAS))
            h5_f32(g, "bias", 1, &blen, b);

        hid_t skip = H5I_INVALID_HID;
        if (i > 0)
            skip = h5_group(g, "skip");
        if (one) {
            hsize_t dims[2] = {(hsize_t)n_out, N_IN};
            fill(w, n_out * N_IN, &rng);
            if (d != D_SKIP_PRED_ONLY)
                h5_f32(skip, "input", 2, dims, w);
            if (d == D_SKIP_PRED_ONLY) {
                dims[1] = (hsize_t)widths[0];
                h5_f32(skip, "0", 2, dims, w);
            }
            if (d == D_SKIP_FROM_PRED) {
                dims[1] = (hsize_t)widths[0];
                h5_f32(skip, "0", 2, dims, w);
            }
        }
        if (two) {
            hsize_t dims[2] = {(hsize_t)n_out, (hsize_t)(d == D_SKIP_SHAPE ? 5 : widths[0])};
            fill(w, (int64_t)(dims[0] * dims[1]), &rng);
            h5_f32(skip, "0", 2, dims, w);
            dims[1] = (hsize_t)widths[0];
            if (d == D_SKIP_FOO)
                h5_f32(skip, "foo", 2, dims, w);
            if (d == D_SKIP_FROM_SELF) {
                dims[1] = (hsize_t)widths[2];
                h5_f32(skip, "2", 2, dims, w);
            }
        }
        if (skip >= 0)
            H5Gclose(skip);
        H5Gclose(g);
    }
    H5Gclose(layers);
    ck_assert_int_ge(H5Fclose(file), 0);
    if (d == D_FORMAT_HEAP)
        corrupt_global_heap(path);
    if (d == D_TRUNCATED) {
        struct stat st;
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(truncate(path, st.st_size / 2), 0);
    }
}

static void write_good_model(const char *path) { write_model(path, D_NONE); }

/* Sample and label datasets of the data fixture, all with N_ROWS rows unless said otherwise:
 *   /x (N_ROWS, 3) float32, valid    /y (N_ROWS) int64 in {0, 1}, valid
 *   /x5 (N_ROWS, 5): 5 features, the model takes 3       /v (N_ROWS) float32: 1-D samples
 *   /xi (N_ROWS, 3) int32: integer samples               /xnan: NaN at row 7, column 2
 *   /xnan_tail: NaN at row 9, column 0 (rank 1's shard on 2 ranks: rows 5..9)
 *   /ybad: label 5 at row 4 (the model has 2 outputs)    /yshort (N_ROWS - 1) int64
 *   /x0 (0, 3) and /y0 (0): no rows
 * and hostile ones, each to be refused:
 *   /xlink: an external link to /x of PATH.target.h5     /xext: storage in /etc/passwd
 *   /xhuge: chunked (1e6, 3), never written */
enum { N_ROWS = 10 };

static void write_data(const char *path)
{
    lf_rng_t rng = {7};
    float x[N_ROWS * 5];
    int64_t y[N_ROWS];
    int32_t xi[N_ROWS * 3];
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(file >= 0, "cannot create %s", path);
    hsize_t d3[2] = {N_ROWS, 3}, d5[2] = {N_ROWS, 5}, n = N_ROWS, n_short = N_ROWS - 1;

    fill(x, N_ROWS * 3, &rng);
    h5_f32(file, "x", 2, d3, x);
    x[7 * 3 + 2] = NAN;
    h5_f32(file, "xnan", 2, d3, x);
    x[7 * 3 + 2] = 0.5f;
    x[9 * 3 + 0] = NAN;
    h5_f32(file, "xnan_tail", 2, d3, x);
    fill(x, N_ROWS * 5, &rng);
    h5_f32(file, "x5", 2, d5, x);
    h5_f32(file, "v", 1, &n, x);
    for (int k = 0; k < N_ROWS * 3; k++)
        xi[k] = k % 7;
    h5_dataset(file, "xi", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d3, xi);

    for (int k = 0; k < N_ROWS; k++)
        y[k] = k % 2;
    h5_dataset(file, "y", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, y);
    h5_dataset(file, "yshort", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n_short, y);
    y[4] = 5;
    h5_dataset(file, "ybad", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n, y);

    hsize_t d0[2] = {0, 3}, n0 = 0;
    h5_f32(file, "x0", 2, d0, x);
    h5_dataset(file, "y0", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n0, y);

    char target[700];
    snprintf(target, sizeof target, "%s.target.h5", path);
    hid_t other = H5Fcreate(target, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(other >= 0, "cannot create %s", target);
    fill(x, N_ROWS * 3, &rng);
    h5_f32(other, "x", 2, d3, x);
    ck_assert_int_ge(H5Fclose(other), 0);
    ck_assert_int_ge(H5Lcreate_external(target, "/x", file, "xlink", H5P_DEFAULT, H5P_DEFAULT), 0);
    h5_external_passwd(file, "xext", 2, d3);
    hsize_t huge[2] = {1000000, 3};
    h5_huge(file, "xhuge", 2, huge);
    ck_assert_int_ge(H5Fclose(file), 0);
}

/* ---------------------------------------------------------------- the valid fixture */

/* Guards every case below: the unbroken fixtures are accepted, so each failure is the defect's. */
START_TEST(test_valid_fixture)
{
    run_linfold(1, "inspect {M}");
    assert_ok_run("inspect", "inspect", 1);
    ck_assert_msg(strstr(g_run.out, "3 layers, 3 inputs, 2 outputs") != NULL, "stdout:\n%s",
                  g_run.out);
    ck_assert_msg(strstr(g_run.out, "skip from input (4, 3)") != NULL, "stdout:\n%s", g_run.out);
    ck_assert_msg(strstr(g_run.out, "skip from layer 0 (2, 3)") != NULL, "stdout:\n%s", g_run.out);

    run_linfold(1, "compress --model {M} --data {D}:/x --out {O}");
    assert_ok_run("compress", "compress", 1);
    ck_assert_msg(access(g_out, F_OK) == 0, "compress did not write %s", g_out);
    assert_no_temporaries("compress");

    run_linfold(1, "eval --model {M} --data {D}:/x --labels {D}:/y --json");
    assert_ok_run("eval", "eval", 1);
    ck_assert_msg(strstr(g_run.out, "{\"samples\": 10, ") == g_run.out, "stdout:\n%s", g_run.out);
}
END_TEST

/* ---------------------------------------------------------------- broken model files */

typedef struct {
    const char *name;
    defect_t defect;
    const char *object;  /* object path the message must name, or NULL for whole-file problems */
    const char *problem; /* words naming the problem */
    bool compress;       /* also run `compress` on it and check that no output appears */
} model_case_t;

static const model_case_t model_cases[] = {
    {"missing file", D_MISSING_FILE, NULL, "no such file", true},
    {"text file", D_TEXT_FILE, NULL, "not an HDF5 file", false},
    {"no format attribute", D_NO_FORMAT, "'format'", "missing attribute", false},
    {"wrong format value", D_FORMAT_VALUE, "'format'", "is \"linfold-cnn\", expected", false},
    {"format_version 2", D_VERSION_2, "format_version", "is 2, this linfold reads 1", true},
    {"no /layers", D_NO_LAYERS, "/layers", "missing group", false},
    {"no count", D_NO_COUNT, "/layers", "missing attribute 'count'", false},
    {"count beyond groups", D_COUNT_TOO_BIG, "/layers/3", "missing group", false},
    {"no weight", D_NO_WEIGHT, "/layers/1/weight", "missing dataset", true},
    {"no bias", D_NO_BIAS, "/layers/1/bias", "missing dataset", false},
    {"int32 weight", D_WEIGHT_INT32, "/layers/1/weight", "is not a float dataset", false},
    {"1-D weight", D_WEIGHT_RANK1, "/layers/1/weight", "has 1 dimension, expected 2", false},
    {"weights do not chain", D_WEIGHT_CHAIN, "/layers/1/weight",
     "has shape (4, 5), expected (4, 3)", true},
    {"bias length", D_BIAS_LENGTH, "/layers/1/bias", "has shape (3), expected (4)", false},
    {"NaN weight", D_WEIGHT_NAN, "/layers/1/weight", "has NaN at [2, 1]", true},
    {"Inf bias", D_BIAS_INF, "/layers/2/bias", "has an infinite value at [1]", false},
    {"gelu", D_ACT_GELU, "/layers/1", "unknown activation \"gelu\"", false},
    {"leaky_relu without alpha", D_LEAKY_NO_ALPHA, "/layers/1", "missing attribute 'alpha'", false},
    {"no activation", D_NO_ACTIVATION, "/layers/1", "missing attribute 'activation'", false},
    /* Layer 1 may have one skip source (the input); two entries are refused by count. */
    {"skip from predecessor", D_SKIP_FROM_PRED, "/layers/1/skip",
     "has 2 entries; a skip block of layer 1 may read 'input' only", false},
    {"skip from predecessor only", D_SKIP_PRED_ONLY, "/layers/1/skip/0",
     "a skip block of layer 1 may read 'input' only", false},
    {"skip from itself", D_SKIP_FROM_SELF, "/layers/2/skip/2", "may read 'input'", false},
    {"skip named foo", D_SKIP_FOO, "/layers/2/skip/foo", "must be 'input' or a layer index", true},
    {"skip shape", D_SKIP_SHAPE, "/layers/2/skip/0", "has shape (2, 5), expected (2, 3)", false},
    /* Hostile files. */
    {"activation: 1000 fixed-length strings", D_ACT_ARRAY_1000, "/layers/1: attribute 'activation'",
     "is not a single string", true},
    {"activation: 5000 fixed-length strings", D_ACT_ARRAY_5000, "/layers/1: attribute 'activation'",
     "is not a single string", false},
    {"activation: variable-length string array", D_ACT_VLEN_ARRAY,
     "/layers/1: attribute 'activation'", "is not a single string", true},
    {"activation of 64 bytes", D_ACT_LONG, "/layers/1: attribute 'activation'",
     "is 64 bytes or longer", false},
    {"activation not a string", D_ACT_INT, "/layers/1: attribute 'activation'", "is not a string",
     false},
    {"corrupt global heap", D_FORMAT_HEAP, "reading it crashed (signal",
     "inside the HDF5 library; the file is corrupt", true},
    {"bias stored in /etc/passwd", D_BIAS_EXTERNAL, "/layers/1/bias",
     "keeps its data in the external file '/etc/passwd'; refused", true},
    {"virtual weight", D_WEIGHT_VIRTUAL, "/layers/1/weight", "is a virtual dataset", true},
    {"layer is an external link", D_LAYER_ELINK, "/layers/1", "is an external link to", true},
    {"weight of 1e6 x 1e6", D_WEIGHT_HUGE, "/layers/1/weight",
     "has a shape that needs 4000000000000 bytes", true},
    {"filter not built in", D_WEIGHT_FILTER, "/layers/1/weight",
     "is compressed with HDF5 filter 32000", false},
    {"truncated file", D_TRUNCATED, NULL, "truncated file", false},
};
enum { N_MODEL_CASES = (int)(sizeof model_cases / sizeof *model_cases) };

static void assert_model_message(const model_case_t *c, const char *cmd)
{
    char what[160];
    snprintf(what, sizeof what, "%s, %s", c->name, cmd);
    /* A model error is one error line on a singleton run, between the header and the closing
     * line; a traceback only comes with --verbose. */
    assert_failed_run(what, cmd, 1, 1);
    assert_stderr_has(what, "{M}");
    if (c->object)
        assert_stderr_has(what, c->object);
    assert_stderr_has(what, c->problem);
    assert_no_crash(what);
    /* Nothing of /etc/passwd reaches the user, whatever the fixture. */
    ck_assert_msg(strstr(g_run.err, "root:") == NULL && strstr(g_run.out, "root:") == NULL,
                  "%s: output shows bytes of /etc/passwd:\n%s%s", what, g_run.out, g_run.err);
}

/* Unchecked fixture of the "model" TCase: every case's model, inspected and (when the case says
 * so) compressed, PARALLEL commands at a time. The model is also saved as model.h5.orig, to
 * show that reading never writes it. */
static void model_prerun(void)
{
    root_setup();
    pre_alloc(N_MODEL_CASES);
    job_t *jobs = calloc(2 * N_MODEL_CASES, sizeof *jobs);
    int n = 0;
    for (int k = 0; k < g_n_pre && jobs; k++) {
        const model_case_t *c = &model_cases[k];
        char stem[700], orig[700];
        pre_select(k, true);
        write_data(g_data);
        write_model(g_model, c->defect);
        if (c->defect != D_MISSING_FILE) {
            size_t size = 0;
            unsigned char *bytes = slurp(g_model, &size);
            snprintf(orig, sizeof orig, "%s.orig", g_model);
            spit(orig, bytes, size);
            free(bytes);
        }
        snprintf(stem, sizeof stem, "%s/inspect", g_dir);
        job_prepare(&jobs[n++], &g_pre[k].run[g_pre[k].n_runs++], 1, "inspect {M}", stem);
        if (c->compress) {
            snprintf(stem, sizeof stem, "%s/compress", g_dir);
            job_prepare(&jobs[n++], &g_pre[k].run[g_pre[k].n_runs++], 1,
                        "compress --model {M} --data {D}:/x --out {O}", stem);
        }
    }
    if (jobs)
        jobs_run(jobs, n);
    free(jobs);
}

START_TEST(test_bad_model)
{
    const model_case_t *c = &model_cases[_i];
    pre_result(_i, 0);
    assert_model_message(c, "inspect");
    ck_assert_msg(g_run.out[0] == '\0', "%s: inspect printed to stdout:\n%s", c->name, g_run.out);

    if (c->compress) {
        pre_result(_i, 1);
        assert_model_message(c, "compress");
        assert_no_output(c->name, g_out);
    }
    /* Reading never writes the input. */
    if (c->defect != D_MISSING_FILE) {
        char orig[700];
        snprintf(orig, sizeof orig, "%s.orig", g_model);
        size_t before_n = 0, after_n = 0;
        unsigned char *before = slurp(orig, &before_n), *after = slurp(g_model, &after_n);
        ck_assert_msg(after_n == before_n && memcmp(before, after, before_n) == 0,
                      "%s: the model file changed", c->name);
        free(after);
        free(before);
    }
}
END_TEST

/* On two ranks every rank reads the model and fails identically; the job must still report the
 * error once, not once per rank. */
START_TEST(test_bad_model_two_ranks)
{
    static const defect_t defects[] = {D_WEIGHT_CHAIN, D_BIAS_EXTERNAL, D_FORMAT_HEAP};
    static const char *const messages[] = {"/layers/1/weight has shape (4, 5), expected (4, 3)",
                                           "/layers/1/bias keeps its data in the external file",
                                           "reading it crashed (signal"};
    for (size_t k = 0; k < sizeof defects / sizeof *defects; k++) {
        write_model(g_model, defects[k]);
        run_linfold(2, "compress --model {M} --data {D}:/x --out {O}");
        assert_failed_run(messages[k], "compress", 2, 1);
        assert_stderr_has(messages[k], "{M}");
        assert_stderr_has(messages[k], messages[k]);
        ck_assert_msg(count_lines_starting(g_run.err, "linfold: [rank 0/2] error: ") == 1,
                      "%s: the error should be printed once per job, by rank 0:\n%s", messages[k],
                      g_run.err);
        assert_no_crash(messages[k]);
        assert_no_output(messages[k], g_out);
    }
}
END_TEST

/* ---------------------------------------------------------------- data and label errors */

typedef struct {
    const char *name;
    const char *args; /* {M}: valid model, {D}: data fixture, {O}: output */
    int status;
    bool parsed;           /* refused while parsing: no header, nothing but the error line */
    const char *expect[3]; /* fragments of the message */
} data_case_t;

static const data_case_t data_cases[] = {
    {"missing dataset",
     "compress --model {M} --data {D}:/nope --out {O}",
     1,
     false,
     {"{D}", "/nope", "missing dataset"}},
    {"missing data file",
     "compress --model {M} --data {D}.missing:/x --out {O}",
     1,
     false,
     {"{D}.missing", "no such file"}},
    {"1-D samples",
     "compress --model {M} --data {D}:/v --out {O}",
     1,
     false,
     {"{D}", "/v", "has 1 dimension, expected 2"}},
    {"integer samples",
     "compress --model {M} --data {D}:/xi --out {O}",
     1,
     false,
     {"{D}", "/xi", "not a float dataset"}},
    /* Without ":/" the argument cannot be split into file and dataset: a usage error. */
    {"spec without :/",
     "compress --model {M} --data {D} --out {O}",
     2,
     true,
     {"{D}", "is not of the form FILE.h5:/path"}},
    {"feature count",
     "compress --model {M} --data {D}:/x5 --out {O}",
     1,
     false,
     {"{D}:/x5", "has 5 features per row, the model expects 3"}},
    {"NaN in data",
     "compress --model {M} --data {D}:/xnan --out {O}",
     1,
     false,
     {"{D}:/xnan", "row 7, column 2 is NaN"}},
    {"NaN in data, predict",
     "predict --model {M} --data {D}:/xnan --out {O}",
     1,
     false,
     {"{D}:/xnan", "row 7, column 2 is NaN"}},
    {"label out of range",
     "eval --model {M} --data {D}:/x --labels {D}:/ybad",
     1,
     false,
     {"{D}:/ybad", "row 4 has label 5", "expected 0 to 1"}},
    {"label row count",
     "eval --model {M} --data {D}:/x --labels {D}:/yshort",
     1,
     false,
     {"{D}:/yshort", "has 9 rows", "{D}:/x has 10"}},
    {"float labels",
     "eval --model {M} --data {D}:/x --labels {D}:/x",
     1,
     false,
     {"{D}", "/x", "not an integer dataset"}},
    /* Nothing to evaluate is a usage error, found once the data is open. */
    {"eval on 0 rows",
     "eval --model {M} --data {D}:/x0 --labels {D}:/y0",
     2,
     false,
     {"{D}:/x0", "has no rows: there is nothing to evaluate"}},
    {"accuracy budget on 0 rows",
     "compress --model {M} --data {D}:/x --max-accuracy-drop 0.1 --eval-data {D}:/x0 "
     "--eval-labels {D}:/y0 --out {O}",
     2,
     false,
     {"{D}:/x0", "has no rows: there is nothing to evaluate"}},
    {"calibration on 0 rows",
     "calibrate --model {M} --data {D}:/x0 --out {O}",
     2,
     false,
     {"{D}:/x0", "has no rows"}},
    /* Hostile data files. */
    {"samples are an external link",
     "compress --model {M} --data {D}:/xlink --out {O}",
     1,
     false,
     {"{D}", "/xlink is an external link to", "refused"}},
    {"samples are an external link, predict",
     "predict --model {M} --data {D}:/xlink --out {O}",
     1,
     false,
     {"{D}", "/xlink is an external link to", "refused"}},
    {"samples stored in /etc/passwd",
     "predict --model {M} --data {D}:/xext --out {O}",
     1,
     false,
     {"{D}", "/xext keeps its data in the external file '/etc/passwd'", "refused"}},
    {"samples of 1e6 rows never written",
     "calibrate --model {M} --data {D}:/xhuge --out {O}",
     1,
     false,
     {"{D}", "/xhuge has a shape that needs 12000000 bytes", "refused"}},
};
enum { N_DATA_CASES = (int)(sizeof data_cases / sizeof *data_cases) };

/* Unchecked fixture of the "data" TCase: every case in its own directory, PARALLEL at a time. */
static void data_prerun(void)
{
    root_setup();
    pre_alloc(N_DATA_CASES);
    job_t *jobs = calloc(N_DATA_CASES, sizeof *jobs);
    for (int k = 0; k < g_n_pre && jobs; k++) {
        char stem[700];
        pre_select(k, true);
        write_data(g_data);
        write_good_model(g_model);
        snprintf(stem, sizeof stem, "%s/cmd", g_dir);
        job_prepare(&jobs[k], &g_pre[k].run[g_pre[k].n_runs++], 1, data_cases[k].args, stem);
    }
    if (jobs)
        jobs_run(jobs, g_n_pre);
    free(jobs);
}

START_TEST(test_bad_data)
{
    const data_case_t *c = &data_cases[_i];
    pre_result(_i, 0);
    if (c->parsed) {
        assert_usage_run(c->name);
    } else {
        char command[32];
        sscanf(c->args, "%31s", command);
        assert_failed_run(c->name, command, 1, c->status);
    }
    for (int k = 0; k < 3 && c->expect[k]; k++)
        assert_stderr_has(c->name, c->expect[k]);
    assert_no_crash(c->name);
    ck_assert_msg(strstr(g_run.err, "root:") == NULL && strstr(g_run.out, "root:") == NULL,
                  "%s: output shows bytes of /etc/passwd", c->name);
    assert_no_output(c->name, g_out);
}
END_TEST

/* A NaN only in rank 1's shard: rank 1 detects it, the ranks agree on the failure, rank 1's
 * message is printed and the job ends (a hang is killed after 60 s: status 137). compress fails
 * before writing; predict fails with its temporary output open, which must then be deleted. */
START_TEST(test_nan_on_rank_1)
{
    static const char *const commands[] = {
        "compress --model {M} --data {D}:/xnan_tail --out {O}",
        "predict --model {M} --data {D}:/xnan_tail --out {O}",
    };
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++) {
        char command[32];
        sscanf(commands[k], "%31s", command);
        run_linfold(2, commands[k]);
        assert_failed_run(commands[k], command, 2, 1);
        assert_stderr_has(commands[k],
                          "linfold: [rank 1/2] error: {D}:/xnan_tail: row 9, column 0 is NaN");
        ck_assert_msg(strstr(g_run.err, "[rank 0/2]") == NULL, "%s: rank 0 reported too:\n%s",
                      commands[k], g_run.err);
        assert_no_output(commands[k], g_out);
    }
}
END_TEST

/* ---------------------------------------------------------------- statistics files */

/* Each case breaks one figure of a valid statistics file (calibrate --output-sums on the fixture:
 * 10 samples; layer 1 is relu) and feeds it to compress --stats. */
typedef enum {
    S_SUM_NAN,     /* /layers/1/output_sum[0] = NaN */
    S_SUM_INF,     /* ... = +Inf */
    S_SUM_NEG,     /* ... = -1: a relu's outputs are >= 0 */
    S_ZMAX_NAN,    /* /layers/1/zmax[0] = NaN */
    S_ZMIN_ABOVE,  /* zmin[0] = 5 > zmax[0] = 4 */
    S_COUNT_BIG,   /* positive[0] = 11 of 10 samples */
    S_DISAGREE,    /* 1 positive and 1 negative row, but the range [1, 2] has no negative value */
    S_OTHER_MODEL, /* the model changed after calibration (one weight) */
} stats_defect_t;

typedef struct {
    const char *name;
    stats_defect_t defect;
    const char *expect[2];
} stats_case_t;

static const stats_case_t stats_cases[] = {
    {"NaN output sum", S_SUM_NAN, {"{S}: /layers/1/output_sum[0] is NaN"}},
    {"infinite output sum", S_SUM_INF, {"{S}: /layers/1/output_sum[0] is infinite"}},
    {"negative relu output sum",
     S_SUM_NEG,
     {"{S}: /layers/1/output_sum[0] = -1 is outside [0, ", "for a relu neuron"}},
    {"NaN extreme",
     S_ZMAX_NAN,
     {"{S}: /layers/1 neuron 0 has extremes zmin = ", "zmax = nan; expected finite, zmin <= zmax"}},
    {"zmin above zmax",
     S_ZMIN_ABOVE,
     {"{S}: /layers/1 neuron 0 has extremes zmin = 5, zmax = 4; expected finite, zmin <= zmax"}},
    {"more positive rows than samples",
     S_COUNT_BIG,
     {"{S}: /layers/1 neuron 0 has 11 positive and", "rows of 10 samples"}},
    {"counts disagree with the extremes",
     S_DISAGREE,
     {"{S}: /layers/1 neuron 0: counts 1 positive, 1 negative of 10 disagree with its range "
      "[1, 2]"}},
    {"statistics of another model",
     S_OTHER_MODEL,
     {"{S}: statistics were computed for another model"}},
};
enum { N_STATS_CASES = (int)(sizeof stats_cases / sizeof *stats_cases) };

/* Writes value (of mem_type) at [index] of the 1-D dataset dset in the file at path. */
static void h5_poke(const char *path, const char *dset, hid_t mem_type, hsize_t index,
                    const void *value)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_msg(file >= 0, "cannot open %s", path);
    hid_t d = H5Dopen2(file, dset, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "%s: no %s", path, dset);
    hid_t fspace = H5Dget_space(d);
    ck_assert_int_ge(H5Sselect_elements(fspace, H5S_SELECT_SET, 1, &index), 0);
    hsize_t one = 1;
    hid_t mspace = H5Screate_simple(1, &one, NULL);
    ck_assert_int_ge(H5Dwrite(d, mem_type, mspace, fspace, H5P_DEFAULT, value), 0);
    H5Sclose(mspace);
    H5Sclose(fspace);
    H5Dclose(d);
    ck_assert_int_ge(H5Fclose(file), 0);
}

static void break_stats(stats_defect_t d)
{
    const double nan_d = NAN, inf_d = INFINITY, minus_one = -1.0;
    const float nan_f = NAN;
    const int64_t one = 1, eleven = 11;
    const char *sum = "/layers/1/output_sum", *zmin = "/layers/1/zmin", *zmax = "/layers/1/zmax";
    switch (d) {
    case S_SUM_NAN: h5_poke(g_stats, sum, H5T_NATIVE_DOUBLE, 0, &nan_d); break;
    case S_SUM_INF: h5_poke(g_stats, sum, H5T_NATIVE_DOUBLE, 0, &inf_d); break;
    case S_SUM_NEG: h5_poke(g_stats, sum, H5T_NATIVE_DOUBLE, 0, &minus_one); break;
    case S_ZMAX_NAN: h5_poke(g_stats, zmax, H5T_NATIVE_FLOAT, 0, &nan_f); break;
    case S_ZMIN_ABOVE: {
        const float five = 5.0f, four = 4.0f;
        h5_poke(g_stats, zmin, H5T_NATIVE_FLOAT, 0, &five);
        h5_poke(g_stats, zmax, H5T_NATIVE_FLOAT, 0, &four);
        break;
    }
    case S_COUNT_BIG: h5_poke(g_stats, "/layers/1/positive", H5T_NATIVE_INT64, 0, &eleven); break;
    case S_DISAGREE: {
        const float lo = 1.0f, hi = 2.0f;
        h5_poke(g_stats, "/layers/1/positive", H5T_NATIVE_INT64, 0, &one);
        h5_poke(g_stats, "/layers/1/negative", H5T_NATIVE_INT64, 0, &one);
        h5_poke(g_stats, zmin, H5T_NATIVE_FLOAT, 0, &lo);
        h5_poke(g_stats, zmax, H5T_NATIVE_FLOAT, 0, &hi);
        break;
    }
    case S_OTHER_MODEL: {
        const float w = 0.125f;
        h5_poke(g_model, "/layers/0/bias", H5T_NATIVE_FLOAT, 0, &w);
        break;
    }
    }
}

/* Unchecked fixture of the "stats" TCase: one calibration, then a broken copy per case. */
static void stats_prerun(void)
{
    root_setup();
    pre_alloc(N_STATS_CASES);
    job_t *jobs = calloc(N_STATS_CASES, sizeof *jobs);
    char base[700];
    /* The valid statistics, in the directory of case 0, copied to every other case. */
    pre_select(0, true);
    write_data(g_data);
    write_good_model(g_model);
    run_linfold(1, "calibrate -q --output-sums --model {M} --data {D}:/x --out {S}");
    snprintf(base, sizeof base, "%s.valid", g_stats);
    size_t n = 0;
    unsigned char *valid = g_run.status == 0 ? slurp(g_stats, &n) : NULL;
    for (int k = 0; k < g_n_pre && jobs && valid; k++) {
        char stem[700];
        pre_select(k, true);
        write_data(g_data);
        write_good_model(g_model);
        spit(g_stats, valid, n);
        break_stats(stats_cases[k].defect);
        snprintf(stem, sizeof stem, "%s/cmd", g_dir);
        job_prepare(&jobs[k], &g_pre[k].run[g_pre[k].n_runs++], 1,
                    "compress --model {M} --stats {S} --prune-fraction 0.25 --out {O}", stem);
    }
    if (jobs && valid)
        jobs_run(jobs, g_n_pre);
    free(valid);
    free(jobs);
}

START_TEST(test_bad_stats)
{
    const stats_case_t *c = &stats_cases[_i];
    pre_result(_i, 0);
    assert_failed_run(c->name, "compress", 1, 1);
    for (int k = 0; k < 2 && c->expect[k]; k++)
        assert_stderr_has(c->name, c->expect[k]);
    assert_no_crash(c->name);
    assert_no_output(c->name, g_out);
}
END_TEST

/* The valid statistics behind the cases above are accepted: each failure is its defect's. */
START_TEST(test_valid_stats)
{
    run_linfold(1, "calibrate --output-sums --model {M} --data {D}:/x --out {S}");
    assert_ok_run("calibrate", "calibrate", 1);
    run_linfold(1, "compress --model {M} --stats {S} --prune-fraction 0.25 --out {O}");
    assert_ok_run("compress --stats", "compress", 1);
}
END_TEST

/* ---------------------------------------------------------------- usage errors */

typedef struct {
    const char *name;
    const char *args;
    const char *expect;
    const char *absent; /* must not appear in the message, or NULL */
} usage_case_t;

#define C_DATA "compress --model {M} --data {D}:/x "
#define C_BUDGET C_DATA "--max-accuracy-drop 0.1 --eval-data {D}:/x --eval-labels {D}:/y "

/* Each otherwise valid command names an output, so "no output file" is a real check. */
static const usage_case_t usage_cases[] = {
    {"unknown flag", C_DATA "--out {O} --bogus", "unknown option '--bogus'", NULL},
    {"unknown command", "frobnicate --model {M} --data {D}:/x --out {O}",
     "unknown command 'frobnicate'", NULL},
    {"missing --out", C_DATA, "missing required option --out", NULL},
    {"--out without value", C_DATA "--out", "--out needs a value", NULL},
    {"--out empty", C_DATA "--out=", "--out needs a non-empty value", NULL},
    {"flag of another command", "calibrate --model {M} --data {D}:/x --out {O} --threshold 0.5",
     "calibrate: unknown option '--threshold'", NULL},
    {"predict --threshold", "predict --model {M} --data {D}:/x --out {O} --threshold 0.5",
     "predict: unknown option '--threshold'", NULL},
    {"eval --out", "eval --model {M} --data {D}:/x --out {O}", "eval: unknown option '--out'",
     NULL},
    {"compress --json", C_DATA "--out {O} --json", "compress: unknown option '--json'", NULL},
    {"stray argument", "predict --model {M} --data {D}:/x --out {O} extra",
     "predict: unexpected argument 'extra'", NULL},
    {"inspect without file", "inspect", "missing the model file argument", NULL},
    {"inspect two files", "inspect {M} {M}", "inspect: unexpected argument", NULL},
    {"--data and --stats", "compress --model {M} --data {D}:/x --stats {S} --out {O}",
     "give exactly one of --data and --stats", NULL},
    {"bool flag with a value", C_DATA "--out {O} --quiet=1", "--quiet takes no value", NULL},

    /* Number flags say their own range: unparsable values and values outside it. */
    {"threshold abc", C_DATA "--out {O} --threshold abc",
     "--threshold expects a number in (0, 1], got 'abc'", NULL},
    {"threshold empty",
     C_DATA "--out {O} --threshold=", "--threshold expects a number in (0, 1], got ''", NULL},
    {"threshold nan", C_DATA "--out {O} --threshold nan",
     "--threshold expects a number in (0, 1], got 'nan'", NULL},
    {"threshold inf", C_DATA "--out {O} --threshold inf",
     "--threshold expects a number in (0, 1], got 'inf'", NULL},
    {"threshold 1e999", C_DATA "--out {O} --threshold 1e999",
     "--threshold expects a number in (0, 1], got '1e999'", NULL},
    {"threshold 0.5x", C_DATA "--out {O} --threshold 0.5x",
     "--threshold expects a number in (0, 1], got '0.5x'", NULL},
    {"threshold 1.5", C_DATA "--out {O} --threshold 1.5", "--threshold 1.5 is outside (0, 1]",
     NULL},
    {"threshold 0", C_DATA "--out {O} --threshold 0", "--threshold 0 is outside (0, 1]", NULL},
    {"threshold -0.5", C_DATA "--out {O} --threshold -0.5", "--threshold -0.5 is outside (0, 1]",
     NULL},
    {"prune-fraction abc", C_DATA "--out {O} --prune-fraction abc",
     "--prune-fraction expects a number in [0, 1), got 'abc'", NULL},
    {"prune-fraction 1", C_DATA "--out {O} --prune-fraction 1",
     "--prune-fraction 1 is outside [0, 1)", NULL},
    {"prune-fraction -0.1", C_DATA "--out {O} --prune-fraction -0.1",
     "--prune-fraction -0.1 is outside [0, 1)", NULL},
    {"target-ratio abc", C_DATA "--out {O} --target-ratio abc",
     "--target-ratio expects a number in (0, inf), got 'abc'", NULL},
    {"target-ratio 0", C_DATA "--out {O} --target-ratio 0", "--target-ratio 0 is outside (0, inf)",
     NULL},
    {"target-ratio -1", C_DATA "--out {O} --target-ratio -1",
     "--target-ratio -1 is outside (0, inf)", NULL},
    {"max-accuracy-drop abc", C_DATA "--out {O} --max-accuracy-drop abc",
     "--max-accuracy-drop expects a number in [0, 1], got 'abc'", NULL},
    {"max-accuracy-drop -1", C_DATA "--out {O} --max-accuracy-drop -1",
     "--max-accuracy-drop -1 is outside [0, 1]", NULL},
    {"max-accuracy-drop 1.5", C_DATA "--out {O} --max-accuracy-drop 1.5",
     "--max-accuracy-drop 1.5 is outside [0, 1]", NULL},
    {"confidence 1", C_BUDGET "--out {O} --confidence 1", "--confidence 1 is outside [0, 1)", NULL},
    {"confidence -0.5", C_BUDGET "--out {O} --confidence -0.5",
     "--confidence -0.5 is outside [0, 1)", NULL},
    {"batch 0", C_DATA "--out {O} --batch 0", "--batch expects a whole number >= 1, got '0'", NULL},
    {"batch abc", C_DATA "--out {O} --batch abc", "--batch expects a whole number >= 1, got 'abc'",
     NULL},
    {"batch 1.5", C_DATA "--out {O} --batch 1.5", "--batch expects a whole number >= 1, got '1.5'",
     NULL},
    {"batch 1e30", C_DATA "--out {O} --batch 99999999999999999999",
     "--batch expects a whole number >= 1, got '99999999999999999999'", NULL},
    {"sweep list", "compress --model {M} --data {D}:/x --sweep 1,x", "is not a comma-separated",
     NULL},
    {"sweep 0", "compress --model {M} --data {D}:/x --sweep 1,0", "--sweep: 0 is outside", NULL},
    {"search-fractions 1", C_BUDGET "--out {O} --search-fractions 0.1,1",
     "--search-fractions: 1 is outside [0, 1)", NULL},

    /* Rules and selections list exactly their own choices. */
    {"layer-rule foo", C_DATA "--out {O} --layer-rule foo",
     "--layer-rule 'foo' is not one of benefit, all, count:K, fraction:F", "greedy"},
    {"layer-rule greedy", C_DATA "--out {O} --layer-rule greedy",
     "--layer-rule 'greedy' is not one of benefit, all, count:K, fraction:F (greedy and optimal "
     "choose a set of layers: --select)",
     NULL},
    {"layer-rule count:abc", C_DATA "--out {O} --layer-rule count:abc",
     "count:K needs a whole number K >= 0", NULL},
    {"layer-rule count:-1", C_DATA "--out {O} --layer-rule count:-1",
     "count:K needs a whole number K >= 0", NULL},
    {"layer-rule fraction:1.5", C_DATA "--out {O} --layer-rule fraction:1.5",
     "fraction:F needs 0 <= F < 1", NULL},
    {"layer-rule fraction:abc", C_DATA "--out {O} --layer-rule fraction:abc",
     "fraction:F needs 0 <= F < 1", NULL},
    {"select foo", C_DATA "--out {O} --select foo", "--select 'foo' is not greedy or optimal",
     "benefit"},
    {"select all", C_DATA "--out {O} --select all", "--select 'all' is not greedy or optimal",
     "count:K"},
    {"layer-rule and select", C_DATA "--out {O} --layer-rule all --select greedy",
     "--layer-rule and --select exclude each other", NULL},
    {"prune-scope bogus", C_DATA "--out {O} --prune-scope net --prune-fraction 0.1",
     "--prune-scope 'net' is not layer or global", NULL},

    /* Search modes. */
    {"two modes", C_DATA "--out {O} --sweep 1 --target-ratio 0.5", "exclude each other", NULL},
    {"sweep-out alone", C_DATA "--out {O} --sweep-out {O}", "--sweep-out goes with --sweep", NULL},
    {"search-fractions alone", C_DATA "--out {O} --search-fractions 0.1",
     "--search-fractions goes with --max-accuracy-drop", NULL},
    {"confidence alone", C_DATA "--out {O} --confidence 0.9",
     "--confidence goes with --max-accuracy-drop", NULL},
    {"budget without data", C_DATA "--out {O} --max-accuracy-drop 0",
     "--max-accuracy-drop needs --eval-data and --eval-labels", NULL},
    {"eval data without a search", C_DATA "--out {O} --eval-data {D}:/x",
     "go with --sweep or --max-accuracy-drop", NULL},
    {"eval labels without eval data", C_DATA "--sweep 1 --eval-labels {D}:/y",
     "--eval-labels needs --eval-data", NULL},
    {"input-nonnegative alone", "inspect --input-nonnegative {M}",
     "--input-nonnegative goes with --provable", NULL},

    /* Flags the chosen mode would ignore. */
    {"threshold with sweep", C_DATA "--sweep 1,0.9 --threshold 0.5",
     "--threshold has no effect with --sweep", NULL},
    {"out with sweep", C_DATA "--sweep 1,0.9 --out {O}", "--out has no effect with --sweep", NULL},
    {"out and sweep-out with sweep", C_DATA "--sweep 1 --sweep-out {O} --out {O}",
     "--out has no effect with --sweep", NULL},
    {"threshold with target-ratio", C_DATA "--out {O} --target-ratio 0.5 --threshold 0.5",
     "--threshold has no effect with --target-ratio", NULL},
    {"threshold with budget", C_BUDGET "--out {O} --threshold 0.5",
     "--threshold has no effect with --max-accuracy-drop", NULL},
    {"prune-dead with budget", C_BUDGET "--out {O} --prune-dead",
     "--prune-dead has no effect with --max-accuracy-drop", NULL},
    {"prune-fraction with budget", C_BUDGET "--out {O} --prune-fraction 0.1",
     "--prune-fraction has no effect with --max-accuracy-drop: use --search-fractions", NULL},
    {"prune-scope with budget", C_BUDGET "--out {O} --prune-scope global",
     "--prune-scope has no effect with --max-accuracy-drop", NULL},
    {"prune-scope without prune-fraction", C_DATA "--out {O} --prune-scope global",
     "--prune-scope has no effect without a --prune-fraction above 0", NULL},
    {"batch with stats", "compress --model {M} --stats {S} --out {O} --batch 100",
     "--batch has no effect with --stats", NULL},
    {"progress with quiet", C_DATA "--out {O} --progress --quiet",
     "--progress has no effect with --quiet", NULL},
    {"progress with -q", C_DATA "--out {O} -q --progress", "--progress has no effect with --quiet",
     NULL},
    {"progress with no-progress", C_DATA "--out {O} --progress --no-progress",
     "--progress and --no-progress exclude each other", NULL},

    /* A flag given twice, in every spelling. */
    {"threshold twice", C_DATA "--out {O} --threshold 0.5 --threshold 0.6",
     "--threshold is given twice", NULL},
    {"threshold twice with =", C_DATA "--out {O} --threshold=0.5 --threshold 0.5",
     "--threshold is given twice", NULL},
    {"model twice", C_DATA "--out {O} --model {M}", "--model is given twice", NULL},
    {"out twice", C_DATA "--out {O} --out {O}", "--out is given twice", NULL},
    {"quiet twice", C_DATA "--out {O} -q --quiet", "--quiet is given twice", NULL},
    {"sweep-out twice", C_DATA "--sweep 1 --sweep-out {O} --sweep-out {O}",
     "--sweep-out is given twice", NULL},
};
enum { N_USAGE_CASES = (int)(sizeof usage_cases / sizeof *usage_cases) };

/* One test for the whole table: the cases run PARALLEL at a time (each is mostly MPI start-up),
 * then every case is checked and all failures are reported together. */
START_TEST(test_usage)
{
    run_t *runs = calloc(N_USAGE_CASES, sizeof *runs);
    job_t *jobs = calloc(N_USAGE_CASES, sizeof *jobs);
    char(*outs)[640] = calloc(N_USAGE_CASES, sizeof *outs);
    ck_assert(runs && jobs && outs);
    char saved_out[sizeof g_out];
    snprintf(saved_out, sizeof saved_out, "%s", g_out);
    for (int k = 0; k < N_USAGE_CASES; k++) {
        char stem[700];
        snprintf(outs[k], sizeof outs[k], "%s/OUT-%d.h5", g_dir, k);
        snprintf(g_out, sizeof g_out, "%s", outs[k]);
        snprintf(stem, sizeof stem, "%s/cmd-%d", g_dir, k);
        job_prepare(&jobs[k], &runs[k], 1, usage_cases[k].args, stem);
    }
    snprintf(g_out, sizeof g_out, "%s", saved_out);
    jobs_run(jobs, N_USAGE_CASES);
    free(jobs);

    char report[16384] = "";
    size_t used = 0;
    int failed = 0;
    for (int k = 0; k < N_USAGE_CASES; k++) {
        const usage_case_t *c = &usage_cases[k];
        const run_t *r = &runs[k];
        const char *problem = NULL;
        char want[1024];
        snprintf(g_out, sizeof g_out, "%s", outs[k]);
        expand(c->expect, want, sizeof want);
        char tmp_prefix[700];
        snprintf(tmp_prefix, sizeof tmp_prefix, "%s.tmp-", strrchr(outs[k], '/') + 1);
        bool leftover = false;
        DIR *d = opendir(g_dir);
        for (struct dirent *e; d && (e = readdir(d)) != NULL;)
            leftover |= strncmp(e->d_name, tmp_prefix, strlen(tmp_prefix)) == 0;
        if (d)
            closedir(d);
        if (r->status != 2)
            problem = "exit status is not 2";
        else if (!strstr(r->err, want))
            problem = "the message is missing";
        else if (c->absent && strstr(r->err, c->absent))
            problem = "the message names a choice that does not belong";
        else if (count_lines(r->err) != 1 || !is_error_line(r->err))
            problem = "stderr is not exactly one error line";
        else if (r->out[0] != '\0')
            problem = "stdout is not empty";
        else if (access(outs[k], F_OK) == 0 || leftover)
            problem = "an output or a temporary was written";
        if (problem) {
            failed++;
            int w = snprintf(report + used, sizeof report - used,
                             "\n[%s] %s (status %d)\n  want: %s\n  $ %s\n  stderr: %s", c->name,
                             problem, r->status, want, r->cmd, r->err);
            used = w > 0 && (size_t)w < sizeof report - used ? used + (size_t)w : sizeof report - 1;
        }
    }
    free(outs);
    free(runs);
    ck_assert_msg(failed == 0, "%d of %d usage cases failed:%s", failed, N_USAGE_CASES, report);
}
END_TEST

/* --verbose adds a traceback to any error, a usage error included; still one error line. */
START_TEST(test_usage_verbose)
{
    run_linfold(1, C_DATA "--out {O} --verbose --quiet");
    assert_status("verbose and quiet", 2);
    assert_stderr_has("verbose and quiet", "--verbose and --quiet exclude each other");
    ck_assert_msg(count_error_lines(g_run.err) == 1 && is_error_line(g_run.err),
                  "expected one error line first:\n%s", g_run.err);
    ck_assert_msg(count_lines_starting(g_run.err, "  ") == count_lines(g_run.err) - 1,
                  "every other line should be a traceback line:\n%s", g_run.err);
    assert_no_output("verbose and quiet", g_out);
}
END_TEST

static const char *const subcommands[] = {"compress", "calibrate", "eval", "predict", "inspect"};
enum { N_SUBCOMMANDS = (int)(sizeof subcommands / sizeof *subcommands) };

/* `linfold CMD --help` succeeds even without the required options and prints the synopsis. */
START_TEST(test_help)
{
    const char *cmd = subcommands[_i];
    char args[64], synopsis[64];
    snprintf(args, sizeof args, "%s --help", cmd);
    snprintf(synopsis, sizeof synopsis, "Usage: linfold %s", cmd);
    run_linfold(1, args);
    assert_status(args, 0);
    ck_assert_msg(strncmp(g_run.out, synopsis, strlen(synopsis)) == 0,
                  "%s: stdout does not start with the synopsis \"%s\":\n%s", args, synopsis,
                  g_run.out);
    ck_assert_msg(strstr(g_run.out, "Options:") && strstr(g_run.out, "--help"),
                  "%s: no option list:\n%s", args, g_run.out);
    ck_assert_msg(g_run.err[0] == '\0', "%s: wrote to stderr:\n%s", args, g_run.err);
}
END_TEST

START_TEST(test_top_level_help)
{
    run_linfold(1, "--help");
    assert_status("--help", 0);
    ck_assert_msg(strstr(g_run.out, "Usage:") != NULL, "stdout:\n%s", g_run.out);
    for (int k = 0; k < N_SUBCOMMANDS; k++) {
        char synopsis[64];
        snprintf(synopsis, sizeof synopsis, "linfold %s", subcommands[k]);
        ck_assert_msg(strstr(g_run.out, synopsis) != NULL, "no %s in:\n%s", synopsis, g_run.out);
    }
    ck_assert_msg(strstr(g_run.out, "128+N") != NULL && strstr(g_run.out, "143 SIGTERM") != NULL,
                  "the exit statuses are not documented:\n%s", g_run.out);
    ck_assert_msg(g_run.err[0] == '\0', "--help wrote to stderr:\n%s", g_run.err);
    /* Without a command the usage goes to stderr and the status says usage error. */
    run_linfold(1, "");
    assert_status("no command", 2);
    assert_stderr_has("no command", "Usage:");
}
END_TEST

/* ---------------------------------------------------------------- the log */

/* The header names the command line (arguments with odd characters quoted), ranks and nodes,
 * and SLURM's job and array task when they are set; the closing line gives the time. --quiet
 * leaves errors only: nothing on success, the one error line on failure. */
START_TEST(test_log_lines)
{
    char line[4096];
    run_linfold_env(1, "SLURM_JOB_ID=4242 SLURM_ARRAY_TASK_ID=7",
                    "compress --model {M} --data {D}:/x --out '{G}/out file.h5'");
    assert_ok_run("header", "compress", 1);
    linfold_line(g_run.err, 0, line, sizeof line);
    char want[2048];
    expand("| compress --model {M} --data {D}:/x --out '{G}/out file.h5' | 1 rank x ", want,
           sizeof want);
    ck_assert_msg(strstr(line, want) != NULL, "header lacks \"%s\":\n%s", want, line);
    const char *tail = " | SLURM job 4242 (array task 7)";
    ck_assert_msg(strlen(line) > strlen(tail) &&
                      strcmp(line + strlen(line) - strlen(tail), tail) == 0,
                  "header does not end with \"%s\":\n%s", tail, line);

    run_linfold_env(1, "SLURM_JOB_ID=4243", "inspect {M}");
    assert_ok_run("SLURM job without array", "inspect", 1);
    linfold_line(g_run.err, 0, line, sizeof line);
    ck_assert_msg(strcmp(line + strlen(line) - strlen(" | SLURM job 4243"), " | SLURM job 4243") ==
                      0,
                  "header:\n%s", line);

    run_linfold(2, "compress --model {M} --data {D}:/x --out {O}");
    assert_ok_run("two ranks", "compress", 2);
    ck_assert_msg(strstr(g_run.err, "SLURM") == NULL, "SLURM in the header without SLURM:\n%s",
                  g_run.err);

    run_linfold(1, "compress --quiet --model {M} --data {D}:/x --out {O}");
    assert_status("quiet success", 0);
    ck_assert_msg(g_run.err[0] == '\0', "--quiet success wrote to stderr:\n%s", g_run.err);
    ck_assert_msg(g_run.out[0] == '\0', "--quiet compress wrote to stdout:\n%s", g_run.out);

    /* A failed run leaves an existing output as it was. */
    size_t before_n = 0, after_n = 0;
    unsigned char *before = slurp(g_out, &before_n);
    run_linfold(1, "predict -q --model {M} --data {D}:/xnan --out {O}");
    assert_status("quiet failure", 1);
    ck_assert_msg(count_lines(g_run.err) == 1 && is_error_line(g_run.err),
                  "--quiet failure: expected the error line alone:\n%s", g_run.err);
    assert_stderr_has("quiet failure", "{D}:/xnan: row 7, column 2 is NaN");
    unsigned char *after = slurp(g_out, &after_n);
    ck_assert_msg(after_n == before_n && memcmp(before, after, before_n) == 0,
                  "a failed predict changed the existing %s", g_out);
    free(after);
    free(before);
    assert_no_temporaries("quiet failure");
}
END_TEST

/* ---------------------------------------------------------------- outputs and inputs */

typedef struct {
    const char *name;
    const char *args;
    const char *input; /* the file that must stay unchanged */
    const char *expect;
} same_file_case_t;

/* The other spellings: {G}/hard.h5 (hard link to the model), {G}/sym.h5 (symbolic link to it),
 * {G}/dlink.h5 (symbolic link to the data), ./model.h5 and ../{B}/model.h5 relative to the test
 * directory {G} (the test runs there; {B} is its name). {G}/eval.h5 is a copy of the data. */
static const same_file_case_t same_file_cases[] = {
    {"--out is --model", C_DATA "--out {M}", "{M}", "--out {M} is the same file as --model {M}"},
    {"--out is a hard link to --model", C_DATA "--out {G}/hard.h5", "{M}",
     "--out {G}/hard.h5 is the same file as --model {M}"},
    {"--out is a symlink to --model", C_DATA "--out {G}/sym.h5", "{M}",
     "--out {G}/sym.h5 is the same file as --model {M}"},
    {"--out is ./model.h5", "compress --model model.h5 --data {D}:/x --out ./model.h5", "{M}",
     "--out ./model.h5 is the same file as --model model.h5"},
    {"--out is --model via ..", "compress --model {M} --data {D}:/x --out ../{B}/model.h5", "{M}",
     "is the same file as --model {M}"},
    {"predict --out is --data", "predict --model {M} --data {D}:/x --out {D}", "{D}",
     "--out {D} is the same file as --data {D}"},
    {"calibrate --out is --data via a link",
     "calibrate --model {M} --data {D}:/x --out {G}/dlink.h5", "{D}",
     "--out {G}/dlink.h5 is the same file as --data {D}"},
    {"--sweep-out is --model", C_DATA "--sweep 1,0.9 --sweep-out {M}", "{M}",
     "--sweep-out {M} is the same file as --model {M}"},
    {"--sweep-out is --data", C_DATA "--sweep 1,0.9 --sweep-out ./data.h5", "{D}",
     "--sweep-out ./data.h5 is the same file as --data {D}"},
    {"--out is --eval-data",
     C_DATA "--max-accuracy-drop 0.1 --eval-data {G}/eval.h5:/x "
            "--eval-labels {G}/eval.h5:/y --out {G}/eval.h5",
     "{G}/eval.h5", "--out {G}/eval.h5 is the same file as --eval-data {G}/eval.h5"},
    {"--out is --stats", "compress --model {M} --stats {S} --out {S}", "{S}",
     "--out {S} is the same file as --stats {S}"},
};
enum { N_SAME_FILE_CASES = (int)(sizeof same_file_cases / sizeof *same_file_cases) };

/* Replaces {B} (the test directory's name) and then the usual fields. */
static void expand_same(const char *tmpl, char *buf, size_t cap)
{
    char with_base[2048] = "";
    const char *base = strrchr(g_dir, '/') + 1;
    size_t n = 0;
    for (const char *p = tmpl; *p && n + 1 < sizeof with_base; p++) {
        if (strncmp(p, "{B}", 3) == 0) {
            n += (size_t)snprintf(with_base + n, sizeof with_base - n, "%s", base);
            p += 2;
        } else {
            with_base[n++] = *p;
            with_base[n] = '\0';
        }
    }
    expand(with_base, buf, cap);
}

START_TEST(test_out_is_input)
{
    const same_file_case_t *c = &same_file_cases[_i];
    char hard[700], sym[700], dlink[700], input[700], args[2048], want[2048];
    ck_assert_int_eq(chdir(g_dir), 0);
    snprintf(hard, sizeof hard, "%s/hard.h5", g_dir);
    snprintf(sym, sizeof sym, "%s/sym.h5", g_dir);
    snprintf(dlink, sizeof dlink, "%s/dlink.h5", g_dir);
    ck_assert_int_eq(link(g_model, hard), 0);
    ck_assert_int_eq(symlink("model.h5", sym), 0);
    ck_assert_int_eq(symlink(g_data, dlink), 0);
    size_t data_n = 0;
    unsigned char *data = slurp(g_data, &data_n);
    char eval_copy[700];
    snprintf(eval_copy, sizeof eval_copy, "%s/eval.h5", g_dir);
    spit(eval_copy, data, data_n);
    free(data);
    if (strstr(c->args, "{S}")) {
        run_linfold(1, "calibrate --model {M} --data {D}:/x --out {S}");
        assert_ok_run("calibrate for --stats", "calibrate", 1);
    }
    expand(c->input, input, sizeof input);
    size_t before_n = 0, after_n = 0;
    unsigned char *before = slurp(input, &before_n);
    struct stat st0, st1;
    ck_assert_int_eq(stat(input, &st0), 0);

    expand_same(c->args, args, sizeof args);
    expand_same(c->expect, want, sizeof want);
    run_linfold(1, args);
    /* Checked after the run has started (the header names the run), before any work. */
    char command[32];
    sscanf(args, "%31s", command);
    assert_failed_run(c->name, command, 1, 2);
    ck_assert_msg(strstr(g_run.err, want) != NULL, "%s: stderr lacks \"%s\":\n%s", c->name, want,
                  g_run.err);
    ck_assert_msg(strstr(g_run.err, "refusing to overwrite an input") != NULL, "%s:\n%s", c->name,
                  g_run.err);

    unsigned char *after = slurp(input, &after_n);
    ck_assert_int_eq(stat(input, &st1), 0);
    ck_assert_msg(after_n == before_n && memcmp(before, after, before_n) == 0, "%s: %s changed",
                  c->name, input);
    ck_assert_msg(st0.st_ino == st1.st_ino && st0.st_mtim.tv_sec == st1.st_mtim.tv_sec &&
                      st0.st_mtim.tv_nsec == st1.st_mtim.tv_nsec,
                  "%s: %s was replaced or touched", c->name, input);
    free(after);
    free(before);
    /* The links are still links to the input, and nothing else appeared. */
    struct stat ls;
    ck_assert_int_eq(lstat(sym, &ls), 0);
    ck_assert(S_ISLNK(ls.st_mode));
    assert_no_temporaries(c->name);
}
END_TEST

/* An output whose directory is missing, or that is a directory, fails before any work: the
 * header, one error line, the closing line, nothing on stdout. */
START_TEST(test_out_directory_missing)
{
    static const char *const commands[] = {
        "compress --model {M} --data {D}:/x --out {G}/nodir/OUT.h5",
        "predict --model {M} --data {D}:/x --out {G}/nodir/OUT.h5",
        "compress --model {M} --data {D}:/x --sweep 1 --sweep-out {G}/nodir/sweep.csv",
    };
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++) {
        run_linfold(1, commands[k]);
        assert_status(commands[k], 1);
        assert_stderr_has(commands[k], "{G}/nodir/");
        assert_stderr_has(commands[k], "directory {G}/nodir does not exist");
        char command[32];
        sscanf(commands[k], "%31s", command);
        assert_failed_run(commands[k], command, 1, 1);
        ck_assert_msg(strstr(g_run.err, "rows in") == NULL, "%s: a pass ran:\n%s", commands[k],
                      g_run.err);
        ck_assert_msg(g_run.out[0] == '\0', "%s: stdout:\n%s", commands[k], g_run.out);
    }
    char nodir[700];
    snprintf(nodir, sizeof nodir, "%s/nodir", g_dir);
    ck_assert_msg(access(nodir, F_OK) != 0, "the missing directory was created");
    /* An output that names a directory is a usage error, also before any work. */
    run_linfold(1, "compress --model {M} --data {D}:/x --out {G}");
    assert_failed_run("--out is a directory", "compress", 1, 2);
    assert_stderr_has("--out is a directory", "is a directory, expected a file name");
}
END_TEST

/* An output directory that passes access(W_OK) but where no file can be created (/proc): the
 * temporary cannot be made, on any rank count. A hang here (ranks disagreeing on whether a
 * temporary exists) is killed after 20 s and shows as status 137. */
START_TEST(test_out_uncreatable)
{
    static const struct {
        int np;
        const char *args;
    } runs[] = {
        {1, "predict --model {M} --data {D}:/x --out /proc/linfold-test-cli.h5"},
        {2, "calibrate --model {M} --data {D}:/x --out /proc/linfold-test-cli.h5"},
        {2, "compress --model {M} --data {D}:/x --out /proc/linfold-test-cli.h5"},
        {2, "predict --model {M} --data {D}:/x --out /proc/linfold-test-cli.h5"},
    };
    g_timeout = 20;
    for (size_t k = 0; k < sizeof runs / sizeof *runs; k++) {
        char command[32];
        sscanf(runs[k].args, "%31s", command);
        run_linfold(runs[k].np, runs[k].args);
        assert_failed_run(runs[k].args, command, runs[k].np, 1);
        assert_stderr_has(runs[k].args, "/proc/linfold-test-cli.h5: cannot create a temporary "
                                        "file in /proc");
        assert_no_crash(runs[k].args);
    }
}
END_TEST

/* ---------------------------------------------------------------- the bundled model */

/* Folding is exact where the folded neurons are active, and pruned neurons were never active on
 * the calibration set; the bundled test split is expected to keep every prediction. eval --json
 * is one JSON object on one line, keys in a fixed order, reals in JSON's own notation
 * (jansson: 1.0, never 1). */
START_TEST(test_digits_compress_eval)
{
    run_linfold(1, "compress --model " DIGITS_DIR "/model.h5 --data " DIGITS_DIR
                   "/data.h5:/val/x --prune-dead --out {O}");
    assert_ok_run("compress digits", "compress", 1);
    ck_assert_msg(access(g_out, F_OK) == 0, "compress did not write %s", g_out);
    ck_assert_msg(strstr(g_run.out, "wrote") != NULL, "stdout:\n%s", g_run.out);

    run_linfold(1, "eval --json --model {O} --reference " DIGITS_DIR "/model.h5 --data " DIGITS_DIR
                   "/data.h5:/test/x --labels " DIGITS_DIR "/data.h5:/test/y");
    assert_ok_run("eval digits", "eval", 1);
    ck_assert_msg(count_lines(g_run.out) == 1 && g_run.out[0] == '{' &&
                      strcmp(g_run.out + strlen(g_run.out) - 2, "}\n") == 0,
                  "--json should print one JSON object on one line:\n%s", g_run.out);
    static const char *const keys[] = {
        "{\"samples\": 360, \"params\": ",
        ", \"correct\": ",
        ", \"accuracy\": 0.",
        ", \"reference_params\": 130378, ",
        "\"reference_correct\": ",
        ", \"reference_accuracy\": 0.",
        ", \"agree\": 360, \"top1_agreement\": 1.0, \"max_abs_diff\": "};
    const char *p = g_run.out;
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const char *at = strstr(p, keys[k]);
        ck_assert_msg(at != NULL, "eval --json lacks \"%s\" (in this order):\n%s", keys[k],
                      g_run.out);
        p = at + strlen(keys[k]);
    }
    /* Reals carry all 17 significant digits: accuracy 350/360. */
    ck_assert_msg(strstr(g_run.out, "\"accuracy\": 0.97222222222222221,") != NULL, "stdout:\n%s",
                  g_run.out);
}
END_TEST

/* Finite inputs whose forward pass overflows float32: the first infinite pre-activation is
 * named (row, layer, neuron), on the rank that holds the row. Row 3 of 5 is 1e37 everywhere; on
 * 2 ranks it is rank 1's (rows 3-4). On the digits model, layer 5 overflows first. */
START_TEST(test_forward_overflow)
{
    char path[700];
    snprintf(path, sizeof path, "%s/overflow.h5", g_dir);
    float x[5 * 64] = {0};
    for (int j = 0; j < 64; j++)
        x[3 * 64 + j] = 1e37f;
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(file, 0);
    hsize_t dims[2] = {5, 64};
    h5_f32(file, "x", 2, dims, x);
    ck_assert_int_ge(H5Fclose(file), 0);
    const char *message = "{G}/overflow.h5:/x: row 3: the pre-activation of layer 5, neuron 0 is "
                          "infinite although the inputs are finite";
    run_linfold(2, "predict --model " DIGITS_DIR "/model.h5 --data {G}/overflow.h5:/x --out {O}");
    assert_failed_run("predict, 2 ranks", "predict", 2, 1);
    assert_stderr_has("predict, 2 ranks", "linfold: [rank 1/2] error: ");
    assert_stderr_has("predict, 2 ranks", message);
    assert_no_output("predict, 2 ranks", g_out);
    run_linfold(1, "calibrate --model " DIGITS_DIR "/model.h5 --data {G}/overflow.h5:/x --out {O}");
    assert_failed_run("calibrate", "calibrate", 1, 1);
    assert_stderr_has("calibrate", message);
    assert_no_output("calibrate", g_out);
}
END_TEST

/* The per-layer table of `compress`: one row per layer. */
typedef struct {
    int layer;
    char act[32];
    long long neurons, linear, dead, folded, pruned, kept;
} table_row_t;

static int parse_table(const char *text, table_row_t *rows, int cap)
{
    int n = 0;
    for (const char *p = text; *p && n < cap;) {
        table_row_t r;
        if (sscanf(p, "%d %31s %lld %lld %lld %lld %lld %lld", &r.layer, r.act, &r.neurons,
                   &r.linear, &r.dead, &r.folded, &r.pruned, &r.kept) == 8)
            rows[n++] = r;
        const char *eol = strchr(p, '\n');
        if (!eol)
            break;
        p = eol + 1;
    }
    return n;
}

/* A threshold below 1/n: every neuron with a positive row is linear, and a neuron with none (a
 * dead one) never is. Before the fix, dead neurons counted as linear and the whole network
 * folded into one layer. With --layer-rule all, a layer disappears only when all its neurons are
 * linear; dead neurons are kept (no --prune-dead). */
START_TEST(test_tiny_threshold)
{
    run_linfold(1, "compress --threshold 1e-12 --layer-rule all --model " DIGITS_DIR
                   "/model.h5 --data " DIGITS_DIR "/data.h5:/val/x --out {O}");
    assert_ok_run("threshold 1e-12", "compress", 1);
    table_row_t rows[16];
    int n = parse_table(g_run.out, rows, 16);
    ck_assert_msg(n == 6, "expected 6 table rows, got %d:\n%s", n, g_run.out);
    int expected_layers = 0;
    for (int i = 0; i < n; i++) {
        const table_row_t *r = &rows[i];
        ck_assert_int_eq(r->layer, i);
        ck_assert_msg(r->folded + r->pruned + r->kept == r->neurons, "layer %d:\n%s", i, g_run.out);
        ck_assert_msg(r->pruned == 0, "layer %d pruned without --prune-dead:\n%s", i, g_run.out);
        if (i < n - 1) {
            ck_assert_msg(r->linear + r->dead == r->neurons,
                          "layer %d: at 1e-12 every neuron is linear or dead:\n%s", i, g_run.out);
            ck_assert_msg(r->folded == r->linear,
                          "layer %d: --layer-rule all folds every linear "
                          "neuron:\n%s",
                          i, g_run.out);
            /* Dead neurons are never folded: they stay, as kept. */
            ck_assert_msg(r->kept == r->dead && r->folded <= r->neurons - r->dead,
                          "layer %d: dead neurons counted as folded:\n%s", i, g_run.out);
        }
        expected_layers += !(i < n - 1 && r->linear == r->neurons);
    }
    char want[64];
    snprintf(want, sizeof want, "layers: 6 -> %d;", expected_layers);
    ck_assert_msg(strstr(g_run.out, want) != NULL, "expected \"%s\":\n%s", want, g_run.out);
    ck_assert_msg(expected_layers > 1, "the digits model has dead neurons in every layer:\n%s",
                  g_run.out);

    run_linfold(1, "inspect {O}");
    assert_ok_run("inspect", "inspect", 1);
    int layers = 0;
    ck_assert_msg(sscanf(strstr(g_run.out, ": ") ? strstr(g_run.out, ": ") + 2 : "", "%d layers",
                         &layers) == 1 &&
                      layers == expected_layers,
                  "inspect shows %d layers, expected %d:\n%s", layers, expected_layers, g_run.out);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static TCase *make_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_checked_fixture(tc, test_setup, test_teardown);
    /* Check's default of 4 s is too short for tests that start several MPI jobs. */
    tcase_set_timeout(tc, 120);
    return tc;
}

/* A TCase whose table is run in advance by prerun (see pre_case_t); its loop test checks the
 * results, so it needs no per-test directory. */
static TCase *make_prerun_tcase(const char *name, void (*prerun)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, prerun, pre_teardown);
    tcase_set_timeout(tc, 120);
    return tc;
}

static Suite *make_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = make_tcase("fixture");
    tcase_add_test(tc, test_valid_fixture);
    suite_add_tcase(s, tc);

    tc = make_prerun_tcase("model", model_prerun);
    tcase_add_loop_test(tc, test_bad_model, 0, N_MODEL_CASES);
    suite_add_tcase(s, tc);
    tc = make_tcase("model-np2");
    tcase_add_test(tc, test_bad_model_two_ranks);
    suite_add_tcase(s, tc);

    tc = make_prerun_tcase("data", data_prerun);
    tcase_add_loop_test(tc, test_bad_data, 0, N_DATA_CASES);
    suite_add_tcase(s, tc);
    tc = make_tcase("data-np2");
    tcase_add_test(tc, test_nan_on_rank_1);
    suite_add_tcase(s, tc);

    tc = make_prerun_tcase("stats", stats_prerun);
    tcase_add_loop_test(tc, test_bad_stats, 0, N_STATS_CASES);
    suite_add_tcase(s, tc);
    tc = make_tcase("stats-valid");
    tcase_add_test(tc, test_valid_stats);
    suite_add_tcase(s, tc);

    tc = make_tcase("usage");
    tcase_add_test(tc, test_usage);
    tcase_add_test(tc, test_usage_verbose);
    tcase_add_loop_test(tc, test_help, 0, N_SUBCOMMANDS);
    tcase_add_test(tc, test_top_level_help);
    suite_add_tcase(s, tc);

    tc = make_tcase("log");
    tcase_add_test(tc, test_log_lines);
    suite_add_tcase(s, tc);

    tc = make_tcase("outputs");
    tcase_add_loop_test(tc, test_out_is_input, 0, N_SAME_FILE_CASES);
    tcase_add_test(tc, test_out_directory_missing);
    tcase_add_test(tc, test_out_uncreatable);
    suite_add_tcase(s, tc);

    tc = make_tcase("digits");
    tcase_add_test(tc, test_digits_compress_eval);
    tcase_add_test(tc, test_tiny_threshold);
    tcase_add_test(tc, test_forward_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lf_test_run_serial(make_suite); }
