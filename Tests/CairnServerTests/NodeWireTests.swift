// The members' wire format: Raft messages and proposals round-trip exactly, and no damaged buffer decodes or crashes.
import CairnBase
import CairnRaft
import Testing
@testable import CairnServer

@Suite struct NodeWireTests {
    static func sampleMessage() -> Message {
        var m = Message(kind: .append, from: MemberID(7), to: MemberID(9), term: Term(3))
        m.logTerm = Term(2)
        m.index = LogIndex(41)
        m.commit = LogIndex(40)
        m.reject = true
        m.hintTerm = Term(1)
        m.hintIndex = LogIndex(30)
        m.readSequence = 12
        m.leadershipTransfer = true
        m.entries = [
            Entry(term: Term(3), index: LogIndex(42), clusterTimeNanos: 1_700_000_000_000_000_000, kind: .noop, data: []),
            Entry(term: Term(3), index: LogIndex(43), clusterTimeNanos: 1_700_000_000_000_000_001, kind: .normal, data: Array("PUT /a".utf8)),
        ]
        return m
    }

    @Test func messagesRoundTrip() throws {
        let m = Self.sampleMessage()
        #expect(try Message(decoding: m.encoded()) == m)
        let empty = Message(kind: .heartbeatResponse, from: MemberID(1), to: MemberID(2), term: Term(5))
        #expect(try Message(decoding: empty.encoded()) == empty)
    }

    @Test func everyTruncationAndExtensionIsRefused() {
        let bytes = Self.sampleMessage().encoded()
        for length in 0..<bytes.count {
            #expect(throws: (any Error).self) { try Message(decoding: Array(bytes[0..<length])) }
        }
        #expect(throws: RaftWireError.trailingBytes(1)) { try Message(decoding: bytes + [0]) }
    }

    @Test func absurdCountsAndKindsAreRefused() {
        var bytes = Message(kind: .append, from: MemberID(1), to: MemberID(2), term: Term(1)).encoded()
        bytes.replaceSubrange((bytes.count - 4)..., with: [0xFF, 0xFF, 0xFF, 0x7F])
        #expect(throws: RaftWireError.tooManyEntries(0x7FFF_FFFF)) { try Message(decoding: bytes) }
        bytes[0] = 200
        #expect(throws: RaftWireError.unknownKind(200)) { try Message(decoding: bytes) }
    }

    @Test func randomBytesNeverCrash() {
        var random = SeededRandom(seed: 42)
        var decoded = 0
        for _ in 0..<5_000 {
            let count = Int.random(in: 0..<200, using: &random)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            if (try? Message(decoding: bytes)) != nil { decoded += 1 }
        }
        #expect(decoded < 5_000)
    }

    @Test func readRequestsAndAnswersRoundTrip() throws {
        let request = ReadRequest(requester: Requester(member: 3, incarnation: 0xFEED), context: 41)
        let (asked, none) = try ReadRequest.decode(request.encoded(), withIndex: false)
        #expect(asked == request && none == nil)
        let (answered, index) = try ReadRequest.decode(request.encoded(index: 77), withIndex: true)
        #expect(answered == request && index == 77)
        #expect(throws: ByteReaderError.self) { try ReadRequest.decode(request.encoded(), withIndex: true) }
    }

    @Test func proposalsRoundTripAndNeedTheirHeader() throws {
        let p = Proposal(origin: Requester(member: 0xABCD, incarnation: 0x1234_5678_9ABC), sequence: 99, command: [1, 2, 3])
        #expect(try Proposal(decoding: p.encoded()) == p)
        let withSession = Proposal(origin: Requester(member: 1, incarnation: 5), sequence: 2,
                                   session: SessionRequest(client: "svc-a", request: 7), command: [9])
        #expect(try Proposal(decoding: withSession.encoded()) == withSession)
        for length in 0..<(8 + 8 + 8 + 1 + 4 + 5 + 8) {
            #expect(throws: ByteReaderError.self) { try Proposal(decoding: Array(withSession.encoded()[0..<length])) }
        }
    }
}
