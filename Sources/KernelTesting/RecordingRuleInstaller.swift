import Kernel
import RedirectCore

/// A rule installer that only records what it was asked to do, for tests of the daemon.
public final class RecordingRuleInstaller: RuleInstaller, Sendable {
    public enum Action: Equatable, Sendable {
        case install(RuleSetConfiguration)
        case remove
    }

    private let state = Locked<(actions: [Action], failure: KernelError?, flushed: Bool)>(([], nil, false))

    public init() {}

    /// Everything asked so far, in order.
    public var actions: [Action] { state.withLock { $0.actions } }

    /// The configuration in force: the last installed, or nil after a removal.
    public var installed: RuleSetConfiguration? {
        state.withLock { state in
            guard case .install(let configuration) = state.actions.last else { return nil }
            return configuration
        }
    }

    /// Makes every later call throw `error` (nil: succeed again).
    public func failWith(_ error: KernelError?) {
        state.withLock { $0.failure = error }
    }

    public func checkAvailable(for configuration: RuleSetConfiguration) throws(KernelError) {
        if let failure = state.withLock({ $0.failure }) { throw failure }
    }

    public func install(_ configuration: RuleSetConfiguration) throws(KernelError) {
        try configuration.validate()
        try record(.install(configuration))
    }

    public func remove() throws(KernelError) {
        try record(.remove)
    }

    /// As if a firewall reload removed the rules: `missing` reports them until the next install.
    public func simulateFlush() {
        state.withLock { $0.flushed = true }
    }

    public func missing(_ configuration: RuleSetConfiguration, orNftTable: Bool) throws(KernelError) -> [String] {
        try state.withLock { state throws(KernelError) -> [String] in
            if let failure = state.failure { throw failure }
            return state.flushed || state.actions.last != .install(configuration) ? ["recorded rules"] : []
        }
    }

    private func record(_ action: Action) throws(KernelError) {
        let failure = state.withLock { state -> KernelError? in
            if let failure = state.failure { return failure }
            state.actions.append(action)
            state.flushed = false
            return nil
        }
        if let failure { throw failure }
    }
}
