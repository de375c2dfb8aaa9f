import RedirectCore

/// What the lookup server asks of the rest of the daemon. A protocol so the server can be
/// tested against a fixed table and so it never reaches into the datapath directly.
public protocol LookupBackend: AnyObject, Sendable {
    func lookup(proto: TransportProtocol, client: Endpoint, local: Endpoint) -> LookupAnswer
    /// One line per tracked flow, without newlines (text or JSON objects).
    func flowLines(_ format: LookupRequest.OutputFormat) -> [String]
    /// Statistics as `name value` lines, or one JSON object.
    func statisticsLines(_ format: LookupRequest.OutputFormat) -> [String]
    /// `nfq-redirect <version> protocol <n>`
    var versionLine: String { get }
    /// Flow events (new, destroyed) since the last call, oldest first.
    func drainEvents() -> [FlowEvent]
}
