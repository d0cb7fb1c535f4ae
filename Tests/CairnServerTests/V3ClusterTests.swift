// The v3 key space in whole members: writes through the log from any member, applied on every member alike, kept
// in snapshots a lagging follower installs, and leases expired by the leader with their keys in one revision.
import CairnReplica
import CairnAPI
import CairnMVCC
import CairnTestSupport
import Dispatch
import Foundation
import Synchronization
import Testing
@testable import CairnServer

extension InProcessCluster {
    func v3(_ id: UInt64, _ command: MVCCCommand) -> Result<MVCCResult, V3Error> {
        let outcome = Mutex<Result<MVCCResult, V3Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        nodes[id]!.proposeV3(command) { result, _ in
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return outcome.withLock { $0! }
    }

    func v3Put(_ id: UInt64, _ key: String, _ value: String, lease: Int64 = 0) -> Result<MVCCResult, V3Error> {
        var request = PutRequest(key: Array(key.utf8), value: Array(value.utf8))
        request.lease = lease
        return v3(id, .put(request))
    }

    /// The value member `id` has applied for `key` (its published view, no round trip).
    func v3Value(_ id: UInt64, _ key: String) -> String? {
        nodes[id]!.view().mvcc.get(Array(key.utf8)).map { String(decoding: $0.value, as: UTF8.self) }
    }
}

@Suite(.serialized) struct V3ClusterTests {
    @Test func anyMemberTakesV3WritesAndEveryMemberAppliesThem() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        for (n, id) in cluster.ids.enumerated() {
            guard case .success(.put(let answer)) = cluster.v3Put(id, "k\(n)", "from-\(n)") else {
                Issue.record("v3 put through \(id) failed")
                continue
            }
            #expect(answer.revision == Int64(n) + 2)
        }
        let txn = TxnRequest(compare: [Compare(.single(Array("k0".utf8)), .value(Array("from-0".utf8)), .equal)],
                             success: [.deleteRange(DeleteRangeRequest(range: .single(Array("k1".utf8))))])
        guard case .success(.txn(let answer)) = cluster.v3(cluster.followers(of: leader)[0], .txn(txn)) else {
            Issue.record("txn failed")
            return
        }
        #expect(answer.succeeded && answer.revision == 5)
        #expect(cluster.v3Put(leader, "", "x") == .failure(V3Error(MVCCError.emptyKey)), "the key space's error comes back")
        #expect(eventually { cluster.ids.allSatisfy { cluster.nodes[$0]!.view().mvcc.revision == 5 } })
        for id in cluster.ids {
            #expect(cluster.v3Value(id, "k0") == "from-0" && cluster.v3Value(id, "k1") == nil && cluster.v3Value(id, "k2") == "from-2")
        }
    }

