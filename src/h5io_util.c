/* HDF5 reading helpers: errors, ids, checked file/object/dataset opening, numeric attributes.
 * See h5io_impl.h for what every read is checked for and why. */
#include <errno.h>
#include <hdf5.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5io_impl.h"
#include "linfold/comm.h"
#include "linfold/h5io.h"
#include "linfold/interrupt.h"

/* The largest factor by which a deflate stream can expand (1032:1, zlib's limit); the bound for
 * filtered datasets. Unfiltered data needs as many bytes as it stores. */
#define FILTER_EXPANSION_MAX 1032
/* Slack allowed on top of the stored bytes: fill values of small unwritten datasets. */
#define UNSTORED_BYTES_MAX ((int64_t)1 << 20)
/* Decoded chunks kept per open data file (HDF5's raw data chunk cache), and its hash slots: a
 * prime about 100 times the number of 1024 x 784 float chunks that fit, as HDF5 advises. */
#define CHUNK_CACHE_BYTES ((size_t)64 << 20)
#define CHUNK_CACHE_SLOTS 2003

__extension__ typedef unsigned __int128 u128;

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

void lf__h5_close(hid_t *id)
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
    H5Eclear2(H5E_DEFAULT);
    *id = H5I_INVALID_HID;
}

/* Called before HDF5 would open another file to follow an external link: refuse. */
static herr_t refuse_external(const char *parent_file, const char *parent_group,
                              const char *child_file, const char *child_object, unsigned *flags,
                              hid_t fapl, void *data)
{
    (void)parent_file, (void)parent_group, (void)child_file, (void)child_object, (void)flags;
    (void)fapl, (void)data;
    return -1;
}

static hid_t lapl = H5I_INVALID_HID;

hid_t lf__h5_lapl(void)
{
    if (lapl < 0) {
        lapl = H5Pcreate(H5P_LINK_ACCESS);
        if (lapl >= 0 && H5Pset_elink_cb(lapl, refuse_external, NULL) < 0)
            lf__h5_close(&lapl);
    }
    return lapl;
}

void lf_h5io_init(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* A file names its filters by number; with plugins enabled HDF5 would load a shared library
     * from HDF5_PLUGIN_PATH to decode an unknown one. linfold runs only the library's own code. */
    H5PLset_loading_state(0);
    lf__h5_lapl();
}

/* ---------------------------------------------------------------- files */

/* The checks before H5Fopen run on every rank: a file on node-local storage may exist on some
 * ranks only, so the verdict is agreed before the collective open. A FIFO or a device would
 * block the signature check, so only regular files are opened. */
lf_err_t lf__h5_check_readable(const char *path, int64_t *size)
{
    lf_err_t err = LF_OK;
    struct stat st;
    LF_CHECK(stat(path, &st) == 0, LF_ERR_IO, "%s: %s", path,
             errno == ENOENT ? "no such file" : strerror(errno));
    LF_CHECK(S_ISREG(st.st_mode), LF_ERR_IO, "%s: not a regular file", path);
    LF_CHECK(access(path, R_OK) == 0, LF_ERR_IO, "%s: permission denied", path);
    htri_t is_h5 = H5Fis_hdf5(path);
    H5Eclear2(H5E_DEFAULT);
    LF_CHECK(is_h5 > 0, LF_ERR_FORMAT, "%s: not an HDF5 file", path);
    *size = (int64_t)st.st_size;
cleanup:
    return err;
}

