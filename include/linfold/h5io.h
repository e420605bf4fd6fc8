/* HDF5 files: models (format v1), sample and label datasets read by row shards, and row-parallel
 * output datasets (the statistics file lives in stats.h and uses the same internal helpers).
 * Every file is opened through the MPI-IO driver; raw data moves with collective transfers, and a
 * rank with nothing to read still calls with an empty selection. Reading checks every object it
 * touches (src/h5io_impl.h says what and why): a hostile or corrupted file gives an error naming
 * the file and the object, never a crash, a hang, an unbounded allocation or a read outside the
 * file. Outputs are written atomically (atomic.h). See docs/format.md.
 *
 *     lf_dataset_t *x = NULL;
 *     lf_h5io_dataset_open(comm, "data.h5:/val/x", LF_DATA_SAMPLES, &x);   // collective
 *     lf_h5io_dataset_read_rows(x, row0, rows, buf);                        // collective
 *     lf_h5io_dataset_close(&x);                                            // collective
 */
#ifndef LINFOLD_H5IO_H
#define LINFOLD_H5IO_H

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/model.h"

/* One string attribute written at the root of a model file (provenance). */
typedef struct {
    const char *key;
    const char *value;
} lf_attr_t;

/* Turns off HDF5's automatic error printing (linfold reports HDF5 errors itself) and the loading
 * of filter plugins named by files.
 * Not collective. */
void lf_h5io_init(void);

/* Reads and validates a model file through the MPI-IO driver.
 * Collective on comm.
 * Caller destroys *out. Errors name the file and object. */
lf_err_t lf_h5io_read_model(MPI_Comm comm, const char *path, lf_model_t **out);
/* Reads and validates a model file like lf_h5io_read_model into one copy per node: a shared
 * model (model.h) whose arrays live in an MPI-3 shared-memory window of the node's ranks.
 * Collective on comm.
 * Rank 0's reader process checks the file; rank 0 receives the values directly into its node's
 * window (it never holds a second copy) and the first rank of every other node receives them by
 * broadcast. Caller frees *out with lf_model_release(comm, &m) on every rank (not
 * lf_model_destroy); comm must stay valid until then. Errors are those of lf_h5io_read_model,
 * agreed on every rank, *out NULL everywhere. */
lf_err_t lf_h5io_read_model_shared(MPI_Comm comm, const char *path, lf_model_t **out);

/* Writes m atomically to path: rank 0 writes a temporary file, then renames it.
 * Collective on comm.
 * The bytes depend only on m and attrs: no timestamps, no rank count. */
lf_err_t lf_h5io_write_model(MPI_Comm comm, const char *path, const lf_model_t *m,
                             const lf_attr_t *attrs, int n_attrs);

/* Overwrites in place, in the model file at path, the weight blocks and bias of every layer i
 * of m with layers[i] true, with m's values; nothing else in the file changes. The file must
 * hold m's structure with its arrays already allocated (a model written for m that is not
 * published yet, such as a distributed fold's temporary file). Rank 0 writes, straight from m's
 * arrays (a shared model's window is read, never copied).
 * Collective on comm.
 * Errors are agreed (a dataset of another shape is LF_ERR_INTERNAL); after one the file's
 * values are unspecified, and the caller removes it. */
lf_err_t lf_h5io_rewrite_layers(MPI_Comm comm, const char *path, const lf_model_t *m,
                                const bool *layers);

typedef enum {
    LF_DATA_SAMPLES, /* 2-D float32 or float64, (n, d); read as float32 */
    LF_DATA_LABELS,  /* 1-D integer, (n); read as int64 */
} lf_data_kind_t;

typedef struct lf_dataset lf_dataset_t;

/* Opens the dataset "FILE.h5:/path" through the MPI-IO driver and validates its type and rank.
 * Collective on comm.
 * Caller closes *out with lf_h5io_dataset_close(). */
lf_err_t lf_h5io_dataset_open(MPI_Comm comm, const char *spec, lf_data_kind_t kind,
                              lf_dataset_t **out);
