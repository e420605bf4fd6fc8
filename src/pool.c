/* A fork-join over row blocks with POSIX threads.
 *
 * Threads are created per call: a call covers one I/O batch (milliseconds of GEMM work), so the
 * tens of microseconds of pthread_create are noise, and no pool outlives a collective step. */
#define _GNU_SOURCE /* sched_getaffinity and CPU_COUNT */
#include "linfold/pool.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "linfold/alloc.h"
#include "linfold/comm.h"

typedef struct {
    int tid, threads, n_tasks;
    lf_pool_task_t task;
    void *ctx;
    int failed_task;
    lf_err_t err;
} worker_t;

static void *work(void *arg)
{
    worker_t *w = arg;
    for (int k = w->tid; k < w->n_tasks; k += w->threads) {
        lf_err_t e = w->task(k, w->tid, w->ctx);
        if (e != LF_OK) {
            w->err = e;
            w->failed_task = k;
            break;
        }
    }
    return NULL;
}

lf_err_t lf_pool_run(int threads, int n_tasks, lf_pool_task_t task, void *ctx)
{
    lf_err_t err = LF_OK;
    worker_t *w = NULL;
    pthread_t *ids = NULL;
    int started = 0;
    if (threads > n_tasks)
        threads = n_tasks;
    if (threads <= 1) {
        for (int k = 0; k < n_tasks; k++)
            LF_CALL(task(k, 0, ctx));
        return LF_OK;
    }
    LF_CALL(lf_calloc((size_t)threads, sizeof *w, (void **)&w));
    LF_CALL(lf_calloc((size_t)threads, sizeof *ids, (void **)&ids));
    for (int t = 0; t < threads; t++) {
        w[t] = (worker_t){.tid = t,
                          .threads = threads,
                          .n_tasks = n_tasks,
                          .task = task,
                          .ctx = ctx,
                          .failed_task = n_tasks};
        /* Thread 0's share runs on the calling thread. */
        if (t > 0) {
            LF_CHECK(pthread_create(&ids[t], NULL, work, &w[t]) == 0, LF_ERR_NOMEM,
                     "cannot start compute thread %d of %d", t, threads);
            started = t;
        }
    }
    work(&w[0]);
cleanup:
    for (int t = 1; t <= started; t++)
        pthread_join(ids[t], NULL);
    if (err == LF_OK && w) {
        int first = n_tasks;
        for (int t = 0; t < threads; t++)
            if (w[t].err != LF_OK && w[t].failed_task < first) {
                first = w[t].failed_task;
                err = w[t].err;
            }
    }
    lf_free(ids);
    lf_free(w);
    return err;
}

lf_err_t lf_pool_default_threads(MPI_Comm comm, int *threads)
{
    lf_err_t err = LF_OK;
    MPI_Comm node = MPI_COMM_NULL;
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    int rank = 0, local = 1;
    /* The split is collective: every rank makes it, whatever its environment says. */
    LF_CALL_MPI(MPI_Comm_rank(comm, &rank));
    LF_CALL_MPI(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node));
    LF_CALL_MPI(MPI_Comm_size(node, &local));
    if (env && atoi(env) >= 1) {
        *threads = atoi(env);
        goto cleanup;
    }
    cpu_set_t set;
    int cpus = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        cpus = CPU_COUNT(&set);
    else
        cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    /* A launcher that binds each rank to its own cores already shows it only those CPUs; one
     * that does not shows every rank all of them, which the ranks on the node then share. */
    int online = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int share = cpus < online ? cpus : online / (local > 0 ? local : 1);
    *threads = share >= 1 ? share : 1;
cleanup:
    if (node != MPI_COMM_NULL)
        MPI_Comm_free(&node);
    return err;
}

void lf_pool_serial_blas(void) { openblas_set_num_threads(1); }