lf_err_t lf__h5_open_file(MPI_Comm comm, const char *path, lf__h5_file_t *f)
{
    lf_err_t err = LF_OK;
    hid_t fapl = H5I_INVALID_HID;
    *f = (lf__h5_file_t){.id = H5I_INVALID_HID, .path = path};
    LF_CALL(lf_comm_agree(comm, lf__h5_check_readable(path, &f->size)));
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    LF_CALL_H5(fapl, "%s: H5Pcreate", path);
    LF_CALL_H5(H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL), "%s: MPI-IO driver", path);
    /* HDF5 keeps 1 MiB of decoded chunks by default: a batch that covers part of a larger
     * compressed chunk (or of two, where a rank's shard starts mid-chunk) would make it inflate
     * the chunk again for every batch. Entries are allocated as chunks are read, so a file of
     * small or unfiltered chunks costs nothing extra. */
    LF_CALL_H5(H5Pset_cache(fapl, 0, CHUNK_CACHE_SLOTS, CHUNK_CACHE_BYTES, 1.0), "%s: chunk cache",
               path);
    f->id = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    LF_CALL_H5(f->id, "%s: cannot open", path);
cleanup:
    lf__h5_close(&fapl);
    return err;
}

lf_err_t lf__h5_open_file_serial(const char *path, lf__h5_file_t *f)
{
    lf_err_t err = LF_OK;
    hid_t fapl = H5I_INVALID_HID;
    *f = (lf__h5_file_t){.id = H5I_INVALID_HID, .path = path};
    LF_CALL(lf__h5_check_readable(path, &f->size));
    fapl = H5Pcreate(H5P_FILE_ACCESS);
    LF_CALL_H5(fapl, "%s: H5Pcreate", path);
    /* Read-only, no locks: file locking fails on some parallel file systems. */
    LF_CALL_H5(H5Pset_fapl_sec2(fapl), "%s: POSIX driver", path);
    LF_CALL_H5(H5Pset_file_locking(fapl, 0, 1), "%s: file locking", path);
    f->id = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    LF_CALL_H5(f->id, "%s: cannot open", path);
cleanup:
    lf__h5_close(&fapl);
    return err;
}

lf_err_t lf__h5_close_file(hid_t *file, const char *path)
{
    lf_err_t err = LF_OK;
    if (*file < 0)
        return LF_OK;
    /* HDF5 releases the id even when the final flush fails: closing it again would close
     * whatever reuses the number. */
    herr_t rc = H5Fclose(*file);
    *file = H5I_INVALID_HID;
    LF_CALL_H5(rc, "%s: cannot finish writing", path);
cleanup:
    return err;
}

/* ---------------------------------------------------------------- objects */

/* Checks the link at prefix (which exists): hard and soft links are followed, others refused. */
static lf_err_t check_link(const lf__h5_file_t *f, const char *prefix)
{
    lf_err_t err = LF_OK;
    H5L_info_t info;
    char target[1024] = "";
    LF_CALL_H5(H5Lget_info(f->id, prefix, &info, lf__h5_lapl()), "%s: link %s", f->path, prefix);
    if (info.type == H5L_TYPE_EXTERNAL) {
        const char *file = "?", *obj = "?";
        unsigned flags = 0;
        if (info.u.val_size <= sizeof target &&
            H5Lget_val(f->id, prefix, target, sizeof target, lf__h5_lapl()) >= 0)
            H5Lunpack_elink_val(target, info.u.val_size, &flags, &file, &obj);
        H5Eclear2(H5E_DEFAULT);
        LF_FAIL(LF_ERR_FORMAT,
                "%s: %s is an external link to %s:%s; refused (linfold reads nothing outside the "
                "files it is given)",
                f->path, prefix, file, obj);
    }
    LF_CHECK(info.type == H5L_TYPE_HARD || info.type == H5L_TYPE_SOFT, LF_ERR_FORMAT,
             "%s: %s is a user-defined link (type %d); refused", f->path, prefix, (int)info.type);
cleanup:
    return err;
}

