import Kernel
import RedirectCore
import SystemCalls

/// Interface addresses held in memory, for tests: `setAddresses` changes them and wakes
/// every monitor with the new snapshot.
public final class InMemoryAddressSource: InterfaceAddressSource, Sendable {
    private let state: Locked<(addresses: [InterfaceAddress], monitors: [InMemoryAddressMonitor])>

    public init(_ addresses: [InterfaceAddress] = []) {
        state = Locked((addresses, []))
    }

    public func addresses() throws(KernelError) -> [InterfaceAddress] {
        state.withLock { $0.addresses }
    }

    public func setAddresses(_ addresses: [InterfaceAddress]) {
        let monitors = state.withLock { state in
            state.addresses = addresses
            return state.monitors
        }
        for monitor in monitors { monitor.publish(addresses) }
    }

    public func makeMonitor() throws(KernelError) -> any InterfaceAddressMonitor {
        let monitor = try InMemoryAddressMonitor(initial: state.withLock { $0.addresses })
        state.withLock { $0.monitors.append(monitor) }
        return monitor
    }
}

final class InMemoryAddressMonitor: InterfaceAddressMonitor, @unchecked Sendable {
    private let pending: Locked<(snapshots: [[InterfaceAddress]], stopped: Bool)>
    private let changed: WakeUpChannel

    init(initial: [InterfaceAddress]) throws(KernelError) {
        pending = Locked(([initial], false))
        changed = try kernelCall { () throws(SystemCallError) in try WakeUpChannel() }
    }

    func publish(_ addresses: [InterfaceAddress]) {
        pending.withLock { $0.snapshots.append(addresses) }
        changed.signal()
    }

    func stop() {
        pending.withLock { $0.stopped = true }
        changed.signal()
    }

    func nextSnapshot() throws(KernelError) -> [InterfaceAddress]? {
        while true {
            let next = pending.withLock { state -> [InterfaceAddress]?? in
                if state.stopped { return .some(nil) }
                // Like the real monitor, a burst of changes yields only the latest snapshot.
                guard let latest = state.snapshots.last else { return nil }
                state.snapshots.removeAll()
                return .some(latest)
            }
            if let next { return next }
            _ = try kernelCall { () throws(SystemCallError) in
                try ReadinessWait.wait(for: changed.descriptor, wakeUp: nil, timeoutMilliseconds: -1)
            }
            changed.drain()
        }
    }
}
