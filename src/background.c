/* One background thread, one job at a time; see background.h.
 *
 * The thread lives for a whole pass (not one per batch): a pass has a job per batch, and a
 * persistent thread keeps the hand-over to a mutex and a condition variable. */
#include "linfold/background.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

#include "linfold/alloc.h"

struct lf_background {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    lf_background_fn fn; /* the job handed over and not yet finished; NULL: idle */
    void *ctx;
    bool stop;
};

static void *serve(void *arg)
{
    lf_background_t *bg = arg;
    pthread_mutex_lock(&bg->lock);
    for (;;) {
        while (!bg->fn && !bg->stop)
            pthread_cond_wait(&bg->changed, &bg->lock);
        if (!bg->fn) /* stop, and nothing left to do */
            break;
        lf_background_fn fn = bg->fn;
        void *ctx = bg->ctx;
        pthread_mutex_unlock(&bg->lock);
        fn(ctx);
        pthread_mutex_lock(&bg->lock);
        bg->fn = NULL;
        pthread_cond_broadcast(&bg->changed);
    }
    pthread_mutex_unlock(&bg->lock);
    return NULL;
}

lf_err_t lf_background_create(lf_background_t **out)
{
    lf_err_t err = LF_OK;
    lf_background_t *bg = NULL;
    sigset_t all, saved;
    bool locks = false;
    *out = NULL;
    LF_CALL(lf_calloc(1, sizeof *bg, (void **)&bg));
    LF_CHECK(pthread_mutex_init(&bg->lock, NULL) == 0, LF_ERR_NOMEM, "cannot create a mutex");
    if (pthread_cond_init(&bg->changed, NULL) != 0) {
        pthread_mutex_destroy(&bg->lock);
        LF_FAIL(LF_ERR_NOMEM, "cannot create a condition variable");
    }
    locks = true;
    /* The new thread inherits the creator's mask: block everything around the creation, so a
     * signal never runs its handler there or interrupts a read there. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    int started = pthread_create(&bg->thread, NULL, serve, bg);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    LF_CHECK(started == 0, LF_ERR_NOMEM, "cannot start the background reader thread");
    *out = bg;
    bg = NULL;
cleanup:
    if (bg && locks) {
        pthread_cond_destroy(&bg->changed);
        pthread_mutex_destroy(&bg->lock);
    }
    lf_free(bg);
    return err;
}

void lf_background_start(lf_background_t *bg, lf_background_fn fn, void *ctx)
{
    pthread_mutex_lock(&bg->lock);
    LF_ASSERT(bg->fn == NULL);
    bg->fn = fn;
    bg->ctx = ctx;
    pthread_cond_broadcast(&bg->changed);
    pthread_mutex_unlock(&bg->lock);
}

void lf_background_wait(lf_background_t *bg)
{
    pthread_mutex_lock(&bg->lock);
    while (bg->fn)
        pthread_cond_wait(&bg->changed, &bg->lock);
    pthread_mutex_unlock(&bg->lock);
}

void lf_background_destroy(lf_background_t **bg)
{
    if (!bg || !*bg)
        return;
    lf_background_t *b = *bg;
    pthread_mutex_lock(&b->lock);
    b->stop = true;
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->changed);
    pthread_mutex_destroy(&b->lock);
    lf_free(b);
    *bg = NULL;
}
