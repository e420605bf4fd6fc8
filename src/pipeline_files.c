/* The files a pipeline names: every input opened and checked against the model, every output
 * checked against the inputs and the other outputs, output directories created. Problems are
 * reported at the line that names each file. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "linfold/comm.h"
#include "linfold/h5io.h"
#include "linfold/model.h"
#include "linfold/stats.h"
#include "pipeline_config_impl.h"

/* ---------------------------------------------------------------- files */

/* Runs a collective check and turns its agreed failure into a problem at node. */
static bool checked(MPI_Comm comm, lf_pipeline_config_t *c, field_t f, lf_err_t e)
{
    e = lf_comm_agree(comm, e);
    if (e == LF_OK)
        return true;
    lf__cfg_diag_error(c, c->where[f], e);
    return false;
}

static void check_width(lf_pipeline_config_t *c, field_t f, lf_dataset_t *ds, int64_t want)
{
    if (ds && want > 0 && lf_h5io_dataset_cols(ds) != want)
        lf__cfg_diag(c, c->where[f], "%s has %lld columns, but the model takes %lld inputs",
                     lf_h5io_dataset_spec(ds), (long long)lf_h5io_dataset_cols(ds),
                     (long long)want);
}

/* Whether two outputs are one file: the same inode when both exist, else the same spelling
 * (paths here are already normalised). */
static bool same_output(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return strcmp(a, b) == 0;
}

/* When path's directory does not exist: records it to be created (rank 0) if its nearest
 * existing ancestor is a writable directory, else fails naming it. */
static lf_err_t missing_directory(lf_pipeline_config_t *c, const char *path, char *note, size_t cap)
{
    lf_err_t err = LF_OK;
    char dir[LF_PATH_MAX], up[LF_PATH_MAX];
    struct stat st;
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return LF_OK; /* the working directory */
    *slash = '\0';
    if (dir[0] == '\0' || stat(dir, &st) == 0)
        return LF_OK;
    snprintf(up, sizeof up, "%s", dir);
    while (stat(up, &st) != 0) {
        char *s = strrchr(up, '/');
        if (!s) {
            snprintf(up, sizeof up, ".");
            continue;
        }
        *s = '\0';
        if (up[0] == '\0')
            snprintf(up, sizeof up, "/");
    }
    LF_CHECK(S_ISDIR(st.st_mode) && access(up, W_OK | X_OK) == 0, LF_ERR_IO,
             "%s: directory %s does not exist and %s does not take new directories", path, dir, up);
    snprintf(note, cap, "created");
    for (int k = 0; k < c->n_mkdirs; k++)
        if (strcmp(c->mkdirs[k], dir) == 0)
            goto cleanup;
    if (c->n_mkdirs < F__COUNT)
        c->mkdirs[c->n_mkdirs++] = strdup(dir);
cleanup:
    return err;
}

lf_err_t lf_pipeline_config_make_directories(MPI_Comm comm, const lf_pipeline_config_t *c)
{
    lf_err_t local = LF_OK;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    for (int k = 0; rank == 0 && local == LF_OK && k < c->n_mkdirs; k++)
        if (c->mkdirs[k])
            local = lf_atomic_mkdirs(c->mkdirs[k]);
    return lf_comm_agree(comm, local);
}

