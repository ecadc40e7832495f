import Shm

/// The payload of publish/subscribe tests and of the peer processes they
/// spawn (one declaration: the type name is what makes a payload type the
/// same across processes). `check` lets a reader tell a sample that was
/// overwritten while it read it.
public struct TestSample: BitwiseCopyable, Equatable, Sendable {
    public var producer: UInt32
    public var check: UInt32
    public var sequence: UInt64

    public init(producer: UInt32, sequence: UInt64) {
        self.producer = producer
        self.sequence = sequence
        self.check = TestSample.checksum(producer, sequence)
    }

    public static func checksum(_ producer: UInt32, _ sequence: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: sequence &* 0x9e37_79b9_7f4a_7c15 >> 29) ^ producer
    }

    public var isValid: Bool { check == TestSample.checksum(producer, sequence) }
    public static let typeName = "swiftshm.tests.TestSample"
}

/// The service the publish/subscribe process tests and peers share.
public func testService(_ node: Node, _ name: String, buffer: Int = 64, history: Int = 0,
                        overflow: OverflowPolicy = .block) throws -> PublishSubscribeService<TestSample> {
    try node.publishSubscribe(name, of: TestSample.self, typeName: TestSample.typeName,
                              config: .init(maxPublishers: 4, maxSubscribers: 8, subscriberBufferSize: buffer, historySize: history,
                                            overflow: overflow))
}
