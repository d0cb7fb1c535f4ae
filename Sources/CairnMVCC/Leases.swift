// Leases: the replicated table (which leases exist, their TTLs, which keys each holds) and the leader's clock for
// them. As in etcd, expiry is not replicated: only the leader tracks deadlines, renews them on keep-alive, and
// proposes a revoke when one passes; a new leader starts every lease's full TTL afresh, so no lease ever expires
// early because leadership moved.
import HashTreeCollections

package struct Lease: Sendable, Equatable {
    package var id: Int64
    /// Seconds, after etcd's minimum was applied.
    package var ttl: Int64
    package var keys: TreeSet<ByteKey> = []

    package init(id: Int64, ttl: Int64) {
        self.id = id
        self.ttl = ttl
    }
}

/// Persistent maps, so a published copy of the key space costs nothing when the next write changes a lease.
package struct LeaseTable: Sendable {
    /// etcd's MaxLeaseTTL: nine billion seconds.
    package static let ttlSecondsMax: Int64 = 9_000_000_000
    private var byID: TreeDictionary<Int64, Lease> = [:]

    package init() {}

    package subscript(id: Int64) -> Lease? { byID[id] }
    package var count: Int { byID.count }
    /// Every lease, by ID (etcd's LeaseLeases lists them in no promised order; a stable one is a valid one).
    package var all: [Lease] { byID.values.sorted { $0.id < $1.id } }

    mutating func insert(_ lease: Lease) { byID[lease.id] = lease }
    mutating func remove(_ id: Int64) { byID[id] = nil }
    mutating func attach(_ key: ByteKey, to id: Int64) { byID[id]?.keys.insert(key) }
    mutating func detach(_ key: ByteKey, from id: Int64) { byID[id]?.keys.remove(key) }
}

/// The leader's deadlines for leases, in cluster-time nanoseconds. Pure: the caller passes the time.
package struct LeaseClock: Sendable {
    private var deadlines: [Int64: Int64] = [:]

    package init() {}

    /// On becoming leader: every lease gets its full TTL from now, plus `extraNanos` (etcd extends by the election
    /// timeout so clients have time to find the new leader).
    package mutating func promote(_ leases: LeaseTable, now: Int64, extraNanos: Int64) {
        deadlines = [:]
        for lease in leases.all { deadlines[lease.id] = Self.deadline(now, lease.ttl, extraNanos: extraNanos) }
    }

    /// On stepping down: followers keep no deadlines.
    package mutating func demote() { deadlines = [:] }

    /// A grant or a keep-alive: the lease's full TTL from now.
    package mutating func renew(_ lease: Lease, now: Int64) { deadlines[lease.id] = Self.deadline(now, lease.ttl) }

    /// `now` plus `seconds` (up to nine billion: more nanoseconds than an Int64 holds after now) plus `extraNanos`,
    /// saturating at the largest time rather than trapping.
    static func deadline(_ now: Int64, _ seconds: Int64, extraNanos: Int64 = 0) -> Int64 {
        let (nanos, overflowA) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let (sum, overflowB) = now.addingReportingOverflow(nanos)
        let (total, overflowC) = sum.addingReportingOverflow(extraNanos)
        return overflowA || overflowB || overflowC ? .max : total
    }

    package mutating func forget(_ id: Int64) { deadlines[id] = nil }

    /// Whole seconds left, truncated as etcd's TimeToLive answers (`int64(l.Remaining().Seconds())`: a 5 s lease
    /// asked at once says 4); 0 once due; -1 for a lease this clock does not know.
    package func remainingSeconds(_ id: Int64, now: Int64) -> Int64 {
        guard let deadline = deadlines[id] else { return -1 }
        let left = deadline - now
        return left <= 0 ? 0 : left / 1_000_000_000
    }

    /// The leases due at `now`, lowest ID first, so every leader proposes revokes in the same order.
    package func expired(now: Int64) -> [Int64] {
        deadlines.filter { $0.value <= now }.map(\.key).sorted()
    }
}
