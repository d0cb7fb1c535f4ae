// What a Replica asks its runner to do (persist, send, publish, answer, snapshot), and the values it hands over:
// its options, the view a read sees, the outcome of a write, the counters etcd reports.
import CairnMVCC
import CairnRaft
import CairnStore

/// One thing for the runner to do, in the order given. The caller contract: `persist` before anything after it, and
/// report its outcome (`persisted` or `persistFailed`) before the Replica takes another batch.
package enum ReplicaAction: Sendable {
    /// Make the entries durable (dropping any stored suffix the first replaces), and the hard state when given (term
    /// or vote changed); then call `persisted`, or `persistFailed`. Nothing can join the next batch while it runs, so
    /// the runner may run it in place. `recoverFirst`: a failed persist left storage unknown; cut it back to what is
    /// durable first.
    case persist(entries: [Entry], hardState: HardState?, recoverFirst: Bool)
    /// Every entry through this index is durable and committed: record it (no fsync needed).
    case recordCommit(UInt64)
    case send(to: UInt64, PeerMessage)
    /// A batch was applied (or a snapshot installed): publish the view, wake watchers, then release the answers.
    case applied(AppliedBatch)
    case membersChanged(MemberTable)
    /// A write that will not be applied for this member's proposer (timed out, storage failing): answer it with the
    /// latest view.
    case writeFailed(token: UInt64, StoreError)
    /// A read is confirmed and applied (nil) or has failed: answer it with the latest view.
    case readDone(token: UInt64, StoreError?)
    /// Write this state as the snapshot `metadata` describes; then call `snapshotWritten` or `snapshotFailed`.
    case writeSnapshot(SnapshotMetadata, ReplicaState)
    /// Stream the snapshot file the request names to a follower; then call `snapshotSent`.
    case streamSnapshot(SnapshotRequest)
    /// A chunk of the leader's snapshot stream, for the file being received; a verified file goes to `snapshotReceived`.
    case receiveSnapshotChunk(Message)
    /// Load the received snapshot file accepted for this index; then call `installSnapshot` or `storageFailed`.
    case loadSnapshot(SnapshotMetadata)
    /// Call `retryPersist` after this long.
    case retryPersist(afterMilliseconds: Int)
    /// Publish the member's status now (the runner also does after every call), before the answers that follow.
    case publishStatus
    case log(ReplicaLogLine)
    case count(metric: String)
}

/// A line for the member's log: the runner owns the logger.
package struct ReplicaLogLine: Sendable {
    package enum Level: Sendable { case info, notice, warning, error, critical }
    package var level: Level
    package var message: String
    package var metadata: [String: String] = [:]
}

/// What one applied batch changed, and who learns of it.
package struct AppliedBatch: Sendable {
    package var view: ReplicaView
    /// v2 events in log order, for the watch hub.
    package var events: [(event: StoreEvent, removed: RemovedNodes)] = []
    /// The entries applied, in index order (the simulator checks that every member applies the same).
    package var entries: [Entry] = []
    /// The v3 revision before the batch: watchers get the changes since.
    package var v3RevisionBefore: Int64
    /// The answers for this member's proposers, by token, in log order.
    package var writes: [(token: UInt64, outcome: WriteOutcome)] = []
    /// Reads whose read index the batch reached.
    package var reads: [UInt64] = []
    /// The write counters after the batch.
    package var statistics: StoreStatistics
    /// Set when the batch is a snapshot installed: v3 watchers are resynchronised rather than fed the changes.
    package var isSnapshot = false
}

/// An applied write's outcome, by the key space it went to.
package enum WriteOutcome: Sendable {
    case v2(Result<[(event: StoreEvent, removed: RemovedNodes)], StoreError>)
    /// nil: the v3 command could not be decoded and was applied as a no-op.
    case v3(Result<MVCCResult, MVCCError>?)
    case member(MemberTable)
}

