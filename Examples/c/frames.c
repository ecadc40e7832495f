/*
 * frames — a C program on swift-shm's C ABI: publishes or receives frames
 * of bytes on a service, zero-copy, talking to Swift (or C, or Python)
 * processes on the same service.
 *
 *   cc frames.c -o frames $(pkg-config --cflags --libs swiftshm)
 *   ./frames pub SERVICE COUNT BYTES     # waits for a subscriber, sends COUNT frames
 *   ./frames sub SERVICE COUNT           # receives COUNT frames, checks each
 *
 * A frame: its number (uint64, little-endian) then bytes (number + i) & 0xff.
 * The service: byte slices of up to BYTES bytes (Swift: slicesOf: UInt8.self),
 * overflow policy "block" so that no frame is lost.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <swiftshm.h>

static int check(int status, const char *what) {
    if (status != SHM_OK) {
        fprintf(stderr, "frames: %s failed (%d): %s\n", what, status, shm_last_error());
        exit(1);
    }
    return status;
}

int main(int argc, char **argv) {
    if (argc < 4 || (strcmp(argv[1], "pub") == 0 && argc < 5)) {
        fprintf(stderr, "usage: frames pub SERVICE COUNT BYTES | frames sub SERVICE COUNT [BYTES]\n");
        return 2;
    }
    const int publishing = strcmp(argv[1], "pub") == 0;
    const char *service_name = argv[2];
    const uint64_t count = strtoull(argv[3], NULL, 10);
    const uint64_t bytes = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;

    if ((shm_abi_version() >> 16) != SHM_ABI_VERSION_MAJOR) {
        fprintf(stderr, "frames: libswiftshm ABI %u, built for %u\n", shm_abi_version() >> 16, SHM_ABI_VERSION_MAJOR);
        return 1;
    }
    shm_node_t *node;
    check(shm_node_create("c-frames", &node), "shm_node_create");

    shm_pubsub_options options;
    shm_pubsub_options_init(&options);
    options.type_size = bytes;             /* byte slices of up to this many bytes */
    options.overflow = SHM_OVERFLOW_BLOCK;
    if (!bytes) options.open_mode = SHM_OPEN; /* no size given: the existing service's */
    shm_pubsub_t *service;
    check(shm_pubsub_open(node, service_name, &options, &service), "shm_pubsub_open");

    if (publishing) {
        shm_publisher_t *publisher;
        check(shm_publisher_create(service, &publisher), "shm_publisher_create");
        check(shm_publisher_set_send_timeout(publisher, 30000000000LL), "shm_publisher_set_send_timeout");
        check(shm_publisher_wait_for_subscribers(publisher, 1, 30000000000LL), "shm_publisher_wait_for_subscribers");
        for (uint64_t n = 0; n < count; n++) {
            shm_loan_t *loan;
            void *data;
            check(shm_publisher_loan(publisher, bytes, &loan, &data), "shm_publisher_loan");
            uint8_t *frame = data;
            memcpy(frame, &n, 8);
            for (uint64_t i = 8; i < bytes; i++) frame[i] = (uint8_t)(n + i);
            uint32_t reached;
            check(shm_loan_send(loan, &reached), "shm_loan_send");
        }
        printf("sent %llu\n", (unsigned long long)count);
        shm_publisher_free(publisher);
    } else {
        shm_subscriber_t *subscriber;
        check(shm_subscriber_create(service, &subscriber), "shm_subscriber_create");
        printf("subscribed\n");
        fflush(stdout);
        uint64_t good = 0;
        for (uint64_t n = 0; n < count; n++) {
            shm_sample_t *sample;
            const void *data;
            uint64_t size;
            check(shm_subscriber_receive(subscriber, 30000000000LL, &sample, &data, &size), "shm_subscriber_receive");
            const uint8_t *frame = data;
            uint64_t number;
            memcpy(&number, frame, 8);
            int ok = number == n && size >= 8;
            for (uint64_t i = 8; ok && i < size; i++) ok = frame[i] == (uint8_t)(number + i);
            good += ok;
            if (!ok) fprintf(stderr, "frames: frame %llu damaged or out of order (got %llu)\n",
                             (unsigned long long)n, (unsigned long long)number);
            shm_sample_release(sample);
        }
        printf("received %llu, %llu intact, %llu lost\n", (unsigned long long)count, (unsigned long long)good,
               (unsigned long long)shm_subscriber_lost(subscriber));
        shm_subscriber_free(subscriber);
        if (good != count) return 1;
    }
    shm_pubsub_free(service);
    shm_node_free(node);
    return 0;
}
