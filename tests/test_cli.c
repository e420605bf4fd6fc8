/* End-to-end tests of the linfold command line: exit statuses, error messages and atomic outputs.
 *
 * Each test runs the real `linfold` executable (LF_BINARY) through system(), as an MPI singleton
 * or under `LF_MPIEXEC -n 2`, with stdout and stderr captured to files, and checks
 *   - the exit status: 2 for usage errors, 1 for every other error, 0 on success;
 *   - that stderr names the file, the object (e.g. /layers/1/weight) and the problem;
 *   - that a failed run leaves neither its output file nor a temporary `OUT.h5.tmp-*` beside it.
 *
 * This process never calls MPI_Init (lf_test_run_serial), so Check may fork per test. Every
 * command runs under `timeout 60`, so a hang shows up as exit status 124 instead of a stuck suite.
 *
 * Broken model files are written here with the serial HDF5 C API: write_model() writes a small
 * valid format-v1 model and a defect_t knob breaks exactly one thing in it, so each failure can be
 * attributed to that one defect (test_valid_fixture checks that the unbroken model is accepted).
 *
 * Temporary files: each test case gets a directory made with mkdtemp() inside a per-TCase root
 * under /tmp. The checked teardown removes the test's directory; because a failing assertion ends
 * the forked test before its teardown runs, the unchecked teardown (in the parent) also removes
 * the whole root. */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lf_test.h"

#define DIGITS_DIR LF_SOURCE_DIR "/tests/data/digits"

/* ---------------------------------------------------------------- temporary directories */

static char g_root[256];  /* per TCase, made by the unchecked setup (parent process) */
static char g_dir[512];   /* per test, made by the checked setup (forked child) */
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

/* Replaces {M}, {D}, {O} and {S} in tmpl with the model, data, output and statistics paths of
 * the current test, so that the case tables below can name files before they exist. */
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

/* Runs linfold with the argument template args ({M}... expanded) on np ranks: np == 1 is a plain
 * singleton start, otherwise LF_MPIEXEC -n np. Fills g_run. */
static void run_linfold(int np, const char *args)
{
    char expanded[2048], outp[700], errp[700], launcher[512];
    expand(args, expanded, sizeof expanded);
    /* The captured streams live in the test directory under names that cannot be mistaken for an
     * output (OUT.h5) or its temporary (OUT.h5.tmp-*). */
    snprintf(outp, sizeof outp, "%s/cmd.stdout", g_dir);
    snprintf(errp, sizeof errp, "%s/cmd.stderr", g_dir);
    if (np == 1)
        snprintf(launcher, sizeof launcher, "%s", LF_BINARY);
    else
        snprintf(launcher, sizeof launcher, "%s -n %d %s", LF_MPIEXEC, np, LF_BINARY);
    snprintf(g_run.cmd, sizeof g_run.cmd, "timeout 60 %s %s", launcher, expanded);
    char shell[sizeof g_run.cmd + 2 * sizeof outp + 32];
    snprintf(shell, sizeof shell, "%s </dev/null >'%s' 2>'%s'", g_run.cmd, outp, errp);
    int rc = system(shell);
    g_run.status = (rc != -1 && WIFEXITED(rc)) ? WEXITSTATUS(rc) : -1;
    read_text(outp, g_run.out, sizeof g_run.out);
    read_text(errp, g_run.err, sizeof g_run.err);
}

static void assert_status(const char *what, int expected)
{
    ck_assert_msg(g_run.status == expected,
                  "%s: exit status %d, expected %d (124 = timed out)\n$ %s\nstderr:\n%s", what,
                  g_run.status, expected, g_run.cmd, g_run.err);
}

