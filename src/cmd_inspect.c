/* linfold inspect: a model's layers, blocks and parameter counts. */
#include <stdio.h>
#include <string.h>

#include "cli_impl.h"
#include "linfold/comm.h"
#include "linfold/h5io.h"
#include "linfold/model.h"
#include "linfold/plan.h"

/* ---------------------------------------------------------------- inspect */

/* Neuron indices as ranges: "0-3,7,9-10". */
static void print_ranges(const bool *set, int64_t n)
{
    const char *sep = "";
    for (int64_t j = 0; j < n; j++) {
        if (!set[j])
            continue;
        int64_t k = j;
        while (k + 1 < n && set[k + 1])
            k++;
        if (k == j)
            printf("%s%lld", sep, (long long)j);
        else
            printf("%s%lld-%lld", sep, (long long)j, (long long)k);
        sep = ",";
        j = k;
    }
}

static void print_provable(const lf_model_t *m, bool input_nonnegative, bool **linear)
{
    int64_t total = 0;
    printf("provably linear neurons (z >= 0 on every input%s):\n",
           input_nonnegative ? ", inputs taken as >= 0" : "");
    for (int i = 0; i < m->n_layers - 1; i++) {
        int64_t count = 0;
        for (int64_t j = 0; j < m->layers[i].n_out; j++)
            count += linear[i][j];
        total += count;
        printf("  layer %d (%s): %lld of %lld", i, lf_act_name(m->layers[i].act), (long long)count,
               (long long)m->layers[i].n_out);
        if (count) {
            printf(": ");
            print_ranges(linear[i], m->layers[i].n_out);
        }
        printf("\n");
    }
    printf("total: %lld provably linear neurons\n", (long long)total);
}

lf_err_t lf__cmd_inspect(MPI_Comm comm, const lf__cli_opts_t *o)
{
    lf_err_t err = LF_OK;
    lf_model_t *m = NULL;
    bool **linear = NULL;
    LF_CALL(lf_h5io_read_model(comm, o->file, &m));
    /* Every rank computes (and agrees on) the analysis; only rank 0 prints. */
    if (o->provable)
        LF_CALL(lf_comm_agree(comm, lf_plan_provable(m, o->input_nonnegative, &linear)));
    if (lf__cli_rank(comm) != 0)
        goto cleanup;
    printf("%s: %d layers, %lld inputs, %lld outputs\n", o->file, m->n_layers, (long long)m->n_in,
           (long long)lf_model_n_out(m));
    for (int i = 0; i < m->n_layers; i++) {
        const lf_layer_t *L = &m->layers[i];
        printf("  layer %d: %lld neurons, %s", i, (long long)L->n_out, lf_act_name(L->act));
        if (L->act == LF_ACT_LEAKY_RELU)
            printf(" (alpha %g)", (double)L->alpha);
        printf(", weight (%lld, %lld)", (long long)L->n_out, (long long)lf_model_width(m, i - 1));
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
    if (o->provable)
        print_provable(m, o->input_nonnegative, linear);
cleanup:
    lf_plan_provable_free(m, &linear);
    lf_model_destroy(&m);
    return err;
}
