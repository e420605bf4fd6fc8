/* Subcommands and flag parsing.
 *
 * One table describes every flag (its kind, its valid range, the commands that take it); each
 * subcommand names the flags it accepts, so `--help` text, parsing and validation come from the
 * same place. Everything the command line alone can decide is decided before any file is
 * opened: values and ranges, flags that the chosen mode would ignore (usage errors, never
 * silently dropped), and outputs that would overwrite an input. Every stage below is collective
 * on the command's communicator. */
#include "linfold/cli.h"

#include "cli_impl.h"
#include "linfold/fold_dist.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "build_info.h"
#include "linfold/atomic.h"
#include "linfold/blas.h"
#include "linfold/comm.h"
#include "linfold/h5io.h"
#include "linfold/interrupt.h"
#include "linfold/log.h"
#include "linfold/pipeline.h"
#include "linfold/plan.h"
#include "linfold/pool.h"

typedef enum { F_STRING, F_DECIMAL, F_INT, F_BOOL } flag_kind_t;

enum {
    M_MODEL = 1 << 0,
    M_DATA = 1 << 1,
    M_LABELS = 1 << 2,
    M_STATS = 1 << 3,
    M_OUT = 1 << 4,
    M_REFERENCE = 1 << 5,
    M_THRESHOLD = 1 << 6,
    M_RULE = 1 << 7,
    M_PRUNE = 1 << 8,
    M_JSON = 1 << 9,
    M_BATCH = 1 << 10,
    M_COMMON = 1 << 11,
    M_SUMS = 1 << 12,
    M_SEARCH = 1 << 13,
    M_PROVABLE = 1 << 14,
    M_RUN = 1 << 15,
    M_MERGE = 1 << 16,
};

typedef lf_decimal_range_t range_t;
#define THRESHOLD LF_RANGE_THRESHOLD
#define SHARE LF_RANGE_SHARE
#define POSITIVE LF_RANGE_POSITIVE
#define UNIT LF_RANGE_UNIT
#define in_range lf_decimal_in_range

typedef struct {
    const char *name;
    flag_kind_t kind;
    size_t offset;
    unsigned group;
    const char *arg, *help;
    const range_t *range; /* F_DECIMAL only */
} flag_t;

