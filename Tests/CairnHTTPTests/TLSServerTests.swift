// The server over TLS on loopback: curl by HTTP/1.1 and by ALPN's h2, client certificates (missing, untrusted,
// expired, revoked), hostile handshakes (garbage, stalled, oversized record), resumption, and certificate rotation.
import CairnBase
import CairnTestSupport
import Foundation
import Glibc
import Synchronization
import Testing
@testable import CairnHTTP

@Suite(.serialized) struct TLSServerTests {
    static func path(_ name: String) -> String { TestCertificates.path(name) }

    static func serverTLS(clientCertificates: Bool = false, certificate: String = path("server.crt"), key: String = path("server.key"),
                          reloadMilliseconds: Int = 2000, reports: ReportLog? = nil, revocationList: String = "ca.crl") throws -> TLSContext {
        var configuration = TLSConfiguration(certificateFile: certificate, keyFile: key)
        configuration.offersHTTP = true
        configuration.reloadCheckIntervalMilliseconds = reloadMilliseconds
        if clientCertificates {
            configuration.trustedCAFile = path("ca.crt")
            configuration.requiresClientCertificate = true
            configuration.revocationListFile = path(revocationList)
        }
        return try TLSContext(configuration: configuration, role: .accepting) { line in reports?.lines.withLock { $0.append(line) } }
    }

    static func server(_ tls: TLSContext, configure: (inout HTTPServerConfiguration) -> Void = { _ in }) throws -> TestServer {
        try TestServer {
            $0.addresses = [ListenAddress(host: "127.0.0.1", port: 0, usesTLS: true)]
            $0.tls = tls
            configure(&$0)
        }
    }

    /// curl's exit status and output (the body, then the HTTP version on its own line).
    static func curl(_ port: UInt16, _ options: [String]) throws -> (status: Int32, output: String) {
        let result = try run(["curl", "-s", "--max-time", "10", "--cacert", path("ca.crt"), "-w", "\n%{http_version}"] + options
            + ["https://127.0.0.1:\(port)/hello"])
        return (result.status, String(decoding: result.output, as: UTF8.self))
    }

    @Test func curlGetsHTTP1AndHTTP2ByALPN() throws {
        let server = try Self.server(Self.serverTLS())
        defer { server.stop() }
        #expect(try Self.curl(server.port, ["--http1.1"]).output == "GET /hello\n1.1")
        #expect(try Self.curl(server.port, ["--http2"]).output == "GET /hello\n2")
    }

    @Test func clientCertificateRequiredTrustedCurrentAndUnrevoked() throws {
        let reports = ReportLog()
        let server = try Self.server(Self.serverTLS(clientCertificates: true, reports: reports))
        defer { server.stop() }
        func certificate(_ name: String) -> [String] { ["--cert", Self.path("\(name).crt"), "--key", Self.path("\(name).key")] }
        let good = try Self.curl(server.port, certificate("client"))
        #expect(good.output == "GET /hello\n2")
        #expect(try Self.curl(server.port, []).status != 0)
        for refused in ["untrusted", "expired", "revoked"] {
            #expect(try Self.curl(server.port, certificate(refused)).status != 0, "\(refused) certificate accepted")
        }
        #expect(eventually { server.server.connectionCount == 0 })
        // The log says which check failed.
        for verdict in ["peer did not return a certificate", "(unable to get local issuer certificate)", "(certificate has expired)",
                        "(certificate revoked)"] {
            #expect(reports.lines.withLock { $0.contains { $0.hasSuffix(verdict) } }, "\(verdict)")
        }
    }

    /// etcd reads a CRL for its serial numbers only: an expired one still refuses what it revokes, and nothing else.
    @Test func expiredRevocationListStillRevokesAndOnlyThat() throws {
        let server = try Self.server(Self.serverTLS(clientCertificates: true, revocationList: "expired.crl"))
        defer { server.stop() }
        func certificate(_ name: String) -> [String] { ["--http1.1", "--cert", Self.path("\(name).crt"), "--key", Self.path("\(name).key")] }
        #expect(try Self.curl(server.port, certificate("client")).output == "GET /hello\n1.1")
        #expect(try Self.curl(server.port, certificate("revoked")).status != 0)
    }

