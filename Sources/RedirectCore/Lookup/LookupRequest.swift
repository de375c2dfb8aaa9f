/// One request line of the lookup protocol (docs/lookup-protocol.md).
///
///     LOOKUP <tcp|udp> <client-ip> <client-port> <local-ip> <local-port>
///     LOOKUPFD                 (the accepted socket travels as SCM_RIGHTS with the line)
///     LIST [JSON]              STATS [JSON]              EVENTS [JSON]              VERSION
public enum LookupRequest: Equatable, Sendable {
    case lookup(proto: TransportProtocol, client: Endpoint, local: Endpoint)
    case lookupDescriptor
    case list(OutputFormat)
    case stats(OutputFormat)
    case events(OutputFormat)
    case version

    public enum OutputFormat: Equatable, Sendable {
        case text
        case json
    }

    /// The longest request line the server accepts (a LOOKUP of two full IPv6 addresses is ~110).
    public static let maximumLineLength = 512

    /// Parses one line without its terminating newline (a trailing `\r` is tolerated).
    public init(parsing line: some StringProtocol) throws(LookupRequestError) {
        var text = String(line)
        let parsed = text.withUTF8 { bytes in
            Result { () throws(LookupRequestError) in try LookupRequest(utf8: UnsafeRawBufferPointer(bytes)) }
        }
        self = try parsed.get()
    }

    /// Parses one line of raw bytes without its terminating newline (a trailing `\r` is
    /// tolerated). Allocates nothing for a valid request: the server parses every line here.
    public init(utf8 line: UnsafeRawBufferPointer) throws(LookupRequestError) {
        var bytes = line[...]
        if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
        guard bytes.count <= Self.maximumLineLength else { throw .lineTooLong }
        guard bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { throw .notPrintable }
        var words = RequestWords(bytes)
        guard let command = words.next() else { throw .empty }
        if command.equalsIgnoringCase("LOOKUP") {
            guard let proto = words.next(), let clientIP = words.next(), let clientPort = words.next(),
                let localIP = words.next(), let localPort = words.next(), words.next() == nil
            else { throw .argumentCount(command: "LOOKUP", expected: 5, got: RequestWords(bytes).count - 1) }
            let transport: TransportProtocol
            if proto.equalsIgnoringCase("tcp") {
                transport = .tcp
            } else if proto.equalsIgnoringCase("udp") {
                transport = .udp
            } else {
                throw .badProtocol(proto.text(limit: 16))
            }
            let client = try Self.endpoint(clientIP, clientPort)
            let local = try Self.endpoint(localIP, localPort)
            guard client.address.isIPv4 == local.address.isIPv4 else { throw .mixedFamilies }
            self = .lookup(proto: transport, client: client, local: local)
        } else if command.equalsIgnoringCase("LOOKUPFD") {
            try Self.noArguments(&words, command: "LOOKUPFD")
            self = .lookupDescriptor
        } else if command.equalsIgnoringCase("LIST") {
            self = .list(try Self.format(&words, command: "LIST"))
        } else if command.equalsIgnoringCase("STATS") {
            self = .stats(try Self.format(&words, command: "STATS"))
        } else if command.equalsIgnoringCase("EVENTS") {
            self = .events(try Self.format(&words, command: "EVENTS"))
        } else if command.equalsIgnoringCase("VERSION") {
            try Self.noArguments(&words, command: "VERSION")
            self = .version
        } else {
            throw .unknownCommand(command.text(limit: 32))
        }
    }

    /// The request as a line, newline included.
    public var line: String {
        switch self {
        case .lookup(let proto, let client, let local):
            "LOOKUP \(proto) \(client.address) \(client.port) \(local.address) \(local.port)\n"
        case .lookupDescriptor: "LOOKUPFD\n"
        case .list(let format): "LIST\(format == .json ? " JSON" : "")\n"
        case .stats(let format): "STATS\(format == .json ? " JSON" : "")\n"
        case .events(let format): "EVENTS\(format == .json ? " JSON" : "")\n"
        case .version: "VERSION\n"
        }
    }