/* Returns the number of rows (samples) of ds.
 * Not collective. */
int64_t lf_h5io_dataset_rows(const lf_dataset_t *ds);
/* Returns the number of columns of ds: the features per sample, 1 for labels.
 * Not collective. */
int64_t lf_h5io_dataset_cols(const lf_dataset_t *ds);
/* Returns the "FILE.h5:/path" spec ds was opened with.
 * Not collective. */
const char *lf_h5io_dataset_spec(const lf_dataset_t *ds);
/* Returns the file part of the spec.
 * Not collective. */
const char *lf_h5io_dataset_file(const lf_dataset_t *ds);
/* Reads rows [row0, row0 + count) into buf with one collective transfer.
 * Collective on ds.
 * buf is row-major float32 (count, cols) for samples, int64 (count) for labels. count may differ
 * between ranks and be 0. */
lf_err_t lf_h5io_dataset_read_rows(lf_dataset_t *ds, int64_t row0, int64_t count, void *buf);
/* Whether rows of ds can be read with lf_h5io_dataset_pread_rows() (contiguous, allocated,
 * stored as float32 samples or int64 labels in this machine's byte order). The same on every rank.
 * Not collective. */
bool lf_h5io_dataset_direct(const lf_dataset_t *ds);
/* Reads rows [row0, row0 + count) of a direct dataset into buf (as lf_h5io_dataset_read_rows())
 * with pread on this rank's own descriptor, and returns 0 or an errno (ENODATA: the file ends
 * before the rows).
 * Not collective. Thread-safe: no HDF5, no MPI, no error record, so it may run on a background
 * thread (background.h); lf_h5io_dataset_pread_check() turns the result into an error. */
int lf_h5io_dataset_pread_rows(const lf_dataset_t *ds, int64_t row0, int64_t count, void *buf);
/* The error for lf_h5io_dataset_pread_rows()'s result, naming the file and the rows, and the
 * check that the file still holds the whole dataset (see lf_h5io_dataset_read_rows()).
 * Not collective. */
lf_err_t lf_h5io_dataset_pread_check(const lf_dataset_t *ds, int64_t row0, int64_t count,
                                     int result);
/* Closes the dataset and its file and sets *ds to NULL.
 * Collective on ds.
 * Accepts NULL, but then it must be NULL on every rank: closing the file is collective. */
void lf_h5io_dataset_close(lf_dataset_t **ds);

/* A 2-D float32 dataset (n, cols) at dset_path in a new file, written by row blocks and renamed
 * into place by lf_h5io_output_commit(). */
typedef struct lf_output lf_output_t;

/* Creates the (n, cols) float32 dataset dset_path in a new temporary file beside path.
 * Collective on comm.
 * The file is created through the MPI-IO driver with its storage allocated up front; finish
 * with lf_h5io_output_commit() or lf_h5io_output_abort(). */
lf_err_t lf_h5io_output_create(MPI_Comm comm, const char *path, const char *dset_path, int64_t n,
                               int64_t cols, lf_output_t **out);
/* Writes rows [row0, row0 + count) from rows, row-major float32 (count, cols).
 * Collective on out.
 * count may be 0 on some ranks. */
lf_err_t lf_h5io_output_write_rows(lf_output_t *out, int64_t row0, int64_t count,
                                   const float *rows);
/* Closes the file and renames it into place.
 * Collective on out.
 * Destroys *out, also on failure. */
lf_err_t lf_h5io_output_commit(lf_output_t **out);
/* Closes and deletes the temporary file.
 * Collective on out.
 * Destroys *out. Accepts NULL, but then it must be NULL on every rank. */
void lf_h5io_output_abort(lf_output_t **out);

/* Splits "FILE.h5:/path" at the last ":/" into file and obj.
 * Not collective.
 * LF_ERR_USAGE when spec has no such form or a part does not fit its buffer. */
lf_err_t lf_h5io_split_spec(const char *spec, char *file, size_t file_cap, char *obj,
                            size_t obj_cap);

#endif /* LINFOLD_H5IO_H */
