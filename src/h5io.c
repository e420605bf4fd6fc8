/* HDF5 I/O for models, sample/label datasets, and row-parallel outputs.
 *
 * Files are opened through the MPI-IO driver by every rank of the communicator; metadata calls are
 * therefore collective and every rank sees the same validation errors, so validation failures just
 * return. Raw data moves with collective transfers. Model files are small next to the sample data
 * and every rank needs all of it, so every rank selects the whole dataset (the MPI-IO layer
 * aggregates the reads). Model files are written by rank 0 alone through the serial driver, since
 * every rank holds the same model; the bytes are deterministic (object timestamps are off), so the
 * same model gives the same file whatever the rank count. */
#include "linfold/h5io.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"
#include "h5io_impl.h"

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    /* Keep the innermost description: it says what went wrong, the outer ones where. */
    if (n == 0) {
        char *buf = data;
        snprintf(buf, 256, "%s", e->desc ? e->desc : "unknown");
    }
    return 0;
}

void lf__h5_error_text(char *buf, size_t cap)
{
    snprintf(buf, cap, "no details");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, buf);
    H5Eclear2(H5E_DEFAULT);
}

void lf__close_id(hid_t *id)
{
    if (*id < 0)
        return;
    switch (H5Iget_type(*id)) {
    case H5I_FILE: H5Fclose(*id); break;
    case H5I_GROUP: H5Gclose(*id); break;
    case H5I_DATASET: H5Dclose(*id); break;
    case H5I_DATASPACE: H5Sclose(*id); break;
    case H5I_DATATYPE: H5Tclose(*id); break;
    case H5I_ATTR: H5Aclose(*id); break;
    case H5I_GENPROP_LST: H5Pclose(*id); break;
    default: break;
    }
    *id = H5I_INVALID_HID;
}

htri_t lf__h5_path_exists(hid_t loc, const char *path)
{
    /* H5Lexists fails on a path whose intermediate groups are missing, so walk it link by link. */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            htri_t ok = H5Lexists(loc, buf, H5P_DEFAULT);
            if (ok <= 0) {
                H5Eclear2(H5E_DEFAULT);
                return 0;
            }
            if (saved == '\0')
                return 1;
            if (H5Oexists_by_name(loc, buf, H5P_DEFAULT) <= 0) {
                H5Eclear2(H5E_DEFAULT);
                return 0;
            }
            *p = saved;
        }
    }
}

void lf_h5io_init(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* ---------------------------------------------------------------- files */

/* The checks before H5Fopen run on every rank: a file on node-local storage may exist on some
 * ranks only, so the verdict is agreed before the collective open. */
static lf_err_t check_readable(const char *path)
{
    lf_err_t err = LF_OK;
    LF_CHECK(access(path, F_OK) == 0, LF_ERR_IO, "%s: no such file", path);
    LF_CHECK(access(path, R_OK) == 0, LF_ERR_IO, "%s: permission denied", path);
    htri_t is_h5 = H5Fis_hdf5(path);
    H5Eclear2(H5E_DEFAULT);
    LF_CHECK(is_h5 > 0, LF_ERR_FORMAT, "%s: not an HDF5 file", path);
cleanup:
    return err;
}

lf_err_t lf__open_file(MPI_Comm comm, const char *path, hid_t *file)
{
    lf_err_t err = LF_OK;
    hid_t fapl = H5I_INVALID_HID;
    *file = H5I_INVALID_HID;
    LF_CALL(lf_comm_agree(comm, check_readable(path)));
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    LF_CALL_H5(fapl, "%s: H5Pcreate", path);
    LF_CALL_H5(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), "%s: MPI-IO driver", path);
    *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    LF_CALL_H5(*file, "%s: cannot open", path);
cleanup:
    lf__close_id(&fapl);
    return err;
}

