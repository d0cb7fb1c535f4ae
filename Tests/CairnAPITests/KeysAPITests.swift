// Request parsing and response rendering as etcd does them: parameter errors, Go's JSON escaping and times,
// and listings that stream in pieces yet equal the whole.
import CairnTestSupport
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
        var whole = ListingProducer(node: node, path: "/big", recursive: true, now: 0)
        let all = whole.next(maxBytes: .max)!
        #expect(whole.next(maxBytes: .max) == nil)
        var pieces = ListingProducer(node: node, path: "/big", recursive: true, now: 0)
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

/// Keys of tens of thousands of components: listed without recursion, on a member-sized stack; a key over the limit
/// is refused with etcd's error shape before anything is proposed.
@Suite struct DeepKeyListingTests {
    @Test func deepChainsListRecursivelyOnAMemberSizedStack() throws {
        nonisolated(unsafe) var bodies: [String] = []
        onThread {
            var space = KeySpace()
            let key = String(repeating: "/a", count: 30_000)
            _ = space.apply(StoreCommand(method: .put, path: key + "/leaf"), now: 0)
            // The top levels of a recursive listing of the root: a whole one writes every key, ~900 MB.
            var fromRoot = ListingProducer(node: space.root, path: "/", recursive: true, now: 0)
            var listed = 0
            while listed < 1 << 20, let piece = fromRoot.next(maxBytes: 64 * 1024) { listed += piece.count }
            bodies.append("\(listed)")
            let parent = StoreKey(String(repeating: "/a", count: 29_999))
            if case .success(let node) = KeySpace.lookup(parent, in: space.root, currentIndex: 1) {
                var listing = ListingProducer(node: node, path: parent, recursive: true, now: 0)
                var whole: [UInt8] = []
                while let piece = listing.next(maxBytes: 64 * 1024) { whole += piece }
                bodies.append(String(decoding: whole, as: UTF8.self))
            }
        }
        #expect(bodies.count == 2 && (Int(bodies[0]) ?? 0) >= 1 << 20)
        let parent = String(repeating: "/a", count: 29_999)
        #expect(bodies.last == #"{"action":"get","node":{"key":"\#(parent)","dir":true,"nodes":[{"key":"\#(parent)/a","dir":true,"#
            + #""nodes":[{"key":"\#(parent)/a/leaf","value":"","modifiedIndex":1,"createdIndex":1}],"modifiedIndex":1,"createdIndex":1}],"#
            + #""modifiedIndex":1,"createdIndex":1}}"# + "\n")
    }

    @Test func aKeyOverTheLimitIsRefusedAsAnInvalidField() {
        let long = "/" + String(repeating: "k", count: KeySpace.keyBytesMax)
        let refused = KeysRequest.parse(method: "PUT", keyPath: StoreKey(long), parameters: [], formError: nil)
        #expect(refused == .failure(StoreError(.invalidField, "key is longer than 65536 bytes", index: 0)))
        #expect((try? KeysRequest.parse(method: "PUT", keyPath: StoreKey(String(long.dropLast())), parameters: [], formError: nil).get()) != nil)
        var space = KeySpace()
        #expect(space.apply(StoreCommand(method: .put, path: long), now: 0).map(\.event)
            == .failure(StoreError(.invalidField, "key is longer than 65536 bytes", index: 0)))
    }
}

/// Keys are bytes; JSON shows them as Go's encoding/json does: each byte that is not UTF-8 as \ufffd.
@Suite struct KeyBytesJSONTests {
    func json(_ bytes: [UInt8]) -> String {
        var json = GoJSON()
        json.string(utf8: bytes)
        return String(decoding: json.take(), as: UTF8.self)
    }

    @Test func invalidBytesAreWrittenAsGoWritesThem() {
        #expect(json(Array("/u".utf8) + [0xFF]) == #""/u\ufffd""#)
        #expect(json([0xEF, 0xBF, 0xBD]) == "\"\u{FFFD}\"", "a real U+FFFD is copied, not escaped")
        #expect(json([0xC0, 0x80]) == #""\ufffd\ufffd""#, "an overlong form is two bad bytes")
        #expect(json([0xED, 0xA0, 0x80]) == #""\ufffd\ufffd\ufffd""#, "so is a surrogate")
        #expect(json([0xE2, 0x82]) == #""\ufffd\ufffd""#, "and a sequence cut short")
        #expect(json([0xF4, 0x90, 0x80, 0x80]) == #""\ufffd\ufffd\ufffd\ufffd""#, "and anything past U+10FFFF")
        #expect(json(Array("é€😀<\u{2028}".utf8)) == #""é€😀\u003c\u2028""#)
    }

    @Test func aDirectoryWithKeysDifferingInInvalidBytesListsBoth() throws {
        var space = KeySpace(initialIndex: 3)
        for (last, value) in [(UInt8(0xFF), "1"), (0xFE, "2")] {
            guard case .write(var command, _) = try KeysRequest.parse(method: "PUT", keyPath: StoreKey(bytes: Array("/u".utf8) + [last]),
                                                                   parameters: [], formError: nil).get() else { return }
            command.value = value
            _ = try space.apply(command, now: 0).get()
        }
        var listing = ListingProducer(node: space.root, path: .root, recursive: false, now: 0)
        #expect(String(decoding: listing.next(maxBytes: .max) ?? [], as: UTF8.self)
            == #"{"action":"get","node":{"dir":true,"nodes":[{"key":"/u\ufffd","value":"2","modifiedIndex":5,"createdIndex":5},"#
            + #"{"key":"/u\ufffd","value":"1","modifiedIndex":4,"createdIndex":4}]}}"# + "\n")
        let missing = space.lookup(StoreKey(bytes: Array("/u".utf8) + [0xFD]))
        guard case .failure(let error) = missing else { Issue.record("found a key never written"); return }
        #expect(String(decoding: KeysResponse.error(error), as: UTF8.self)
            == #"{"errorCode":100,"message":"Key not found","cause":"/u\ufffd","index":5}"# + "\n")
    }
}
