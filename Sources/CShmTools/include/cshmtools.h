// C that the tools need and the library does not: the POSIX message queues
// `shm bench` measures as a baseline (<mqueue.h> is not in Swift's Glibc
// module; mq_open is variadic), and libFuzzer's driver for shm-fuzz.
// Kept out of CShm so the library's shim holds only what the library calls.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/// mq_open(name, O_RDWR|O_CREAT|O_EXCL, 0600, &attr) with the given message
/// size and count (mq_open is variadic). Returns the descriptor or -1.
int cshmtools_mq_create(const char *name, long max_messages, long message_size);

/// mq_open(name, O_RDWR) of an existing queue.
int cshmtools_mq_open(const char *name);

/// mq_send / mq_timedreceive (absolute CLOCK_REALTIME deadline) / mq_close /
/// mq_unlink: <mqueue.h> is not part of Swift's Glibc module.
int cshmtools_mq_send(int mq, const void *data, size_t length);
ssize_t cshmtools_mq_timedreceive(int mq, void *buffer, size_t capacity, const struct timespec *abs_realtime);
int cshmtools_mq_close(int mq);
int cshmtools_mq_unlink(const char *name);

/// Raises RLIMIT_MSGQUEUE to `bytes` (soft and hard; needs privilege to go
/// above the hard limit). Returns 0 or -1.
int cshmtools_raise_mqueue_limit(unsigned long bytes);

/// pipe2(O_CLOEXEC) (a GNU extension), for benchmark pipes.
int cshmtools_pipe_cloexec(int fds[2]);

// libFuzzer's driver, for a program with its own main (shm-fuzz built by
// Fuzz/run). Declared here, defined only when linking with
// -sanitize=fuzzer; nothing references it in other builds.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

