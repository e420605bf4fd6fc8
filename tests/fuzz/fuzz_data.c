/* libFuzzer target: the sample and label reader (docs/fuzzing.md).
 *
 * The input is a data file. "FILE:/x" is opened as samples and "FILE:/y" as labels, and every
 * row of an accepted dataset is read in batches, with a buffer of at most BATCH rows as the
 * command-line tools allocate one (lf_batch_run). A dataset linfold reads with pread
 * (lf_h5io_dataset_direct) is read both ways, and the bytes must agree: the direct path may not
 * read anything HDF5 would not. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { BATCH = 64 };

static char in_path[600];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lf_fuzz_setup();
    lf_fuzz_path(in_path, sizeof in_path, "data.h5");
    return 0;
}

/* Opens dataset obj of kind and reads all its rows; a failure is fine, a crash is not. */
static void read_all(const char *obj, lf_data_kind_t kind)
{
    char spec[700];
    lf_dataset_t *ds = NULL;
    void *buf = NULL, *direct = NULL;
    snprintf(spec, sizeof spec, "%s:%s", in_path, obj);
    if (lf_fuzz_verdict(obj, lf_h5io_dataset_open(lf_fuzz_comm, spec, kind, &ds)) != LF_OK)
        goto done;
    int64_t rows = lf_h5io_dataset_rows(ds), cols = lf_h5io_dataset_cols(ds);
    if (rows < 0 || cols < 1 || (kind == LF_DATA_LABELS && cols != 1))
        lf_fuzz_die("%s opened with %lld rows and %lld columns", spec, (long long)rows,
                    (long long)cols);
    if (rows == 0)
        goto done;
    int64_t batch = rows < BATCH ? rows : BATCH;
    size_t elem = kind == LF_DATA_SAMPLES ? sizeof(float) : sizeof(int64_t);
    if ((uint64_t)cols > SIZE_MAX / elem / (uint64_t)batch)
        lf_fuzz_die("%s: a batch of %lld rows of %lld columns does not fit in memory", spec,
                    (long long)batch, (long long)cols);
    /* Sized from the file's own dimensions, like the tools' batch buffers: a shape the file's
     * size cannot justify ends here, over libFuzzer's -malloc_limit_mb. */
    size_t bytes = (size_t)batch * (size_t)cols * elem;
    buf = malloc(bytes);
    direct = malloc(bytes);
    if (!buf || !direct)
        lf_fuzz_die("%s: cannot allocate a batch of %lld x %lld", spec, (long long)batch,
                    (long long)cols);
    for (int64_t row0 = 0; row0 < rows; row0 += batch) {
        int64_t count = rows - row0 < batch ? rows - row0 : batch;
        if (lf_fuzz_verdict(obj, lf_h5io_dataset_read_rows(ds, row0, count, buf)) != LF_OK)
            break;
        if (!lf_h5io_dataset_direct(ds))
            continue;
        int e = lf_h5io_dataset_pread_rows(ds, row0, count, direct);
        if (e != 0)
            lf_fuzz_die("%s: rows %lld+%lld read through HDF5 but not with pread (errno %d)", spec,
                        (long long)row0, (long long)count, e);
        if (memcmp(buf, direct, (size_t)count * (size_t)cols * elem) != 0)
            lf_fuzz_die("%s: rows %lld+%lld differ between HDF5 and pread", spec, (long long)row0,
                        (long long)count);
    }
done:
    free(direct);
    free(buf);
    lf_h5io_dataset_close(&ds);
    lf_error_clear();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lf_fuzz_begin_input();
    lf_fuzz_write_file(in_path, data, size);
    read_all("/x", LF_DATA_SAMPLES);
    read_all("/y", LF_DATA_LABELS);
    unlink(in_path);
    lf_fuzz_end_input();
    return 0;
}
