/* Machine-readable outputs: the evaluation JSON parses back to the same figures, and CSV fields
 * are quoted by RFC 4180. Serial. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/report.h"

START_TEST(test_eval_json_parses_back)
{
    lf_eval_result_t r = {.samples = 360,
                          .params = 28783,
                          .has_labels = true,
                          .correct = 350,
                          .has_reference = true,
                          .ref_params = 130378,
                          .ref_correct = 349,
                          .agree = 359,
                          .max_abs_diff = 0.1};
    char *text = NULL;
    ck_assert_int_eq(lf_report_eval_json(&r, &text), LF_OK);
    ck_assert_ptr_null(strchr(text, '\n'));
    json_error_t e;
    json_t *o = json_loads(text, 0, &e);
    ck_assert_msg(o != NULL, "%s: %s", text, e.text);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "samples")), 360);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "params")), 28783);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "correct")), 350);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "reference_params")), 130378);
    ck_assert(json_real_value(json_object_get(o, "accuracy")) == 350.0 / 360.0);
    ck_assert(json_real_value(json_object_get(o, "top1_agreement")) == 359.0 / 360.0);
    ck_assert(json_real_value(json_object_get(o, "max_abs_diff")) == 0.1);
    /* Keys in a fixed order, so that a file of runs diffs cleanly. */
    ck_assert(strstr(text, "\"samples\"") < strstr(text, "\"accuracy\""));
    json_decref(o);
    lf_report_free(text);
    /* Without labels and reference: no accuracy keys at all (not 0, not NaN). */
    lf_eval_result_t bare = {.samples = 3, .params = 7};
    ck_assert_int_eq(lf_report_eval_json(&bare, &text), LF_OK);
    ck_assert_str_eq(text, "{\"samples\": 3, \"params\": 7}");
    lf_report_free(text);
}
END_TEST

START_TEST(test_csv_quoting)
{
    FILE *f = tmpfile();
    ck_assert_ptr_nonnull(f);
    const char *row[] = {"plain", "a,b", "say \"hi\"", "two\nlines", NULL, "0.8"};
    ck_assert_int_eq(lf_report_csv_row(f, row, 6), LF_OK);
    rewind(f);
    char buf[256] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    ck_assert_str_eq(buf, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",,0.8\n");
    fclose(f);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("report");
    tcase_add_test(tc, test_eval_json_parses_back);
    tcase_add_test(tc, test_csv_quoting);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lf_test_run_serial(make_suite); }
