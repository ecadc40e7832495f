/*
 * swiftshm.h — the C ABI of swift-shm: shared-memory publish/subscribe,
 * events, named segments and the persistent log, for C, C++ and Python
 * (ctypes) programs, talking to Swift programs that use the same services.
 *
 * Link: pkg-config --cflags --libs swiftshm   (libswiftshm.so, which carries
 * the Swift runtime statically: no Swift toolchain is needed to use it).
 *
 * Conventions
 * - Every function returns an int status: SHM_OK (0) or a negative SHM_E_*
 *   code; shm_last_error() then gives a message for the calling thread.
 *   Nothing aborts the host process on bad input.
 * - Handles are opaque pointers; each create or open call has a matching free
 *   (NULL is accepted and ignored). Freeing a service or node while ports or
 *   samples made from it are alive is fine: they keep what they need.
 * - Thread safety: a node, a service and a log may be used from any thread.
 *   A publisher, a subscriber, a listener, an appender or a tailer — and the
 *   samples and records it hands out — is used by one thread at a time.
 * - Times are nanoseconds; a timeout < 0 waits for ever, 0 does not wait.
 *
 * Stability: functions and constants in this header are stable within ABI
 * major version SHM_ABI_VERSION_MAJOR; options structs start with their
 * size (struct_size) so later minor versions can add fields at the end.
 */
#ifndef SWIFTSHM_H
#define SWIFTSHM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHM_ABI_VERSION_MAJOR 1
#define SHM_ABI_VERSION_MINOR 0

/* Status codes. */
#define SHM_OK 0
#define SHM_E_INVALID_ARGUMENT  (-1)  /* a NULL handle, a bad name, size or option */
#define SHM_E_NOT_FOUND         (-2)  /* no such service, segment or log */
#define SHM_E_EXISTS            (-3)  /* it exists already (create-only) */
#define SHM_E_TIMED_OUT         (-4)  /* nothing within the timeout */
#define SHM_E_INCOMPATIBLE      (-5)  /* exists with another type or configuration */
#define SHM_E_NO_SPACE          (-6)  /* /dev/shm or the disk is full */
#define SHM_E_EXHAUSTED         (-7)  /* pool, loans, borrowed samples or ports used up */
#define SHM_E_CORRUPT           (-8)  /* damaged or hostile shared memory or file */
#define SHM_E_TRUNCATED         (-9)  /* a file or segment shrank under its mapping */
#define SHM_E_SYSTEM            (-10) /* a system call failed (see the message) */
#define SHM_E_STATE             (-11) /* wrong state: a sample already sent or released */

/* Overflow policies of a publish/subscribe service. */
#define SHM_OVERFLOW_OVERWRITE_OLDEST 0
#define SHM_OVERFLOW_DISCARD 1
#define SHM_OVERFLOW_BLOCK 2

/* Open modes. */
#define SHM_OPEN_OR_CREATE 0
#define SHM_OPEN 1
#define SHM_CREATE 2

typedef struct shm_node shm_node_t;
typedef struct shm_pubsub shm_pubsub_t;
typedef struct shm_publisher shm_publisher_t;
typedef struct shm_subscriber shm_subscriber_t;
typedef struct shm_loan shm_loan_t;
typedef struct shm_sample shm_sample_t;
typedef struct shm_event shm_event_t;
typedef struct shm_notifier shm_notifier_t;
typedef struct shm_listener shm_listener_t;
typedef struct shm_segment shm_segment_t;
typedef struct shm_log shm_log_t;
typedef struct shm_appender shm_appender_t;
typedef struct shm_tailer shm_tailer_t;
typedef struct shm_record shm_record_t;

/* ABI version: (major << 16) | minor. */
uint32_t shm_abi_version(void);

/* The message of the last failed call on this thread ("" if none). Valid
 * until the next call on this thread. */
const char *shm_last_error(void);

/* ---- Nodes ------------------------------------------------------------ */