int lf__h5_exists(const lf__h5_file_t *f, const char *path, lf_err_t *err_out)
{
    lf_err_t err = LF_OK;
    int found = 0;
    char buf[1024];
    LF_CHECK(path[0] == '/' && strlen(path) < sizeof buf, LF_ERR_ARG,
             "%s: object path '%s' is not absolute or too long", f->path, path);
    snprintf(buf, sizeof buf, "%s", path);
    if (buf[1] == '\0') {
        found = 1;
        goto cleanup;
    }
    /* H5Lexists fails on a path whose intermediate groups are missing, and traversing a link
     * before checking it would follow an external one: walk the path link by link. */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        htri_t ok = H5Lexists(f->id, buf, lf__h5_lapl());
        H5Eclear2(H5E_DEFAULT);
        if (ok <= 0)
            goto cleanup;
        LF_CALL(check_link(f, buf));
        H5O_info_t info;
        if (H5Oexists_by_name(f->id, buf, lf__h5_lapl()) <= 0 ||
            H5Oget_info_by_name2(f->id, buf, &info, H5O_INFO_BASIC, lf__h5_lapl()) < 0) {
            H5Eclear2(H5E_DEFAULT);
            goto cleanup; /* a dangling soft link */
        }
        if (saved == '\0') {
            found = 1;
            goto cleanup;
        }
        if (info.type != H5O_TYPE_GROUP)
            goto cleanup;
        *p = saved;
    }
cleanup:
    *err_out = err;
    return err != LF_OK ? -1 : found;
}

static const char *type_word(H5O_type_t type)
{
    return type == H5O_TYPE_GROUP ? "group" : (type == H5O_TYPE_DATASET ? "dataset" : "object");
}

lf_err_t lf__h5_open_object(const lf__h5_file_t *f, const char *path, H5O_type_t type, hid_t *out)
{
    lf_err_t err = LF_OK;
    *out = H5I_INVALID_HID;
    int found = lf__h5_exists(f, path, &err);
    if (found < 0)
        goto cleanup;
    LF_CHECK(found, LF_ERR_FORMAT, "%s: missing %s %s", f->path, type_word(type), path);
    H5O_info_t info;
    LF_CALL_H5(H5Oget_info_by_name2(f->id, path, &info, H5O_INFO_BASIC, lf__h5_lapl()), "%s: %s",
               f->path, path);
    LF_CHECK(info.type == type, LF_ERR_FORMAT, "%s: %s is not a %s", f->path, path,
             type_word(type));
    *out = H5Oopen(f->id, path, lf__h5_lapl());
    LF_CALL_H5(*out, "%s: cannot open %s", f->path, path);
cleanup:
    return err;
}

/* ---------------------------------------------------------------- datasets */

/* Refuses storage that reads outside the file and filters the library does not have built in. */
static lf_err_t check_storage(const lf__h5_file_t *f, const char *path, hid_t dcpl, int *filters)
{
    lf_err_t err = LF_OK;
    H5D_layout_t layout = H5Pget_layout(dcpl);
    LF_CALL_H5(layout, "%s: %s layout", f->path, path);
    LF_CHECK(layout != H5D_VIRTUAL, LF_ERR_FORMAT,
             "%s: %s is a virtual dataset (its data lives in other files); refused", f->path, path);
    int external = H5Pget_external_count(dcpl);
    LF_CALL_H5(external, "%s: %s storage", f->path, path);
    if (external > 0) {
        char name[256] = "?";
        off_t offset = 0;
        hsize_t size = 0;
        if (H5Pget_external(dcpl, 0, sizeof name, name, &offset, &size) < 0)
            H5Eclear2(H5E_DEFAULT);
        name[sizeof name - 1] = '\0';
        LF_FAIL(LF_ERR_FORMAT,
                "%s: %s keeps its data in the external file '%s'; refused (linfold reads nothing "
                "outside the files it is given)",
                f->path, path, name);
    }
    *filters = H5Pget_nfilters(dcpl);
    LF_CALL_H5(*filters, "%s: %s filters", f->path, path);
    for (int k = 0; k < *filters; k++) {
        unsigned flags = 0, config = 0;
        size_t n_values = 0;
        char name[64] = "";
        H5Z_filter_t id =
            H5Pget_filter2(dcpl, (unsigned)k, &flags, &n_values, NULL, sizeof name, name, &config);
        LF_CALL_H5(id, "%s: %s filter %d", f->path, path, k);
        htri_t avail = H5Zfilter_avail(id);
        H5Eclear2(H5E_DEFAULT);
        LF_CHECK(avail > 0, LF_ERR_FORMAT,
                 "%s: %s is compressed with HDF5 filter %d (%s), which this HDF5 library does not "
                 "have built in",
                 f->path, path, (int)id, name[0] ? name : "unnamed");
        /* deflate, shuffle and Fletcher-32 only: the other built-in filters (scale-offset,
         * n-bit, szip) decode parameters from the file that HDF5 1.10 does not check. */
        LF_CHECK(id == H5Z_FILTER_DEFLATE || id == H5Z_FILTER_SHUFFLE ||
                     id == H5Z_FILTER_FLETCHER32,
                 LF_ERR_FORMAT,
                 "%s: %s uses HDF5 filter %d (%s); linfold reads deflate (gzip), shuffle and "
                 "Fletcher-32",
                 f->path, path, (int)id, name[0] ? name : "unnamed");
    }
cleanup:
    return err;
}

