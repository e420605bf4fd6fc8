/* HDF5 files: model round trips with deterministic bytes, sharded reads, and every way a hostile
 * or damaged file must be refused with an error that names the file and the object.
 *
 * Hostile fixtures are written here with the serial HDF5 C API on rank 0 (h5py writes the same
 * structures; the C API keeps the suite free of Python): a valid small model whose one knob
 * breaks one thing, so each refusal can be attributed to that defect. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "lf_test.h"
#include "linfold/alloc.h"
#include "linfold/batch.h"
#include "linfold/comm.h"
#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/stats.h"

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void) { lf_test_tmpdir_remove(tmpdir); }

static int my_rank(void)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    return rank;
}

static lf_model_t *model_with_skips(void)
{
    const int64_t widths[] = {5, 4, 6, 3};
    lf_model_t *m = lf_test_mlp(7, widths, 4, -1.0f, 1.0f, -0.5f, 0.5f, 17);
    lf_block_t *b = NULL;
    lf_rng_t rng = {18};
    ck_assert_int_eq(lf_model_block_ensure(m, 2, LF_SRC_INPUT, &b), LF_OK);
    for (int k = 0; k < 6 * 7; k++)
        b->w[k] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    ck_assert_int_eq(lf_model_block_ensure(m, 3, 1, &b), LF_OK);
    for (int k = 0; k < 3 * 4; k++)
        b->w[k] = lf_rng_uniform(&rng, -1.0f, 1.0f);
    m->layers[1].act = LF_ACT_LEAKY_RELU;
    m->layers[1].alpha = 0.125f;
    m->layers[3].act = LF_ACT_SOFTMAX;
    return m;
}

/* Writing and reading a model round-trips every value, and two writes give the same bytes. */
START_TEST(test_model_round_trip_is_bitwise)
{
    lf_model_t *m = model_with_skips(), *r = NULL;
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/a.h5", tmpdir);
    snprintf(b, sizeof b, "%s/b.h5", tmpdir);
    lf_attr_t attrs[] = {{"note", "round trip"}};
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, a, m, attrs, 1), LF_OK);
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, b, m, attrs, 1), LF_OK);
    ck_assert(lf_test_all(lf_test_files_equal(a, b)));
    ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, a, &r), LF_OK);
    ck_assert(lf_model_fingerprint(r) == lf_model_fingerprint(m));
    ck_assert_int_eq(r->layers[1].act, LF_ACT_LEAKY_RELU);
    ck_assert(r->layers[1].alpha == 0.125f);
    lf_model_destroy(&r);
    lf_model_destroy(&m);
}
END_TEST

/* Arrays larger than the reader's 8 MiB strips arrive in several strips, in order: a (2300, 1000)
 * weight (9.2 MB, contiguous: strips of 2,097 and 203 rows) and the same weight chunked in bands
 * of 333 rows and deflated (strips of six whole bands, 1,998 rows), both read back bit for bit, privately and into the shared
 * window. */
START_TEST(test_model_read_in_strips)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    const int64_t widths[] = {2300, 3};
    lf_model_t *m = lf_test_mlp(1000, widths, 2, -1.0f, 1.0f, -0.5f, 0.5f, 21), *r = NULL;
    char a[300], c[300];
    snprintf(a, sizeof a, "%s/big.h5", tmpdir);
    snprintf(c, sizeof c, "%s/big-chunked.h5", tmpdir);
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, a, m, NULL, 0), LF_OK);
    if (rank == 0) {
        /* The same file with /layers/0/weight rewritten chunked and deflated. */
        char cmd[700];
        snprintf(cmd, sizeof cmd, "cp %s %s", a, c);
        ck_assert_int_eq(system(cmd), 0);
        hid_t f = H5Fopen(c, H5F_ACC_RDWR, H5P_DEFAULT);
        ck_assert_int_ge(H5Ldelete(f, "/layers/0/weight", H5P_DEFAULT), 0);
        hsize_t dims[2] = {2300, 1000}, chunk[2] = {333, 250};
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), sp = H5Screate_simple(2, dims, NULL);
        H5Pset_chunk(dcpl, 2, chunk);
        H5Pset_deflate(dcpl, 1);
        hid_t d =
            H5Dcreate2(f, "/layers/0/weight", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                  lf_model_block(m, 0, LF_SRC_INPUT)->w),
                         0);
        H5Dclose(d);
        H5Sclose(sp);
        H5Pclose(dcpl);
        H5Fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
    const char *files[] = {a, c};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, files[k], &r), LF_OK);
        ck_assert_mem_eq(lf_model_block(r, 0, LF_SRC_INPUT)->w,
                         lf_model_block(m, 0, LF_SRC_INPUT)->w, 2300 * 1000 * sizeof(float));
        ck_assert(lf_model_fingerprint(r) == lf_model_fingerprint(m));
        lf_model_destroy(&r);
        ck_assert_int_eq(lf_h5io_read_model_shared(LF_TEST_COMM, files[k], &r), LF_OK);
        ck_assert(lf_model_fingerprint(r) == lf_model_fingerprint(m));
        lf_model_release(LF_TEST_COMM, &r);
    }
    lf_model_destroy(&m);
}
END_TEST