lf_err_t lf_pipeline_config_check_files(MPI_Comm comm, lf_pipeline_config_t *c)
{
    lf_err_t err = LF_OK;
    const lf_pipeline_t *p = &c->p;
    lf_model_t *m = NULL, *ref = NULL;
    lf__cfg_release_models(c);
    c->comm = comm;
    c->p.loaded_model = c->p.loaded_reference = NULL;
    lf_dataset_t *data = NULL, *x = NULL, *y = NULL;
    lf_stats_t *stats = NULL;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    if (checked(comm, c, F_MODEL, lf_h5io_read_model_shared(comm, p->model, &m))) {
        c->model_in = m->n_in;
        c->model_out = lf_model_n_out(m);
        c->model_params = lf_model_params(m);
        c->model_layers = m->n_layers;
    }
    int64_t n_in = m ? m->n_in : 0;
    if (p->reference &&
        checked(comm, c, F_REFERENCE, lf_h5io_read_model_shared(comm, p->reference, &ref)) && m &&
        (ref->n_in != m->n_in || lf_model_n_out(ref) != lf_model_n_out(m)))
        lf__cfg_diag(c, c->where[F_REFERENCE],
                     "the reference model maps %lld inputs to %lld outputs, the model %lld to %lld",
                     (long long)ref->n_in, (long long)lf_model_n_out(ref), (long long)m->n_in,
                     (long long)lf_model_n_out(m));
    if (p->calibration &&
        (lf_pipeline_has(p, LF_STAGE_CALIBRATE) || lf_pipeline_has(p, LF_STAGE_RECONSTRUCT)) &&
        checked(comm, c, F_CALIBRATION,
                lf_h5io_dataset_open(comm, p->calibration, LF_DATA_SAMPLES, &data))) {
        check_width(c, F_CALIBRATION, data, n_in);
        c->calib_rows = lf_h5io_dataset_rows(data);
        if (c->calib_rows == 0)
            lf__cfg_diag(c, c->where[F_CALIBRATION],
                         "%s has no rows: there is nothing to calibrate on", p->calibration);
    }
    if (p->eval_data && checked(comm, c, F_EVAL_DATA,
                                lf_h5io_dataset_open(comm, p->eval_data, LF_DATA_SAMPLES, &x))) {
        check_width(c, F_EVAL_DATA, x, n_in);
        c->eval_rows = lf_h5io_dataset_rows(x);
        if (c->eval_rows == 0)
            lf__cfg_diag(c, c->where[F_EVAL_DATA], "%s has no rows: there is nothing to evaluate",
                         p->eval_data);
    }
    if (p->eval_labels &&
        checked(comm, c, F_EVAL_LABELS,
                lf_h5io_dataset_open(comm, p->eval_labels, LF_DATA_LABELS, &y)) &&
        x && lf_h5io_dataset_rows(y) != lf_h5io_dataset_rows(x))
        lf__cfg_diag(c, c->where[F_EVAL_LABELS], "%s has %lld rows, the evaluation data %lld",
                     p->eval_labels, (long long)lf_h5io_dataset_rows(y),
                     (long long)lf_h5io_dataset_rows(x));
    if (p->statistics && m)
        checked(comm, c, F_STATISTICS, lf_stats_read(comm, p->statistics, m, p->model, &stats));
    /* Outputs: none may be an input or another output, and their directories take files. */
    char files[3][LF_PATH_MAX], obj[1024];
    const char *specs[3] = {p->calibration, p->eval_data, p->eval_labels};
    lf_atomic_named_t inputs[6];
    int n = 0;
    for (int k = 0; k < 3; k++)
        if (specs[k] &&
            lf_h5io_split_spec(specs[k], files[k], sizeof files[k], obj, sizeof obj) == LF_OK)
            inputs[n++] = (lf_atomic_named_t){
                lf__cfg_field_names[k == 0 ? F_CALIBRATION : F_EVAL_DATA + k - 1], files[k]};
    inputs[n++] = (lf_atomic_named_t){"model", p->model};
    inputs[n++] = (lf_atomic_named_t){"statistics", p->statistics};
    inputs[n++] = (lf_atomic_named_t){"reference", p->reference};
    static const field_t outs[] = {F_OUT_MODEL,       F_OUT_REPORT, F_OUT_STATS,
                                   F_OUT_PREDICTIONS, F_SWEEP_OUT,  F_CHECKPOINT};
    const char *out_paths[] = {p->out_model,   p->out_report, p->out_stats,
                               p->predict_out, p->sweep_out,  p->checkpoint_path};
    for (int k = 0; k < 6; k++) {
        if (!out_paths[k])
            continue;
        /* Each output against the inputs and the outputs before it, so that the message lands
         * on the output's own line. A directory that does not exist yet is created before the
         * run when its nearest existing ancestor takes new directories. */
        char msg[1024] = "";
        lf_err_t e = LF_OK;
        if (rank == 0) {
            e = missing_directory(c, out_paths[k], msg, sizeof msg);
            if (e == LF_OK && !msg[0]) {
                lf_atomic_named_t mine[1] = {{lf__cfg_field_names[outs[k]], out_paths[k]}};
                e = lf_atomic_check_outputs(inputs, n, mine, 1, true);
                for (int j = 0; e == LF_OK && j < k; j++)
                    if (out_paths[j] && same_output(out_paths[j], out_paths[k])) {
                        e = LF_ERR_USAGE;
                        lf_error_record(__FILE__, __LINE__, __func__, e,
                                        "%s and %s are the same file (%s)",
                                        lf__cfg_field_names[outs[j]], lf__cfg_field_names[outs[k]],
                                        out_paths[k]);
                    }
            } else {
                msg[0] = '\0';
            }
            if (e != LF_OK)
                snprintf(msg, sizeof msg, "%s", lf_error_message());
            lf_error_clear();
        }
        e = lf_comm_agree(comm, e);
        if (lf_comm_bcast_string(comm, msg, (int)sizeof msg, 0) != LF_OK)
            lf_error_clear();
        if (e != LF_OK)
            lf__cfg_diag(c, c->where[outs[k]], "%s", msg[0] ? msg : lf_strerror(e));
    }
    c->checked = true;
    LF_CALL(lf__cfg_report_diags(comm, c, "with the files the pipeline names"));
cleanup:
    lf_stats_destroy(&stats);
    lf_h5io_dataset_close(&y);
    lf_h5io_dataset_close(&x);
    lf_h5io_dataset_close(&data);
    /* The run borrows what was read here (only when every check passed). */
    if (err == LF_OK) {
        c->model = m;
        c->reference = ref;
        c->p.loaded_model = m;
        c->p.loaded_reference = ref;
        m = ref = NULL;
        c->stats = stats;
        c->p.loaded_stats = stats;
        stats = NULL;
    }
    lf_model_release(comm, &ref);
    lf_model_release(comm, &m);
    return err;
}

lf_err_t lf_pipeline_config_check_files_quietly(MPI_Comm comm, lf_pipeline_config_t *c)
{
    bool keep = c->keep_problems;
    c->keep_problems = true;
    lf_err_t err = lf_pipeline_config_check_files(comm, c);
    c->keep_problems = keep;
    return err;
}

void lf__cfg_release_models(lf_pipeline_config_t *c)
{
    if (c->model || c->reference) {
        lf_model_release(c->comm, &c->reference);
        lf_model_release(c->comm, &c->model);
    }
    lf_stats_destroy(&c->stats);
    c->p.loaded_model = c->p.loaded_reference = NULL;
    c->p.loaded_stats = NULL;
}
