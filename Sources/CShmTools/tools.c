#define _GNU_SOURCE 1
#include "cshmtools.h"

#include <fcntl.h>
#include <mqueue.h>
#include <sys/resource.h>
#include <unistd.h>

// MARK: - POSIX message queues (benchmark baseline)

int cshmtools_mq_create(const char *name, long max_messages, long message_size) {
    struct mq_attr attr = { 0 };
    attr.mq_maxmsg = max_messages;
    attr.mq_msgsize = message_size;
    return (int)mq_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600, &attr);
}

int cshmtools_mq_open(const char *name) { return (int)mq_open(name, O_RDWR | O_CLOEXEC); }

int cshmtools_mq_send(int mq, const void *data, size_t length) { return mq_send((mqd_t)mq, data, length, 0); }

ssize_t cshmtools_mq_timedreceive(int mq, void *buffer, size_t capacity, const struct timespec *abs_realtime) {
    return mq_timedreceive((mqd_t)mq, buffer, capacity, NULL, abs_realtime);
}

int cshmtools_mq_close(int mq) { return mq_close((mqd_t)mq); }

int cshmtools_mq_unlink(const char *name) { return mq_unlink(name); }

int cshmtools_raise_mqueue_limit(unsigned long bytes) {
    struct rlimit limit = { .rlim_cur = bytes, .rlim_max = bytes };
    struct rlimit current;
    if (getrlimit(RLIMIT_MSGQUEUE, &current) == 0 && current.rlim_max != RLIM_INFINITY && current.rlim_max > bytes) {
        limit.rlim_max = current.rlim_max;
    }
    return setrlimit(RLIMIT_MSGQUEUE, &limit);
}

int cshmtools_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }
