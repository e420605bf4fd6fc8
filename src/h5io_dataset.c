/* Sample and label datasets, read by row shards with collective transfers.
 *
 * A data file can change under a long job (another job rewriting it, a full scratch file system
 * purged by the site). HDF5 reads past the end of a truncated file as zeros without an error, so
 * after every read each rank checks, on a descriptor of its own, that the file still reaches the
 * end of the dataset's storage; a file that shrank fails the pass instead of feeding it zeros.
 * Before any rank opens a data file, a reader process checks it (the preflight below). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5io_impl.h"
#include "sandbox_impl.h"
#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"
#include "linfold/h5io.h"

struct lf_dataset {
    char file[LF_PATH_MAX];
    lf__h5_file_t f;
    hid_t dset, dxpl;
    lf_data_kind_t kind;
    int64_t rows, cols;
    int fd;         /* this rank's own descriptor of the file, for the size check */
    int64_t end;    /* the file must reach this many bytes for the dataset to be whole */
    int64_t direct; /* byte offset of row 0 when rows can be read with pread; -1: through HDF5 */
    lf__h5_chunk_check_t *chunks; /* filtered chunks, decoded once before HDF5 does */
    char spec[LF_PATH_MAX + 1024];
};

static const lf__h5_want_t SAMPLES = {H5T_FLOAT, 2,
                                      "a float dataset (samples must be float32 or float64)"};
static const lf__h5_want_t LABELS = {H5T_INTEGER, 1,
                                     "an integer dataset (labels must be integers)"};

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

/* ---------------------------------------------------------------- the preflight
 *
 * The ranks read a data file in-process (it is too large to pass through a pipe), so rank 0 first
 * has a reader process (sandbox_impl.h) run every check the ranks will run, walk the chunk index,
 * and read the first and the last row. A file that makes HDF5 crash, loop or balloon there is an
 * error before any rank touches it; one that passes has metadata the ranks' identical opening
 * code handles. */

typedef struct {
    const char *file, *obj;
    const lf__h5_want_t *want;
} preflight_t;

static lf_err_t preflight_here(const preflight_t *p)
{
    lf_err_t err = LF_OK;
    lf__h5_file_t f = LF__H5_FILE_NONE;
    hid_t dset = H5I_INVALID_HID, fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    void *row = NULL;
    hsize_t dims[2];
    LF_CALL(lf__h5_open_file_serial(p->file, &f));
    LF_CALL(lf__h5_open_dataset(&f, p->obj, p->want, &dset, dims));
    LF_CALL(lf__h5_check_chunks(&f, p->obj, dset));
    int64_t rows = (int64_t)dims[0], cols = p->want->rank == 2 ? (int64_t)dims[1] : 1;
    if (rows == 0 || cols == 0)
        goto cleanup;
    LF_CALL(lf_malloc((size_t)cols, sizeof(double), &row));
    fspace = H5Dget_space(dset);
    LF_CALL_H5(fspace, "%s: %s space", p->file, p->obj);
    hid_t mem = p->want->cls == H5T_FLOAT ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT64;
    int64_t probe[2] = {0, rows - 1};
    for (int k = 0; k < 2; k++) {
        lf__h5_close(&mspace);
        LF_CALL(lf__h5_select_rows(fspace, p->want->rank, probe[k], 1, cols, &mspace));
        LF_CALL_H5(H5Dread(dset, mem, mspace, fspace, H5P_DEFAULT, row),
                   "%s: cannot read row %lld of %s", p->file, (long long)probe[k], p->obj);
    }
cleanup:
    lf_free(row);
    lf__h5_close(&mspace);
    lf__h5_close(&fspace);
    lf__h5_close(&dset);
    lf__h5_close(&f.id);
    return err;
}

static lf_err_t preflight_reader(void *ctx)
{
    lf_err_t err = preflight_here(ctx);
    lf__sandbox_send_status(err);
    return err;
}

static lf_err_t preflight(const char *file, const char *obj, const lf__h5_want_t *want)
{
    lf_err_t err = LF_OK;
    lf__sandbox_t *sb = NULL;
    int64_t size = 0;
    LF_CALL(lf__h5_check_readable(file, &size));
    lf__sandbox_limits_t limits = lf__sandbox_limits_for(size);
    preflight_t p = {.file = file, .obj = obj, .want = want};
    LF_CALL(lf__sandbox_start(file, &limits, preflight_reader, &p, &sb));
    LF_CALL(lf__sandbox_receive_status(sb));
    LF_CALL(lf__sandbox_finish(&sb));
cleanup:
    lf__sandbox_finish(&sb);
    return err;
}

/* ---------------------------------------------------------------- opening and reading */

static lf_err_t open_descriptor(lf_dataset_t *ds)
{
    lf_err_t err = LF_OK;
    ds->fd = open(ds->file, O_RDONLY | O_CLOEXEC);
    LF_CHECK(ds->fd >= 0, LF_ERR_IO, "%s: cannot open (%s)", ds->file, strerror(errno));
cleanup:
    return err;
}

