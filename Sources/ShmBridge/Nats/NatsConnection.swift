import CNats
import ShmSystem
import Synchronization

/// One connection to a NATS server through the official C client (nats.c):
/// the only place ShmBridge calls it. Reconnects on its own, with
/// exponential back-off (50 ms doubling to 2 s) for as long as it lives;
/// messages published while disconnected wait in nats.c's reconnect buffer
/// (8 MiB here) and publishing fails with `.nats` once it is full.
///
/// Thread-safety: nats.c connections are thread-safe; so is this wrapper.
public final class NatsConnection: @unchecked Sendable {
    let handle: OpaquePointer
    /// Handlers of callback subscriptions, released after the connection is
    /// destroyed (nats.c may still be delivering until then).
    private let handlers = Mutex<[CallbackSubscription]>([])

    struct CallbackSubscription: @unchecked Sendable {
        let handler: Unmanaged<MessageHandler>
        let subscription: OpaquePointer
    }
    /// The URL it was given (servers are tried in that order).
    public let url: String

    /// Connects to `url` ("nats://host:port", several comma-separated).
    ///
    /// - Parameters:
    ///   - url: "nats://host:port", several comma-separated.
    ///   - name: shown by the server (`/connz`).
    ///   - echo: false (default) keeps the server from sending this
    ///     connection's own messages back to its subscriptions.
    ///   - waitForServer: true keeps trying in the background when no server
    ///     answers yet (publishes are buffered); false fails at once.
    ///   - sendImmediately: true writes each message to the socket at once
    ///     (`natsOptions_SetSendAsap`: lowest latency, a syscall per message);
    ///     false (nats.c's default) lets its flusher thread batch writes,
    ///     which adds up to about a millisecond.
    /// - Throws: `.nats` naming the call and nats.c's status.
    public init(url: String, name: String, echo: Bool = false, waitForServer: Bool = true,
                sendImmediately: Bool = false) throws(BridgeError) {
        self.url = url
        var options: OpaquePointer?
        try check(natsOptions_Create(&options), "natsOptions_Create")
        defer { natsOptions_Destroy(options) }
        try check(natsOptions_SetURL(options, url), "natsOptions_SetURL(\(url))")
        try check(natsOptions_SetName(options, name), "natsOptions_SetName")
        try check(natsOptions_SetNoEcho(options, !echo), "natsOptions_SetNoEcho")
        try check(natsOptions_SetTimeout(options, 2000), "natsOptions_SetTimeout")
        try check(natsOptions_SetMaxReconnect(options, -1), "natsOptions_SetMaxReconnect")
        try check(natsOptions_SetCustomReconnectDelay(options, { _, attempts, _ in
            // Exponential back-off: 50 ms, 100 ms, … capped at 2 s (ms).
            Int64(min(2000, 50 << min(6, max(0, Int(attempts) - 1))))
        }, nil), "natsOptions_SetCustomReconnectDelay")
        try check(natsOptions_SetReconnectBufSize(options, 8 << 20), "natsOptions_SetReconnectBufSize")
        try check(natsOptions_SetSendAsap(options, sendImmediately), "natsOptions_SetSendAsap")
        // Operator events (ShmLogging, swift-metrics); nats.c calls these on its own thread.
        try check(natsOptions_SetDisconnectedCB(options, { _, _ in
            Diagnostics.notice("disconnected from NATS; reconnecting (messages wait in the reconnect buffer)")
            Diagnostics.count("shm_bridge_disconnects_total")
        }, nil), "natsOptions_SetDisconnectedCB")
        try check(natsOptions_SetReconnectedCB(options, { connection, _ in
            var url = [CChar](repeating: 0, count: 256)
            _ = natsConnection_GetConnectedUrl(connection, &url, url.count)
            let text = String(decoding: url.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            Diagnostics.notice("reconnected to NATS", ["url": text])
            Diagnostics.count("shm_bridge_reconnects_total")
        }, nil), "natsOptions_SetReconnectedCB")
        if waitForServer {
            try check(natsOptions_SetRetryOnFailedConnect(options, true, nil, nil), "natsOptions_SetRetryOnFailedConnect")
        }
        var connection: OpaquePointer?
        let status = natsConnection_Connect(&connection, options)
        guard status == NATS_OK || (waitForServer && status == NATS_NOT_YET_CONNECTED), let connection else {
            throw natsError("natsConnection_Connect(\(url))", status)
        }
        handle = connection
    }

    deinit {
        natsConnection_Close(handle)
        natsConnection_Destroy(handle)
        for entry in handlers.withLock({ $0 }) {
            natsSubscription_Destroy(entry.subscription)
            entry.handler.release()
        }
    }

    /// Connected now (not connecting, reconnecting or closed).
    public var isConnected: Bool { natsConnection_Status(handle) == NATS_CONN_STATUS_CONNECTED }

    /// The server's largest accepted message (payload and headers), bytes;
    /// 0 until connected.
    public var maxPayload: Int { Int(natsConnection_GetMaxPayload(handle)) }

    /// Publishes `payload` on `subject` with `headers` (nats.c copies it;
    /// delivery is asynchronous). `reply`: the subject answers go to.
    public func publish(_ subject: String, reply: String? = nil, headers: [(String, String)] = [],
                        payload: UnsafeRawBufferPointer) throws(BridgeError) {
        guard payload.count <= Int(Int32.max) else {
            throw .invalidConfiguration("a message of \(payload.count) bytes")
        }
        var message: OpaquePointer?
        try check(natsMsg_Create(&message, subject, reply, payload.baseAddress?.assumingMemoryBound(to: CChar.self),
                                 Int32(payload.count)), "natsMsg_Create(\(subject))")
        defer { natsMsg_Destroy(message) }
        for (key, value) in headers { try check(natsMsgHeader_Set(message, key, value), "natsMsgHeader_Set(\(key))") }
        try check(natsConnection_PublishMsg(handle, message), "publish on \(subject)")
    }

    /// Publishes `payload` on the template's subject with its headers and
    /// `key: value` (a per-message header, NUL-terminated) — no Swift
    /// string is converted per message (the bridge's per-sample path).
    public func publish(_ template: NatsMessageTemplate, adding key: [CChar], value: UnsafePointer<CChar>,
                        payload: UnsafeRawBufferPointer) throws(BridgeError) {
        guard payload.count <= Int(Int32.max) else {
            throw .invalidConfiguration("a message of \(payload.count) bytes")
        }
        var message: OpaquePointer?
        try check(natsMsg_Create(&message, template.subject, nil, payload.baseAddress?.assumingMemoryBound(to: CChar.self),
                                 Int32(payload.count)), "natsMsg_Create(\(template.subjectText))")
        defer { natsMsg_Destroy(message) }
        for (name, text) in template.headers { try check(natsMsgHeader_Set(message, name, text), "natsMsgHeader_Set") }
        try check(natsMsgHeader_Set(message, key, value), "natsMsgHeader_Set")
        try check(natsConnection_PublishMsg(handle, message), "publish on \(template.subjectText)")
    }

    /// Sends what is buffered and waits for the server's acknowledgement.
    public func flush(timeout: Duration = .seconds(5)) throws(BridgeError) {
        try check(natsConnection_FlushTimeout(handle, timeout.milliseconds), "flush")
    }

    /// A subscription read with `next(timeout:)` (no callback thread).
    /// `subject` may hold wildcards (`*` one token, `>` the rest).
    public func subscribe(_ subject: String) throws(BridgeError) -> NatsSubscription {
        var subscription: OpaquePointer?
        try check(natsConnection_SubscribeSync(&subscription, handle, subject), "subscribe to \(subject)")
        return NatsSubscription(handle: subscription!, connection: self)
    }

    /// A subscription whose messages `handler` gets on a thread of nats.c's
    /// (one per subscription: messages of one subscription are handled one
    /// at a time, in order). Lives as long as the connection.
    public func subscribe(_ subject: String, handler: @escaping @Sendable (NatsMessage) -> Void) throws(BridgeError) {
        let box = Unmanaged.passRetained(MessageHandler(handler))
        var subscription: OpaquePointer?
        let status = natsConnection_Subscribe(&subscription, handle, subject, { _, _, message, closure in
            guard let message, let closure else { return }
            Unmanaged<MessageHandler>.fromOpaque(closure).takeUnretainedValue().body(NatsMessage(handle: message))
        }, box.toOpaque())
        guard status == NATS_OK else {
            box.release()
            throw natsError("subscribe to \(subject)", status)
        }
        let entry = CallbackSubscription(handler: box, subscription: subscription!)
        handlers.withLock { $0.append(entry) }
    }

    /// A new unique inbox subject (for replies).
    public func newInbox() throws(BridgeError) -> String {
        var inbox: UnsafeMutablePointer<natsInbox>?
        try check(natsInbox_Create(&inbox), "natsInbox_Create")
        defer { natsInbox_Destroy(inbox) }
        return String(cString: inbox!)
    }
}

final class MessageHandler: Sendable {
    let body: @Sendable (NatsMessage) -> Void
    init(_ body: @escaping @Sendable (NatsMessage) -> Void) { self.body = body }
}

/// A synchronous subscription: messages wait in nats.c's pending queue
/// (bounded: see `setPendingLimits`; past it the server's messages are
/// dropped and counted in `dropped`) until `next` takes them.
public final class NatsSubscription: @unchecked Sendable {
    let handle: OpaquePointer
    /// Keeps the connection open while the subscription lives.
    let connection: NatsConnection

