// The official NATS C client (nats.c, Debian libnats-dev), for ShmBridge.
#include <nats/nats.h>