/* HDF5 1.10.8's collective chunked reads fail (MPI_File_set_view: MPI_ERR_TYPE) on a dataset
 * with unallocated chunks (h5py writes them for data never assigned; they read as the fill
 * value): chunked datasets are read with independent transfers. So are contiguous datasets whose
 * storage was never allocated: HDF5 fills a rank's non-empty selection without a collective
 * call, while a rank with an empty one enters the collective path and waits for the others for
 * ever. Every rank still calls for every batch, so nothing else changes. */
static lf_err_t independent_for_chunks(lf_dataset_t *ds)
{
    lf_err_t err = LF_OK;
    hid_t dcpl = H5Dget_create_plist(ds->dset);
    LF_CALL_H5(dcpl, "%s: creation list", ds->spec);
    hsize_t stored = H5Dget_storage_size(ds->dset);
    H5Eclear2(H5E_DEFAULT);
    if (H5Pget_layout(dcpl) == H5D_CHUNKED || stored == 0)
        LF_CALL_H5(H5Pset_dxpl_mpio(ds->dxpl, H5FD_MPIO_INDEPENDENT), "%s: transfer list",
                   ds->spec);
cleanup:
    lf__h5_close(&dcpl);
    return err;
}

/* Rows can be read straight from the file, without HDF5, when they are stored as they are wanted
 * in memory: contiguous, allocated, whole, and in this machine's float32 (samples) or int64
 * (labels). H5Dget_offset counts from the file's first byte, a user block included. Any other
 * dataset is read through HDF5, which converts types and fills unallocated storage. Every rank
 * sees the same file, and agrees anyway: the two ways differ in which calls are collective. */
static lf_err_t find_direct(MPI_Comm comm, lf_dataset_t *ds)
{
    lf_err_t err = LF_OK;
    hid_t dcpl = H5Dget_create_plist(ds->dset), type = H5Dget_type(ds->dset);
    hid_t mem = ds->kind == LF_DATA_SAMPLES ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT64;
    LF_CALL_H5(dcpl, "%s: creation list", ds->spec);
    LF_CALL_H5(type, "%s: type", ds->spec);
    haddr_t offset = H5Dget_offset(ds->dset);
    hsize_t stored = H5Dget_storage_size(ds->dset);
    H5Eclear2(H5E_DEFAULT);
    int64_t need = ds->rows * ds->cols * (int64_t)H5Tget_size(mem);
    int direct = H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Tequal(type, mem) > 0 &&
                 offset != HADDR_UNDEF && need > 0 && (int64_t)stored == need &&
                 (int64_t)offset + need <= ds->f.size;
    int all = 0;
    LF_CALL_MPI(MPI_Allreduce(&direct, &all, 1, MPI_INT, MPI_MIN, comm));
    ds->direct = all ? (int64_t)offset : -1;
cleanup:
    lf__h5_close(&type);
    lf__h5_close(&dcpl);
    return err;
}

lf_err_t lf_h5io_dataset_open(MPI_Comm comm, const char *spec, lf_data_kind_t kind,
                              lf_dataset_t **out)
{
    lf_err_t err = LF_OK;
    lf_dataset_t *ds = NULL;
    char obj[1024];
    *out = NULL;
    LF_CALL(lf_comm_agree(comm, lf_calloc(1, sizeof *ds, (void **)&ds)));
    ds->f = LF__H5_FILE_NONE;
    ds->dset = ds->dxpl = H5I_INVALID_HID;
    ds->fd = -1;
    ds->direct = -1;
    ds->kind = kind;
    snprintf(ds->spec, sizeof ds->spec, "%s", spec);
    LF_CALL(lf_h5io_split_spec(spec, ds->file, sizeof ds->file, obj, sizeof obj));
    const lf__h5_want_t *want = kind == LF_DATA_SAMPLES ? &SAMPLES : &LABELS;
    int rank = 0;
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL(lf_comm_agree(comm, rank == 0 ? preflight(ds->file, obj, want) : LF_OK));
    LF_CALL(lf__h5_open_file(comm, ds->file, &ds->f));
    hsize_t dims[2];
    LF_CALL(lf__h5_open_dataset(&ds->f, obj, want, &ds->dset, dims));
    ds->rows = (int64_t)dims[0];
    ds->cols = kind == LF_DATA_SAMPLES ? (int64_t)dims[1] : 1;
    ds->end = lf__h5_dataset_end(&ds->f, ds->dset);
    ds->dxpl = lf__h5_collective_dxpl();
    LF_CALL_H5(ds->dxpl, "transfer list");
    LF_CALL(independent_for_chunks(ds));
    LF_CALL(find_direct(comm, ds));
    LF_CALL(lf_comm_agree(comm, open_descriptor(ds)));
    LF_CALL(lf_comm_agree(
        comm, lf__h5_chunk_check_create(ds->dset, ds->spec, ds->fd, ds->f.size, &ds->chunks)));
    *out = ds;
    ds = NULL;
cleanup:
    lf_h5io_dataset_close(&ds);
    return err;
}