/* fragment may hold {M}, {D}, {O}, {S}. */
static void assert_stderr_has(const char *what, const char *fragment)
{
    char want[1024];
    expand(fragment, want, sizeof want);
    ck_assert_msg(strstr(g_run.err, want) != NULL,
                  "%s: stderr lacks \"%s\"\n$ %s\nstderr:\n%s", what, want, g_run.cmd, g_run.err);
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

static void h5_attr(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                    const void *value)
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
    lf_rng_t rng = {20240601};
    float w[64], b[16];
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_msg(file >= 0, "cannot create %s", path);
    if (d != D_NO_FORMAT)
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
        hid_t g = h5_group(layers, name);
        bool one = i == 1, two = i == 2;

        const char *act = two ? "identity" : "relu";
        if (one && d == D_ACT_GELU)
            act = "gelu";
        if (one && d == D_LEAKY_NO_ALPHA)
            act = "leaky_relu";
        if (!(one && d == D_NO_ACTIVATION))
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
        } else if (!(one && d == D_NO_WEIGHT)) {
            h5_f32(g, "weight", 2, wdims, w);
        }

        hsize_t blen = (hsize_t)n_out;
        if (one && d == D_BIAS_LENGTH)
            blen = 3;
        fill(b, (int64_t)blen, &rng);
        if (two && d == D_BIAS_INF)
            b[1] = INFINITY;
        if (!(one && d == D_NO_BIAS))
            h5_f32(g, "bias", 1, &blen, b);

        hid_t skip = H5I_INVALID_HID;
        if (i > 0)
            skip = h5_group(g, "skip");
        if (one) {
            hsize_t dims[2] = {(hsize_t)n_out, N_IN};
            fill(w, n_out * N_IN, &rng);
            h5_f32(skip, "input", 2, dims, w);
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
}

static void write_good_model(const char *path) { write_model(path, D_NONE); }

/* Sample and label datasets of the data fixture, all with N_ROWS rows unless said otherwise:
 *   /x (N_ROWS, 3) float32, valid    /y (N_ROWS) int64 in {0, 1}, valid
 *   /x5 (N_ROWS, 5): 5 features, the model takes 3       /v (N_ROWS) float32: 1-D samples
 *   /xi (N_ROWS, 3) int32: integer samples               /xnan: NaN at row 7, column 2
 *   /xnan_tail: NaN at row 9, column 0 (rank 1's shard on 2 ranks: rows 5..9)
 *   /ybad: label 5 at row 4 (the model has 2 outputs)    /yshort (N_ROWS - 1) int64 */
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
    ck_assert_int_ge(H5Fclose(file), 0);
}

/* ---------------------------------------------------------------- the valid fixture */

/* Guards every case below: the unbroken fixtures are accepted, so each failure is the defect's. */
START_TEST(test_valid_fixture)
{
    run_linfold(1, "inspect {M}");
    assert_status("inspect", 0);
    ck_assert_msg(strstr(g_run.out, "3 layers, 3 inputs, 2 outputs") != NULL, "stdout:\n%s",
                  g_run.out);
    ck_assert_msg(strstr(g_run.out, "skip from input (4, 3)") != NULL, "stdout:\n%s", g_run.out);
    ck_assert_msg(strstr(g_run.out, "skip from layer 0 (2, 3)") != NULL, "stdout:\n%s", g_run.out);

    run_linfold(1, "compress --model {M} --data {D}:/x --out {O}");
    assert_status("compress", 0);
    ck_assert_msg(access(g_out, F_OK) == 0, "compress did not write %s", g_out);

    run_linfold(1, "eval --model {M} --data {D}:/x --labels {D}:/y --json");
    assert_status("eval", 0);
    ck_assert_msg(strstr(g_run.out, "\"samples\": 10") != NULL, "stdout:\n%s", g_run.out);
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
    {"int32 weight", D_WEIGHT_INT32, "/layers/1/weight", "non-float type", false},
    {"1-D weight", D_WEIGHT_RANK1, "/layers/1/weight", "has 1 dimension, expected 2", false},
    {"weights do not chain", D_WEIGHT_CHAIN, "/layers/1/weight",
     "has shape (4, 5), expected (4, 3)", true},
    {"bias length", D_BIAS_LENGTH, "/layers/1/bias", "has shape (3), expected (4)", false},
    {"NaN weight", D_WEIGHT_NAN, "/layers/1/weight", "has NaN at [2, 1]", true},
    {"Inf bias", D_BIAS_INF, "/layers/2/bias", "has an infinite value at [1]", false},
    {"gelu", D_ACT_GELU, "/layers/1", "unknown activation \"gelu\"", false},
    {"leaky_relu without alpha", D_LEAKY_NO_ALPHA, "/layers/1", "missing attribute 'alpha'", false},
    {"no activation", D_NO_ACTIVATION, "/layers/1", "missing attribute 'activation'", false},
    {"skip from predecessor", D_SKIP_FROM_PRED, "/layers/1/skip/0",
     "may read 'input'", false},
    {"skip from itself", D_SKIP_FROM_SELF, "/layers/2/skip/2",
     "may read 'input'", false},
    {"skip named foo", D_SKIP_FOO, "/layers/2/skip/foo", "must be 'input' or a layer index", true},
    {"skip shape", D_SKIP_SHAPE, "/layers/2/skip/0", "has shape (2, 5), expected (2, 3)", false},
};
enum { N_MODEL_CASES = (int)(sizeof model_cases / sizeof *model_cases) };

