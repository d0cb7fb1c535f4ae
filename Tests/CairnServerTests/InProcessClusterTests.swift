// Whole members (Raft core, durable storage, key space) in one process, joined by in-memory links that a test can
// cut: forwarding, linearizable reads on followers, a minority that refuses, skewed wall clocks, retried sessions.
import CairnReplica
import CairnPeer
import CairnStorage
import CairnStore
import CairnTestSupport
import Dispatch
import Foundation
import Synchronization
import Testing
@testable import CairnServer

/// Frames between in-process members; a cut link drops them silently, as a partition does.
final class Links: Sendable {
    private let members = Mutex<[UInt64: KeySpaceNode]>([:])
    private let cut = Mutex<Set<[UInt64]>>([])

    func add(_ id: UInt64, _ node: KeySpaceNode) {
        members.withLock { $0[id] = node }
        node.connect(send: { [self] to, _, frame in deliver(from: id, to: to, frame) },
                     sendPaced: { [self] to, frame, queued in queued(deliver(from: id, to: to, frame)) })
    }

    @discardableResult
    private func deliver(from id: UInt64, to: UInt64, _ frame: PeerFrame) -> Bool {
        guard !cut.withLock({ $0.contains([id, to]) }), let target = members.withLock({ $0[to] }) else { return false }
        target.queue.async { target.receive(from: id, frame: frame) }
        return true
    }

    /// Cuts `id` off from everyone (both directions); `heal` restores every link.
    func isolate(_ id: UInt64, from others: [UInt64]) {
        cut.withLock { for other in others where other != id { $0.insert([id, other]); $0.insert([other, id]) } }
    }

    func heal() { cut.withLock { $0.removeAll() } }
}

final class InProcessCluster {
    let ids: [UInt64]
    let links = Links()
    private(set) var nodes: [UInt64: KeySpaceNode] = [:]
    private var storages: [Storage] = []
    let directory = NSTemporaryDirectory() + "cairn-cluster-\(UUID().uuidString)"

    private let requestTimeoutMilliseconds: Int
    private let snapshotCount: Int
    private let wallOffsets: [Int64]?

    init(size: Int, wallOffsets: [Int64]? = nil, requestTimeoutMilliseconds: Int = 3000, snapshotCount: Int = 100_000) throws {
        ids = (1...UInt64(size)).map { $0 * 0x1111 }
        self.requestTimeoutMilliseconds = requestTimeoutMilliseconds
        self.snapshotCount = snapshotCount
        self.wallOffsets = wallOffsets
        for id in ids { try open(id) }
        for node in nodes.values { node.start() }
    }

    /// Opens member `id`'s data directory (new or not) and makes its node, not started.
    private func open(_ id: UInt64) throws {
        let position = ids.firstIndex(of: id)!
        let storage = try Storage(fs: PosixFileSystem(), directory: directory + "/\(id)",
                                  options: StorageOptions(wal: WALOptions(segmentBytesMax: 1 << 20)), logger: { _ in })
        var options = KeySpaceNode.Options(id: id, voters: ids)
        options.members = ids.map { MemberRecord(id: $0, name: "m\($0)", peerURLs: ["http://127.0.0.1:\(20000 + $0 % 1000)"], clientURLs: []) }
        options.name = "m\(id)"
        options.heartbeatIntervalMilliseconds = 10
        options.electionTimeoutMilliseconds = 150
        options.requestTimeoutMilliseconds = requestTimeoutMilliseconds
        options.snapshotCount = snapshotCount
        let clock = ClusterClock(wallOffsetNanoseconds: wallOffsets?[position] ?? 0)
        let node = try KeySpaceNode(clock: clock, initialIndex: UInt64(2 * ids.count + 1), storage: storage, options: options)
        links.add(id, node)
        nodes[id] = node
        storages.append(storage)
    }

