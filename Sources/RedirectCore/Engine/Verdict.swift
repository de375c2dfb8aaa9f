/// What the datapath tells the kernel about one queued packet.
public enum Verdict: UInt8, Sendable {
    /// Re-inject unchanged.
    case accept
    /// Re-inject with the bytes the engine rewrote in place (same length, never shorter).
    case acceptModified
    /// Drop (counted by reason in `EngineCounters`).
    case drop
    /// Re-inject unchanged with a new packet mark (kernel-nat mode: the kernel's NAT rules act
    /// on it; see `KernelNATMarks`). The mark travels beside the verdict.
    case acceptMarked
}
