// The message of the last failed C ABI call, per thread (swiftshm.h:
// shm_last_error). A fixed thread-local buffer: no allocation, no lock.
#include "cshm.h"

#include <string.h>

static __thread char last_error[1024];

void cshm_set_last_error(const char *message) {
    if (!message) { last_error[0] = 0; return; }
    strncpy(last_error, message, sizeof last_error - 1);
    last_error[sizeof last_error - 1] = 0;
}

const char *cshm_last_error(void) { return last_error; }