    /// Stops every member, then starts `id` again on its data directory with no other member running.
    func restartAlone(_ id: UInt64) throws {
        for node in nodes.values { node.stop() }
        for storage in storages { storage.close() }
        storages = []
        nodes = [:]
        try open(id)
        nodes[id]!.start()
    }

    /// A member joining the running cluster (added to the member table first): no initial voters, no table.
    func join(_ id: UInt64) throws {
        let storage = try Storage(fs: PosixFileSystem(), directory: directory + "/\(id)",
                                  options: StorageOptions(wal: WALOptions(segmentBytesMax: 1 << 20)), logger: { _ in })
        var options = KeySpaceNode.Options(id: id, voters: [])
        options.heartbeatIntervalMilliseconds = 10
        options.electionTimeoutMilliseconds = 150
        options.name = "m\(id)"
        let node = try KeySpaceNode(clock: ClusterClock(), initialIndex: 0, storage: storage, options: options)
        links.add(id, node)
        nodes[id] = node
        storages.append(storage)
        node.start()
    }

    /// Stops member `id`, deletes its data directory and starts it again as a joiner (it knows nothing).
    func wipe(_ id: UInt64) throws {
        nodes[id]!.stop()
        let index = ids.firstIndex(of: id)!
        storages[index].close()
        try FileManager.default.removeItem(atPath: directory + "/\(id)")
        try join(id)
    }

    func changeMembers(_ id: UInt64, _ change: MemberChange) -> Result<MemberTable, StoreError> {
        wait { done in nodes[id]!.proposeMemberChange(change) { done($0) } }
    }