    private static func endpoint(_ address: RequestWord, _ port: RequestWord) throws(LookupRequestError) -> Endpoint {
        guard let ip = IPAddress(utf8: UnsafeRawBufferPointer(rebasing: address.bytes)) else {
            throw .badAddress(address.text(limit: 64))
        }
        guard let value = port.decimalValue, value <= 65535 else { throw .badPort(port.text(limit: 16)) }
        return Endpoint(ip, UInt16(value))
    }

    private static func noArguments(_ words: inout RequestWords, command: String) throws(LookupRequestError) {
        var count = 0
        while words.next() != nil { count += 1 }
        guard count == 0 else { throw .argumentCount(command: command, expected: 0, got: count) }
    }

    private static func format(_ words: inout RequestWords, command: String) throws(LookupRequestError) -> OutputFormat {
        guard let argument = words.next() else { return .text }
        guard argument.equalsIgnoringCase("JSON"), words.next() == nil else { throw .badFormat(command: command) }
        return .json
    }
}

/// One space-separated word of a request line.
struct RequestWord: Equatable {
    let bytes: Slice<UnsafeRawBufferPointer>

    static func == (lhs: RequestWord, rhs: RequestWord) -> Bool { lhs.bytes.elementsEqual(rhs.bytes) }

    /// ASCII comparison ignoring case; `word` is upper or lower case ASCII.
    func equalsIgnoringCase(_ word: StaticString) -> Bool {
        guard bytes.count == word.utf8CodeUnitCount else { return false }
        return zip(bytes, UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount))
            .allSatisfy { $0 | 0x20 == $1 | 0x20 }
    }

    /// The value of 1-5 decimal digits, or nil.
    var decimalValue: Int? {
        guard (1...5).contains(bytes.count) else { return nil }
        var value = 0
        for byte in bytes {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    /// The word as text for an error message, cut to `limit` bytes.
    func text(limit: Int) -> String { String(decoding: bytes.prefix(limit), as: UTF8.self) }
}

/// The words of a request line, separated by one or more spaces.
struct RequestWords: IteratorProtocol {
    private var rest: Slice<UnsafeRawBufferPointer>

    init(_ line: Slice<UnsafeRawBufferPointer>) { rest = line }

    mutating func next() -> RequestWord? {
        guard let start = rest.firstIndex(where: { $0 != UInt8(ascii: " ") }) else { return nil }
        let end = rest[start...].firstIndex(of: UInt8(ascii: " ")) ?? rest.endIndex
        defer { rest = rest[end...] }
        return RequestWord(bytes: rest[start..<end])
    }

    /// How many words are left (consumes a copy).
    var count: Int {
        var copy = self
        var count = 0
        while copy.next() != nil { count += 1 }
        return count
    }
}

/// Why a request line was refused; its description is the `<why>` of `ERR BADREQUEST <why>`.
public enum LookupRequestError: Error, Equatable, CustomStringConvertible {
    case empty
    case lineTooLong
    case notPrintable
    case unknownCommand(String)
    case argumentCount(command: String, expected: Int, got: Int)
    case badProtocol(String)
    case badAddress(String)
    case badPort(String)
    case mixedFamilies
    case badFormat(command: String)

    public var description: String {
        switch self {
        case .empty: "empty request"
        case .lineTooLong: "line longer than \(LookupRequest.maximumLineLength) bytes"
        case .notPrintable: "request contains non-printable bytes"
        case .unknownCommand(let command): "unknown command \(command)"
        case .argumentCount(let command, let expected, let got): "\(command) takes \(expected) arguments, got \(got)"
        case .badProtocol(let name): "protocol \(name) is not tcp or udp"
        case .badAddress(let text): "\(text) is not an IP address"
        case .badPort(let text): "\(text) is not a port"
        case .mixedFamilies: "client and local addresses are of different families"
        case .badFormat(let command): "\(command) takes no argument or JSON"
        }
    }
}
