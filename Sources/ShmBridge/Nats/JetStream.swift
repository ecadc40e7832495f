import CNats
import Synchronization

/// JetStream (NATS persistence) through nats.c: streams, asynchronous
/// publishing with de-duplication ids, durable pull consumers. Used by log
/// replication. Thread-safety: one thread at a time per object.
public final class JetStream: @unchecked Sendable {
    let context: OpaquePointer
    let connection: NatsConnection
    /// Set by nats.c's thread when an asynchronous publish failed.
    private let failures: Unmanaged<FailureFlag>

    final class FailureFlag: Sendable {
        let count = Atomic<UInt64>(0)
    }

    public init(_ connection: NatsConnection) throws(BridgeError) {
        self.connection = connection
        let flag = Unmanaged.passRetained(FailureFlag())
        var options = jsOptions()
        jsOptions_Init(&options)
        options.PublishAsync.MaxPending = 4096
        options.PublishAsync.StallWait = 5000
        options.PublishAsync.ErrHandler = { _, _, closure in
            guard let closure else { return }
            Unmanaged<FailureFlag>.fromOpaque(closure).takeUnretainedValue().count.wrappingAdd(1, ordering: .relaxed)
        }
        options.PublishAsync.ErrHandlerClosure = flag.toOpaque()
        var context: OpaquePointer?
        let status = natsConnection_JetStream(&context, connection.handle, &options)
        guard status == NATS_OK, let context else {
            flag.release()
            throw natsError("natsConnection_JetStream", status)
        }
        self.context = context
        failures = flag
    }

    deinit {
        jsCtx_Destroy(context)
        failures.release()
    }

    /// Asynchronous publishes that failed so far (the server refused or did
    /// not acknowledge them).
    public var failedPublishes: UInt64 { failures.takeUnretainedValue().count.load(ordering: .relaxed) }

    /// Creates stream `name` holding `subject` (file storage, duplicates
    /// detected for two minutes by message id) unless it exists.
    public func ensureStream(_ name: String, subject: String) throws(BridgeError) {
        var info: UnsafeMutablePointer<jsStreamInfo>?
        var code = jsErrCode(0)
        if js_GetStreamInfo(&info, context, name, nil, &code) == NATS_OK {
            jsStreamInfo_Destroy(info)
            return
        }
        let status = name.withCString { cName in
            subject.withCString { cSubject in
                var subjects: [UnsafePointer<CChar>?] = [cSubject]
                return subjects.withUnsafeMutableBufferPointer { list in
                    var config = jsStreamConfig()
                    jsStreamConfig_Init(&config)
                    config.Name = cName
                    config.Subjects = list.baseAddress
                    config.SubjectsLen = 1
                    config.Storage = js_FileStorage
                    config.Duplicates = 120_000_000_000
                    return js_AddStream(&info, context, &config, nil, &code)
                }
            }
        }
        if status == NATS_OK { jsStreamInfo_Destroy(info) }
        guard status == NATS_OK || code == JSStreamNameExistErr else {
            throw natsError("create JetStream stream \(name) (code \(code.rawValue))", status)
        }
    }

    /// The last message stored on `subject` in `stream`, or nil if none.
    public func lastMessage(stream: String, subject: String) throws(BridgeError) -> NatsMessage? {
        var message: OpaquePointer?
        var code = jsErrCode(0)
        let status = js_GetLastMsg(&message, context, stream, subject, nil, &code)
        if status == NATS_OK, let message { return NatsMessage(handle: message) }
        if code == JSNoMessageFoundErr || status == NATS_NOT_FOUND { return nil }
        throw natsError("last message of \(stream) (code \(code.rawValue))", status)
    }

    /// Publishes without waiting for the acknowledgement; `messageID` lets
    /// the server drop a duplicate (within two minutes).
    public func publishAsync(_ subject: String, headers: [(String, String)], payload: UnsafeRawBufferPointer,
                             messageID: String) throws(BridgeError) {
        var message: OpaquePointer?
        try check(natsMsg_Create(&message, subject, nil, payload.baseAddress?.assumingMemoryBound(to: CChar.self),
                                 Int32(clamping: payload.count)), "natsMsg_Create(\(subject))")
        for (key, value) in headers {
            do throws(BridgeError) { try check(natsMsgHeader_Set(message, key, value), "natsMsgHeader_Set(\(key))") } catch {
                natsMsg_Destroy(message)
                throw error
            }
        }
        let status = messageID.withCString { id in
            var options = jsPubOptions()
            jsPubOptions_Init(&options)
            options.MsgId = id
            return js_PublishMsgAsync(context, &message, &options)
        }
        if message != nil { natsMsg_Destroy(message) } // not taken: the call failed
        try check(status, "publish to JetStream on \(subject)")
    }

    /// Waits until every asynchronous publish was acknowledged (or failed).
    public func waitForAcknowledgements(timeout: Duration) throws(BridgeError) {
        var options = jsPubOptions()
        jsPubOptions_Init(&options)
        options.MaxWait = timeout.milliseconds
        try check(js_PublishAsyncComplete(context, &options), "wait for JetStream acknowledgements")
    }

    /// A durable pull consumer of `subject`: the server remembers what
    /// `durable` acknowledged, across restarts of either side.
    public func pullSubscribe(_ subject: String, durable: String) throws(BridgeError) -> PullSubscription {
        var subscription: OpaquePointer?
        var code = jsErrCode(0)
        let status = js_PullSubscribe(&subscription, context, subject, durable, nil, nil, &code)
        guard status == NATS_OK, let subscription else {
            throw natsError("durable pull subscription \(durable) on \(subject) (code \(code.rawValue))", status)
        }
        return PullSubscription(handle: subscription, jetStream: self)
    }
}

/// Messages fetched in batches and acknowledged one by one.
public final class PullSubscription: @unchecked Sendable {
    let handle: OpaquePointer
    let jetStream: JetStream

    init(handle: OpaquePointer, jetStream: JetStream) {
        self.handle = handle
        self.jetStream = jetStream
    }

    deinit { natsSubscription_Destroy(handle) }

    /// Up to `batch` messages, waiting at most `timeout` for the first;
    /// empty when none came.
    public func fetch(batch: Int, timeout: Duration) throws(BridgeError) -> [NatsMessage] {
        var list = natsMsgList()
        var code = jsErrCode(0)
        let status = natsSubscription_Fetch(&list, handle, Int32(clamping: batch), max(1, timeout.milliseconds), &code)
        if status == NATS_TIMEOUT { return [] }
        try check(status, "fetch (code \(code.rawValue))")
        var messages: [NatsMessage] = []
        for i in 0..<Int(list.Count) {
            if let message = list.Msgs[i] {
                messages.append(NatsMessage(handle: message))
                list.Msgs[i] = nil // ours now
            }
        }
        natsMsgList_Destroy(&list)
        return messages
    }

    /// Acknowledges `message` (the server then never sends it again).
    public func acknowledge(_ message: NatsMessage) throws(BridgeError) {
        try check(natsMsg_Ack(message.handle, nil), "acknowledge")
    }
}