/* A contiguous dataset whose storage was never allocated (created, never written) reads as its
 * fill value at every rank count, also when some ranks read no row in a batch: HDF5 fills a
 * non-empty selection without a collective call, so such datasets use independent transfers
 * (a collective one left the ranks with nothing to read waiting for ever). */
START_TEST(test_unallocated_contiguous_reads)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    MPI_Comm_size(LF_TEST_COMM, &size);
    char path[300], spec[320];
    snprintf(path, sizeof path, "%s/unalloc.h5", tmpdir);
    snprintf(spec, sizeof spec, "%s:/x", path);
    if (rank == 0) {
        hsize_t dims[2] = {5, 3};
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t d = H5Dcreate2(f, "x", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert(H5Dget_storage_size(d) == 0);
        H5Dclose(d);
        H5Sclose(sp);
        H5Fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *ds = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    ck_assert(!lf_h5io_dataset_direct(ds));
    float buf[15];
    for (int k = 0; k < 15; k++)
        buf[k] = 7.0f;
    int64_t count = rank == 0 ? 5 : 0; /* every other rank reads nothing */
    ck_assert_int_eq(lf_h5io_dataset_read_rows(ds, 0, count, buf), LF_OK);
    for (int k = 0; k < 15; k++)
        ck_assert(buf[k] == (rank == 0 ? 0.0f : 7.0f));
    lf_h5io_dataset_close(&ds);
}
END_TEST

/* A write that cannot happen leaves nothing behind and the model is not there to be read. */
START_TEST(test_write_failure_leaves_nothing)
{
    lf_model_t *m = model_with_skips();
    char path[300];
    snprintf(path, sizeof path, "%s/missing-dir/out.h5", tmpdir);
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, path, m, NULL, 0), LF_ERR_IO);
    ck_assert(lf_test_any_message("missing-dir"));
    lf_error_clear();
    ck_assert(lf_test_all(access(path, F_OK) != 0));
    lf_model_t *r = NULL;
    ck_assert_int_eq(lf_h5io_read_model(LF_TEST_COMM, path, &r), LF_ERR_IO);
    lf_error_clear();
    /* A model with a NaN is never written: what linfold writes it can read back. */
    snprintf(path, sizeof path, "%s/nan.h5", tmpdir);
    m->layers[2].bias[1] = NAN;
    ck_assert_int_eq(lf_h5io_write_model(LF_TEST_COMM, path, m, NULL, 0), LF_ERR_VALUE);
    lf_error_clear();
    ck_assert(lf_test_all(access(path, F_OK) != 0));
    lf_model_destroy(&m);
}
END_TEST

/* Sharded reads: every rank reads its block; gathered they are the dataset, also with fewer
 * rows than ranks. */
START_TEST(test_sharded_reads)
{
    int rank = my_rank(), size = 1;
    MPI_Comm_size(LF_TEST_COMM, &size);
    const int64_t ns[] = {2, 11};
    for (size_t t = 0; t < 2; t++) {
        int64_t n = ns[t], d = 3;
        char path[300], spec[320], yspec[320];
        snprintf(path, sizeof path, "%s/d%zu.h5", tmpdir, t);
        snprintf(spec, sizeof spec, "%s:/group/x", path);
        snprintf(yspec, sizeof yspec, "%s:/group/y", path);
        float x[33];
        int64_t y[11];
        for (int64_t k = 0; k < n * d; k++)
            x[k] = (float)k + 0.5f;
        for (int64_t k = 0; k < n; k++)
            y[k] = k % 3;
        if (rank == 0)
            lf_test_write_data(path, "/group/x", x, n, d, "/group/y", y);
        MPI_Barrier(LF_TEST_COMM);
        lf_dataset_t *ds = NULL, *ls = NULL;
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, yspec, LF_DATA_LABELS, &ls), LF_OK);
        ck_assert_int_eq(lf_h5io_dataset_rows(ds), n);
        ck_assert_int_eq(lf_h5io_dataset_cols(ds), d);
        int64_t begin = 0, count = 0;
        lf_comm_shard(n, rank, size, &begin, &count);
        float buf[33];
        int64_t lab[11];
        ck_assert_int_eq(lf_h5io_dataset_read_rows(ds, begin, count, buf), LF_OK);
        ck_assert_int_eq(lf_h5io_dataset_read_rows(ls, begin, count, lab), LF_OK);
        bool ok = true;
        for (int64_t k = 0; k < count * d; k++)
            ok = ok && buf[k] == x[begin * d + k];
        for (int64_t k = 0; k < count; k++)
            ok = ok && lab[k] == y[begin + k];
        ck_assert(lf_test_all(ok));
        lf_h5io_dataset_close(&ls);
        lf_h5io_dataset_close(&ds);
    }
}
END_TEST

