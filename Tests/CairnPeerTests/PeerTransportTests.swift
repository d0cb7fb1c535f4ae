// The peer wire format and transport: checksums and limits, ordered delivery per channel, refusal of strangers,
// reconnection after a member restarts, and a dead member never holding up the live ones.
import CairnBase
import CairnHTTP
import CairnTestSupport
import Dispatch
import Foundation
import Synchronization
import Testing
@testable import CairnPeer

@Suite struct PeerFrameTests {
    @Test func roundTripsAtEverySplit() throws {
        let frames = [PeerFrame(type: 1, payload: []), PeerFrame(type: 7, payload: Array("hello".utf8)),
                      PeerFrame(type: 200, payload: (0..<1000).map { UInt8($0 % 256) })]
        let stream = frames.flatMap { $0.encoded() }
        let decoder = PeerFrameDecoder(frameBytesMax: 4096)
        for split in [1, 2, 9, 10, 100, stream.count] {
            var buffered: [UInt8] = []
            var decoded: [PeerFrame] = []
            var offset = 0
            while offset < stream.count {
                buffered += stream[offset..<min(stream.count, offset + split)]
                offset += split
                while let (frame, consumed) = try buffered.withUnsafeBytes({ try decoder.next($0) }) {
                    decoded.append(frame)
                    buffered.removeFirst(consumed)
                }
            }
            #expect(decoded == frames, "split \(split)")
        }
    }

    @Test func corruptionAndOversizeAreRefused() {
        let decoder = PeerFrameDecoder(frameBytesMax: 100)
        var bytes = PeerFrame(type: 3, payload: Array("payload".utf8)).encoded()
        for index in 4..<bytes.count {
            var damaged = bytes
            damaged[index] ^= 0x10
            #expect(throws: PeerFrameError.self) { _ = try damaged.withUnsafeBytes { try decoder.next($0) } }
        }
        bytes = PeerFrame(type: 3, payload: [UInt8](repeating: 1, count: 101)).encoded()
        #expect(throws: PeerFrameError.tooLarge(bytes: 101, max: 100)) { _ = try bytes.withUnsafeBytes { try decoder.next($0) } }
    }
}

/// A transport on an ephemeral loopback port that records what it receives.
final class Inbox: Sendable {
    let received = Mutex<[(from: UInt64, frame: PeerFrame)]>([])
    let reports = Mutex<[String]>([])
    /// Round trips timed, by peer.
    let roundTrips = Mutex<[UInt64: [Double]]>([:])
}

final class Member: Sendable {
    let transport: PeerTransport
    let inbox = Inbox()

    init(id: UInt64, cluster: UInt64 = 0xC1, port: UInt16 = 0, roundTripProbeIntervalMilliseconds: Int = 1000,
         deliveryQueue: DispatchQueue? = nil, peers: [UInt64: ListenAddress] = [:]) throws {
        var configuration = PeerTransportConfiguration(
            clusterID: cluster, localID: id, listenAddresses: [ListenAddress(host: "127.0.0.1", port: port)])
        configuration.roundTripProbeIntervalMilliseconds = roundTripProbeIntervalMilliseconds
        let inbox = self.inbox
        transport = PeerTransport(
            configuration: configuration, deliveryQueue: deliveryQueue ?? DispatchQueue(label: "node-\(id)"),
            report: { line in inbox.reports.withLock { $0.append(line) } },
            deliver: { from, frame in inbox.received.withLock { $0.append((from, frame)) }; return true })
        transport.roundTripMeasured = { peer, seconds in inbox.roundTrips.withLock { $0[peer, default: []].append(seconds) } }
        // As the server does: peers first, so the first hello to arrive finds its sender known.
        if !peers.isEmpty { transport.setPeers(peers) }
        try transport.start()
    }

    var address: ListenAddress { transport.boundAddresses[0] }
    var count: Int { inbox.received.withLock { $0.count } }
}

