#include "cshm_test_support.h"

#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int cshm_test_fork_fill(void *ptr, size_t len, unsigned char byte) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        memset(ptr, byte, len);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return (WIFEXITED(status) && WEXITSTATUS(status) == 0) ? 0 : -1;
}
