// The log's encoding of a key-space command: compact, versioned by its first byte, every length checked on read.
// Replicas and restarts decode exactly what was written, so applying it again gives the same result.

package enum CommandDecodingError: Error, Equatable {
    case truncated
    case unknownVersion(UInt8)
    case unknownMethod(UInt8)
}

extension StoreCommand {
    static let encodingVersion: UInt8 = 1

    /// version u8 | method u8 | flags u8 (dir 1, recursive 2, refresh 4, TTL 8) | prevExist u8 (0 unset, 1 false, 2 true)
    /// | prevIndex u64 | expiration i64 (with flag 8: the relative TTL in nanoseconds) | path, value, prevValue (each
    /// u32 length + bytes: the path's bytes as the client sent them, the others UTF-8).
    package func encoded() -> [UInt8] {
        var bytes: [UInt8] = [Self.encodingVersion]
        let methods: [Method] = [.put, .post, .delete, .expire]
        bytes.append(UInt8(methods.firstIndex(of: method)!))
        bytes.append((dir ? 1 : 0) | (recursive ? 2 : 0) | (refresh ? 4 : 0) | (ttlNanos != nil ? 8 : 0))
        bytes.append(prevExist.map { $0 ? 2 : 1 } ?? 0)
        withUnsafeBytes(of: prevIndex.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: (ttlNanos ?? expiration).littleEndian) { bytes.append(contentsOf: $0) }
        for field in [path.bytes, Array(value.utf8), Array(prevValue.utf8)] {
            withUnsafeBytes(of: UInt32(field.count).littleEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: field)
        }
        return bytes
    }

    package init(decoding bytes: [UInt8]) throws(CommandDecodingError) {
        var offset = 0
        func take(_ count: Int) throws(CommandDecodingError) -> ArraySlice<UInt8> {
            guard count >= 0, bytes.count - offset >= count else { throw .truncated }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }
        func integer(_ count: Int) throws(CommandDecodingError) -> UInt64 {
            try take(count).reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        let version = try take(1).first!
        guard version == Self.encodingVersion else { throw .unknownVersion(version) }
        let methodCode = try take(1).first!
        let methods: [Method] = [.put, .post, .delete, .expire]
        guard Int(methodCode) < methods.count else { throw .unknownMethod(methodCode) }
        self.init(method: methods[Int(methodCode)])
        let flags = try take(1).first!
        dir = flags & 1 != 0
        recursive = flags & 2 != 0
        refresh = flags & 4 != 0
        let exist = try take(1).first!
        prevExist = exist == 0 ? nil : exist == 2
        prevIndex = try integer(8)
        let time = Int64(bitPattern: try integer(8))
        if flags & 8 != 0 { ttlNanos = time } else { expiration = time }
        func field() throws(CommandDecodingError) -> ArraySlice<UInt8> {
            try take(Int(try integer(4)))
        }
        func text() throws(CommandDecodingError) -> String {
            String(decoding: try field(), as: UTF8.self)
        }
        path = StoreKey(bytes: Array(try field()))
        value = try text()
        prevValue = try text()
        guard offset == bytes.count else { throw .truncated }
    }
}
