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
        var text = Substring(line)
        if text.hasSuffix("\r") { text = text.dropLast() }
        guard text.utf8.count <= Self.maximumLineLength else { throw .lineTooLong }
        guard text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) else { throw .notPrintable }
        let words = text.split(separator: " ", omittingEmptySubsequences: true)
        guard let command = words.first else { throw .empty }
        let arguments = words.dropFirst()
        switch command.uppercased() {
        case "LOOKUP":
            guard arguments.count == 5 else { throw .argumentCount(command: "LOOKUP", expected: 5, got: arguments.count) }
            let a = Array(arguments)
            guard let proto = TransportProtocol(name: a[0]) else { throw .badProtocol(String(a[0])) }
            let client = try Self.endpoint(a[1], a[2])
            let local = try Self.endpoint(a[3], a[4])
            guard client.address.isIPv4 == local.address.isIPv4 else { throw .mixedFamilies }
            self = .lookup(proto: proto, client: client, local: local)
        case "LOOKUPFD":
            guard arguments.isEmpty else { throw .argumentCount(command: "LOOKUPFD", expected: 0, got: arguments.count) }
            self = .lookupDescriptor
        case "LIST": self = .list(try Self.format(arguments, command: "LIST"))
        case "STATS": self = .stats(try Self.format(arguments, command: "STATS"))
        case "EVENTS": self = .events(try Self.format(arguments, command: "EVENTS"))
        case "VERSION":
            guard arguments.isEmpty else { throw .argumentCount(command: "VERSION", expected: 0, got: arguments.count) }
            self = .version
        default:
            throw .unknownCommand(String(command.prefix(32)))
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

    private static func endpoint(_ address: Substring, _ port: Substring) throws(LookupRequestError) -> Endpoint {
        guard let ip = IPAddress(address) else { throw .badAddress(String(address.prefix(64))) }
        guard port.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(port), (0...65535).contains(value)
        else { throw .badPort(String(port.prefix(16))) }
        return Endpoint(ip, UInt16(value))
    }

    private static func format(_ arguments: ArraySlice<Substring>, command: String) throws(LookupRequestError) -> OutputFormat {
        switch arguments.count {
        case 0: return .text
        case 1 where arguments.first!.uppercased() == "JSON": return .json
        default: throw .badFormat(command: command)
        }
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