/* A participant (registers this process; see `shm ls`). */
int shm_node_create(const char *name, shm_node_t **out);
void shm_node_free(shm_node_t *node);

/* ---- Publish/subscribe ---------------------------------------------- */

typedef struct shm_pubsub_options {
    uint32_t struct_size;      /* sizeof(shm_pubsub_options) */
    /* The payload type: NULL for byte slices ("[Swift.UInt8]", what Swift's
     * `slicesOf: UInt8.self` services carry), then type_size is the most
     * bytes a sample holds; or a type name every language agrees on, with
     * sizeof and alignof of the type. */
    const char *type_name;
    uint64_t type_size;        /* 0 with SHM_OPEN: whatever the existing service carries */
    uint64_t type_alignment;
    uint32_t max_publishers;   /* default 8 */
    uint32_t max_subscribers;  /* default 8 */
    uint32_t buffer_size;      /* samples queued per subscriber, default 8 */
    uint32_t history_size;     /* samples replayed to late joiners, default 0 */
    uint32_t max_loans;        /* per publisher, default 4 */
    uint32_t max_borrowed;     /* per subscriber, default 4 */
    uint32_t overflow;         /* SHM_OVERFLOW_*, default overwrite oldest */
    uint32_t open_mode;        /* SHM_OPEN_*, default open or create */
} shm_pubsub_options;

/* Fills `options` with the defaults (byte slices of type_size = 4096). */
void shm_pubsub_options_init(shm_pubsub_options *options);

int shm_pubsub_open(shm_node_t *node, const char *service, const shm_pubsub_options *options, shm_pubsub_t **out);
void shm_pubsub_free(shm_pubsub_t *service);
/* The most payload bytes a sample can hold. */
uint64_t shm_pubsub_max_bytes(const shm_pubsub_t *service);

int shm_publisher_create(shm_pubsub_t *service, shm_publisher_t **out);
void shm_publisher_free(shm_publisher_t *publisher);
/* How long a send waits under SHM_OVERFLOW_BLOCK (default 1 s). */
int shm_publisher_set_send_timeout(shm_publisher_t *publisher, int64_t timeout_ns);
/* Subscribers connected now. */
int shm_publisher_subscribers(shm_publisher_t *publisher, uint32_t *count);
/* Waits up to timeout_ns for at least `count` subscribers. */
int shm_publisher_wait_for_subscribers(shm_publisher_t *publisher, uint32_t count, int64_t timeout_ns);

/* Loans `bytes` bytes in the publisher's shared pool; *data points at them
 * (aligned to the type's alignment). Write in place, then send or discard. */
int shm_publisher_loan(shm_publisher_t *publisher, uint64_t bytes, shm_loan_t **loan, void **data);
/* Sends the loan to every connected subscriber (no copy) and frees the
 * handle; *reached (may be NULL) is how many subscribers it reached. */
int shm_loan_send(shm_loan_t *loan, uint32_t *reached);
/* Gives an unsent loan back and frees the handle. */
void shm_loan_discard(shm_loan_t *loan);
/* Copies `bytes` from `data` into a loan and sends it. */
int shm_publisher_send_copy(shm_publisher_t *publisher, const void *data, uint64_t bytes, uint32_t *reached);

int shm_subscriber_create(shm_pubsub_t *service, shm_subscriber_t **out);
void shm_subscriber_free(shm_subscriber_t *subscriber);
/* The next sample, waiting up to timeout_ns; *data and *bytes describe it
 * in the publisher's memory (read-only) until shm_sample_release. */
int shm_subscriber_receive(shm_subscriber_t *subscriber, int64_t timeout_ns, shm_sample_t **sample,
                           const void **data, uint64_t *bytes);
/* The next sample copied into `buffer` (`capacity` bytes) and handed back
 * at once — for small messages, where one call beats a loan of a view.
 * *bytes is the sample's size; SHM_E_INVALID_ARGUMENT if it exceeds
 * `capacity` (the sample is then handed back unread). */
