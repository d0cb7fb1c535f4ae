// The members API's body reader (Go's encoding/json and net/url, as etcd uses them) on hostile input: it answers
// every input without trapping, and its nesting limit words its error as Go does.
import CairnBase
import Testing
@testable import CairnServer

@Suite struct MemberRequestTests {
    /// Answers read off etcd 3.4.23 (POST /v2/members with these bodies), too long for the recorded goldens.
    @Test func nestingAtAndPastGosLimit() {
        let atLimit = [UInt8](repeating: UInt8(ascii: "["), count: MemberRequest.jsonDepthMax)
        #expect(MemberRequest.peerURLs(atLimit).failureMessage == "unexpected end of JSON input")
        #expect(MemberRequest.peerURLs(atLimit + [UInt8(ascii: "[")]).failureMessage == "invalid character '[' exceeded max depth")
        let balanced = atLimit + [UInt8](repeating: UInt8(ascii: "]"), count: MemberRequest.jsonDepthMax)
        #expect(MemberRequest.peerURLs(balanced).failureMessage
                == #"json: cannot unmarshal array into Go value of type struct { PeerURLs []string "json:\"peerURLs\"" }"#)
    }

    @Test func mutatedBodiesNeverTrap() {
        let seeds = [#"{"peerURLs":["http://127.0.0.1:2380","https://[::1]:7"]}"#, #"{"a":[1.5e-3,true,null,{"b":"\u00e9\n"}]}"#]
        let alphabet = Array(#"{}[]":,\u0123456789.eE+-tfnrl /%@?#abx"#.utf8) + [0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xFF]
        var random = SeededRandom(seed: 18)
        var answered = 0
        for round in 0..<20_000 {
            var body = Array(seeds[round % seeds.count].utf8)
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let at = Int.random(in: 0...body.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: body.insert(alphabet.randomElement(using: &random) ?? 0, at: at)
                case 1 where at < body.count: body.remove(at: at)
                default: if at < body.count { body[at] = alphabet.randomElement(using: &random) ?? 0 }
                }
            }
            switch MemberRequest.peerURLs(body) {
            case .success(let urls): answered += urls.isEmpty ? 0 : 1
            case .failure(let error): answered += error.message.isEmpty ? 0 : 1
            }
        }
        #expect(answered == 20_000, "every input gets URLs or a message")
    }
}

private extension Result where Failure == MemberRequestError {
    var failureMessage: String? {
        if case .failure(let error) = self { return error.message }
        return nil
    }
}
