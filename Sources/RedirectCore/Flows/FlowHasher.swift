/// The flow table's keyed hash: a per-table random key, and a multiply-fold mix (the
/// wyhash/MUM construction: one 64x64->128-bit multiply, high half xor low half).
///
/// Why not `Hasher`: measured in a release build on the 2-core development VM, both hashes a
/// packet needs cost about 5 ns here and about 90 ns through two `Hasher`s (SipHash-1-3 with
/// per-call setup and finalisation). Why keyed at all: the client endpoint
/// is attacker-chosen (spoofed SYN floods), and with a public function an attacker could aim
/// every flow at one shard and one probe chain. With a secret 512-bit key the bucket of a
/// tuple cannot be predicted. This is not a cryptographic PRF; it is the same trade the kernel
/// makes with its boot-time-seeded jhash/siphash for conntrack buckets.
struct FlowHasher: Sendable {
    private let k0, k1, k2, k3, k4, k5, k6, k7: UInt64

    init(seed: UInt64) {
        // SplitMix64 spreads one seed into eight independent-looking key words.
        var state = seed
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        (k0, k1, k2, k3) = (next(), next(), next(), next())
        (k4, k5, k6, k7) = (next(), next(), next(), next())
    }

    @inline(__always)
    private static func fold(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    /// Hash of (protocol, client endpoint): chooses the shard, and seeds the tuple hashes, so
    /// both directions of a flow and a proxy's lookup land on the same shard.
    @inline(__always)
    func clientHash(proto: TransportProtocol, client: Endpoint) -> UInt64 {
        let address = Self.fold(client.address.high ^ k0, client.address.low ^ k1)
        return Self.fold(address ^ k2, (UInt64(client.port) | UInt64(proto.rawValue) << 16) ^ k3)
    }

    /// Hash of a whole tuple, given its client hash and its other endpoint (the original
    /// destination for the original index, the reply source for the reply index).
    @inline(__always)
    func tupleHash(clientHash: UInt64, other: Endpoint) -> UInt32 {
        let address = Self.fold(other.address.high ^ k4, other.address.low ^ k5)
        let mixed = Self.fold(address ^ clientHash ^ k6, UInt64(other.port) ^ k7)
        return UInt32(truncatingIfNeeded: mixed ^ (mixed >> 32))
    }
}
