// CShm — the C that Swift cannot call directly: variadic syscalls
// (futex, memfd_create, renameat2, pidfd_open), variadic fcntl/mremap forms,
// the CMSG_* macros for SCM_RIGHTS, and CPU_SET.
//
// The functions live in shim.c, which is compiled with _GNU_SOURCE. This
// header deliberately includes only plain C headers: defining _GNU_SOURCE in
// a header that Swift imports as a module changes libc's struct definitions
// (fd_set, …) and conflicts with the SwiftGlibc module.
//
// Functions return the raw result; on failure they return -1 (or
// MAP_FAILED) with errno set, exactly like the libc call they wrap, so the
// Swift layer handles one errno convention. Nothing here allocates or keeps
// state. Every name is prefixed `cshm_`.
#ifndef CSHM_H
#define CSHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/// FUTEX_WAKE: wakes up to `count` waiters; returns how many were woken.
int cshm_futex_wake(uint32_t *word, int count);

/// FUTEX_LOCK_PI with an absolute CLOCK_REALTIME timeout, or NULL.
int cshm_futex_lock_pi(uint32_t *word, const struct timespec *abs_realtime);

/// FUTEX_TRYLOCK_PI: the kernel-side try-lock (also resolves dead owners).
int cshm_futex_trylock_pi(uint32_t *word);

/// FUTEX_UNLOCK_PI: hands a contended PI futex to the top waiter.
int cshm_futex_unlock_pi(uint32_t *word);

uint32_t cshm_futex_waiters_bit(void);

uint32_t cshm_futex_tid_mask(void);

/// The calling thread's kernel TID, cached in thread-local storage (the
/// futex lock word holds it, so it is read on every lock and unlock).
pid_t cshm_thread_id(void);

/// pidfd_open(2): a descriptor that becomes readable when `pid` exits.
int cshm_pidfd_open(pid_t pid);

/// Pins the calling thread to one CPU (CPU_SET is a macro).
int cshm_pin_to_cpu(int cpu);

/// Number of CPUs in the calling thread's affinity mask.
int cshm_allowed_cpu_count(void);

void *cshm_map_failed(void);

/// mremap(2) with MREMAP_MAYMOVE (mremap is variadic in glibc).
void *cshm_mremap_maymove(void *old_address, size_t old_size, size_t new_size);

/// memfd_create(2).
int cshm_memfd_create(const char *name, unsigned int flags);

unsigned int cshm_mfd_cloexec(void);

unsigned int cshm_mfd_allow_sealing(void);

unsigned int cshm_mfd_hugetlb(void);

/// fcntl(F_ADD_SEALS) (fcntl is variadic).
int cshm_add_seals(int fd, int seals);

/// fcntl(F_GET_SEALS).
int cshm_get_seals(int fd);

int cshm_seal_seal(void);

int cshm_seal_shrink(void);

int cshm_seal_grow(void);

int cshm_seal_write(void);

/// renameat2(RENAME_NOREPLACE): atomically moves `from` to `to`, failing
/// with EEXIST if `to` exists.
int cshm_rename_noreplace(const char *from, const char *to);

/// Sends `fd` and `len` bytes of `data` (at least one byte) over a Unix socket.
ssize_t cshm_send_fd(int sock, int fd, const void *data, size_t len);

/// Receives up to `len` bytes and at most one descriptor (stored in `*fd_out`,
/// -1 if none arrived). The received descriptor is close-on-exec. Extra
/// descriptors a hostile peer packs into the message are closed, not leaked.
ssize_t cshm_recv_fd(int sock, int *fd_out, void *data, size_t len);

/// shmctl(IPC_STAT) reduced to the fields we report.
int cshm_sysv_stat(int shmid, size_t *size, uint32_t *uid, uint32_t *mode,
                                 int32_t *creator_pid, uint64_t *attach_count);

int cshm_sysv_remove(int shmid);

