// The peer wire format: every message between members is one checksummed frame on a TCP stream.
// Layout (little-endian): payload length u32 | type u8 | CRC32C(type, payload) u32 | payload.
//
// A frame whose length passes `frameBytesMax` or whose checksum does not match is never delivered: the
// decoder reports corruption and the connection is dropped (the sender reconnects and Raft retransmits).
// A connection that ends mid-frame simply loses that frame; nothing partial is ever handed on.
import CairnBase

package struct PeerFrame: Sendable, Equatable {
    package var type: UInt8
    package var payload: [UInt8]

    package init(type: UInt8, payload: [UInt8]) {
        self.type = type
        self.payload = payload
    }

    package static let headerBytes = 9

    /// The frame as bytes on the wire.
    package func encoded() -> [UInt8] {
        var crc = CRC32C()
        crc.update([type])
        crc.update(payload)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.headerBytes + payload.count)
        appendLittleEndian(UInt32(payload.count), to: &bytes)
        bytes.append(type)
        appendLittleEndian(crc.value, to: &bytes)
        bytes.append(contentsOf: payload)
        return bytes
    }
}

package enum PeerFrameError: Error, Equatable, CustomStringConvertible {
    case tooLarge(bytes: Int, max: Int)
    case checksumMismatch(type: UInt8, expected: UInt32, actual: UInt32)

    package var description: String {
        switch self {
        case .tooLarge(let bytes, let max): "peer frame of \(bytes) bytes exceeds the limit of \(max)"
        case .checksumMismatch(let type, let expected, let actual):
            "peer frame of type \(type) has checksum \(actual), expected \(expected)"
        }
    }
}

/// Splits a byte stream into frames, checking each length and checksum before handing it on.
package struct PeerFrameDecoder {
    package let frameBytesMax: Int

    package init(frameBytesMax: Int) {
        self.frameBytesMax = frameBytesMax
    }

    /// The next complete frame at the start of `buffer` and the bytes it used; nil when more bytes are needed.
    package func next(_ buffer: UnsafeRawBufferPointer) throws(PeerFrameError) -> (frame: PeerFrame, consumed: Int)? {
        guard buffer.count >= PeerFrame.headerBytes else { return nil }
        let length = Int(readLittleEndianUInt32(buffer, at: 0))
        guard length <= frameBytesMax else { throw .tooLarge(bytes: length, max: frameBytesMax) }
        guard buffer.count >= PeerFrame.headerBytes + length else { return nil }
        let type = buffer[4]
        let expected = readLittleEndianUInt32(buffer, at: 5)
        let payload = Array(buffer[PeerFrame.headerBytes..<(PeerFrame.headerBytes + length)])
        var crc = CRC32C()
        crc.update([type])
        crc.update(payload)
        guard crc.value == expected else { throw .checksumMismatch(type: type, expected: expected, actual: crc.value) }
        return (PeerFrame(type: type, payload: payload), PeerFrame.headerBytes + length)
    }
}

func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
}

func readLittleEndianUInt32(_ buffer: UnsafeRawBufferPointer, at offset: Int) -> UInt32 {
    UInt32(buffer[offset]) | UInt32(buffer[offset + 1]) << 8 | UInt32(buffer[offset + 2]) << 16 | UInt32(buffer[offset + 3]) << 24
}

func readLittleEndianUInt64(_ bytes: ArraySlice<UInt8>) -> UInt64 {
    var value: UInt64 = 0
    for (shift, byte) in bytes.prefix(8).enumerated() { value |= UInt64(byte) << (8 * UInt64(shift)) }
    return value
}