    deinit {
        for node in nodes.values { node.stop() }
        for storage in storages { storage.close() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    var leader: UInt64? { ids.first { nodes[$0]!.raftStatus.isLeader } }
    func followers(of leader: UInt64) -> [UInt64] { ids.filter { $0 != leader } }

    func awaitLeader(excluding excluded: Set<UInt64> = []) -> UInt64? {
        var found: UInt64?
        _ = eventually(seconds: 10) {
            found = ids.first { !excluded.contains($0) && nodes[$0]!.raftStatus.isLeader }
            return found != nil
        }
        return found
    }

    func write(_ id: UInt64, _ path: String, _ value: String, ttlSeconds: Int64? = nil, session: SessionRequest? = nil) -> Result<StoreEvent, StoreError> {
        var command = StoreCommand(method: .put, path: path)
        command.value = value
        command.ttlNanos = ttlSeconds.map { $0 * 1_000_000_000 }
        return wait { done in nodes[id]!.propose(command, session: session) { result, _ in done(result) } }
    }

    func quorumRead(_ id: UInt64, _ path: String) -> Result<String?, StoreError> {
        wait { done in
            nodes[id]!.linearizableRead { result in
                done(result.map { view in try? KeySpace.lookup(StoreKey(path), in: view.root, currentIndex: view.etcdIndex).get().value })
            }
        }
    }

    func localValue(_ id: UInt64, _ path: String) -> String? {
        let view = nodes[id]!.view()
        return try? KeySpace.lookup(StoreKey(path), in: view.root, currentIndex: view.etcdIndex).get().value
    }

    private func wait<T: Sendable>(_ body: (@escaping @Sendable (T) -> Void) -> Void) -> T {
        let outcome = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        body { value in
            outcome.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return outcome.withLock { $0! }
    }
}

@Suite(.serialized) struct InProcessClusterTests {
    @Test func anyMemberTakesWritesAndFollowersReadLinearizably() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        for (n, id) in cluster.ids.enumerated() {
            #expect(throws: Never.self) { try cluster.write(id, "/k\(n)", "from-\(n)").get() }
        }
        for id in cluster.followers(of: leader) {
            for n in 0..<3 { #expect(try cluster.quorumRead(id, "/k\(n)").get() == "from-\(n)") }
        }
        #expect(eventually { cluster.ids.allSatisfy { cluster.localValue($0, "/k2") == "from-2" } })
    }

    @Test func aCutOffMinorityRefusesAndTheMajorityGoesOnThenAllConverge() throws {
        let cluster = try InProcessCluster(size: 3, requestTimeoutMilliseconds: 800)
        let leader = try #require(cluster.awaitLeader())
        cluster.links.isolate(leader, from: cluster.ids)
        let refused = cluster.write(leader, "/lost", "never")
        #expect((try? refused.get()) == nil, "an isolated leader cannot commit")
        if case .failure(let error) = refused { #expect(error.code == .raftInternal && error.cause == "etcdserver: request timed out") }
        #expect((try? cluster.quorumRead(leader, "/k").get()) == nil, "nor confirm a read")
        let newLeader = try #require(cluster.awaitLeader(excluding: [leader]))
        #expect(throws: Never.self) { try cluster.write(newLeader, "/k", "majority").get() }
        cluster.links.heal()
        #expect(eventually(seconds: 10) { cluster.ids.allSatisfy { cluster.localValue($0, "/k") == "majority" } })
        #expect(try cluster.quorumRead(leader, "/k").get() == "majority")
        #expect(cluster.ids.allSatisfy { cluster.localValue($0, "/lost") == nil }, "the uncommitted write was discarded")
    }

    @Test func aFollowerBehindTheCompactedLogCatchesUpBySnapshot() throws {
        let cluster = try InProcessCluster(size: 3, snapshotCount: 20)
        let leader = try #require(cluster.awaitLeader())
        let behind = cluster.followers(of: leader)[0]
        cluster.links.isolate(behind, from: cluster.ids)
        for n in 0..<120 { _ = try cluster.write(leader, "/s/\(n % 30)", "v\(n)").get() }
        // Two snapshots later the log no longer reaches back to what the cut-off follower has.
        #expect(eventually { (try? FileManager.default.contentsOfDirectory(atPath: cluster.directory + "/\(leader)"))?
            .filter { $0.hasSuffix(".snap") }.count == 2 })
        cluster.links.heal()
        #expect(eventually(seconds: 10) { cluster.localValue(behind, "/s/29") == "v119" })
        #expect(cluster.localValue(behind, "/s/0") == "v90")
        let files = try FileManager.default.contentsOfDirectory(atPath: cluster.directory + "/\(behind)")
        #expect(files.contains { $0.hasSuffix(".snap") }, "\(files)")
        #expect(try cluster.quorumRead(behind, "/s/5").get() == "v95")
    }

    @Test func anAddedMemberCatchesUpAsALearnerThenVotes() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        for n in 0..<50 { _ = try cluster.write(leader, "/m/\(n)", "v\(n)").get() }
        let newcomer: UInt64 = 0x9999
        let follower = cluster.followers(of: leader)[0]
        let table = try cluster.changeMembers(follower, .add(id: newcomer, peerURLs: ["http://127.0.0.1:29999"])).get()
        #expect(table.members[newcomer]?.peerURLs == ["http://127.0.0.1:29999"])
        try cluster.join(newcomer)
        #expect(eventually(seconds: 10) { cluster.nodes[leader]!.raftStatus.voters.contains(newcomer) }, "promoted once caught up")
        #expect(eventually { cluster.localValue(newcomer, "/m/49") == "v49" })
        #expect(eventually { cluster.nodes[newcomer]!.memberTable.members[newcomer]?.name == "m\(newcomer)" }, "it published its name")
        #expect(cluster.nodes[newcomer]!.view().etcdIndex == cluster.nodes[leader]!.view().etcdIndex, "the same store index")
        // With four voters, one lost member leaves three: a majority only if the newcomer votes.
        cluster.links.isolate(follower, from: cluster.ids + [newcomer])
        #expect(throws: Never.self) { try cluster.write(leader, "/after", "join").get() }
        #expect(try cluster.quorumRead(newcomer, "/after").get() == "join")
    }

    @Test func aWipedMemberThatWasUpToDateCatchesUp() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        _ = try cluster.write(leader, "/w", "before").get()
        let wiped = cluster.followers(of: leader)[0]
        #expect(eventually { cluster.localValue(wiped, "/w") == "before" })
        try cluster.wipe(wiped)
        #expect(eventually(seconds: 10) { cluster.localValue(wiped, "/w") == "before" }, "caught up without a new write")
        _ = try cluster.write(leader, "/w", "after").get()
        #expect(eventually { cluster.localValue(wiped, "/w") == "after" })
        #expect(cluster.nodes[wiped]!.view().etcdIndex == cluster.nodes[leader]!.view().etcdIndex)
    }

