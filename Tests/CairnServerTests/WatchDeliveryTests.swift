// Watches against a one-member cluster over real loopback sockets: what a closed watch leaves behind, how many times
// an event is encoded for many watchers, and what happens to a stream watcher that does not read.
import CairnHTTP
import CairnTestSupport
import Dispatch
import Glibc
import Synchronization
import Testing
@testable import CairnServer

/// A one-member cluster behind the real client handler.
final class WatchTestMember {
    let cluster: InProcessCluster
    let leader: UInt64
    let http: HTTPServer
    var node: KeySpaceNode { cluster.nodes[leader]! }
    var port: UInt16 { http.boundAddresses[0].port }

    init() throws {
        cluster = try InProcessCluster(size: 1)
        leader = try #require(cluster.awaitLeader())
        var configuration = HTTPServerConfiguration(addresses: [ListenAddress(host: "127.0.0.1", port: 0)])
        configuration.eventLoopCount = 2
        let member = MemberInfo(id: leader, name: "m", peerURLs: [], clientURLs: [], startTime: 0)
        http = HTTPServer(configuration: configuration, handler: ClientHandler(member: member, node: cluster.nodes[leader]!, token: "t"))
        try http.start()
    }

    deinit {
        let done = DispatchSemaphore(value: 0)
        http.shutdown { done.signal() }
        done.wait()
    }
}

/// A blocking loopback socket that sends a request and reads raw bytes.
final class WatchClient {
    let fd: Int32

    init(port: UInt16, receiveBufferBytes: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBufferBytes { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(status == 0)
    }

    deinit { close(fd) }

    func send(_ text: String) {
        _ = Array(text.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until `marker` has arrived; false if the peer closed or the timeout passed first.
    func read(until marker: String) -> Bool {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !received.ends(with: marker) {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return false }
            received += buffer[0..<n]
        }
        return true
    }

    /// Reads and discards until the peer closes (true) or the timeout passes (false).
    func readUntilClosed() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}

extension [UInt8] {
    fileprivate func ends(with marker: String) -> Bool {
        let tail = Array(marker.utf8)
        return count >= tail.count && Array(self[(count - tail.count)...]) == tail
    }
}

@Suite(.serialized) struct WatchDeliveryTests {
    /// Gzip watches whose clients leave after the head (or after one streamed event) free everything at once: the
    /// hub's registration, the exchange (which the five-minute timeout used to keep) and its deflate stream.
    @Test func closedGzipWatchesFreeTheirStateAtOnce() throws {
        let member = try WatchTestMember()
        for round in 0..<4 {
            var clients: [WatchClient] = []
            for _ in 0..<50 {
                let client = try WatchClient(port: member.port)
                client.send("GET /v2/keys/churn?wait=true\(round % 2 == 1 ? "&stream=true" : "") HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
                #expect(client.read(until: "\r\n\r\n"))
                clients.append(client)
            }
            #expect(member.node.watcherCount == 50)
            if round % 2 == 1 {
                // Stream watchers take an event (each now has a deflate stream), then leave.
                #expect(throws: Never.self) { try member.cluster.write(member.leader, "/churn", "v\(round)").get() }
                #expect(eventually { member.http.gauges.gzipStreamsLive == 50 })
            }
            clients.removeAll()
            #expect(eventually { member.node.watcherCount == 0 })
            #expect(eventually { member.http.gauges.exchangesLive == 0 }, "\(member.http.gauges.exchangesLive) exchanges kept")
            #expect(eventually { member.http.gauges.gzipStreamsLive == 0 }, "\(member.http.gauges.gzipStreamsLive) deflate streams kept")
        }
    }

    /// 1,000 one-shot watchers on a key and one write: the event is encoded once, and every watcher gets that one copy.
    @Test func oneEncodingPerEventSharedByAThousandWatchers() throws {
        let member = try WatchTestMember()
        let received = Mutex<[ObjectIdentifier: Int]>([:])
        let registered = DispatchSemaphore(value: 0)
        for _ in 0..<1000 {
            member.node.watch(path: "/hot", recursive: false, stream: false, sinceIndex: 0,
                              deliver: { event in received.withLock { $0[ObjectIdentifier(event), default: 0] += 1 } },
                              registered: { _, _ in registered.signal() })
        }
        for _ in 0..<1000 { registered.wait() }
        let before = member.node.watchDelivery.encodedEvents
        #expect(throws: Never.self) { try member.cluster.write(member.leader, "/hot", String(repeating: "v", count: 64 * 1024)).get() }
        #expect(eventually { received.withLock { $0.values.reduce(0, +) } == 1000 })
        #expect(received.withLock { $0.count } == 1, "all watchers share one encoded event")
        #expect(member.node.watchDelivery.encodedEvents - before == 1)
        #expect(member.node.watcherCount == 0)
        // A second thousand resume from that event's index: history hands them the same encoding.
        let index = member.node.view().etcdIndex
        for _ in 0..<1000 {
            member.node.watch(path: "/hot", recursive: false, stream: false, sinceIndex: index,
                              deliver: { event in received.withLock { $0[ObjectIdentifier(event), default: 0] += 1 } },
                              registered: { _, _ in })
        }
        #expect(eventually { received.withLock { $0.values.reduce(0, +) } == 2000 })
        #expect(received.withLock { $0.count } == 1)
        #expect(member.node.watchDelivery.encodedEvents - before == 1)
    }

    /// A stream watcher that never reads is dropped once its undelivered events pass the bound, while writes go on
    /// and a reading watcher on the same key keeps receiving.
    @Test func aStreamWatcherThatDoesNotReadIsDroppedPastTheBound() throws {
        let member = try WatchTestMember()
        let idle = try WatchClient(port: member.port, receiveBufferBytes: 16 * 1024)
        idle.send("GET /v2/keys/big?wait=true&stream=true HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(idle.read(until: "\r\n\r\n"))
        #expect(eventually { member.node.watcherCount == 1 })
        let value = String(repeating: "b", count: 256 * 1024)
        // The bound, the connection's output bound and the socket buffers take fewer than 100 such events.
        var writes = 0
        while member.node.watchDelivery.droppedWatchers == 0, writes < 200 {
            #expect(throws: Never.self) { try member.cluster.write(member.leader, "/big", value).get() }
            writes += 1
        }
        #expect(member.node.watchDelivery.droppedWatchers == 1, "dropped after \(writes) writes of 256 KiB")
        #expect(writes * 256 * 1024 > WatchOutput.queuedBytesMax, "not before the bound")
        #expect(eventually { member.node.watcherCount == 0 })
        #expect(idle.readUntilClosed(), "the client sees its connection closed")
        #expect(throws: Never.self) { try member.cluster.write(member.leader, "/big", "after").get() }
        // Events already handed to the delivery queue still name the watch until that queue has encoded them (seconds
        // of 256 KiB values in a debug build); then nothing keeps the exchange.
        #expect(eventually(seconds: 60) { member.http.gauges.exchangesLive == 0 }, "\(member.http.gauges.exchangesLive) exchanges kept")
    }
}
