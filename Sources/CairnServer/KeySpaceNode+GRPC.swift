// What gRPC's Watch stream needs of the member beyond the JSON gateway's calls: answers ordered after the watchers'
// pending deliveries, and progress once a stream's watchers have caught up (etcd's RequestProgress, as fixed in 3.4.31).
import CairnMVCC
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