#define OFF(field) offsetof(lf__cli_opts_t, field)
static const flag_t flags[] = {
    {"--model", F_STRING, OFF(model), M_MODEL, "IN.h5", "model file (format v1)", NULL},
    {"--data", F_STRING, OFF(data), M_DATA, "F.h5:/x", "samples, 2-D float dataset (n, d)", NULL},
    {"--labels", F_STRING, OFF(labels), M_LABELS, "F.h5:/y", "labels, 1-D integer dataset (n)",
     NULL},
    {"--stats", F_STRING, OFF(stats), M_STATS, "STATS.h5", "statistics from `linfold calibrate`",
     NULL},
    {"--out", F_STRING, OFF(out), M_OUT, "OUT.h5", "output file (written atomically)", NULL},
    {"--reference", F_STRING, OFF(reference), M_REFERENCE, "ORIG.h5",
     "compare outputs with this model", NULL},
    {"--threshold", F_DECIMAL, OFF(threshold), M_THRESHOLD, "T",
     "activation rate at which a neuron is linear, in (0, 1] (default 1.0)", &THRESHOLD},
    {"--layer-rule", F_STRING, OFF(layer_rule), M_RULE, "R",
     "which layers fold: benefit (default), all, count:K or fraction:F", NULL},
    {"--select", F_STRING, OFF(select), M_RULE, "S",
     "choose the set of layers to fold: greedy, or optimal (fewest parameters, exact)", NULL},
    {"--prune-fraction", F_DECIMAL, OFF(prune_fraction), M_RULE, "P",
     "first remove this share of hidden neurons with the lowest activation rates, adding their "
     "mean outputs to the next biases; in [0, 1), rounded to the nearest neuron count",
     &SHARE},
    {"--prune-scope", F_STRING, OFF(prune_scope), M_RULE, "layer|global",
     "--prune-fraction per layer (default) or over the whole network at once", NULL},
    {"--prune-by", F_STRING, OFF(prune_by), M_RULE, "rate|energy|variance",
     "what --prune-fraction ranks neurons by: activation rate, output energy E[a^2] x outgoing "
     "weights^2, or its variance part (default variance)",
     NULL},
    {"--sweep", F_STRING, OFF(sweep_text), M_SEARCH, "T1,T2,...",
     "one calibration, one row per threshold (no model written)", NULL},
    {"--sweep-out", F_STRING, OFF(sweep_out), M_SEARCH, "F.csv", "also write the sweep as CSV",
     NULL},
    {"--target-ratio", F_DECIMAL, OFF(target_ratio), M_SEARCH, "R",
     "the largest threshold whose model has at most R x the original parameters (R > 0)",
     &POSITIVE},
    {"--max-accuracy-drop", F_DECIMAL, OFF(max_drop), M_SEARCH, "D",
     "the smallest model within D of the original accuracy on --eval-data/--eval-labels, D in "
     "[0, 1]",
     &UNIT},
    {"--confidence", F_DECIMAL, OFF(confidence), M_SEARCH, "C",
     "accept a candidate of --max-accuracy-drop only when an exact upper bound on its drop, at "
     "confidence C in [0, 1), is within the budget (default 0.95; 0: the measured drop)",
     &SHARE},
    {"--search-fractions", F_STRING, OFF(fractions_text), M_SEARCH, "P1,P2,...",
     "importance-pruning shares the accuracy search tries (default: the largest share within "
     "the budget, found by bisection, and 0.05 and 0.10 below it)",
     NULL},
    {"--eval-data", F_STRING, OFF(eval_data), M_SEARCH, "F.h5:/x",
     "evaluation samples for --sweep and --max-accuracy-drop", NULL},
    {"--eval-labels", F_STRING, OFF(eval_labels), M_SEARCH, "F.h5:/y", "evaluation labels", NULL},
    {"--merge", F_STRING, OFF(merge), M_MERGE, "auto|serial|distributed",
     "how models are folded (the one written, and those a search evaluates): every rank in "
     "memory (serial), or on a ScaLAPACK grid with no rank holding a whole weight "
     "(distributed); auto (default) goes distributed when the largest product reaches "
     "--dist-threshold",
     NULL},
    {"--dist-threshold", F_INT, OFF(dist_threshold), M_MERGE, "N",
     "elements of the largest product (the two widest layers) from which auto goes distributed "
     "(default 16777216)",
     NULL},
    {"--dist-block", F_INT, OFF(dist_block), M_MERGE, "NB",
     "block size of the distributed layout (default 64)", NULL},
    {"--merge-precision", F_STRING, OFF(merge_precision), M_MERGE, "double|single",
     "distributed products in double (pdgemm_, default) or float32 (psgemm_: half the memory, "
     "a float32 rounding per partial sum)",
     NULL},
    {"--prune-dead", F_BOOL, OFF(prune_dead), M_PRUNE, NULL,
     "also remove relu neurons never active on the calibration data", NULL},
    {"--reconstruct", F_BOOL, OFF(reconstruct), M_PRUNE, NULL,
     "refit, by ridge least squares on the --data rows, every layer whose inputs the compression "
     "changed, so that it reproduces the original pre-activations (docs/algorithm.md)",
     NULL},
    {"--reconstruct-rows", F_INT, OFF(reconstruct_rows), M_PRUNE, "N",
     "with --reconstruct: refit on about N rows (whole groups of 4,096 spread evenly over "
     "--data) instead of all; a search refits every candidate, so this bounds its cost",
     NULL},
    {"--json", F_BOOL, OFF(json), M_JSON, NULL, "print one JSON object on stdout", NULL},
    {"--provable", F_BOOL, OFF(provable), M_PROVABLE, NULL,
     "list neurons linear on every input: weights and bias >= 0 on non-negative inputs", NULL},
    {"--input-nonnegative", F_BOOL, OFF(input_nonnegative), M_PROVABLE, NULL,
     "with --provable: the model input is known to be >= 0", NULL},
    {"--dry-run", F_BOOL, OFF(dry_run), M_RUN, NULL,
     "validate, check the files and print the resolved plan; run nothing", NULL},
    {"--print-config", F_BOOL, OFF(print_config), M_RUN, NULL,
     "print the effective pipeline (every default filled in) as YAML; run nothing", NULL},
    {"--set", F_STRING, OFF(sets), M_RUN, "STAGE.KEY=VALUE",
     "override a value of the pipeline (repeatable), e.g. fold.threshold=0.9", NULL},
    {"--shard", F_STRING, OFF(shard), M_RUN, "K/N",
     "registries: run only the models i with i % N == K (job arrays)", NULL},
    {"--resume", F_BOOL, OFF(resume), M_RUN, NULL,
     "insist on continuing from the pipeline's checkpoint (a rerun resumes anyway when one "
     "exists); an error when there is none",
     NULL},
    {"--output-sums", F_BOOL, OFF(output_sums), M_SUMS, NULL,
     "also record exact sums of every neuron's outputs (for --prune-fraction later; slower)", NULL},
    {"--batch", F_INT, OFF(batch), M_BATCH, "N", "rows per batch (default 1024)", NULL},
    {"--progress", F_BOOL, OFF(progress), M_COMMON, NULL,
     "progress lines on stderr (default when stderr is a terminal)", NULL},
    {"--no-progress", F_BOOL, OFF(no_progress), M_COMMON, NULL, "no progress lines", NULL},
    {"--verbose", F_BOOL, OFF(verbose), M_COMMON, NULL, "debug messages (also -v)", NULL},
    {"--quiet", F_BOOL, OFF(quiet), M_COMMON, NULL, "errors only (also -q)", NULL},
    {"--help", F_BOOL, OFF(help), M_COMMON, NULL, "this text (also -h)", NULL},
};
#undef OFF
enum { N_FLAGS = (int)(sizeof flags / sizeof *flags) };
_Static_assert(N_FLAGS <= 64, "lf__cli_opts_t.given has 64 bits");

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
     M_MODEL | M_DATA | M_STATS | M_OUT | M_THRESHOLD | M_RULE | M_PRUNE | M_BATCH | M_SEARCH |
         M_MERGE,
     M_MODEL,
     "linfold compress --model IN.h5 (--data F.h5:/x | --stats STATS.h5) [--threshold T]\n"
     "                 [--layer-rule R | --select S] [--prune-dead] [--prune-fraction P]\n"
     "                 [--sweep LIST [--sweep-out F.csv] | --target-ratio R |\n"
     "                  --max-accuracy-drop D] [--eval-data F.h5:/x --eval-labels F.h5:/y]\n"
     "                 [--merge auto|serial|distributed] [--dist-threshold N]\n"
     "                 [--dist-block NB] [--merge-precision double|single] --out OUT.h5",
     "Fold neurons that are linear on the calibration data into skip connections and print a\n"
     "per-layer summary. --sweep, --target-ratio and --max-accuracy-drop search over plans\n"
     "computed from one calibration.",
     lf__cmd_compress, false},
    {"calibrate", M_MODEL | M_DATA | M_OUT | M_BATCH | M_SUMS, M_MODEL | M_DATA | M_OUT,
     "linfold calibrate --model IN.h5 --data F.h5:/x [--output-sums] --out STATS.h5",
     "Record per-neuron activation statistics over the calibration data.", lf__cmd_calibrate,
     false},
    {"eval", M_MODEL | M_DATA | M_LABELS | M_REFERENCE | M_JSON | M_BATCH, M_MODEL | M_DATA,
     "linfold eval --model M.h5 --data F.h5:/x [--labels F.h5:/y] [--reference ORIG.h5] [--json]",
     "Accuracy, and with a reference model top-1 agreement and the largest output difference.",
     lf__cmd_eval, false},
    {"predict", M_MODEL | M_DATA | M_OUT | M_BATCH, M_MODEL | M_DATA | M_OUT,
     "linfold predict --model M.h5 --data F.h5:/x --out PRED.h5",
     "Write the model's outputs as /outputs (n, n_out), rows in dataset order.", lf__cmd_predict,
     false},
    {"run", M_RUN, 0,
     "linfold run PIPELINE.yaml [--dry-run] [--print-config] [--set K=V ...] [--resume]\n"
     "            [--shard K/N]",
     "Run a pipeline file (docs/pipeline.md): its model, inputs, stages and outputs. Every\n"
     "problem of the file is reported at once as FILE:LINE:COLUMN before any work.",
     lf__cmd_run, true},
    {"inspect", M_PROVABLE, 0, "linfold inspect [--provable [--input-nonnegative]] M.h5",
     "Print layers, activations, skip blocks and parameter counts.", lf__cmd_inspect, true},
};

