// Request parsing and response rendering as etcd does them: parameter errors, Go's JSON escaping and times,
// and listings that stream in pieces yet equal the whole.
import Testing
@testable import CairnAPI
@testable import CairnStore

@Suite struct KeysAPITests {
    func parse(_ method: String, _ parameters: [(String, String)]) -> Result<KeysRequest, StoreError> {
        KeysRequest.parse(method: method, keyPath: "/k", parameters: parameters.map { (name: $0.0, value: $0.1) }, formError: nil)
    }

    @Test func parameterErrorsMatchEtcd() {
        func cause(_ result: Result<KeysRequest, StoreError>) -> String? { if case .failure(let e) = result { "\(e.code.rawValue) \(e.cause)" } else { nil } }
        #expect(cause(parse("PUT", [("ttl", "abc")])) == #"202 invalid value for "ttl""#)
        #expect(cause(parse("PUT", [("prevIndex", "-1")])) == #"203 invalid value for "prevIndex""#)
        #expect(cause(parse("GET", [("waitIndex", "")])) == #"203 invalid value for "waitIndex""#)
        #expect(cause(parse("GET", [("recursive", "yes")])) == #"209 invalid value for "recursive""#)
        #expect(cause(parse("PUT", [("wait", "true")])) == #"209 "wait" can only be used with GET requests"#)
        #expect(cause(parse("PUT", [("prevValue", "")])) == #"201 "prevValue" cannot be empty"#)
        #expect(cause(parse("PUT", [("refresh", "true"), ("value", "x"), ("ttl", "5")])) == "211 A value was provided on a refresh")
        #expect(cause(parse("PUT", [("refresh", "true")])) == "212 No TTL value set")
        #expect(cause(KeysRequest.parse(method: "PUT", keyPath: "/k", parameters: [], formError: "invalid semicolon separator in query"))
            == "210 invalid semicolon separator in query")
    }

    @Test func firstValueWinsAndTTLBecomesExpiration() throws {
        guard case .write(let command, _) = try parse("PUT", [("value", "body"), ("value", "query"), ("ttl", "5"), ("prevExist", "T")]).get() else {
            Issue.record("not a write"); return
        }
        #expect(command.value == "body" && command.prevExist == true && command.ttlNanos == 5_000_000_000 && command.resolvingTTL(at: 1_000).expiration == 1_000 + 5_000_000_000)
        #expect(try parse("GET", [("wait", "1"), ("waitIndex", "7"), ("stream", "true")]).get()
            == .watch(path: "/k", recursive: false, stream: true, sinceIndex: 7))
    }

    @Test func jsonEscapesAsGoDoes() {
        var json = GoJSON()
        json.string("a<b>&\"\\\n\t\u{01}é\u{2028}")
        #expect(String(decoding: json.take(), as: UTF8.self) == #""a\u003cb\u003e\u0026\"\\\n\t\u0001é\u2028""#)
    }

    @Test func timesAreRFC3339WithTrimmedNanoseconds() {
        #expect(rfc3339Nano(0) == "1970-01-01T00:00:00Z")
        #expect(rfc3339Nano(1_795_837_516_240_838_198) == "2026-11-28T03:45:16.240838198Z")
        #expect(rfc3339Nano(951_782_400_500_000_000) == "2000-02-29T00:00:00.5Z")
    }

    @Test func listingsStreamInPiecesThatMakeTheWhole() throws {
        var space = KeySpace()
        for i in 0..<3000 {
            var command = StoreCommand(method: .put, path: "/big/\(i % 10)/key\(i)")
            command.value = String(repeating: "v", count: 20)
            _ = try space.apply(command, now: 0).get()
        }
        let node = try space.lookup("/big").get()
        var whole = ListingProducer(node: node, recursive: true, now: 0)
        let all = whole.next(maxBytes: .max)!
        #expect(whole.next(maxBytes: .max) == nil)
        var pieces = ListingProducer(node: node, recursive: true, now: 0)
        var joined: [UInt8] = []
        var count = 0
        while let piece = pieces.next(maxBytes: 4096) {
            #expect(piece.count < 4096 + 1024)
            joined += piece
            count += 1
        }
        #expect(joined == all && count > 10)
        #expect(String(decoding: all.suffix(40), as: UTF8.self).hasSuffix("\"modifiedIndex\":2,\"createdIndex\":2}}\n") || all.last == 10)
    }
}