hid_t lf__collective_dxpl(void)
{
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (dxpl >= 0 && H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        lf__close_id(&dxpl);
    return dxpl;
}

/* ---------------------------------------------------------------- attributes */

lf_err_t lf__read_string_attr(hid_t obj, const char *name, const char *where, char *buf,
                                 size_t cap)
{
    lf_err_t err = LF_OK;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, mem = H5I_INVALID_HID;
    char *vstr = NULL;
    htri_t exists = H5Aexists(obj, name);
    LF_CALL_H5(exists, "%s: attribute %s", where, name);
    LF_CHECK(exists > 0, LF_ERR_FORMAT, "%s: missing attribute '%s'", where, name);
    attr = H5Aopen(obj, name, H5P_DEFAULT);
    LF_CALL_H5(attr, "%s: cannot open attribute '%s'", where, name);
    type = H5Aget_type(attr);
    LF_CALL_H5(type, "%s: attribute '%s' type", where, name);
    LF_CHECK(H5Tget_class(type) == H5T_STRING, LF_ERR_FORMAT,
             "%s: attribute '%s' is not a string", where, name);
    mem = H5Tcopy(H5T_C_S1);
    LF_CALL_H5(mem, "%s: string type", where);
    if (H5Tis_variable_str(type) > 0) {
        LF_CALL_H5(H5Tset_size(mem, H5T_VARIABLE), "%s: string type", where);
        LF_CALL_H5(H5Tset_cset(mem, H5Tget_cset(type)), "%s: string type", where);
        LF_CALL_H5(H5Aread(attr, mem, &vstr), "%s: cannot read attribute '%s'", where, name);
        LF_CHECK(vstr != NULL, LF_ERR_FORMAT, "%s: attribute '%s' is empty", where, name);
        snprintf(buf, cap, "%s", vstr);
    } else {
        size_t size = H5Tget_size(type);
        LF_CHECK(size < cap, LF_ERR_FORMAT, "%s: attribute '%s' is longer than %zu bytes", where,
                 name, cap - 1);
        LF_CALL_H5(H5Tset_size(mem, size + 1), "%s: string type", where);
        memset(buf, 0, cap);
        LF_CALL_H5(H5Aread(attr, mem, buf), "%s: cannot read attribute '%s'", where, name);
    }
cleanup:
    if (vstr)
        H5free_memory(vstr);
    lf__close_id(&mem);
    lf__close_id(&type);
    lf__close_id(&attr);
    return err;
}

/* Reads a scalar numeric attribute of class cls (H5T_INTEGER or H5T_FLOAT) as mem_type. */
lf_err_t lf__read_number_attr(hid_t obj, const char *name, const char *where, H5T_class_t cls,
                                 hid_t mem_type, void *value)
{
    lf_err_t err = LF_OK;
    hid_t attr = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    htri_t exists = H5Aexists(obj, name);
    LF_CALL_H5(exists, "%s: attribute %s", where, name);
    LF_CHECK(exists > 0, LF_ERR_FORMAT, "%s: missing attribute '%s'", where, name);
    attr = H5Aopen(obj, name, H5P_DEFAULT);
    LF_CALL_H5(attr, "%s: cannot open attribute '%s'", where, name);
    type = H5Aget_type(attr);
    LF_CALL_H5(type, "%s: attribute '%s' type", where, name);
    space = H5Aget_space(attr);
    LF_CALL_H5(space, "%s: attribute '%s' space", where, name);
    H5T_class_t got = H5Tget_class(type);
    LF_CHECK(got == cls || (cls == H5T_FLOAT && got == H5T_INTEGER), LF_ERR_FORMAT,
             "%s: attribute '%s' is not %s", where, name,
             cls == H5T_INTEGER ? "an integer" : "a number");
    LF_CHECK(H5Sget_simple_extent_npoints(space) == 1, LF_ERR_FORMAT,
             "%s: attribute '%s' is not a scalar", where, name);
    LF_CALL_H5(H5Aread(attr, mem_type, value), "%s: cannot read attribute '%s'", where, name);
cleanup:
    lf__close_id(&space);
    lf__close_id(&type);
    lf__close_id(&attr);
    return err;
}

lf_err_t lf__write_string_attr(hid_t obj, const char *name, const char *value)
{
    lf_err_t err = LF_OK;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    type = H5Tcopy(H5T_C_S1);
    LF_CALL_H5(type, "string type");
    LF_CALL_H5(H5Tset_size(type, strlen(value) + 1), "string type");
    LF_CALL_H5(H5Tset_strpad(type, H5T_STR_NULLTERM), "string type");
    space = H5Screate(H5S_SCALAR);
    LF_CALL_H5(space, "scalar space");
    attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    LF_CALL_H5(attr, "cannot create attribute '%s'", name);
    LF_CALL_H5(H5Awrite(attr, type, value), "cannot write attribute '%s'", name);
cleanup:
    lf__close_id(&attr);
    lf__close_id(&space);
    lf__close_id(&type);
    return err;
}

lf_err_t lf__write_number_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                                  const void *value)
{
    lf_err_t err = LF_OK;
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    space = H5Screate(H5S_SCALAR);
    LF_CALL_H5(space, "scalar space");
    attr = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    LF_CALL_H5(attr, "cannot create attribute '%s'", name);
    LF_CALL_H5(H5Awrite(attr, mem_type, value), "cannot write attribute '%s'", name);
cleanup:
    lf__close_id(&attr);
    lf__close_id(&space);
    return err;
}

/* ---------------------------------------------------------------- datasets */

