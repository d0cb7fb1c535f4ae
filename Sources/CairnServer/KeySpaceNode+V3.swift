// The runner's v3 side: v3 writes handed to the Replica and answered when applied, lease time-to-live from the
// Replica's lease clock, and the v3 watchers, fed after each applied batch and resynchronised after a snapshot.
import CairnAPI
import CairnMVCC
import CairnReplica
import CairnStore

/// The v3 watchers and where each one's answers go; owned by the node queue.
struct V3Watchers {
    var watches = V3Watches()
    /// Where each watcher's answers go, by watch ID.
    var sinks: [Int64: @Sendable (V3WatchDelivery) -> Void] = [:]
    var nextWatchID: Int64 = 1
    /// When watchers were last sent progress notifications (this process's clock; 0: not yet).
    var progressNotifiedNanos: Int64 = 0
    /// A round of history replay is queued for the watchers still behind.
    var catchUpScheduled = false

    /// Hands the watchers' answers to their sinks; a cancelled watcher's sink goes with its last answer.
    mutating func send(_ deliveries: [V3WatchDelivery]) {
        for delivery in deliveries {
            sinks[delivery.watchID]?(delivery)
            if delivery.canceled { sinks[delivery.watchID] = nil }
        }
    }
}

extension KeySpaceNode {
    /// Replicates a v3 write (or lease operation) and calls `completion` (on the node queue) with its outcome and
    /// the view right after it was applied; a failure to replicate (timeout, storage) is etcd's Unavailable.
    func proposeV3(_ command: MVCCCommand, completion: @escaping @Sendable (Result<MVCCResult, V3Error>, View) -> Void) {
        queue.async { [self] in
            submit(.mvcc(command.encoded())) { result, view in
                switch result {
                case .failure(let error):
                    completion(.failure(V3Error(.unavailable, String(decoding: error.causeBytes, as: UTF8.self))), view)
                case .success(.v3(.success(let answer)?)): completion(.success(answer), view)
                case .success(.v3(.failure(let error)?)): completion(.failure(V3Error(error)), view)
                case .success: completion(.failure(V3Error(.internalError, "etcdserver: the v3 write was not applied")), view)
                }
            }
        }
    }

    /// A lease's remaining seconds as this member's clock has them (-1 for a lease it does not know) and the lease.
    func leaseTimeToLive(_ id: Int64, completion: @escaping @Sendable (Int64, Lease?, View) -> Void) {
        queue.async { [self] in
            let lease = replica.v3.space.leases[id]
            completion(lease == nil ? -1 : max(0, replica.v3.leaseClock.remainingSeconds(id, now: now)), lease, view())
        }
    }

    // MARK: - Watches

    /// Registers a v3 watcher: `created` gets its ID and the revision it was made at (or the refusal), then `deliver`
    /// gets its answers in order, history first; a start already compacted is answered with its cancellation.
    func watchV3(_ request: V3WatchRequest, deliver: @escaping @Sendable (V3WatchDelivery) -> Void,
                 created: @escaping @Sendable (Result<Int64, V3Error>, Int64) -> Void) {
        queue.async { [self] in
            let id = v3Watchers.nextWatchID
            let space = replica.v3.space
            do throws(V3Watches.CreateError) {
                let cancelled = try v3Watchers.watches.create(id, request, in: space)
                v3Watchers.nextWatchID += 1
                created(.success(id), space.revision)
                if let cancelled { return deliver(cancelled) }
                v3Watchers.sinks[id] = deliver
                catchUpV3Watchers()
            } catch {
                created(.failure(V3Error(.resourceExhausted, "etcdserver: too many watchers (\(V3Watches.watchersMax))")), space.revision)
            }
        }
    }

    func cancelWatchV3(_ id: Int64) {
        queue.async { [self] in
            v3Watchers.watches.cancel(id)
            v3Watchers.sinks[id] = nil
        }
    }

    var v3WatcherCount: Int { queue.sync { v3Watchers.watches.count } }

    /// etcd's progress notification: every interval, an empty answer at the current revision to each synced watcher
    /// that asked for them.
    func notifyWatchProgressIfDue() {
        let now = clock.now()
        if v3Watchers.progressNotifiedNanos == 0 { v3Watchers.progressNotifiedNanos = now }
        guard now - v3Watchers.progressNotifiedNanos >= Int64(options.watchProgressNotifyIntervalMilliseconds) * 1_000_000 else { return }
        v3Watchers.progressNotifiedNanos = now
        let notifications = v3Watchers.watches.progress(in: replica.v3.space)
        v3Watchers.send(notifications)
    }

    /// After an applied batch: the changes since `revision` to the synced watchers, then history to those behind.
    func deliverV3Watches(since revision: Int64) {
        guard v3Watchers.watches.count > 0 else { return }
        let deliveries = v3Watchers.watches.applied(since: revision, in: replica.v3.space)
        v3Watchers.send(deliveries)
        catchUpV3Watchers()
    }

    /// After a snapshot replaced the key space: synced watchers get the changes it brought when the new key space
    /// still holds them, else etcd's cancel with the compacted revision; then those behind catch up.
    func resyncV3Watchers(since before: Int64) {
        guard v3Watchers.watches.count > 0 else { return }
        let space = replica.v3.space
        if before + 1 >= space.compactedRevision, before <= space.revision {
            v3Watchers.send(v3Watchers.watches.applied(since: before, in: space))
        } else {
            for id in v3Watchers.sinks.keys.sorted() {
                v3Watchers.watches.cancel(id)
                v3Watchers.send([V3WatchDelivery(watchID: id, revision: 0, canceled: true, compactRevision: space.compactedRevision)])
            }
        }
        catchUpV3Watchers()
    }

    /// One round of history for each watcher still behind (at most `V3Watches.catchUpRevisionsMax` revisions each),
    /// then the next round queued behind whatever else waits: a watcher replaying a long history never holds the
    /// node's queue for more than a round, and a watcher that does not read is cut off by its output bound meanwhile.
    func catchUpV3Watchers() {
        guard !v3Watchers.watches.unsynced.isEmpty else { return }
        let deliveries = v3Watchers.watches.catchUp(in: replica.v3.space)
        v3Watchers.send(deliveries)
        guard !v3Watchers.watches.unsynced.isEmpty, !v3Watchers.catchUpScheduled else { return }
        v3Watchers.catchUpScheduled = true
        queue.async { [self] in
            v3Watchers.catchUpScheduled = false
            catchUpV3Watchers()
        }
    }
}
