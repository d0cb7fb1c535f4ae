// The members' own payloads: proposals and forwarded reads round-trip exactly, and a short buffer is an error.
import CairnReplica
import CairnBase
import CairnMVCC
import CairnRaft
import CairnStore
import Testing
@testable import CairnServer

@Suite struct NodeWireTests {
    @Test func readRequestsAndAnswersRoundTrip() throws {
        let request = ReadRequest(requester: Requester(member: 3, incarnation: 0xFEED), context: 41)
        let (asked, none) = try ReadRequest.decode(request.encoded(), withIndex: false)
        #expect(asked == request && none == nil)
        let (answered, index) = try ReadRequest.decode(request.encoded(index: 77), withIndex: true)
        #expect(answered == request && index == 77)
        #expect(throws: ByteReaderError.self) { try ReadRequest.decode(request.encoded(), withIndex: true) }
    }

    @Test func proposalsRoundTripAndNeedTheirHeader() throws {
        let p = Proposal(origin: Requester(member: 0xABCD, incarnation: 0x1234_5678_9ABC), sequence: 99, body: .command([1, 2, 3]))
        #expect(try Proposal(decoding: p.encoded()) == p)
        let withSession = Proposal(origin: Requester(member: 1, incarnation: 5), sequence: 2,
                                   session: SessionRequest(client: "svc-a", request: 7), body: .command([9]))
        #expect(try Proposal(decoding: withSession.encoded()) == withSession)
        for length in 0..<(8 + 8 + 8 + 1 + 4 + 5 + 8 + 1) {
            #expect(throws: (any Error).self) { try Proposal(decoding: Array(withSession.encoded()[0..<length])) }
        }
        for change in [MemberChange.add(id: 7, peerURLs: ["http://a:1", "http://b:2"]), .remove(id: 7),
                       .updatePeerURLs(id: 7, peerURLs: []), .attributes(id: 7, name: "n7", clientURLs: ["http://c:3"])] {
            let member = Proposal(origin: Requester(member: 1, incarnation: 5), sequence: 3, body: .member(change))
            #expect(try Proposal(decoding: member.encoded()) == member)
            #expect(throws: (any Error).self) { try Proposal(decoding: member.encoded() + [0]) }
        }
    }

    @Test func v3ProposalsRoundTripAndAnUndecodableCommandIsRefused() throws {
        let command = MVCCCommand.put(PutRequest(key: Array("k".utf8), value: Array("v".utf8)))
        let p = Proposal(origin: Requester(member: 1, incarnation: 5), sequence: 4, body: .mvcc(command.encoded()))
        #expect(try Proposal(decoding: p.encoded()) == p)
        #expect(Proposal.isApplicable(p.encoded(), kind: .normal))
        #expect(describeLogEntry(kind: EntryKind.normal.rawValue, payload: p.encoded()).contains("V3 put"))
        // A command a newer member wrote (unknown version) or damage: refused before Raft, never applied.
        for bad in [[UInt8](), [2, 1], Array(command.encoded().dropLast()), command.encoded() + [0]] {
            let damaged = Proposal(origin: Requester(member: 1, incarnation: 5), sequence: 5, body: .mvcc(bad))
            #expect(!Proposal.isApplicable(damaged.encoded(), kind: .normal), "\(bad)")
        }
    }

    @Test func theMemberTableSurvivesASnapshotAndAShortOneIsRefused() throws {
        struct Sink: SnapshotSink {
            var bytes: [UInt8] = []
            mutating func write(_ more: [UInt8]) throws { bytes += more }
        }
        struct Source: SnapshotSource {
            var bytes: [UInt8]
            mutating func read(exactly count: Int) throws -> [UInt8] {
                guard count <= bytes.count else { throw TreeSnapshotError.truncated }
                defer { bytes.removeFirst(count) }
                return Array(bytes[0..<count])
            }
        }
        var table = MemberTable([], isLogged: false)
        table.apply(.bootstrap([MemberRecord(id: 2, name: "b", peerURLs: ["http://b:2"], clientURLs: []),
                                MemberRecord(id: 1, name: "a", peerURLs: ["http://a:1"], clientURLs: ["http://a:9"])]))
        table.apply(.attributes(id: 2, name: "b2", clientURLs: ["http://b:9"]))
        var sink = Sink()
        try table.write(to: &sink)
        var source = Source(bytes: sink.bytes)
        #expect(try MemberTable.read(from: &source) == table && source.bytes.isEmpty)
        var short = Source(bytes: Array(sink.bytes.dropLast()))
        #expect(throws: (any Error).self) { try MemberTable.read(from: &short) }
    }
}