/* Opens a float dataset of the given rank, checking its class and rank; dims receives its shape. */
lf_err_t lf__open_float_dataset(hid_t loc, const char *name, const char *file,
                                   const char *path, int rank, hsize_t *dims, hid_t *dset)
{
    lf_err_t err = LF_OK;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    *dset = H5I_INVALID_HID;
    htri_t exists = H5Lexists(loc, name, H5P_DEFAULT);
    LF_CHECK(exists > 0, LF_ERR_FORMAT, "%s: missing dataset %s", file, path);
    H5O_info_t info;
    LF_CALL_H5(H5Oget_info_by_name(loc, name, &info, H5P_DEFAULT), "%s: %s", file, path);
    LF_CHECK(info.type == H5O_TYPE_DATASET, LF_ERR_FORMAT, "%s: %s is not a dataset", file, path);
    *dset = H5Dopen2(loc, name, H5P_DEFAULT);
    LF_CALL_H5(*dset, "%s: cannot open %s", file, path);
    type = H5Dget_type(*dset);
    LF_CALL_H5(type, "%s: %s type", file, path);
    LF_CHECK(H5Tget_class(type) == H5T_FLOAT, LF_ERR_FORMAT,
             "%s: %s has a non-float type, expected float32", file, path);
    space = H5Dget_space(*dset);
    LF_CALL_H5(space, "%s: %s space", file, path);
    int got = H5Sget_simple_extent_ndims(space);
    LF_CHECK(got == rank, LF_ERR_SHAPE, "%s: %s has %d dimension%s, expected %d", file, path, got,
             got == 1 ? "" : "s", rank);
    H5Sget_simple_extent_dims(space, dims, NULL);
cleanup:
    if (err != LF_OK)
        lf__close_id(dset);
    lf__close_id(&space);
    lf__close_id(&type);
    return err;
}

/* Reads a whole float dataset on every rank into dst (count floats). */
static lf_err_t read_all_floats(hid_t dset, float *dst, const char *file, const char *path)
{
    lf_err_t err = LF_OK;
    hid_t dxpl = lf__collective_dxpl();
    LF_CALL_H5(dxpl, "transfer list");
    LF_CALL_H5(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, dxpl, dst), "%s: cannot read %s",
               file, path);
cleanup:
    lf__close_id(&dxpl);
    return err;
}