int cshm_errno(void);

/// CRC32C (Castagnoli polynomial, as iSCSI, ext4 and Kafka use) of `length`
/// bytes, continuing from `crc` (0 to start). Uses the SSE4.2 `crc32`
/// instruction when the CPU has it, a table otherwise.
uint32_t cshm_crc32c(uint32_t crc, const void *data, size_t length);
/// The table-driven CRC32C, for checking the hardware path in tests.
uint32_t cshm_crc32c_software(uint32_t crc, const void *data, size_t length);

/// CRC32C (from 0) of the 4 bytes of `prefix` (little-endian, as stored)
/// followed by `length` bytes at `data`: the same value as two chained
/// `cshm_crc32c` calls, in one (a log record's length, then its bytes).
uint32_t cshm_crc32c_prefixed(uint32_t prefix, const void *data, size_t length);

/// pipe2(O_CLOEXEC) (a GNU extension).
int cshm_pipe_cloexec(int fds[2]);

/// accept4(SOCK_CLOEXEC) (a GNU extension).
int cshm_accept_cloexec(int listener);

/// A spin-wait hint for the CPU (x86 PAUSE, ARM YIELD): lets a spinning
/// hyperthread give way and avoids a memory-order mis-speculation penalty on
/// loop exit. Inline: it sits in every spin loop.
static inline void cshm_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// Asks for the cache line at `p` in exclusive state ahead of a write
/// (x86 PREFETCHW): the read-for-ownership of a line another core last
/// touched then happens before the write, not on its critical path.
static inline void cshm_prefetch_for_write(const void *p) {
    __builtin_prefetch(p, 1, 3);
}

/// Asks for the cache line at `p` for reading (x86 PREFETCHT0) without
/// waiting for it: a spinning reader fetches a line it expects to be
/// written next alongside the line it polls.
static inline void cshm_prefetch_for_read(const void *p) {
    __builtin_prefetch(p, 0, 3);
}

/// futex_waitv(2) (Linux 5.16): sleeps until any of `count` (≤ 128) 32-bit
/// shared futex words no longer holds its expected value or is woken, or the
/// absolute CLOCK_MONOTONIC deadline passes (NULL: no deadline). Returns the
/// index of the word that woke it, or -1 with errno (EAGAIN: a value
/// already differed; ETIMEDOUT; ENOSYS on older kernels).
int cshm_futex_waitv(uint32_t *const *words, const uint32_t *expected, unsigned int count, const struct timespec *abs_monotonic);

/// FUTEX_WAIT with an absolute CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET),
/// so repeated waits after spurious wake-ups never extend the timeout.
int cshm_futex_wait_until(uint32_t *word, uint32_t expected, const struct timespec *abs_monotonic);

// SIGBUS guard (sigbus_guard.c): library mappings that another process
// shrinks read zero pages instead of killing the process.

/// Installs the process-wide SIGBUS handler (idempotent); chains to the
/// handler installed before it for faults outside guarded mappings.
int cshm_sigbus_guard_install(void);

/// Guards [base, base+length); returns a slot, or -1 if none is free.
int cshm_sigbus_guard_register(void *base, size_t length);

/// Stops guarding a slot (before the mapping is unmapped).
void cshm_sigbus_guard_unregister(int slot);

/// Pages of the slot's mapping replaced by zero pages after a SIGBUS.
uint32_t cshm_sigbus_guard_faults(int slot);

// Termination signals (termination.c).

/// Installs handlers for SIGINT, SIGTERM and SIGHUP that record the first
/// signal and interrupt the calling thread's blocking calls (EINTR).
int cshm_termination_install(void);

/// The first termination signal received since install, or 0.
int cshm_termination_received(void);

// The C ABI's last error, per thread (lasterror.c).
void cshm_set_last_error(const char *message);
const char *cshm_last_error(void);

/// eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC).
int cshm_eventfd(void);

#endif
