/* libFuzzer target: the checkpoint reader (docs/fuzzing.md).
 *
 * The input is a checkpoint file, read with lf_checkpoint_read() against the fixed model and the
 * fixed pass of fuzz_fixed.h, first as a pass without output sums and, when that pass is refused
 * as another one (LF_ERR_ARG), as the same pass with sums: so mutants of both kinds of seed in
 * corpus/checkpoint (written by make_checkpoint_corpus.c) reach the rows done and the layers.
 * An accepted checkpoint must belong to the pass it was read for, list ascending, disjoint,
 * non-adjacent ranges within the rows that add up to its samples, hold statistics shaped like
 * the model with consistent counts, and survive a round trip through the writer:
 * lf_checkpoint_write() and lf_checkpoint_read() again give the same ranges and the same bits. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "fuzz_fixed.h"
#include "linfold/checkpoint.h"
#include "linfold/model.h"
#include "linfold/stats.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char in_path[600], out_path[600];
static lf_model_t *model = NULL;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lf_fuzz_setup();
    lf_fuzz_path(in_path, sizeof in_path, "checkpoint.h5");
    lf_fuzz_path(out_path, sizeof out_path, "roundtrip.h5");
    model = lf_fuzz_fixed_model(LF_ACT_SOFTMAX);
    if (!model)
        lf_fuzz_die("cannot build the fixed model");
    if (lf_model_fingerprint(model) != LF_FUZZ_CHECKPOINT_FINGERPRINT)
        lf_fuzz_die("the fixed model has fingerprint %016llx, the seeds were made for %016llx",
                    (unsigned long long)lf_model_fingerprint(model),
                    (unsigned long long)LF_FUZZ_CHECKPOINT_FINGERPRINT);
    return 0;
}

/* An accepted checkpoint is one of the pass want describes (batch_rows aside). */
static void check_key(const lf_checkpoint_key_t *k, const lf_checkpoint_key_t *want)
{
    if (k->fingerprint != want->fingerprint || strcmp(k->data_file, want->data_file) != 0 ||
        strcmp(k->data_object, want->data_object) != 0 || k->rows != want->rows ||
        k->cols != want->cols || k->file_size != want->file_size ||
        k->file_mtime_ns != want->file_mtime_ns || k->block_rows != want->block_rows ||
        k->with_sums != want->with_sums || strcmp(k->blas_kernel, want->blas_kernel) != 0 ||
        strcmp(k->identity, want->identity) != 0)
        lf_fuzz_die("an accepted checkpoint belongs to another pass");
}

/* Its ranges and statistics are ones a pass can have written. */
static void check_content(const lf_checkpoint_t *ck)
{
    int64_t prev = -1, total = 0;
    if (ck->n_done < 1 || !ck->done)
        lf_fuzz_die("an accepted checkpoint has %lld ranges", (long long)ck->n_done);
    for (int64_t k = 0; k < ck->n_done; k++) {
        const lf_row_range_t *r = &ck->done[k];
        if (!(r->lo > prev && r->lo < r->hi && r->hi <= ck->key.rows))
            lf_fuzz_die("an accepted checkpoint has the range [%lld, %lld) after row %lld",
                        (long long)r->lo, (long long)r->hi, (long long)prev);
        prev = r->hi;
        total += r->hi - r->lo;
    }
    const lf_stats_t *s = ck->stats;
    if (!s || total != ck->rows_done || s->samples != total || s->with_sums != ck->key.with_sums ||
        s->n_layers != model->n_layers)
        lf_fuzz_die("an accepted checkpoint has %lld rows in its ranges, %lld done and %lld "
                    "samples",
                    (long long)total, (long long)ck->rows_done, s ? (long long)s->samples : -1LL);
    for (int i = 0; i < s->n_layers; i++) {
        const lf_layer_stats_t *ls = &s->layers[i];
        if (ls->n_out != model->layers[i].n_out)
            lf_fuzz_die("an accepted checkpoint gives layer %d %lld neurons", i,
                        (long long)ls->n_out);
        for (int64_t j = 0; j < ls->n_out; j++) {
            double rate = lf_stats_rate(s, i, j);
            if (!(rate >= 0.0 && rate <= 1.0) || !(ls->zmin[j] <= ls->zmax[j]))
                lf_fuzz_die("an accepted checkpoint gives neuron %d/%lld the rate %g and the "
                            "range [%g, %g]",
                            i, (long long)j, rate, (double)ls->zmin[j], (double)ls->zmax[j]);
        }
    }
}

/* Written back and read again, an accepted checkpoint gives the same ranges and bits. */
static void check_round_trip(const lf_checkpoint_t *ck)
{
    lf_checkpoint_t *back = NULL;
    int64_t rows = 0;
    if (lf_checkpoint_write(lf_fuzz_comm, out_path, &ck->key, ck->done, ck->n_done, NULL, 0,
                            ck->stats, &rows) != LF_OK ||
        rows != ck->rows_done)
        lf_fuzz_die("an accepted checkpoint could not be written back");
    if (lf_checkpoint_read(lf_fuzz_comm, out_path, model, &ck->key, &back) != LF_OK)
        lf_fuzz_die("an accepted checkpoint, written back, could not be read again");
    const lf_stats_t *a = ck->stats, *b = back->stats;
    bool same = back->rows_done == ck->rows_done && back->n_done == ck->n_done &&
                memcmp(back->done, ck->done, (size_t)ck->n_done * sizeof *ck->done) == 0 &&
                b->with_sums == a->with_sums && b->samples == a->samples;
    for (int i = 0; same && i < a->n_layers; i++) {
        const lf_layer_stats_t *x = &a->layers[i], *y = &b->layers[i];
        size_t n = (size_t)x->n_out;
        same = memcmp(x->positive, y->positive, n * sizeof *x->positive) == 0 &&
               memcmp(x->negative, y->negative, n * sizeof *x->negative) == 0 &&
               memcmp(x->zmin, y->zmin, n * sizeof *x->zmin) == 0 &&
               memcmp(x->zmax, y->zmax, n * sizeof *x->zmax) == 0 &&
               (!a->with_sums || memcmp(x->exact, y->exact, n * sizeof *x->exact) == 0);
    }
    if (!same)
        lf_fuzz_die("an accepted checkpoint, written back and read again, differs");
    lf_checkpoint_destroy(&back);
    unlink(out_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lf_checkpoint_t *ck = NULL;
    lf_checkpoint_key_t want;
    lf_fuzz_begin_input();
    lf_fuzz_write_file(in_path, data, size);
    lf_fuzz_fixed_key(false, &want);
    lf_err_t err = lf_fuzz_verdict("checkpoint without sums",
                                   lf_checkpoint_read(lf_fuzz_comm, in_path, model, &want, &ck));
    if (err == LF_ERR_ARG) {
        lf_error_clear();
        H5Eclear2(H5E_DEFAULT);
        lf_fuzz_fixed_key(true, &want);
        err = lf_fuzz_verdict("checkpoint with sums",
                              lf_checkpoint_read(lf_fuzz_comm, in_path, model, &want, &ck));
    }
    if (err == LF_OK) {
        check_key(&ck->key, &want);
        check_content(ck);
        check_round_trip(ck);
    } else if (ck) {
        lf_fuzz_die("a refused checkpoint was handed out");
    }
    lf_checkpoint_destroy(&ck);
    unlink(in_path);
    lf_fuzz_end_input();
    return 0;
}
