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
 *   A publisher, a subscriber, a listener, a client, a server, a wait set,
 *   an appender or a tailer — and the samples, loans, pending responses,
 *   claims and records it hands out — is used by one thread at a time. An
 *   active request may be answered from any thread (one thread per request).
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
#define SHM_ABI_VERSION_MINOR 2 /* 1: request/response, wait sets, log claims; 2: pool allocation, footprint */

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

/* How a publisher's pool gets shared memory (PoolAllocation in Swift):
 * AUTOMATIC grows pools that would reserve more than 1 MiB, RESERVED takes
 * everything the service's limits allow in flight at creation, GROWING
 * starts with 8 chunks of 64 bytes and adds segments as loans need them
 * (a full /dev/shm is then SHM_E_NO_SPACE from the loan that needed one). */
#define SHM_POOL_AUTOMATIC 0
#define SHM_POOL_RESERVED 1
#define SHM_POOL_GROWING 2

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
typedef struct shm_reqres shm_reqres_t;
typedef struct shm_client shm_client_t;
typedef struct shm_request_loan shm_request_loan_t;
typedef struct shm_pending_response shm_pending_response_t;
typedef struct shm_response shm_response_t;
typedef struct shm_server shm_server_t;
typedef struct shm_active_request shm_active_request_t;
typedef struct shm_response_loan shm_response_loan_t;
typedef struct shm_waitset shm_waitset_t;
typedef struct shm_claim shm_claim_t;

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
/* The same, with the pool's allocation (SHM_POOL_*). */
int shm_publisher_create_with_pool(shm_pubsub_t *service, uint32_t pool, shm_publisher_t **out);
void shm_publisher_free(shm_publisher_t *publisher);
/* What the publisher's pool holds in /dev/shm now: bytes, segments, chunks
 * and the bytes a loanable chunk holds (any pointer may be NULL). */
int shm_publisher_footprint(shm_publisher_t *publisher, uint64_t *bytes, uint32_t *segments, uint64_t *chunks,
                            uint64_t *chunk_capacity);
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

/* ---- Request/response ----------------------------------------------- */

/* Clients loan a request, write it in place and send it; servers receive it
 * in place, loan a response (or a stream of them, the last one final) and
 * send it; the client receives each response in place and releases it.
 * Today requests and responses are copied once through queues in shared
 * memory behind these calls; the shape is that of loans so that zero-copy
 * exchanges change nothing here. Each message carries its length (at most
 * the service's request/response size). */
typedef struct shm_reqres_options {
    uint32_t struct_size;       /* sizeof(shm_reqres_options) */
    /* Names the request and response types together, e.g. what a Swift
     * service was given as `typeName:`; NULL for byte messages
     * ("bytes -> bytes"). */
    const char *type_name;
    uint64_t request_size;      /* most bytes a request holds (sizeof the request type), default 4096 */
    uint64_t request_alignment; /* alignof the request type, default 1 */
    uint64_t response_size;     /* most bytes a response holds, default 4096 */
    uint32_t max_clients;       /* default 8 */
    uint32_t max_servers;       /* default 2 */
    uint32_t queue_depth;       /* requests waiting for a server, default 16 */
    uint32_t open_mode;         /* SHM_OPEN_*, default open or create */
} shm_reqres_options;

void shm_reqres_options_init(shm_reqres_options *options);
int shm_reqres_open(shm_node_t *node, const char *service, const shm_reqres_options *options, shm_reqres_t **out);
void shm_reqres_free(shm_reqres_t *service);
uint64_t shm_reqres_max_request_bytes(const shm_reqres_t *service);
uint64_t shm_reqres_max_response_bytes(const shm_reqres_t *service);

int shm_client_create(shm_reqres_t *service, shm_client_t **out);
void shm_client_free(shm_client_t *client);
/* How long a send waits for room in a server's queue (default 1 s). A
 * request sent while no server runs waits in the client (up to queue_depth
 * of them) and goes to the first server that connects when the client next
 * sends or waits for a response; past that, SHM_E_TIMED_OUT ("no server"). */
int shm_client_set_send_timeout(shm_client_t *client, int64_t timeout_ns);
/* Loans room for a request of `bytes` bytes (0…max request bytes); *data
 * points at it: a chunk of the client's pool in shared memory (aligned to
 * the request type), which the server reads in place. Send or discard it;
 * SHM_E_EXHAUSTED past queue_depth + 4 loans. Requests go round robin to
 * the servers. */
int shm_client_loan(shm_client_t *client, uint64_t bytes, shm_request_loan_t **loan, void **data);
/* Sends the request and frees the loan (also on failure); *pending receives
 * its responses. */
int shm_request_send(shm_request_loan_t *loan, shm_pending_response_t **pending);
void shm_request_discard(shm_request_loan_t *loan);
/* Loan, copy `bytes` bytes from `data`, send: in one call. */
int shm_client_send_copy(shm_client_t *client, const void *data, uint64_t bytes, shm_pending_response_t **pending);
/* The request's id (1, 2, … per client). */
uint64_t shm_pending_response_id(const shm_pending_response_t *pending);
/* The next response, waiting up to timeout_ns: *data (in place in the
 * server's pool) and *bytes valid until shm_response_release; *is_final
 * (may be NULL) is 1 for the last response of the request. After the final
 * one: SHM_E_STATE. A client holds at most queue_depth responses
 * (SHM_E_EXHAUSTED). */