static void print_usage(FILE *f)
{
    fprintf(f, "linfold %s (%s): linearity-based compression of MLPs\n\nUsage:\n", LF_VERSION,
            LF_GIT_HASH);
    for (size_t c = 0; c < sizeof commands / sizeof *commands; c++)
        fprintf(f, "  %s\n", commands[c].synopsis);
    fprintf(f,
            "\nRun under mpirun/srun to shard the data over ranks. `linfold COMMAND --help` "
            "for details.\nExit status: 0 success, 1 error, 2 usage or configuration error, 3 some "
            "models of a\nregistry failed, 75 stopped at a checkpoint (rerun to resume), 128+N "
            "stopped by signal N\n(130 SIGINT, 143 SIGTERM; also SIGHUP and SIGUSR1), with no "
            "partial output.\n");
}

static void print_command_help(const command_t *c)
{
    printf("Usage: %s\n\n%s\n\nOptions:\n", c->synopsis, c->summary);
    for (int k = 0; k < N_FLAGS; k++) {
        if (!(flags[k].group & (c->accepts | M_COMMON)))
            continue;
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", flags[k].name, flags[k].arg ? " " : "",
                 flags[k].arg ? flags[k].arg : "");
        printf("  %-24s %s%s\n", left, flags[k].help,
               (flags[k].group & c->requires) ? " [required]" : "");
    }
}

