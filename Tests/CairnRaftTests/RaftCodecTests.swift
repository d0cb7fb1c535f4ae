// The binary codec: round trips of every field, and every prefix, padded or random buffer refused without a crash.
import CairnBase
import CairnRaft
import Testing

@Suite struct RaftCodecTests {
    static func sampleMessage() -> Message {
        var m = Message(kind: .append, from: MemberID(3), to: MemberID(1 << 40), term: Term(7))
        m.logTerm = Term(6)
        m.index = LogIndex(41)
        m.commit = LogIndex(40)
        m.reject = true
        m.leadershipTransfer = true
        m.hintTerm = Term(5)
        m.hintIndex = LogIndex(39)
        m.readSequence = 12
        m.sentTick = 99
        m.snapshotOffset = 4096
        m.snapshotDone = true
        m.data = [1, 2, 3]
        let config = ConfigChangeEntry(change: ConfigChange(.addLearner, MemberID(9)),
                                       membership: Membership(voters: [MemberID(1), MemberID(3)], learners: [MemberID(9)]))
        m.entries = [
            Entry(term: Term(7), index: LogIndex(42), clusterTimeNanos: 1_000, kind: .normal, data: [9, 9]),
            Entry(term: Term(7), index: LogIndex(43), clusterTimeNanos: 2_000, kind: .noop, data: []),
            Entry(term: Term(7), index: LogIndex(44), clusterTimeNanos: 3_000, kind: .configChange, data: config.encoded()),
        ]
        return m
    }

    @Test func messageRoundTripsEveryField() throws {
        let m = Self.sampleMessage()
        #expect(try Message(decoding: m.encoded()) == m)
        for kind in [MessageKind.preVote, .voteResponse, .heartbeat, .timeoutNow, .snapshot] {
            var k = Message(kind: kind, from: MemberID(1), to: MemberID(2), term: Term(1))
            k.data = kind == .snapshot ? [0xFF] : []
            #expect(try Message(decoding: k.encoded()) == k)
        }
    }

    @Test func everyPrefixAndAnyPaddingIsRefused() throws {
        let bytes = Self.sampleMessage().encoded()
        for n in 0..<bytes.count {
            #expect(throws: RaftCodecError.self) { try Message(decoding: Array(bytes[..<n])) }
        }
        #expect(throws: RaftCodecError.trailingBytes(1)) { try Message(decoding: bytes + [0]) }
        let config = ConfigChangeEntry(change: ConfigChange(.remove, MemberID(2)), membership: Membership(voters: [MemberID(1)]))
        let snapshot = SnapshotMetadata(index: LogIndex(9), term: Term(2), clusterTimeNanos: 5,
                                        membership: Membership(voters: [MemberID(1), MemberID(2)], learners: [MemberID(4)]))
        let encodings: [([UInt8], ([UInt8]) throws -> Void)] = [
            (config.encoded(), { _ = try ConfigChangeEntry(decoding: $0) }),
            (snapshot.encoded(), { _ = try SnapshotMetadata(decoding: $0) }),
            (snapshot.membership.encoded(), { _ = try Membership(decoding: $0) }),
        ]
        for (encoded, decode) in encodings {
            for n in 0..<encoded.count { #expect(throws: (any Error).self) { try decode(Array(encoded[..<n])) } }
            #expect(throws: (any Error).self) { try decode(encoded + [7]) }
        }
        #expect(try ConfigChangeEntry(decoding: config.encoded()) == config)
        #expect(try SnapshotMetadata(decoding: snapshot.encoded()) == snapshot)
    }

    @Test func hugeCountsAndUnknownKindsAreRefused() {
        var bytes = Message(kind: .append, from: MemberID(1), to: MemberID(2), term: Term(1)).encoded()
        // The entry count is the last field: claim 2^32 - 1 entries with none present.
        bytes.replaceSubrange((bytes.count - 4)..., with: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: RaftCodecError.self) { try Message(decoding: bytes) }
        bytes[0] = 0xEE
        #expect(throws: RaftCodecError.unknownKind(0xEE)) { try Message(decoding: bytes) }
        // A membership that is not in canonical form (unsorted, duplicated) has no valid encoding.
        var unsorted: [UInt8] = [2, 0, 0, 0]
        for id: UInt64 in [5, 3] { withUnsafeBytes(of: id.littleEndian) { unsorted.append(contentsOf: $0) } }
        unsorted += [0, 0, 0, 0]
        #expect(throws: RaftCodecError.invalidMembership) { try Membership(decoding: unsorted) }
    }

    @Test func randomGarbageNeverCrashes() {
        var random = SeededRandom(seed: 7)
        let valid = Self.sampleMessage().encoded()
        for _ in 0..<2_000 {
            var bytes = valid
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            _ = try? Message(decoding: bytes)
            let noise = (0..<Int.random(in: 0...200, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            _ = try? Message(decoding: noise)
        }
    }
}
