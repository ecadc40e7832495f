// The SIGBUS guard: a file mapped with MAP_SHARED that another process
// shrinks (ftruncate) raises SIGBUS on the next access past its new end.
// For the library's own mappings, the handler replaces the faulting page
// with a private zero page (mmap MAP_FIXED|MAP_ANONYMOUS), counts the fault
// against the mapping, and returns: the access completes reading zeros, and
// the library throws a typed error at its next check of that mapping. Any
// other SIGBUS goes to the handler the application had installed, or to the
// default action (the process dies as it would have without us).
//
// Everything the handler touches is a lock-free atomic in static memory;
// it calls only mmap and sigaction, both async-signal-safe in practice
// (raw syscalls on Linux).
#define _GNU_SOURCE
#include "cshm.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_SLOTS 4096

struct guard_slot {
    _Atomic uintptr_t base;   // 0: free
    _Atomic size_t length;
    _Atomic uint32_t faults;
};

static struct guard_slot slots[GUARD_SLOTS];
static struct sigaction previous;
static _Atomic int installed;       // 0 no, 1 installing, 2 yes
static _Atomic int highest_slot;    // one past the highest slot ever used
static uintptr_t page_size = 4096;  // set at install (sysconf is not async-signal-safe)

static void forward(int sig, siginfo_t *info, void *context) {
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) { previous.sa_sigaction(sig, info, context); return; }
    } else if (previous.sa_handler == SIG_IGN) {
        // Ignoring a fault would re-fault for ever: die as the default would.
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler) {
        previous.sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGBUS, &dfl, NULL);
    // Returning re-executes the access, which now kills the process with SIGBUS.
}

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    int top = atomic_load_explicit(&highest_slot, memory_order_acquire);
    for (int i = 0; i < top; i++) {
        // SYNC POINT: acquire pairs with the release store of base in
        // cshm_sigbus_guard_register (length is written before it).
        uintptr_t base = atomic_load_explicit(&slots[i].base, memory_order_acquire);
        if (base == 0 || address < base) continue;
        size_t length = atomic_load_explicit(&slots[i].length, memory_order_relaxed);
        if (address - base >= length) continue;
        void *page = (void *)(address & ~(page_size - 1));
        void *replaced = mmap(page, page_size, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (replaced == MAP_FAILED) break;
        // SYNC POINT: release pairs with the acquire load in cshm_sigbus_guard_faults.
        atomic_fetch_add_explicit(&slots[i].faults, 1, memory_order_release);
        return;
    }
    forward(sig, info, context);
}

int cshm_sigbus_guard_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) {
        while (atomic_load(&installed) == 1) { }
        return 0;
    }
    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    int rc = sigaction(SIGBUS, &action, &previous);
    atomic_store(&installed, rc == 0 ? 2 : 0);
    return rc;
}

int cshm_sigbus_guard_register(void *base, size_t length) {
    if (atomic_load(&installed) != 2 && cshm_sigbus_guard_install() != 0) return -1;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t free_slot = 0;
        // Claim with a placeholder, fill in, then publish the base.
        if (atomic_compare_exchange_strong(&slots[i].base, &free_slot, (uintptr_t)1)) {
            atomic_store_explicit(&slots[i].length, length, memory_order_relaxed);
            atomic_store_explicit(&slots[i].faults, 0, memory_order_relaxed);
            // SYNC POINT: release pairs with the handler's acquire load of base.
            atomic_store_explicit(&slots[i].base, (uintptr_t)base, memory_order_release);
            int top = atomic_load(&highest_slot);
            while (top < i + 1 && !atomic_compare_exchange_weak(&highest_slot, &top, i + 1)) { }
            return i;
        }
    }
    return -1;
}

void cshm_sigbus_guard_unregister(int slot) {
    if (slot < 0 || slot >= GUARD_SLOTS) return;
    atomic_store_explicit(&slots[slot].base, 0, memory_order_release);
    atomic_store_explicit(&slots[slot].length, 0, memory_order_relaxed);
}

uint32_t cshm_sigbus_guard_faults(int slot) {
    if (slot < 0 || slot >= GUARD_SLOTS) return 0;
    // SYNC POINT: acquire pairs with the handler's release increment.
    return atomic_load_explicit(&slots[slot].faults, memory_order_acquire);
}