/* Refuses a shape that needs more bytes than the file can hold for it (see FILTER_EXPANSION_MAX)
 * and contiguous data that extends past the end of the file. */
static lf_err_t check_size(const lf__h5_file_t *f, const char *path, hid_t dset, hid_t type,
                           int rank, const hsize_t *dims, int filters, hid_t dcpl)
{
    lf_err_t err = LF_OK;
    u128 need = H5Tget_size(type);
    for (int d = 0; d < rank; d++)
        need *= dims[d];
    LF_CHECK(need <= (u128)INT64_MAX, LF_ERR_FORMAT,
             "%s: %s has a shape whose size overflows 64 bits", f->path, path);
    int64_t stored = (int64_t)H5Dget_storage_size(dset);
    H5Eclear2(H5E_DEFAULT);
    int64_t held = stored < f->size ? stored : f->size;
    int64_t cap = UNSTORED_BYTES_MAX + held * (filters > 0 ? FILTER_EXPANSION_MAX : 1);
    LF_CHECK((int64_t)need <= cap, LF_ERR_FORMAT,
             "%s: %s has a shape that needs %lld bytes, but the file stores %lld bytes of it "
             "(file size %lld); refused",
             f->path, path, (long long)need, (long long)stored, (long long)f->size);
    if (H5Pget_layout(dcpl) == H5D_CONTIGUOUS && stored > 0) {
        LF_CHECK(filters > 0 || stored == (int64_t)need, LF_ERR_FORMAT,
                 "%s: %s stores %lld bytes, its shape needs %lld", f->path, path, (long long)stored,
                 (long long)need);
        haddr_t offset = H5Dget_offset(dset);
        H5Eclear2(H5E_DEFAULT);
        LF_CHECK(offset == HADDR_UNDEF ||
                     (offset <= (haddr_t)f->size && (int64_t)offset + stored <= f->size),
                 LF_ERR_FORMAT, "%s: %s extends past the end of the file (%lld bytes; truncated?)",
                 f->path, path, (long long)f->size);
    }
cleanup:
    return err;
}

/* Only the standard IEEE floats and two's-complement integers: HDF5 converts other layouts
 * (odd sizes, offsets, precisions) with code that trusts those fields. */
static bool standard_type(hid_t type, H5T_class_t cls)
{
    /* The predefined types are macros that open the library: built at each call, not static. */
    const hid_t floats[] = {H5T_IEEE_F32LE, H5T_IEEE_F32BE, H5T_IEEE_F64LE, H5T_IEEE_F64BE};
    const hid_t ints[] = {H5T_STD_I8LE,  H5T_STD_I8BE,  H5T_STD_U8LE,  H5T_STD_U8BE,
                          H5T_STD_I16LE, H5T_STD_I16BE, H5T_STD_U16LE, H5T_STD_U16BE,
                          H5T_STD_I32LE, H5T_STD_I32BE, H5T_STD_U32LE, H5T_STD_U32BE,
                          H5T_STD_I64LE, H5T_STD_I64BE, H5T_STD_U64LE, H5T_STD_U64BE};
    const hid_t *list = cls == H5T_FLOAT ? floats : ints;
    size_t n = cls == H5T_FLOAT ? sizeof floats / sizeof *floats : sizeof ints / sizeof *ints;
    for (size_t k = 0; k < n; k++)
        if (H5Tequal(type, list[k]) > 0)
            return true;
    H5Eclear2(H5E_DEFAULT);
    return false;
}

