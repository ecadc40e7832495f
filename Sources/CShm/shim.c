// CShm implementation. Compiled with _GNU_SOURCE; see include/cshm.h for why
// the header itself stays free of it.
#define _GNU_SOURCE 1

#include "cshm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <stdio.h>
#include <sys/uio.h>
#include <linux/fs.h>
#include <unistd.h>

// MARK: - Futex (futex(2) is only reachable through variadic syscall(2))

int cshm_futex_wait_until(uint32_t *word, uint32_t expected, const struct timespec *abs_monotonic) {
    return (int)syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, abs_monotonic, NULL, FUTEX_BITSET_MATCH_ANY);
}

int cshm_futex_waitv(uint32_t *const *words, const uint32_t *expected, unsigned int count, const struct timespec *abs_monotonic) {
#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
    struct futex_waitv waiters[128];
    if (count == 0 || count > 128) { errno = EINVAL; return -1; }
    for (unsigned int i = 0; i < count; i++) {
        waiters[i].val = expected[i];
        waiters[i].uaddr = (uintptr_t)words[i];
        waiters[i].flags = 0x02; /* FUTEX2_SIZE_U32 */
        waiters[i].__reserved = 0;
    }
    return (int)syscall(SYS_futex_waitv, waiters, count, 0, abs_monotonic, CLOCK_MONOTONIC);
}

int cshm_futex_wake(uint32_t *word, int count) {
    return (int)syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

int cshm_futex_lock_pi(uint32_t *word, const struct timespec *abs_realtime) {
    return (int)syscall(SYS_futex, word, FUTEX_LOCK_PI, 0, abs_realtime, NULL, 0);
}

int cshm_futex_trylock_pi(uint32_t *word) {
    return (int)syscall(SYS_futex, word, FUTEX_TRYLOCK_PI, 0, NULL, NULL, 0);
}

int cshm_futex_unlock_pi(uint32_t *word) {
    return (int)syscall(SYS_futex, word, FUTEX_UNLOCK_PI, 0, NULL, NULL, 0);
}

uint32_t cshm_futex_waiters_bit(void) { return FUTEX_WAITERS; }
uint32_t cshm_futex_tid_mask(void) { return FUTEX_TID_MASK; }

// MARK: - Threads and processes

pid_t cshm_thread_id(void) {
    static _Thread_local pid_t cached = 0;
    if (cached == 0) cached = (pid_t)syscall(SYS_gettid);
    return cached;
}

int cshm_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int cshm_pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

int cshm_allowed_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    return CPU_COUNT(&set);
}

// MARK: - Memory

void *cshm_map_failed(void) { return MAP_FAILED; }

void *cshm_mremap_maymove(void *old_address, size_t old_size, size_t new_size) {
    return mremap(old_address, old_size, new_size, MREMAP_MAYMOVE);
}

int cshm_memfd_create(const char *name, unsigned int flags) {
    return (int)syscall(SYS_memfd_create, name, flags);
}

unsigned int cshm_mfd_cloexec(void) { return MFD_CLOEXEC; }
unsigned int cshm_mfd_allow_sealing(void) { return MFD_ALLOW_SEALING; }
unsigned int cshm_mfd_hugetlb(void) { return MFD_HUGETLB; }

int cshm_add_seals(int fd, int seals) { return fcntl(fd, F_ADD_SEALS, seals); }
int cshm_get_seals(int fd) { return fcntl(fd, F_GET_SEALS); }

int cshm_seal_seal(void) { return F_SEAL_SEAL; }
int cshm_seal_shrink(void) { return F_SEAL_SHRINK; }
int cshm_seal_grow(void) { return F_SEAL_GROW; }
int cshm_seal_write(void) { return F_SEAL_WRITE; }
int cshm_rename_noreplace(const char *from, const char *to) {
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
}

// MARK: - Descriptor passing (SCM_RIGHTS; the CMSG_* macros are not importable)

ssize_t cshm_send_fd(int sock, int fd, const void *data, size_t len) {
    struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg = { 0 };
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
    ssize_t n;
    do { n = sendmsg(sock, &msg, MSG_NOSIGNAL); } while (n < 0 && errno == EINTR);
    return n;
}

ssize_t cshm_recv_fd(int sock, int *fd_out, void *data, size_t len) {
    struct iovec iov = { .iov_base = data, .iov_len = len };
    union { char buf[CMSG_SPACE(sizeof(int) * 8)]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof(control));
    struct msghdr msg = { 0 };
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    *fd_out = -1;
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int received;
            memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            // Keep the first descriptor; close any extras a peer packed in.
            if (*fd_out < 0) *fd_out = received; else close(received);
        }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
        // The kernel dropped descriptors that did not fit: a protocol error.
        if (*fd_out >= 0) { close(*fd_out); *fd_out = -1; }
        errno = EPROTO;
        return -1;
    }
    return n;
}

// MARK: - System V shared memory

int cshm_sysv_stat(int shmid, size_t *size, uint32_t *uid, uint32_t *mode,
                   int32_t *creator_pid, uint64_t *attach_count) {
    struct shmid_ds ds;
    if (shmctl(shmid, IPC_STAT, &ds) != 0) return -1;
    *size = ds.shm_segsz;
    *uid = ds.shm_perm.uid;
    *mode = ds.shm_perm.mode & 0777;
    *creator_pid = ds.shm_cpid;
    *attach_count = (uint64_t)ds.shm_nattch;
    return 0;
}

int cshm_sysv_remove(int shmid) { return shmctl(shmid, IPC_RMID, NULL); }

// MARK: - GNU extensions

