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
        switch self {
        case .original(let endpoint): "OK \(endpoint.address) \(endpoint.port)\n"
        case .notFound: "ERR NOTFOUND\n"
        case .notRedirected: "ERR NOTREDIRECTED\n"
        case .expired: "ERR EXPIRED\n"
        case .denied: "ERR DENIED\n"
        case .badRequest(let why): "ERR BADREQUEST \(why)\n"
        }
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
        case ("ERR", 3) where words[1] == "BADREQUEST": self = .badRequest(String(words[2]))
        default: return nil
        }
    }
}
