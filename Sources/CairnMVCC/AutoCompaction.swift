// etcd's automatic compaction (`--auto-compaction-mode periodic|revision`, `--auto-compaction-retention`) as a pure
// policy the leader consults on its ticks: it says which revision to compact, the caller proposes it and reports
// back. Periodic keeps about `retention` of history, sampling the revision every tenth of min(retention, 1 h);
// revision mode keeps the last `retention` revisions, checked every five minutes, as etcd 3.4 does.

package struct AutoCompaction: Sendable {
    package enum Mode: Sendable, Equatable {
        /// Keep this many nanoseconds of history.
        case periodic(retentionNanos: Int64)
        /// Keep this many revisions.
        case revision(retention: Int64)
    }

    static let hourNanos: Int64 = 3_600_000_000_000
    static let revisionCheckNanos: Int64 = 300_000_000_000

    package let mode: Mode
    private var samples: [Int64] = []
    private var nextSample: Int64?
    private var lastSuccess: Int64?
    private var waitNanos: Int64
    private var lastTarget: Int64 = 0

    package init(_ mode: Mode) {
        self.mode = mode
        switch mode {
        case .periodic(let retention): waitNanos = retention
        case .revision: waitNanos = Self.revisionCheckNanos
        }
    }

    private var sampleIntervalNanos: Int64 {
        guard case .periodic(let retention) = mode else { return Self.revisionCheckNanos }
        return max(1, min(retention, Self.hourNanos) / 10)
    }

    /// On each leader tick: the revision to compact now, if any. `revision` is the key space's current revision.
    package mutating func due(now: Int64, revision: Int64) -> Int64? {
        if lastSuccess == nil { lastSuccess = now }
        guard now >= nextSample ?? now else { return nil }
        nextSample = now + sampleIntervalNanos
        switch mode {
        case .periodic(let retention):
            samples.append(revision)
            let kept = Int(retention / sampleIntervalNanos) + 1
            if samples.count > kept { samples.removeFirst(samples.count - kept) }
            guard let since = lastSuccess, now - since >= waitNanos, let oldest = samples.first, oldest > 0 else { return nil }
            return oldest
        case .revision(let retention):
            let target = revision - retention
            guard target > 0, target != lastTarget else { return nil }
            return target
        }
    }

    /// The outcome of the proposed compaction (an "already compacted" answer counts as done, as in etcd).
    package mutating func compacted(_ target: Int64, succeeded: Bool, now: Int64) {
        guard succeeded else { return }
        lastTarget = target
        lastSuccess = now
        if case .periodic(let retention) = mode { waitNanos = min(retention, Self.hourNanos) }
    }
}
