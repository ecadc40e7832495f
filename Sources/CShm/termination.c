// Termination signals (SIGINT, SIGTERM, SIGHUP) turned into a flag that
// long-running loops poll, so they leave through their normal path and
// release what they hold (nodes, ports, segments) instead of dying with it.
// The handler is installed without SA_RESTART and forwards the signal to
// the thread that installed it (the main thread), so that thread's
// blocking call (read, nanosleep, futex wait) returns EINTR at once.
#define _GNU_SOURCE
#include "cshm.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

static _Atomic int received;
static pthread_t waiting_thread;

static void on_termination(int sig) {
    int expected = 0;
    atomic_compare_exchange_strong(&received, &expected, sig);
    if (!pthread_equal(pthread_self(), waiting_thread)) pthread_kill(waiting_thread, sig);
}

int cshm_termination_install(void) {
    waiting_thread = pthread_self();
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_termination;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0; // no SA_RESTART: blocking calls return EINTR
    if (sigaction(SIGINT, &action, NULL) != 0) return -1;
    if (sigaction(SIGTERM, &action, NULL) != 0) return -1;
    if (sigaction(SIGHUP, &action, NULL) != 0) return -1;
    return 0;
}

int cshm_termination_received(void) { return atomic_load(&received); }
