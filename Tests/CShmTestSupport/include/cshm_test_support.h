// Test-only C helpers. Kept out of the library: they fork.
#ifndef CSHM_TEST_SUPPORT_H
#define CSHM_TEST_SUPPORT_H

#include <stddef.h>

/// fork(2)s; the child memsets `len` bytes at `ptr` to `byte` and _exit(0)s
/// (only async-signal-safe work, so it is safe in a multithreaded parent);
/// the parent waits for it. Returns 0 on success, -1 with errno on failure.
/// Used to prove that MAP_SHARED|MAP_ANONYMOUS memory is shared with a
/// forked child while private memory is not.
int cshm_test_fork_fill(void *ptr, size_t len, unsigned char byte);

#endif


#ifndef CSHM_TEST_SUPPORT_MALLOC_H
#define CSHM_TEST_SUPPORT_MALLOC_H
/// Allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc,
/// memalign) made by the calling thread so far. The test binary interposes
/// the allocator (see malloc_counter.c) so steady-state send/receive can be
/// shown to allocate nothing.
unsigned long cshm_test_thread_allocations(void);
#endif