static void assert_model_message(const model_case_t *c, const char *cmd)
{
    char what[160];
    snprintf(what, sizeof what, "%s, %s", c->name, cmd);
    assert_status(what, 1);
    assert_stderr_has(what, "{M}");
    if (c->object)
        assert_stderr_has(what, c->object);
    assert_stderr_has(what, c->problem);
    /* A model error is one line on a singleton run; a traceback only comes with --verbose. */
    ck_assert_msg(count_lines(g_run.err) == 1, "%s: expected one line on stderr, got:\n%s", what,
                  g_run.err);
}

START_TEST(test_bad_model)
{
    const model_case_t *c = &model_cases[_i];
    write_model(g_model, c->defect);

    run_linfold(1, "inspect {M}");
    assert_model_message(c, "inspect");
    ck_assert_msg(g_run.out[0] == '\0', "%s: inspect printed to stdout:\n%s", c->name, g_run.out);

    if (c->compress) {
        run_linfold(1, "compress --model {M} --data {D}:/x --out {O}");
        assert_model_message(c, "compress");
        assert_no_output(c->name, g_out);
    }
}
END_TEST

/* On two ranks every rank reads the model and fails identically; the job must still report the
 * error once, not once per rank. */
START_TEST(test_bad_model_two_ranks)
{
    write_model(g_model, D_WEIGHT_CHAIN);
    run_linfold(2, "compress --model {M} --data {D}:/x --out {O}");
    assert_status("np 2", 1);
    assert_stderr_has("np 2", "{M}");
    assert_stderr_has("np 2", "/layers/1/weight has shape (4, 5), expected (4, 3)");
    ck_assert_msg(count_lines_starting(g_run.err, "linfold:") == 1,
                  "the error should be printed once per job:\n%s", g_run.err);
    assert_no_output("np 2", g_out);
}
END_TEST

/* ---------------------------------------------------------------- data and label errors */

typedef struct {
    const char *name;
    const char *args;       /* {M}: valid model, {D}: data fixture, {O}: output */
    int status;
    const char *expect[3];  /* fragments of the message */
} data_case_t;

static const data_case_t data_cases[] = {
    {"missing dataset", "compress --model {M} --data {D}:/nope --out {O}", 1,
     {"{D}", "/nope", "no dataset"}},
    {"missing data file", "compress --model {M} --data {D}.missing:/x --out {O}", 1,
     {"{D}.missing", "no such file"}},
    {"1-D samples", "compress --model {M} --data {D}:/v --out {O}", 1,
     {"{D}", "/v", "has 1 dimension, expected 2"}},
    {"integer samples", "compress --model {M} --data {D}:/xi --out {O}", 1,
     {"{D}", "/xi", "not a float dataset"}},
    /* Without ":/" the argument cannot be split into file and dataset: a usage error. */
    {"spec without :/", "compress --model {M} --data {D} --out {O}", 2,
     {"{D}", "is not of the form FILE.h5:/path"}},
    {"feature count", "compress --model {M} --data {D}:/x5 --out {O}", 1,
     {"{D}:/x5", "has 5 features per row, the model expects 3"}},
    {"NaN in data", "compress --model {M} --data {D}:/xnan --out {O}", 1,
     {"{D}:/xnan", "row 7, column 2 is NaN"}},
    {"NaN in data, predict", "predict --model {M} --data {D}:/xnan --out {O}", 1,
     {"{D}:/xnan", "row 7, column 2 is NaN"}},
    {"label out of range", "eval --model {M} --data {D}:/x --labels {D}:/ybad", 1,
     {"{D}:/ybad", "row 4 has label 5", "expected 0 to 1"}},
    {"label row count", "eval --model {M} --data {D}:/x --labels {D}:/yshort", 1,
     {"{D}:/yshort", "has 9 rows", "{D}:/x has 10"}},
    {"float labels", "eval --model {M} --data {D}:/x --labels {D}:/x", 1,
     {"{D}", "/x", "not an integer dataset"}},
};
enum { N_DATA_CASES = (int)(sizeof data_cases / sizeof *data_cases) };

