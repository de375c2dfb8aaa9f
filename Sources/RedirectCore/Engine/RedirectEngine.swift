/// The datapath's decision for one queued packet: parse it, find or create its flow, and
/// rewrite it in place. One engine per datapath thread (it owns its counters); all engines
/// share the flow table.
///
/// Original-direction packets get their destination rewritten to the proxy (the kernel's
/// conntrack, which runs after the raw table, then sees client -> proxy); replies from the
/// proxy, queued after conntrack, get their source rewritten back to the original destination.
/// ICMP errors about a redirected flow (related traffic) are translated to match.
public final class RedirectEngine: Sendable {
    public let table: FlowTable
    public let counters: EngineCounters

    public init(table: FlowTable, counters: EngineCounters = EngineCounters()) {
        self.table = table
        self.counters = counters
    }

    /// Decides and, when redirecting, rewrites `bytes` in place. Allocates nothing.
    public func process(_ bytes: UnsafeMutableRawBufferPointer, metadata: PacketMetadata, rules: DatapathRules, now: UInt32) -> Verdict {
        var mark: UInt32 = 0
        return process(bytes, metadata: metadata, rules: rules, now: now, mark: &mark)
    }

    /// As above; in kernel-nat mode (`rules.kernelNAT`) a redirected flow's packet is not
    /// rewritten but gets `.acceptMarked`, with `mark` set to the mark value (inside
    /// `KernelNATMarks.mask`) of its redirect port, for the kernel's NAT rules to act on.
    public func process(
        _ bytes: UnsafeMutableRawBufferPointer, metadata: PacketMetadata, rules: DatapathRules, now: UInt32, mark: inout UInt32
    ) -> Verdict {
        counters.packets.add(1)
        counters.bytes.add(UInt64(bytes.count))
        var packet: ParsedPacket
        do {
            packet = try ParsedPacket.parse(bytes)
        } catch {
            // Neither TCP nor UDP: the rules queue no other protocol than ICMP errors, so only
            // these few packets read the IP header a second time, as an error's outer header.
            if error == .unsupportedProtocol { return processRelated(bytes, metadata: metadata, now: now) }
            return refuse(error)
        }
        let tuple = FlowTuple(proto: packet.proto, source: packet.source, destination: packet.destination)
        switch metadata.direction {
        case .original:
            let outcome = table.handleOriginal(
                tuple, tcpFlags: packet.tcpFlags, sequence: packet.proto == .tcp ? packet.tcpSequence : nil,
                length: bytes.count, now: now
            ) { tuple in
                switch rules.policy.decide(tuple, hook: metadata.hook) {
                case .redirect(let toPort):
                    guard
                        let address = rules.addresses.redirectAddress(
                            hook: metadata.hook, inputInterface: metadata.inputInterface,
                            originalDestination: tuple.destination.address)
                    else { return nil }  // refused: .noRedirectAddress
                    return .redirect(to: Endpoint(address, toPort))
                case .trackOnly:
                    return .trackOnly
                case .ignore:
                    return .ignore
                }
            }
            switch outcome {
            case .rewriteDestination(let target):
                if let marks = rules.kernelNAT {
                    // Kernel-nat mode: the kernel's NAT rewrites this packet and the rest of the flow.
                    guard let value = marks.value(for: target.port) else {
                        // A flow of a port a reload removed: its NAT rule is gone with it.
                        counters.refused(.noRedirectAddress).add(1)
                        counters.dropped.add(1)
                        return .drop
                    }
                    mark = value
                    counters.markedOriginal.add(1)
                    return .acceptMarked
                }
                do {
                    packet.clampMSS(in: bytes, checksumNotReady: metadata.checksumNotReady)
                    try packet.rewriteDestination(to: target, in: bytes, checksumNotReady: metadata.checksumNotReady)
                    return rewritten(counters.rewrittenOriginal)
                } catch {
                    return rewriteFailed(error)
                }
            case .pass:
                return accept()
            case .untracked:
                counters.untracked.add(1)
                return accept()
            case .refused(let refusal):
                // Table full with nothing evictable, the reply tuple already taken by another
                // flow, or no address to redirect to: the kernel drops such a packet too.
                counters.refused(refusal).add(1)
                counters.dropped.add(1)
                return .drop
            }
        case .reply:
            switch table.handleReply(tuple, tcpFlags: packet.tcpFlags, length: bytes.count, now: now) {
            case .rewriteSource(let original):
                do {
                    packet.clampMSS(in: bytes, checksumNotReady: metadata.checksumNotReady)
                    try packet.rewriteSource(to: original, in: bytes, checksumNotReady: metadata.checksumNotReady)
                    return rewritten(counters.rewrittenReply)
                } catch {
                    return rewriteFailed(error)
                }
            case .pass:
                return accept()
            case .untracked:
                counters.untracked.add(1)
                return accept()
            }
        }
    }

    /// A packet that is neither TCP nor UDP: an ICMP error about one of the flows is translated
    /// as the kernel's NAT translates RELATED traffic (see `FlowTable.related` for which quote
    /// each direction matches, `ICMPErrorPacket` for what is rewritten); any other error, and
    /// anything else, passes untouched; a malformed error is dropped and counted. The table is
    /// only read.
    private func processRelated(_ bytes: UnsafeMutableRawBufferPointer, metadata: PacketMetadata, now: UInt32) -> Verdict {
        var message: ICMPErrorPacket
        do {
            message = try ICMPErrorPacket.parse(bytes)
        } catch {
            return refuse(error)
        }
        switch table.related(quoted: message.quotedTuple, direction: metadata.direction, now: now) {
        case .translate(let endpoint):
            do {
                switch metadata.direction {
                case .original:
                    try message.rewriteQuotedSource(to: endpoint, in: bytes, checksumNotReady: metadata.checksumNotReady)
                case .reply:
                    try message.rewriteQuotedDestination(to: endpoint, in: bytes, checksumNotReady: metadata.checksumNotReady)
                }
                return rewritten(counters.relatedTranslated)
            } catch {
                return rewriteFailed(error)
            }
        case .notRedirected:
            counters.relatedNotRedirected.add(1)
            return accept()
        case .unmatched:
            counters.relatedUnmatched.add(1)
            return accept()
        }
    }

    /// A packet not parsed: passed untouched or dropped by its reason, and counted.
    private func refuse(_ error: PacketError) -> Verdict {
        counters.count(error)
        if error.isPassUntouched { return accept() }
        counters.dropped.add(1)
        return .drop
    }

    @inline(__always)
    private func accept() -> Verdict {
        counters.accepted.add(1)
        return .accept
    }

    @inline(__always)
    private func rewritten(_ counter: AtomicCounter) -> Verdict {
        counter.add(1)
        return .acceptModified
    }

    /// A rewrite can only fail on a family mismatch, which the policy prevents: a counted drop.
    private func rewriteFailed(_ error: PacketError) -> Verdict {
        counters.count(error)
        counters.dropped.add(1)
        return .drop
    }
}
