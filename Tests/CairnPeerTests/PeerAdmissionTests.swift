// Who gets in on a member's peer port, and what a connection may cost before it is let in: strangers' hellos are
// refused, a connection without a hello holds a few KiB and has a deadline, and such connections are capped.
import CairnBase
import CairnHTTP
import CairnTestSupport
import Foundation
import Glibc
import Synchronization
import Testing
@testable import CairnPeer

/// A blocking loopback client speaking raw bytes to a transport, as a stranger would.
final class RawPeerClient {
    let fd: Int32

    init(_ address: ListenAddress) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = address.port.bigEndian
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    /// Writes all of `bytes`; false once the member has closed the connection.
    @discardableResult
    func write(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    /// Reads until the member closes the connection (true) or the 10 s receive timeout passes (false).
    func closedByPeer() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 || (n < 0 && errno == ECONNRESET) { return true }
            if n < 0 { return false }
        }
    }

    static func hello(cluster: UInt64, from: UInt64, to: UInt64) -> [UInt8] {
        var writer = ByteWriter()
        writer.u64(cluster)
        writer.u64(from)
        writer.u64(to)
        writer.u8(0)
        return PeerFrame(type: 250, payload: writer.bytes).encoded()
    }
}

@Suite(.serialized) struct PeerAdmissionTests {
    func member(id: UInt64, configure: (inout PeerTransportConfiguration) -> Void = { _ in }) throws -> (PeerTransport, Inbox) {
        var configuration = PeerTransportConfiguration(clusterID: 0xC1, localID: id, listenAddresses: [ListenAddress(host: "127.0.0.1", port: 0)])
        configure(&configuration)
        let inbox = Inbox()
        let transport = PeerTransport(configuration: configuration, deliveryQueue: DispatchQueue(label: "node-\(id)"),
                                      report: { line in inbox.reports.withLock { $0.append(line) } },
                                      deliver: { from, frame in inbox.received.withLock { $0.append((from, frame)) }; return true })
        // Member 2 is in the table (at an address nobody listens on); anyone else is a stranger.
        transport.setPeers([2: ListenAddress(host: "127.0.0.1", port: 1)])
        try transport.start()
        return (transport, inbox)
    }

    @Test func onlyMembersOfTheTableAreLetInWhateverClusterTheyClaim() throws {
        let (transport, inbox) = try member(id: 1)
        defer { transport.stop() }
        let address = transport.boundAddresses[0]
        for (cluster, from) in [(UInt64(0xC1), UInt64(0x5757)), (0, 0x5757)] {
            let stranger = try RawPeerClient(address)
            stranger.write(RawPeerClient.hello(cluster: cluster, from: from, to: 1))
            // A proposal frame right behind the hello: it must never reach the node.
            stranger.write(PeerFrame(type: 2, payload: [1, 2, 3]).encoded())
            #expect(stranger.closedByPeer())
        }
        // A member of the table may say it is still joining (cluster 0) and is let in.
        let joiner = try RawPeerClient(address)
        joiner.write(RawPeerClient.hello(cluster: 0, from: 2, to: 1))
        joiner.write(PeerFrame(type: 7, payload: [9]).encoded())
        #expect(eventually { inbox.received.withLock { $0.count } == 1 })
        #expect(inbox.received.withLock { $0.allSatisfy { $0.from == 2 } })
        #expect(inbox.reports.withLock { $0.filter { $0.contains("not in this member's member table") }.count } == 2)
    }

    /// The memory attack: a frame of 64 MB announced before any hello used to be buffered whole.
    @Test func aConnectionWithoutAHelloMayNotAnnounceALargeFrame() throws {
        let (transport, _) = try member(id: 1)
        defer { transport.stop() }
        let stranger = try RawPeerClient(transport.boundAddresses[0])
        var header: [UInt8] = []
        withUnsafeBytes(of: UInt32(64 << 20).littleEndian) { header += $0 }
        header += [250, 0, 0, 0, 0]
        stranger.write(header)
        // The member closes it at once; it never reads the megabytes that would follow.
        #expect(stranger.closedByPeer())
        #expect(!stranger.write([UInt8](repeating: 0, count: 4 << 20)))
        #expect(transport.statistics.framesReceived == 0)
    }