START_TEST(test_bad_data)
{
    const data_case_t *c = &data_cases[_i];
    run_linfold(1, c->args);
    assert_status(c->name, c->status);
    for (int k = 0; k < 3 && c->expect[k]; k++)
        assert_stderr_has(c->name, c->expect[k]);
    ck_assert_msg(count_lines(g_run.err) == 1, "%s: expected one line on stderr, got:\n%s",
                  c->name, g_run.err);
    assert_no_output(c->name, g_out);
}
END_TEST

/* A NaN only in rank 1's shard: rank 1 detects it, the ranks agree on the failure, rank 1's
 * message is printed and the job ends (timeout 60 turns a hang into status 124). compress fails
 * before writing; predict fails with its temporary output open, which must then be deleted. */
START_TEST(test_nan_on_rank_1)
{
    static const char *const commands[] = {
        "compress --model {M} --data {D}:/xnan_tail --out {O}",
        "predict --model {M} --data {D}:/xnan_tail --out {O}",
    };
    for (size_t k = 0; k < sizeof commands / sizeof *commands; k++) {
        run_linfold(2, commands[k]);
        assert_status(commands[k], 1);
        assert_stderr_has(commands[k], "rank 1");
        assert_stderr_has(commands[k], "{D}:/xnan_tail: row 9, column 0 is NaN");
        ck_assert_msg(strstr(g_run.err, "rank 0") == NULL, "%s: rank 0 reported too:\n%s",
                      commands[k], g_run.err);
        assert_no_output(commands[k], g_out);
    }
}
END_TEST

/* ---------------------------------------------------------------- usage errors */

typedef struct {
    const char *name;
    const char *args;
    const char *expect;
} usage_case_t;

/* Each otherwise valid command names an output, so "no output file" is a real check. */
static const usage_case_t usage_cases[] = {
    {"unknown flag", "compress --model {M} --data {D}:/x --out {O} --bogus",
     "unknown option '--bogus'"},
    {"unknown command", "frobnicate --model {M} --data {D}:/x --out {O}",
     "unknown command 'frobnicate'"},
    {"missing --out", "compress --model {M} --data {D}:/x", "missing required option --out"},
    {"--out without value", "compress --model {M} --data {D}:/x --out", "--out needs a value"},
    {"threshold 1.5", "compress --model {M} --data {D}:/x --out {O} --threshold 1.5",
     "--threshold 1.5 is outside (0, 1]"},
    {"threshold abc", "compress --model {M} --data {D}:/x --out {O} --threshold abc",
     "--threshold expects a number >= 0, got 'abc'"},
    {"batch 0", "compress --model {M} --data {D}:/x --out {O} --batch 0",
     "--batch expects a whole number >= 1, got '0'"},
    {"layer-rule bogus", "compress --model {M} --data {D}:/x --out {O} --layer-rule bogus",
     "layer rule 'bogus' is not one of"},
    {"layer-rule fraction:1.5",
     "compress --model {M} --data {D}:/x --out {O} --layer-rule fraction:1.5",
     "fraction:F needs 0 <= F < 1"},
    {"--data and --stats", "compress --model {M} --data {D}:/x --stats {S} --out {O}",
     "give exactly one of --data and --stats"},
    {"flag of another command", "calibrate --model {M} --data {D}:/x --out {O} --threshold 0.5",
     "unknown option '--threshold'"},
    {"inspect without file", "inspect", "missing the model file argument"},
    {"select bogus", "compress --model {M} --data {D}:/x --out {O} --select best",
     "--select 'best' is not greedy or optimal"},
    {"layer-rule and select",
     "compress --model {M} --data {D}:/x --out {O} --layer-rule all --select greedy",
     "--layer-rule and --select exclude each other"},
    {"prune-fraction 1", "compress --model {M} --data {D}:/x --out {O} --prune-fraction 1",
     "--prune-fraction 1 is outside [0, 1)"},
    {"sweep list", "compress --model {M} --data {D}:/x --sweep 1,x", "is not a comma-separated"},
    {"sweep 0", "compress --model {M} --data {D}:/x --sweep 1,0", "--sweep: 0 is outside"},
    {"two modes", "compress --model {M} --data {D}:/x --out {O} --sweep 1 --target-ratio 0.5",
     "exclude each other"},
    {"sweep-out alone", "compress --model {M} --data {D}:/x --out {O} --sweep-out {O}",
     "--sweep-out goes with --sweep"},
    {"target ratio 0", "compress --model {M} --data {D}:/x --out {O} --target-ratio 0",
     "--target-ratio must be > 0"},
    {"budget without data", "compress --model {M} --data {D}:/x --out {O} --max-accuracy-drop 0",
     "--max-accuracy-drop needs --eval-data and --eval-labels"},
    {"negative drop", "compress --model {M} --data {D}:/x --out {O} --max-accuracy-drop -1",
     "expects a number >= 0"},
    {"eval data without a search",
     "compress --model {M} --data {D}:/x --out {O} --eval-data {D}:/x",
     "go with --sweep or --max-accuracy-drop"},
    {"prune-scope bogus", "compress --model {M} --data {D}:/x --out {O} --prune-scope net",
     "--prune-scope 'net' is not layer or global"},
    {"input-nonnegative alone", "inspect --input-nonnegative {M}",
     "--input-nonnegative goes with --provable"},
};
enum { N_USAGE_CASES = (int)(sizeof usage_cases / sizeof *usage_cases) };

