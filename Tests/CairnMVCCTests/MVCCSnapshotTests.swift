// The v3 key space's snapshot section: what is written reads back as the same key space (reads at every kept
// revision, the watch feed, leases and their keys), and damaged bytes are refused, never trusted or trapped on.
import CairnBase
import Testing
@testable import CairnMVCC

@Suite struct MVCCSnapshotTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    static func sample() throws -> MVCCKeySpace {
        var space = MVCCKeySpace()
        _ = try space.grantLease(id: 5, ttl: 60, minimumTTL: 2)
        for n in 0..<40 {
            var put = PutRequest(key: bytes("k\(n % 7)"), value: bytes("v\(n)"))
            if n == 39 { put.lease = 5 }
            _ = try space.put(put)
        }
        _ = try space.deleteRange(DeleteRangeRequest(range: .single(bytes("k3"))))
        _ = try space.txn(TxnRequest(success: [.put(PutRequest(key: bytes("t1"), value: [])), .put(PutRequest(key: bytes("t2"), value: bytes("x")))]))
        try space.compact(20)
        return space
    }

    static func roundTrip(_ space: MVCCKeySpace, pieceBytes: Int = 64) throws -> MVCCKeySpace {
        var stream: [UInt8] = []
        try space.writeSnapshot(pieceBytes: pieceBytes) { stream += $0 }
        var reader = ByteReader(stream)
        let loaded = try MVCCKeySpace.readSnapshot { Array(try reader.take($0)) }
        #expect(reader.isAtEnd)
        return loaded
    }

    static func events(_ space: MVCCKeySpace, from: Int64) throws -> [String] {
        var seen: [String] = []
        try space.events(from: from, prevKV: true) { at, event in
            seen.append("\(at.main).\(at.sub) \(event.type) \(ByteKey(event.kv.key)) \(event.prevKV.map { ByteKey($0.value).description } ?? "-")")
            return true
        }
        return seen
    }

    @Test func aSnapshotReadsBackAsTheSameKeySpace() throws {
        let space = try Self.sample()
        let loaded = try Self.roundTrip(space)
        #expect(loaded.revision == space.revision && loaded.compactedRevision == 20 && loaded.historyBytes == space.historyBytes)
        for at in [Int64(20), 25, 33, space.revision] {
            var request = RangeRequest(range: KeyRange(key: [0], rangeEnd: [0]))
            request.revision = at
            #expect(try loaded.range(request) == space.range(request), "at \(at)")
        }
        #expect(try Self.events(loaded, from: 20) == Self.events(space, from: 20))
        #expect(loaded.leases[5]?.keys == space.leases[5]?.keys && loaded.leases[5]?.ttl == 60)
        #expect(throws: MVCCError.compacted) { try loaded.events(from: 19) { _, _ in true } }
        // The loaded space goes on as the original does.
        var a = space, b = loaded
        #expect(try a.put(PutRequest(key: Self.bytes("k1"), value: [1])) == b.put(PutRequest(key: Self.bytes("k1"), value: [1])))
        #expect(try a.revokeLease(id: 5) == b.revokeLease(id: 5))
    }

    @Test func damagedSnapshotsAreRefused() throws {
        var stream: [UInt8] = []
        try Self.sample().writeSnapshot { stream += $0 }
        func load(_ bytes: [UInt8]) throws {
            var reader = ByteReader(bytes)
            _ = try MVCCKeySpace.readSnapshot { Array(try reader.take($0)) }
        }
        #expect(throws: (any Error).self) { try load([MVCCKeySpace.snapshotFormatVersion + 1] + stream.dropFirst()) }
        for cut in stride(from: 0, to: stream.count - 1, by: 37) {
            #expect(throws: (any Error).self) { try load(Array(stream[..<cut])) }
        }
        // Every byte flipped in turn: refused or read, never a trap.
        for index in stride(from: 0, to: stream.count, by: 3) {
            var damaged = stream
            damaged[index] ^= 0xA5
            _ = try? load(damaged)
        }
    }
}
