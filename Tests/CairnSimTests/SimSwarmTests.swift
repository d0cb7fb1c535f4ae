// Runs a few hundred simulator seeds in the test suite, and checks that the checker itself can fail.
// The full swarm (10,000 seeds) is `swift run -c release cairn-sim --seeds 10000`.
import CairnRaft
import CairnSim
import Testing

@Suite struct SimSwarmTests {
    @Test func threeHundredSeedsHoldSafetyAndLiveness() throws {
        var committed = 0
        var reads = 0
        for seed in UInt64(0)..<300 {
            var cluster = SimCluster(seed: seed, options: SimOptions.forSeed(seed))
            do {
                let summary = try cluster.run()
                committed += summary.committedEntries
                reads += summary.readsServed
            } catch {
                Issue.record("seed \(seed): \(error) — replay with: swift run -c release cairn-sim --seed \(seed)")
                return
            }
        }
        // A swarm that commits nothing would pass every safety check vacuously.
        #expect(committed > 300 * 20)
        #expect(reads > 300)
    }

    /// Seeds the full swarm once failed on: an old leader's unsent entry and a new leader's conflicting append
    /// ended up in one batch, and storage kept the stale entry (State Machine Safety at index 1).
    @Test(arguments: [UInt64(6338), 3_107_392_012])
    func formerlyFailingSeedsHold(seed: UInt64) throws {
        var cluster = SimCluster(seed: seed, options: SimOptions.forSeed(seed))
        _ = try cluster.run()
    }

    @Test func checkerCatchesDivergentApply() throws {
        var checker = ClusterChecker()
        let a = Entry(term: Term(1), index: LogIndex(1), clusterTimeNanos: 0, kind: .normal, data: [1])
        var b = a
        b.data = [2]
        try checker.observeApplied([a], by: MemberID(1), highestTerm: Term(1))
        #expect(throws: ClusterChecker.Violation.self) {
            try checker.observeApplied([b], by: MemberID(2), highestTerm: Term(1))
        }
    }

    @Test func checkerCatchesStaleRead() throws {
        var checker = ClusterChecker()
        let a = Entry(term: Term(1), index: LogIndex(1), clusterTimeNanos: 0, kind: .normal, data: [1])
        try checker.observeApplied([a], by: MemberID(1), highestTerm: Term(1))
        checker.readRequested(context: 9)
        #expect(throws: ClusterChecker.Violation.self) {
            try checker.readReady(ReadState(context: 9, index: LogIndex(0)))
        }
    }
}