/* Parses a skip block name: "input" or a canonical non-negative decimal. */
static bool parse_src(const char *name, int *src)
{
    if (strcmp(name, "input") == 0) {
        *src = LF_SRC_INPUT;
        return true;
    }
    if (!name[0] || (name[0] == '0' && name[1]) || strlen(name) > 9)
        return false;
    for (const char *p = name; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    *src = atoi(name);
    return true;
}

typedef struct {
    int src;
    char name[64];
} skip_entry_t;

static int cmp_skip(const void *a, const void *b)
{
    return ((const skip_entry_t *)a)->src - ((const skip_entry_t *)b)->src;
}

/* Validation failures here come from file contents every rank reads alike; only allocations can
 * fail on one rank, so they are agreed before the next collective read. */
static lf_err_t read_layer(MPI_Comm comm, hid_t layers, int i, const char *file, lf_model_t *m,
                           int64_t *n_in)
{
    lf_err_t err = LF_OK;
    hid_t grp = H5I_INVALID_HID, dset = H5I_INVALID_HID, skip = H5I_INVALID_HID;
    skip_entry_t *entries = NULL;
    char name[32], path[96], act_name[64];
    hsize_t dims[2] = {0, 0};
    snprintf(name, sizeof name, "%d", i);
    snprintf(path, sizeof path, "/layers/%d", i);
    LF_CHECK(H5Lexists(layers, name, H5P_DEFAULT) > 0, LF_ERR_FORMAT, "%s: missing group %s", file,
             path);
    grp = H5Gopen2(layers, name, H5P_DEFAULT);
    LF_CALL_H5(grp, "%s: cannot open group %s", file, path);

    char where[4200];
    snprintf(where, sizeof where, "%s: %s", file, path);
    LF_CALL(lf__read_string_attr(grp, "activation", where, act_name, sizeof act_name));
    lf_act_t act;
    lf_err_t perr = lf_act_parse(act_name, &act);
    if (perr != LF_OK) {
        lf_error_clear();
        LF_FAIL(LF_ERR_FORMAT,
                "%s: %s has unknown activation \"%s\" (expected relu, leaky_relu, identity, "
                "sigmoid, tanh or softmax)",
                file, path, act_name);
    }
    double alpha = 0.0;
    if (act == LF_ACT_LEAKY_RELU) {
        LF_CALL(lf__read_number_attr(grp, "alpha", where, H5T_FLOAT, H5T_NATIVE_DOUBLE, &alpha));
    }

    snprintf(path, sizeof path, "/layers/%d/weight", i);
    LF_CALL(lf__open_float_dataset(grp, "weight", file, path, 2, dims, &dset));
    int64_t in_expected = i == 0 ? (int64_t)dims[1] : m->layers[i - 1].n_out;
    LF_CHECK(dims[0] >= 1 && dims[1] >= 1, LF_ERR_SHAPE, "%s: %s has shape (%llu, %llu), expected "
             "at least one row and column", file, path, (unsigned long long)dims[0],
             (unsigned long long)dims[1]);
    LF_CHECK((int64_t)dims[1] == in_expected, LF_ERR_SHAPE,
             "%s: %s has shape (%llu, %llu), expected (%llu, %lld): its inputs are the %lld "
             "outputs of /layers/%d",
             file, path, (unsigned long long)dims[0], (unsigned long long)dims[1],
             (unsigned long long)dims[0], (long long)in_expected, (long long)in_expected, i - 1);
    if (i == 0)
        *n_in = (int64_t)dims[1];
    if (i == 0)
        m->n_in = *n_in;
    int64_t n_out = (int64_t)dims[0];
    LF_CALL(lf_comm_agree(comm, lf_model_layer_init(m, i, n_out, act, (float)alpha)));
    LF_CALL(read_all_floats(dset, lf_model_block(m, i, i - 1)->w, file, path));
    lf__close_id(&dset);

    snprintf(path, sizeof path, "/layers/%d/bias", i);
    LF_CALL(lf__open_float_dataset(grp, "bias", file, path, 1, dims, &dset));
    LF_CHECK((int64_t)dims[0] == n_out, LF_ERR_SHAPE, "%s: %s has shape (%llu), expected (%lld)",
             file, path, (unsigned long long)dims[0], (long long)n_out);
    LF_CALL(read_all_floats(dset, m->layers[i].bias, file, path));
    lf__close_id(&dset);

    if (H5Lexists(grp, "skip", H5P_DEFAULT) > 0) {
        snprintf(path, sizeof path, "/layers/%d/skip", i);
        skip = H5Gopen2(grp, "skip", H5P_DEFAULT);
        LF_CALL_H5(skip, "%s: %s is not a group", file, path);
        H5G_info_t ginfo;
        LF_CALL_H5(H5Gget_info(skip, &ginfo), "%s: %s", file, path);
        LF_CALL(lf_comm_agree(comm, lf_calloc((size_t)ginfo.nlinks, sizeof *entries, (void **)&entries)));
        for (hsize_t k = 0; k < ginfo.nlinks; k++) {
            char link[64] = "";
            ssize_t len = H5Lget_name_by_idx(skip, ".", H5_INDEX_NAME, H5_ITER_INC, k, link,
                                             sizeof link, H5P_DEFAULT);
            LF_CALL_H5(len, "%s: %s entry %llu", file, path, (unsigned long long)k);
            int src = 0;
            LF_CHECK(parse_src(link, &src), LF_ERR_FORMAT,
                     "%s: %s/%s: skip source must be 'input' or a layer index", file, path, link);
            char allowed[64];
            if (i >= 3)
                snprintf(allowed, sizeof allowed, "'input' or a layer 0 to %d", i - 2);
            else if (i == 2)
                snprintf(allowed, sizeof allowed, "'input' or layer 0");
            else
                snprintf(allowed, sizeof allowed, "'input' only");
            LF_CHECK(src < i - 1, LF_ERR_FORMAT,
                     "%s: %s/%s: a skip block of layer %d may read %s (layer %d feeds its weight; "
                     "later layers are not computed yet)",
                     file, path, link, i, allowed, i - 1);
            entries[k].src = src;
            snprintf(entries[k].name, sizeof entries[k].name, "%s", link);
        }
        qsort(entries, (size_t)ginfo.nlinks, sizeof *entries, cmp_skip);
        for (hsize_t k = 0; k < ginfo.nlinks; k++) {
            char bpath[128];
            snprintf(bpath, sizeof bpath, "/layers/%d/skip/%s", i, entries[k].name);
            LF_CALL(lf__open_float_dataset(skip, entries[k].name, file, bpath, 2, dims, &dset));
            int64_t width = lf_model_width(m, entries[k].src);
            LF_CHECK((int64_t)dims[0] == n_out && (int64_t)dims[1] == width, LF_ERR_SHAPE,
                     "%s: %s has shape (%llu, %llu), expected (%lld, %lld)", file, bpath,
                     (unsigned long long)dims[0], (unsigned long long)dims[1], (long long)n_out,
                     (long long)width);
            lf_block_t *blk = NULL;
            LF_CALL(lf_comm_agree(comm, lf_model_block_ensure(m, i, entries[k].src, &blk)));
            LF_CALL(read_all_floats(dset, blk->w, file, bpath));
            lf__close_id(&dset);
        }
    }
cleanup:
    lf_free(entries);
    lf__close_id(&dset);
    lf__close_id(&skip);
    lf__close_id(&grp);
    return err;
}

lf_err_t lf_h5io_read_model(MPI_Comm comm, const char *path, lf_model_t **out)
{
    lf_err_t err = LF_OK;
    hid_t file = H5I_INVALID_HID, layers = H5I_INVALID_HID;
    lf_model_t *m = NULL;
    char fmt[64];
    *out = NULL;
    LF_CALL(lf__open_file(comm, path, &file));
    LF_CALL(lf__read_string_attr(file, "format", path, fmt, sizeof fmt));
    LF_CHECK(strcmp(fmt, "linfold-mlp") == 0, LF_ERR_FORMAT,
             "%s: attribute 'format' is \"%s\", expected \"linfold-mlp\"", path, fmt);
    int64_t version = 0;
    LF_CALL(lf__read_number_attr(file, "format_version", path, H5T_INTEGER, H5T_NATIVE_INT64, &version));
    LF_CHECK(version == 1, LF_ERR_FORMAT, "%s: format_version is %lld, this linfold reads 1", path,
             (long long)version);
    LF_CHECK(H5Lexists(file, "layers", H5P_DEFAULT) > 0, LF_ERR_FORMAT, "%s: missing group /layers",
             path);
    layers = H5Gopen2(file, "layers", H5P_DEFAULT);
    LF_CALL_H5(layers, "%s: /layers is not a group", path);
    int64_t count = 0;
    char where[512];
    snprintf(where, sizeof where, "%s: /layers", path);
    LF_CALL(lf__read_number_attr(layers, "count", where, H5T_INTEGER, H5T_NATIVE_INT64, &count));
    LF_CHECK(count >= 1 && count <= 100000, LF_ERR_FORMAT,
             "%s: /layers count is %lld, expected 1 to 100000", path, (long long)count);
    LF_CALL(lf_comm_agree(comm, lf_model_create(1, (int)count, &m)));
    int64_t n_in = 0;
    for (int i = 0; i < (int)count; i++)
        LF_CALL(read_layer(comm, layers, i, path, m, &n_in));
    LF_CALL(lf_model_validate(m, path));
    *out = m;
    m = NULL;
cleanup:
    lf_model_destroy(&m);
    lf__close_id(&layers);
    lf__close_id(&file);
    return err;
}

/* ---------------------------------------------------------------- atomic outputs */

lf_err_t lf_h5io_temp_path(MPI_Comm comm, const char *path, char *tmp, size_t cap)
{
    lf_err_t err = LF_OK;
    int rank = 0, icap = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_int_cast((int64_t)cap, &icap));
    if (rank == 0)
        snprintf(tmp, cap, "%s.tmp-%ld", path, (long)getpid());
    LF_CALL(lf_comm_bcast_string(comm, tmp, icap, 0));
cleanup:
    return err;
}