/* A chunked dataset's chunks must be no larger than what the file can hold for them, and their
 * rank must be the dataset's. */
static lf_err_t check_chunk_shape(const lf__h5_file_t *f, const char *path, hid_t dcpl, hid_t type,
                                  int rank, int filters)
{
    lf_err_t err = LF_OK;
    if (H5Pget_layout(dcpl) != H5D_CHUNKED)
        return LF_OK;
    hsize_t chunk[H5S_MAX_RANK];
    int got = H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk);
    LF_CALL_H5(got, "%s: %s chunk shape", f->path, path);
    LF_CHECK(got == rank, LF_ERR_FORMAT, "%s: %s has chunks of rank %d, the dataset %d", f->path,
             path, got, rank);
    u128 bytes = H5Tget_size(type);
    for (int d = 0; d < rank; d++)
        bytes *= chunk[d];
    int64_t held = f->size,
            cap = UNSTORED_BYTES_MAX + held * (filters > 0 ? FILTER_EXPANSION_MAX : 1);
    LF_CHECK(bytes <= (u128)cap, LF_ERR_FORMAT,
             "%s: %s has chunks of %.0f bytes, more than the file (%lld bytes) can hold", f->path,
             path, (double)bytes, (long long)f->size);
cleanup:
    return err;
}

lf_err_t lf__h5_open_dataset(const lf__h5_file_t *f, const char *path, const lf__h5_want_t *want,
                             hid_t *dset, hsize_t dims[2])
{
    lf_err_t err = LF_OK;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    dims[0] = dims[1] = 0;
    LF_CALL(lf__h5_open_object(f, path, H5O_TYPE_DATASET, dset));
    type = H5Dget_type(*dset);
    LF_CALL_H5(type, "%s: %s type", f->path, path);
    LF_CHECK(H5Tget_class(type) == want->cls, LF_ERR_FORMAT, "%s: %s is not %s", f->path, path,
             want->described);
    LF_CHECK(standard_type(type, want->cls), LF_ERR_FORMAT,
             "%s: %s has a non-standard %s type (%zu bytes); linfold reads IEEE float32/float64 "
             "and 8- to 64-bit integers",
             f->path, path, want->cls == H5T_FLOAT ? "float" : "integer", H5Tget_size(type));
    space = H5Dget_space(*dset);
    LF_CALL_H5(space, "%s: %s space", f->path, path);
    LF_CHECK(H5Sget_simple_extent_type(space) == H5S_SIMPLE, LF_ERR_SHAPE,
             "%s: %s is a scalar or empty dataset, expected %d dimension%s", f->path, path,
             want->rank, want->rank == 1 ? "" : "s");
    int got = H5Sget_simple_extent_ndims(space);
    LF_CHECK(got == want->rank, LF_ERR_SHAPE, "%s: %s has %d dimension%s, expected %d", f->path,
             path, got, got == 1 ? "" : "s", want->rank);
    LF_CALL_H5(H5Sget_simple_extent_dims(space, dims, NULL), "%s: %s shape", f->path, path);
    dcpl = H5Dget_create_plist(*dset);
    LF_CALL_H5(dcpl, "%s: %s creation list", f->path, path);
    int filters = 0;
    LF_CALL(check_storage(f, path, dcpl, &filters));
    LF_CALL(check_chunk_shape(f, path, dcpl, type, want->rank, filters));
    LF_CALL(check_size(f, path, *dset, type, want->rank, dims, filters, dcpl));
cleanup:
    if (err != LF_OK)
        lf__h5_close(dset);
    lf__h5_close(&dcpl);
    lf__h5_close(&space);
    lf__h5_close(&type);
    return err;
}

