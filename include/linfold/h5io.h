/* HDF5 files: models (format v1), sample and label datasets read by row shards, statistics, and
 * row-parallel output datasets. Every file is opened through the MPI-IO driver; raw data moves with
 * collective transfers, and a rank with nothing to read still calls with an empty selection.
 * Outputs are written to a temporary file beside the target and renamed into place only when
 * complete, so a failed run leaves no output file. See docs/format.md.
 *
 *     lf_dataset_t *x = NULL;
 *     lf_h5io_dataset_open(comm, "data.h5:/val/x", LF_DATA_SAMPLES, &x);   // collective
 *     lf_h5io_dataset_read_rows(x, row0, rows, buf);                        // collective
 *     lf_h5io_dataset_close(&x);                                            // collective
 */
#ifndef LINFOLD_H5IO_H
#define LINFOLD_H5IO_H

#include <mpi.h>
#include <stdint.h>

#include "linfold/error.h"
#include "linfold/model.h"

/* One string attribute written at the root of a model file (provenance). */
typedef struct {
    const char *key;
    const char *value;
} lf_attr_t;

/* Turns off HDF5's automatic error printing; linfold reports HDF5 errors itself.
 * Not collective. */
void lf_h5io_init(void);

/* Reads and validates a model file. Caller destroys *out. Errors name the file and object.
 * Collective on comm. */
lf_err_t lf_h5io_read_model(MPI_Comm comm, const char *path, lf_model_t **out);

/* Writes m atomically to path (rank 0 writes a temporary file, then renames it). The bytes depend
 * only on m and attrs: no timestamps, no rank count. Collective on comm. */
lf_err_t lf_h5io_write_model(MPI_Comm comm, const char *path, const lf_model_t *m,
                             const lf_attr_t *attrs, int n_attrs);

typedef enum {
    LF_DATA_SAMPLES, /* 2-D float32 or float64, (n, d); read as float32 */
    LF_DATA_LABELS,  /* 1-D integer, (n); read as int64 */
} lf_data_kind_t;

typedef struct lf_dataset lf_dataset_t;

/* Opens "FILE.h5:/path" and validates its type and rank. Collective on comm. */
lf_err_t lf_h5io_dataset_open(MPI_Comm comm, const char *spec, lf_data_kind_t kind,
                              lf_dataset_t **out);
int64_t lf_h5io_dataset_rows(const lf_dataset_t *ds);
int64_t lf_h5io_dataset_cols(const lf_dataset_t *ds); /* 1 for labels */
const char *lf_h5io_dataset_spec(const lf_dataset_t *ds);
/* Reads rows [row0, row0 + count) into buf (row-major float32 (count, cols) for samples, int64
 * (count) for labels); count may differ between ranks and be 0. Collective on ds. */
lf_err_t lf_h5io_dataset_read_rows(lf_dataset_t *ds, int64_t row0, int64_t count, void *buf);
/* Collective on ds. */
void lf_h5io_dataset_close(lf_dataset_t **ds);

/* A 2-D float32 dataset (n, cols) at dset_path in a new file, written by row blocks and renamed
 * into place by lf_h5io_output_commit(). */
typedef struct lf_output lf_output_t;

/* Collective on comm. */
lf_err_t lf_h5io_output_create(MPI_Comm comm, const char *path, const char *dset_path, int64_t n,
                               int64_t cols, lf_output_t **out);
/* Collective on out; count may be 0 on some ranks. */
lf_err_t lf_h5io_output_write_rows(lf_output_t *out, int64_t row0, int64_t count,
                                   const float *rows);
/* Closes the file and renames it into place; destroys *out. Collective. */
lf_err_t lf_h5io_output_commit(lf_output_t **out);
/* Closes and deletes the temporary file; destroys *out; accepts NULL. Collective. */
void lf_h5io_output_abort(lf_output_t **out);

/* Splits "FILE.h5:/path" at the last ":/". Not collective. */
lf_err_t lf_h5io_split_spec(const char *spec, char *file, size_t file_cap, char *obj,
                            size_t obj_cap);

/* --- helpers for other file kinds (statistics) --- */
/* Path of the temporary file beside path that rank 0 chose; identical on all ranks.
 * Collective on comm. */
lf_err_t lf_h5io_temp_path(MPI_Comm comm, const char *path, char *tmp, size_t cap);
/* Rank 0 renames tmp to path (or, with ok false, removes tmp); the result is agreed.
 * Collective on comm. */
lf_err_t lf_h5io_finish_temp(MPI_Comm comm, const char *tmp, const char *path, lf_err_t ok);

#endif /* LINFOLD_H5IO_H */