lf_err_t lf_h5io_finish_temp(MPI_Comm comm, const char *tmp, const char *path, lf_err_t ok)
{
    lf_err_t err = LF_OK, local = LF_OK;
    int rank = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    if (rank == 0) {
        if (ok == LF_OK) {
            if (rename(tmp, path) != 0) {
                local = LF_ERR_IO;
                lf_error_record(__FILE__, __LINE__, __func__, local, "%s: cannot rename %s into place",
                                path, tmp);
                unlink(tmp);
            }
        } else {
            unlink(tmp);
        }
    }
    LF_CALL(lf_comm_agree(comm, local));
cleanup:
    return err;
}

hid_t lf__create_plist(hid_t cls)
{
    /* Object timestamps would make two writes of the same model differ byte for byte. */
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0)
        lf__close_id(&p);
    return p;
}

lf_err_t lf__write_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                           hid_t file_type, hid_t mem_type, const void *data)
{
    lf_err_t err = LF_OK;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    space = H5Screate_simple(rank, dims, NULL);
    LF_CALL_H5(space, "dataspace for %s", name);
    dcpl = lf__create_plist(H5P_DATASET_CREATE);
    LF_CALL_H5(dcpl, "creation list");
    dset = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    LF_CALL_H5(dset, "cannot create dataset %s", name);
    LF_CALL_H5(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
               "cannot write dataset %s", name);
cleanup:
    lf__close_id(&dset);
    lf__close_id(&dcpl);
    lf__close_id(&space);
    return err;
}

lf_err_t lf__write_float_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                                 const float *data)
{
    return lf__write_dataset(loc, name, rank, dims, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data);
}

lf_err_t lf__create_group(hid_t loc, const char *name, hid_t *grp)
{
    lf_err_t err = LF_OK;
    hid_t gcpl = lf__create_plist(H5P_GROUP_CREATE);
    LF_CALL_H5(gcpl, "creation list");
    *grp = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    LF_CALL_H5(*grp, "cannot create group %s", name);
cleanup:
    lf__close_id(&gcpl);
    return err;
}

