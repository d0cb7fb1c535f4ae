// Snapshots as streams: a round trip gives the same tree, a root taken before later writes serializes as it was,
// pieces stay small, and a truncated or damaged stream is an error rather than a smaller tree.
import CairnBase
import Testing
@testable import CairnStore

struct PieceSink: SnapshotSink {
    var pieces: [[UInt8]] = []
    mutating func write(_ bytes: [UInt8]) throws { pieces.append(bytes) }
    var bytes: [UInt8] { pieces.flatMap { $0 } }
}

struct BytesSource: SnapshotSource {
    var bytes: [UInt8]
    var offset = 0
    mutating func read(exactly count: Int) throws -> [UInt8] {
        guard count <= bytes.count - offset else { throw TreeSnapshotError.truncated }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }
}

func listing(_ node: StoreNode) -> [String] {
    var lines: [String] = []
    var walk = SubtreeWalk(node, path: "/", sorted: true)
    while let (next, _, path) = walk.next() {
        lines.append("\(String(decoding: path, as: UTF8.self)) \(next.value ?? "<dir>") \(next.createdIndex) \(next.modifiedIndex) \(next.expiration ?? 0)")
    }
    return lines
}

@Suite struct TreeSnapshotTests {
    func randomSpace(seed: UInt64, writes: Int) throws -> KeySpace {
        var rng = SeededRandom(seed: seed)
        var space = KeySpace(initialIndex: 3)
        for i in 0..<writes {
            let depth = Int.random(in: 1...4, using: &rng)
            let path = (0..<depth).map { _ in "k\(Int.random(in: 0..<20, using: &rng))" }.joined(separator: "/")
            var command = StoreCommand(method: .put, path: "/" + path)
            command.value = String(repeating: "v", count: Int.random(in: 0..<40, using: &rng))
            command.dir = Int.random(in: 0..<8, using: &rng) == 0
            command.expiration = Bool.random(using: &rng) ? Int64(i) * 1_000 : 0
            _ = space.apply(command, now: 0)
        }
        return space
    }

    @Test func roundTripGivesTheSameTree() throws {
        let space = try randomSpace(seed: 1, writes: 3000)
        var sink = PieceSink()
        try TreeSnapshot.write(root: space.root, currentIndex: space.currentIndex, to: &sink)
        #expect(sink.pieces.count > 1)
        #expect(sink.pieces.allSatisfy { $0.count < TreeSnapshot.pieceBytes + 4096 })
        var source = BytesSource(bytes: sink.bytes)
        let (root, index) = try TreeSnapshot.read(from: &source)
        #expect(index == space.currentIndex)
        #expect(listing(root) == listing(space.root))
        var again = PieceSink()
        try TreeSnapshot.write(root: root, currentIndex: index, to: &again)
        #expect(again.bytes == sink.bytes, "equal trees serialize to equal bytes")
    }

    @Test func aRootTakenEarlierSerializesAsItWasWhileWritesGoOn() throws {
        var space = try randomSpace(seed: 2, writes: 500)
        let frozen = space.root
        let frozenListing = listing(frozen)
        for i in 0..<500 { _ = space.apply(StoreCommand(method: .delete, path: "/k\(i % 6)"), now: 0) }
        var sink = PieceSink()
        try TreeSnapshot.write(root: frozen, currentIndex: 0, to: &sink)
        var source = BytesSource(bytes: sink.bytes)
        #expect(listing(try TreeSnapshot.read(from: &source).root) == frozenListing)
    }

    @Test func restoredKeySpaceKeepsExpiring() throws {
        let space = try randomSpace(seed: 3, writes: 400)
        var sink = PieceSink()
        try TreeSnapshot.write(root: space.root, currentIndex: space.currentIndex, to: &sink)
        var source = BytesSource(bytes: sink.bytes)
        let (root, index) = try TreeSnapshot.read(from: &source)
        var original = space, restored = KeySpace(root: root, currentIndex: index)
        #expect(original.expire(upTo: 200_000).map(\.event) == restored.expire(upTo: 200_000).map(\.event))
    }

    @Test func truncatedOrDamagedStreamsAreErrors() throws {
        let space = try randomSpace(seed: 4, writes: 50)
        var sink = PieceSink()
        try TreeSnapshot.write(root: space.root, currentIndex: space.currentIndex, to: &sink)
        let bytes = sink.bytes
        for cut in stride(from: 0, to: bytes.count, by: 7) {
            var source = BytesSource(bytes: Array(bytes[0..<cut]))
            #expect(throws: (any Error).self) { _ = try TreeSnapshot.read(from: &source) }
        }
        var damaged = bytes
        damaged[0] ^= 1
        var source = BytesSource(bytes: damaged)
        #expect(throws: TreeSnapshotError.badMagic) { _ = try TreeSnapshot.read(from: &source) }
    }

    /// A stream in the first format, whose records hold full paths: (kind, path, value, created, modified, expiration).
    func pathRecordStream(_ records: [(UInt8, String, String?, UInt64, UInt64, Int64?)]) -> [UInt8] {
        var w = ByteWriter()
        w.raw(Array("CAIRNKV1".utf8))
        w.u64(9)
        for (kind, path, value, created, modified, expiration) in records {
            w.u8(kind)
            w.lengthPrefixed(Array(path.utf8))
            if let value { w.lengthPrefixed(Array(value.utf8)) }
            w.u64(created)
            w.u64(modified)
            if let expiration { w.u64(UInt64(bitPattern: expiration)) }
        }
        w.u8(0xFF)
        w.u64(UInt64(records.count))
        return w.bytes
    }

    @Test func snapshotsOfTheFirstFormatAreStillRead() throws {
        var source = BytesSource(bytes: pathRecordStream([
            (1, "/", nil, 0, 0, nil), (1, "/a", nil, 2, 2, nil), (0, "/a/b", "v", 3, 4, nil), (2, "/c", "w", 5, 5, 77),
        ]))
        let (root, index) = try TreeSnapshot.read(from: &source)
        #expect(index == 9)
        #expect(listing(root) == [" <dir> 0 0 0", "/a <dir> 2 2 0", "/a/b v 3 4 0", "/c w 5 5 77"])
        for misplaced in ["/b/c", "a", "/a/b/c"] {
            var bad = BytesSource(bytes: pathRecordStream([(1, "/", nil, 0, 0, nil), (1, "/a", nil, 2, 2, nil), (0, misplaced, "v", 3, 4, nil)]))
            #expect(throws: TreeSnapshotError.self) { _ = try TreeSnapshot.read(from: &bad) }
        }
    }

    @Test func recordsOutsideTheTreeAreDamage() throws {
        let space = try randomSpace(seed: 5, writes: 30)
        var sink = PieceSink()
        try TreeSnapshot.write(root: space.root, currentIndex: space.currentIndex, to: &sink)
        var bytes = sink.bytes
        // The second record's depth (after magic, index and the root's 1 + 4 + 4 + 0 + 8 + 8 bytes, and its kind).
        let depthOffset = 8 + 8 + 25 + 1
        #expect(bytes[depthOffset] == 1)
        bytes[depthOffset] = 2
        var source = BytesSource(bytes: bytes)
        #expect(throws: TreeSnapshotError.self) { _ = try TreeSnapshot.read(from: &source) }
    }
}
