/* Signal handling for clean stops; see interrupt.h.
 *
 * The handler stores the signal number in a lock-free atomic and does nothing else: everything
 * that cleans up (closing HDF5 files collectively, removing temporaries, agreeing the error)
 * must run on the normal code path, never inside a handler. SA_RESETHAND makes a second Ctrl-C
 * or SIGTERM take the default action, so an impatient user can still kill a stuck process. */
#include "linfold/interrupt.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>

static atomic_int received = 0;

static const int caught[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1};

static void on_signal(int sig)
{
    int none = 0;
    atomic_compare_exchange_strong(&received, &none, sig);
}

void lf_interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: MPI and HDF5 calls in progress carry on; the loops poll the flag. */
    sa.sa_flags = SA_RESTART | SA_RESETHAND;
    for (size_t k = 0; k < sizeof caught / sizeof *caught; k++)
        sigaction(caught[k], &sa, NULL);
}

int lf_interrupt_signal(void) { return atomic_load(&received); }

/* A signal the tests schedule, and the ticks left before it arrives. */
static atomic_int pending = 0, pending_ticks = 0;

void lf_interrupt_tick(void)
{
    if (atomic_load(&pending) != 0 && atomic_fetch_sub(&pending_ticks, 1) == 1) {
        on_signal(atomic_load(&pending));
        atomic_store(&pending, 0);
    }
}

void lf_interrupt_raise_for_test(int sig)
{
    atomic_store(&pending, 0);
    atomic_store(&received, sig);
}

void lf_interrupt_raise_after_for_test(int sig, int ticks)
{
    atomic_store(&pending_ticks, ticks);
    atomic_store(&pending, sig);
}

const char *lf_interrupt_name(int sig)
{
    switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGUSR1: return "SIGUSR1";
    default: return "a signal";
    }
}

lf_err_t lf_interrupt_check(const char *during)
{
    lf_err_t err = LF_OK;
    int sig = lf_interrupt_signal();
    LF_CHECK(sig == 0, LF_ERR_INTERRUPTED, "interrupted by %s during %s", lf_interrupt_name(sig),
             during);
cleanup:
    return err;
}

int lf_interrupt_agree(MPI_Comm comm)
{
    int mine = lf_interrupt_signal(), any = mine;
    if (MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS)
        return mine;
    return any;
}