/* ---------------------------------------------------------------- parsing */

static int flag_index(const char *name)
{
    for (int k = 0; k < N_FLAGS; k++)
        if (strcmp(flags[k].name, name) == 0)
            return k;
    LF_ASSERT(!"unknown flag name");
    return -1;
}

bool lf__cli_given(const lf__cli_opts_t *o, const char *flag)
{
    return (o->given >> flag_index(flag)) & 1u;
}

static lf_err_t parse_number(const flag_t *f, const char *text, lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    char *end = NULL;
    errno = 0;
    if (f->kind == F_DECIMAL) {
        lf_decimal_t v;
        bool parsed = lf_decimal_parse(text, &v) == LF_OK;
        bool negative = !parsed && text[0] == '-' && lf_decimal_parse(text + 1, &v) == LF_OK;
        lf_error_clear();
        LF_CHECK(!negative, LF_ERR_USAGE, "%s %s is outside %s", f->name, text, f->range->text);
        LF_CHECK(parsed, LF_ERR_USAGE, "%s expects a number in %s, got '%s'", f->name,
                 f->range->text, text);
        LF_CHECK(in_range(f->range, v), LF_ERR_USAGE, "%s %s is outside %s", f->name, text,
                 f->range->text);
        *(lf_decimal_t *)((char *)o + f->offset) = v;
    } else {
        long long v = strtoll(text, &end, 10);
        LF_CHECK(*text && *end == '\0' && errno == 0 && v >= 1, LF_ERR_USAGE,
                 "%s expects a whole number >= 1, got '%s'", f->name, text);
        *(int64_t *)((char *)o + f->offset) = v;
    }
cleanup:
    return err;
}

/* "0.9,0.95,1" into decimals within range. */
static lf_err_t parse_list(const char *flag, const char *text, const range_t *range,
                           lf_decimal_t *values, int *n)
{
    lf_err_t err = LF_OK;
    char item[64];
    *n = 0;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, ",");
        LF_CHECK(len > 0 && len < sizeof item, LF_ERR_USAGE,
                 "%s: '%s' is not a comma-separated list of numbers", flag, text);
        memcpy(item, p, len);
        item[len] = '\0';
        lf_decimal_t v;
        bool parsed = lf_decimal_parse(item, &v) == LF_OK;
        lf_error_clear();
        LF_CHECK(parsed, LF_ERR_USAGE, "%s: '%s' is not a comma-separated list of numbers", flag,
                 text);
        LF_CHECK(in_range(range, v), LF_ERR_USAGE, "%s: %s is outside %s", flag, item, range->text);
        LF_CHECK(*n < LF_CLI_LIST_MAX, LF_ERR_USAGE, "%s: more than %d values", flag,
                 LF_CLI_LIST_MAX);
        values[(*n)++] = v;
        p += len;
        if (*p == ',') {
            p++;
            LF_CHECK(*p, LF_ERR_USAGE, "%s: '%s' ends with a comma", flag, text);
        }
    }
    LF_CHECK(*n > 0, LF_ERR_USAGE, "%s needs at least one value", flag);
