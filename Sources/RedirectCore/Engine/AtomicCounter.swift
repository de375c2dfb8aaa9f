import Synchronization

/// A monotonically increasing count written by one or more threads and read by the metrics
/// exporter. Relaxed ordering: counts need no ordering against anything else.
public final class AtomicCounter: Sendable {
    private let value = Atomic<UInt64>(0)

    public init() {}

    public func add(_ amount: UInt64) {
        value.wrappingAdd(amount, ordering: .relaxed)
    }

    public var load: UInt64 { value.load(ordering: .relaxed) }
}

/// A value that goes up and down (connected clients, table size).
public final class AtomicGauge: Sendable {
    private let value = Atomic<Int64>(0)

    public init() {}

    public func add(_ amount: Int64) { value.wrappingAdd(amount, ordering: .relaxed) }
    public func set(_ amount: Int64) { value.store(amount, ordering: .relaxed) }
    public var load: Int64 { value.load(ordering: .relaxed) }
}