    @Test func aFollowerBehindTheCompactedLogGetsTheV3KeySpaceBySnapshot() throws {
        let cluster = try InProcessCluster(size: 3, snapshotCount: 20)
        let leader = try #require(cluster.awaitLeader())
        let behind = cluster.followers(of: leader)[0]
        guard case .success(.leaseGranted(let lease, _)) = cluster.v3(leader, .grantLease(id: 7, ttl: 3600)) else {
            Issue.record("grant failed")
            return
        }
        // A watcher on the follower that falls behind: the snapshot skips history it needs, so it is cancelled.
        let delivered = Mutex<[V3WatchDelivery]>([])
        let created = DispatchSemaphore(value: 0)
        cluster.nodes[behind]!.watchV3(V3WatchRequest(range: .prefix(Array("s/".utf8))), deliver: { delivery in
            delivered.withLock { $0.append(delivery) }
        }, created: { _, _ in created.signal() })
        created.wait()
        cluster.links.isolate(behind, from: cluster.ids)
        for n in 0..<120 {
            _ = try cluster.v3Put(leader, "s/\(n % 30)", "v\(n)", lease: n == 119 ? lease.id : 0).get()
            // Compacted well before the snapshots the follower can get: the history its watcher needs is gone.
            if n == 60 { _ = try cluster.v3(leader, .compact(revision: 50)).get() }
        }
        #expect(eventually { (try? FileManager.default.contentsOfDirectory(atPath: cluster.directory + "/\(leader)"))?
            .filter { $0.hasSuffix(".snap") }.count == 2 })
        cluster.links.heal()
        #expect(eventually(seconds: 10) { cluster.v3Value(behind, "s/29") == "v119" })
        let space = cluster.nodes[behind]!.view().mvcc
        #expect(space.revision == 121 && space.compactedRevision == 50)
        #expect(space.get(Array("s/0".utf8), at: 100)?.value == Array("v90".utf8), "history after the compaction is kept")
        #expect(space.leases[7]?.keys.map(\.description) == ["s/29"], "the lease and its key came with it")
        let files = try FileManager.default.contentsOfDirectory(atPath: cluster.directory + "/\(behind)")
        #expect(files.contains { $0.hasSuffix(".snap") }, "\(files)")
        #expect(delivered.withLock { $0.map { "\($0.revision) \($0.canceled)" } } == ["0 true"])
        #expect(cluster.nodes[behind]!.v3WatcherCount == 0)
    }

    @Test func aLeaseExpiresOnTheLeaderByTheClusterClockWithItsKeysInOneRevision() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        let follower = cluster.followers(of: leader)[0]
        // Granted through a follower: the grant is forwarded and the leader keeps its deadline.
        guard case .success(.leaseGranted(let lease, _)) = cluster.v3(follower, .grantLease(id: 42, ttl: 1)) else {
            Issue.record("grant failed")
            return
        }
        _ = try cluster.v3Put(follower, "a", "1", lease: lease.id).get()
        _ = try cluster.v3Put(follower, "b", "2", lease: lease.id).get()
        _ = try cluster.v3Put(follower, "c", "3").get()
        #expect(eventually(seconds: 10) { cluster.ids.allSatisfy { cluster.nodes[$0]!.view().mvcc.leases[42] == nil } })
        for id in cluster.ids {
            let space = cluster.nodes[id]!.view().mvcc
            #expect(space.get(Array("a".utf8)) == nil && space.get(Array("b".utf8)) == nil && cluster.v3Value(id, "c") == "3")
            #expect(space.revision == 5, "both keys deleted in one revision (the puts took 2 to 4)")
        }
        #expect(cluster.v3(follower, .keepAliveLease(id: 42)) == .failure(V3Error(MVCCError.leaseNotFound)))
    }

    @Test func aNewLeaderGivesEveryLeaseItsFullTTLBeforeExpiringAny() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        let granted = Mutex<Int64>(0)
        let done = DispatchSemaphore(value: 0)
        cluster.nodes[leader]!.proposeV3(.grantLease(id: 42, ttl: 5)) { _, view in
            granted.withLock { $0 = view.clusterTimeNanos }
            done.signal()
        }
        done.wait()
        let grantTime = granted.withLock { $0 }
        cluster.links.isolate(leader, from: cluster.ids)
        let newLeader = try #require(cluster.awaitLeader(excluding: [leader]))
        let node = cluster.nodes[newLeader]!
        #expect(eventually { node.queue.sync { node.replica.v3.leasesPromotedTerm == node.replica.raft.term.value } })
        // As a follower it had the lease due at grant + 5 s; promoted an election timeout or more later, it is not.
        let dueLater = node.queue.sync { node.replica.v3.leaseClock.expired(now: grantTime + 5_000_000_000).isEmpty }
        #expect(dueLater, "the lease's deadline moved past its first holder's")
        #expect(node.view().mvcc.leases[42] != nil)
    }

    @Test func aWatchOnAFollowerSeesWritesMadeThroughTheLeader() throws {
        let cluster = try InProcessCluster(size: 3)
        let leader = try #require(cluster.awaitLeader())
        let follower = cluster.followers(of: leader)[0]
        let delivered = Mutex<[V3WatchDelivery]>([])
        let created = DispatchSemaphore(value: 0)
        var request = V3WatchRequest(range: .prefix(Array("f/".utf8)))
        request.prevKV = true
        cluster.nodes[follower]!.watchV3(request, deliver: { delivery in delivered.withLock { $0.append(delivery) } },
                                         created: { _, _ in created.signal() })
        created.wait()
        _ = try cluster.v3Put(leader, "f/a", "1").get()
        _ = try cluster.v3Put(leader, "f/a", "2").get()
        _ = try cluster.v3Put(leader, "g", "outside").get()
        _ = try cluster.v3(leader, .deleteRange(DeleteRangeRequest(range: .prefix(Array("f/".utf8))))).get()
        #expect(eventually { delivered.withLock { $0.count } == 3 })
        let events = delivered.withLock { $0 }.flatMap(\.events)
        #expect(events.map(\.type) == [.put, .put, .delete])
        #expect(events[1].prevKV?.value == Array("1".utf8) && events[2].kv.modRevision == 5)
    }

    @Test func aWatcherReplayingALongHistoryGetsItInRoundsThenLiveChanges() throws {
        let cluster = try InProcessCluster(size: 1)
        let leader = try #require(cluster.awaitLeader())
        for n in 0..<1_200 { _ = try cluster.v3Put(leader, "h/\(n % 10)", "v\(n)").get() }
        let delivered = Mutex<[V3WatchDelivery]>([])
        let created = DispatchSemaphore(value: 0)
        var request = V3WatchRequest(range: .prefix(Array("h/".utf8)))
        request.startRevision = 2
        cluster.nodes[leader]!.watchV3(request, deliver: { delivery in delivered.withLock { $0.append(delivery) } },
                                       created: { _, _ in created.signal() })
        created.wait()
        #expect(eventually { delivered.withLock { $0.flatMap(\.events).count } == 1_200 })
        _ = try cluster.v3Put(leader, "h/live", "x").get()
        #expect(eventually { delivered.withLock { $0.flatMap(\.events).count } == 1_201 })
        let all = delivered.withLock { $0 }
        #expect(all.count == 3, "two rounds of history (1,000 revisions at most each), then the live change")
        #expect(all.flatMap(\.events).map(\.kv.modRevision) == Array(2...1_202))
    }
}
