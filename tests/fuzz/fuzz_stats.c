/* libFuzzer target: the statistics reader (docs/fuzzing.md).
 *
 * The input is a statistics file, read with lf_stats_read() against the fixed model of
 * fuzz_fixed.h. The seeds in corpus/stats were made for this model by make_corpus.py (same
 * structure and values, same fingerprint), so mutants get past the fingerprint check and reach
 * the layers.
 * An accepted file must give statistics shaped like the model with consistent counts. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "fuzz_fixed.h"
#include "linfold/model.h"
#include "linfold/stats.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char in_path[600];
static lf_model_t *model = NULL;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lf_fuzz_setup();
    lf_fuzz_path(in_path, sizeof in_path, "stats.h5");
    model = lf_fuzz_fixed_model(LF_ACT_IDENTITY);
    if (!model)
        lf_fuzz_die("cannot build the fixed model");
    if (lf_model_fingerprint(model) != LF_FUZZ_FIXED_FINGERPRINT)
        lf_fuzz_die("the fixed model has fingerprint %016llx, the seeds were made for %016llx: "
                    "keep fuzz_fixed.h and make_corpus.py in step",
                    (unsigned long long)lf_model_fingerprint(model),
                    (unsigned long long)LF_FUZZ_FIXED_FINGERPRINT);
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
