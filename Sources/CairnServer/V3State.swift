// The v3 side of one member: the MVCC key space its log's v3 entries build, every lease's deadline, the watchers
// and the answers waiting for this member's proposers. Owned by KeySpaceNode and touched on its queue only.
import CairnMVCC

struct V3State {
    var space = MVCCKeySpace()
    /// Every lease's deadline in cluster time, renewed by each grant and keep-alive entry at the entry's time on
    /// every member (a follower answers TimeToLive from it). Only a leader proposes revokes from it, and only once it
    /// has given every lease its full TTL again in its own term (`leasesPromotedTerm`), as etcd's Promote does.
    var leaseClock = LeaseClock()
    var leasesPromotedTerm: UInt64 = 0
    /// Revokes this leader proposed for expired leases and not yet applied.
    var revokesPending: Set<Int64> = []
    var watches = V3Watches()
    /// Where each watcher's answers go, by watch ID.
    var watchSinks: [Int64: @Sendable (V3WatchDelivery) -> Void] = [:]
    var nextWatchID: Int64 = 1
    /// Outcomes of this member's v3 proposals, by proposal sequence, until their completions take them.
    var results: [UInt64: Result<MVCCResult, MVCCError>] = [:]
    /// etcd's minimum lease TTL (seconds): 1.5 election timeouts, rounded up.
    let minimumLeaseTTL: Int64
    /// `--auto-compaction-*`, consulted by the leader; a compaction it proposed is pending until applied.
    var autoCompaction: AutoCompaction?
    var compactionPending = false
    /// When watchers were last sent progress notifications (this process's clock; 0: not yet).
    var progressNotifiedNanos: Int64 = 0
    /// A round of history replay is queued for the watchers still behind.
    var catchUpScheduled = false

    init(minimumLeaseTTL: Int64, autoCompaction: AutoCompaction?) {
        self.minimumLeaseTTL = minimumLeaseTTL
        self.autoCompaction = autoCompaction
    }

    /// Applies a logged command at the entry's cluster time; lease deadlines follow grants, keep-alives and revokes.
    mutating func apply(_ command: MVCCCommand, at time: Int64) -> Result<MVCCResult, MVCCError> {
        let result = space.apply(command, minimumLeaseTTL: minimumLeaseTTL)
        switch result {
        case .success(.leaseGranted(let lease, _)), .success(.leaseKeptAlive(let lease, _)):
            leaseClock.renew(lease, now: time)
        default:
            break
        }
        if case .revokeLease(let id) = command {
            leaseClock.forget(id)
            revokesPending.remove(id)
        }
        return result
    }

    /// A key space from a snapshot: every lease gets its full TTL from the snapshot's time. Synced watchers get the
    /// changes the snapshot brought when the new key space still holds them, else etcd's cancel with the compacted
    /// revision (the caller then catches up those still behind).
    mutating func restore(_ loaded: MVCCKeySpace, at time: Int64) {
        let before = space.revision
        space = loaded
        leaseClock.promote(loaded.leases, now: time, extraNanos: 0)
        leasesPromotedTerm = 0
        revokesPending = []
        guard watches.count > 0 else { return }
        guard before + 1 >= loaded.compactedRevision, before <= loaded.revision else {
            for id in watchSinks.keys.sorted() {
                watches.cancel(id)
                send([V3WatchDelivery(watchID: id, revision: 0, canceled: true, compactRevision: loaded.compactedRevision)])
            }
            return
        }
        send(watches.applied(since: before, in: space))
    }

    /// Hands the watchers' answers to their sinks; a cancelled watcher's sink goes with its last answer.
    mutating func send(_ deliveries: [V3WatchDelivery]) {
        for delivery in deliveries {
            watchSinks[delivery.watchID]?(delivery)
            if delivery.canceled { watchSinks[delivery.watchID] = nil }
        }
    }
}