@Suite(.serialized) struct PeerTransportTests {
    @Test func framesArriveInOrderPerChannelBothWays() throws {
        let a = try Member(id: 1), b = try Member(id: 2)
        defer { a.transport.stop(); b.transport.stop() }
        // a learns of member 2 before b dials it (an unknown member's hello is refused), then dials b itself.
        a.transport.setPeers([2: ListenAddress(host: "127.0.0.1", port: 1)])
        b.transport.setPeers([1: a.address])
        a.transport.setPeers([2: b.address])
        #expect(eventually(seconds: 10) { a.transport.statistics.connects >= 2 && b.transport.statistics.connects == 2 })
        for i in 0..<1000 {
            a.transport.send(to: 2, channel: .bulk, frame: PeerFrame(type: 1, payload: Array("bulk \(i)".utf8)))
            a.transport.send(to: 2, channel: .control, frame: PeerFrame(type: 2, payload: Array("control \(i)".utf8)))
        }
        b.transport.send(to: 1, channel: .control, frame: PeerFrame(type: 3, payload: Array("back".utf8)))
        #expect(eventually(seconds: 10) { b.count == 2000 && a.count == 1 })
        let frames = b.inbox.received.withLock { $0 }
        #expect(frames.allSatisfy { $0.from == 1 })
        #expect(frames.filter { $0.frame.type == 1 }.map { String(decoding: $0.frame.payload, as: UTF8.self) } == (0..<1000).map { "bulk \($0)" })
        #expect(frames.filter { $0.frame.type == 2 }.map { String(decoding: $0.frame.payload, as: UTF8.self) } == (0..<1000).map { "control \($0)" })
        #expect(a.inbox.received.withLock { $0.first?.frame.payload } == Array("back".utf8))
    }