    @Test(arguments: [
        RawRequest("plain HTTP", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        RawRequest("a handshake record of garbage", "\u{16}\u{03}\u{01}\u{00}\u{10}0123456789abcdef"),
    ])
    func garbageHandshakeIsClosed(_ request: RawRequest) throws {
        let reports = ReportLog()
        let server = try Self.server(Self.serverTLS(reports: reports))
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send(request.text)
        _ = client.readToEnd()
        #expect(client.isClosedByPeer())
        #expect(eventually { server.server.connectionCount == 0 })
        #expect(reports.lines.withLock { $0.contains { $0.hasPrefix("tls: rejected connection from 127.0.0.1:") } })
    }

    @Test func recordLongerThanTLSAllowsIsClosed() throws {
        let server = try Self.server(Self.serverTLS())
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        // A handshake record announcing 65535 bytes: TLS allows 16 KiB plus 2 KiB of expansion.
        client.send([0x16, 0x03, 0x03, 0xFF, 0xFF] + [UInt8](repeating: 1, count: 20_000))
        _ = client.readToEnd()
        #expect(client.isClosedByPeer())
        #expect(eventually { server.server.connectionCount == 0 })
    }

    @Test func stalledHandshakeIsClosedAtItsDeadline() throws {
        let reports = ReportLog()
        let server = try Self.server(Self.serverTLS(reports: reports)) { $0.tlsHandshakeTimeoutSeconds = 1 }
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        // The start of a record header, then nothing: the server must not wait for the rest forever.
        client.send([0x16, 0x03, 0x01])
        #expect(client.isClosedByPeer())
        #expect(eventually { server.server.connectionCount == 0 })
        #expect(reports.lines.withLock { $0.contains { $0.hasSuffix("TLS handshake not finished within 1 s") } })
    }

    /// Bodies of many records both ways, so writes stop half-way (WANT_WRITE) and reads leave records in OpenSSL.
    @Test(arguments: ["--http1.1", "--http2"])
    func largeBodiesBothWays(_ version: String) throws {
        let server = try Self.server(Self.serverTLS())
        defer { server.stop() }
        let upload = NSTemporaryDirectory() + "cairn-tls-upload-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: upload) }
        let bytes = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try Data(bytes).write(to: URL(fileURLWithPath: upload))
        var crc = CRC32C()
        crc.update(bytes)
        let base = ["curl", "-s", "--max-time", "30", "--cacert", Self.path("ca.crt"), version]
        let counted = try run(base + ["--data-binary", "@\(upload)", "https://127.0.0.1:\(server.port)/count"])
        #expect(String(decoding: counted.output, as: UTF8.self) == "bytes=\(8 << 20) crc=\(crc.value)")
        let streamed = try run(base + ["https://127.0.0.1:\(server.port)/stream?bytes=\(20 << 20)"]).output
        #expect(streamed.count == 20 << 20)
        #expect(streamed.enumerated().allSatisfy { $0.element == UInt8($0.offset % 251) })
    }

    @Test func cipherSuitesByGoNameAndMinimumVersion() throws {
        var configuration = TLSConfiguration(certificateFile: Self.path("server.crt"), keyFile: Self.path("server.key"))
        configuration.offersHTTP = true
        // Go also names this suite without "_SHA256".
        configuration.cipherSuites = ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"]
        let tls12 = try Self.server(TLSContext(configuration: configuration, role: .accepting))
        defer { tls12.stop() }
        let suiteTLS12 = ["--tls-max", "1.2", "--ciphers"]
        #expect(try Self.curl(tls12.port, suiteTLS12 + ["ECDHE-ECDSA-AES128-GCM-SHA256"]).output == "GET /hello\n2")
        #expect(try Self.curl(tls12.port, suiteTLS12 + ["ECDHE-ECDSA-CHACHA20-POLY1305"]).output == "GET /hello\n2")
        #expect(try Self.curl(tls12.port, suiteTLS12 + ["ECDHE-ECDSA-AES256-GCM-SHA384"]).status != 0)
        configuration.cipherSuites = ["TLS_NO_SUCH_SUITE"]
        #expect(throws: TLSError.self) { try TLSContext(configuration: configuration, role: .accepting) }
        configuration.cipherSuites = []
        configuration.minimumVersion = .tls13
        let tls13 = try Self.server(TLSContext(configuration: configuration, role: .accepting))
        defer { tls13.stop() }
        #expect(try Self.curl(tls13.port, ["--tls-max", "1.2"]).status != 0)
        #expect(try Self.curl(tls13.port, []).output == "GET /hello\n2")
    }

    @Test func refusedHandshakesAreReportedAtMostTenASecond() throws {
        let reports = ReportLog()
        let tls = try Self.serverTLS(reports: reports)
        let start = monotonicNanoseconds()
        for _ in 0..<25 { tls.handshakeRefused(fd: -1, reason: "garbage", now: start) }
        #expect(reports.lines.withLock { $0.count } == TLSContext.refusalReportsPerSecondMax)
        // A queue that read the clock before another took the lock comes in with an earlier time: no trap.
        tls.handshakeRefused(fd: -1, reason: "garbage", now: start - 1)
        tls.handshakeRefused(fd: -1, reason: "garbage", now: start + 1_000_000_000)
        #expect(reports.lines.withLock { $0.last } == "tls: rejected connection from unknown: garbage (and 16 more not reported)")
    }

    @Test func sessionResumesFromATicket() throws {
        let server = try Self.server(Self.serverTLS())
        defer { server.stop() }
        let session = NSTemporaryDirectory() + "cairn-tls-session-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: session) }
        let connect = ["openssl", "s_client", "-connect", "127.0.0.1:\(server.port)", "-tls1_2", "-CAfile", Self.path("ca.crt")]
        let first = try run(connect + ["-sess_out", session])
        let second = try run(connect + ["-sess_in", session])
        #expect(String(decoding: first.output, as: UTF8.self).contains("New, TLSv1.2"))
        #expect(String(decoding: second.output, as: UTF8.self).contains("Reused, TLSv1.2"))
    }

    /// `--client-cert-allowed-hostname`: the client's certificate (SANs 127.0.0.1 and localhost) must name the host.
    @Test(arguments: [("localhost", true), ("127.0.0.1", true), ("other.example", false), ("10.0.0.1", false)])
    func clientCertificateMustNameTheAllowedHost(_ host: String, accepted: Bool) throws {
        var configuration = TLSConfiguration(certificateFile: Self.path("server.crt"), keyFile: Self.path("server.key"))
        configuration.trustedCAFile = Self.path("ca.crt")
        configuration.requiresClientCertificate = true
        configuration.allowedHostname = host
        let server = try Self.server(TLSContext(configuration: configuration, role: .accepting))
        defer { server.stop() }
        let result = try Self.curl(server.port, ["--http1.1", "--cert", Self.path("client.crt"), "--key", Self.path("client.key")])
        #expect((result.output == "GET /hello\n1.1") == accepted, "\(result)")
    }

    @Test func h2cUpgradeIsIgnoredOverTLS() throws {
        let server = try Self.server(Self.serverTLS())
        defer { server.stop() }
        let client = try TLSTestClient(port: server.port)
        let upgrade = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
        #expect(client.get("/upgrade", headers: upgrade) == "GET /upgrade")
        #expect(client.get("/after") == "GET /after")
    }

    @Test func rotatedCertificateServesNewHandshakesWhileOldConnectionsStay() throws {
        let directory = NSTemporaryDirectory() + "cairn-tls-rotate-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func install(_ name: String) throws {
            for suffix in ["crt", "key"] {
                // Written beside and renamed into place, as deployment tools do, so no handshake sees half a file.
                let data = try Data(contentsOf: URL(fileURLWithPath: Self.path("\(name).\(suffix)")))
                try data.write(to: URL(fileURLWithPath: "\(directory)/tls.\(suffix)"), options: .atomic)
            }
        }
        try install("server")
        let server = try Self.server(Self.serverTLS(certificate: "\(directory)/tls.crt", key: "\(directory)/tls.key", reloadMilliseconds: 0))
        defer { server.stop() }
        let before = try TLSTestClient(port: server.port)
        #expect(before.serverCommonName == "server")
        #expect(before.get("/one") == "GET /one")
        try install("server2")
        let after = try TLSTestClient(port: server.port)
        #expect(after.serverCommonName == "server-rotated")
        #expect(before.get("/two") == "GET /two")
        #expect(after.get("/three") == "GET /three")
    }
}