cleanup:
    return err;
}

/* A flag the chosen mode would ignore is a usage error, never silently dropped. */
#define REFUSE(o, flag, context, why)                                                              \
    LF_CHECK(!lf__cli_given(o, flag), LF_ERR_USAGE, "%s has no effect with %s: %s", flag, context, \
             why)

static lf_err_t check_modes(const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    if (o->sweep_text) {
        REFUSE(o, "--threshold", "--sweep", "the sweep sets the thresholds");
        REFUSE(o, "--out", "--sweep",
               "a sweep writes no model (--sweep-out F.csv writes the table)");
    } else if (o->target) {
        REFUSE(o, "--threshold", "--target-ratio", "the search chooses the threshold");
    } else if (o->budget) {
        const char *why = "the accuracy search tries it both ways or chooses it itself";
        REFUSE(o, "--threshold", "--max-accuracy-drop", why);
        REFUSE(o, "--prune-dead", "--max-accuracy-drop", why);
        REFUSE(o, "--prune-fraction", "--max-accuracy-drop", "use --search-fractions");
        REFUSE(o, "--prune-scope", "--max-accuracy-drop", why);
    }
    LF_CHECK(!lf__cli_given(o, "--prune-scope") || o->prune_fraction.m > 0 || o->budget,
             LF_ERR_USAGE, "--prune-scope has no effect without a --prune-fraction above 0");
    LF_CHECK(!lf__cli_given(o, "--prune-by") || o->prune_fraction.m > 0 || o->budget, LF_ERR_USAGE,
             "--prune-by has no effect without a --prune-fraction above 0");
    if (o->stats && !o->eval_data)
        REFUSE(o, "--batch", "--stats", "no pass over data is made (give it to calibrate)");
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
    LF_CHECK(!o->prune_scope || strcmp(o->prune_scope, "layer") == 0 ||
                 strcmp(o->prune_scope, "global") == 0,
             LF_ERR_USAGE, "--prune-scope '%s' is not layer or global", o->prune_scope);
    lf_prune_by_t by = LF_PRUNE_BY_DEFAULT;
    if (o->prune_by)
        LF_CALL(lf_plan_parse_prune_by(o->prune_by, &by));
    o->target = lf__cli_given(o, "--target-ratio");
    o->budget = lf__cli_given(o, "--max-accuracy-drop");
    int modes = (o->sweep_text != NULL) + o->target + o->budget;
    LF_CHECK(modes <= 1, LF_ERR_USAGE,
             "--sweep, --target-ratio and --max-accuracy-drop exclude each other");
    LF_CHECK(o->sweep_text || o->out, LF_ERR_USAGE,
             "compress: missing required option --out OUT.h5");
    LF_CHECK(!o->sweep_out || o->sweep_text, LF_ERR_USAGE, "--sweep-out goes with --sweep");
    LF_CHECK(!o->fractions_text || o->budget, LF_ERR_USAGE,
             "--search-fractions goes with --max-accuracy-drop");
    LF_CHECK(!lf__cli_given(o, "--confidence") || o->budget, LF_ERR_USAGE,
             "--confidence goes with --max-accuracy-drop");
    LF_CHECK(!(o->eval_data || o->eval_labels) || o->sweep_text || o->budget, LF_ERR_USAGE,
             "--eval-data and --eval-labels go with --sweep or --max-accuracy-drop");
    LF_CHECK(!o->eval_labels || o->eval_data, LF_ERR_USAGE, "--eval-labels needs --eval-data");
    LF_CHECK(!o->budget || (o->eval_data && o->eval_labels), LF_ERR_USAGE,
             "--max-accuracy-drop needs --eval-data and --eval-labels");
    LF_CALL(check_modes(o));
    lf_merge_path_t path = LF_MERGE_AUTO;
    if (o->merge)
        LF_CALL(lf_merge_path_parse(o->merge, &path));
    LF_CHECK(!o->merge_precision || strcmp(o->merge_precision, "double") == 0 ||
                 strcmp(o->merge_precision, "single") == 0,
             LF_ERR_USAGE, "--merge-precision '%s' is not double or single", o->merge_precision);
    LF_CHECK(o->dist_block <= 4096, LF_ERR_USAGE, "--dist-block %lld is above 4096",
             (long long)o->dist_block);
    LF_CHECK(!o->reconstruct || o->data, LF_ERR_USAGE,
             "--reconstruct needs --data: the rows the layers are refitted on");
    LF_CHECK(!o->reconstruct_rows || o->reconstruct, LF_ERR_USAGE,
             "--reconstruct-rows goes with --reconstruct");
    if (o->sweep_text && !o->eval_data) {
        /* With --eval-data a sweep folds every threshold's model to evaluate it. */
        const char *why = "a sweep without --eval-data folds no model";
        REFUSE(o, "--merge", "--sweep", why);
        REFUSE(o, "--dist-threshold", "--sweep", why);
        REFUSE(o, "--dist-block", "--sweep", why);
        REFUSE(o, "--merge-precision", "--sweep", why);
    }
    LF_CHECK(!o->sweep_text || !o->merge || path != LF_MERGE_DISTRIBUTED || o->sweep_out,
             LF_ERR_USAGE,
             "--merge distributed with --sweep needs --sweep-out: the models it evaluates are "
             "written beside that file, on a file system every rank sees");
    lf_layer_rule_t rule;
    if (o->layer_rule)
        LF_CALL(lf_plan_parse_layer_rule(o->layer_rule, &rule));
    if (o->select)
        LF_CALL(lf_plan_parse_select(o->select, &rule));
    if (o->sweep_text)
        LF_CALL(parse_list("--sweep", o->sweep_text, &THRESHOLD, o->sweep, &o->n_sweep));
    if (o->fractions_text)
        LF_CALL(parse_list("--search-fractions", o->fractions_text, &SHARE, o->fractions,
                           &o->n_fractions));
cleanup:
    return err;
}