    @Test func roundTripsAreTimedToEveryPeerWithoutReachingTheNode() throws {
        let members = try [1, 2, 3].map { try Member(id: UInt64($0), roundTripProbeIntervalMilliseconds: 20) }
        defer { for member in members { member.transport.stop() } }
        for member in members {
            member.transport.setPeers(Dictionary(uniqueKeysWithValues: members.map { ($0.transport.configuration.localID, $0.address) }))
        }
        // One probe on each welcome, then one per interval.
        #expect(eventually(seconds: 10) {
            members.allSatisfy { member in
                let timed = member.inbox.roundTrips.withLock { $0 }
                return Set(timed.keys) == Set([1, 2, 3].filter { $0 != member.transport.configuration.localID })
                    && timed.values.allSatisfy { $0.count >= 3 }
            }
        })
        for member in members {
            #expect(member.inbox.roundTrips.withLock { $0.values.joined().allSatisfy { $0 > 0 && $0 < 5 } })
            #expect(member.count == 0, "probes and echoes are the transport's own")
        }
    }

    @Test func aNodeThatFallsBehindHoldsItsLinksThenCatchesUp() throws {
        let node = DispatchQueue(label: "slow-node")
        let a = try Member(id: 1), b = try Member(id: 2, deliveryQueue: node)
        defer { a.transport.stop(); b.transport.stop() }
        b.transport.setPeers([1: a.address])
        a.transport.setPeers([2: b.address])
        #expect(eventually(seconds: 10) { a.transport.statistics.connects == 2 })
        node.suspend()
        // 96 MiB for a node that takes nothing: b's transport runs on the node's queue, so it reads nothing; with
        // loopback's socket buffers (up to 36 MiB here) and 2 MiB queued, the paced sender then waits.
        let chunks = 96
        let queued = Mutex(0)
        let sender = DispatchQueue(label: "paced-sender")
        @Sendable func sendNext(_ n: Int) {
            guard n < chunks else { return }
            a.transport.sendPaced(to: 2, channel: .bulk, frame: PeerFrame(type: 4, payload: [UInt8](repeating: UInt8(n), count: 1 << 20)),
                                  queuedBytesMax: 2 << 20) { ok in
                if ok { queued.withLock { $0 += 1 } }
                sender.async { sendNext(n + 1) }
            }
        }
        sender.async { sendNext(0) }
        sleep(1)
        #expect(queued.withLock { $0 } < chunks, "the link kept reading for a node that took nothing")
        node.resume()
        #expect(eventually(seconds: 30) { b.count == chunks })
        #expect(b.inbox.received.withLock { $0.map { $0.frame.payload.first! } } == (0..<chunks).map { UInt8($0) })
    }

    @Test func pacedFramesNeverDropAndKeepTheQueueShort() throws {
        let a = try Member(id: 1), b = try Member(id: 2)
        defer { a.transport.stop(); b.transport.stop() }
        b.transport.setPeers([1: a.address])
        a.transport.setPeers([2: b.address])
        #expect(eventually(seconds: 10) { a.transport.statistics.connects == 2 })
        // 96 MiB through a 64 MiB send buffer: plain sends would drop, paced ones wait for room.
        let chunkBytes = 1 << 20, chunks = 96
        let queued = Mutex(0), refused = Mutex(0)
        let sender = DispatchQueue(label: "paced-sender")
        @Sendable func sendNext(_ n: Int) {
            guard n < chunks else { return }
            let payload = [UInt8](repeating: UInt8(n % 251), count: chunkBytes)
            a.transport.sendPaced(to: 2, channel: .bulk, frame: PeerFrame(type: 4, payload: payload), queuedBytesMax: 2 << 20) { ok in
                if ok { queued.withLock { $0 += 1 } } else { refused.withLock { $0 += 1 } }
                sender.async { sendNext(n + 1) }
            }
        }
        sender.async { sendNext(0) }
        #expect(eventually(seconds: 30) { b.count == chunks })
        #expect(refused.withLock { $0 } == 0 && queued.withLock { $0 } == chunks)
        #expect(a.transport.statistics.framesDropped == 0)
        let order = b.inbox.received.withLock { $0.map { $0.frame.payload.first! } }
        #expect(order == (0..<chunks).map { UInt8($0 % 251) })
    }

    @Test func pacedSendsToAnUnknownPeerFailAtOnce() throws {
        let a = try Member(id: 1)
        defer { a.transport.stop() }
        let answer = Mutex<Bool?>(nil)
        a.transport.sendPaced(to: 9, channel: .bulk, frame: PeerFrame(type: 4, payload: [1]), queuedBytesMax: 1024) { ok in
            answer.withLock { $0 = ok }
        }
        #expect(eventually { answer.withLock { $0 } == false })
    }

    @Test func largeFramesArriveIntact() throws {
        let a = try Member(id: 1), b = try Member(id: 2)
        defer { a.transport.stop(); b.transport.stop() }
        b.transport.setPeers([1: a.address])
        a.transport.setPeers([2: b.address])
        #expect(eventually(seconds: 10) { a.transport.statistics.connects == 2 })
        var rng = SeededRandom(seed: 5)
        let payload = (0..<(8 * 1024 * 1024)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        a.transport.send(to: 2, channel: .bulk, frame: PeerFrame(type: 9, payload: payload))
        #expect(eventually(seconds: 10) { b.count == 1 })
        #expect(b.inbox.received.withLock { $0.first?.frame.payload == payload })
    }

    @Test func aMemberOfAnotherClusterIsRefusedWithAReason() throws {
        let b = try Member(id: 2), stranger = try Member(id: 3, cluster: 0xBAD)
        defer { b.transport.stop(); stranger.transport.stop() }
        stranger.transport.setPeers([2: b.address])
        #expect(eventually(seconds: 10) { stranger.transport.statistics.refusals >= 1 })
        stranger.transport.send(to: 2, channel: .control, frame: PeerFrame(type: 1, payload: []))
        usleep(200_000)
        #expect(b.count == 0)
        #expect(b.inbox.reports.withLock { $0.contains { $0.contains("cluster ID mismatch") } })
        #expect(stranger.inbox.reports.withLock { $0.contains { $0.contains("cluster ID mismatch") } })
    }

    @Test func aDuplicateMemberIDIsRefused() throws {
        let b = try Member(id: 2), twin = try Member(id: 2)
        defer { b.transport.stop(); twin.transport.stop() }
        twin.transport.setPeers([7: b.address])
        #expect(eventually(seconds: 10) { twin.transport.statistics.refusals >= 1 })
        #expect(b.inbox.reports.withLock { $0.contains { $0.contains("this is member 2") || $0.contains("duplicate") } })
    }

    @Test func reconnectsAfterThePeerRestarts() throws {
        let a = try Member(id: 1)
        var b = try Member(id: 2)
        defer { a.transport.stop() }
        let port = b.address.port
        b.transport.setPeers([1: a.address])
        a.transport.setPeers([2: b.address])
        #expect(eventually(seconds: 10) { a.transport.statistics.connects == 2 })
        b.transport.stop()
        usleep(100_000)
        b = try Member(id: 2, port: port, peers: [1: a.address])
        defer { b.transport.stop() }
        #expect(eventually(seconds: 10) { a.transport.statistics.connects >= 4 })
        a.transport.send(to: 2, channel: .control, frame: PeerFrame(type: 1, payload: Array("after".utf8)))
        #expect(eventually(seconds: 10) { b.count == 1 })
    }

    @Test func aDeadPeerDoesNotHoldUpALiveOne() throws {
        let a = try Member(id: 1), b = try Member(id: 2)
        defer { a.transport.stop(); b.transport.stop() }
        b.transport.setPeers([1: a.address])
        a.transport.setPeers([2: b.address, 3: ListenAddress(host: "127.0.0.1", port: 1)])
        #expect(eventually(seconds: 10) { a.transport.statistics.connects == 2 })
        for i in 0..<200 {
            a.transport.send(to: 3, channel: .bulk, frame: PeerFrame(type: 1, payload: [UInt8](repeating: 0, count: 1000)))
            a.transport.send(to: 2, channel: .bulk, frame: PeerFrame(type: 1, payload: Array("\(i)".utf8)))
        }
        #expect(eventually(seconds: 10) { b.count == 200 })
        // The dead peer's frames wait, bounded, for its link (none is dropped at 200 KB).
        #expect(a.transport.statistics.framesDropped == 0)
    }

    @Test func framesSentInANodeTurnLeaveAtItsEndOrAtFlush() throws {
        let node = DispatchQueue(label: "node-1")
        // b knows a before a dials: a hello that reached b before b's member table would be refused, and the frame
        // sent behind it lost with that connection.
        let a = try Member(id: 1, deliveryQueue: node), b = try Member(id: 2, peers: [1: a.address])
        defer { a.transport.stop(); b.transport.stop() }
        a.transport.setPeers([2: b.address])
        #expect(eventually(seconds: 10) { a.transport.statistics.connects == 2 && b.transport.statistics.connects == 2 })
        // Let the links be welcomed, so frames go to the socket rather than waiting for it.
        node.sync { a.transport.send(to: 2, channel: .control, frame: PeerFrame(type: 1, payload: [0])) }
        #expect(eventually(seconds: 10) { b.count == 1 })
        node.sync {
            a.transport.send(to: 2, channel: .control, frame: PeerFrame(type: 1, payload: [1]))
            a.transport.send(to: 2, channel: .bulk, frame: PeerFrame(type: 1, payload: [2]))
            usleep(200_000)
            #expect(b.count == 1, "frames of a turn wait for its end")
            // A leader flushes its appends before its own fsync, in the same turn.
            a.transport.flush()
            #expect(eventually(seconds: 10) { b.count == 3 })
            a.transport.send(to: 2, channel: .control, frame: PeerFrame(type: 1, payload: [3]))
        }
        #expect(eventually(seconds: 10) { b.count == 4 })
        #expect(Set(b.inbox.received.withLock { $0.map { $0.frame.payload } }) == [[0], [1], [2], [3]])
    }

    @Test func aFrameSentBeforeThePeerListensArrivesOnceItDoes() throws {
        let a = try Member(id: 1)
        defer { a.transport.stop() }
        // A port nobody listens on, closed here and now (a stopped transport's listener may still take a dial for a
        // moment, and the frame would go down with that connection).
        let (probe, port) = try Socket.listen(ListenAddress(host: "127.0.0.1", port: 0), backlog: 1)[0]
        close(probe)
        a.transport.setPeers([2: ListenAddress(host: "127.0.0.1", port: port)])
        // Sent while every dial fails: a follower forwarding a write to a leader whose link is not up yet.
        a.transport.send(to: 2, channel: .control, frame: PeerFrame(type: 1, payload: Array("forwarded".utf8)))
        usleep(300_000)
        let b = try Member(id: 2, port: port, peers: [1: a.address])
        defer { b.transport.stop() }
        #expect(eventually(seconds: 10) { b.count == 1 })
        #expect(b.inbox.received.withLock { $0.first?.frame.payload } == Array("forwarded".utf8))
    }
}
