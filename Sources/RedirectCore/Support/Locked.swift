import Synchronization

/// A value behind a lock, for shared state off the per-packet path (fakes, reload snapshots,
/// metrics, logs).
///
/// Why not `Mutex` directly: `Mutex.withLock` is always inlined and lives in the standard
/// library, which is not built with ThreadSanitizer, so TSan sees neither the lock nor a frame
/// that says one was held, and reports the protected accesses as races. Going through this
/// (not inlinable) `withLock` keeps such a frame in every stack, which
/// Tests/sanitizers/tsan.supp names; an access outside a lock is still reported.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: Mutex<Value>

    public init(_ value: Value) { mutex = Mutex(value) }

    public func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        try mutex.withLock { (value) throws(Failure) -> Result in try body(&value) }
    }
}
