/* Subcommands and flag parsing.
 *
 * One table describes every flag; each subcommand names the flags it accepts, so `--help` text,
 * parsing and validation come from the same place. Values are validated before any file is
 * opened. Every stage below is collective on the command's communicator. */
#include "linfold/cli.h"

#include "cli_impl.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build_info.h"
#include "linfold/alloc.h"
#include "linfold/batch.h"
#include "linfold/blas.h"
#include "linfold/comm.h"
#include "linfold/eval.h"
#include "linfold/fold.h"
#include "linfold/h5io.h"
#include "linfold/log.h"
#include "linfold/model.h"
#include "linfold/plan.h"
#include "linfold/pool.h"
#include "linfold/stats.h"

typedef enum { F_STRING, F_DOUBLE, F_INT, F_BOOL } flag_kind_t;

enum {
    M_MODEL = 1 << 0, M_DATA = 1 << 1, M_LABELS = 1 << 2, M_STATS = 1 << 3, M_OUT = 1 << 4,
    M_REFERENCE = 1 << 5, M_THRESHOLD = 1 << 6, M_RULE = 1 << 7, M_PRUNE = 1 << 8,
    M_JSON = 1 << 9, M_BATCH = 1 << 10, M_COMMON = 1 << 11, M_SUMS = 1 << 12,
    M_SEARCH = 1 << 13, M_PROVABLE = 1 << 14,
};

typedef struct {
    const char *name;
    flag_kind_t kind;
    size_t offset;
    unsigned group;
    const char *arg, *help;
} flag_t;

#define OFF(field) offsetof(lf__cli_opts_t, field)
static const flag_t flags[] = {
    {"--model", F_STRING, OFF(model), M_MODEL, "IN.h5", "model file (format v1)"},
    {"--data", F_STRING, OFF(data), M_DATA, "F.h5:/x", "samples, 2-D float dataset (n, d)"},
    {"--labels", F_STRING, OFF(labels), M_LABELS, "F.h5:/y", "labels, 1-D integer dataset (n)"},
    {"--stats", F_STRING, OFF(stats), M_STATS, "STATS.h5", "statistics from `linfold calibrate`"},
    {"--out", F_STRING, OFF(out), M_OUT, "OUT.h5", "output file (written atomically)"},
    {"--reference", F_STRING, OFF(reference), M_REFERENCE, "ORIG.h5",
     "compare outputs with this model"},
    {"--threshold", F_DOUBLE, OFF(threshold), M_THRESHOLD, "T",
     "activation rate at which a neuron is linear, in (0, 1] (default 1.0)"},
    {"--layer-rule", F_STRING, OFF(layer_rule), M_RULE, "R",
     "which layers fold: benefit (default), all, count:K or fraction:F"},
    {"--select", F_STRING, OFF(select), M_RULE, "S",
     "choose the set of layers to fold: greedy, or optimal (fewest parameters, exact)"},
    {"--prune-fraction", F_DOUBLE, OFF(prune_fraction), M_RULE, "P",
     "first remove this share of hidden neurons with the lowest activation rates, adding their "
     "mean outputs to the next biases"},
    {"--prune-scope", F_STRING, OFF(prune_scope), M_RULE, "layer|global",
     "--prune-fraction per layer (default) or over the whole network at once"},
    {"--sweep", F_STRING, OFF(sweep_text), M_SEARCH, "T1,T2,...",
     "one calibration, one row per threshold (no model written)"},
    {"--sweep-out", F_STRING, OFF(sweep_out), M_SEARCH, "F.csv", "also write the sweep as CSV"},
    {"--target-ratio", F_DOUBLE, OFF(target_ratio), M_SEARCH, "R",
     "the largest threshold whose model has at most R x the original parameters"},
    {"--max-accuracy-drop", F_DOUBLE, OFF(max_drop), M_SEARCH, "D",
     "the smallest model within D of the original accuracy on --eval-data/--eval-labels"},
    {"--search-fractions", F_STRING, OFF(fractions_text), M_SEARCH, "P1,P2,...",
     "importance-pruning shares the accuracy search tries (default: the largest share within "
     "the budget, found by bisection, and 0.05 and 0.10 below it)"},
    {"--eval-data", F_STRING, OFF(eval_data), M_SEARCH, "F.h5:/x",
     "evaluation samples for --sweep and --max-accuracy-drop"},
    {"--eval-labels", F_STRING, OFF(eval_labels), M_SEARCH, "F.h5:/y", "evaluation labels"},
    {"--prune-dead", F_BOOL, OFF(prune_dead), M_PRUNE, NULL,
     "also remove relu neurons never active on the calibration data"},
    {"--json", F_BOOL, OFF(json), M_JSON, NULL, "print one JSON object on stdout"},
    {"--provable", F_BOOL, OFF(provable), M_PROVABLE, NULL,
     "list neurons linear on every input: weights and bias >= 0 on non-negative inputs"},
    {"--input-nonnegative", F_BOOL, OFF(input_nonnegative), M_PROVABLE, NULL,
     "with --provable: the model input is known to be >= 0"},
    {"--output-sums", F_BOOL, OFF(output_sums), M_SUMS, NULL,
     "also record exact sums of every neuron's outputs (for --prune-fraction later; slower)"},
    {"--batch", F_INT, OFF(batch), M_BATCH, "N", "rows per batch (default 1024)"},
    {"--progress", F_BOOL, OFF(progress), M_COMMON, NULL,
     "progress lines on stderr (default when stderr is a terminal)"},
    {"--no-progress", F_BOOL, OFF(no_progress), M_COMMON, NULL, "no progress lines"},
    {"--verbose", F_BOOL, OFF(verbose), M_COMMON, NULL, "debug messages (also -v)"},
    {"--quiet", F_BOOL, OFF(quiet), M_COMMON, NULL, "errors only (also -q)"},
    {"--help", F_BOOL, OFF(help), M_COMMON, NULL, "this text (also -h)"},
};
#undef OFF

