/// The sequence numbers one TCP segment occupies (RFC 9293 3.4): from its sequence number to one
/// past its last data byte, SYN and FIN counting one each.
public struct TCPSequenceSpan: Hashable, Sendable {
    public var start: UInt32
    public var end: UInt32

    public init(start: UInt32, end: UInt32) {
        self.start = start
        self.end = end
    }
}
