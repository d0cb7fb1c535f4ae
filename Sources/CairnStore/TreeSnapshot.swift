// A key space snapshot as a byte stream: written from an immutable root piece by piece while writes continue,
// read back piece by piece. Never one in-memory blob; the storage module frames it with a header and a CRC.
//
// Layout (little-endian): "CAIRNKV1" | currentIndex u64 | node records in pre-order | end marker 0xFF | count u64.
// Node record: kind u8 (0 file, 1 directory, +2 if it expires) | key length u32 | key | [value length u32 | value]
// | createdIndex u64 | modifiedIndex u64 | [expiration i64]. The root is the first record. Every length is checked
// when read; a stream that ends early, or does not end where it says, is an error, never a smaller tree.
import HashTreeCollections

package protocol SnapshotSink {
    mutating func write(_ bytes: [UInt8]) throws
}

package protocol SnapshotSource {
    /// Exactly `count` bytes, or an error: a short read is corruption, not data.
    mutating func read(exactly count: Int) throws -> [UInt8]
}

extension SnapshotSource {
    /// A little-endian unsigned integer of `count` bytes.
    package mutating func readInteger(_ count: Int) throws -> UInt64 {
        try read(exactly: count).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// A u32 length, then that many bytes; a length over `bytesMax` is damage, not a reason to allocate.
    package mutating func readLengthPrefixed(bytesMax: Int = Int(UInt32.max)) throws -> [UInt8] {
        let length = Int(try readInteger(4))
        guard length <= bytesMax else { throw TreeSnapshotError.malformed("a field of \(length) bytes (at most \(bytesMax))") }
        return try read(exactly: length)
    }
}

package enum TreeSnapshotError: Error, Equatable {
    case badMagic
    case truncated
    case malformed(String)
}

package enum TreeSnapshot {
    static let magic = Array("CAIRNKV1".utf8)
    /// The writer hands the sink pieces of about this size.
    package static let pieceBytes = 64 * 1024

    package static func write(root: StoreNode, currentIndex: UInt64, to sink: inout some SnapshotSink) throws {
        var buffer = magic
        buffer.reserveCapacity(pieceBytes + 1024)
        append(currentIndex, to: &buffer)
        var count: UInt64 = 0
        var pending = [root]
        while let node = pending.popLast() {
            count += 1
            let expires = node.expiration != nil
            buffer.append((node.isDirectory ? 1 : 0) + (expires ? 2 : 0))
            appendBytes(Array(node.key.utf8), to: &buffer)
            if let value = node.value { appendBytes(Array(value.utf8), to: &buffer) }
            append(node.createdIndex, to: &buffer)
            append(node.modifiedIndex, to: &buffer)
            if let expiration = node.expiration { append(UInt64(bitPattern: expiration), to: &buffer) }
            // Reverse key order on the stack gives ascending order out, so equal trees give equal bytes.
            pending.append(contentsOf: node.children.values.sorted { $0.key > $1.key })
            if buffer.count >= pieceBytes {
                try sink.write(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        buffer.append(0xFF)
        append(count, to: &buffer)
        try sink.write(buffer)
    }

    package static func read(from source: inout some SnapshotSource) throws -> (root: StoreNode, currentIndex: UInt64) {
        guard try source.read(exactly: magic.count) == magic else { throw TreeSnapshotError.badMagic }
        let currentIndex = try source.readInteger(8)
        // Directories under construction, outermost first; a record that is not below the top closes it.
        var open: [(fields: StoreNode, children: TreeDictionary<String, StoreNode>)] = []
        var root: StoreNode?
        var count: UInt64 = 0
        func closeTop() {
            let top = open.removeLast()
            let finished = top.fields.with(children: top.children)
            if open.isEmpty {
                root = finished
            } else {
                open[open.count - 1].children[String(finished.name)] = finished
            }
        }
        while true {
            let kind = try source.read(exactly: 1)[0]
            if kind == 0xFF { break }
            guard kind <= 3 else { throw TreeSnapshotError.malformed("node kind \(kind)") }
            count += 1
            let key = String(decoding: try source.readLengthPrefixed(), as: UTF8.self)
            let isDirectory = kind & 1 == 1
            let value = isDirectory ? nil : String(decoding: try source.readLengthPrefixed(), as: UTF8.self)
            let createdIndex = try source.readInteger(8)
            let modifiedIndex = try source.readInteger(8)
            let expiration = kind & 2 == 2 ? Int64(bitPattern: try source.readInteger(8)) : nil
            let node = StoreNode(key: key, value: value, createdIndex: createdIndex, modifiedIndex: modifiedIndex, expiration: expiration)
            if open.isEmpty && root == nil {
                guard key == "/", isDirectory else { throw TreeSnapshotError.malformed("the first node is \(key), not the root") }
            } else {
                while let top = open.last, !isChild(key, of: top.fields.key) { closeTop() }
                guard !open.isEmpty else { throw TreeSnapshotError.malformed("\(key) is outside the tree") }
            }
            if isDirectory {
                open.append((node, [:]))
            } else {
                open[open.count - 1].children[String(node.name)] = node
            }
        }
        while !open.isEmpty { closeTop() }
        let expected = try source.readInteger(8)
        guard let root, expected == count else { throw TreeSnapshotError.malformed("the trailer counts \(expected) nodes, the stream held \(count)") }
        return (root, currentIndex)
    }

    private static func isChild(_ key: String, of directory: String) -> Bool {
        let prefix = directory == "/" ? "/" : directory + "/"
        return key.hasPrefix(prefix) && !key.dropFirst(prefix.count).contains("/")
    }

    private static func append(_ value: UInt64, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    private static func appendBytes(_ bytes: [UInt8], to buffer: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { buffer.append(contentsOf: $0) }
        buffer.append(contentsOf: bytes)
    }

}