typedef lf_err_t (*command_fn)(MPI_Comm comm, const lf__cli_opts_t *o);

typedef struct {
    const char *name;
    unsigned accepts, requires;
    const char *synopsis, *summary;
    command_fn run;
    bool positional_file;
} command_t;


static const command_t commands[] = {
    {"compress",
     M_MODEL | M_DATA | M_STATS | M_OUT | M_THRESHOLD | M_RULE | M_PRUNE | M_BATCH | M_SEARCH,
     M_MODEL,
     "linfold compress --model IN.h5 (--data F.h5:/x | --stats STATS.h5) [--threshold T]\n"
     "                 [--layer-rule R | --select S] [--prune-dead] [--prune-fraction P]\n"
     "                 [--sweep LIST [--sweep-out F.csv] | --target-ratio R |\n"
     "                  --max-accuracy-drop D] [--eval-data F.h5:/x --eval-labels F.h5:/y]\n"
     "                 --out OUT.h5",
     "Fold neurons that are linear on the calibration data into skip connections and print a\n"
     "per-layer summary. --sweep, --target-ratio and --max-accuracy-drop search over plans\n"
     "computed from one calibration.",
     lf__cmd_compress, false},
    {"calibrate", M_MODEL | M_DATA | M_OUT | M_BATCH | M_SUMS, M_MODEL | M_DATA | M_OUT,
     "linfold calibrate --model IN.h5 --data F.h5:/x [--output-sums] --out STATS.h5",
     "Record per-neuron activation statistics over the calibration data.", lf__cmd_calibrate, false},
    {"eval", M_MODEL | M_DATA | M_LABELS | M_REFERENCE | M_JSON | M_BATCH, M_MODEL | M_DATA,
     "linfold eval --model M.h5 --data F.h5:/x [--labels F.h5:/y] [--reference ORIG.h5] [--json]",
     "Accuracy, and with a reference model top-1 agreement and the largest output difference.",
     lf__cmd_eval, false},
    {"predict", M_MODEL | M_DATA | M_OUT | M_BATCH, M_MODEL | M_DATA | M_OUT,
     "linfold predict --model M.h5 --data F.h5:/x --out PRED.h5",
     "Write the model's outputs as /outputs (n, n_out), rows in dataset order.", lf__cmd_predict,
     false},
    {"inspect", M_PROVABLE, 0, "linfold inspect [--provable [--input-nonnegative]] M.h5",
     "Print layers, activations, skip blocks and parameter counts.", lf__cmd_inspect, true},
};

