/* Machine-readable outputs: JSON objects (through jansson, never printed by hand) and CSV rows
 * (RFC 4180 quoting).
 *
 *     char *json = NULL;
 *     lf_report_eval_json(&result, &json);   // {"samples": 360, "accuracy": 0.97..., ...}
 *     puts(json);
 *     lf_report_free(json);
 */
#ifndef LINFOLD_REPORT_H
#define LINFOLD_REPORT_H

#include <stdio.h>

#include "linfold/error.h"
#include "linfold/eval.h"

/* Formats an evaluation as one JSON object on one line in *text.
 * Not collective.
 * Keys: samples, params; with labels correct and accuracy; with a reference reference_params,
 * agree, top1_agreement, max_abs_diff and, with labels, reference_correct and
 * reference_accuracy. Free *text with lf_report_free(). */
lf_err_t lf_report_eval_json(const lf_eval_result_t *r, char **text);
/* Frees text from this module; accepts NULL.
 * Not collective. */
void lf_report_free(char *text);

/* Writes one CSV record of n fields and a newline; a field holding a comma, a double quote, a
 * CR or LF is quoted, with its quotes doubled (RFC 4180). NULL fields are written empty.
 * Not collective.
 * LF_ERR_IO when the stream reports an error. */
lf_err_t lf_report_csv_row(FILE *f, const char *const *fields, int n);

#endif /* LINFOLD_REPORT_H */