/// What a TLS context reported (refused handshakes, reloads).
final class ReportLog: Sendable {
    let lines = Mutex<[String]>([])
}

/// A blocking TLS client over a loopback socket (10 s receive timeout), trusting the test CA.
final class TLSTestClient {
    private let raw: RawClient
    private let stream: TLSStream
    let serverCommonName: String?

    init(port: UInt16) throws {
        raw = try RawClient(port: port)
        var configuration = TLSConfiguration(certificateFile: TestCertificates.path("client.crt"), keyFile: TestCertificates.path("client.key"))
        configuration.trustedCAFile = TestCertificates.path("ca.crt")
        let context = try TLSContext(configuration: configuration, role: .dialling)
        stream = try #require(context.makeSession(fd: raw.fd, serverName: "127.0.0.1"))
        // On a blocking socket the handshake completes (or fails) within the first write.
        guard case .wrote = stream.write(UnsafeRawBufferPointer(start: nil, count: 0)) else { throw TLSError("handshake failed") }
        serverCommonName = stream.peerCommonName()
    }

    /// The body of a keep-alive GET's answer (the test handler's are short and sized by Content-Length).
    func get(_ path: String, headers: String = "") -> String? {
        let request = Array("GET \(path) HTTP/1.1\r\nHost: x\r\n\(headers)\r\n".utf8)
        guard case .wrote(request.count) = request.withUnsafeBytes({ stream.write($0) }) else { return nil }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        for _ in 0..<100 {
            guard case .bytes(let n) = buffer.withUnsafeMutableBytes({ stream.read(into: $0) }) else { return nil }
            received += buffer[0..<n]
            let text = String(decoding: received, as: UTF8.self)
            guard let split = text.range(of: "\r\n\r\n"),
                  let lengthLine = text[..<split.lowerBound].split(separator: "\r\n").first(where: { $0.lowercased().hasPrefix("content-length:") }),
                  let length = Int(lengthLine.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) else { continue }
            let body = text[split.upperBound...]
            if body.utf8.count >= length { return String(body) }
        }
        return nil
    }
}
