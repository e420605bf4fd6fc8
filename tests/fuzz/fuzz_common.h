/* Shared set-up of the libFuzzer targets in tests/fuzz (see docs/fuzzing.md).
 *
 * Each target is one process with one MPI rank (a singleton MPI_Init), the library's error record
 * reset and every HDF5 id checked closed after each input, and its input written to a file in a
 * private temporary directory, since the readers take paths. Nothing is printed unless an input
 * breaks a rule, and then the process aborts so that libFuzzer saves the input. */
#ifndef LF_FUZZ_COMMON_H
#define LF_FUZZ_COMMON_H

#include <hdf5.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "linfold/error.h"
#include "linfold/h5io.h"

/* Built-in sanitizer defaults, so that running a target by hand behaves like the replay test:
 * any UBSan report ends the run (libFuzzer then saves the input); leak detection is off because
 * MPI and HDF5 keep allocations for the life of the process; and a request above ASan's largest
 * allocation (1 TB) returns NULL, as malloc does in production, instead of aborting. Every
 * allocation that succeeds above -malloc_limit_mb is still reported by libFuzzer. The
 * environment (ASAN_OPTIONS, UBSAN_OPTIONS) overrides these. */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0:allocator_may_return_null=1"; }
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

static MPI_Comm lf_fuzz_comm = MPI_COMM_NULL;
static char lf_fuzz_dir[512];
static int lf_fuzz_verbose = 0;     /* LF_FUZZ_VERBOSE=1: print each reader's verdict (triage) */
static long lf_fuzz_cpu_limit = 10; /* LF_FUZZ_CPU_LIMIT: CPU seconds per input; 0: no limit */

/* The HDF5 id types a reader creates, and how many of each exist between inputs (the library's
 * predefined types and default property lists). */
static const H5I_type_t lf_fuzz_id_types[] = {H5I_FILE,    H5I_GROUP, H5I_DATATYPE,   H5I_DATASPACE,
                                              H5I_DATASET, H5I_ATTR,  H5I_GENPROP_LST};
static const char *const lf_fuzz_id_names[] = {"file",    "group",     "datatype",     "dataspace",
                                               "dataset", "attribute", "property list"};
#define LF_FUZZ_N_ID_TYPES (sizeof lf_fuzz_id_types / sizeof lf_fuzz_id_types[0])
static hsize_t lf_fuzz_id_base[LF_FUZZ_N_ID_TYPES];

static hsize_t lf_fuzz_id_count(H5I_type_t type)
{
    hsize_t n = 0;
    if (H5Inmembers(type, &n) < 0)
        n = 0;
    return n;
}

static void lf_fuzz_remove_dir(void)
{
    if (lf_fuzz_dir[0])
        rmdir(lf_fuzz_dir);
}

/* Reports a broken rule with the library's error record, then aborts (libFuzzer saves the input). */
__attribute__((noreturn, format(printf, 1, 2))) static void lf_fuzz_die(const char *fmt, ...);
static void lf_fuzz_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    lf_error_print(true);
    fflush(stderr);
    abort();
}

/* An input that has used LF_FUZZ_CPU_LIMIT seconds of CPU time is a hang. libFuzzer's own
 * -timeout counts wall time, which a loaded machine stretches a hundredfold (a 70 ms input has
 * taken 24 s), so the hang criterion is CPU time and -timeout is only the backstop for an input
 * that blocks without spinning. Aborting makes libFuzzer save the input. */
static void lf_fuzz_on_cpu_limit(int sig)
{
    (void)sig;
    static const char msg[] = "fuzz: the input used more CPU time than LF_FUZZ_CPU_LIMIT "
                              "allows (a hang)\n";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    abort();
}

static void lf_fuzz_set_cpu_timer(long seconds)
{
    struct itimerval t = {.it_interval = {0, 0}, .it_value = {seconds, 0}};
    setitimer(ITIMER_PROF, &t, NULL);
}

