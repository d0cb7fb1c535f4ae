// The members' own payloads: proposals and forwarded reads round-trip exactly, and a short buffer is an error.
import CairnBase
import CairnRaft
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