/// What a read sees: an immutable root and the indexes it reflects.
package struct ReplicaView: Sendable {
    package var root: StoreNode
    /// The v3 key space, beside the v2 one (separate, as in etcd).
    package var mvcc = MVCCKeySpace()
    package var etcdIndex: UInt64
    package var raftIndex: UInt64
    package var raftTerm: UInt64
    /// Cluster time of the last applied entry, and the runner's clock when it was applied (0 before any).
    package var clusterTimeNanos: Int64 = 0
    package var appliedAtNanos: Int64 = 0

    package init(root: StoreNode, mvcc: MVCCKeySpace = MVCCKeySpace(), etcdIndex: UInt64, raftIndex: UInt64, raftTerm: UInt64,
                 clusterTimeNanos: Int64 = 0, appliedAtNanos: Int64 = 0) {
        self.root = root
        self.mvcc = mvcc
        self.etcdIndex = etcdIndex
        self.raftIndex = raftIndex
        self.raftTerm = raftTerm
        self.clusterTimeNanos = clusterTimeNanos
        self.appliedAtNanos = appliedAtNanos
    }

    /// Cluster time at the runner's clock `local`: the last applied entry's time advanced by the clock since.
    /// Before any entry is applied, `local` itself.
    package func clusterTime(at local: Int64) -> Int64 {
        clusterTimeNanos == 0 ? local : clusterTimeNanos + max(0, local - appliedAtNanos)
    }
}

package struct ReplicaOptions: Sendable {
    package var id: UInt64
    /// The initial voters; empty for a member joining an existing cluster (it learns the membership from the log).
    package var voters: [UInt64]
    /// The initial member table (names and peer URLs of the initial voters; empty when joining).
    package var members: [MemberRecord] = []
    /// What this member publishes about itself once it is in the cluster.
    package var name = "default"
    package var clientURLs: [String] = []
    package var heartbeatIntervalMilliseconds = 100
    package var electionTimeoutMilliseconds = 1000
    package var snapshotCount = 100_000
    package var historyBytesMax = 64 * 1024 * 1024
    /// The v3 key space's automatic compaction, proposed by the leader (nil: none).
    package var autoCompaction: AutoCompaction.Mode?
    /// How often v3 watchers that asked for progress notifications get one (etcd's default: 10 minutes).
    package var watchProgressNotifyIntervalMilliseconds = 600_000
    /// How long a write or a `quorum=true` read waits for its entry or read index before failing.
    package var requestTimeoutMilliseconds = 7000
    /// The Raft core's tuning beyond the timeouts: the server keeps the defaults, the simulator shrinks messages and
    /// windows and turns on lease reads and the core's own checks.
    package var raftHeartbeatIntervalTicks = 1
    package var raftMessageBytesMax = 1 << 20
    package var raftInflightMessagesMax = 256
    package var raftLeaseReads = false
    package var raftDebugChecks = false

    package init(id: UInt64, voters: [UInt64]) {
        self.id = id
        self.voters = voters
    }

    /// Raft ticks once per heartbeat; an election timeout is this many ticks.
    package var electionTimeoutTicks: Int { max(2, electionTimeoutMilliseconds / max(1, heartbeatIntervalMilliseconds)) }

    /// etcd's minimum lease TTL: `3 * electionTicks / 2` heartbeats, in whole seconds rounded up.
    package var minimumLeaseTTL: Int64 {
        let milliseconds = Int64(3 * electionTimeoutTicks / 2) * Int64(max(1, heartbeatIntervalMilliseconds))
        return (milliseconds + 999) / 1000
    }
}

/// The counters etcd reports at /v2/stats/store.
package struct StoreStatistics: Sendable {
    package var getsSuccess = 0, getsFail = 0
    package var setsSuccess = 0, setsFail = 0
    package var deleteSuccess = 0, deleteFail = 0
    package var updateSuccess = 0, updateFail = 0
    package var createSuccess = 0, createFail = 0
    package var compareAndSwapSuccess = 0, compareAndSwapFail = 0
    package var compareAndDeleteSuccess = 0, compareAndDeleteFail = 0
    package var expireCount = 0
    package var watchers = 0

    package init() {}

    mutating func count(_ command: StoreCommand, succeeded: Bool) {
        switch (command.method, command.prevExist) {
        case (.post, _), (.put, false?):
            succeeded ? (createSuccess += 1) : (createFail += 1)
        case (.put, true?) where command.prevIndex == 0 && command.prevValue.isEmpty:
            succeeded ? (updateSuccess += 1) : (updateFail += 1)
        case (.put, _) where command.prevIndex > 0 || !command.prevValue.isEmpty:
            succeeded ? (compareAndSwapSuccess += 1) : (compareAndSwapFail += 1)
        case (.put, _):
            succeeded ? (setsSuccess += 1) : (setsFail += 1)
        case (.delete, _) where command.prevIndex > 0 || !command.prevValue.isEmpty:
            succeeded ? (compareAndDeleteSuccess += 1) : (compareAndDeleteFail += 1)
        case (.delete, _):
            succeeded ? (deleteSuccess += 1) : (deleteFail += 1)
        case (.expire, _):
            break
        }
    }
}
