// Watches against a one-member cluster over real loopback sockets: what a closed watch leaves behind, how many times
// an event is encoded for many watchers, what happens to a stream watcher that does not read, and watches registered
// off the member's queue (while it is busy, and while writes are applied).
import CairnHTTP
import CairnStore
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
            #expect(eventually { member.node.watchDelivery.deadlines.count == 0 }, "\(member.node.watchDelivery.deadlines.count) deadlines kept")
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

    /// A watch registers and answers its head while the member's queue is busy (a long batch, an fsync): registering
    /// takes the watch registry's lock, not a turn on that queue. Its event comes once the queue runs again.
    @Test func aWatchRegistersWhileTheMembersQueueIsBusy() throws {
        let member = try WatchTestMember()
        let release = DispatchSemaphore(value: 0)
        member.node.queue.async { release.wait() }
        let client = try WatchClient(port: member.port)
        client.send("GET /v2/keys/busy?wait=true HTTP/1.1\r\nHost: x\r\n\r\n")
        let headArrived = client.read(until: "\r\n\r\n")
        release.signal()
        #expect(headArrived, "the watch waited for the member's queue")
        #expect(member.node.watcherCount == 1)
        #expect(throws: Never.self) { try member.cluster.write(member.leader, "/busy", "v").get() }
        #expect(client.read(until: "0\r\n\r\n"), "the event ends the long-poll")
        #expect(member.node.watcherCount == 0)
    }

    /// Stream watches that register from history while writes are being applied each get every event once, in index
    /// order: history and live events are handed to the delivery queue under the registry's lock.
    @Test func streamWatchesJoiningDuringWritesGetEveryEventInOrder() throws {
        let member = try WatchTestMember()
        let writes = 100, watchers = 20
        let start = try member.cluster.write(member.leader, "/order", "0").get().etcdIndex
        // Proposed at once, applied in order over several batches while the watchers register.
        for value in 1...writes {
            var command = StoreCommand(method: .put, path: "/order")
            command.value = "\(value)"
            member.node.propose(command) { _, _ in }
        }
        let received = Mutex([[UInt64]](repeating: [], count: watchers))
        for watcher in 0..<watchers {
            member.node.watch(path: "/order", recursive: false, stream: true, sinceIndex: start, deliver: { event in
                let index = modifiedIndex(in: event.bytes)
                received.withLock { $0[watcher].append(index) }
            }, registered: { result, _ in #expect(throws: Never.self) { try result.get() } })
            // Spread the registrations over the writes.
            _ = eventually { member.node.view().etcdIndex >= start + UInt64(watcher * writes / watchers) }
        }
        let expected = Array(start...(start + UInt64(writes)))
        #expect(eventually { received.withLock { $0.allSatisfy { $0.count >= expected.count } } })
        for (watcher, indexes) in received.withLock({ $0 }).enumerated() {
            #expect(indexes == expected, "watcher \(watcher)")
        }
    }

    /// Deadlines fire once, a removed one never; none is left behind.
    @Test func watchDeadlinesFireOnceAndNotOnceRemoved() {
        let deadlines = WatchDeadlines()
        let fired = Mutex<[String]>([])
        _ = deadlines.add(seconds: 0) { fired.withLock { $0.append("kept") } }
        let removed = deadlines.add(seconds: 0) { fired.withLock { $0.append("removed") } }
        deadlines.remove(removed)
        #expect(deadlines.count == 1)
        #expect(eventually { fired.withLock { $0 } == ["kept"] })
        #expect(deadlines.count == 0)
        _ = deadlines.add(seconds: 1) { fired.withLock { $0.append("later") } }
        #expect(eventually { fired.withLock { $0 } == ["kept", "later"] })
        #expect(deadlines.count == 0)
    }
}

/// The node's `modifiedIndex` in an encoded event (it comes before the previous node's).
private func modifiedIndex(in bytes: [UInt8]) -> UInt64 {
    let name = Array("\"modifiedIndex\":".utf8)
    guard let at = (0...(bytes.count - name.count)).first(where: { bytes[$0..<($0 + name.count)].elementsEqual(name) }) else { return 0 }
    return UInt64(String(decoding: bytes[(at + name.count)...].prefix { $0 >= 48 && $0 <= 57 }, as: UTF8.self)) ?? 0
}