static void print_usage(FILE *f)
{
    fprintf(f, "linfold %s (%s): linearity-based compression of MLPs\n\nUsage:\n", LF_VERSION,
            LF_GIT_HASH);
    for (size_t c = 0; c < sizeof commands / sizeof *commands; c++)
        fprintf(f, "  %s\n", commands[c].synopsis);
    fprintf(f, "\nRun under mpirun/srun to shard the data over ranks. `linfold COMMAND --help` "
               "for details.\n");
}

static void print_command_help(const command_t *c)
{
    printf("Usage: %s\n\n%s\n\nOptions:\n", c->synopsis, c->summary);
    for (size_t k = 0; k < sizeof flags / sizeof *flags; k++) {
        if (!(flags[k].group & (c->accepts | M_COMMON)))
            continue;
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", flags[k].name, flags[k].arg ? " " : "",
                 flags[k].arg ? flags[k].arg : "");
        printf("  %-24s %s%s\n", left, flags[k].help,
               (flags[k].group & c->requires) ? " [required]" : "");
    }
}

static lf_err_t parse_number(const flag_t *f, const char *text, lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    char *end = NULL;
    errno = 0;
    if (f->kind == F_DOUBLE) {
        double v = strtod(text, &end);
        /* Every number flag is a threshold, share, ratio or drop: finite and >= 0. */
        LF_CHECK(*text && *end == '\0' && errno == 0 && isfinite(v) && v >= 0.0, LF_ERR_USAGE,
                 "%s expects a number >= 0, got '%s'", f->name, text);
        *(double *)((char *)o + f->offset) = v;
    } else {
        long long v = strtoll(text, &end, 10);
        LF_CHECK(*text && *end == '\0' && errno == 0 && v >= 1, LF_ERR_USAGE,
                 "%s expects a whole number >= 1, got '%s'", f->name, text);
        *(int64_t *)((char *)o + f->offset) = v;
    }
cleanup:
    return err;
}

/* "0.9,0.95,1" into values within [lo, hi] (hi_open: below hi). */
static lf_err_t parse_list(const char *flag, const char *text, double lo, double hi, bool hi_open,
                           double *values, int *n)
{
    lf_err_t err = LF_OK;
    const char *p = text;
    *n = 0;
    while (*p) {
        char *end = NULL;
        errno = 0;
        double v = strtod(p, &end);
        LF_CHECK(end != p && errno == 0 && (*end == ',' || *end == '\0'), LF_ERR_USAGE,
                 "%s: '%s' is not a comma-separated list of numbers", flag, text);
        LF_CHECK(v >= lo && (hi_open ? v < hi : v <= hi) && (lo > 0 || v >= 0), LF_ERR_USAGE,
                 "%s: %g is outside %s%g, %g%s", flag, v, "[", lo, hi, hi_open ? ")" : "]");
        LF_CHECK(*n < LF_CLI_LIST_MAX, LF_ERR_USAGE, "%s: more than %d values", flag,
                 LF_CLI_LIST_MAX);
        values[(*n)++] = v;
        p = *end == ',' ? end + 1 : end;
    }
    LF_CHECK(*n > 0, LF_ERR_USAGE, "%s needs at least one value", flag);
cleanup:
    return err;
}

