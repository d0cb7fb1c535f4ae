// Members over TLS with peer client-certificate auth: frames flow both ways, and a stranger whose certificate is
// untrusted, names another CN or is missing is dropped in the handshake, before any of its frames is read.
import CairnBase
import CairnHTTP
import CairnTestSupport
import Foundation
import Glibc
import Synchronization
import Testing
@testable import CairnPeer

@Suite(.serialized) struct PeerTLSTests {
    static func tls(_ role: TLSContext.Role, name: String = "peer") throws -> TLSContext {
        var configuration = TLSConfiguration(certificateFile: TestCertificates.path("\(name).crt"), keyFile: TestCertificates.path("\(name).key"))
        configuration.trustedCAFile = TestCertificates.path("ca.crt")
        configuration.requiresClientCertificate = true
        configuration.allowedCommonName = role == .accepting ? "member" : nil
        return try TLSContext(configuration: configuration, role: role)
    }

    /// A member listening on an https:// address; member 2 is in its table (at an address nobody listens on).
    func member(id: UInt64) throws -> (PeerTransport, Inbox) {
        var configuration = PeerTransportConfiguration(
            clusterID: 0xC1, localID: id, listenAddresses: [ListenAddress(host: "127.0.0.1", port: 0, usesTLS: true)])
        configuration.acceptingTLS = try Self.tls(.accepting)
        configuration.diallingTLS = try Self.tls(.dialling)
        let inbox = Inbox()
        let transport = PeerTransport(configuration: configuration, deliveryQueue: DispatchQueue(label: "node-\(id)"),
                                      report: { line in inbox.reports.withLock { $0.append(line) } },
                                      deliver: { from, frame in inbox.received.withLock { $0.append((from, frame)) }; return true })
        transport.setPeers([(id == 1 ? 2 : 1): ListenAddress(host: "127.0.0.1", port: 1, usesTLS: true)])
        try transport.start()
        return (transport, inbox)
    }

    @Test func membersExchangeFramesOverMutualTLS() throws {
        let (a, aInbox) = try member(id: 1), (b, bInbox) = try member(id: 2)
        defer { a.stop(); b.stop() }
        a.setPeers([2: b.boundAddresses[0]])
        b.setPeers([1: a.boundAddresses[0]])
        #expect(eventually(seconds: 10) { a.statistics.connects >= 2 && b.statistics.connects >= 2 })
        // Frames larger than a TLS record, so reads leave decrypted bytes behind in OpenSSL.
        let big = (0..<(300 * 1024)).map { UInt8(truncatingIfNeeded: $0) }
        for i in 0..<50 {
            a.send(to: 2, channel: .bulk, frame: PeerFrame(type: 1, payload: big + Array("\(i)".utf8)))
            a.send(to: 2, channel: .control, frame: PeerFrame(type: 2, payload: Array("control \(i)".utf8)))
        }
        b.send(to: 1, channel: .control, frame: PeerFrame(type: 3, payload: Array("back".utf8)))
        #expect(eventually(seconds: 20) { bInbox.received.withLock { $0.count } == 100 && aInbox.received.withLock { $0.count } == 1 })
        let frames = bInbox.received.withLock { $0 }
        #expect(frames.filter { $0.frame.type == 1 }.map(\.frame.payload) == (0..<50).map { big + Array("\($0)".utf8) })
        #expect(frames.filter { $0.frame.type == 2 }.map { String(decoding: $0.frame.payload, as: UTF8.self) } == (0..<50).map { "control \($0)" })
    }

    @Test func aDroppedLinkResumesItsTLSSession() throws {
        let (a, _) = try member(id: 1), (b, bInbox) = try member(id: 2)
        defer { a.stop(); b.stop() }
        a.setPeers([2: b.boundAddresses[0]])
        b.setPeers([1: a.boundAddresses[0]])
        // A frame through each of a's links: a has read from both since b took its hello (and sent its tickets).
        for channel in PeerChannel.allCases {
            #expect(eventually(seconds: 10) {
                a.send(to: 2, channel: channel, frame: PeerFrame(type: 1, payload: [channel.rawValue]))
                return bInbox.received.withLock { $0.contains { $0.frame.payload == [channel.rawValue] } }
            })
        }
        #expect(a.statistics.tlsSessionsResumed == 0)
        // b drops member 1's connections (and takes it back at once): a dials again with the sessions it kept.
        b.setPeers([:])
        b.setPeers([1: a.boundAddresses[0]])
        #expect(eventually(seconds: 10) { a.statistics.tlsSessionsResumed >= 1 }, "\(a.statistics)")
    }

    /// A port that takes the connection and never answers the ClientHello: the link gives up and dials again.
    @Test func dialledHandshakeThatStallsIsRetried() throws {
        let silent = try #require(try Socket.listen(ListenAddress(host: "127.0.0.1", port: 0), backlog: 16).first)
        defer { close(silent.fd) }
        var configuration = PeerTransportConfiguration(clusterID: 0xC1, localID: 1, listenAddresses: [])
        configuration.diallingTLS = try Self.tls(.dialling)
        configuration.helloTimeoutMilliseconds = 100
        let transport = PeerTransport(configuration: configuration, deliveryQueue: DispatchQueue(label: "node-1"), deliver: { _, _ in true })
        defer { transport.stop() }
        try transport.start()
        transport.setPeers([2: ListenAddress(host: "127.0.0.1", port: silent.port, usesTLS: true)])
        // Two channels, each connected (the kernel completes TCP without an accept), timed out and connected again.
        #expect(eventually(seconds: 10) { transport.statistics.connects >= 4 })
    }

    /// Each claims to be member 2 (in the table) and sends a hello and a proposal: none may reach the node.
    @Test(arguments: ["untrusted", "othercn", "plain"])
    func strangerIsDroppedInTheHandshake(_ certificate: String) throws {
        let (transport, inbox) = try member(id: 1)
        defer { transport.stop() }
        let stranger = try RawPeerClient(transport.boundAddresses[0])
        let frames = RawPeerClient.hello(cluster: 0xC1, from: 2, to: 1) + PeerFrame(type: 2, payload: [1, 2, 3]).encoded()
        if certificate == "plain" {
            stranger.write(frames)
        } else {
            var configuration = TLSConfiguration(certificateFile: TestCertificates.path("\(certificate).crt"),
                                                 keyFile: TestCertificates.path("\(certificate).key"))
            configuration.trustedCAFile = TestCertificates.path("ca.crt")
            let session = try #require(try TLSContext(configuration: configuration, role: .dialling).makeSession(fd: stranger.fd))
            // TLS 1.3: the client's side of the handshake ends before the member has checked its certificate.
            _ = frames.withUnsafeBytes { session.write($0) }
        }
        #expect(stranger.closedByPeer())
        #expect(eventually { transport.statistics.connectionsRefused == 1 })
        #expect(transport.statistics.framesReceived == 0)
        #expect(inbox.received.withLock { $0.isEmpty })
        #expect(inbox.reports.withLock { $0.contains { $0.contains("refused a connection from 127.0.0.1:") && $0.contains("TLS handshake") } })
        if certificate == "othercn" {
            #expect(inbox.reports.withLock { $0.contains { $0.hasSuffix("(the certificate's CN is not the one allowed)") } })
        }
    }
}