int64_t lf_h5io_dataset_rows(const lf_dataset_t *ds) { return ds->rows; }
int64_t lf_h5io_dataset_cols(const lf_dataset_t *ds) { return ds->cols; }
const char *lf_h5io_dataset_spec(const lf_dataset_t *ds) { return ds->spec; }
const char *lf_h5io_dataset_file(const lf_dataset_t *ds) { return ds->file; }

lf_err_t lf__h5_select_rows(hid_t file_space, int ndims, int64_t row0, int64_t count, int64_t cols,
                            hid_t *mem_space)
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

static lf_err_t check_still_whole(const lf_dataset_t *ds)
{
    lf_err_t err = LF_OK;
    struct stat st;
    LF_CHECK(fstat(ds->fd, &st) == 0, LF_ERR_IO, "%s: cannot check its size (%s)", ds->file,
             strerror(errno));
    LF_CHECK((int64_t)st.st_size >= ds->end && (int64_t)st.st_size >= ds->f.size, LF_ERR_IO,
             "%s: the file shrank from %lld to %lld bytes while it was being read (truncated by "
             "another process?); its data can no longer be trusted",
             ds->file, (long long)ds->f.size, (long long)st.st_size);
cleanup:
    return err;
}

lf_err_t lf_h5io_dataset_read_rows(lf_dataset_t *ds, int64_t row0, int64_t count, void *buf)
{
    lf_err_t err = LF_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    LF_ASSERT(row0 >= 0 && count >= 0 && row0 + count <= ds->rows);
    /* Only chunked datasets have a check, and they are read with independent transfers: a rank
     * that fails it here leaves no collective call waiting for it. */
    if (ds->chunks)
        LF_CALL(lf__h5_chunk_check_rows(ds->chunks, row0, count));
    fspace = H5Dget_space(ds->dset);
    LF_CALL_H5(fspace, "%s: space", ds->spec);
    int ndims = ds->kind == LF_DATA_SAMPLES ? 2 : 1;
    LF_CALL(lf__h5_select_rows(fspace, ndims, row0, count, ds->cols, &mspace));
    hid_t mem_type = ds->kind == LF_DATA_SAMPLES ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT64;
    LF_CALL_H5(H5Dread(ds->dset, mem_type, mspace, fspace, ds->dxpl, buf),
               "%s: cannot read rows %lld to %lld", ds->spec, (long long)row0,
               (long long)(row0 + count - 1));
    LF_CALL(check_still_whole(ds));
cleanup:
    lf__h5_close(&mspace);
    lf__h5_close(&fspace);
    return err;
}

bool lf_h5io_dataset_direct(const lf_dataset_t *ds) { return ds->direct >= 0; }

int lf_h5io_dataset_pread_rows(const lf_dataset_t *ds, int64_t row0, int64_t count, void *buf)
{
    size_t row_bytes = (size_t)ds->cols * (ds->kind == LF_DATA_SAMPLES ? sizeof(float) : 8);
    size_t left = (size_t)count * row_bytes;
    off_t at = (off_t)(ds->direct + row0 * (int64_t)row_bytes);
    char *p = buf;
    if (ds->direct < 0 || row0 < 0 || count < 0 || row0 + count > ds->rows)
        return EINVAL;
    while (left > 0) {
        ssize_t got = pread(ds->fd, p, left, at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno;
        if (got == 0)
            return ENODATA; /* the file ends before the rows do */
        p += got;
        at += got;
        left -= (size_t)got;
    }
    return 0;
}

lf_err_t lf_h5io_dataset_pread_check(const lf_dataset_t *ds, int64_t row0, int64_t count,
                                     int result)
{
    lf_err_t err = LF_OK;
    /* A file that shrank says so, whatever the read made of it. */
    LF_CALL(check_still_whole(ds));
    LF_CHECK(result == 0, LF_ERR_IO, "%s: cannot read rows %lld to %lld (%s)", ds->spec,
             (long long)row0, (long long)(row0 + count - 1),
             result == ENODATA ? "the file ends before them: truncated while being read?"
                               : strerror(result));
cleanup:
    return err;
}

void lf_h5io_dataset_close(lf_dataset_t **ds)
{
    if (!ds || !*ds)
        return;
    lf__h5_chunk_check_free(&(*ds)->chunks);
    if ((*ds)->fd >= 0)
        close((*ds)->fd);
    lf__h5_close(&(*ds)->dxpl);
    lf__h5_close(&(*ds)->dset);
    lf__h5_close(&(*ds)->f.id); /* read-only: nothing to flush, nothing to report */
    lf_free(*ds);
    *ds = NULL;
}
