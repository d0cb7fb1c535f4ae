// What a member does with bytes it cannot decode: a forwarded proposal or Raft entry that does not decode is
// refused before it reaches the log, and a committed entry that still cannot be decoded is applied as a no-op.
import CairnReplica
import CairnBase
import CairnPeer
import CairnRaft
import CairnStorage
import CairnStore
import CairnTestSupport
import Dispatch
import Foundation
import Testing
@testable import CairnServer

@Suite(.serialized) struct UndecodableInputTests {
    /// The payload the issue saw kill every member: a proposal envelope whose body kind is 232.
    static func proposalWithBodyKind232(from member: UInt64) -> [UInt8] {
        var bytes = Proposal(origin: Requester(member: member, incarnation: 1), sequence: 1, body: .command([])).encoded()
        bytes[bytes.count - 1] = 232
        return bytes
    }

    @Test func aForwardedProposalThatDoesNotDecodeIsRefusedAndNeverReachesTheLog() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        let follower = cluster.followers(of: leader)[0]
        let node = cluster.nodes[leader]!
        let garbage = [Self.proposalWithBodyKind232(from: follower), [0xFF, 1, 2], Array(repeating: 7, count: 40), []]
        for payload in garbage {
            node.queue.sync { _ = node.receive(from: follower, frame: PeerFrame(type: 2, payload: payload)) }
        }
        // A decodable proposal claiming another member's origin is refused too.
        let forged = Proposal(origin: Requester(member: 0xBAD, incarnation: 1), sequence: 1, body: .command(StoreCommand(method: .put, path: "/x").encoded()))
        node.queue.sync { _ = node.receive(from: follower, frame: PeerFrame(type: 2, payload: forged.encoded())) }
        // A write dated before 1970 (no HTTP edge makes one) would trap the key space's TTL arithmetic on every member.
        var ancient = StoreCommand(method: .put, path: "/ancient")
        ancient.expiration = Int64.min
        let beforeTime = Proposal(origin: Requester(member: follower, incarnation: 1), sequence: 2, body: .command(ancient.encoded()))
        node.queue.sync { _ = node.receive(from: follower, frame: PeerFrame(type: 2, payload: beforeTime.encoded())) }
        #expect(throws: Never.self) { try cluster.write(follower, "/after", "ok").get() }
        #expect(eventually { cluster.ids.allSatisfy { cluster.localValue($0, "/after") == "ok" } })
        #expect(cluster.localValue(leader, "/x") == nil)
        #expect(cluster.localValue(leader, "/ancient") == nil)
        #expect(node.metrics.render(gauges: []).contains("cairn_peer_frames_refused_total 6"))
    }

    @Test func aRaftAppendCarryingAnUndecodableEntryIsRefusedWhole() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        let follower = cluster.followers(of: leader)[0]
        let node = cluster.nodes[follower]!
        let status = node.raftStatus
        var append = Message(kind: .append, from: MemberID(leader), to: MemberID(follower), term: Term(status.term))
        append.index = LogIndex(status.commit)
        append.logTerm = Term(status.term)
        append.entries = [Entry(term: Term(status.term), index: LogIndex(status.commit + 1), clusterTimeNanos: 0, kind: .normal,
                                data: Self.proposalWithBodyKind232(from: leader))]
        let accepted = node.queue.sync { node.receive(from: leader, frame: PeerFrame(type: 1, payload: append.encoded())) }
        #expect(!accepted)
        #expect(throws: Never.self) { try cluster.write(follower, "/after", "ok").get() }
        #expect(eventually { cluster.ids.allSatisfy { cluster.localValue($0, "/after") == "ok" } })
    }

    /// A log holding undecodable committed entries (an older build's garbage, a newer build's format) is replayed
    /// on restart: each is a logged, counted no-op, and the member serves writes afterwards.
    @Test func committedEntriesThatCannotBeDecodedAreNoOpsOnRestart() throws {
        let directory = NSTemporaryDirectory() + "cairn-undecodable-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let id: UInt64 = 0x4242
        let options = StorageOptions(wal: WALOptions(segmentBytesMax: 1 << 20))
        do {
            let storage = try Storage(fs: PosixFileSystem(), directory: directory, options: options, logger: { _ in })
            var newerFormat = Proposal(origin: Requester(member: id, incarnation: 1), sequence: 1,
                                       body: .command(StoreCommand(method: .put, path: "/newer").encoded())).encoded()
            newerFormat[0] = Proposal.formatVersion + 1
            try storage.writer.append([
                LogEntryRecord(index: 1, term: 1, kind: EntryKind.noop.rawValue, clusterTimeNanos: 1, payload: []),
                // Written by the build that had no version byte: kind 1, the envelope from its first byte.
                LogEntryRecord(index: 2, term: 1, kind: EntryKind.unversioned.rawValue, clusterTimeNanos: 1,
                               payload: Array(Self.proposalWithBodyKind232(from: id).dropFirst())),
                LogEntryRecord(index: 3, term: 1, kind: EntryKind.normal.rawValue, clusterTimeNanos: 1, payload: newerFormat),
                LogEntryRecord(index: 4, term: 1, kind: EntryKind.normal.rawValue, clusterTimeNanos: 1, payload: [1, 2, 3]),
            ])
            try storage.saveHardState(CairnStorage.HardState(term: 1, vote: id, commit: 4))
            storage.close()
        }
        let storage = try Storage(fs: PosixFileSystem(), directory: directory, options: options, logger: { _ in })
        defer { storage.close() }
        var nodeOptions = KeySpaceNode.Options(id: id, voters: [id])
        nodeOptions.heartbeatIntervalMilliseconds = 10
        nodeOptions.electionTimeoutMilliseconds = 100
        let node = try KeySpaceNode(clock: ClusterClock(), initialIndex: 3, storage: storage, options: nodeOptions)
        defer { node.stop() }
        node.start()
        let written = DispatchSemaphore(value: 0)
        var command = StoreCommand(method: .put, path: "/after")
        command.value = "ok"
        node.propose(command) { result, _ in
            #expect((try? result.get())?.node.value == "ok")
            written.signal()
        }
        #expect(written.wait(timeout: .now() + 10) == .success)
        #expect(node.metrics.render(gauges: []).contains("cairn_entries_undecodable_total 3"))
        #expect(eventually { node.raftStatus.applied >= 5 })
    }

    /// The forged heartbeat left term 2^64 − 1 in the hard state, so every restart trapped: it is now damage.
    @Test func aHardStateWithATermBeyondTheBoundIsReportedCorrupt() throws {
        let directory = NSTemporaryDirectory() + "cairn-hugeterm-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let options = StorageOptions(wal: WALOptions(segmentBytesMax: 1 << 20))
        do {
            let storage = try Storage(fs: PosixFileSystem(), directory: directory, options: options, logger: { _ in })
            try storage.saveHardState(CairnStorage.HardState(term: UInt64.max, vote: 0, commit: 0))
            storage.close()
        }
        let storage = try Storage(fs: PosixFileSystem(), directory: directory, options: options, logger: { _ in })
        defer { storage.close() }
        #expect {
            _ = try KeySpaceNode(clock: ClusterClock(), initialIndex: 3, storage: storage, options: KeySpaceNode.Options(id: 7, voters: [7]))
        } throws: { error in
            "\(error)".contains("hardstate") && "\(error)".contains("\(UInt64.max)")
        }
    }
}