static lf_err_t parse_flag(const command_t *c, int argc, char **argv, int *k, lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    const char *arg = argv[*k];
    if (strcmp(arg, "-h") == 0)
        arg = "--help";
    else if (strcmp(arg, "-v") == 0)
        arg = "--verbose";
    else if (strcmp(arg, "-q") == 0)
        arg = "--quiet";
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    int idx = -1;
    for (int t = 0; t < N_FLAGS; t++)
        if (strlen(flags[t].name) == len && strncmp(flags[t].name, arg, len) == 0)
            idx = t;
    LF_CHECK(idx >= 0 && (flags[idx].group & (c->accepts | M_COMMON)), LF_ERR_USAGE,
             "%s: unknown option '%.*s' (see linfold %s --help)", c->name, (int)len, arg, c->name);
    const flag_t *f = &flags[idx];
    bool repeatable = f->offset == offsetof(lf__cli_opts_t, sets);
    LF_CHECK(repeatable || !((o->given >> idx) & 1u), LF_ERR_USAGE, "%s is given twice", f->name);
    o->given |= (uint64_t)1 << idx;
    if (f->kind == F_BOOL) {
        LF_CHECK(!eq, LF_ERR_USAGE, "%s takes no value", f->name);
        *(bool *)((char *)o + f->offset) = true;
        goto cleanup;
    }
    const char *value = eq ? eq + 1 : (*k + 1 < argc ? argv[++*k] : NULL);
    LF_CHECK(value != NULL, LF_ERR_USAGE, "%s needs a value (%s)", f->name, f->arg);
    if (repeatable) {
        LF_CHECK(o->n_sets < LF_CLI_LIST_MAX, LF_ERR_USAGE, "%s is given more than %d times",
                 f->name, LF_CLI_LIST_MAX);
        o->sets[o->n_sets++] = value;
    } else if (f->kind == F_STRING) {
        LF_CHECK(value[0] != '\0', LF_ERR_USAGE, "%s needs a non-empty value", f->name);
        *(const char **)((char *)o + f->offset) = value;
    } else {
        LF_CALL(parse_number(f, value, o));
    }
cleanup:
    return err;
}