static lf_err_t write_model_serial(const char *tmp, const lf_model_t *m, const lf_attr_t *attrs,
                                   int n_attrs)
{
    lf_err_t err = LF_OK;
    hid_t file = H5I_INVALID_HID, layers = H5I_INVALID_HID, grp = H5I_INVALID_HID,
          skip = H5I_INVALID_HID;
    file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    LF_CALL_H5(file, "%s: cannot create file", tmp);
    LF_CALL(lf__write_string_attr(file, "format", "linfold-mlp"));
    int64_t version = 1, count = m->n_layers;
    LF_CALL(lf__write_number_attr(file, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64, &version));
    for (int k = 0; k < n_attrs; k++)
        LF_CALL(lf__write_string_attr(file, attrs[k].key, attrs[k].value));
    LF_CALL(lf__create_group(file, "layers", &layers));
    LF_CALL(lf__write_number_attr(layers, "count", H5T_STD_I64LE, H5T_NATIVE_INT64, &count));
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        char name[32];
        snprintf(name, sizeof name, "%d", i);
        LF_CALL(lf__create_group(layers, name, &grp));
        LF_CALL(lf__write_string_attr(grp, "activation", lf_act_name(L->act)));
        if (L->act == LF_ACT_LEAKY_RELU) {
            double alpha = L->alpha;
            LF_CALL(lf__write_number_attr(grp, "alpha", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &alpha));
        }
        for (int b = 0; b < L->n_blocks; b++) {
            const lf_block_t *blk = &L->blocks[b];
            hsize_t dims[2] = {(hsize_t)L->n_out, (hsize_t)lf_model_width(m, blk->src)};
            if (blk->src == i - 1) {
                LF_CALL(lf__write_float_dataset(grp, "weight", 2, dims, blk->w));
                continue;
            }
            if (skip < 0)
                LF_CALL(lf__create_group(grp, "skip", &skip));
            char src[32];
            if (blk->src == LF_SRC_INPUT)
                snprintf(src, sizeof src, "input");
            else
                snprintf(src, sizeof src, "%d", blk->src);
            LF_CALL(lf__write_float_dataset(skip, src, 2, dims, blk->w));
        }
        hsize_t nb = (hsize_t)L->n_out;
        LF_CALL(lf__write_float_dataset(grp, "bias", 1, &nb, L->bias));
        lf__close_id(&skip);
        lf__close_id(&grp);
    }
    lf__close_id(&layers);
    LF_CALL_H5(H5Fclose(file), "%s: cannot close", tmp);
    file = H5I_INVALID_HID;
cleanup:
    lf__close_id(&skip);
    lf__close_id(&grp);
    lf__close_id(&layers);
    lf__close_id(&file);
    return err;
}

lf_err_t lf__write_atomic_rank0(MPI_Comm comm, const char *path, lf__file_writer_t write,
                                const void *ctx)
{
    lf_err_t err = LF_OK, local = LF_OK;
    char tmp[4096];
    int rank = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_h5io_temp_path(comm, path, tmp, sizeof tmp));
    if (rank == 0)
        local = write(tmp, ctx);
    local = lf_comm_agree(comm, local);
    LF_CALL(lf_h5io_finish_temp(comm, tmp, path, local));
    LF_CALL(local);
cleanup:
    return err;
}

typedef struct {
    const lf_model_t *m;
    const lf_attr_t *attrs;
    int n_attrs;
} model_file_t;

static lf_err_t write_model_file(const char *tmp, const void *ctx)
{
    const model_file_t *f = ctx;
    return write_model_serial(tmp, f->m, f->attrs, f->n_attrs);
}

lf_err_t lf_h5io_write_model(MPI_Comm comm, const char *path, const lf_model_t *m,
                             const lf_attr_t *attrs, int n_attrs)
{
    model_file_t f = {.m = m, .attrs = attrs, .n_attrs = n_attrs};
    return lf__write_atomic_rank0(comm, path, write_model_file, &f);
}

/* ---------------------------------------------------------------- sample and label datasets */

struct lf_dataset {
    hid_t file, dset, dxpl;
    lf_data_kind_t kind;
    int64_t rows, cols;
    char spec[4096];
};

lf_err_t lf_h5io_split_spec(const char *spec, char *file, size_t file_cap, char *obj,
                            size_t obj_cap)
{
    lf_err_t err = LF_OK;
    const char *sep = NULL;
    for (const char *p = strstr(spec, ":/"); p; p = strstr(p + 1, ":/"))
        sep = p;
    LF_CHECK(sep != NULL && sep != spec && sep[2] != '\0', LF_ERR_USAGE,
             "'%s' is not of the form FILE.h5:/path/to/dataset", spec);
    LF_CHECK((size_t)(sep - spec) < file_cap && strlen(sep + 1) < obj_cap, LF_ERR_USAGE,
             "'%s' is too long", spec);
    memcpy(file, spec, (size_t)(sep - spec));
    file[sep - spec] = '\0';
    snprintf(obj, obj_cap, "%s", sep + 1);
cleanup:
    return err;
}

