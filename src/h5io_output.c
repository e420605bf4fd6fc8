/* Row-parallel outputs: a 2-D float32 dataset in a new file, written by row blocks with collective
 * transfers by every rank, published atomically (atomic.h) when complete.
 *
 * HDF5 1.10 must never meet a full disk here: after a failed write its file close fails, leaves a
 * half-destroyed file behind, and the library crashes when it shuts down. So rank 0 reserves the
 * file's whole size (posix_fallocate) as soon as the dataset exists, turning a full disk into an
 * ordinary error before any row is written; and a failed output is truncated to nothing before
 * its collective close, which gives the close's few kilobytes of metadata room. */
#include <string.h>
#include <unistd.h>

#include "h5io_impl.h"
#include "linfold/alloc.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"
#include "linfold/h5io.h"
#include "linfold/log.h"

struct lf_output {
    MPI_Comm comm; /* a duplicate: the output's collectives never meet the caller's */
    hid_t file, dset, dxpl;
    int64_t rows, cols;
    char path[LF_PATH_MAX], tmp[LF_PATH_MAX];
};

static void output_free(lf_output_t **o)
{
    lf__h5_close(&(*o)->dxpl);
    lf__h5_close(&(*o)->dset);
    lf__h5_close(&(*o)->file);
    if ((*o)->comm != MPI_COMM_NULL)
        MPI_Comm_free(&(*o)->comm);
    lf_free(*o);
    *o = NULL;
}

static lf_err_t create_dataset(lf_output_t *o, const char *dset_path)
{
    lf_err_t err = LF_OK;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    LF_CALL_H5(fapl, "access list");
    LF_CALL_H5(H5Pset_fapl_mpio(fapl, o->comm, MPI_INFO_NULL), "MPI-IO driver");
    o->file = H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    LF_CALL_H5(o->file, "%s: cannot create file", o->tmp);
    hsize_t dims[2] = {(hsize_t)o->rows, (hsize_t)o->cols};
    LF_CALL(lf__h5_create_dataset_early(o->file, dset_path, 2, dims, &o->dset));
    o->dxpl = lf__h5_collective_dxpl();
    LF_CALL_H5(o->dxpl, "transfer list");
cleanup:
    lf__h5_close(&fapl);
    return err;
}

/* Bytes reserved beyond the raw data for HDF5's metadata (a few kilobytes are needed). */
#define METADATA_SLACK ((int64_t)64 << 10)

lf_err_t lf_h5io_output_create(MPI_Comm comm, const char *path, const char *dset_path, int64_t n,
                               int64_t cols, lf_output_t **out)
{
    lf_err_t err = LF_OK;
    lf_output_t *o = NULL;
    *out = NULL;
    LF_CALL(lf_comm_agree(comm, lf_calloc(1, sizeof *o, (void **)&o)));
    o->comm = MPI_COMM_NULL;
    o->file = o->dset = o->dxpl = H5I_INVALID_HID;
    o->rows = n;
    o->cols = cols;
    snprintf(o->path, sizeof o->path, "%s", path);
    LF_CALL_MPI(MPI_Comm_dup(comm, &o->comm));
    LF_CALL(lf_atomic_begin(o->comm, path, o->tmp, sizeof o->tmp));
    LF_CALL(create_dataset(o, dset_path));
    int rank = 0;
    LF_CALL_MPI(MPI_Comm_rank(o->comm, &rank));
    int64_t bytes = o->rows * o->cols * (int64_t)sizeof(float) + METADATA_SLACK;
    LF_CALL(
        lf_comm_agree(o->comm, rank == 0 ? lf__h5_reserve_file(o->tmp, o->path, bytes) : LF_OK));
    *out = o;
    o = NULL;
cleanup:
    lf_h5io_output_abort(&o);
    return err;
}

lf_err_t lf_h5io_output_write_rows(lf_output_t *o, int64_t row0, int64_t count, const float *rows)
{
    lf_err_t err = LF_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    fspace = H5Dget_space(o->dset);
    LF_CALL_H5(fspace, "space");
    LF_CALL(lf__h5_select_rows(fspace, 2, row0, count, o->cols, &mspace));
    LF_CALL_H5(H5Dwrite(o->dset, H5T_NATIVE_FLOAT, mspace, fspace, o->dxpl, rows),
               "%s: cannot write rows %lld to %lld", o->path, (long long)row0,
               (long long)(row0 + count - 1));
cleanup:
    lf__h5_close(&mspace);
    lf__h5_close(&fspace);
    return err;
}

lf_err_t lf_h5io_output_commit(lf_output_t **out)
{
    lf_err_t err = LF_OK;
    lf_output_t *o = *out;
    lf__h5_close(&o->dxpl);
    lf__h5_close(&o->dset);
    lf_err_t closed = lf__h5_close_file(&o->file, o->tmp);
    LF_CALL(lf_atomic_finish(o->comm, o->tmp, o->path, lf_comm_agree(o->comm, closed)));
    LF_CALL(closed);
cleanup:
    o->tmp[0] = '\0';
    output_free(out);
    return err;
}

void lf_h5io_output_abort(lf_output_t **out)
{
    if (!out || !*out)
        return;
    lf_output_t *o = *out;
    lf__h5_close(&o->dxpl);
    lf__h5_close(&o->dset);
    if (o->file >= 0) {
        int rank = 0;
        MPI_Comm_rank(o->comm, &rank);
        /* A failed truncation leaves the close to find room on its own: nothing to report. */
        if (rank == 0 && truncate(o->tmp, 0) != 0)
            lf_log(LF_LOG_DEBUG, MPI_COMM_NULL, "%s: could not truncate before closing", o->tmp);
        MPI_Barrier(o->comm);
        lf__h5_close(&o->file);
    }
    if (o->tmp[0] && o->comm != MPI_COMM_NULL)
        lf_atomic_finish(o->comm, o->tmp, o->path, LF_ERR_IO);
    output_free(out);
}