START_TEST(test_usage)
{
    const usage_case_t *c = &usage_cases[_i];
    run_linfold(1, c->args);
    assert_status(c->name, 2);
    assert_stderr_has(c->name, c->expect);
    ck_assert_msg(count_lines(g_run.err) == 1, "%s: expected a one-line message, got:\n%s",
                  c->name, g_run.err);
    assert_no_output(c->name, g_out);
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
    /* Without a command the usage goes to stderr and the status says usage error. */
    run_linfold(1, "");
    assert_status("no command", 2);
    assert_stderr_has("no command", "Usage:");
}
END_TEST

/* ---------------------------------------------------------------- the bundled model */

/* Folding is exact where the folded neurons are active, and pruned neurons were never active on
 * the calibration set; the bundled test split is expected to keep every prediction. */
START_TEST(test_digits_compress_eval)
{
    run_linfold(1, "compress --model " DIGITS_DIR "/model.h5 --data " DIGITS_DIR
                   "/data.h5:/val/x --prune-dead --out {O}");
    assert_status("compress digits", 0);
    ck_assert_msg(access(g_out, F_OK) == 0, "compress did not write %s", g_out);
    ck_assert_msg(strstr(g_run.out, "wrote") != NULL, "stdout:\n%s", g_run.out);

    run_linfold(1, "eval --json --model {O} --reference " DIGITS_DIR "/model.h5 --data " DIGITS_DIR
                   "/data.h5:/test/x --labels " DIGITS_DIR "/data.h5:/test/y");
    assert_status("eval digits", 0);
    ck_assert_msg(strstr(g_run.out, "\"top1_agreement\": 1,") != NULL, "stdout:\n%s", g_run.out);
    ck_assert_msg(count_lines(g_run.out) == 1 && g_run.out[0] == '{',
                  "--json should print one JSON line:\n%s", g_run.out);
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

static Suite *make_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = make_tcase("fixture");
    tcase_add_test(tc, test_valid_fixture);
    suite_add_tcase(s, tc);

    tc = make_tcase("model");
    tcase_add_loop_test(tc, test_bad_model, 0, N_MODEL_CASES);
    tcase_add_test(tc, test_bad_model_two_ranks);
    suite_add_tcase(s, tc);

    tc = make_tcase("data");
    tcase_add_loop_test(tc, test_bad_data, 0, N_DATA_CASES);
    tcase_add_test(tc, test_nan_on_rank_1);
    suite_add_tcase(s, tc);

    tc = make_tcase("usage");
    tcase_add_loop_test(tc, test_usage, 0, N_USAGE_CASES);
    tcase_add_loop_test(tc, test_help, 0, N_SUBCOMMANDS);
    tcase_add_test(tc, test_top_level_help);
    suite_add_tcase(s, tc);

    tc = make_tcase("digits");
    tcase_add_test(tc, test_digits_compress_eval);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lf_test_run_serial(make_suite); }
