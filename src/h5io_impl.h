/* HDF5 helpers shared inside src/ by the modules that read or write linfold's file kinds (models,
 * sample and label datasets, row-parallel outputs, statistics).
 *
 * Reading is where hostile files meet the library, so every read goes through the few checked
 * entry points here:
 *   - lf__h5_open_file: existence, permission, HDF5 signature and size, agreed before the
 *     collective open;
 *   - lf__h5_open_object / lf__h5_open_dataset: every link on the path is followed only if it is
 *     hard or soft (never external: a link access list that refuses external links is used for
 *     every traversal), the object is of the expected type, a dataset's data lives inside the
 *     file (no external raw storage, no virtual layout, only filters built into the library),
 *     its class and rank are the expected ones, and its shape needs no more bytes than the file
 *     can hold for it (the allocation bound);
 *   - lf__h5_read_number_attr: scalar numeric attributes only;
 *   - lf__h5_read_string: string attributes, scalar and short.
 * Models and statistics are parsed only in reader processes (sandbox_impl.h), because HDF5 1.10
 * crashes, loops or allocates without bound on corrupted metadata; data files are checked by a
 * reader process before the ranks open them.
 * Every helper records an error that names the file and the object, and returns lf_err_t. */
#ifndef LINFOLD_H5IO_IMPL_H
#define LINFOLD_H5IO_IMPL_H

#include <hdf5.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "linfold/error.h"

/* Records an HDF5 failure (negative herr_t / hid_t) with the innermost HDF5 message. */
#define LF_CALL_H5(expr, ...)                                                                      \
    do {                                                                                           \
        if ((expr) < 0) {                                                                          \
            char lf__h5[256];                                                                      \
            lf__h5_error_text(lf__h5, sizeof lf__h5);                                              \
            char lf__what[8192];                                                                   \
            snprintf(lf__what, sizeof lf__what, __VA_ARGS__);                                      \
            err = LF_ERR_HDF5;                                                                     \
            lf_error_record(__FILE__, __LINE__, __func__, err, "%s (HDF5: %s)", lf__what, lf__h5); \
            goto cleanup;                                                                          \
        }                                                                                          \
    } while (0)

/* Writes the innermost message of HDF5's error stack to buf and clears the stack. */
void lf__h5_error_text(char *buf, size_t cap);
/* Closes any HDF5 id and sets it to H5I_INVALID_HID; accepts invalid ids. */
void lf__h5_close(hid_t *id);
/* A link access list that refuses to traverse external links; owned by this module. */
hid_t lf__h5_lapl(void);

/* An open file: the id, the path it was opened with (borrowed) and its size when opened. */
typedef struct {
    hid_t id;
    const char *path;
    int64_t size;
} lf__h5_file_t;

#define LF__H5_FILE_NONE ((lf__h5_file_t){.id = H5I_INVALID_HID})

/* Checks that path is a readable regular HDF5 file and gives its size.
 * Not collective. */
lf_err_t lf__h5_check_readable(const char *path, int64_t *size);
/* Opens an existing file read-only through MPI-IO, after checks agreed by all ranks.
 * Collective on comm. */
lf_err_t lf__h5_open_file(MPI_Comm comm, const char *path, lf__h5_file_t *f);
/* Opens an existing file read-only with the POSIX driver, without file locks, in this process
 * alone (the reader processes of sandbox_impl.h).
 * Not collective. */
lf_err_t lf__h5_open_file_serial(const char *path, lf__h5_file_t *f);
/* Closes an HDF5 file id exactly once: *file is invalid afterwards whatever H5Fclose returned,
 * and a failure (a write that could not be flushed) is recorded naming path.
 * Collective when the file was opened through MPI-IO. */
lf_err_t lf__h5_close_file(hid_t *file, const char *path);

/* Whether `path` (absolute, e.g. "/layers/2/skip") exists in f: 1, 0, or an error recorded for
 * an external or user-defined link on the way (LF_ERR_FORMAT) as -1.
 * Not collective. */
int lf__h5_exists(const lf__h5_file_t *f, const char *path, lf_err_t *err);
/* Opens the group or dataset at path after the checks above; "missing <kind> path" when absent.
 * Not collective (a metadata read; every rank of a collective open may call it). */
lf_err_t lf__h5_open_object(const lf__h5_file_t *f, const char *path, H5O_type_t type, hid_t *out);

/* What a dataset must be: its class and rank, and the words that describe it in messages
 * ("a float dataset (weights are float32 or float64)"). */
typedef struct {
    H5T_class_t cls;
    int rank;
    const char *described;
} lf__h5_want_t;

/* Opens the dataset at path in f and checks it (see above). dims receives its shape.
 * Not collective. */
lf_err_t lf__h5_open_dataset(const lf__h5_file_t *f, const char *path, const lf__h5_want_t *want,
                             hid_t *dset, hsize_t dims[2]);
/* Checks every chunk of a chunked dataset (nothing for other layouts): stored inside the file,
 * and of exactly its size when unfiltered. A B-tree lookup per chunk: run in a reader process.
 * Not collective. */
lf_err_t lf__h5_check_chunks(const lf__h5_file_t *f, const char *path, hid_t dset);
/* Whether a chunk of size bytes stored at addr lies inside a file of file_size bytes.
 * Not collective. */