/* The combinations of compress options that make sense; parsed lists go into o. */
static lf_err_t check_compress(lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    LF_CHECK((o->data != NULL) != (o->stats != NULL), LF_ERR_USAGE,
             "compress: give exactly one of --data and --stats");
    LF_CHECK(!(o->select && o->layer_rule), LF_ERR_USAGE,
             "--layer-rule and --select exclude each other");
    LF_CHECK(!o->select || strcmp(o->select, "greedy") == 0 || strcmp(o->select, "optimal") == 0,
             LF_ERR_USAGE, "--select '%s' is not greedy or optimal", o->select);
    LF_CHECK(o->prune_fraction >= 0.0 && o->prune_fraction < 1.0, LF_ERR_USAGE,
             "--prune-fraction %g is outside [0, 1)", o->prune_fraction);
    LF_CHECK(!o->prune_scope || strcmp(o->prune_scope, "layer") == 0 ||
                 strcmp(o->prune_scope, "global") == 0,
             LF_ERR_USAGE, "--prune-scope '%s' is not layer or global", o->prune_scope);
    int modes = (o->sweep_text != NULL) + (o->target_ratio >= 0) + (o->max_drop >= 0);
    LF_CHECK(modes <= 1, LF_ERR_USAGE,
             "--sweep, --target-ratio and --max-accuracy-drop exclude each other");
    LF_CHECK(o->sweep_text || o->out, LF_ERR_USAGE, "compress: missing required option --out OUT.h5");
    LF_CHECK(!o->sweep_out || o->sweep_text, LF_ERR_USAGE, "--sweep-out goes with --sweep");
    LF_CHECK(!o->fractions_text || o->max_drop >= 0, LF_ERR_USAGE,
             "--search-fractions goes with --max-accuracy-drop");
    LF_CHECK(!(o->eval_data || o->eval_labels) || o->sweep_text || o->max_drop >= 0,
             LF_ERR_USAGE, "--eval-data and --eval-labels go with --sweep or --max-accuracy-drop");
    LF_CHECK(!o->eval_labels || o->eval_data, LF_ERR_USAGE, "--eval-labels needs --eval-data");
    LF_CHECK(o->max_drop < 0 || (o->eval_data && o->eval_labels), LF_ERR_USAGE,
             "--max-accuracy-drop needs --eval-data and --eval-labels");
    LF_CHECK(o->target_ratio < 0 || o->target_ratio > 0, LF_ERR_USAGE,
             "--target-ratio must be > 0");
    if (o->sweep_text)
        LF_CALL(parse_list("--sweep", o->sweep_text, 1e-12, 1.0, false, o->sweep, &o->n_sweep));
    if (o->fractions_text)
        LF_CALL(parse_list("--search-fractions", o->fractions_text, 0.0, 1.0, true, o->fractions,
                           &o->n_fractions));
cleanup:
    return err;
}

static lf_err_t parse_args(const command_t *c, int argc, char **argv, lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    for (int k = 2; k < argc; k++) {
        const char *arg = argv[k];
        if (strcmp(arg, "-h") == 0)
            arg = "--help";
        else if (strcmp(arg, "-v") == 0)
            arg = "--verbose";
        else if (strcmp(arg, "-q") == 0)
            arg = "--quiet";
        if (arg[0] != '-' || arg[1] == '\0') {
            LF_CHECK(c->positional_file && !o->file, LF_ERR_USAGE,
                     "%s: unexpected argument '%s'", c->name, arg);
            o->file = arg;
            continue;
        }
        const char *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const flag_t *f = NULL;
        for (size_t t = 0; t < sizeof flags / sizeof *flags; t++)
            if (strlen(flags[t].name) == len && strncmp(flags[t].name, arg, len) == 0)
                f = &flags[t];
        LF_CHECK(f && (f->group & (c->accepts | M_COMMON)), LF_ERR_USAGE,
                 "%s: unknown option '%.*s' (see linfold %s --help)", c->name, (int)len, arg,
                 c->name);
        if (f->kind == F_BOOL) {
            LF_CHECK(!eq, LF_ERR_USAGE, "%s takes no value", f->name);
            *(bool *)((char *)o + f->offset) = true;
            continue;
        }
        const char *value = eq ? eq + 1 : (k + 1 < argc ? argv[++k] : NULL);
        LF_CHECK(value != NULL, LF_ERR_USAGE, "%s needs a value (%s)", f->name, f->arg);
        if (f->kind == F_STRING) {
            LF_CHECK(value[0] != '\0', LF_ERR_USAGE, "%s needs a non-empty value", f->name);
            *(const char **)((char *)o + f->offset) = value;
        } else {
            LF_CALL(parse_number(f, value, o));
        }
    }
    if (o->help)
        return LF_OK;
    for (size_t t = 0; t < sizeof flags / sizeof *flags; t++)
        if (flags[t].group & c->requires) {
            const char *v = *(const char **)((char *)o + flags[t].offset);
            LF_CHECK(v != NULL, LF_ERR_USAGE, "%s: missing required option %s %s", c->name,
                     flags[t].name, flags[t].arg);
        }
    LF_CHECK(!c->positional_file || o->file, LF_ERR_USAGE, "%s: missing the model file argument",
             c->name);
    LF_CHECK(o->threshold > 0.0 && o->threshold <= 1.0, LF_ERR_USAGE,
             "--threshold %g is outside (0, 1]", o->threshold);
    LF_CHECK(!(o->verbose && o->quiet), LF_ERR_USAGE, "--verbose and --quiet exclude each other");
    if (strcmp(c->name, "compress") == 0)
        LF_CALL(check_compress(o));
    LF_CHECK(o->provable || !o->input_nonnegative, LF_ERR_USAGE,
             "--input-nonnegative goes with --provable");
    /* Dataset specs are checked here, before any file is opened. */
    const char *specs[] = {o->data, o->labels, o->eval_data, o->eval_labels};
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++)
        if (specs[k]) {
            char file[4096], obj[1024];
            LF_CALL(lf_h5io_split_spec(specs[k], file, sizeof file, obj, sizeof obj));
        }
