// Unaligned big-endian loads and stores on raw packet bytes.
//
// Why unsafe: packet bytes arrive in a kernel-filled buffer that the datapath rewrites in
// place; copying them into Swift arrays would allocate per packet. Every caller checks the
// bounds once (the packet views validate lengths when they are created), so these accessors
// only assert in debug builds.

extension UnsafeRawBufferPointer {
    @inlinable
    public func loadBigEndianUInt16(at offset: Int) -> UInt16 {
        assert(offset >= 0 && offset + 2 <= count)
        return UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inlinable
    public func loadBigEndianUInt32(at offset: Int) -> UInt32 {
        assert(offset >= 0 && offset + 4 <= count)
        return UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    @inlinable
    public func loadBigEndianUInt64(at offset: Int) -> UInt64 {
        assert(offset >= 0 && offset + 8 <= count)
        return UInt64(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

extension UnsafeMutableRawBufferPointer {
    @inlinable
    public func loadBigEndianUInt16(at offset: Int) -> UInt16 {
        UnsafeRawBufferPointer(self).loadBigEndianUInt16(at: offset)
    }

    @inlinable
    public func storeBigEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        assert(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
    }
}
