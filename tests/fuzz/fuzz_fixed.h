/* What the statistics and checkpoint targets read files against (docs/fuzzing.md): a fixed model
 * and, for checkpoints, the fixed pass they belong to. The seeds in corpus/stats and
 * corpus/checkpoint were made for exactly these (make_corpus.py, make_checkpoint_corpus.c), so
 * mutants get past the fingerprint and key checks and reach the layers. */
#ifndef LF_FUZZ_FIXED_H
#define LF_FUZZ_FIXED_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "linfold/checkpoint.h"
#include "linfold/model.h"

/* lf_model_fingerprint() of lf_fuzz_fixed_model(LF_ACT_IDENTITY), the statistics target's
 * model; make_corpus.py checks the same value. */
#define LF_FUZZ_FIXED_FINGERPRINT 0x112284d492855afbULL
/* lf_model_fingerprint() of lf_fuzz_fixed_model(LF_ACT_SOFTMAX), the checkpoint target's. */
#define LF_FUZZ_CHECKPOINT_FINGERPRINT 0x01aadf00dc09a22cULL

/* The value of element k of a block (tag 0 weight, 1 bias, 2 skip from the input, 3 skip from
 * layer 0) of layer i: multiples of 1/16 in [-0.5, 0.5], exact in float32 and in make_corpus.py. */
static inline float lf_fuzz_fixed_value(int i, int tag, int64_t k)
{
    return (float)((k * 7 + i * 3 + tag * 5) % 17 - 8) / 16.0f;
}

static inline void lf_fuzz_fill_block(float *w, int64_t n, int i, int tag)
{
    for (int64_t k = 0; k < n; k++)
        w[k] = lf_fuzz_fixed_value(i, tag, k);
}

/* 4 inputs; 6 leaky_relu (alpha 0.125), 5 relu, 3 outputs (identity for statistics, softmax
 * for checkpoints: a layer without output sums) with skip blocks from the input and from layer 0:
 * every kind of object a statistics or checkpoint file is checked against. NULL on failure; the
 * caller destroys it. */
static inline lf_model_t *lf_fuzz_fixed_model(lf_act_t output)
{
    static const int64_t widths[3] = {6, 5, 3};
    const lf_act_t acts[3] = {LF_ACT_LEAKY_RELU, LF_ACT_RELU, output};
    lf_model_t *m = NULL;
    if (lf_model_create(4, 3, &m) != LF_OK)
        return NULL;
    for (int i = 0; i < 3; i++) {
        if (lf_model_layer_init(m, i, widths[i], acts[i], i == 0 ? 0.125f : 0.0f) != LF_OK)
            goto fail;
        lf_fuzz_fill_block(lf_model_block(m, i, i - 1)->w, widths[i] * lf_model_width(m, i - 1), i,
                           0);
        lf_fuzz_fill_block(m->layers[i].bias, widths[i], i, 1);
    }
    lf_block_t *blk = NULL;
    if (lf_model_block_ensure(m, 2, LF_SRC_INPUT, &blk) != LF_OK)
        goto fail;
    lf_fuzz_fill_block(blk->w, 3 * 4, 2, 2);
    if (lf_model_block_ensure(m, 2, 0, &blk) != LF_OK)
        goto fail;
    lf_fuzz_fill_block(blk->w, 3 * 6, 2, 3);
    if (lf_model_validate(m, "fixed model") != LF_OK)
        goto fail;
    return m;
fail:
    lf_model_destroy(&m);
    return NULL;
}

/* The rows of the fixed pass's data set: every seed's ranges lie within them. */
#define LF_FUZZ_FIXED_ROWS 160

/* The pass every checkpoint seed belongs to: the fixed model with softmax outputs over a 160 x 4
 * data set in compute blocks of 16 rows, with or without output sums. Fixed strings, not this machine's: the BLAS
 * kernel and the data file are only compared, never used. */
static inline void lf_fuzz_fixed_key(bool with_sums, lf_checkpoint_key_t *key)
{
    memset(key, 0, sizeof *key);
    key->fingerprint = LF_FUZZ_CHECKPOINT_FINGERPRINT;
    snprintf(key->data_file, sizeof key->data_file, "/scratch/fuzz/calibration.h5");
    snprintf(key->data_object, sizeof key->data_object, "/train/x");
    key->rows = LF_FUZZ_FIXED_ROWS;
    key->cols = 4;
    key->file_size = 12288;
    key->file_mtime_ns = 1764633600123456789LL;
    key->block_rows = 16;
    key->batch_rows = 16;
    key->with_sums = with_sums;
    snprintf(key->blas_kernel, sizeof key->blas_kernel, "Haswell");
    snprintf(key->identity, sizeof key->identity,
             "4f2a0c5d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29");
}

#endif /* LF_FUZZ_FIXED_H */
