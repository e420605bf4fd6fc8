/* Exact decimals: parsing, printing, comparison and products with counts, checked against
 * independent arithmetic. Serial: no MPI is involved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lf_test.h"
#include "linfold/decimal.h"

START_TEST(test_parse_and_format)
{
    struct {
        const char *in, *out;
        uint64_t m;
        int e;
    } ok[] = {
        {"0.8", "0.8", 8, -1},
        {"1", "1", 1, 0},
        {".25", "0.25", 25, -2},
        {"1e-12", "1e-12", 1, -12},
        {"2.5E3", "2500", 25, 2},
        {"0.000125", "0.000125", 125, -6},
        {"100", "100", 1, 2},
        {"+0.50", "0.5", 5, -1},
        {"0", "0", 0, 0},
        {"0.0000001234", "1.234e-7", 1234, -10},
        {"12345678901234567890", "12345678901234567890", 1234567890123456789ULL, 1},
    };
    for (size_t k = 0; k < sizeof ok / sizeof *ok; k++) {
        lf_decimal_t d;
        char buf[64];
        ck_assert_msg(lf_decimal_parse(ok[k].in, &d) == LF_OK, "%s", ok[k].in);
        ck_assert_msg(d.m == ok[k].m && d.e == ok[k].e, "%s: %llu e%d", ok[k].in,
                      (unsigned long long)d.m, d.e);
        lf_decimal_format(d, buf, sizeof buf);
        ck_assert_str_eq(buf, ok[k].out);
        lf_decimal_t back;
        ck_assert_int_eq(lf_decimal_parse(buf, &back), LF_OK);
        ck_assert_int_eq(lf_decimal_cmp(back, d), 0);
    }
    const char *bad[] = {
        "", ".", "abc", "-1", "1e", "1e999", "0.8x", "1.2.3", "nan", "inf", "12345678901234567891"};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        lf_decimal_t d;
        ck_assert_msg(lf_decimal_parse(bad[k], &d) == LF_ERR_USAGE, "%s accepted", bad[k]);
        lf_error_clear();
    }
}
END_TEST

START_TEST(test_compare)
{
    const char *ordered[] = {"0",   "1e-300", "1e-12", "0.0999999999", "0.1", "0.10000000001",
                             "0.8", "1",      "1.5",   "99",           "1e20"};
    enum { N = sizeof ordered / sizeof *ordered };
    lf_decimal_t d[N];
    for (int k = 0; k < N; k++)
        ck_assert_int_eq(lf_decimal_parse(ordered[k], &d[k]), LF_OK);
    for (int a = 0; a < N; a++)
        for (int b = 0; b < N; b++)
            ck_assert_int_eq(lf_decimal_cmp(d[a], d[b]), (a > b) - (a < b));
}
END_TEST

/* floor, ceil and nearest of d * n against the same products by 128-bit long division. */
START_TEST(test_products_are_exact)
{
    lf_rng_t rng = {17};
    for (int trial = 0; trial < 100000; trial++) {
        int k = (int)(lf_rng_next(&rng) % 19);
        lf_test_u128 scale = 1;
        for (int i = 0; i < k; i++)
            scale *= 10;
        uint64_t m = (uint64_t)(lf_rng_next(&rng) % (uint64_t)scale + 1);
        int64_t n = (int64_t)(lf_rng_next(&rng) >> (trial % 2 ? 11 : 40));
        lf_decimal_t d = lf_decimal_make(m, -k);
        lf_test_u128 prod = (lf_test_u128)m * (uint64_t)n;
        int64_t fl = (int64_t)(prod / scale), rem = (int64_t)(prod % scale);
        ck_assert_int_eq(lf_decimal_mul_floor(d, n), fl);
        ck_assert_int_eq(lf_decimal_mul_ceil(d, n), fl + (rem != 0));
        lf_test_u128 twice = 2 * (prod % scale);
        ck_assert_int_eq(lf_decimal_mul_nearest(d, n), fl + (twice > scale));
    }
    /* Saturation instead of overflow for values above 1. */
    ck_assert_int_eq(lf_decimal_mul_floor(LF_DECIMAL(1, 300), 5), INT64_MAX);
}
END_TEST

START_TEST(test_rates)
{
    struct {
        int64_t c, n;
        const char *text;
    } cases[] = {{1, 1, "1"},          {10, 10, "1"},         {1, 3, "0.3"},
                 {2, 3, "0.6"},        {1, 2, "0.5"},         {343, 10000, "0.0343"},
                 {999, 1000, "0.999"}, {1, 100000000, "1e-8"}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char buf[64];
        lf_decimal_t t = lf_decimal_rate(cases[k].c, cases[k].n);
        lf_decimal_format(t, buf, sizeof buf);
        ck_assert_str_eq(buf, cases[k].text);
        ck_assert_int_eq(lf_decimal_mul_ceil(t, cases[k].n), cases[k].c);
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("decimal");
    TCase *tc = tcase_create("decimal");
    tcase_add_test(tc, test_parse_and_format);
    tcase_add_test(tc, test_compare);
    tcase_add_test(tc, test_products_are_exact);
    tcase_add_test(tc, test_rates);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lf_test_run_serial(make_suite); }
