// Little-endian byte writing and checked reading for every binary format Cairn defines (log payloads, peer messages).
// A reader never hands out bytes it does not have: a short buffer is an error, never a crash or a guess.

package struct ByteWriter: Sendable {
    package private(set) var bytes: [UInt8] = []

    package init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    package mutating func u8(_ value: UInt8) { bytes.append(value) }
    package mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    package mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) } }
    /// A u32 length, then the bytes.
    package mutating func lengthPrefixed(_ value: some Collection<UInt8>) {
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }
    package mutating func raw(_ value: some Sequence<UInt8>) { bytes.append(contentsOf: value) }
}

package struct ByteReaderError: Error, Equatable, CustomStringConvertible {
    package var offset: Int
    package var wanted: Int
    package var description: String { "truncated: \(wanted) bytes wanted at offset \(offset)" }
}

package struct ByteReader {
    private let bytes: [UInt8]
    package private(set) var offset = 0

    package init(_ bytes: [UInt8]) { self.bytes = bytes }

    package var remaining: Int { bytes.count - offset }
    package var isAtEnd: Bool { offset == bytes.count }

    package mutating func take(_ count: Int) throws(ByteReaderError) -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else { throw ByteReaderError(offset: offset, wanted: count) }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    package mutating func u8() throws(ByteReaderError) -> UInt8 { try take(1).first! }
    package mutating func u32() throws(ByteReaderError) -> UInt32 { UInt32(truncatingIfNeeded: try integer(4)) }
    package mutating func u64() throws(ByteReaderError) -> UInt64 { try integer(8) }
    package mutating func lengthPrefixed() throws(ByteReaderError) -> [UInt8] { Array(try take(Int(try u32()))) }
    /// Everything not yet read.
    package mutating func rest() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }

    private mutating func integer(_ count: Int) throws(ByteReaderError) -> UInt64 {
        try take(count).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// A member or cluster ID as etcd prints it: lowercase hexadecimal without leading zeros.
package func hex(_ id: UInt64) -> String { String(id, radix: 16) }