static lf_err_t parse_args(const command_t *c, int argc, char **argv, lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    for (int k = 2; k < argc; k++) {
        const char *arg = argv[k];
        if (arg[0] != '-' || arg[1] == '\0') {
            LF_CHECK(c->positional_file && !o->file, LF_ERR_USAGE, "%s: unexpected argument '%s'",
                     c->name, arg);
            o->file = arg;
            continue;
        }
        LF_CALL(parse_flag(c, argc, argv, &k, o));
    }
    if (o->help)
        return LF_OK;
    for (int t = 0; t < N_FLAGS; t++)
        if (flags[t].group & c->requires) {
            const char *v = *(const char **)((char *)o + flags[t].offset);
            LF_CHECK(v != NULL, LF_ERR_USAGE, "%s: missing required option %s %s", c->name,
                     flags[t].name, flags[t].arg);
        }
    LF_CHECK(!c->positional_file || o->file, LF_ERR_USAGE, "%s: missing the %s file argument",
             c->name, strcmp(c->name, "run") == 0 ? "pipeline" : "model");
    LF_CHECK(!(o->verbose && o->quiet), LF_ERR_USAGE, "--verbose and --quiet exclude each other");
    LF_CHECK(!(o->progress && o->no_progress), LF_ERR_USAGE,
             "--progress and --no-progress exclude each other");
    LF_CHECK(!(o->progress && o->quiet), LF_ERR_USAGE,
             "--progress has no effect with --quiet (errors only)");
    if (strcmp(c->name, "compress") == 0)
        LF_CALL(check_compress(o));
    LF_CHECK(o->provable || !o->input_nonnegative, LF_ERR_USAGE,
             "--input-nonnegative goes with --provable");
    /* Dataset specs are checked here, before any file is opened. */
    const char *specs[] = {o->data, o->labels, o->eval_data, o->eval_labels};
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++)
        if (specs[k]) {
            char file[LF_PATH_MAX], obj[1024];
            LF_CALL(lf_h5io_split_spec(specs[k], file, sizeof file, obj, sizeof obj));
        }
cleanup:
    return err;
}

/* Outputs must not be any input (or each other): checked on file identity before any work, and
 * rank 0 proves that each output's directory takes new files. */
static lf_err_t check_files(const lf__cli_opts_t *o, bool probe)
{
    lf_err_t err = LF_OK;
    char files[4][LF_PATH_MAX], obj[1024];
    const char *specs[4] = {o->data, o->labels, o->eval_data, o->eval_labels};
    const char *spec_flags[4] = {"--data", "--labels", "--eval-data", "--eval-labels"};
    lf_atomic_named_t inputs[8];
    int n = 0;
    for (int k = 0; k < 4; k++)
        if (specs[k] &&
            lf_h5io_split_spec(specs[k], files[k], sizeof files[k], obj, sizeof obj) == LF_OK)
            inputs[n++] = (lf_atomic_named_t){spec_flags[k], files[k]};
    inputs[n++] = (lf_atomic_named_t){"--model", o->model};
    inputs[n++] = (lf_atomic_named_t){"--stats", o->stats};
    inputs[n++] = (lf_atomic_named_t){"--reference", o->reference};
    lf_atomic_named_t outputs[] = {{"--out", o->out}, {"--sweep-out", o->sweep_out}};
    LF_CALL(lf_atomic_check_outputs(inputs, n, outputs, 2, probe));
cleanup:
    return err;
}

/* ---------------------------------------------------------------- shared with subcommands */

static int compute_threads = 1; /* set once per command by lf_cli_main */

lf_batch_opts_t lf__cli_batch_opts(const lf__cli_opts_t *o, const char *what)
{
    bool progress = o->progress || (!o->no_progress && !o->quiet && isatty(STDERR_FILENO));
    return (lf_batch_opts_t){
        .batch_rows = o->batch, .threads = compute_threads, .progress = progress, .what = what};
}

int lf__cli_rank(MPI_Comm comm) { return lf_comm_rank(comm); }

/* ---------------------------------------------------------------- run records in the log */

/* The command line as one shell-readable string: arguments with odd characters are quoted. */
static void command_text(int argc, char **argv, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (int k = 1; k < argc && n + 1 < cap; k++) {
        bool plain =
            argv[k][0] != '\0' && strspn(argv[k], "abcdefghijklmnopqrstuvwxyz"
                                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                  "0123456789-_=./:,+@%") == strlen(argv[k]);
        int w = snprintf(buf + n, cap - n, plain ? "%s%s" : "%s'%s'", k > 1 ? " " : "", argv[k]);
        n = w > 0 && (size_t)w < cap - n ? n + (size_t)w : cap - 1;
    }
}