cleanup:
    return err;
}

static int compute_threads = 1; /* set once per command by lf_cli_main */

lf_batch_opts_t lf__cli_batch_opts(const lf__cli_opts_t *o, const char *what)
{
    bool progress = o->progress || (!o->no_progress && !o->quiet && isatty(STDERR_FILENO));
    return (lf_batch_opts_t){
        .batch_rows = o->batch, .threads = compute_threads, .progress = progress, .what = what};
}

int lf__cli_rank(MPI_Comm comm)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    return rank;
}

static int status_of(MPI_Comm comm, lf_err_t err, const lf__cli_opts_t *o)
{
    if (err == LF_OK)
        return 0;
    lf_comm_report_error(comm, err, o->verbose);
    return err == LF_ERR_USAGE ? 2 : 1;
}

/* ---------------------------------------------------------------- entry */

/* Peak resident memory over the ranks, for SLURM logs and the streaming test. Collective. */
static void log_peak_memory(MPI_Comm comm)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct {
        double mib;
        int rank;
    } mine = {(double)ru.ru_maxrss / 1024.0, lf__cli_rank(comm)}, hi, lo;
    MPI_Allreduce(&mine, &hi, 1, MPI_DOUBLE_INT, MPI_MAXLOC, comm);
    MPI_Allreduce(&mine, &lo, 1, MPI_DOUBLE_INT, MPI_MINLOC, comm);
    lf_log(LF_LOG_DEBUG, comm, "peak memory per rank: max %.1f MiB (rank %d), min %.1f MiB (rank %d)",
           hi.mib, hi.rank, lo.mib, lo.rank);
}

int lf_cli_main(MPI_Comm comm, int argc, char **argv)
{
    int rank = lf__cli_rank(comm);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (rank == 0)
            print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        if (rank == 0)
            printf("linfold %s (%s)\n", LF_VERSION, LF_GIT_HASH);
        return 0;
    }
    const command_t *c = NULL;
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
        if (strcmp(argv[1], commands[k].name) == 0)
            c = &commands[k];
    if (!c) {
        if (rank == 0)
            fprintf(stderr, "linfold: error: unknown command '%s' (expected compress, calibrate, "
                            "eval, predict or inspect; see linfold --help) (LF_ERR_USAGE)\n",
                    argv[1]);
        return 2;
    }
    lf__cli_opts_t o = {.threshold = 1.0, .batch = 1024, .target_ratio = -1.0, .max_drop = -1.0};
    lf_err_t err = parse_args(c, argc, argv, &o);
    if (err != LF_OK)
        return status_of(comm, err, &o);
    if (o.help) {
        if (rank == 0)
            print_command_help(c);
        return 0;
    }
    lf_log_set_level(o.quiet ? LF_LOG_ERROR : (o.verbose ? LF_LOG_DEBUG : LF_LOG_INFO));
    lf_pool_serial_blas();
    err = lf_pool_default_threads(comm, &compute_threads);
    if (err != LF_OK)
        return status_of(comm, err, &o);
    lf_log_rank(LF_LOG_DEBUG, comm,
                "%d compute thread%s; BLAS kernel %s (chosen by %s; CPU supports %s), "
                "single-threaded per block",
                compute_threads, compute_threads == 1 ? "" : "s", lf_blas_kernel(),
                lf_blas_kernel_origin(), lf_blas_best_kernel());
    int status = status_of(comm, c->run(comm, &o), &o);
    fflush(stdout);
    if (status == 0)
        log_peak_memory(comm);
    return status;
}
