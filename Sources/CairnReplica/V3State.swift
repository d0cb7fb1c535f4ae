// The v3 side of one member's replicated state: the MVCC key space its log's v3 entries build, every lease's deadline,
// and what the leader has proposed about them. Owned by the Replica; watchers live with the runner.
import CairnMVCC

package struct V3State {
    package private(set) var space = MVCCKeySpace()
    /// Every lease's deadline in cluster time, renewed by each grant and keep-alive entry at the entry's time on
    /// every member (a follower answers TimeToLive from it). Only a leader proposes revokes from it, and only once it
    /// has given every lease its full TTL again in its own term (`leasesPromotedTerm`), as etcd's Promote does.
    package var leaseClock = LeaseClock()
    package var leasesPromotedTerm: UInt64 = 0
    /// Revokes this leader proposed for expired leases and not yet applied.
    var revokesPending: Set<Int64> = []
    /// etcd's minimum lease TTL (seconds): 1.5 election timeouts, rounded up.
    let minimumLeaseTTL: Int64
    /// `--auto-compaction-*`, consulted by the leader; a compaction it proposed is pending until applied.
    var autoCompaction: AutoCompaction?
    var compactionPending = false

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

    /// A key space from a snapshot: every lease gets its full TTL from the snapshot's time.
    mutating func restore(_ loaded: MVCCKeySpace, at time: Int64) {
        space = loaded
        leaseClock.promote(loaded.leases, now: time, extraNanos: 0)
        leasesPromotedTerm = 0
        revokesPending = []
    }
}
