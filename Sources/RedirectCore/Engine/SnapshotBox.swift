/// Holds the current snapshot of something many threads read and one occasionally replaces.
/// Reading takes the lock only long enough to retain the reference.
public final class SnapshotBox<Value: AnyObject & Sendable>: Sendable {
    private let current: Locked<Value>

    public init(_ value: Value) { current = Locked(value) }

    public var value: Value { current.withLock { $0 } }

    public func replace(_ value: Value) { current.withLock { $0 = value } }

    /// Replaces the value with one derived from it, atomically with respect to other updates.
    public func update(_ transform: (Value) -> Value) { current.withLock { $0 = transform($0) } }
}
