/* libFuzzer target: the model reader (docs/fuzzing.md).
 *
 * The input is a model file. lf_h5io_read_model() must reject it with an error or accept it;
 * an accepted model must pass lf_model_validate() and survive a round trip through the writer:
 * written with lf_h5io_write_model() and read back, it must give the same model (fingerprint). */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_common.h"
#include "linfold/model.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char in_path[600], out_path[600];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    lf_fuzz_setup();
    lf_fuzz_path(in_path, sizeof in_path, "model.h5");
    lf_fuzz_path(out_path, sizeof out_path, "roundtrip.h5");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lf_model_t *m = NULL, *back = NULL;
    lf_fuzz_begin_input();
    lf_fuzz_write_file(in_path, data, size);
    if (lf_fuzz_verdict("model", lf_h5io_read_model(lf_fuzz_comm, in_path, &m)) == LF_OK) {
        if (lf_model_validate(m, in_path) != LF_OK)
            lf_fuzz_die("the reader accepted a model that lf_model_validate() rejects");
        if (lf_h5io_write_model(lf_fuzz_comm, out_path, m, NULL, 0) != LF_OK)
            lf_fuzz_die("an accepted model could not be written back");
        if (lf_h5io_read_model(lf_fuzz_comm, out_path, &back) != LF_OK)
            lf_fuzz_die("an accepted model, written back, could not be read again");
        if (lf_model_fingerprint(back) != lf_model_fingerprint(m))
            lf_fuzz_die("an accepted model, written back and read again, differs (fingerprint "
                        "%016llx, then %016llx)",
                        (unsigned long long)lf_model_fingerprint(m),
                        (unsigned long long)lf_model_fingerprint(back));
        unlink(out_path);
    }
    lf_model_destroy(&back);
    lf_model_destroy(&m);
    unlink(in_path);
    lf_fuzz_end_input();
    return 0;
}
