import Shm

// The payload types tests and the peer program exchange across processes:
// defined once, here, so both ends always agree on their layout.

/// A request/response test request: add two numbers.
public struct AddRequest: BitwiseCopyable, Equatable {
    public var left: Int64
    public var right: Int64
    public init(left: Int64, right: Int64) {
        self.left = left
        self.right = right
    }

    /// The payload type name both ends register (`typeName:`).
    public static let typeName = "swiftshm.tests.Add"
}

/// Its answer: the sum, and which part of a streamed answer this is.
public struct AddResponse: BitwiseCopyable, Equatable {
    public var sum: Int64
    public var part: Int64
    public init(sum: Int64, part: Int64) {
        self.sum = sum
        self.part = part
    }
}

/// The request/response service the tests and the peer use.
public func addService(_ node: Node, _ name: String) throws -> RequestResponseService<AddRequest, AddResponse> {
    try node.requestResponse(name, request: AddRequest.self, response: AddResponse.self, typeName: AddRequest.typeName,
                             config: .init(maxClients: 8, maxServers: 2, queueDepth: 16))
}
