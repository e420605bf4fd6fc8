/* JSON through jansson and CSV with RFC 4180 quoting; see report.h. */
#include "linfold/report.h"

#include "report_impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int set(json_t *obj, const char *key, json_t *value)
{
    /* json_object_set_new takes the value even when it fails. */
    return value ? json_object_set_new(obj, key, value) : -1;
}

json_t *lf__report_eval_object(const lf_eval_result_t *r)
{
    json_t *o = json_object();
    int bad = o ? 0 : -1;
    double n = r->samples > 0 ? (double)r->samples : 1.0;
    bad |= set(o, "samples", json_integer(r->samples));
    bad |= set(o, "params", json_integer(r->params));
    if (r->has_labels) {
        bad |= set(o, "correct", json_integer(r->correct));
        bad |= set(o, "accuracy", json_real((double)r->correct / n));
    }
    if (r->has_reference) {
        bad |= set(o, "reference_params", json_integer(r->ref_params));
        if (r->has_labels) {
            bad |= set(o, "reference_correct", json_integer(r->ref_correct));
            bad |= set(o, "reference_accuracy", json_real((double)r->ref_correct / n));
        }
        bad |= set(o, "agree", json_integer(r->agree));
        bad |= set(o, "top1_agreement", json_real((double)r->agree / n));
        bad |= set(o, "max_abs_diff", json_real(r->max_abs_diff));
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

lf_err_t lf_report_eval_json(const lf_eval_result_t *r, char **text)
{
    lf_err_t err = LF_OK;
    json_t *o = lf__report_eval_object(r);
    *text = NULL;
    LF_CHECK(o != NULL, LF_ERR_NOMEM, "cannot build the JSON result");
    /* Insertion order, one line, 17 significant digits: every figure reads back exactly. */
    *text = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    LF_CHECK(*text != NULL, LF_ERR_NOMEM, "cannot format the JSON result");
cleanup:
    json_decref(o);
    return err;
}

void lf_report_free(char *text) { free(text); }

static int write_field(FILE *f, const char *field)
{
    if (!field)
        return 0;
    if (!strpbrk(field, ",\"\r\n"))
        return fputs(field, f) < 0 ? -1 : 0;
    if (fputc('"', f) == EOF)
        return -1;
    for (const char *p = field; *p; p++)
        if ((*p == '"' && fputc('"', f) == EOF) || fputc(*p, f) == EOF)
            return -1;
    return fputc('"', f) == EOF ? -1 : 0;
}

lf_err_t lf_report_csv_row(FILE *f, const char *const *fields, int n)
{
    lf_err_t err = LF_OK;
    int bad = 0;
    for (int k = 0; k < n; k++) {
        if (k > 0)
            bad |= fputc(',', f) == EOF ? -1 : 0;
        bad |= write_field(f, fields[k]);
    }
    bad |= fputc('\n', f) == EOF ? -1 : 0;
    LF_CHECK(bad == 0 && !ferror(f), LF_ERR_IO, "cannot write a CSV row");
cleanup:
    return err;
}
