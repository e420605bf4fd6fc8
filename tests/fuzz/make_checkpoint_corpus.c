/* Writes the seed corpus of fuzz_checkpoint: tests/fuzz/corpus/checkpoint/ (docs/fuzzing.md).
 *
 *     build-fuzz/tests/fuzz/make_checkpoint_corpus tests/fuzz/corpus/checkpoint
 *
 * Every seed is a checkpoint of the fixed pass of fuzz_fixed.h, written by linfold's own writer
 * (lf_checkpoint_write) from statistics that a real calibration pass (lf_stats_collect) computed
 * over seeded samples, one row of samples for each row the seed lists as done. The seeds differ in
 * what a reader meets: output sums or none, one range or several (a checkpoint of several ranks,
 * or of a resumed pass, whose base and new rows the writer merges), all rows or one. Each is read
 * back with lf_checkpoint_read() and must be accepted. Nothing depends on the machine or the
 * time: rerunning the program rewrites the same bytes. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_fixed.h"
#include "lf_test.h"
#include "linfold/batch.h"
#include "linfold/checkpoint.h"
#include "linfold/h5io.h"
#include "linfold/stats.h"

/* Built with AddressSanitizer, like the targets: MPI and HDF5 keep allocations for the life of
 * the process, which are no leaks of ours. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

#define MAX_RANGES 4

typedef struct {
    const char *name;
    bool sums;
    int n_base, n_mine;
    lf_row_range_t base[MAX_RANGES]; /* the rows of the checkpoint a pass resumed from */
    lf_row_range_t mine[MAX_RANGES]; /* the rows it did itself */
} seed_t;

static const seed_t seeds[] = {
    {"complete-sums", true, 0, 1, {{0, 0}}, {{0, LF_FUZZ_FIXED_ROWS}}},
    {"complete", false, 0, 1, {{0, 0}}, {{0, LF_FUZZ_FIXED_ROWS}}},
    {"three-ranks-sums", true, 3, 0, {{0, 20}, {64, 84}, {128, 148}}, {{0, 0}}},
    {"resumed", false, 2, 2, {{0, 16}, {48, 64}}, {{16, 32}, {100, 101}}},
    {"last-row-sums", true, 0, 1, {{0, 0}}, {{LF_FUZZ_FIXED_ROWS - 1, LF_FUZZ_FIXED_ROWS}}},
};

static int give_up(const char *what)
{
    fprintf(stderr, "make_checkpoint_corpus: %s\n", what);
    lf_error_print(true);
    return 1;
}

/* Writes seed k to out/NAME.h5 from statistics of as many seeded rows as it lists. */
static int write_seed(const lf_model_t *m, const char *tmp, const char *out, int k)
{
    const seed_t *sd = &seeds[k];
    int64_t rows = 0, written = 0;
    for (int r = 0; r < sd->n_base; r++)
        rows += sd->base[r].hi - sd->base[r].lo;
    for (int r = 0; r < sd->n_mine; r++)
        rows += sd->mine[r].hi - sd->mine[r].lo;
    char spec[700], path[700];
    lf_test_write_samples(tmp, sd->name, rows, 4, -1.0f, 1.0f, 1000 + (uint64_t)k, spec,
                          sizeof spec);
    lf_dataset_t *data = NULL;
    lf_stats_t *s = NULL;
    lf_checkpoint_t *back = NULL;
    lf_batch_opts_t bo = {.batch_rows = 16};
    lf_checkpoint_key_t key;
    lf_fuzz_fixed_key(sd->sums, &key);
    snprintf(path, sizeof path, "%s/%s.h5", out, sd->name);
    if (lf_h5io_dataset_open(LF_TEST_COMM, spec, LF_DATA_SAMPLES, &data) != LF_OK ||
        lf_stats_collect(LF_TEST_COMM, m, data, &bo, sd->sums, &s) != LF_OK)
        return give_up("cannot calibrate the fixed model");
    if (lf_checkpoint_write(LF_TEST_COMM, path, &key, sd->base, sd->n_base, sd->mine, sd->n_mine, s,
                            &written) != LF_OK ||
        written != rows)
        return give_up("cannot write a checkpoint");
    if (lf_checkpoint_read(LF_TEST_COMM, path, m, &key, &back) != LF_OK)
        return give_up("a seed is not accepted");
    printf("%s: %lld rows in %lld ranges%s\n", path, (long long)back->rows_done,
           (long long)back->n_done, sd->sums ? ", with sums" : "");
    lf_checkpoint_destroy(&back);
    lf_stats_destroy(&s);
    lf_h5io_dataset_close(&data);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_checkpoint_corpus OUT_DIR\n");
        return 2;
    }
    MPI_Init(&argc, &argv);
    MPI_Comm_dup(MPI_COMM_WORLD, &LF_TEST_COMM);
    MPI_Comm_set_errhandler(LF_TEST_COMM, MPI_ERRORS_RETURN);
    lf_error_set_rank(0, 1);
    lf_h5io_init();
    lf_model_t *m = lf_fuzz_fixed_model(LF_ACT_SOFTMAX);
    char tmp[512];
    lf_test_tmpdir(tmp, sizeof tmp);
    int status =
        !m || !tmp[0] ? give_up("cannot build the fixed model or a temporary directory") : 0;
    if (m && lf_model_fingerprint(m) != LF_FUZZ_CHECKPOINT_FINGERPRINT) {
        fprintf(stderr, "the fixed model has fingerprint %016llx, not %016llx: ",
                (unsigned long long)lf_model_fingerprint(m),
                (unsigned long long)LF_FUZZ_CHECKPOINT_FINGERPRINT);
        status = give_up("keep LF_FUZZ_CHECKPOINT_FINGERPRINT in step");
    }
    for (int k = 0; status == 0 && k < (int)(sizeof seeds / sizeof *seeds); k++)
        status = write_seed(m, tmp, argv[1], k);
    if (tmp[0])
        lf_test_tmpdir_remove(tmp);
    lf_model_destroy(&m);
    MPI_Comm_free(&LF_TEST_COMM);
    MPI_Finalize();
    return status;
}
