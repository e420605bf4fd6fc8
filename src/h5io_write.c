/* HDF5 writing helpers: property lists without timestamps, groups, scalar attributes, whole
 * datasets, and files built in memory (so that HDF5 never meets a full disk; see
 * lf__h5_memory_file_create). */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <string.h>
#include <unistd.h>

#include "h5io_impl.h"
#include "linfold/alloc.h"

lf_err_t lf__h5_memory_file_create(const char *name, hid_t *file)
{
    lf_err_t err = LF_OK;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    *file = H5I_INVALID_HID;
    LF_CALL_H5(fapl, "access list");
    /* No backing store: HDF5 never writes to disk, so it never meets a full disk (after which
     * HDF5 1.10 leaves a half-closed file that crashes the library at exit). */
    LF_CALL_H5(H5Pset_fapl_core(fapl, (size_t)1 << 20, 0), "core driver");
    *file = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    LF_CALL_H5(*file, "%s: cannot create the file in memory", name);
cleanup:
    lf__h5_close(&fapl);
    return err;
}

static lf_err_t write_all(int fd, const unsigned char *p, size_t n, const char *path)
{
    lf_err_t err = LF_OK;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        LF_CHECK(w > 0, LF_ERR_IO, "%s: cannot write (%s)", path,
                 w < 0 ? strerror(errno) : "no progress");
        p += w;
        n -= (size_t)w;
    }
cleanup:
    return err;
}

lf_err_t lf__h5_memory_file_save(hid_t *file, const char *tmp, const char *path)
{
    lf_err_t err = LF_OK;
    unsigned char *image = NULL;
    int fd = -1;
    LF_CALL_H5(H5Fflush(*file, H5F_SCOPE_GLOBAL), "%s: cannot finish the file", path);
    ssize_t size = H5Fget_file_image(*file, NULL, 0);
    LF_CALL_H5(size, "%s: file image", path);
    LF_CALL(lf_malloc((size_t)size, 1, (void **)&image));
    LF_CALL_H5(H5Fget_file_image(*file, image, (size_t)size), "%s: file image", path);
    LF_CALL(lf__h5_close_file(file, path));
    fd = open(tmp, O_WRONLY | O_TRUNC | O_CLOEXEC);
    LF_CHECK(fd >= 0, LF_ERR_IO, "%s: cannot open %s for writing (%s)", path, tmp, strerror(errno));
    LF_CALL(write_all(fd, image, (size_t)size, path));
    int closed = close(fd);
    fd = -1;
    LF_CHECK(closed == 0, LF_ERR_IO, "%s: cannot write (%s)", path, strerror(errno));
cleanup:
    if (fd >= 0)
        close(fd);
    lf_free(image);
    lf__h5_close(file);
    return err;
}

lf_err_t lf__h5_create_dataset_early(hid_t loc, const char *name, int rank, const hsize_t *dims,
                                     hid_t *dset)
{
    lf_err_t err = LF_OK;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    space = H5Screate_simple(rank, dims, NULL);
    LF_CALL_H5(space, "dataspace for %s", name);
    dcpl = lf__h5_create_plist(H5P_DATASET_CREATE);
    LF_CALL_H5(dcpl, "creation list");
    LF_CALL_H5(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), "allocation time");
    LF_CALL_H5(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "fill time");
    *dset = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    LF_CALL_H5(*dset, "cannot create dataset %s", name);
cleanup:
    lf__h5_close(&dcpl);
    lf__h5_close(&space);
    return err;
}

lf_err_t lf__h5_reserve_file(const char *tmp, const char *path, int64_t bytes)
{
    lf_err_t err = LF_OK;
    int fd = open(tmp, O_WRONLY | O_CLOEXEC);
    LF_CHECK(fd >= 0, LF_ERR_IO, "%s: cannot open (%s)", tmp, strerror(errno));
    int rc = posix_fallocate(fd, 0, (off_t)bytes);
    LF_CHECK(rc == 0, LF_ERR_IO, "%s: cannot reserve %lld bytes for the output (%s)", path,
             (long long)bytes, strerror(rc));
cleanup:
    if (fd >= 0)
        close(fd);
    return err;
}

hid_t lf__h5_create_plist(hid_t cls)
{
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0)
        lf__h5_close(&p);
    return p;
}

hid_t lf__h5_collective_dxpl(void)
{
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (dxpl >= 0 && H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        lf__h5_close(&dxpl);
    return dxpl;
}

lf_err_t lf__h5_create_group(hid_t loc, const char *name, hid_t *grp)
{
    lf_err_t err = LF_OK;
    hid_t gcpl = lf__h5_create_plist(H5P_GROUP_CREATE);
    LF_CALL_H5(gcpl, "creation list");
    *grp = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    LF_CALL_H5(*grp, "cannot create group %s", name);
cleanup:
    lf__h5_close(&gcpl);
    return err;
}

lf_err_t lf__h5_write_scalar_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
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
    lf__h5_close(&attr);
    lf__h5_close(&space);
    return err;
}

lf_err_t lf__h5_write_string_attr(hid_t obj, const char *name, const char *value)
{
    lf_err_t err = LF_OK;
    /* Fixed-length strings: readers never go through HDF5's variable-length conversion. */
    hid_t type = H5Tcopy(H5T_C_S1);
    LF_CALL_H5(type, "string type");
    LF_CALL_H5(H5Tset_size(type, strlen(value) + 1), "string type");
    LF_CALL_H5(H5Tset_strpad(type, H5T_STR_NULLTERM), "string type");
    LF_CALL(lf__h5_write_scalar_attr(obj, name, type, type, value));
cleanup:
    lf__h5_close(&type);
    return err;
}

lf_err_t lf__h5_write_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                              hid_t file_type, hid_t mem_type, const void *data)
{
    lf_err_t err = LF_OK;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    space = H5Screate_simple(rank, dims, NULL);
    LF_CALL_H5(space, "dataspace for %s", name);
    dcpl = lf__h5_create_plist(H5P_DATASET_CREATE);
    LF_CALL_H5(dcpl, "creation list");
    dset = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    LF_CALL_H5(dset, "cannot create dataset %s", name);
    LF_CALL_H5(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
               "cannot write dataset %s", name);
cleanup:
    lf__h5_close(&dset);
    lf__h5_close(&dcpl);
    lf__h5_close(&space);
    return err;
}
