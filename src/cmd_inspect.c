/* linfold inspect: a model's layers, blocks and parameter counts. */
#include <stdio.h>
#include <string.h>

#include "cli_impl.h"
#include "linfold/comm.h"
#include "linfold/eval.h"
#include "linfold/fold.h"
#include "linfold/h5io.h"
#include "linfold/log.h"
#include "linfold/model.h"
#include "linfold/plan.h"
#include "linfold/stats.h"

/* ---------------------------------------------------------------- inspect */

lf_err_t lf__cmd_inspect(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    LF_CALL(lf_h5io_read_model(comm, o->file, &m));
    if (lf__cli_rank(comm) != 0)
        goto cleanup;
    printf("%s: %d layers, %lld inputs, %lld outputs\n", o->file, m->n_layers, (long long)m->n_in,
           (long long)lf_model_n_out(m));
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        printf("  layer %d: %lld neurons, %s", i, (long long)L->n_out, lf_act_name(L->act));
        if (L->act == LF_ACT_LEAKY_RELU)
            printf(" (alpha %g)", (double)L->alpha);
        printf(", weight (%lld, %lld)", (long long)L->n_out,
               (long long)lf_model_width(m, i - 1));
        for (int b = 0; b < L->n_blocks - 1; b++) {
            int src = L->blocks[b].src;
            if (src == LF_SRC_INPUT)
                printf(", skip from input (%lld, %lld)", (long long)L->n_out, (long long)m->n_in);
            else
                printf(", skip from layer %d (%lld, %lld)", src, (long long)L->n_out,
                       (long long)lf_model_width(m, src));
        }
        printf(", %lld params\n", (long long)lf_model_layer_params(m, i));
    }
    printf("parameters: %lld (%lld in skip blocks)\n", (long long)lf_model_params(m),
           (long long)lf_model_skip_params(m));
cleanup:
    lf_model_destroy(&m);
    return err;
}

