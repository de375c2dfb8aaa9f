/// The Internet checksum (RFC 1071): one's-complement sums of big-endian 16-bit words.
///
/// Sums are returned folded to 16 bits and NOT complemented; a checksum field holds the
/// complement of the sum. Every function returns the same bits a naive word-by-word
/// computation would: a folded sum of anything non-zero is in 1...0xFFFF (never the
/// "negative zero" 0x0000), so full and incremental results agree byte for byte.
public enum InternetChecksum {
    /// The one's-complement sum of `bytes` read as big-endian 16-bit words, an odd last byte
    /// padded with a zero byte. Any alignment, any length.
    public static func sum(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        // Why host-order loads: one's-complement addition commutes with byte swapping
        // (RFC 1071 2(B)), so the words are summed as they load and the folded result is
        // swapped once. Each 64-bit load is added as two 32-bit halves into 64-bit
        // accumulators whose total cannot overflow before 2^31 loads (16 GiB): no carries to
        // track in the loop. Two accumulators let consecutive loads add in parallel.
        let count = bytes.count
        var offset = 0
        var wideA: UInt64 = 0
        var wideB: UInt64 = 0
        while offset &+ 16 <= count {
            let a = bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            let b = bytes.loadUnaligned(fromByteOffset: offset &+ 8, as: UInt64.self)
            wideA &+= (a & 0xffff_ffff) &+ (a >> 32)
            wideB &+= (b & 0xffff_ffff) &+ (b >> 32)
            offset &+= 16
        }
        if offset &+ 8 <= count {
            let a = bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            wideA &+= (a & 0xffff_ffff) &+ (a >> 32)
            offset &+= 8
        }
        if offset &+ 4 <= count {
            wideB &+= UInt64(bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            offset &+= 4
        }
        if offset &+ 2 <= count {
            wideA &+= UInt64(bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
            offset &+= 2
        }
        if offset < count {
            // The odd byte is the high byte of a big-endian word whose low byte is zero.
            #if _endian(little)
                wideB &+= UInt64(bytes[offset])
            #else
                wideB &+= UInt64(bytes[offset]) << 8
            #endif
        }
        let hostOrderSum = fold(wideA &+ wideB)
        #if _endian(little)
            return hostOrderSum.byteSwapped
        #else
            return hostOrderSum
        #endif
    }

    /// Folds a wide sum of 16-bit words to 16 bits with end-around carries. A non-zero input
    /// gives a result in 1...0xFFFF.
    @inlinable
    public static func fold(_ wide: UInt64) -> UInt16 {
        var x = (wide & 0xffff_ffff) &+ (wide >> 32)
        x = (x & 0xffff) &+ (x >> 16)
        x = (x & 0xffff) &+ (x >> 16)
        x = (x & 0xffff) &+ (x >> 16)
        return UInt16(truncatingIfNeeded: x)
    }

    /// The sum of the transport pseudo-header: RFC 768/793 for IPv4 (4-byte addresses, zero,
    /// protocol, 16-bit length), RFC 8200 8.1 for IPv6 (16-byte addresses, 32-bit length, zeros,
    /// next header). Both come to the same words because `IPAddress` sums 2 or 8 words by family.
    @inlinable
    public static func pseudoHeaderSum(
        source: IPAddress, destination: IPAddress, protocolNumber: UInt8, length: Int
    ) -> UInt16 {
        let length = UInt32(truncatingIfNeeded: length)
        return fold(
            UInt64(source.checksumWordSum) &+ UInt64(destination.checksumWordSum)
                &+ UInt64(protocolNumber) &+ UInt64(length >> 16) &+ UInt64(length & 0xffff))
    }

    /// The checksum an IPv4 header should carry: over `header` (IHL * 4 bytes) with its
    /// checksum field counted as zero, whatever it holds now.
    public static func ipv4HeaderChecksum(_ header: UnsafeRawBufferPointer) -> UInt16 {
        let stored = header.loadBigEndianUInt16(at: IPv4Header.checksumOffset)
        // Adding ~stored takes the stored field back out of the sum.
        return ~fold(UInt64(sum(header)) &+ UInt64(~stored))
    }

    /// The TCP or UDP checksum `segment` should carry (before UDP's 0 -> 0xFFFF rule), with
    /// the field at `checksumOffset` counted as zero, whatever it holds now.
    public static func transportChecksum(
        segment: UnsafeRawBufferPointer, checksumOffset: Int,
        source: IPAddress, destination: IPAddress, protocolNumber: UInt8
    ) -> UInt16 {
        let stored = segment.loadBigEndianUInt16(at: checksumOffset)
        let pseudo = pseudoHeaderSum(
            source: source, destination: destination, protocolNumber: protocolNumber, length: segment.count)
        return ~fold(UInt64(pseudo) &+ UInt64(sum(segment)) &+ UInt64(~stored))
    }

    /// RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'): the checksum after data whose words summed to
    /// `oldSum` now sum to `newSum`.
    @inlinable
    public static func update(_ checksum: UInt16, oldSum: UInt16, newSum: UInt16) -> UInt16 {
        ~fold(UInt64(~checksum) &+ UInt64(~oldSum) &+ UInt64(newSum))
    }

    /// The checksum after one 16-bit word changed from `old` to `new`.
    @inlinable
    public static func update(_ checksum: UInt16, replacing old: UInt16, with new: UInt16) -> UInt16 {
        update(checksum, oldSum: old, newSum: new)
    }

    /// The checksum after one 32-bit (word-aligned) field changed from `old` to `new`.
    @inlinable
    public static func update(_ checksum: UInt16, replacing old: UInt32, with new: UInt32) -> UInt16 {
        update(
            checksum,
            oldSum: fold(UInt64(old >> 16) &+ UInt64(old & 0xffff)),
            newSum: fold(UInt64(new >> 16) &+ UInt64(new & 0xffff)))
    }

    /// The checksum after an address (4 bytes for IPv4, 16 for IPv6) changed from `old` to `new`.
    @inlinable
    public static func update(_ checksum: UInt16, replacing old: IPAddress, with new: IPAddress) -> UInt16 {
        update(
            checksum,
            oldSum: fold(UInt64(old.checksumWordSum)),
            newSum: fold(UInt64(new.checksumWordSum)))
    }
}