int cshm_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cshm_accept_cloexec(int listener) { return accept4(listener, NULL, NULL, SOCK_CLOEXEC); }

// MARK: - errno

int cshm_errno(void) { return errno; }
// MARK: - CRC32C (Castagnoli), for log records

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>

static inline uint64_t crc32c_load64(const unsigned char *p) {
    uint64_t word;
    memcpy(&word, p, 8);
    return word;
}

/// CRC32C of `n` bytes at `p`, continuing the (uninverted) register `c`.
/// Runs of 64 bytes in a loop, then up to 7 whole words straight-line (a
/// record's header and a short payload take no loop), then 4, 2 and 1
/// bytes — in byte order, as the checksum requires.
__attribute__((target("sse4.2")))
static uint32_t crc32c_hardware(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n >= 64) {
        c = _mm_crc32_u64(c, crc32c_load64(p));
        c = _mm_crc32_u64(c, crc32c_load64(p + 8));
        c = _mm_crc32_u64(c, crc32c_load64(p + 16));
        c = _mm_crc32_u64(c, crc32c_load64(p + 24));
        c = _mm_crc32_u64(c, crc32c_load64(p + 32));
        c = _mm_crc32_u64(c, crc32c_load64(p + 40));
        c = _mm_crc32_u64(c, crc32c_load64(p + 48));
        c = _mm_crc32_u64(c, crc32c_load64(p + 56));
        p += 64;
        n -= 64;
    }
    // Words left (0-7), ending at `q`: taken from the first on.
    const unsigned char *q = p + (n & ~(size_t)7);
    switch (n >> 3) {
    case 7: c = _mm_crc32_u64(c, crc32c_load64(q - 56)); /* fall through */
    case 6: c = _mm_crc32_u64(c, crc32c_load64(q - 48)); /* fall through */
    case 5: c = _mm_crc32_u64(c, crc32c_load64(q - 40)); /* fall through */
    case 4: c = _mm_crc32_u64(c, crc32c_load64(q - 32)); /* fall through */
    case 3: c = _mm_crc32_u64(c, crc32c_load64(q - 24)); /* fall through */
    case 2: c = _mm_crc32_u64(c, crc32c_load64(q - 16)); /* fall through */
    case 1: c = _mm_crc32_u64(c, crc32c_load64(q - 8)); /* fall through */
    default: break;
    }
    uint32_t c32 = (uint32_t)c;
    if (n & 4) { uint32_t v; memcpy(&v, q, 4); c32 = _mm_crc32_u32(c32, v); q += 4; }
    if (n & 2) { uint16_t v; memcpy(&v, q, 2); c32 = _mm_crc32_u16(c32, v); q += 2; }
    if (n & 1) { c32 = _mm_crc32_u8(c32, *q); }
    return c32;
}

/// ~CRC32C of the 4 little-endian bytes of `prefix` followed by `n` bytes:
/// one call where a log record's checksum made two (its length, then its
/// header and payload). Not inlined, so the caller below tail-calls it.
__attribute__((target("sse4.2"), noinline))
static uint32_t crc32c_hardware_prefixed(uint32_t prefix, const unsigned char *p, size_t n) {
    return ~crc32c_hardware(_mm_crc32_u32(0xFFFFFFFFu, prefix), p, n);
}
#endif

static uint32_t crc32c_table[256];
static int crc32c_mode; // 0 unknown, 1 software, 2 hardware

static void crc32c_setup(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[i] = c;
    }
    int mode = 1;
#if defined(__x86_64__)
    unsigned int a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2)) mode = 2;
#endif
    __atomic_store_n(&crc32c_mode, mode, __ATOMIC_RELEASE);
}

#include <pthread.h>
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

/// Fills the table and picks the mode once, whichever thread comes first
/// (the others wait: none reads a half-filled table).
static int crc32c_init(void) {
    pthread_once(&crc32c_once, crc32c_setup);
    return __atomic_load_n(&crc32c_mode, __ATOMIC_ACQUIRE);
}

uint32_t cshm_crc32c(uint32_t crc, const void *data, size_t length) {
    int mode = __atomic_load_n(&crc32c_mode, __ATOMIC_ACQUIRE);
    if (mode == 0) mode = crc32c_init();
    const unsigned char *p = data;
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (mode == 2) return ~crc32c_hardware(c, p, length);
#endif
    while (length--) c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

/// The table-driven form of `cshm_crc32c_prefixed` (and its first call's set-up).
__attribute__((noinline))
static uint32_t crc32c_prefixed_slow(uint32_t prefix, const void *data, size_t length) {
    int mode = crc32c_init();
#if defined(__x86_64__)
    if (mode == 2) return crc32c_hardware_prefixed(prefix, data, length);
#endif
    unsigned char head[4];
    memcpy(head, &prefix, 4);
    return cshm_crc32c(cshm_crc32c(0, head, 4), data, length);
}

uint32_t cshm_crc32c_prefixed(uint32_t prefix, const void *data, size_t length) {
    // Once set, the mode never changes: a relaxed load, then a tail call
    // (a log append's checksum; the shared-library case pays no more).
#if defined(__x86_64__)
    if (__builtin_expect(__atomic_load_n(&crc32c_mode, __ATOMIC_RELAXED) == 2, 1))
        return crc32c_hardware_prefixed(prefix, data, length);
#endif
    return crc32c_prefixed_slow(prefix, data, length);
}

uint32_t cshm_crc32c_software(uint32_t crc, const void *data, size_t length) {
    crc32c_init();
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (length--) c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

#include <sys/eventfd.h>

int cshm_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }
