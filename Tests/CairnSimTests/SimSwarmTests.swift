// Runs a couple of hundred simulator seeds in the test suite, and checks that the checker itself can fail.
// The full swarm (10,000 seeds) is `swift run -c release cairn-sim --seeds 10000`.
import CairnMemberStorage
import CairnRaft
import CairnReplica
import CairnSim
import CairnStorage
import CairnStore
import Testing

@Suite struct SimSwarmTests {
    @Test func twoHundredSeedsHoldSafetyAndLiveness() throws {
        let seeds: UInt64 = 200
        var committed = 0
        var writes = 0
        var reads = 0
        var snapshots = 0
        var configChanges = 0
        var diskFailures = 0
        var crashesMidPersist = 0
        for seed in UInt64(0)..<seeds {
            do {
                var cluster = try SimCluster(seed: seed, options: SimOptions.forSeed(seed))
                let summary = try cluster.run()
                committed += summary.committedEntries
                writes += summary.writesAnswered
                reads += summary.readsServed
                snapshots += summary.snapshotsInstalled
                configChanges += summary.configChanges
                diskFailures += summary.diskFailures
                crashesMidPersist += summary.crashesMidPersist
            } catch {
                Issue.record("seed \(seed): \(error) — replay with: swift run -c release cairn-sim --seed \(seed)")
                return
            }
        }
        // A swarm that commits nothing would pass every safety check vacuously.
        #expect(committed > Int(seeds) * 20)
        #expect(writes > Int(seeds) * 10)
        #expect(reads > Int(seeds))
        // The features under test must actually happen: streamed snapshots installed, membership changed.
        #expect(snapshots > Int(seeds) / 4)
        #expect(configChanges > Int(seeds) / 2)
        #expect(diskFailures > Int(seeds) / 4)
        // Power losses that leave a batch written but not synced, for recovery to cut back.
        #expect(crashesMidPersist > Int(seeds) / 20)
    }

    /// Seeds the full swarm once failed on: an old leader's unsent entry and a new leader's conflicting append
    /// ended up in one batch, and storage kept the stale entry (State Machine Safety at index 1). Then, once the
    /// swarm ran real Replicas: 77, a deposed leader passed a follower's proposal on to the new leader in its own
    /// name, which refused the frame; 21, a learner that had acknowledged nothing was promoted at once (the log was
    /// under 64 entries), and a two-voter cluster whose leader restarted could not elect; 88, a joined member
    /// withheld every vote until it had applied its floor, and the only other voter could never lead again.
    @Test(arguments: [UInt64(6338), 3_107_392_012, 77, 21, 88])
    func formerlyFailingSeedsHold(seed: UInt64) throws {
        // As long a chaotic phase as when they failed.
        var options = SimOptions.forSeed(seed)
        options.chaosSteps = 300
        var cluster = try SimCluster(seed: seed, options: options)
        _ = try cluster.run()
    }

    /// Found once members ran on real storage: a follower crashed between its batch's entries and its hard state,
    /// and restarted with a log ending in a term above its own (Raft's local invariants trapped).
    @Test func aCrashBetweenEntriesAndHardStateRecovers() throws {
        var cluster = try SimCluster(seed: 4354, options: SimOptions.forSeed(4354))
        _ = try cluster.run()
    }

    /// A seed replays exactly: every choice comes from it, none from a clock. (Hash-order iteration would differ
    /// only between processes, which this test cannot see: the code iterates sorted IDs instead.)
    @Test func aSeedReplaysIdentically() throws {
        var first = try SimCluster(seed: 77, options: SimOptions.forSeed(77))
        var second = try SimCluster(seed: 77, options: SimOptions.forSeed(77))
        let a = try first.run(), b = try second.run()
        #expect([a.committedEntries, a.writesAnswered, a.readsServed, a.snapshotsInstalled, a.configChanges, a.diskFailures]
                == [b.committedEntries, b.writesAnswered, b.readsServed, b.snapshotsInstalled, b.configChanges, b.diskFailures])
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

    @Test func checkerCatchesMismatchedSnapshot() throws {
        var checker = ClusterChecker()
        let a = Entry(term: Term(1), index: LogIndex(1), clusterTimeNanos: 0, kind: .normal, data: [1])
        try checker.observeApplied([a], by: MemberID(1), highestTerm: Term(1))
        let digest = ClusterChecker.digest(ClusterChecker.digestSeed, a)
        try checker.observeRestored(index: LogIndex(1), digest: digest, by: MemberID(2))
        #expect(throws: ClusterChecker.Violation.self) {
            try checker.observeRestored(index: LogIndex(1), digest: digest ^ 1, by: MemberID(2))
        }
    }

    /// The simulator's members keep their state in the server's snapshot files: what one writes loads back whole,
    /// and a damaged file is refused rather than loaded.
    @Test func snapshotFileRoundTripsAndRefusesDamage() throws {
        let metadata = SnapshotMetadata(index: LogIndex(5), term: Term(2), clusterTimeNanos: 9,
                                        membership: Membership(voters: [MemberID(1)], learners: [MemberID(2)]))
        var keySpace = KeySpace(initialIndex: 3)
        _ = keySpace.apply(StoreCommand(method: .put, path: "/a"), now: 0)
        let state = ReplicaState(keySpace: keySpace, members: MemberTable([MemberRecord(id: 1, name: "m1", peerURLs: [], clientURLs: [])]))
        let fs = SimulatedFileSystem()
        let storage = try Storage(fs: fs, directory: SimCluster.dataDirectory, options: SimCluster.storageOptions, logger: { _ in })
        defer { storage.close() }
        try MemberStorage.writeSnapshot(metadata, state, to: storage)
        let oldest = try MemberStorage.retain(storage, initial: Membership(voters: [MemberID(1)]))
        #expect(oldest == metadata)
        let path = storage.snapshotPath(lastIndex: 5)
        let (loaded, header) = try MemberStorage.loadSnapshot(fs: fs, path: path)
        #expect(header.lastIndex == 5 && header.lastTerm == 2)
        #expect(loaded.keySpace.currentIndex == keySpace.currentIndex && loaded.members == state.members)
        guard var flipped = fs.contents(path), flipped.count > 6 else {
            Issue.record("no snapshot file at \(path)")
            return
        }
        flipped[flipped.count - 6] ^= 1
        fs.setContents(path, flipped)
        #expect(throws: (any Error).self) { _ = try MemberStorage.loadSnapshot(fs: fs, path: path) }
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