lf_err_t lf_h5io_dataset_open(MPI_Comm comm, const char *spec, lf_data_kind_t kind,
                              lf_dataset_t **out)
{
    lf_err_t err = LF_OK;
    lf_dataset_t *ds = NULL;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    char file[4096], obj[1024];
    *out = NULL;
    LF_CALL(lf_h5io_split_spec(spec, file, sizeof file, obj, sizeof obj));
    LF_CALL(lf_comm_agree(comm, lf_calloc(1, sizeof *ds, (void **)&ds)));
    ds->file = ds->dset = ds->dxpl = H5I_INVALID_HID;
    ds->kind = kind;
    snprintf(ds->spec, sizeof ds->spec, "%s", spec);
    LF_CALL(lf__open_file(comm, file, &ds->file));
    /* H5Lexists fails on a path whose intermediate groups are missing; walk it instead. */
    htri_t exists = lf__h5_path_exists(ds->file, obj);
    LF_CHECK(exists > 0, LF_ERR_FORMAT, "%s: no dataset %s", file, obj);
    H5O_info_t info;
    LF_CALL_H5(H5Oget_info_by_name(ds->file, obj, &info, H5P_DEFAULT), "%s: %s", file, obj);
    LF_CHECK(info.type == H5O_TYPE_DATASET, LF_ERR_FORMAT, "%s: %s is not a dataset", file, obj);
    ds->dset = H5Dopen2(ds->file, obj, H5P_DEFAULT);
    LF_CALL_H5(ds->dset, "%s: cannot open %s", file, obj);
    type = H5Dget_type(ds->dset);
    LF_CALL_H5(type, "%s: %s type", file, obj);
    space = H5Dget_space(ds->dset);
    LF_CALL_H5(space, "%s: %s space", file, obj);
    int ndims = H5Sget_simple_extent_ndims(space);
    hsize_t dims[2] = {0, 0};
    if (kind == LF_DATA_SAMPLES) {
        LF_CHECK(H5Tget_class(type) == H5T_FLOAT, LF_ERR_FORMAT,
                 "%s: %s is not a float dataset (samples must be float32 or float64)", file, obj);
        LF_CHECK(ndims == 2, LF_ERR_SHAPE, "%s: %s has %d dimension%s, expected 2 (samples, features)",
                 file, obj, ndims, ndims == 1 ? "" : "s");
        H5Sget_simple_extent_dims(space, dims, NULL);
        ds->rows = (int64_t)dims[0];
        ds->cols = (int64_t)dims[1];
    } else {
        LF_CHECK(H5Tget_class(type) == H5T_INTEGER, LF_ERR_FORMAT,
                 "%s: %s is not an integer dataset (labels must be integers)", file, obj);
        LF_CHECK(ndims == 1, LF_ERR_SHAPE, "%s: %s has %d dimensions, expected 1 (samples)", file,
                 obj, ndims);
        H5Sget_simple_extent_dims(space, dims, NULL);
        ds->rows = (int64_t)dims[0];
        ds->cols = 1;
    }
    ds->dxpl = lf__collective_dxpl();
    LF_CALL_H5(ds->dxpl, "transfer list");
    *out = ds;
    ds = NULL;
cleanup:
    lf__close_id(&space);
    lf__close_id(&type);
    lf_h5io_dataset_close(&ds);
    return err;
}

int64_t lf_h5io_dataset_rows(const lf_dataset_t *ds) { return ds->rows; }
int64_t lf_h5io_dataset_cols(const lf_dataset_t *ds) { return ds->cols; }
const char *lf_h5io_dataset_spec(const lf_dataset_t *ds) { return ds->spec; }

/* Selects rows [row0, row0 + count) of a (rows, cols) or (rows) space; count 0 selects none. */
static lf_err_t select_rows(hid_t file_space, int ndims, int64_t row0, int64_t count,
                            int64_t cols, hid_t *mem_space)
{
    lf_err_t err = LF_OK;
    hsize_t start[2] = {(hsize_t)row0, 0}, len[2] = {(hsize_t)count, (hsize_t)cols};
    if (count == 0) {
        hsize_t one = 1;
        LF_CALL_H5(H5Sselect_none(file_space), "empty selection");
        *mem_space = H5Screate_simple(1, &one, NULL);
        LF_CALL_H5(*mem_space, "memory space");
        LF_CALL_H5(H5Sselect_none(*mem_space), "empty selection");
    } else {
        LF_CALL_H5(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, len, NULL),
                   "row selection");
        *mem_space = H5Screate_simple(ndims, len, NULL);
        LF_CALL_H5(*mem_space, "memory space");
    }
cleanup:
    return err;
}

lf_err_t lf_h5io_dataset_read_rows(lf_dataset_t *ds, int64_t row0, int64_t count, void *buf)
{
    lf_err_t err = LF_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    LF_ASSERT(row0 >= 0 && count >= 0 && row0 + count <= ds->rows);
    fspace = H5Dget_space(ds->dset);
    LF_CALL_H5(fspace, "%s: space", ds->spec);
    int ndims = ds->kind == LF_DATA_SAMPLES ? 2 : 1;
    LF_CALL(select_rows(fspace, ndims, row0, count, ds->cols, &mspace));
    hid_t mem_type = ds->kind == LF_DATA_SAMPLES ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT64;
    LF_CALL_H5(H5Dread(ds->dset, mem_type, mspace, fspace, ds->dxpl, buf),
               "%s: cannot read rows %lld to %lld", ds->spec, (long long)row0,
               (long long)(row0 + count - 1));
cleanup:
    lf__close_id(&mspace);
    lf__close_id(&fspace);
    return err;
}