/* MPI singleton, HDF5 quiet, one rank for the error record, a private temporary directory. */
static void lf_fuzz_setup(void)
{
    /* Open MPI installs handlers for these signals that print its own backtrace; give them back
     * to the sanitizers and libFuzzer, which report the crash and save the input. */
    static const int signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    struct sigaction saved[sizeof signals / sizeof signals[0]];
    for (size_t k = 0; k < sizeof signals / sizeof signals[0]; k++)
        sigaction(signals[k], NULL, &saved[k]);
    /* The threads MPI and libFuzzer start inherit a blocked SIGPROF; the first input unblocks
     * it in this thread only, so that the CPU time limit is delivered here and its report shows
     * where the input was spinning. */
    sigset_t prof;
    sigemptyset(&prof);
    sigaddset(&prof, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &prof, NULL);
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized && MPI_Init(NULL, NULL) != MPI_SUCCESS)
        lf_fuzz_die("MPI_Init failed");
    for (size_t k = 0; k < sizeof signals / sizeof signals[0]; k++)
        sigaction(signals[k], &saved[k], NULL);
    if (MPI_Comm_dup(MPI_COMM_WORLD, &lf_fuzz_comm) != MPI_SUCCESS)
        lf_fuzz_die("MPI_Comm_dup failed");
    MPI_Comm_set_errhandler(lf_fuzz_comm, MPI_ERRORS_RETURN);
    lf_h5io_init();
    lf_error_set_rank(0, 1);
    const char *verbose = getenv("LF_FUZZ_VERBOSE");
    lf_fuzz_verbose = verbose && verbose[0] && strcmp(verbose, "0") != 0;
    const char *cpu = getenv("LF_FUZZ_CPU_LIMIT");
    if (cpu && cpu[0])
        lf_fuzz_cpu_limit = strtol(cpu, NULL, 10);
    struct sigaction on_limit;
    memset(&on_limit, 0, sizeof on_limit);
    on_limit.sa_handler = lf_fuzz_on_cpu_limit;
    sigemptyset(&on_limit.sa_mask);
    sigaction(SIGPROF, &on_limit, NULL);
    /* A private directory, or LF_FUZZ_TMPDIR when replay.sh gives one: the same path on every
     * run keeps the mutants reproducible, since file names reach string comparisons whose
     * operands libFuzzer collects for its mutations. */
    const char *fixed = getenv("LF_FUZZ_TMPDIR");
    if (fixed && fixed[0]) {
        snprintf(lf_fuzz_dir, sizeof lf_fuzz_dir, "%s", fixed);
    } else {
        const char *base = getenv("TMPDIR");
        if (!base || !base[0])
            base = "/tmp";
        snprintf(lf_fuzz_dir, sizeof lf_fuzz_dir, "%s/lf-fuzz-XXXXXX", base);
        if (!mkdtemp(lf_fuzz_dir)) {
            lf_fuzz_dir[0] = '\0';
            lf_fuzz_die("cannot create a temporary directory under %s", base);
        }
        /* No MPI_Finalize: libFuzzer leaves through exit() from several places, and the
         * process holds no MPI state that outlives it. */
        atexit(lf_fuzz_remove_dir);
    }
    for (size_t k = 0; k < LF_FUZZ_N_ID_TYPES; k++)
        lf_fuzz_id_base[k] = lf_fuzz_id_count(lf_fuzz_id_types[k]);
}

/* Fills buf with the path of `name` in the private directory. */
static void lf_fuzz_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", lf_fuzz_dir, name);
}

static void lf_fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        lf_fuzz_die("cannot create %s", path);
    if (size && fwrite(data, 1, size, f) != size)
        lf_fuzz_die("cannot write %s", path);
    if (fclose(f) != 0)
        lf_fuzz_die("cannot close %s", path);
}

/* Passes err through; with LF_FUZZ_VERBOSE prints "what: accepted" or the error record. */
static lf_err_t lf_fuzz_verdict(const char *what, lf_err_t err)
{
    if (lf_fuzz_verbose) {
        if (err == LF_OK)
            fprintf(stderr, "fuzz: %s: accepted\n", what);
        else {
            fprintf(stderr, "fuzz: %s: rejected: ", what);
            lf_error_print(false);
        }
    }
    return err;
}

/* Before every input: starts the CPU time limit. */
static void lf_fuzz_begin_input(void)
{
    static int unblocked = 0;
    if (!unblocked) {
        sigset_t prof;
        sigemptyset(&prof);
        sigaddset(&prof, SIGPROF);
        pthread_sigmask(SIG_UNBLOCK, &prof, NULL);
        unblocked = 1;
    }
    if (lf_fuzz_cpu_limit > 0)
        lf_fuzz_set_cpu_timer(lf_fuzz_cpu_limit);
}

/* After every input: no HDF5 id is left open by the reader (an open file would also be found
 * again by the next input's open), and the error record is forgotten: it is per process and keeps
 * the first failure. */
static void lf_fuzz_end_input(void)
{
    lf_fuzz_set_cpu_timer(0);
    for (size_t k = 0; k < LF_FUZZ_N_ID_TYPES; k++) {
        hsize_t n = lf_fuzz_id_count(lf_fuzz_id_types[k]);
        if (n > lf_fuzz_id_base[k])
            lf_fuzz_die("%llu HDF5 %s id(s) left open after the input",
                        (unsigned long long)(n - lf_fuzz_id_base[k]), lf_fuzz_id_names[k]);
    }
    lf_error_clear();
    H5Eclear2(H5E_DEFAULT);
}

#endif /* LF_FUZZ_COMMON_H */
