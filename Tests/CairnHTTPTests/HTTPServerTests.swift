// The server over real loopback sockets: pipelining, streaming both ways, limits, timeouts, HTTP/2, gzip, shutdown.
// Serialized, because some assertions read this process's memory and connection counts.
import CairnBase
import CairnTestSupport
import Foundation
import Glibc
import Testing
@testable import CairnHTTP

@Suite(.serialized) struct HTTPServerTests {
    /// A response that ends outside a socket event is written at once, not by a block queued behind the work already
    /// on the connection's queue (a watch's event waited behind the next watchers' events).
    @Test func aResponseEndedOutsideASocketEventIsWrittenAtOnce() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send("GET /answer-then-block HTTP/1.1\r\nHost: x\r\n\r\n")
        let response = client.readResponse()
        server.seen.queueRelease.signal()
        #expect(response?.body == Array("answered".utf8), "the answer waited for the queue")
    }

    @Test func hundredPipelinedRequestsAnsweredInOrder() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        var batch = ""
        for i in 0..<100 { batch += "GET /item/\(i) HTTP/1.1\r\nHost: x\r\n\r\n" }
        client.send(batch)
        for i in 0..<100 {
            let response = try #require(client.readResponse())
            #expect(response.status == 200)
            #expect(String(decoding: response.body, as: UTF8.self) == "GET /item/\(i)")
        }
    }

    @Test func fiftyMebibyteChunkedUploadStreamsInBoundedPieces() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send("PUT /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        var crc = CRC32C()
        let piece = (0..<(256 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        for _ in 0..<200 {
            client.send(Array((String(piece.count, radix: 16) + "\r\n").utf8) + piece + [13, 10])
            crc.update(piece)
        }
        client.send("0\r\n\r\n")
        let response = try #require(client.readResponse())
        #expect(String(decoding: response.body, as: UTF8.self) == "bytes=\(50 * 1024 * 1024) crc=\(crc.value)")
        #expect(server.seen.largestBodyPiece.withLock { $0 } <= 64 * 1024)
    }

    /// Memory stays bounded because the server reads a body only as fast as the handler asks for it. Measured by
    /// what the sender gets rid of, not by this process's resident memory, which other suites running alongside move.
    @Test func aHandlerThatDoesNotReadStopsTheUpload() throws {
        // The stalled request is still open when the test ends; shutdown waits its grace period for it.
        let server = try TestServer { $0.shutdownGraceSeconds = 0 }
        defer { server.stop() }
        do {
            let client = try RawClient(port: server.port)
            let total = 64 * 1024 * 1024
            client.send("PUT /wait HTTP/1.1\r\nHost: x\r\nContent-Length: \(total)\r\n\r\n")
            let accepted = client.sendUntilBlocked(upTo: total, stalledMilliseconds: 500)
            // Loopback socket buffers take a few MiB; a server that buffered bodies would take all 64 MiB.
            #expect(accepted < 24 * 1024 * 1024, "the server took \(accepted) bytes of a body nobody reads")
            #expect(server.server.connectionCount == 1)
        }
    }

    @Test func clientDisconnectMidBodyIsReportedToTheHandler() throws {
        let server = try TestServer()
        defer { server.stop() }
        do {
            let client = try RawClient(port: server.port)
            client.send("PUT /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + String(repeating: "a", count: 5000))
            usleep(100_000)
        }
        #expect(eventually { server.seen.closedPaths.withLock { $0 } == ["/count"] })
        #expect(server.seen.bodyFailures.withLock { $0 } == [499])
    }

    @Test func waitingHandlerLearnsOfDisconnectAndIsNotTimedOut() throws {
        let server = try TestServer { $0.headerTimeoutSeconds = 1; $0.idleTimeoutSeconds = 1 }
        defer { server.stop() }
        do {
            let client = try RawClient(port: server.port)
            client.send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
            sleep(2)
            #expect(server.server.connectionCount == 1, "a parsed long-poll request must not be timed out")
            #expect(server.seen.closedPaths.withLock { $0 }.isEmpty)
        }
        #expect(eventually { server.seen.closedPaths.withLock { $0 } == ["/wait"] })
    }

    @Test func eachAnswerIsReportedOnceWithItsStatusButNotOneWhoseClientLeft() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /stream?bytes=300000 HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(client.readResponse()?.status == 200)
        #expect(client.readResponse()?.body.count == 300_000)
        do {
            let leaving = try RawClient(port: server.port)
            leaving.send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
            usleep(100_000)
        }
        #expect(eventually { server.seen.closedPaths.withLock { $0 } == ["/wait"] })
        // A malformed body is answered by the server itself, and reported with the status it sent.
        let malformed = try RawClient(port: server.port)
        malformed.send("PUT /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        #expect(String(decoding: malformed.readToEnd(), as: UTF8.self).hasPrefix("HTTP/1.1 400 "))
        let expected = ["/slow 200", "/stream 200", "/count 400"]
        #expect(eventually { server.seen.answers.withLock { $0 } == expected })
        usleep(100_000)
        #expect(server.seen.answers.withLock { $0 } == expected, "an answer reported twice")
    }

    @Test func slowHeaderClientIsCutOffWith408() throws {
        let server = try TestServer { $0.headerTimeoutSeconds = 1 }
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        let start = Date()
        var answer: [UInt8] = []
        // One byte every 200 ms: always active, never done. The head deadline runs from the first byte regardless.
        for byte in "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".utf8 {
            client.send([byte])
            usleep(200_000)
            if Date().timeIntervalSince(start) > 1.5 { break }
        }
        answer = client.readToEnd()
        #expect(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 408"))
        #expect(Date().timeIntervalSince(start) < 5)
        #expect(eventually { server.server.connectionCount == 0 })
    }

    @Test func idleKeepAliveConnectionsAreClosed() throws {
        let server = try TestServer { $0.idleTimeoutSeconds = 1 }
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(client.readResponse()?.status == 200)
        #expect(client.isClosedByPeer())
    }

    @Test func thousandIdleConnectionsAndStillServing() throws {
        let server = try TestServer()
        defer { server.stop() }
        let clients = try (0..<1000).map { _ in try RawClient(port: server.port) }
        #expect(eventually(seconds: 10) { server.server.connectionCount == 1000 })
        let probe = try RawClient(port: server.port)
        probe.send("GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(probe.readResponse()?.body == Array("GET /probe".utf8))
        #expect(clients.count == 1000)
    }

    @Test func connectionLimitAnswers503() throws {
        let server = try TestServer { $0.connectionsMax = 3 }
        defer { server.stop() }
        let held = try (0..<3).map { _ in try RawClient(port: server.port) }
        #expect(eventually { server.server.connectionCount == 3 })
        let refused = try RawClient(port: server.port)
        let answer = String(decoding: refused.readToEnd(), as: UTF8.self)
        // Content-Length must count the whole body (it once said 19 for these 20 bytes).
        #expect(answer.hasPrefix("HTTP/1.1 503") && answer.hasSuffix("Content-Length: 20\r\n\r\ntoo many connections"), "\(answer)")
        #expect(held.count == 3)
    }

    @Test func slowReaderDoesNotMakeTheServerBuffer() throws {
        let server = try TestServer { $0.outputBytesHigh = 64 * 1024 }
        defer { server.stop() }
        let client = try RawClient(port: server.port, receiveBufferBytes: 64 * 1024)
        let total = 64 * 1024 * 1024
        client.send("GET /stream?bytes=\(total) HTTP/1.1\r\nHost: x\r\n\r\n")
        sleep(1)
        let produced = server.seen.producedBytes.withLock { $0 }
        // Kernel socket buffers hold a few MiB at most; the rest must wait for the reader.
        #expect(produced < 12 * 1024 * 1024, "produced \(produced) bytes for a client that reads nothing")
        let response = try #require(client.readResponse())
        #expect(response.body.count == total)
        #expect(response.body.prefix(300) == ArraySlice((0..<300).map { UInt8($0 % 251) }))
    }

    @Test(arguments: [
        (RawRequest("no Host", "GET / HTTP/1.1\r\n\r\n"), 400),
        (RawRequest("two lengths", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400),
        (RawRequest("HTTP/9.9", "GET / HTTP/9.9\r\nHost: x\r\n\r\n"), 505),
        (RawRequest("70 kB target", "GET /" + String(repeating: "a", count: 70_000) + " HTTP/1.1\r\nHost: x\r\n\r\n"), 414),
        (RawRequest("1.2 MB of headers", "GET / HTTP/1.1\r\nHost: x\r\n"
            + String(repeating: "X-Big: 0123456789012345678901234567890123456789\r\n", count: 25_000) + "\r\n"), 431),
        (RawRequest("huge length", "PUT /count HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n"), 413),
        (RawRequest("chunked HTTP/1.0", "PUT /count HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 411),
        (RawRequest("unknown expectation", "PUT /count HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n"), 417),
    ])
    func badRequestsGetTheirStatusAndAClose(request: RawRequest, status: Int) throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send(request.text)
        let answer = String(decoding: client.readToEnd(), as: UTF8.self)
        #expect(answer.hasPrefix("HTTP/1.1 \(status) "), "\(answer.prefix(80))")
        #expect(answer.contains("Connection: close"))
    }

    @Test func expectContinueIsHonoured() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send("PUT /count HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        let interim = try #require(client.readExactly(25))
        #expect(String(decoding: interim, as: UTF8.self) == "HTTP/1.1 100 Continue\r\n\r\n")
        client.send("hello")
        #expect(client.readResponse()?.body == Array("bytes=5 crc=\(CRC32C.checksum(Array("hello".utf8)))".utf8))
    }

    @Test func unreadBodyIsSkippedToReachTheNextRequest() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send("POST /ignored HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(client.readResponse()?.body == Array("POST /ignored".utf8))
        #expect(client.readResponse()?.body == Array("GET /next".utf8))
    }

    @Test func headAnswersWithoutBody() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send("HEAD /big HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        let head = try #require(client.readResponse(isHead: true))
        #expect(head.headers["content-length"] != nil)
        // The response to HEAD carries no body, so the next bytes are the next response.
        let after = try #require(client.readResponse())
        #expect(after.body == Array("GET /after".utf8))
    }

    @Test func gzipRequestBodiesAreInflatedAndBombsRefused() throws {
        let server = try TestServer { $0.http1.bodyBytesMax = 1024 * 1024 }
        defer { server.stop() }
        let plain = Array(String(repeating: "value=cairn&", count: 1000).utf8)
        let compressed = GzipCompressor().compress(plain, finish: true)
        let client = try RawClient(port: server.port)
        client.send("PUT /count HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: \(compressed.count)\r\n\r\n")
        client.send(compressed)
        #expect(client.readResponse()?.body == Array("bytes=\(plain.count) crc=\(CRC32C.checksum(plain))".utf8))
        let bomb = GzipCompressor().compress([UInt8](repeating: 0, count: 8 * 1024 * 1024), finish: true)
        client.send("PUT /count HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: \(bomb.count)\r\n\r\n")
        client.send(bomb)
        #expect(eventually { server.seen.bodyFailures.withLock { $0 } == [413] })
    }

    @Test func gracefulShutdownFinishesInFlightRequests() throws {
        let server = try TestServer()
        let client = try RawClient(port: server.port)
        client.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        usleep(50_000)
        let finished = DispatchSemaphore(value: 0)
        server.server.shutdown { finished.signal() }
        let response = try #require(client.readResponse())
        #expect(response.status == 200)
        #expect(response.body == Array("slow".utf8))
        #expect(response.headers["connection"] == "close")
        #expect(finished.wait(timeout: .now() + 5) == .success)
        #expect(throws: SocketError.self) { try RawClient(port: server.port) }
    }

    @Test func curlHTTP2PriorKnowledgeUpgradeAndCompressed() throws {
        let server = try TestServer()
        defer { server.stop() }
        let prior = try run(["curl", "-sS", "--http2-prior-knowledge", "-w", " %{http_version}", server.url("/v2/keys/a?x=1")])
        #expect(String(decoding: prior.output, as: UTF8.self) == "GET /v2/keys/a?x=1 2")
        let upgraded = try run(["curl", "-sS", "--http2", "-w", " %{http_version}", server.url("/up")])
        #expect(String(decoding: upgraded.output, as: UTF8.self) == "GET /up 2")
        let compressed = try run(["curl", "-sS", "--compressed", "-w", " %{size_download}", server.url("/big")])
        let text = String(decoding: compressed.output, as: UTF8.self)
        #expect(text.hasPrefix("{\"key\":\"/a\""))
        let downloaded = Int(text.split(separator: " ").last ?? "") ?? .max
        #expect(downloaded < 10_000, "gzip should shrink a 100 KB repetitive body, got \(downloaded) bytes on the wire")
        for flag in ["--http1.1", "--http2-prior-knowledge"] {
            let gzipped = try run(["curl", "-sS", flag, "-H", "Accept-Encoding: gzip", "-o", "/dev/null", "-w", "%{size_download}", server.url("/stream?bytes=200000")])
            #expect((Int(String(decoding: gzipped.output, as: UTF8.self)) ?? .max) < 200_000, "\(flag)")
        }
    }

    @Test func http2LargeBodiesBothWaysHonourFlowControl() throws {
        let server = try TestServer()
        defer { server.stop() }
        let file = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cairn-h2-upload-\(getpid())")
        var rng = SeededRandom(seed: 11)
        let payload = (0..<(10 * 1024 * 1024)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        try Data(payload).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let upload = try run(["curl", "-sS", "--http2-prior-knowledge", "-X", "PUT", "--data-binary", "@\(file.path)", server.url("/count")])
        #expect(String(decoding: upload.output, as: UTF8.self) == "bytes=\(payload.count) crc=\(CRC32C.checksum(payload))")
        #expect(server.seen.largestBodyPiece.withLock { $0 } <= Int(HTTP2Session.streamWindowBytes))
        let download = try run(["curl", "-sS", "--http2-prior-knowledge", server.url("/stream?bytes=\(20 * 1024 * 1024)")])
        #expect(download.output.count == 20 * 1024 * 1024)
        #expect(Array(download.output.prefix(502)) == (0..<502).map { UInt8($0 % 251) })
    }

    @Test func ipv6AndIPv4ListenersTogether() throws {
        let server = try TestServer { $0.addresses = [ListenAddress(host: "127.0.0.1", port: 0), ListenAddress(host: "::1", port: 0)] }
        defer { server.stop() }
        #expect(server.server.boundAddresses.count == 2)
        let v6 = try run(["curl", "-sS", "-g", "http://[::1]:\(server.server.boundAddresses[1].port)/six"])
        #expect(String(decoding: v6.output, as: UTF8.self) == "GET /six")
    }
}

@Suite(.serialized) struct HostileInputTests {
    /// Random bytes, random HTTP/1.1-looking garbage and random frames after the HTTP/2 preface, over real sockets:
    /// the server must survive every one of them and still answer a well-formed request afterwards.
    @Test func randomInputNeverTakesTheServerDown() throws {
        let server = try TestServer { $0.headerTimeoutSeconds = 1 }
        defer { server.stop() }
        var rng = SeededRandom(seed: 99)
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
        let h1 = Array("PUT /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n".utf8)
        for round in 0..<150 {
            let client = try RawClient(port: server.port)
            var garbage = (0..<Int.random(in: 1..<2000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            switch round % 3 {
            case 0: garbage = preface + garbage
            case 1: garbage = h1 + garbage
            default: break
            }
            client.send(garbage)
            shutdown(client.fd, Int32(SHUT_WR))
            _ = client.readToEnd()
        }
        #expect(eventually(seconds: 10) { server.server.connectionCount == 0 })
        let probe = try RawClient(port: server.port)
        probe.send("GET /alive HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(probe.readResponse()?.body == Array("GET /alive".utf8))
    }

    /// An aborted response is cut off where it stands, never completed: HTTP/1.1 loses the connection before the last
    /// chunk, HTTP/2 gets its stream reset.
    @Test func anAbortedResponseIsCutOffNotCompleted() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send("GET /abort HTTP/1.1\r\nHost: x\r\n\r\n")
        let received = String(decoding: client.readToEnd(), as: UTF8.self)
        #expect(received.hasPrefix("HTTP/1.1 200") && received.hasSuffix("7\r\npartial\r\n"), "\(received)")
        let h2 = try run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "5", server.url("/abort")])
        #expect(h2.status != 0)
        #expect(String(decoding: h2.output, as: UTF8.self).hasPrefix("partial"))
        #expect(eventually { server.server.gauges.exchangesLive == 0 })
    }

    @Test func http2StreamResetAndEarlyCloseFreeTheirExchanges() throws {
        let server = try TestServer()
        defer { server.stop() }
        // curl gives up after 1 s on a request the server never answers: the stream (and connection) go away.
        let result = try run(["curl", "-sS", "--http2-prior-knowledge", "--max-time", "1", server.url("/wait")])
        #expect(result.status != 0)
        #expect(eventually { server.seen.closedPaths.withLock { $0 } == ["/wait"] })
    }
}
