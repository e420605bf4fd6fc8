/* Atomic outputs: unique temporary names, publication with the umask's permissions, removal on
 * failure, and outputs that would overwrite an input refused by file identity. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lf_test.h"
#include "linfold/atomic.h"
#include "linfold/comm.h"

static char tmpdir[256];

static void setup(void) { lf_test_tmpdir(tmpdir, sizeof tmpdir); }
static void teardown(void) { lf_test_tmpdir_remove(tmpdir); }

static int my_rank(void)
{
    int rank = 0;
    MPI_Comm_rank(LF_TEST_COMM, &rank);
    return rank;
}

static lf_err_t write_hello(const char *tmp, const char *path, const void *ctx)
{
    (void)path;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return LF_ERR_IO;
    fputs(ctx, f);
    return fclose(f) == 0 ? LF_OK : LF_ERR_IO;
}

static lf_err_t write_then_fail(const char *tmp, const char *path, const void *ctx)
{
    lf_err_t err = LF_OK;
    (void)ctx;
    LF_CALL(write_hello(tmp, path, "partial"));
    LF_FAIL(LF_ERR_IO, "%s: the writer failed halfway", path);
cleanup:
    return err;
}

/* Issue 7, item 6: "<out>.tmp-<pid>" collided for two jobs whose rank 0 had the same PID. */
START_TEST(test_temporary_names_are_unique)
{
    char out[300], a[LF_PATH_MAX], b[LF_PATH_MAX];
    snprintf(out, sizeof out, "%s/out.h5", tmpdir);
    ck_assert_int_eq(lf_atomic_begin(LF_TEST_COMM, out, a, sizeof a), LF_OK);
    ck_assert_int_eq(lf_atomic_begin(LF_TEST_COMM, out, b, sizeof b), LF_OK);
    ck_assert_str_ne(a, b);
    ck_assert(strncmp(a, out, strlen(out)) == 0 && strstr(a, ".tmp-"));
    ck_assert(lf_test_all(access(a, F_OK) == 0 && access(b, F_OK) == 0));
    ck_assert_int_eq(lf_atomic_finish(LF_TEST_COMM, a, out, LF_ERR_IO), LF_OK);
    ck_assert_int_eq(lf_atomic_finish(LF_TEST_COMM, b, out, LF_ERR_IO), LF_OK);
    ck_assert(lf_test_all(access(a, F_OK) != 0 && access(b, F_OK) != 0 && access(out, F_OK) != 0));
}
END_TEST

/* Published outputs get the permissions the umask allows (mkstemp's 0600 would lock others out);
 * a failed writer leaves nothing. */
START_TEST(test_publish_and_fail)
{
    char out[300];
    snprintf(out, sizeof out, "%s/hello.txt", tmpdir);
    mode_t old = umask(022);
    ck_assert_int_eq(lf_atomic_write_rank0(LF_TEST_COMM, out, write_hello, "hello\n"), LF_OK);
    umask(old);
    struct stat st;
    ck_assert(lf_test_all(stat(out, &st) == 0 && (st.st_mode & 0777) == 0644 && st.st_size == 6));
    char failed[300];
    snprintf(failed, sizeof failed, "%s/failed.txt", tmpdir);
    ck_assert_int_eq(lf_atomic_write_rank0(LF_TEST_COMM, failed, write_then_fail, NULL), LF_ERR_IO);
    lf_error_clear();
    ck_assert(lf_test_all(access(failed, F_OK) != 0));
    /* Nothing else is left in the directory: no temporary survives either run. */
    if (my_rank() == 0) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", tmpdir);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

/* Issue 7, item 4: --out equal to an input replaced it. Identity is the device and inode, so a
 * hard link, a symbolic link and another spelling are the same file. */
START_TEST(test_outputs_never_replace_inputs)
{
    char model[300], hard[300], soft[300], spelled[300], fresh[300], dir[300], nodir[300];
    snprintf(model, sizeof model, "%s/model.h5", tmpdir);
    snprintf(hard, sizeof hard, "%s/hard.h5", tmpdir);
    snprintf(soft, sizeof soft, "%s/soft.h5", tmpdir);
    snprintf(spelled, sizeof spelled, "%s/./model.h5", tmpdir);
    snprintf(fresh, sizeof fresh, "%s/fresh.h5", tmpdir);
    snprintf(dir, sizeof dir, "%s/sub", tmpdir);
    snprintf(nodir, sizeof nodir, "%s/no/such/out.h5", tmpdir);
    if (my_rank() == 0) {
        FILE *f = fopen(model, "w");
        fputs("model", f);
        fclose(f);
        ck_assert_int_eq(link(model, hard), 0);
        ck_assert_int_eq(symlink(model, soft), 0);
        ck_assert_int_eq(mkdir(dir, 0755), 0);
    }
    MPI_Barrier(LF_TEST_COMM);
    lf_atomic_named_t in[] = {{"--model", model}, {"--stats", NULL}};
    struct {
        const char *out, *sweep_out;
        lf_err_t code;
        const char *text;
    } cases[] = {
        {fresh, NULL, LF_OK, NULL},
        {model, NULL, LF_ERR_USAGE, "is the same file as --model"},
        {hard, NULL, LF_ERR_USAGE, "is the same file as --model"},
        {soft, NULL, LF_ERR_USAGE, "is the same file as --model"},
        {spelled, NULL, LF_ERR_USAGE, "is the same file as --model"},
        {fresh, fresh, LF_ERR_USAGE, "name the same file"},
        {dir, NULL, LF_ERR_USAGE, "is a directory"},
        {nodir, NULL, LF_ERR_IO, "does not exist"},
        {"/proc/out.h5", NULL, LF_ERR_IO, "cannot create a temporary file in /proc"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        lf_atomic_named_t out[] = {{"--out", cases[k].out}, {"--sweep-out", cases[k].sweep_out}};
        /* Rank 0 alone probes the directory: agree, as the command line does. */
        lf_err_t got =
            lf_comm_agree(LF_TEST_COMM, lf_atomic_check_outputs(in, 2, out, 2, my_rank() == 0));
        ck_assert_msg(got == cases[k].code, "case %zu: %s", k, lf_err_name(got));
        if (cases[k].text)
            ck_assert_msg(lf_test_any_message(cases[k].text), "case %zu: %s", k,
                          lf_error_message());
        lf_error_clear();
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("atomic");
    TCase *tc = tcase_create("atomic");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_temporary_names_are_unique);
    tcase_add_test(tc, test_publish_and_fail);
    tcase_add_test(tc, test_outputs_never_replace_inputs);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) { return lf_test_run_mpi(argc, argv, make_suite); }
