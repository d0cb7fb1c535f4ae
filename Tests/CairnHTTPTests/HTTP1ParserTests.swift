// The HTTP/1.1 parser on adversarial input: every prefix and split of valid requests, random bytes, limits, smuggling.
// Each expectation names the status etcd's clients would see, so a regression shows up as a wrong status.
import CairnBase
import Testing
@testable import CairnHTTP

/// Runs the parser over `bytes` fed in pieces of `pieceBytes`, collecting every event until an error or the end.
func parseAll(_ bytes: [UInt8], pieceBytes: Int = .max, limits: HTTP1Limits = HTTP1Limits()) -> (heads: [HTTPRequestHead], bodies: [[UInt8]], error: HTTPError?) {
    var parser = HTTP1RequestParser(limits: limits)
    var heads: [HTTPRequestHead] = []
    var bodies: [[UInt8]] = []
    var buffer: [UInt8] = []
    var fed = 0
    var steps = 0
    while steps < 1_000_000 {
        steps += 1
        let (event, consumed) = buffer.withUnsafeBytes { parser.next($0) }
        let consumedBytes = Array(buffer[0..<consumed])
        buffer.removeFirst(consumed)
        switch event {
        case .needMore:
            if consumed > 0 { continue }
            guard fed < bytes.count else { return (heads, bodies, nil) }
            let next = min(bytes.count, fed + pieceBytes)
            buffer.append(contentsOf: bytes[fed..<next])
            fed = next
        case .head(let head, _):
            heads.append(head)
            bodies.append([])
        case .body:
            bodies[bodies.count - 1].append(contentsOf: consumedBytes)
        case .end:
            continue
        case .error(let error):
            return (heads, bodies, error)
        }
    }
    Issue.record("parser did not terminate")
    return (heads, bodies, nil)
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite struct HTTP1ParserTests {
    static let pipelined = bytes(
        "GET /v2/keys/a?recursive=true HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n"
            + "PUT /v2/keys/b HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nvalue=1"
            + "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
            + "\r\nDELETE /v2/keys/c HTTP/1.0\n\n")

    @Test func parsesPipelinedRequestsWithEveryFraming() {
        let result = parseAll(Self.pipelined)
        #expect(result.error == nil)
        #expect(result.heads.map(\.method) == ["GET", "PUT", "POST", "DELETE"])
        #expect(result.heads[0].rawPath == "/v2/keys/a")
        #expect(result.heads[0].rawQuery == "recursive=true")
        #expect(result.heads[1].headers["content-type"] == "application/x-www-form-urlencoded")
        #expect(result.bodies == [[], bytes("value=1"), bytes("hello world"), []])
        #expect(result.heads[3].version == .http1_0)
    }

    @Test func everySplitGivesTheSameResult() {
        let whole = parseAll(Self.pipelined)
        for piece in [1, 2, 3, 5, 7, 13, 64] {
            let split = parseAll(Self.pipelined, pieceBytes: piece)
            #expect(split.error == nil)
            #expect(split.heads == whole.heads, "piece size \(piece)")
            #expect(split.bodies == whole.bodies, "piece size \(piece)")
        }
    }

    @Test func everyPrefixIsIncompleteNotAnError() {
        let request = bytes("PUT /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        for length in 0..<request.count {
            var parser = HTTP1RequestParser(limits: HTTP1Limits())
            var buffer = Array(request[0..<length])
            var ended = false
            for _ in 0..<20 {
                let (event, consumed) = buffer.withUnsafeBytes { parser.next($0) }
                buffer.removeFirst(consumed)
                if case .error(let error) = event { Issue.record("prefix \(length) gave \(error)") }
                if case .end = event { ended = true }
                if case .needMore = event, consumed == 0 { break }
            }
            #expect(!ended, "prefix of \(length) bytes claimed a complete request")
        }
    }

    @Test func randomBytesNeverCrashOrHang() {
        var rng = SeededRandom(seed: 2026)
        for _ in 0..<2000 {
            let count = Int.random(in: 0..<300, using: &rng)
            var input = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if Bool.random(using: &rng) { input = bytes("GET / HTTP/1.1\r\n") + input }
            _ = parseAll(input, pieceBytes: Int.random(in: 1...50, using: &rng))
        }
    }

    @Test func mutatedValidRequestsNeverCrash() {
        var rng = SeededRandom(seed: 7)
        for _ in 0..<3000 {
            var input = Self.pipelined
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                input[Int.random(in: 0..<input.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            _ = parseAll(input, pieceBytes: Int.random(in: 1...40, using: &rng))
        }
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        ("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        ("GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nBad\rHeader: 1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("GET / HTTP/3.1\r\nHost: x\r\n\r\n", 505),
        ("GET / HTTX/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET nope HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    ])
    func refusesMalformedAndSmuggling(request: String, status: Int) {
        let result = parseAll(bytes(request))
        #expect(result.error?.status == status, "\(request.debugDescription)")
    }

    @Test func limitsGiveTheirStatuses() {
        var limits = HTTP1Limits()
        limits.requestLineBytesMax = 100
        limits.headerBytesMax = 1000
        limits.bodyBytesMax = 10
        let longLine = "GET /" + String(repeating: "a", count: 200) + " HTTP/1.1\r\nHost: x\r\n\r\n"
        #expect(parseAll(bytes(longLine), limits: limits).error?.status == 414)
        #expect(parseAll(bytes(String(longLine.prefix(150))), limits: limits).error?.status == 414, "unterminated long line")
        let manyHeaders = "GET / HTTP/1.1\r\nHost: x\r\n" + String(repeating: "X-A: bbbbbbbbbbbbbbbbbbbb\r\n", count: 60) + "\r\n"
        #expect(parseAll(bytes(manyHeaders), limits: limits).error?.status == 431)
        #expect(parseAll(bytes(String(manyHeaders.dropLast(2))), limits: limits).error?.status == 431, "unterminated large head")
        #expect(parseAll(bytes("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"), limits: limits).error?.status == 413)
        let chunked = "PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
        #expect(parseAll(bytes(chunked), limits: limits).error?.status == 413)
    }

    @Test func absoluteFormTargetsReduceToTheirPath() {
        let result = parseAll(bytes("GET http://example.com/v2/keys/x?wait=true HTTP/1.1\r\nHost: example.com\r\n\r\n"))
        #expect(result.heads.first?.rawPath == "/v2/keys/x")
        #expect(result.heads.first?.rawQuery == "wait=true")
    }
}

@Suite struct FormDecodingTests {
    @Test func decodesAsGoDoes() {
        let decoded = FormDecoding.decode("value=a+b%20c&ttl=5&value=second&&flag&%41=%2B")
        #expect(decoded.error == nil)
        #expect(decoded.pairs.map(\.name) == ["value", "ttl", "value", "flag", "A"])
        #expect(decoded.pairs.map(\.value) == ["a b c", "5", "second", "", "+"])
    }

    @Test func reportsGoErrorTextAndKeepsGoodPairs() {
        let decoded = FormDecoding.decode("a=1&b=%zz&c=3")
        #expect(decoded.error == #"invalid URL escape "%zz""#)
        #expect(decoded.pairs.map(\.name) == ["a", "c"])
        #expect(FormDecoding.decode("a=%4").error == #"invalid URL escape "%4""#)
        #expect(FormDecoding.decode("a=1;b=2").error == "invalid semicolon separator in query")
    }

    @Test func pathsKeepPlus() throws {
        #expect(try FormDecoding.decodePath("/v2/keys/a+b%2Fc").get() == "/v2/keys/a+b/c")
        #expect(throws: FormDecoding.EscapeError.self) { try FormDecoding.decodePath("/v2/keys/%g0").get() }
    }
}
