// The member's v3 key space: v3 writes proposed through the log and answered on apply, lease expiry proposed by the
// leader by the cluster clock, watchers fed after each applied batch, and the key space's section of a snapshot.
import CairnAPI
import CairnMVCC
import CairnStore

extension KeySpaceNode {
    /// etcd's minimum lease TTL: `3 * electionTicks / 2` heartbeats, in whole seconds rounded up.
    static func minimumLeaseTTL(_ options: Options) -> Int64 {
        let heartbeat = max(1, options.heartbeatIntervalMilliseconds)
        let ticks = max(2, options.electionTimeoutMilliseconds / heartbeat)
        let milliseconds = Int64(3 * ticks / 2) * Int64(heartbeat)
        return (milliseconds + 999) / 1000
    }

    /// Replicates a v3 write (or lease operation) and calls `completion` (on the node queue) with its outcome and
    /// the view right after it was applied; a failure to replicate (timeout, storage) is etcd's Unavailable.
    func proposeV3(_ command: MVCCCommand, completion: @escaping @Sendable (Result<MVCCResult, V3Error>, View) -> Void) {
        queue.async { [self] in
            let sequence = nextSequence
            submit(.mvcc(command.encoded())) { [self] result, view in
                let applied = v3.results.removeValue(forKey: sequence)
                switch (result, applied) {
                case (.failure(let error), _):
                    completion(.failure(V3Error(.unavailable, String(decoding: error.causeBytes, as: UTF8.self))), view)
                case (.success, .success(let answer)?): completion(.success(answer), view)
                case (.success, .failure(let error)?): completion(.failure(V3Error(error)), view)
                case (.success, nil): completion(.failure(V3Error(.internalError, "etcdserver: the v3 write was not applied")), view)
                }
            }
        }
    }

    /// Applies a committed v3 entry; an entry that cannot be decoded is a no-op on every member alike.
    func applyV3(_ bytes: [UInt8], proposal: Proposal, index: UInt64) {
        let command: MVCCCommand
        do { command = try MVCCCommand(decoding: bytes) } catch {
            metrics.count("cairn_entries_undecodable_total")
            return
        }
        let result = v3.apply(command, at: appliedClusterTime)
        if proposal.origin == requester, writers[proposal.sequence] != nil { v3.results[proposal.sequence] = result }
    }

    /// A leader gives every lease its full TTL plus an election timeout once it has applied everything before its own
    /// term (its first entry of the term): from then on it may expire leases, never earlier than their holders expect.
    func promoteLeasesIfLeading(entryTerm: UInt64) {
        let term = raft.term.value
        guard raft.role == .leader, entryTerm == term, v3.leasesPromotedTerm != term else { return }
        v3.leasesPromotedTerm = term
        v3.revokesPending = []
        let leases = v3.space.leases
        v3.leaseClock.promote(leases, now: appliedClusterTime,
                              extraNanos: Int64(options.electionTimeoutMilliseconds) * 1_000_000)
    }

    /// On the leader's expiry timer: a revoke for each lease past its deadline (attached keys go in its revision).
    func proposeLeaseRevokesIfDue() {
        guard raft.role == .leader, v3.leasesPromotedTerm == raft.term.value else { return }
        for id in v3.leaseClock.expired(now: now) where !v3.revokesPending.contains(id) {
            v3.revokesPending.insert(id)
            submit(.mvcc(MVCCCommand.revokeLease(id: id).encoded())) { [self] _, _ in v3.revokesPending.remove(id) }
        }
    }

    /// On the leader's 500 ms timer: the compaction `--auto-compaction-*` asks for now, if any, one at a time.
    func proposeCompactionIfDue() {
        // Read before `autoCompaction` is modified: one access to `v3` at a time.
        let revision = v3.space.revision, now = self.now
        guard raft.role == .leader, !v3.compactionPending, let due = v3.autoCompaction?.due(now: now, revision: revision) else { return }
        v3.compactionPending = true
        let sequence = nextSequence
        submit(.mvcc(MVCCCommand.compact(revision: due).encoded())) { [self] result, _ in
            v3.compactionPending = false
            let done: Bool
            switch (result, v3.results.removeValue(forKey: sequence)) {
            // Already compacted that far counts as done, as in etcd.
            case (.success, .success?), (.success, .failure(.compacted)?): done = true
            default: done = false
            }
            let finished = self.now
            v3.autoCompaction?.compacted(due, succeeded: done, now: finished)
        }
    }

