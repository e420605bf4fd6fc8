/* libFuzzer target: the statistics reader (docs/fuzzing.md).
 *
 * The input is a statistics file, read with lf_stats_read() against a fixed model built here.
 * The seeds in corpus/stats were made for this model by make_corpus.py (same structure and
 * values, same fingerprint), so mutants get past the fingerprint check and reach the layers.
 * An accepted file must give statistics shaped like the model with consistent counts. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "linfold/model.h"
#include "linfold/stats.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* lf_model_fingerprint() of fixed_model(); make_corpus.py checks the same value. */
#define FIXED_FINGERPRINT 0x112284d492855afbULL

static char in_path[600];
static lf_model_t *model = NULL;

/* The value of element k of a block (tag 0 weight, 1 bias, 2 skip from the input, 3 skip from
 * layer 0) of layer i: multiples of 1/16 in [-0.5, 0.5], exact in float32 and in make_corpus.py. */
static float fixed_value(int i, int tag, int64_t k)
{
    return (float)((k * 7 + i * 3 + tag * 5) % 17 - 8) / 16.0f;
}

static void fill_block(float *w, int64_t n, int i, int tag)
{
    for (int64_t k = 0; k < n; k++)
        w[k] = fixed_value(i, tag, k);
}

/* 4 inputs; 6 leaky_relu (alpha 0.125), 5 relu, 3 identity with skip blocks from the input and
 * from layer 0: every kind of object a statistics file is checked against. */
static lf_model_t *fixed_model(void)
{
    static const int64_t widths[3] = {6, 5, 3};
    static const lf_act_t acts[3] = {LF_ACT_LEAKY_RELU, LF_ACT_RELU, LF_ACT_IDENTITY};
    lf_model_t *m = NULL;
    if (lf_model_create(4, 3, &m) != LF_OK)
        return NULL;
    for (int i = 0; i < 3; i++) {
        if (lf_model_layer_init(m, i, widths[i], acts[i], i == 0 ? 0.125f : 0.0f) != LF_OK)
            goto fail;
        fill_block(lf_model_block(m, i, i - 1)->w, widths[i] * lf_model_width(m, i - 1), i, 0);
        fill_block(m->layers[i].bias, widths[i], i, 1);
    }
    lf_block_t *blk = NULL;
    if (lf_model_block_ensure(m, 2, LF_SRC_INPUT, &blk) != LF_OK)
        goto fail;
    fill_block(blk->w, 3 * 4, 2, 2);
    if (lf_model_block_ensure(m, 2, 0, &blk) != LF_OK)
        goto fail;
    fill_block(blk->w, 3 * 6, 2, 3);
    if (lf_model_validate(m, "fixed model") != LF_OK)
        goto fail;
    return m;
fail:
    lf_model_destroy(&m);
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lf_fuzz_setup();
    lf_fuzz_path(in_path, sizeof in_path, "stats.h5");
    model = fixed_model();
    if (!model)
        lf_fuzz_die("cannot build the fixed model");
    if (lf_model_fingerprint(model) != FIXED_FINGERPRINT)
        lf_fuzz_die("the fixed model has fingerprint %016llx, the seeds were made for %016llx: "
                    "keep fixed_model() and make_corpus.py in step",
                    (unsigned long long)lf_model_fingerprint(model),
                    (unsigned long long)FIXED_FINGERPRINT);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lf_stats_t *s = NULL;
    lf_fuzz_begin_input();
    lf_fuzz_write_file(in_path, data, size);
    if (lf_fuzz_verdict("statistics", lf_stats_read(lf_fuzz_comm, in_path, model, NULL, &s)) ==
        LF_OK) {
        if (s->n_layers != model->n_layers || s->samples < 1)
            lf_fuzz_die("accepted statistics have %d layers and %lld samples", s->n_layers,
                        (long long)s->samples);
        for (int i = 0; i < s->n_layers; i++) {
            const lf_layer_stats_t *ls = &s->layers[i];
            if (ls->n_out != model->layers[i].n_out)
                lf_fuzz_die("accepted statistics give layer %d %lld neurons", i,
                            (long long)ls->n_out);
            for (int64_t j = 0; j < ls->n_out; j++) {
                double rate = lf_stats_rate(s, i, j);
                if (!(rate >= 0.0 && rate <= 1.0))
                    lf_fuzz_die("accepted statistics give neuron %d/%lld the rate %g", i,
                                (long long)j, rate);
                (void)lf_stats_mean_output(s, i, j);
            }
        }
    }
    lf_stats_destroy(&s);
    unlink(in_path);
    lf_fuzz_end_input();
    return 0;
}