void lf_h5io_dataset_close(lf_dataset_t **ds)
{
    if (!ds || !*ds)
        return;
    lf__close_id(&(*ds)->dxpl);
    lf__close_id(&(*ds)->dset);
    lf__close_id(&(*ds)->file);
    lf_free(*ds);
    *ds = NULL;
}

/* ---------------------------------------------------------------- row-parallel outputs */

struct lf_output {
    MPI_Comm comm;
    hid_t file, dset, dxpl;
    int64_t rows, cols;
    char path[4096], tmp[4096];
};

lf_err_t lf_h5io_output_create(MPI_Comm comm, const char *path, const char *dset_path, int64_t n,
                               int64_t cols, lf_output_t **out)
{
    lf_err_t err = LF_OK, local = LF_OK;
    lf_output_t *o = NULL;
    hid_t fapl = H5I_INVALID_HID, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    *out = NULL;
    local = lf_calloc(1, sizeof *o, (void **)&o);
    LF_CALL(lf_comm_agree(comm, local));
    o->comm = comm;
    o->file = o->dset = o->dxpl = H5I_INVALID_HID;
    o->rows = n;
    o->cols = cols;
    snprintf(o->path, sizeof o->path, "%s", path);
    LF_CALL(lf_h5io_temp_path(comm, path, o->tmp, sizeof o->tmp));
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    LF_CALL_H5(fapl, "access list");
    LF_CALL_H5(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), "MPI-IO driver");
    o->file = H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    LF_CALL_H5(o->file, "%s: cannot create file", o->tmp);
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)cols};
    space = H5Screate_simple(2, dims, NULL);
    LF_CALL_H5(space, "dataspace");
    dcpl = lf__create_plist(H5P_DATASET_CREATE);
    LF_CALL_H5(dcpl, "creation list");
    /* Contiguous storage: allocate it at creation so that no rank writes fill values later. */
    LF_CALL_H5(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), "allocation time");
    LF_CALL_H5(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "fill time");
    o->dset = H5Dcreate2(o->file, dset_path, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    LF_CALL_H5(o->dset, "%s: cannot create %s", path, dset_path);
    o->dxpl = lf__collective_dxpl();
    LF_CALL_H5(o->dxpl, "transfer list");
    *out = o;
    o = NULL;
cleanup:
    lf__close_id(&dcpl);
    lf__close_id(&space);
    lf__close_id(&fapl);
    lf_h5io_output_abort(&o);
    return err;
}

lf_err_t lf_h5io_output_write_rows(lf_output_t *o, int64_t row0, int64_t count, const float *rows)
{
    lf_err_t err = LF_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    fspace = H5Dget_space(o->dset);
    LF_CALL_H5(fspace, "space");
    LF_CALL(select_rows(fspace, 2, row0, count, o->cols, &mspace));
    LF_CALL_H5(H5Dwrite(o->dset, H5T_NATIVE_FLOAT, mspace, fspace, o->dxpl, rows),
               "%s: cannot write rows", o->path);
cleanup:
    lf__close_id(&mspace);
    lf__close_id(&fspace);
    return err;
}

static void output_free(lf_output_t **o)
{
    lf__close_id(&(*o)->dxpl);
    lf__close_id(&(*o)->dset);
    lf__close_id(&(*o)->file);
    lf_free(*o);
    *o = NULL;
}

lf_err_t lf_h5io_output_commit(lf_output_t **out)
{
    lf_err_t err = LF_OK;
    lf_output_t *o = *out;
    lf__close_id(&o->dxpl);
    lf__close_id(&o->dset);
    herr_t rc = H5Fclose(o->file);
    o->file = H5I_INVALID_HID;
    lf_err_t closed = rc < 0 ? LF_ERR_HDF5 : LF_OK;
    if (closed != LF_OK)
        lf_error_record(__FILE__, __LINE__, __func__, closed, "%s: cannot close", o->tmp);
    LF_CALL(lf_h5io_finish_temp(o->comm, o->tmp, o->path, lf_comm_agree(o->comm, closed)));
    LF_CALL(closed);
cleanup:
    output_free(out);
    return err;
}

void lf_h5io_output_abort(lf_output_t **out)
{
    if (!out || !*out)
        return;
    lf_output_t *o = *out;
    lf__close_id(&o->dxpl);
    lf__close_id(&o->dset);
    lf__close_id(&o->file);
    if (o->tmp[0])
        lf_h5io_finish_temp(o->comm, o->tmp, o->path, LF_ERR_IO);
    output_free(out);
}