    /// A lease's remaining seconds as this member's clock has them (-1 for a lease it does not know) and the lease.
    func leaseTimeToLive(_ id: Int64, completion: @escaping @Sendable (Int64, Lease?, View) -> Void) {
        queue.async { [self] in
            let lease = v3.space.leases[id]
            completion(lease == nil ? -1 : max(0, v3.leaseClock.remainingSeconds(id, now: now)), lease, view())
        }
    }

    // MARK: - Watches

    /// Registers a v3 watcher: `created` gets its ID and the revision it was made at (or the refusal), then `deliver`
    /// gets its answers in order, history first; a start already compacted is answered with its cancellation.
    func watchV3(_ request: V3WatchRequest, deliver: @escaping @Sendable (V3WatchDelivery) -> Void,
                 created: @escaping @Sendable (Result<Int64, V3Error>, Int64) -> Void) {
        queue.async { [self] in
            let id = v3.nextWatchID
            do throws(V3Watches.CreateError) {
                let space = v3.space
                let cancelled = try v3.watches.create(id, request, in: space)
                v3.nextWatchID += 1
                created(.success(id), v3.space.revision)
                if let cancelled { return deliver(cancelled) }
                v3.watchSinks[id] = deliver
                catchUpV3Watchers()
            } catch {
                created(.failure(V3Error(.resourceExhausted, "etcdserver: too many watchers (\(V3Watches.watchersMax))")), v3.space.revision)
            }
        }
    }

    func cancelWatchV3(_ id: Int64) {
        queue.async { [self] in
            v3.watches.cancel(id)
            v3.watchSinks[id] = nil
        }
    }

    var v3WatcherCount: Int { queue.sync { v3.watches.count } }

    /// etcd's progress notification: every interval, an empty answer at the current revision to each synced watcher
    /// that asked for them.
    func notifyWatchProgressIfDue() {
        let now = clock.now()
        if v3.progressNotifiedNanos == 0 { v3.progressNotifiedNanos = now }
        guard now - v3.progressNotifiedNanos >= Int64(options.watchProgressNotifyIntervalMilliseconds) * 1_000_000 else { return }
        v3.progressNotifiedNanos = now
        let space = v3.space
        let notifications = v3.watches.progress(in: space)
        v3.send(notifications)
    }

    /// After an applied batch: the changes since `revision` to the synced watchers, then history to those behind.
    func deliverV3Watches(since revision: Int64) {
        guard v3.watches.count > 0 else { return }
        let space = v3.space
        let deliveries = v3.watches.applied(since: revision, in: space)
        v3.send(deliveries)
        catchUpV3Watchers()
    }

    /// One round of history for each watcher still behind (at most `V3Watches.catchUpRevisionsMax` revisions each),
    /// then the next round queued behind whatever else waits: a watcher replaying a long history never holds the
    /// node's queue for more than a round, and a watcher that does not read is cut off by its output bound meanwhile.
    func catchUpV3Watchers() {
        guard !v3.watches.unsynced.isEmpty else { return }
        let space = v3.space
        let deliveries = v3.watches.catchUp(in: space)
        v3.send(deliveries)
        guard !v3.watches.unsynced.isEmpty, !v3.catchUpScheduled else { return }
        v3.catchUpScheduled = true
        queue.async { [self] in
            v3.catchUpScheduled = false
            catchUpV3Watchers()
        }
    }

    // MARK: - Snapshot section

    static let mvccSectionMagic = Array("CAIRNV31".utf8)

    /// After the member table: "CAIRNV31" and the key space as `MVCCKeySpace.writeSnapshot` lays it out.
    static func writeMVCCSection(_ space: MVCCKeySpace, to sink: inout some SnapshotSink) throws {
        try sink.write(mvccSectionMagic)
        try space.writeSnapshot { try sink.write($0) }
    }

    static func readMVCCSection(from source: inout SnapshotChunks) throws -> MVCCKeySpace {
        guard try source.read(exactly: mvccSectionMagic.count) == mvccSectionMagic else { throw TreeSnapshotError.badMagic }
        return try MVCCKeySpace.readSnapshot { try source.read(exactly: $0) }
    }
}