    @Test func aSilentConnectionIsClosedAtItsHelloDeadline() throws {
        let (transport, _) = try member(id: 1) { $0.helloTimeoutMilliseconds = 200 }
        defer { transport.stop() }
        let silent = try RawPeerClient(transport.boundAddresses[0])
        #expect(silent.closedByPeer())
        #expect(transport.statistics.connectionsRefused == 1)
    }

    @Test func connectionsWaitingForTheirHelloAreCapped() throws {
        let (transport, inbox) = try member(id: 1) { $0.unhelloedConnectionsMax = 4 }
        defer { transport.stop() }
        let address = transport.boundAddresses[0]
        var waiting: [RawPeerClient] = []
        for _ in 0..<4 { waiting.append(try RawPeerClient(address)) }
        #expect(eventually { transport.statistics.connectionsRefused == 0 && transport.statistics.connects == 0 })
        let extra = try RawPeerClient(address)
        #expect(extra.closedByPeer())
        // Once one of them says hello, there is room again.
        waiting[0].write(RawPeerClient.hello(cluster: 0xC1, from: 2, to: 1))
        waiting[0].write(PeerFrame(type: 7, payload: []).encoded())
        #expect(eventually { inbox.received.withLock { $0.count } == 1 })
        let another = try RawPeerClient(address)
        another.write(RawPeerClient.hello(cluster: 0xC1, from: 2, to: 1))
        another.write(PeerFrame(type: 7, payload: []).encoded())
        #expect(eventually { inbox.received.withLock { $0.count } == 2 })
    }

    @Test func aMemberPastItsConnectionCapLosesItsOldestConnection() throws {
        let (transport, inbox) = try member(id: 1) { $0.connectionsPerMemberMax = 3 }
        defer { transport.stop() }
        var connections: [RawPeerClient] = []
        for n in 0..<4 {
            let connection = try RawPeerClient(transport.boundAddresses[0])
            connection.write(RawPeerClient.hello(cluster: 0xC1, from: 2, to: 1) + PeerFrame(type: 7, payload: []).encoded())
            // Each hello is accepted before the next connection opens, so the order of acceptance is known.
            #expect(eventually { inbox.received.withLock { $0.count } == n + 1 })
            connections.append(connection)
        }
        #expect(connections[0].closedByPeer())
        for connection in connections[1...] { connection.write(PeerFrame(type: 7, payload: []).encoded()) }
        #expect(eventually { inbox.received.withLock { $0.count } == 7 })
    }

    @Test func aRefusedFrameClosesItsConnection() throws {
        var configuration = PeerTransportConfiguration(clusterID: 0xC1, localID: 1, listenAddresses: [ListenAddress(host: "127.0.0.1", port: 0)])
        configuration.helloTimeoutMilliseconds = 5000
        let delivered = Mutex<[UInt8]>([])
        let transport = PeerTransport(configuration: configuration, deliveryQueue: DispatchQueue(label: "node-1"),
                                      deliver: { _, frame in
                                          delivered.withLock { $0.append(frame.type) }
                                          return frame.type != 66
                                      })
        transport.setPeers([2: ListenAddress(host: "127.0.0.1", port: 1)])
        try transport.start()
        defer { transport.stop() }
        let peer = try RawPeerClient(transport.boundAddresses[0])
        peer.write(RawPeerClient.hello(cluster: 0xC1, from: 2, to: 1))
        // What follows a refused frame in the same write is dropped with it, never delivered.
        peer.write(PeerFrame(type: 7, payload: []).encoded() + PeerFrame(type: 66, payload: [1]).encoded()
                   + PeerFrame(type: 8, payload: []).encoded())
        #expect(peer.closedByPeer())
        #expect(transport.statistics.framesRefused == 1)
        #expect(delivered.withLock { $0 } == [7, 66])
    }
}