    init(handle: OpaquePointer, connection: NatsConnection) {
        self.handle = handle
        self.connection = connection
    }

    deinit {
        natsSubscription_Unsubscribe(handle)
        natsSubscription_Destroy(handle)
    }

    /// The next message, or nil if none came within `timeout`.
    public func next(timeout: Duration) throws(BridgeError) -> NatsMessage? {
        var message: OpaquePointer?
        let status = natsSubscription_NextMsg(&message, handle, max(1, timeout.milliseconds))
        if status == NATS_TIMEOUT { return nil }
        // A slow consumer: nats.c dropped messages; `dropped` counts them.
        if status == NATS_SLOW_CONSUMER { return nil }
        try check(status, "natsSubscription_NextMsg")
        return NatsMessage(handle: message!)
    }

    /// Bounds the messages waiting here: `messages` and `bytes` (-1: no limit).
    public func setPendingLimits(messages: Int, bytes: Int) throws(BridgeError) {
        try check(natsSubscription_SetPendingLimits(handle, Int32(clamping: messages), Int32(clamping: bytes)), "set pending limits")
    }

    /// Messages nats.c dropped because they arrived faster than `next` took them.
    public var dropped: Int64 {
        var count: Int64 = 0
        _ = natsSubscription_GetDropped(handle, &count)
        return count
    }
}

/// A received message; its bytes live as long as it does.
public final class NatsMessage: @unchecked Sendable {
    let handle: OpaquePointer