    @Test func removingTheLeaderHandsOverAndWritesGoOn() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        let follower = cluster.followers(of: leader)[0]
        #expect(throws: Never.self) { try cluster.changeMembers(leader, .remove(id: leader)).get() }
        let next = try #require(cluster.awaitLeader(excluding: [leader]))
        #expect(eventually { cluster.nodes[next]!.raftStatus.voters.sorted() == cluster.followers(of: leader).sorted() })
        #expect(throws: Never.self) { try cluster.write(follower, "/after", "removal").get() }
        #expect(cluster.nodes[follower]!.memberTable.members[leader] == nil)
    }

    @Test func wallClocksAnHourApartAgreeOnExpiry() throws {
        let hour: Int64 = 3_600_000_000_000
        let cluster = try InProcessCluster(size: 3, wallOffsets: [-hour, 0, hour])
        let leader = try #require(cluster.awaitLeader())
        for (n, id) in cluster.ids.enumerated() {
            #expect(throws: Never.self) { try cluster.write(id, "/ttl\(n)", "x", ttlSeconds: 2).get() }
        }
        // Every member estimates the same cluster time, whatever its wall clock says.
        let estimates = cluster.ids.map { cluster.nodes[$0]!.now }
        #expect(estimates.max()! - estimates.min()! < 1_000_000_000, "\(estimates)")
        usleep(1_000_000)
        #expect(cluster.ids.allSatisfy { id in (0..<3).allSatisfy { cluster.localValue(id, "/ttl\($0)") != nil } },
                "nothing expires an hour early")
        #expect(eventually(seconds: 5) { cluster.ids.allSatisfy { id in (0..<3).allSatisfy { cluster.localValue(id, "/ttl\($0)") == nil } } },
                "and nothing an hour late (leader \(leader))")
    }

    @Test func aRetryThroughAnotherMemberAfterALeaderChangeIsAnsweredOnce() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        let session = SessionRequest(client: "svc", request: 1)
        let first = try cluster.write(leader, "/once", "v", session: session).get()
        cluster.links.isolate(leader, from: cluster.ids)
        let newLeader = try #require(cluster.awaitLeader(excluding: [leader]))
        #expect(throws: Never.self) { try cluster.write(newLeader, "/once", "other").get() }
        let other = try #require(cluster.followers(of: leader).first { $0 != newLeader })
        let retried = try cluster.write(other, "/once", "v", session: session).get()
        #expect(retried == first, "the retry gets the first answer")
        #expect(try cluster.quorumRead(other, "/once").get() == "other", "and changes nothing")
    }

    @Test func aMemberRestartedAloneServesWhatItKnewWasCommitted() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        for n in 0..<20 { _ = try cluster.write(cluster.ids[n % 3], "/kept/\(n)", "v\(n)").get() }
        let follower = cluster.followers(of: leader)[0]
        // The follower learns the last commit with the leader's next message; then the whole cluster stops.
        #expect(eventually { cluster.localValue(follower, "/kept/19") == "v19" })
        try cluster.restartAlone(follower)
        #expect(cluster.nodes[follower]!.raftStatus.leader == nil)
        #expect(eventually { cluster.localValue(follower, "/kept/19") == "v19" }, "applied on start, with no leader")
        #expect((0..<20).allSatisfy { cluster.localValue(follower, "/kept/\($0)") == "v\($0)" })
    }
}