int shm_subscriber_receive_copy(shm_subscriber_t *subscriber, int64_t timeout_ns, void *buffer, uint64_t capacity,
                                uint64_t *bytes);
/* Samples lost to the overflow policy before this subscriber saw them. */
uint64_t shm_subscriber_lost(shm_subscriber_t *subscriber);
/* A descriptor that becomes readable when samples may be waiting (an
 * eventfd fed by a helper thread that sleeps on the subscriber's futex):
 * put it in epoll/poll/asyncio, then drain with timeout 0 and call
 * shm_subscriber_rearm. Owned by the subscriber: do not close it. */
int shm_subscriber_fd(shm_subscriber_t *subscriber, int *fd);
/* Consumes the descriptor's readiness after draining. */
int shm_subscriber_rearm(shm_subscriber_t *subscriber);
/* The publisher's number of the sample (1, 2, …) and its publisher's id. */
uint64_t shm_sample_sequence(const shm_sample_t *sample);
uint64_t shm_sample_publisher(const shm_sample_t *sample);
/* Hands the sample back to its publisher and frees the handle. */
void shm_sample_release(shm_sample_t *sample);

/* ---- Events ----------------------------------------------------------- */

int shm_event_open(shm_node_t *node, const char *service, uint32_t max_event_id, shm_event_t **out);
void shm_event_free(shm_event_t *event);
int shm_notifier_create(shm_event_t *event, shm_notifier_t **out);
void shm_notifier_free(shm_notifier_t *notifier);
int shm_notify(shm_notifier_t *notifier, uint32_t event_id);
int shm_listener_create(shm_event_t *event, shm_listener_t **out);
void shm_listener_free(shm_listener_t *listener);
/* Waits up to timeout_ns; writes up to `capacity` ids that fired to `ids`
 * and their number to *count (0 on timeout, which is not an error). */
int shm_listener_wait(shm_listener_t *listener, int64_t timeout_ns, uint32_t *ids, uint32_t capacity, uint32_t *count);

/* ---- Named segments --------------------------------------------------- */

/* Creates /dev/shm/swiftshm.<uid>.<name> of `bytes` usable bytes (reserved
 * up front; SHM_E_NO_SPACE if /dev/shm cannot hold it). It stays until
 * shm_segment_unlink. */
int shm_segment_create(const char *name, uint64_t bytes, shm_segment_t **out);
int shm_segment_open(const char *name, shm_segment_t **out);
void shm_segment_free(shm_segment_t *segment);
/* The data area: base address and size in bytes. */
void *shm_segment_data(shm_segment_t *segment);
uint64_t shm_segment_size(const shm_segment_t *segment);
int shm_segment_unlink(const char *name);

/* ---- Persistent log --------------------------------------------------- */

/* Opens the log in `directory`, creating it (segments of segment_bytes; 0
 * for the default) if it does not exist. */
int shm_log_open(const char *directory, uint64_t segment_bytes, shm_log_t **out);
void shm_log_free(shm_log_t *log);
int shm_appender_create(shm_log_t *log, shm_appender_t **out);
void shm_appender_free(shm_appender_t *appender);
/* Appends a record; *sequence (may be NULL) is its sequence number. */
int shm_append(shm_appender_t *appender, const void *data, uint64_t bytes, uint64_t *sequence);
/* from_sequence 0: from the oldest record; UINT64_MAX: from the end. */
int shm_tailer_create(shm_log_t *log, uint64_t from_sequence, shm_tailer_t **out);
void shm_tailer_free(shm_tailer_t *tailer);
/* The next record, waiting up to timeout_ns; *data and *bytes valid until
 * shm_record_free (the record is copied out of the log). */
int shm_tailer_next(shm_tailer_t *tailer, int64_t timeout_ns, shm_record_t **record, const void **data,
                    uint64_t *bytes, uint64_t *sequence, uint64_t *timestamp_ns);
void shm_record_free(shm_record_t *record);

#ifdef __cplusplus
}
#endif
#endif /* SWIFTSHM_H */