    init(handle: OpaquePointer) { self.handle = handle }
    deinit { natsMsg_Destroy(handle) }

    public var subject: String { String(cString: natsMsg_GetSubject(handle)) }
    public var reply: String? { natsMsg_GetReply(handle).map { String(cString: $0) } }

    /// The payload (valid while this message lives).
    public var data: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: natsMsg_GetData(handle), count: Int(natsMsg_GetDataLength(handle)))
    }

    /// The subject's bytes (no NUL), valid while this message lives.
    var subjectBytes: UnsafeBufferPointer<UInt8> { HeaderText.bytes(natsMsg_GetSubject(handle)) }

    /// Whether the subject is exactly `expected`, byte for byte (`String ==`
    /// would take canonically equivalent Unicode for equal: a subject
    /// "…caf\u{301}" must not pass for service "café").
    func subjectIs(_ expected: String) -> Bool {
        var expected = expected
        return expected.withUTF8 { subjectBytes.elementsEqual($0) }
    }

    /// The bytes of header `key`'s value (no NUL), valid while this message
    /// lives; nil if absent. No String is made (the per-sample path).
    func headerBytes(_ key: String) -> UnsafeBufferPointer<UInt8>? {
        var value: UnsafePointer<CChar>?
        guard natsMsgHeader_Get(handle, key, &value) == NATS_OK, let value else { return nil }
        return HeaderText.bytes(value)
    }

    /// The value of header `key`, or nil.
    public func header(_ key: String) -> String? {
        headerBytes(key).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// A subject and the headers every message on it carries, made C strings
/// once (see `NatsConnection.publish(_:adding:value:payload:)`).
public struct NatsMessageTemplate: Sendable {
    let subject: [CChar]
    let headers: [(name: [CChar], value: [CChar])]
    let subjectText: String

    public init(subject: String, headers: [(String, String)]) {
        self.subject = Array(subject.utf8CString)
        self.headers = headers.map { (Array($0.0.utf8CString), Array($0.1.utf8CString)) }
        subjectText = subject
    }
}

@inline(__always)
func check(_ status: natsStatus, _ operation: @autoclosure () -> String) throws(BridgeError) {
    guard status == NATS_OK else { throw natsError(operation(), status) }
}

func natsError(_ operation: String, _ status: natsStatus) -> BridgeError {
    .nats(operation: operation, status: Int32(bitPattern: status.rawValue), text: String(cString: natsStatus_GetText(status)))
}

extension Duration {
    /// Whole milliseconds (at least 0), for nats.c's timeouts.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return max(0, seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }
}