START_TEST(test_dataset_errors)
{
    char path[300], spec[400];
    snprintf(path, sizeof path, "%s/d.h5", tmpdir);
    float x[6] = {0};
    int64_t y[2] = {0, 1};
    if (my_rank() == 0)
        lf_test_write_data(path, "/x", x, 2, 3, "/y", y);
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *ds = NULL;
    struct {
        const char *obj;
        lf_data_kind_t kind;
        lf_err_t code;
        const char *text;
    } cases[] = {
        {":/nope", LF_DATA_SAMPLES, LF_ERR_FORMAT, "missing dataset /nope"},
        {":/a/b/c", LF_DATA_SAMPLES, LF_ERR_FORMAT, "missing dataset /a/b/c"},
        {":/x/y", LF_DATA_SAMPLES, LF_ERR_FORMAT, "missing dataset /x/y"},
        {":/y", LF_DATA_SAMPLES, LF_ERR_FORMAT, "is not a float dataset"},
        {":/x", LF_DATA_LABELS, LF_ERR_FORMAT, "is not an integer dataset"},
        {"", LF_DATA_SAMPLES, LF_ERR_USAGE, "is not of the form FILE.h5:/path"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        snprintf(spec, sizeof spec, "%s%s", path, cases[k].obj);
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, cases[k].kind, &ds),
                         cases[k].code);
        ck_assert_msg(lf_test_any_message(cases[k].text), "case %zu: %s", k, lf_error_message());
        lf_error_clear();
    }
    snprintf(spec, sizeof spec, "%s/none.h5:/x", tmpdir);
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_ERR_IO);
    lf_error_clear();
    /* A directory and a FIFO are not files: the FIFO would block the signature check. */
    snprintf(spec, sizeof spec, "%s:/x", tmpdir);
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_ERR_IO);
    ck_assert(lf_test_any_message("not a regular file"));
    lf_error_clear();
}
END_TEST

/* ---------------------------------------------------------------- hostile model files */

typedef enum {
    H_NONE,
    H_VLEN,                 /* activations as variable-length strings (what h5py writes): valid */
    H_ACT_ARRAY_FIXED_1000, /* activation: an array of 1000 fixed-length strings */
    H_ACT_ARRAY_FIXED_5000,
    H_ACT_ARRAY_VLEN_3000, /* an array of 3000 variable-length strings (48 KB of references:
                               the most a compact attribute holds) */
    H_ACT_LONG,            /* a 100-byte activation */
    H_ACT_INT,             /* an integer activation */
    H_BIAS_EXTERNAL,       /* /layers/1/bias stored in an external file */
    H_WEIGHT_VIRTUAL,      /* /layers/1/weight a virtual dataset */
    H_LAYER_ELINK,         /* /layers/1 an external link */
    H_WEIGHT_FILTER,       /* /layers/1/weight compressed with a filter HDF5 lacks */
    H_WEIGHT_HUGE,         /* /layers/0/weight claims (1e6, 1e6) in a small file */
    H_SKIP_MANY,           /* /layers/1/skip with more entries than layer 1 can read */
    H_WEIGHT_DEFLATE,      /* /layers/1/weight chunked and deflated: valid */
} hostile_t;

static void str_attr(hid_t loc, const char *name, const char *value, bool variable)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, variable ? H5T_VARIABLE : strlen(value) + 1);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(H5Awrite(a, type, variable ? (const void *)&value : (const void *)value), 0);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
}

static void i64_attr(hid_t loc, const char *name, int64_t v)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Sclose(space);
}

static void array_attr(hid_t loc, const char *name, hsize_t n, bool variable)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, variable ? H5T_VARIABLE : 8);
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (variable) {
        const char **v = malloc(n * sizeof *v);
        for (hsize_t k = 0; k < n; k++)
            v[k] = "relu";
        ck_assert_int_ge(H5Awrite(a, type, v), 0);
        free(v);
    } else {
        char *v = calloc(n, 8);
        for (hsize_t k = 0; k < n; k++)
            memcpy(v + 8 * k, "relu", 5);
        ck_assert_int_ge(H5Awrite(a, type, v), 0);
        free(v);
    }
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
}

static void f32(hid_t loc, const char *name, int rank, const hsize_t *dims, const float *v,
                hid_t dcpl)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert_msg(d >= 0, "cannot create %s", name);
    if (v)
        ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), 0);
    H5Dclose(d);
    H5Sclose(space);
}

