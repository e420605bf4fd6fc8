/* Streaming: a rank's peak memory does not grow with the number of calibration rows.
 *
 * Calibrates the bundled digits model (64 inputs) on 20,000 and on 400,000 random rows (5 MB and
 * 102 MB of samples) with the real binary, and compares the peak resident memory that linfold
 * reports with -v. Holding the data would add 100 MB; streaming adds nothing but the batch. */
#define _POSIX_C_SOURCE 200809L
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lf_test.h"

static char dir[256];

/* Writes n rows of 64 features in [0, 1), 10,000 rows at a time. */
static void write_rows(const char *path, int64_t n)
{
    enum { D = 64, CHUNK = 10000 };
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {(hsize_t)n, D};
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(f, "x", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    float *buf = malloc((size_t)CHUNK * D * sizeof *buf);
    lf_rng_t rng = {42};
    for (int64_t r0 = 0; r0 < n; r0 += CHUNK) {
        hsize_t start[2] = {(hsize_t)r0, 0},
                count[2] = {(hsize_t)(n - r0 < CHUNK ? n - r0 : CHUNK), D};
        for (hsize_t k = 0; k < count[0] * D; k++)
            buf[k] = lf_rng_uniform(&rng, 0.0f, 1.0f);
        hid_t mem = H5Screate_simple(2, count, NULL);
        H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
        ck_assert(H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, buf) >= 0);
        H5Sclose(mem);
    }
    free(buf);
    H5Dclose(ds);
    H5Sclose(space);
    H5Fclose(f);
}

/* Runs linfold calibrate -v on path:/x and returns the peak MiB it reports. */
static double peak_mib(const char *path)
{
    char cmd[2048];
    snprintf(
        cmd, sizeof cmd,
        "%s calibrate -v --model %s/tests/data/digits/model.h5 --data %s:/x --out %s/s.h5 2>&1",
        LF_BINARY, LF_SOURCE_DIR, path, dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char line[512];
    double mib = -1.0;
    while (fgets(line, sizeof line, p)) {
        const char *at = strstr(line, "peak memory per rank: max ");
        if (at)
            mib = atof(at + strlen("peak memory per rank: max "));
    }
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_msg(mib > 0, "no peak memory line from: %s", cmd);
    return mib;
}

START_TEST(test_peak_memory_is_flat)
{
    snprintf(dir, sizeof dir, "/tmp/linfold-memory-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char small[300], large[300];
    snprintf(small, sizeof small, "%s/rows20k.h5", dir);
    snprintf(large, sizeof large, "%s/rows400k.h5", dir);
    write_rows(small, 20000);
    write_rows(large, 400000);
    double a = peak_mib(small), b = peak_mib(large);
    printf("peak memory: %.1f MiB for 20,000 rows, %.1f MiB for 400,000 rows (ratio %.3f)\n", a, b,
           b / a);
    ck_assert_msg(b < 1.10 * a, "peak memory %.1f MiB (400k rows) vs %.1f MiB (20k rows)", b, a);
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(rm), 0);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("memory");
    TCase *tc = tcase_create("streaming");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_peak_memory_is_flat);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return lf_test_run_serial(make_suite); }