bool lf__h5_chunk_in_file(haddr_t addr, hsize_t size, int64_t file_size);
/* Decodes the filtered chunks a rank is about to read before HDF5 does (h5io_chunk_check.c):
 * HDF5 1.10.8 trusts a filter's output size. None (*out NULL) for unfiltered datasets. dset, spec
 * and fd (a descriptor of the file, for raw reads) are borrowed.
 * Not collective. */
typedef struct lf__h5_chunk_check lf__h5_chunk_check_t;
lf_err_t lf__h5_chunk_check_create(hid_t dset, const char *spec, int fd, int64_t file_size,
                                   lf__h5_chunk_check_t **out);
/* Checks every chunk that holds one of rows [row0, row0 + count), each chunk row once.
 * Not collective. */
lf_err_t lf__h5_chunk_check_rows(lf__h5_chunk_check_t *cc, int64_t row0, int64_t count);
void lf__h5_chunk_check_free(lf__h5_chunk_check_t **cc);
/* The byte offset up to which the file must extend for dset to be read whole: offset + size of
 * contiguous storage, or the file size at open for other layouts.
 * Not collective. */
int64_t lf__h5_dataset_end(const lf__h5_file_t *f, hid_t dset);

/* Reads the scalar numeric attribute `name` of obj (class cls, or an integer for H5T_FLOAT) as
 * mem_type. where ("file: /layers") prefixes messages.
 * Not collective. */
lf_err_t lf__h5_read_number_attr(hid_t obj, const char *name, const char *where, H5T_class_t cls,
                                 hid_t mem_type, void *value);

/* Selects rows [row0, row0 + count) of a (rows, cols) or (rows) file space and makes the
 * matching memory space; count 0 selects nothing (a rank with no rows still takes part). */
lf_err_t lf__h5_select_rows(hid_t file_space, int ndims, int64_t row0, int64_t count, int64_t cols,
                            hid_t *mem_space);

/* ---- string attributes (h5io_strings.c); run in a reader process only ---- */
enum { LF__STR_MAX = 64 };

typedef enum {
    LF__STR_OK,
    LF__STR_NO_OBJECT,  /* the object does not exist (the caller reports its own message) */
    LF__STR_MISSING,    /* no attribute of that name */
    LF__STR_NOT_STRING, /* the attribute is not a string */
    LF__STR_NOT_SCALAR, /* an array of strings, or an empty dataspace */
    LF__STR_TOO_LONG,   /* LF__STR_MAX bytes or more */
    LF__STR_UNREADABLE, /* HDF5 reported an error reading it */
} lf__str_status_t;

typedef struct {
    const char *object; /* "/" or "/layers/3" (borrowed) */
    const char *name;   /* attribute name (borrowed) */
    lf__str_status_t status;
    char value[LF__STR_MAX]; /* NUL-terminated; control characters replaced by '?' */
} lf__str_attr_t;

/* Reads the string attribute item->name of item->object in file into item (status, value).
 * Not collective. */
void lf__h5_read_string(hid_t file, lf__str_attr_t *item);
/* Turns an item's status into the error that names file, object and attribute, or LF_OK; on
 * LF_OK *value points to the string.
 * Not collective. */
lf_err_t lf__h5_string_value(const lf__str_attr_t *item, const char *file, const char **value);

/* ---- writing ---- */
/* Creates an HDF5 file in memory (the core driver without a backing store); name only labels it.
 * Rank 0's whole-file writers (models, statistics) build their file this way and then save it
 * with lf__h5_memory_file_save(), so that HDF5 itself never writes to disk. */
lf_err_t lf__h5_memory_file_create(const char *name, hid_t *file);
/* Writes the memory file's image to tmp (an existing file, truncated) with checked write()s and
 * closes the memory file, whatever happens. A full disk is then an ordinary error, reported for
 * path (the output tmp becomes). */
lf_err_t lf__h5_memory_file_save(hid_t *file, const char *tmp, const char *path);
/* A creation property list without object timestamps (two writes of a model differ otherwise). */
hid_t lf__h5_create_plist(hid_t cls);
/* A transfer property list for collective MPI-IO transfers. */
hid_t lf__h5_collective_dxpl(void);
lf_err_t lf__h5_create_group(hid_t loc, const char *name, hid_t *grp);
lf_err_t lf__h5_write_string_attr(hid_t obj, const char *name, const char *value);
/* A scalar attribute of file_type, written from memory of mem_type. */
lf_err_t lf__h5_write_scalar_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                                  const void *value);
/* Creates a contiguous float32 dataset whose storage is allocated at creation and never filled,
 * so that ranks writing parts of it in parallel never write fill values.
 * Collective when loc belongs to an MPI-IO file (as HDF5 metadata operations are). */
lf_err_t lf__h5_create_dataset_early(hid_t loc, const char *name, int rank, const hsize_t *dims,
                                     hid_t *dset);
/* Allocates the first `bytes` of the existing file tmp (posix_fallocate), so that a parallel
 * writer meets a full disk here, as an ordinary error naming path, and never inside HDF5 (see
 * h5io_output.c for why HDF5 1.10 must not). One rank calls it. */
lf_err_t lf__h5_reserve_file(const char *tmp, const char *path, int64_t bytes);
/* Writes a whole dataset of file_type from memory of mem_type. */
lf_err_t lf__h5_write_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims,
                              hid_t file_type, hid_t mem_type, const void *data);

#endif /* LINFOLD_H5IO_IMPL_H */
