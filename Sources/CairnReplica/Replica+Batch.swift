// The Replica's batch loop: it takes the Raft core's batches one at a time, sends, applies and answers what may go
// at once, asks the runner to persist the rest, and reacts to storage outcomes and snapshot files.
import CairnRaft
import CairnStore

extension Replica {
    /// Takes the core's next batches: everything that arrived since the last drive shares one batch (one fsync) and
    /// one ReadIndex round. Stops at a persist or a snapshot load, which the runner reports back.
    package mutating func drive(now: Int64) -> [ReplicaAction] {
        self.now = now
        var out: [ReplicaAction] = []
        startReadRound(into: &out)
        driveBatches(into: &out)
        return out
    }

    /// True while a batch waits for the runner (persist or snapshot load) or storage is out.
    package var isBusy: Bool { persisting != nil || loading != nil || stalled != nil || storageBroken }

    mutating func driveBatches(into out: inout [ReplicaAction]) {
        while !isBusy, raft.hasReady {
            let ready = raft.ready()
            if let snapshot = ready.snapshot {
                loading = ready
                return out.append(.loadSnapshot(snapshot))
            }
            process(ready, into: &out)
        }
    }

    /// Sends what may go now, applies what is committed and answers confirmed reads, then persists or finishes.
    mutating func process(_ ready: Ready, into out: inout [ReplicaAction]) {
        // Nothing leaves in a term that is not durable yet: a lone voter elects itself in the batch that raises its
        // term, and were it to crash before the persist, its next run could lead that term again with other entries.
        if let term = ready.hardState?.term, term != savedHardState.term {
            heldMessages = ready.messages
        } else {
            for message in ready.messages { out.append(.send(to: message.to.value, .raft(message))) }
        }
        for request in ready.snapshotsToSend { out.append(.streamSnapshot(request)) }
        for chunk in ready.snapshotChunks { out.append(.receiveSnapshotChunk(chunk)) }
        // Committed entries are already durable here, so they are applied (and their writers answered) without
        // waiting for this batch's own persist: a write's answer never waits behind the fsync of later writes.
        apply(ready.committedEntries, into: &out)
        for state in ready.readStates { readRoundConfirmed(context: state.context, index: state.index.value, into: &out) }
        // Term and vote must be durable before a vote or an acknowledgement leaves; commit need not be (it is
        // learned again from the leader; `finish` records it without an fsync), so a batch that only moves commit
        // costs no extra fsync.
        let hardState = ready.hardState.flatMap { $0.term != savedHardState.term || $0.vote != savedHardState.vote ? $0 : nil }
        guard !ready.entries.isEmpty || hardState != nil else { return finish(ready, into: &out) }
        persisting = (ready, hardState)
        out.append(.persist(entries: ready.entries, hardState: hardState, recoverFirst: false))
    }

    /// The last `persist` is durable.
    package mutating func persisted(now: Int64) -> [ReplicaAction] {
        self.now = now
        guard let (ready, hardState) = persisting else { return [] }
        persisting = nil
        var out: [ReplicaAction] = []
        if stalled != nil {
            stalled = nil
            storageFailure = nil
            storageRetryMilliseconds = Self.storageRetryMillisecondsMin
            out.append(.log(ReplicaLogLine(level: .notice, message: "storage recovered; writes are taken again")))
        }
        if let hardState { savedHardState = hardState }
        raft.storage.didPersist(ready.entries)
        finish(ready, into: &out)
        driveBatches(into: &out)
        return out
    }

    /// The rest of a batch, once its persist is durable.
    mutating func finish(_ ready: Ready, into out: inout [ReplicaAction]) {
        // Every entry through the commit index is durable here, so it is recorded (no fsync of its own): a member
        // restarted while no leader can be reached applies and serves what it knew was committed.
        if let h = ready.hardState { out.append(.recordCommit(min(h.commit.value, raft.storage.lastIndex.value))) }
        for message in heldMessages + ready.messagesAfterPersist { out.append(.send(to: message.to.value, .raft(message))) }
        heldMessages = []
        raft.advance(ready)
        // After advance: the core describes snapshots only up to what it knows is applied.
        if !ready.committedEntries.isEmpty { snapshotIfDue(into: &out) }
    }

    /// The last `persist` failed (a full disk, an I/O error, no descriptor left): nothing more is acknowledged, the
    /// requests waiting are failed, and the same batch is persisted again after a growing delay, until it succeeds.
    package mutating func persistFailed(reason: String, now: Int64) -> [ReplicaAction] {
        self.now = now
        guard let batch = persisting else { return [] }
        persisting = nil
        var out: [ReplicaAction] = []
        if stalled == nil {
            out.append(.log(ReplicaLogLine(level: .critical, message: "storage failed; writes are refused while it is retried", metadata: ["error": reason])))
            out.append(.count(metric: "cairn_storage_failures_total"))
        } else {
            out.append(.log(ReplicaLogLine(level: .warning, message: "storage still fails",
                                           metadata: ["error": reason, "retry in ms": "\(storageRetryMilliseconds)"])))
        }
        stalled = batch
        storageFailure = "\(reason); retrying"
        out.append(.publishStatus)
        failWaitingRequests(into: &out)
        out.append(.retryPersist(afterMilliseconds: storageRetryMilliseconds))
        storageRetryMilliseconds = min(2 * storageRetryMilliseconds, Self.storageRetryMillisecondsMax)
        return out
    }