/* One line that says what ran where: version and revision, the command, ranks x threads and
 * nodes, the BLAS kernel, rank 0's host, and the SLURM job. Collective. */
static void log_header(MPI_Comm comm, int argc, char **argv)
{
    int size = 1, nodes = lf_comm_node_count(comm);
    MPI_Comm_size(comm, &size);
    char cmd[2048], host[256] = "?", job[96] = "";
    command_text(argc, argv, cmd, sizeof cmd);
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    const char *id = getenv("SLURM_JOB_ID"), *array = getenv("SLURM_ARRAY_TASK_ID");
    if (id && array)
        snprintf(job, sizeof job, " | SLURM job %s (array task %s)", id, array);
    else if (id)
        snprintf(job, sizeof job, " | SLURM job %s", id);
    lf_log(LF_LOG_INFO, comm,
           "version %s (%s) | %s | %d rank%s x %d thread%s on %d node%s | BLAS %s | host %s%s",
           LF_VERSION, LF_GIT_HASH, cmd, size, size == 1 ? "" : "s", compute_threads,
           compute_threads == 1 ? "" : "s", nodes, nodes == 1 ? "" : "s", lf_blas_kernel(), host,
           job);
}

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
    lf_log(LF_LOG_DEBUG, comm,
           "peak memory per rank: max %.1f MiB (rank %d), min %.1f MiB (rank %d)", hi.mib, hi.rank,
           lo.mib, lo.rank);
}

/* The exit status of an agreed error (lf_pipeline_exit_status). Prints the error once per job.
 * Collective. */
static int status_of(MPI_Comm comm, lf_err_t err, const lf__cli_opts_t *o)
{
    if (err == LF_OK)
        return 0;
    /* A traceback helps with a fault deep in a pass, not with a bad flag. */
    lf_comm_report_error(comm, err, o->verbose && err != LF_ERR_USAGE);
    return lf_pipeline_exit_status(comm, err);
}

/* ---------------------------------------------------------------- entry */

static int run_command(MPI_Comm comm, const command_t *c, int argc, char **argv)
{
    double t0 = lf_log_seconds();
    lf__cli_opts_t o = {.threshold = LF_DECIMAL(1, 0), .batch = 1024};
    lf_err_t err = parse_args(c, argc, argv, &o);
    if (err == LF_OK && o.help) {
        if (lf__cli_rank(comm) == 0)
            print_command_help(c);
        return 0;
    }
    if (err != LF_OK)
        return status_of(comm, err, &o);
    lf_log_set_level(o.quiet ? LF_LOG_ERROR : (o.verbose ? LF_LOG_DEBUG : LF_LOG_INFO));
    lf_pool_serial_blas();
    err = lf_pool_default_threads(comm, &compute_threads);
    if (err != LF_OK)
        return status_of(comm, err, &o);
    /* From here on every run is framed by the header and the closing line, errors included. */
    log_header(comm, argc, argv);
    lf_log_rank(LF_LOG_DEBUG, comm,
                "%d compute thread%s; BLAS kernel %s (chosen by %s; CPU supports %s), "
                "single-threaded per block",
                compute_threads, compute_threads == 1 ? "" : "s", lf_blas_kernel(),
                lf_blas_kernel_origin(), lf_blas_best_kernel());
    err = lf_comm_agree(comm, check_files(&o, lf__cli_rank(comm) == 0));
    if (err == LF_OK)
        err = c->run(comm, &o);
    int status = status_of(comm, err, &o);
    fflush(stdout);
    if (status == 0)
        log_peak_memory(comm);
    double elapsed = lf_log_seconds() - t0;
    if (status == 0)
        lf_log(LF_LOG_INFO, comm, "%s finished in %.3f s", c->name, elapsed);
    else
        lf_log(LF_LOG_INFO, comm, "%s stopped after %.3f s (exit status %d)", c->name, elapsed,
               status);
    return status;
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
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++)
        if (strcmp(argv[1], commands[k].name) == 0)
            return run_command(comm, &commands[k], argc, argv);
    if (rank == 0)
        fprintf(stderr,
                "linfold: error: unknown command '%s' (expected run, compress, calibrate, "
                "eval, predict or inspect; see linfold --help) (LF_ERR_USAGE)\n",
                argv[1]);
    return 2;
}
