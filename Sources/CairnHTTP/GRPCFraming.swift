// gRPC over HTTP/2, the pure parts: the 5-byte message prefix (compressed flag, big-endian length) read from body
// pieces that need not align with messages, gzip per message, `grpc-timeout`, `grpc-message` percent-encoding, codes.

/// A call's outcome as gRPC carries it in `grpc-status` and `grpc-message`.
package struct GRPCStatus: Error, Equatable, Sendable {
    package var code: Int
    package var message: String

    package init(_ code: Int, _ message: String) {
        self.code = code
        self.message = message
    }

    package static let ok = GRPCStatus(0, "")
    // gRPC's codes used by the transport itself.
    package static let canceledCode = 1, deadlineExceededCode = 4, resourceExhaustedCode = 8
    package static let unimplementedCode = 12, internalCode = 13, unavailableCode = 14
}

/// Message compression a call uses (`grpc-encoding`).
package enum GRPCEncoding: Sendable, Equatable {
    case identity, gzip

    /// nil for an encoding this server does not have (the call is then refused with UNIMPLEMENTED).
    package init?(header: String?) {
        switch header?.lowercased() {
        case nil, "identity": self = .identity
        case "gzip": self = .gzip
        default: return nil
        }
    }
}

/// Splits a request body into messages. Bytes come in pieces as they arrive; a message is handed out once whole.
/// At most one message (its prefix announces its length, refused past `messageBytesMax`) plus one piece is held.
package struct GRPCMessageReader {
    package let messageBytesMax: Int
    package let encoding: GRPCEncoding
    private var buffer: [UInt8] = []
    private var start = 0

    package init(messageBytesMax: Int, encoding: GRPCEncoding) {
        self.messageBytesMax = messageBytesMax
        self.encoding = encoding
    }

    package mutating func append(_ bytes: [UInt8]) {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 64 * 1024, start > buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Bytes of an incomplete message held (at the end of the body, more than zero means it was cut short).
    package var pendingBytes: Int { buffer.count - start }

    /// The next whole message, decompressed; nil until one has arrived whole. A refused message throws gRPC's status
    /// (grpc-go's words), and the reader is then of no further use.
    package mutating func next() throws(GRPCStatus) -> [UInt8]? {
        guard buffer.count - start >= 5 else { return nil }
        let flag = buffer[start]
        var length = 0
        for index in 1...4 { length = length << 8 | Int(buffer[start + index]) }
        guard flag <= 1 else {
            throw GRPCStatus(GRPCStatus.internalCode, "grpc: received unexpected payload format \(flag)")
        }
        if flag == 1, encoding == .identity {
            throw GRPCStatus(GRPCStatus.internalCode, "grpc: compressed flag set with identity or empty encoding")
        }
        guard length <= messageBytesMax else {
            throw GRPCStatus(GRPCStatus.resourceExhaustedCode, "grpc: received message larger than max (\(length) vs. \(messageBytesMax))")
        }
        guard buffer.count - start - 5 >= length else { return nil }
        let payload = Array(buffer[(start + 5)..<(start + 5 + length)])
        start += 5 + length
        guard flag == 1 else { return payload }
        return try Self.inflate(payload, bytesMax: messageBytesMax)
    }

    private static func inflate(_ payload: [UInt8], bytesMax: Int) throws(GRPCStatus) -> [UInt8] {
        let inflater = GzipDecompressor(outputBytesMax: bytesMax)
        let plain: [UInt8]
        do { plain = try inflater.decompress(payload[...]) } catch {
            if error == .tooLarge {
                throw GRPCStatus(GRPCStatus.resourceExhaustedCode, "grpc: received message after decompression larger than max (\(bytesMax))")
            }
            throw GRPCStatus(GRPCStatus.internalCode, "grpc: failed to decompress the received message: gzip: invalid header")
        }
        guard inflater.isFinished else {
            throw GRPCStatus(GRPCStatus.internalCode, "grpc: failed to decompress the received message: unexpected EOF")
        }
        return plain
    }
}

package enum GRPCFraming {
    /// One message with its prefix, gzip-compressed when the call's encoding is gzip.
    package static func frame(_ message: [UInt8], encoding: GRPCEncoding = .identity) -> [UInt8] {
        let payload = encoding == .gzip ? GzipCompressor().compress(message, finish: true) : message
        var framed: [UInt8] = []
        framed.reserveCapacity(5 + payload.count)
        framed.append(encoding == .gzip ? 1 : 0)
        let length = UInt32(truncatingIfNeeded: payload.count)
        framed.append(contentsOf: [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)])
        framed.append(contentsOf: payload)
        return framed
    }

    /// `grpc-timeout` (1 to 8 digits and a unit: H, M, S, m, u, n) in nanoseconds, at most Int64.max; nil if malformed.
    package static func timeoutNanoseconds(_ header: String) -> Int64? {
        let bytes = Array(header.utf8)
        guard bytes.count >= 2, bytes.count <= 9, let unit = bytes.last else { return nil }
        var value: Int64 = 0
        for digit in bytes.dropLast() {
            guard digit >= 0x30, digit <= 0x39 else { return nil }
            value = value * 10 + Int64(digit - 0x30)
        }
        let scale: Int64
        switch unit {
        case UInt8(ascii: "H"): scale = 3_600_000_000_000
        case UInt8(ascii: "M"): scale = 60_000_000_000
        case UInt8(ascii: "S"): scale = 1_000_000_000
        case UInt8(ascii: "m"): scale = 1_000_000
        case UInt8(ascii: "u"): scale = 1_000
        case UInt8(ascii: "n"): scale = 1
        default: return nil
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: scale)
        return overflow ? Int64.max : product
    }

    /// `grpc-message` as the spec wants it: bytes outside printable ASCII, and `%`, percent-encoded (UTF-8).
    package static func percentEncoded(_ message: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in message.utf8 {
            if byte >= 0x20, byte <= 0x7E, byte != UInt8(ascii: "%") {
                out.append(byte)
            } else {
                out.append(contentsOf: [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Whether a request is gRPC: `content-type` `application/grpc`, alone or with a `+` or `;` suffix.
    package static func isGRPC(contentType: String?) -> Bool {
        guard let type = contentType?.lowercased(), type.hasPrefix("application/grpc") else { return false }
        let rest = type.dropFirst("application/grpc".count)
        return rest.isEmpty || rest.hasPrefix("+") || rest.hasPrefix(";")
    }
}