    /// The delay after a failed persist is over: the stalled batch is persisted again, storage recovered first.
    package mutating func retryPersist() -> [ReplicaAction] {
        guard let batch = stalled, persisting == nil else { return [] }
        persisting = batch
        return [.persist(entries: batch.ready.entries, hardState: batch.hardState, recoverFirst: true)]
    }

    /// Storage failed in a way the member does not recover from by itself (installing a received snapshot).
    package mutating func storageFailed(reason: String) -> [ReplicaAction] {
        storageBroken = true
        storageFailure = "\(reason); refused until restart"
        persisting = nil
        loading = nil
        var out: [ReplicaAction] = [.log(ReplicaLogLine(level: .critical, message: "storage failed; this member stops taking part until restarted",
                                                        metadata: ["error": reason])), .publishStatus]
        failWaitingRequests(into: &out)
        return out
    }

    mutating func failWaitingRequests(into out: inout [ReplicaAction]) {
        guard let failure = storageUnavailable() else { return }
        let waiting = writers
        writers = [:]
        writerDeadlines = []
        for sequence in waiting.keys.sorted() { finish(waiting[sequence]!, failed: failure, into: &out) }
        for context in readers.keys.sorted() { out.append(.readDone(token: readers[context]!, failure)) }
        readers = [:]
        readerDeadlines = []
    }

    // MARK: - Snapshots

    /// Every `snapshotCount` entries, or sooner for a waiting backup.
    mutating func snapshotIfDue(into out: inout [ReplicaAction]) {
        if appliedIndex - snapshotIndex >= UInt64(max(1, options.snapshotCount)) || backupWanted { takeSnapshot(into: &out) }
    }

    mutating func takeSnapshot(into out: inout [ReplicaAction]) {
        guard !snapshotInProgress, let metadata = raft.snapshotMetadata(through: LogIndex(appliedIndex)) else { return }
        snapshotInProgress = true
        backupWanted = false
        out.append(.writeSnapshot(metadata, ReplicaState(keySpace: keySpace, sessions: sessions, members: members, mvcc: v3.space)))
    }

    /// A backup wants a snapshot of the state applied now (or later).
    package mutating func requestSnapshot() -> [ReplicaAction] {
        backupWanted = true
        var out: [ReplicaAction] = []
        takeSnapshot(into: &out)
        return out
    }

    /// The last `writeSnapshot` is durable; the log now starts after `oldestKept`, the oldest snapshot storage kept.
    package mutating func snapshotWritten(index: UInt64, oldestKept: SnapshotMetadata?) -> [ReplicaAction] {
        snapshotIndex = max(snapshotIndex, index)
        snapshotInProgress = false
        if let oldestKept { raft.storage.applySnapshot(oldestKept) }
        var out: [ReplicaAction] = []
        if backupWanted { takeSnapshot(into: &out) }
        return out
    }

    package mutating func snapshotFailed() {
        snapshotInProgress = false
    }

    /// A stream of a snapshot to a follower ended.
    package mutating func snapshotSent(to follower: MemberID, success: Bool) {
        raft.reportSnapshot(to: follower, success: success)
    }

    /// A received snapshot file was verified; false when the core does not want it (the runner removes it).
    package mutating func snapshotReceived(_ metadata: SnapshotMetadata) -> Bool {
        raft.restoreSnapshot(metadata)
    }

    /// The state of the snapshot a `loadSnapshot` named: it replaces this member's, and the batch goes on.
    package mutating func installSnapshot(_ state: ReplicaState, now: Int64) -> [ReplicaAction] {
        self.now = now
        guard let ready = loading, let metadata = ready.snapshot else { return [] }
        loading = nil
        let revisionBefore = v3.space.revision
        keySpace = state.keySpace
        sessions = state.sessions
        members = state.members
        appliedIndex = metadata.index.value
        appliedClusterTime = Int64(bitPattern: metadata.clusterTimeNanos)
        appliedAt = now
        v3.restore(state.mvcc, at: appliedClusterTime)
        snapshotIndex = appliedIndex
        raft.storage.applySnapshot(metadata)
        var out: [ReplicaAction] = [.membersChanged(members)]
        out.append(.applied(AppliedBatch(view: view, v3RevisionBefore: revisionBefore, statistics: statistics, isSnapshot: true)))
        out.append(.log(ReplicaLogLine(level: .notice, message: "installed the leader's snapshot", metadata: ["index": "\(metadata.index)"])))
        process(ready, into: &out)
        driveBatches(into: &out)
        return out
    }
}
