/* Shared between the JSON writers (report.c, record.c). */
#ifndef LINFOLD_REPORT_IMPL_H
#define LINFOLD_REPORT_IMPL_H

#include <jansson.h>

#include "linfold/eval.h"

/* An evaluation as a new JSON object (the keys of lf_report_eval_json), or NULL without memory.
 * Not collective. */
json_t *lf__report_eval_object(const lf_eval_result_t *r);

#endif /* LINFOLD_REPORT_IMPL_H */
