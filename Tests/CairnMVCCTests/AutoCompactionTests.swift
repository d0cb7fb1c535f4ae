// Automatic compaction as etcd 3.4 schedules it: periodic keeps about the retention of history, revision mode keeps
// the last N revisions; driven here by a simulated minute-by-minute clock.
import Testing
@testable import CairnMVCC

@Suite struct AutoCompactionTests {
    static let minute: Int64 = 60_000_000_000

    /// Ticks once a minute for `minutes`, the revision growing by 10 a minute; returns (minute, target) proposals.
    static func run(_ mode: AutoCompaction.Mode, minutes: Int64) -> [(Int64, Int64)] {
        var policy = AutoCompaction(mode)
        var proposals: [(Int64, Int64)] = []
        for m in 0...minutes {
            let now = 1_800_000_000_000_000_000 + m * minute
            if let target = policy.due(now: now, revision: 1 + 10 * m) {
                proposals.append((m, target))
                policy.compacted(target, succeeded: true, now: now)
            }
        }
        return proposals
    }

    @Test func periodicKeepsAboutTheRetention() {
        let proposals = Self.run(.periodic(retentionNanos: 60 * Self.minute), minutes: 180)
        // The first after one hour, then hourly, each at the revision of about an hour before.
        #expect(proposals.map(\.0) == [60, 120, 180])
        #expect(proposals.map(\.1) == [1, 601, 1_201])
    }

    @Test func shortPeriodsCompactEveryPeriod() {
        let proposals = Self.run(.periodic(retentionNanos: 10 * Self.minute), minutes: 40)
        #expect(proposals.map(\.0) == [10, 20, 30, 40])
        #expect(proposals.map(\.1) == [1, 101, 201, 301])
    }

    @Test func revisionModeKeepsTheLastRevisions() {
        let proposals = Self.run(.revision(retention: 100), minutes: 30)
        #expect(proposals.map(\.0) == [10, 15, 20, 25, 30])
        #expect(proposals.map(\.1) == [1, 51, 101, 151, 201])
    }
}