int shm_pending_response_receive(shm_pending_response_t *pending, int64_t timeout_ns, shm_response_t **response,
                                 const void **data, uint64_t *bytes, int *is_final);
/* The same into `buffer` (capacity bytes; SHM_E_INVALID_ARGUMENT if the
 * response does not fit, with its size in *bytes). */
int shm_pending_response_receive_copy(shm_pending_response_t *pending, int64_t timeout_ns, void *buffer,
                                      uint64_t capacity, uint64_t *bytes, int *is_final);
/* Responses still to come are dropped when they arrive. */
void shm_pending_response_free(shm_pending_response_t *pending);
void shm_response_release(shm_response_t *response);

int shm_server_create(shm_reqres_t *service, shm_server_t **out);
void shm_server_free(shm_server_t *server);
/* How long a response waits for room in the client's queue (default 1 s). */
int shm_server_set_send_timeout(shm_server_t *server, int64_t timeout_ns);
/* The next request, waiting up to timeout_ns: *data and *bytes valid until
 * shm_active_request_free (a copy: an active request may be answered and
 * freed on any thread). */
int shm_server_receive(shm_server_t *server, int64_t timeout_ns, shm_active_request_t **request, const void **data,
                       uint64_t *bytes);
uint64_t shm_active_request_client(const shm_active_request_t *request);
uint64_t shm_active_request_id(const shm_active_request_t *request);
/* Loans room for a response of `bytes` bytes (0…max response bytes): a
 * chunk of the server's pool, which the client reads in place. */
int shm_active_request_loan(shm_active_request_t *request, uint64_t bytes, shm_response_loan_t **loan, void **data);
/* Sends the response (is_final 0: more follow) and frees the loan (also on
 * failure). *delivered (may be NULL) is 0 if the client is gone. After a
 * final response the request takes no more: SHM_E_STATE. */
int shm_response_send(shm_response_loan_t *loan, int is_final, int *delivered);
void shm_response_discard(shm_response_loan_t *loan);
/* Loan, copy, send: in one call. */
int shm_active_request_respond_copy(shm_active_request_t *request, const void *data, uint64_t bytes, int is_final,
                                    int *delivered);
/* Frees the request (and its bytes). A request freed without a final
 * response leaves its client waiting until its own timeout. */
void shm_active_request_free(shm_active_request_t *request);

/* ---- Wait sets -------------------------------------------------------- */

/* Waits on several subscribers, listeners and servers at once (one
 * futex_waitv(2) on all of them; at most 127 attachments). An attached
 * port must outlive the wait set, or be detached by freeing the set. */
int shm_waitset_create(shm_waitset_t **out);
void shm_waitset_free(shm_waitset_t *waitset);
/* Each attach writes the attachment's index (0, 1, … in order) to *index. */
int shm_waitset_attach_subscriber(shm_waitset_t *waitset, shm_subscriber_t *subscriber, uint32_t *index);
int shm_waitset_attach_listener(shm_waitset_t *waitset, shm_listener_t *listener, uint32_t *index);
int shm_waitset_attach_server(shm_waitset_t *waitset, shm_server_t *server, uint32_t *index);
/* Waits up to timeout_ns (0: looks without waiting) until an attachment is
 * ready; writes up to `capacity` ready indices to `ready` and their number
 * to *count (0 on timeout, which is not an error). */
int shm_waitset_wait(shm_waitset_t *waitset, int64_t timeout_ns, uint32_t *ready, uint32_t capacity, uint32_t *count);
/* A descriptor (eventfd; do not close it) that becomes readable when an
 * attachment may be ready, for the caller's own epoll/poll/asyncio loop:
 * on readability call shm_waitset_wait(…, 0, …), handle what is ready,
 * then shm_waitset_rearm (which also takes in attachments added since). A
 * helper thread asleep in futex_waitv(2) signals it: no busy thread. */
int shm_waitset_fd(shm_waitset_t *waitset, int *fd);
int shm_waitset_rearm(shm_waitset_t *waitset);

/* ---- Events ----------------------------------------------------------- */

int shm_event_open(shm_node_t *node, const char *service, uint32_t max_event_id, shm_event_t **out);
void shm_event_free(shm_event_t *event);
int shm_notifier_create(shm_event_t *event, shm_notifier_t **out);
void shm_notifier_free(shm_notifier_t *notifier);
int shm_notify(shm_notifier_t *notifier, uint32_t event_id);
int shm_listener_create(shm_event_t *event, shm_listener_t **out);
void shm_listener_free(shm_listener_t *listener);
/* Waits up to timeout_ns; writes up to `capacity` ids that fired to `ids`
 * and their number to *count (0 on timeout, which is not an error). Ids that
 * fired but did not fit are returned by the next call, at once: call again
 * with timeout 0 until *count is 0 to drain. */
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
/* Claims room for a record of `bytes` bytes, written in place at *data
 * (in the mapped segment) and published by shm_claim_commit; *sequence
 * (may be NULL) is the sequence number it will have. One claim per
 * appender at a time. A claim aborted (or freed uncommitted, or left by a
 * killed process) becomes a skip record that tailers step over. */
int shm_appender_claim(shm_appender_t *appender, uint64_t bytes, shm_claim_t **claim, void **data, uint64_t *sequence);
/* Publishes the record to tailers and frees the claim (also on failure). */
int shm_claim_commit(shm_claim_t *claim, uint64_t *sequence);
void shm_claim_abort(shm_claim_t *claim);
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