/* A 3 -> 4 (relu) -> 2 (identity) model, broken by h. Rank 0 writes; everyone waits. */
static void write_hostile(const char *path, hostile_t h)
{
    if (my_rank() == 0) {
        float w[64], b[8];
        lf_test_fill(w, 64, -1.0f, 1.0f, 3);
        lf_test_fill(b, 8, -0.5f, 0.5f, 4);
        char side[320];
        snprintf(side, sizeof side, "%s/side.h5", tmpdir);
        if (h == H_WEIGHT_VIRTUAL || h == H_LAYER_ELINK) { /* the other file they point into */
            hid_t s = H5Fcreate(side, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
            hsize_t d[2] = {4, 3};
            f32(s, "w", 2, d, w, H5P_DEFAULT);
            H5Fclose(s);
        }
        bool vlen = h == H_VLEN;
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        str_attr(f, "format", "linfold-mlp", vlen);
        i64_attr(f, "format_version", 1);
        hid_t layers = H5Gcreate2(f, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        i64_attr(layers, "count", 2);
        for (int i = 0; i < 2; i++) {
            char name[8];
            snprintf(name, sizeof name, "%d", i);
            if (i == 1 && h == H_LAYER_ELINK) {
                H5Lcreate_external(side, "/", layers, name, H5P_DEFAULT, H5P_DEFAULT);
                continue;
            }
            hid_t g = H5Gcreate2(layers, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            bool one = i == 1;
            const char *act = one ? "identity" : "relu";
            if (one && h == H_ACT_ARRAY_FIXED_1000)
                array_attr(g, "activation", 1000, false);
            else if (one && h == H_ACT_ARRAY_FIXED_5000)
                array_attr(g, "activation", 5000, false);
            else if (one && h == H_ACT_ARRAY_VLEN_3000)
                array_attr(g, "activation", 3000, true);
            else if (one && h == H_ACT_LONG)
                str_attr(g, "activation",
                         "relu_relu_relu_relu_relu_relu_relu_relu_relu_relu_relu_"
                         "relu_relu_relu_relu_relu_relu_relu_relu",
                         vlen);
            else if (one && h == H_ACT_INT)
                i64_attr(g, "activation", 7);
            else
                str_attr(g, "activation", act, vlen);
            hsize_t wd[2] = {(hsize_t)(one ? 2 : 4), (hsize_t)(one ? 4 : 3)}, bd = wd[0];
            hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
            if (!one && h == H_WEIGHT_HUGE) {
                hsize_t huge[2] = {1000000, 1000000}, chunk[2] = {1, 1000};
                H5Pset_chunk(dcpl, 2, chunk);
                f32(g, "weight", 2, huge, NULL, dcpl); /* declared, never written */
            } else if (one && h == H_WEIGHT_VIRTUAL) {
                hid_t vspace = H5Screate_simple(2, wd, NULL),
                      sspace = H5Screate_simple(2, wd, NULL);
                H5Pset_virtual(dcpl, vspace, side, "/w", sspace);
                f32(g, "weight", 2, wd, NULL, dcpl);
                H5Sclose(vspace);
                H5Sclose(sspace);
            } else if (one && (h == H_WEIGHT_FILTER || h == H_WEIGHT_DEFLATE)) {
                hsize_t chunk[2] = {1, 4};
                H5Pset_chunk(dcpl, 2, chunk);
                if (h == H_WEIGHT_DEFLATE) {
                    H5Pset_deflate(dcpl, 6);
                } else {
                    unsigned level = 1;
                    /* 32004 is LZ4, registered with The HDF Group and not built into Debian's
                     * HDF5; optional, so HDF5 lets the file be written without it. */
                    H5Pset_filter(dcpl, 32004, H5Z_FLAG_OPTIONAL, 1, &level);
                }
                f32(g, "weight", 2, wd, w, dcpl);
            } else {
                f32(g, "weight", 2, wd, w, H5P_DEFAULT);
            }
            H5Pclose(dcpl);
            if (one && h == H_BIAS_EXTERNAL) {
                hid_t ext = H5Pcreate(H5P_DATASET_CREATE);
                H5Pset_external(ext, "/etc/passwd", 0, bd * sizeof(float));
                f32(g, "bias", 1, &bd, NULL, ext);
                H5Pclose(ext);
            } else {
                f32(g, "bias", 1, &bd, b, H5P_DEFAULT);
            }
            if (one && h == H_SKIP_MANY) {
                hid_t skip = H5Gcreate2(g, "skip", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                hsize_t sd[2] = {2, 3};
                f32(skip, "input", 2, sd, w, H5P_DEFAULT);
                f32(skip, "7", 2, sd, w, H5P_DEFAULT);
                H5Gclose(skip);
            }
            H5Gclose(g);
        }
        H5Gclose(layers);
        ck_assert_int_ge(H5Fclose(f), 0);
    }
    MPI_Barrier(LF_TEST_COMM);
}

/* Issue 7, items 1, 2 and 5, and the allocation bound: each hostile file gives its error (the
 * same on every rank), never a crash, a stack overflow, an unbounded allocation, or bytes from
 * outside the file. */
START_TEST(test_hostile_models)
{
    struct {
        hostile_t h;
        lf_err_t code;
        const char *text;
    } cases[] = {
        {H_NONE, LF_OK, NULL},
        {H_VLEN, LF_OK, NULL},
        {H_WEIGHT_DEFLATE, LF_OK, NULL},
        {H_ACT_ARRAY_FIXED_1000, LF_ERR_FORMAT,
         "/layers/1: attribute 'activation' is not a single"},
        {H_ACT_ARRAY_FIXED_5000, LF_ERR_FORMAT,
         "/layers/1: attribute 'activation' is not a single"},
        {H_ACT_ARRAY_VLEN_3000, LF_ERR_FORMAT, "/layers/1: attribute 'activation' is not a single"},
        {H_ACT_LONG, LF_ERR_FORMAT, "'activation' is 64 bytes or longer"},
        {H_ACT_INT, LF_ERR_FORMAT, "'activation' is not a string"},
        {H_BIAS_EXTERNAL, LF_ERR_FORMAT,
         "/layers/1/bias keeps its data in the external file "
         "'/etc/passwd'"},
        {H_WEIGHT_VIRTUAL, LF_ERR_FORMAT, "/layers/1/weight is a virtual dataset"},
        {H_LAYER_ELINK, LF_ERR_FORMAT, "/layers/1 is an external link"},
        {H_WEIGHT_FILTER, LF_ERR_FORMAT, "/layers/1/weight is compressed with HDF5 filter 32004"},
        {H_WEIGHT_HUGE, LF_ERR_FORMAT,
         "/layers/0/weight has a shape that needs 4000000000000 "
         "bytes"},
        {H_SKIP_MANY, LF_ERR_FORMAT, "/layers/1/skip has 2 entries"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char path[300];
        snprintf(path, sizeof path, "%s/hostile%zu.h5", tmpdir, k);
        write_hostile(path, cases[k].h);
        lf_model_t *m = NULL;
        lf_err_t got = lf_h5io_read_model(LF_TEST_COMM, path, &m);
        ck_assert_msg(got == cases[k].code, "case %zu: %s: %s", k, lf_err_name(got),
                      lf_error_message());
        if (cases[k].text)
            ck_assert_msg(lf_test_any_message(cases[k].text) && lf_test_any_message(path),
                          "case %zu: %s", k, lf_error_message());
        ck_assert(got != LF_OK || (m && m->n_layers == 2 && m->n_in == 3));
        lf_error_clear();
        lf_model_destroy(&m);
    }
}
END_TEST

/* Finds the first byte sequence in a file and overwrites len bytes at offset from it. */
static void patch(const char *path, const char *find, long offset, const void *bytes, size_t len)
{
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    size_t flen = strlen(find);
    long at = -1;
    for (size_t k = 0; k + flen <= n && at < 0; k++)
        if (memcmp(buf + k, find, flen) == 0)
            at = (long)k;
    ck_assert_msg(at >= 0, "%s not found in %s", find, path);
    fseek(f, at + offset, SEEK_SET);
    fwrite(bytes, 1, len, f);
    fclose(f);
}

/* Issue 7, item 2: corrupted global-heap bytes behind a variable-length string made HDF5 1.10.8
 * crash (a huge object size read out of bounds) or fail inside H5Aread. The reader runs in a
 * child process: every variant is an error naming the file and the attribute. */
START_TEST(test_corrupt_string_heap)
{
    /* GCOL header: signature, version, 3 reserved, collection size (8); then objects: index (2),
     * reference count (2), reserved (4), size (8), data. */
    const uint64_t huge_collection = 0x7fffffffffffULL, huge_object = 0xffffffffffULL;
    const uint16_t bad_index = 9999;
    struct {
        long offset;
        const void *bytes;
        size_t len;
    } cases[] = {
        {8, &huge_collection, 8},
        {24, &huge_object, 8},
        {16, &bad_index, 2},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char path[300];
        snprintf(path, sizeof path, "%s/heap%zu.h5", tmpdir, k);
        write_hostile(path, H_VLEN);
        if (my_rank() == 0)
            patch(path, "GCOL", cases[k].offset, cases[k].bytes, cases[k].len);
        MPI_Barrier(LF_TEST_COMM);
        lf_model_t *m = NULL;
        lf_err_t got = lf_h5io_read_model(LF_TEST_COMM, path, &m);
        ck_assert_msg(got == LF_ERR_FORMAT, "case %zu: %s: %s", k, lf_err_name(got),
                      lf_error_message());
        /* Either HDF5 reports the damage ('format' cannot be read or is wrong) or the reader
         * process dies of it ("the file is corrupt"): both name the file. */
        bool named = lf_test_any_message(path) &&
                     (lf_test_any_message("'format'") || lf_test_any_message("file is corrupt"));
        char msg[1100];
        snprintf(msg, sizeof msg, "%s", lf_error_message());
        lf_error_clear();
        ck_assert_msg(named, "case %zu: %s", k, msg);
        ck_assert_ptr_null(m);
    }
}
END_TEST

/* ---------------------------------------------------------------- hostile data files */

/* Issue 7, item 8: rows past the end of a file truncated while it is read came back as zeros
 * with exit 0. Every read checks that the file still reaches the end of the dataset. */
START_TEST(test_truncated_while_reading)
{
    char path[300], spec[320];
    enum { N = 64, D = 16 };
    float x[N * D];
    lf_test_fill(x, N * D, -1.0f, 1.0f, 9);
    snprintf(path, sizeof path, "%s/t.h5", tmpdir);
    snprintf(spec, sizeof spec, "%s:/x", path);
    if (my_rank() == 0)
        lf_test_write_data(path, "/x", x, N, D, NULL, NULL);
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *ds = NULL;
    float buf[N * D];
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    ck_assert_int_eq(lf_h5io_dataset_read_rows(ds, 0, 8, buf), LF_OK);
    MPI_Barrier(LF_TEST_COMM);
    if (my_rank() == 0)
        ck_assert_int_eq(truncate(path, 2048), 0);
    MPI_Barrier(LF_TEST_COMM);
    lf_err_t got = lf_h5io_dataset_read_rows(ds, N - 8, 8, buf);
    ck_assert_int_eq(got, LF_ERR_IO);
    ck_assert(lf_test_any_message("shrank"));
    lf_error_clear();
    lf_h5io_dataset_close(&ds);
}
END_TEST

/* A sample dataset behind an external link, or stored in an external file, is refused. */
START_TEST(test_hostile_data)
{
    char path[300], other[300], spec[320];
    snprintf(path, sizeof path, "%s/h.h5", tmpdir);
    snprintf(other, sizeof other, "%s/other.h5", tmpdir);
    float x[12] = {0};
    if (my_rank() == 0) {
        lf_test_write_data(other, "/x", x, 4, 3, NULL, NULL);
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        H5Lcreate_external(other, "/x", f, "linked", H5P_DEFAULT, H5P_DEFAULT);
        hid_t g = H5Gcreate2(f, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Lcreate_external(other, "/", f, "elink_group", H5P_DEFAULT, H5P_DEFAULT);
        hid_t ext = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_external(ext, "/etc/passwd", 0, 12 * sizeof(float));
        hsize_t dims[2] = {4, 3};
        f32(g, "outside", 2, dims, NULL, ext);
        H5Pclose(ext);
        H5Gclose(g);
        H5Fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
    const char *objs[] = {"/linked", "/elink_group/x", "/g/outside"};
    const char *texts[] = {"/linked is an external link", "/elink_group is an external link",
                           "external file '/etc/passwd'"};
    for (int k = 0; k < 3; k++) {
        lf_dataset_t *ds = NULL;
        snprintf(spec, sizeof spec, "%s:%s", path, objs[k]);
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds),
                         LF_ERR_FORMAT);
        ck_assert_msg(lf_test_any_message(texts[k]), "case %d: %s", k, lf_error_message());
        lf_error_clear();
    }
}
END_TEST

/* A chunked dataset whose chunks were only partly written (h5py leaves the rest unallocated; they
 * read as the fill value) reads at every rank count. HDF5 1.10.8's collective chunked reads fail
 * on it with MPI_ERR_TYPE, which is why chunked data moves with independent transfers. */
START_TEST(test_sparse_chunks)
{
    int rank = my_rank(), size = 1;
    MPI_Comm_size(LF_TEST_COMM, &size);
    enum { N = 40, D = 4 };
    char path[300], spec[320];
    snprintf(path, sizeof path, "%s/sparse.h5", tmpdir);
    snprintf(spec, sizeof spec, "%s:/x", path);
    const float fill = 0.5f;
    float rows[8 * D];
    lf_test_fill(rows, 8 * D, -1.0f, 1.0f, 77);
    if (rank == 0) {
        hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        hsize_t dims[2] = {N, D}, chunk[2] = {4, D}, start[2] = {16, 0}, count[2] = {8, D};
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, 2, chunk);
        H5Pset_fill_value(dcpl, H5T_NATIVE_FLOAT, &fill);
        hid_t space = H5Screate_simple(2, dims, NULL);
        hid_t d = H5Dcreate2(f, "x", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        hid_t mem = H5Screate_simple(2, count, NULL);
        H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
        ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, rows), 0);
        H5Sclose(mem);
        H5Sclose(space);
        H5Dclose(d);
        H5Pclose(dcpl);
        H5Fclose(f);
    }
    MPI_Barrier(LF_TEST_COMM);
    lf_dataset_t *ds = NULL;
    ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
    int64_t begin = 0, count = 0;
    lf_comm_shard(N, rank, size, &begin, &count);
    float buf[N * D];
    ck_assert_int_eq(lf_h5io_dataset_read_rows(ds, begin, count, buf), LF_OK);
    bool ok = true;
    for (int64_t r = 0; r < count; r++)
        for (int c = 0; c < D; c++) {
            int64_t g = begin + r;
            float want = g >= 16 && g < 24 ? rows[(g - 16) * D + c] : fill;
            ok = ok && buf[r * D + c] == want;
        }
    ck_assert(lf_test_all(ok));
    lf_h5io_dataset_close(&ds);
}
END_TEST

/* Filtered chunks whose raw bytes were written directly (H5Dwrite_chunk), as a corrupted or
 * hostile file holds them. HDF5 1.10.8 copies a whole chunk out of whatever its filters produce:
 * each bad chunk sits in the middle (rows 16 to 23), where the preflight's first and last rows do
 * not reach, so only the per-chunk decoding check stands between it and the library. */
enum { FC_ROWS = 32, FC_COLS = 5, FC_CHUNK = 8, FC_BYTES = FC_CHUNK * FC_COLS * 4 };

typedef enum {
    FC_VALID,       /* shuffle + deflate; chunk 2 skips deflate by its filter mask */
    FC_SHORT,       /* deflate: chunk 2 inflates to 3 bytes fewer than a chunk */
    FC_BOMB,        /* deflate: chunk 2 inflates to 1 MiB */
    FC_GARBAGE,     /* deflate: chunk 2 is not a deflate stream */
    FC_CUT,         /* deflate: chunk 2's stream is cut in half */
    FC_NO_CHECKSUM, /* Fletcher-32: chunk 2 is 3 bytes, shorter than its checksum */
} filtered_case_t;

static void write_filtered(const char *path, filtered_case_t c, const float *x)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {FC_ROWS, FC_COLS}, chunk[2] = {FC_CHUNK, FC_COLS};
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    if (c == FC_VALID)
        H5Pset_shuffle(dcpl);
    if (c == FC_NO_CHECKSUM)
        H5Pset_fletcher32(dcpl);
    else
        H5Pset_deflate(dcpl, 6);
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "x", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert_int_ge(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x), 0);
    /* Chunk 2's raw bytes. */
    static unsigned char raw[1 << 21], plain[1 << 20];
    uLongf len = sizeof raw;
    uint32_t mask = 0;
    const unsigned char *rows = (const unsigned char *)(x + 2 * FC_CHUNK * FC_COLS);
    switch (c) {
    case FC_VALID: /* shuffled 4-byte elements, deflate skipped (bit 1) */
        for (size_t j = 0; j < 4; j++)
            for (size_t i = 0; i < FC_BYTES / 4; i++)
                raw[j * (FC_BYTES / 4) + i] = rows[i * 4 + j];
        len = FC_BYTES;
        mask = 1u << 1;
        break;
    case FC_SHORT: ck_assert_int_eq(compress2(raw, &len, rows, FC_BYTES - 3, 6), Z_OK); break;
    case FC_BOMB: ck_assert_int_eq(compress2(raw, &len, plain, sizeof plain, 9), Z_OK); break;
    case FC_GARBAGE:
        memset(raw, 0x5a, 64);
        len = 64;
        break;
    case FC_CUT:
        ck_assert_int_eq(compress2(raw, &len, rows, FC_BYTES, 6), Z_OK);
        len /= 2;
        break;
    case FC_NO_CHECKSUM: len = 3; break;
    }
    hsize_t at[2] = {2 * FC_CHUNK, 0};
    ck_assert_int_ge(H5Dwrite_chunk(d, H5P_DEFAULT, mask, at, len, raw), 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(dcpl);
    H5Fclose(f);
}

START_TEST(test_filtered_chunks)
{
    int rank = my_rank(), size = 1;
    MPI_Comm_size(LF_TEST_COMM, &size);
    float x[FC_ROWS * FC_COLS], buf[FC_ROWS * FC_COLS];
    lf_test_fill(x, FC_ROWS * FC_COLS, -1.0f, 1.0f, 91);
    const char *texts[] = {
        NULL,
        "the chunk of rows 16 to 23, columns 0 to 4 (",
        "inflates to more bytes than a chunk holds",
        "is not a valid deflate stream",
        "ends before its deflate stream does",
        "is shorter than its Fletcher-32 checksum",
    };
    for (int c = FC_VALID; c <= FC_NO_CHECKSUM; c++) {
        char path[300], spec[320];
        snprintf(path, sizeof path, "%s/filtered-%d.h5", tmpdir, c);
        snprintf(spec, sizeof spec, "%s:/x", path);
        if (rank == 0)
            write_filtered(path, c, x);
        MPI_Barrier(LF_TEST_COMM);
        lf_dataset_t *ds = NULL;
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &ds), LF_OK);
        int64_t begin = 0, count = 0;
        lf_comm_shard(FC_ROWS, rank, size, &begin, &count);
        /* Twice: the second pass finds the chunk rows already checked. */
        lf_err_t rc = LF_OK;
        for (int pass = 0; pass < 2 && rc == LF_OK; pass++)
            rc = lf_h5io_dataset_read_rows(ds, begin, count, buf);
        if (c == FC_VALID) {
            ck_assert(
                lf_test_all(rc == LF_OK && memcmp(buf, x + begin * FC_COLS,
                                                  (size_t)(count * FC_COLS) * sizeof *x) == 0));
        } else {
            bool owns_chunk = begin < 3 * FC_CHUNK && begin + count > 2 * FC_CHUNK;
            ck_assert(lf_test_all(owns_chunk ? rc == LF_ERR_FORMAT : rc == LF_OK));
            ck_assert_msg(lf_test_any_message(texts[c]), "case %d: %s", c, lf_error_message());
            ck_assert(lf_test_any_message("; the file is corrupt"));
        }
        lf_error_clear();
        lf_h5io_dataset_close(&ds);
    }
}
END_TEST

