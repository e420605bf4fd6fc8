/* HDF5 helpers shared inside src/ by the modules that write their own file kinds (statistics).
 * Every helper records an error naming the object and returns lf_err_t, except the id helpers. */
#ifndef LINFOLD_H5IO_IMPL_H
#define LINFOLD_H5IO_IMPL_H

#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>

#include "linfold/error.h"

/* Records an HDF5 failure (negative herr_t / hid_t) with the innermost HDF5 message. */
#define LF_CALL_H5(expr, ...)                                                                      \
    do {                                                                                           \
        if ((expr) < 0) {                                                                          \
            char lf__h5[256];                                                                      \
            lf__h5_error_text(lf__h5, sizeof lf__h5);                                                \
            char lf__what[8192];                                                                    \
            snprintf(lf__what, sizeof lf__what, __VA_ARGS__);                                      \
            err = LF_ERR_HDF5;                                                                     \
            lf_error_record(__FILE__, __LINE__, __func__, err, "%s (HDF5: %s)", lf__what, lf__h5); \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

void lf__h5_error_text(char *buf, size_t cap);
/* Closes any HDF5 id and sets it to H5I_INVALID_HID; accepts invalid ids. */
void lf__close_id(hid_t *id);
/* Opens an existing file read-only through MPI-IO, checking existence first. Collective on comm. */
lf_err_t lf__open_file(MPI_Comm comm, const char *path, hid_t *file);
hid_t lf__collective_dxpl(void);
hid_t lf__create_plist(hid_t cls);
htri_t lf__h5_path_exists(hid_t loc, const char *path);
lf_err_t lf__read_string_attr(hid_t obj, const char *name, const char *where, char *buf, size_t cap);
lf_err_t lf__read_number_attr(hid_t obj, const char *name, const char *where, H5T_class_t cls,
                              hid_t mem_type, void *value);
lf_err_t lf__write_string_attr(hid_t obj, const char *name, const char *value);
lf_err_t lf__write_number_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                               const void *value);
lf_err_t lf__create_group(hid_t loc, const char *name, hid_t *grp);
/* Writes a whole dataset of file_type from memory of mem_type (no timestamps). */
lf_err_t lf__write_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                           hid_t file_type, hid_t mem_type, const void *data);
lf_err_t lf__write_float_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                                 const float *data);
lf_err_t lf__open_float_dataset(hid_t loc, const char *name, const char *file, const char *path,
                                int rank, hsize_t *dims, hid_t *dset);

/* Writes the whole file at tmp; runs on rank 0 only. */
typedef lf_err_t (*lf__file_writer_t)(const char *tmp, const void *ctx);
/* Rank 0 writes path through a temporary file beside it, renamed into place only when complete;
 * the result is agreed by all ranks. Collective on comm. */
lf_err_t lf__write_atomic_rank0(MPI_Comm comm, const char *path, lf__file_writer_t write,
                                const void *ctx);

#endif /* LINFOLD_H5IO_IMPL_H */
