// What gRPC's Watch stream needs of the member beyond the JSON gateway's calls: answers ordered after the watchers'
// pending deliveries, and progress once a stream's watchers have caught up (etcd's RequestProgress, as fixed in 3.4.31).
import CairnAPI
import CairnMVCC
import CairnRaft
import Dispatch

extension KeySpaceNode {
    /// Runs `body` on the node's queue with the key space's revision, after every delivery queued before it.
    func afterWatchChanges(_ body: @escaping @Sendable (Int64) -> Void) {
        queue.async { [self] in body(replica.v3.space.revision) }
    }

    /// How often a progress request waiting for its watchers to catch up looks again.
    static let progressRetryMilliseconds = 10

    /// Runs `body` on the node's queue with the key space's revision once none of `ids` is still replaying history
    /// (watchers gone meanwhile count as caught up), so no event at or below that revision is delivered after it.
    func whenWatchersSynced(_ ids: [Int64], _ body: @escaping @Sendable (Int64) -> Void) {
        queue.async { [self] in
            let unsynced = v3Watchers.watches.unsynced
            guard ids.contains(where: { unsynced.contains($0) }) else { return body(replica.v3.space.revision) }
            queue.asyncAfter(deadline: .now() + .milliseconds(Self.progressRetryMilliseconds)) { [self] in
                whenWatchersSynced(ids, body)
            }
        }
    }
}

extension KeySpaceNode {
    /// etcd's MoveLeader: only the leader may hand over, to a voter; answered once the target leads, or etcd's timeout
    /// error after two election timeouts. The transfer's messages go out with the node's next tick.
    func moveLeader(to target: UInt64, _ done: @escaping @Sendable (V3Error?) -> Void) {
        queue.async { [self] in
            guard replica.raft.role == .leader else { return done(V3Error(.failedPrecondition, "etcdserver: not leader")) }
            guard target != id, raftStatus.voters.contains(target) else {
                return done(V3Error(.failedPrecondition, "etcdserver: bad leader transferee"))
            }
            replica.raft.transferLeadership(to: MemberID(target))
            let deadline = DispatchTime.now() + .milliseconds(2 * options.electionTimeoutMilliseconds)
            @Sendable func check() {
                if raftStatus.leader == target { return done(nil) }
                guard DispatchTime.now() < deadline else {
                    return done(V3Error(.deadlineExceeded, "etcdserver: request timed out, leader transfer took too long"))
                }
                queue.asyncAfter(deadline: .now() + .milliseconds(Self.progressRetryMilliseconds)) { check() }
            }
            check()
        }
    }
}