/* Labels stored as int64 (read with pread) beside samples that HDF5 must convert or gather
 * (float64, chunked float32) reach the blocks as stored, as they do beside contiguous float32
 * samples: every row's label and values are checked against the formula that wrote them. */
enum { LB_ROWS = 37, LB_COLS = 3 };

typedef struct {
    int64_t seen, bad;
} label_check_t;

static double lb_value(int64_t row, int64_t col) { return (double)(row * LB_COLS + col) + 0.25; }
static int64_t lb_label(int64_t row) { return 3 * row + 1; }

static lf_err_t check_label_block(const lf_batch_t *b, int tid, void *ctx)
{
    (void)tid;
    label_check_t *c = ctx;
    for (int64_t j = b->first; j < b->first + b->valid; j++) {
        int64_t row = b->row0 + j;
        bool ok = b->labels && b->labels[j] == lb_label(row);
        for (int64_t k = 0; k < b->cols; k++)
            ok = ok && b->x[j * b->cols + k] == (float)lb_value(row, k);
        c->seen++;
        c->bad += ok ? 0 : 1;
    }
    return LF_OK;
}

static void write_label_case(const char *path, hid_t xtype, bool chunked)
{
    double x[LB_ROWS * LB_COLS];
    int64_t y[LB_ROWS];
    for (int64_t r = 0; r < LB_ROWS; r++) {
        y[r] = lb_label(r);
        for (int64_t k = 0; k < LB_COLS; k++)
            x[r * LB_COLS + k] = lb_value(r, k);
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {LB_ROWS, LB_COLS}, chunk[2] = {5, LB_COLS}, ny = LB_ROWS;
    hid_t s = H5Screate_simple(2, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunked)
        H5Pset_chunk(dcpl, 2, chunk);
    hid_t ds = H5Dcreate2(f, "x", xtype, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    H5Sclose(s);
    H5Pclose(dcpl);
    s = H5Screate_simple(1, &ny, NULL);
    ds = H5Dcreate2(f, "y", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(ds);
    H5Sclose(s);
    H5Fclose(f);
}

START_TEST(test_labels_beside_converted_samples)
{
    const struct {
        const char *name;
        hid_t type;
        bool chunked;
    } cases[] = {{"f32-contiguous", H5T_IEEE_F32LE, false},
                 {"f64-contiguous", H5T_IEEE_F64LE, false},
                 {"f32-chunked", H5T_IEEE_F32LE, true}};
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        char path[300], xspec[320], yspec[320];
        snprintf(path, sizeof path, "%s/labels-%s.h5", tmpdir, cases[t].name);
        snprintf(xspec, sizeof xspec, "%s:/x", path);
        snprintf(yspec, sizeof yspec, "%s:/y", path);
        if (my_rank() == 0)
            write_label_case(path, cases[t].type, cases[t].chunked);
        MPI_Barrier(LF_TEST_COMM);
        lf_dataset_t *x = NULL, *y = NULL;
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, xspec, LF_DATA_SAMPLES, &x), LF_OK);
        ck_assert_int_eq(lf_h5io_dataset_open(LF_TEST_COMM, yspec, LF_DATA_LABELS, &y), LF_OK);
        lf_batch_opts_t opts = {.batch_rows = 4, .threads = 1};
        label_check_t c = {0, 0};
        ck_assert_int_eq(
            lf_batch_run(LF_TEST_COMM, x, y, NULL, 0, &opts, check_label_block, NULL, &c), LF_OK);
        int64_t seen = 0, bad = 0;
        MPI_Allreduce(&c.seen, &seen, 1, MPI_INT64_T, MPI_SUM, LF_TEST_COMM);
        MPI_Allreduce(&c.bad, &bad, 1, MPI_INT64_T, MPI_SUM, LF_TEST_COMM);
        ck_assert_msg(seen == LB_ROWS && bad == 0, "%s: %lld rows seen, %lld wrong", cases[t].name,
                      (long long)seen, (long long)bad);
        lf_h5io_dataset_close(&y);
        lf_h5io_dataset_close(&x);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("h5io");
    TCase *tc = tcase_create("h5io");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_model_round_trip_is_bitwise);
    tcase_add_test(tc, test_model_read_in_strips);
    tcase_add_test(tc, test_unallocated_contiguous_reads);
    tcase_add_test(tc, test_write_failure_leaves_nothing);
    tcase_add_test(tc, test_sharded_reads);
    tcase_add_test(tc, test_dataset_errors);
    tcase_add_test(tc, test_hostile_models);
    tcase_add_test(tc, test_corrupt_string_heap);
    tcase_add_test(tc, test_truncated_while_reading);
    tcase_add_test(tc, test_hostile_data);
    tcase_add_test(tc, test_sparse_chunks);
    tcase_add_test(tc, test_filtered_chunks);
    tcase_add_test(tc, test_labels_beside_converted_samples);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
