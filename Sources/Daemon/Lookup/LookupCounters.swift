import RedirectCore

/// What the lookup service did, for metrics and `STATS`.
public final class LookupCounters: Sendable {
    public let requests = AtomicCounter()
    public let answeredOriginal = AtomicCounter()
    public let answeredNotFound = AtomicCounter()
    public let answeredNotRedirected = AtomicCounter()
    public let answeredExpired = AtomicCounter()
    public let badRequests = AtomicCounter()
    public let deniedPeers = AtomicCounter()
    public let rejectedTooMany = AtomicCounter()
    public let droppedSlowClients = AtomicCounter()
    public let idleDisconnects = AtomicCounter()
    public let acceptErrors = AtomicCounter()
    public let clients = AtomicGauge()

    func count(_ answer: LookupAnswer) {
        switch answer {
        case .original: answeredOriginal.add(1)
        case .notFound: answeredNotFound.add(1)
        case .notRedirected: answeredNotRedirected.add(1)
        case .expired: answeredExpired.add(1)
        case .denied, .busy, .badRequest: break
        }
    }

    /// Answers by kind, as metrics label values.
    var answers: [(label: String, count: UInt64)] {
        [
            ("ok", answeredOriginal.load), ("notfound", answeredNotFound.load), ("notredirected", answeredNotRedirected.load),
            ("expired", answeredExpired.load), ("badrequest", badRequests.load),
        ]
    }
}
