// A key space snapshot as a byte stream: written from an immutable root piece by piece while writes continue,
// read back piece by piece. Never one in-memory blob; the storage module frames it with a header and a CRC.
//
// Layout (little-endian): "CAIRNKV2" | currentIndex u64 | node records in pre-order, children in name order
// | end marker 0xFF | count u64. Node record: kind u8 (0 file, 1 directory, +2 if it expires) | depth u32 (0 for the
// root) | name length u32 | name | [value length u32 | value] | createdIndex u64 | modifiedIndex u64 | [expiration
// i64]. A record names its node, not its path, so a deep key costs a snapshot bytes linear in its length.
// "CAIRNKV1" snapshots (each record holds the node's full path instead of depth and name) are still read.
// Every length is checked when read; a stream that ends early, or does not end where it says, is an error, never a
// smaller tree.
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
    static let magic = Array("CAIRNKV2".utf8)
    /// The first format, whose records carry full paths (quadratic in a key's depth).
    static let pathRecordsMagic = Array("CAIRNKV1".utf8)
    /// The writer hands the sink pieces of about this size.
    package static let pieceBytes = 64 * 1024

    package static func write(root: StoreNode, currentIndex: UInt64, to sink: inout some SnapshotSink) throws {
        var buffer = magic
        buffer.reserveCapacity(pieceBytes + 1024)
        append(currentIndex, to: &buffer)
        var count: UInt64 = 0
        // Children in name order, so equal trees give equal bytes.
        var walk = SubtreeWalk(root, path: .root, sorted: true)
        while let (node, depth, _) = walk.next() {
            count += 1
            buffer.append((node.isDirectory ? 1 : 0) + (node.expiration != nil ? 2 : 0))
            append32(UInt32(depth), to: &buffer)
            appendBytes(node.name, to: &buffer)
            if let value = node.value { appendBytes(value.utf8, to: &buffer) }
            append(node.createdIndex, to: &buffer)
            append(node.modifiedIndex, to: &buffer)
            if let expiration = node.expiration { append(UInt64(bitPattern: expiration), to: &buffer) }
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
        let magicRead = try source.read(exactly: magic.count)
        guard magicRead == magic || magicRead == pathRecordsMagic else { throw TreeSnapshotError.badMagic }
        let hasPaths = magicRead == pathRecordsMagic
        let currentIndex = try source.readInteger(8)
        var tree = TreeBuilder(tracksPaths: hasPaths)
        var count: UInt64 = 0
        while true {
            let kind = try source.read(exactly: 1)[0]
            if kind == 0xFF { break }
            guard kind <= 3 else { throw TreeSnapshotError.malformed("node kind \(kind)") }
            count += 1
            let depth: Int, name: [UInt8]
            if hasPaths {
                let key = StoreKey(bytes: try source.readLengthPrefixed())
                let components = key.bytes.split(separator: StoreKey.slash, omittingEmptySubsequences: false).dropFirst()
                guard key.bytes.first == StoreKey.slash, tree.isOpenPath(key, parentOf: components.count) else {
                    throw TreeSnapshotError.malformed("\(key) is outside the tree")
                }
                depth = key.isRoot ? 0 : components.count
                name = depth == 0 ? [] : Array(components.last ?? [])
            } else {
                depth = Int(try source.readInteger(4))
                name = try source.readLengthPrefixed(bytesMax: KeySpace.keyBytesMax)
            }
            let isDirectory = kind & 1 == 1
            let value = isDirectory ? nil : String(decoding: try source.readLengthPrefixed(), as: UTF8.self)
            let createdIndex = try source.readInteger(8)
            let modifiedIndex = try source.readInteger(8)
            let expiration = kind & 2 == 2 ? Int64(bitPattern: try source.readInteger(8)) : nil
            try tree.add(StoreNode(name: name, value: value, createdIndex: createdIndex, modifiedIndex: modifiedIndex, expiration: expiration),
                         depth: depth)
        }
        let root = try tree.finish()
        let expected = try source.readInteger(8)
        guard expected == count else { throw TreeSnapshotError.malformed("the trailer counts \(expected) nodes, the stream held \(count)") }
        return (root, currentIndex)
    }

    private static func append(_ value: UInt64, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    private static func append32(_ value: UInt32, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    private static func appendBytes(_ bytes: some Collection<UInt8>, to buffer: inout [UInt8]) {
        append32(UInt32(bytes.count), to: &buffer)
        buffer.append(contentsOf: bytes)
    }
}

/// Builds a tree from nodes given in pre-order with their depths, without recursion: the directories on the path to
/// the last node stay open, and a node at depth d closes every open directory deeper than its parent.
private struct TreeBuilder {
    private var open: [(fields: StoreNode, children: TreeDictionary<[UInt8], StoreNode>)] = []
    private var root: StoreNode?
    /// The open directories' paths, for the first format's check that a record lies below its parent.
    private let tracksPaths: Bool
    private var openPath: [UInt8] = []
    private var openPathBytes: [Int] = []

    init(tracksPaths: Bool) {
        self.tracksPaths = tracksPaths
    }

    mutating func add(_ node: StoreNode, depth: Int) throws {
        if depth == 0 {
            guard open.isEmpty, root == nil, node.isDirectory, node.name.isEmpty else { throw TreeSnapshotError.malformed("a second root") }
            open.append((node, [:]))
            if tracksPaths { openPathBytes.append(0) }
            return
        }
        guard root == nil, depth <= open.count else { throw TreeSnapshotError.malformed("a node at depth \(depth) outside the tree") }
        while open.count > depth { closeTop() }
        guard !node.name.isEmpty, !node.name.contains(StoreKey.slash), node.name != Array(".".utf8), node.name != Array("..".utf8),
            open[depth - 1].children[node.name] == nil
        else { throw TreeSnapshotError.malformed("a node named \"\(StoreKey(bytes: node.name))\" at depth \(depth)") }
        if node.isDirectory {
            open.append((node, [:]))
            if tracksPaths {
                openPathBytes.append(openPath.count)
                openPath += [StoreKey.slash] + node.name
            }
        } else {
            open[depth - 1].children[node.name] = node
        }
    }

    /// Whether `key`'s parent is an open directory, once those deeper than it are closed (first format only).
    mutating func isOpenPath(_ key: StoreKey, parentOf depth: Int) -> Bool {
        if key.isRoot { return true }
        guard depth >= 1, depth <= open.count else { return false }
        while open.count > depth { closeTop() }
        return key.bytes.count > openPath.count + 1 && key.bytes.starts(with: openPath + [StoreKey.slash])
            && !key.bytes.dropFirst(openPath.count + 1).contains(StoreKey.slash)
    }

    private mutating func closeTop() {
        let top = open.removeLast()
        let finished = top.fields.with(children: top.children)
        if tracksPaths, let bytes = openPathBytes.popLast() {
            openPath.removeSubrange(bytes...)
        }
        if open.isEmpty {
            root = finished
        } else {
            open[open.count - 1].children[finished.name] = finished
        }
    }

    mutating func finish() throws -> StoreNode {
        while !open.isEmpty { closeTop() }
        guard let root else { throw TreeSnapshotError.malformed("no root") }
        return root
    }
}
