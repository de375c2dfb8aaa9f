/// The answer to `LOOKUP` / `LOOKUPFD`: the original destination, or why there is none.
public enum LookupAnswer: Equatable, Sendable {
    /// `OK <orig-ip> <orig-port>`
    case original(Endpoint)
    /// `ERR NOTFOUND`: no tracked flow with that tuple.
    case notFound
    /// `ERR NOTREDIRECTED`: the flow is tracked but was not redirected (it dialled the proxy directly).
    case notRedirected
    /// `ERR EXPIRED`: the flow was tracked but has expired or been closed recently.
    case expired
    /// `ERR DENIED`: this peer may not ask.
    case denied
    /// `ERR BUSY`: the service has its maximum of clients; sent once before the connection is closed.
    case busy
    /// `ERR BADREQUEST <why>`
    case badRequest(String)

    public init(_ result: FlowLookupResult) {
        switch result {
        case .redirected(let original): self = .original(original)
        case .notRedirected: self = .notRedirected
        case .notFound: self = .notFound
        case .expired: self = .expired
        }
    }

    /// The answer as a line, newline included. IPv6 addresses are written plain.
    public var line: String {
        var bytes: [UInt8] = []
        append(to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Appends the answer line, newline included; allocates nothing when `bytes` has room.
    public func append(to bytes: inout [UInt8]) {
        func words(_ text: StaticString) {
            bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }
        switch self {
        case .original(let endpoint):
            words("OK ")
            endpoint.address.appendText(to: &bytes)
            bytes.append(UInt8(ascii: " "))
            appendDecimal(endpoint.port, to: &bytes)
        case .notFound: words("ERR NOTFOUND")
        case .notRedirected: words("ERR NOTREDIRECTED")
        case .expired: words("ERR EXPIRED")
        case .denied: words("ERR DENIED")
        case .busy: words("ERR BUSY")
        case .badRequest(let why):
            words("ERR BADREQUEST ")
            bytes.append(contentsOf: why.utf8)
        }
        bytes.append(UInt8(ascii: "\n"))
    }

    /// Parses an answer line (without its newline), for clients.
    public init?(parsing line: some StringProtocol) {
        let words = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        switch (words.first, words.count) {
        case ("OK", 3):
            guard let address = IPAddress(words[1]), let port = UInt16(words[2]) else { return nil }
            self = .original(Endpoint(address, port))
        case ("ERR", 2) where words[1] == "NOTFOUND": self = .notFound
        case ("ERR", 2) where words[1] == "NOTREDIRECTED": self = .notRedirected
        case ("ERR", 2) where words[1] == "EXPIRED": self = .expired
        case ("ERR", 2) where words[1] == "DENIED": self = .denied
        case ("ERR", 2) where words[1] == "BUSY": self = .busy
        case ("ERR", 3) where words[1] == "BADREQUEST": self = .badRequest(String(words[2]))
        default: return nil
        }
    }
}