bool lf__h5_chunk_in_file(haddr_t addr, hsize_t size, int64_t file_size)
{
    return addr < (haddr_t)file_size && (int64_t)size <= file_size - (int64_t)addr;
}

lf_err_t lf__h5_check_chunks(const lf__h5_file_t *f, const char *path, hid_t dset)
{
    lf_err_t err = LF_OK;
    hid_t dcpl = H5I_INVALID_HID, space = H5I_INVALID_HID, type = H5I_INVALID_HID;
    dcpl = H5Dget_create_plist(dset);
    LF_CALL_H5(dcpl, "%s: %s creation list", f->path, path);
    if (H5Pget_layout(dcpl) != H5D_CHUNKED)
        goto cleanup;
    space = H5Dget_space(dset);
    type = H5Dget_type(dset);
    LF_CALL_H5(space, "%s: %s space", f->path, path);
    LF_CALL_H5(type, "%s: %s type", f->path, path);
    int rank = H5Sget_simple_extent_ndims(space), filters = H5Pget_nfilters(dcpl);
    hsize_t dims[H5S_MAX_RANK], chunk[H5S_MAX_RANK], at[H5S_MAX_RANK] = {0};
    LF_CALL_H5(rank, "%s: %s rank", f->path, path);
    H5Sget_simple_extent_dims(space, dims, NULL);
    LF_CALL_H5(H5Pget_chunk(dcpl, rank, chunk), "%s: %s chunk shape", f->path, path);
    int64_t chunk_bytes = (int64_t)H5Tget_size(type);
    for (int d = 0; d < rank; d++) {
        chunk_bytes *= (int64_t)chunk[d];
        if (dims[d] == 0)
            goto cleanup;
    }
    /* Every chunk, by its coordinates (a B-tree lookup each): stored inside the file, and
     * exactly its size when nothing compresses it. */
    for (;;) {
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        LF_CALL_H5(H5Dget_chunk_info_by_coord(dset, at, &mask, &addr, &size), "%s: %s chunk index",
                   f->path, path);
        LF_CHECK(addr == HADDR_UNDEF || (lf__h5_chunk_in_file(addr, size, f->size) &&
                                         (filters > 0 || (int64_t)size == chunk_bytes)),
                 LF_ERR_FORMAT,
                 "%s: %s has a chunk at byte %llu of %llu bytes that does not fit the file (%lld "
                 "bytes) or its shape",
                 f->path, path, (unsigned long long)addr, (unsigned long long)size,
                 (long long)f->size);
        int d = rank - 1;
        while (d >= 0 && (at[d] += chunk[d]) >= dims[d])
            at[d--] = 0;
        if (d < 0)
            break;
        LF_CALL(lf_interrupt_check("checking a chunk index"));
    }
cleanup:
    lf__h5_close(&type);
    lf__h5_close(&space);
    lf__h5_close(&dcpl);
    return err;
}

int64_t lf__h5_dataset_end(const lf__h5_file_t *f, hid_t dset)
{
    haddr_t offset = H5Dget_offset(dset);
    hsize_t stored = H5Dget_storage_size(dset);
    H5Eclear2(H5E_DEFAULT);
    if (offset == HADDR_UNDEF)
        return f->size;
    return (int64_t)offset + (int64_t)stored;
}

/* ---------------------------------------------------------------- attributes */

lf_err_t lf__h5_read_number_attr(hid_t obj, const char *name, const char *where, H5T_class_t cls,
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
    H5S_class_t shape = H5Sget_simple_extent_type(space);
    LF_CHECK(shape == H5S_SCALAR ||
                 (shape == H5S_SIMPLE && H5Sget_simple_extent_npoints(space) == 1),
             LF_ERR_FORMAT, "%s: attribute '%s' is not a scalar", where, name);
    LF_CALL_H5(H5Aread(attr, mem_type, value), "%s: cannot read attribute '%s'", where, name);
cleanup:
    lf__h5_close(&space);
    lf__h5_close(&type);
    lf__h5_close(&attr);
    return err;
}
