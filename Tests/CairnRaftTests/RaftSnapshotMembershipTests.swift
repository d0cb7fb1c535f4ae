// Targeted tests for snapshots (compaction, chunked transfer, restore during appends), membership changes
// (learners, removing the leader) and lease reads, each asserting on state a broken core would get wrong.
import CairnRaft
import Testing

@Suite struct RaftSnapshotMembershipTests {
    let m1 = MemberID(1), m2 = MemberID(2), m3 = MemberID(3), m4 = MemberID(4)

    /// A cluster where m3 missed everything while the leader compacted its log past it.
    func clusterWithFollowerBehindCompaction(proposals: Int = 20) -> TestCluster {
        var c = TestCluster(size: 3)
        c.elect(m1)
        c.isolated = [m3]
        for i in 0..<proposals { c.propose(m1, [UInt8(i)]) }
        c.settle()
        c.tickAll(times: 2)
        c.compact(m1)
        return c
    }

    @Test func followerFarBehindIsCaughtUpBySnapshot() {
        var c = clusterWithFollowerBehindCompaction()
        let snapshotIndex = c.nodes[m1]!.snapshot.index
        #expect(c.nodes[m1]!.firstIndex == snapshotIndex + 1)
        #expect(snapshotIndex.value > 20)
        #expect(c.nodes[m1]!.term(at: LogIndex(1)) == nil)
        c.isolated = []
        c.tickAll(times: 4)
        #expect(c.snapshotRequests.map(\.to) == [m3])
        #expect(c.installed[m3] == [c.nodes[m1]!.snapshot])
        #expect(c.nodes[m3]!.firstIndex == snapshotIndex + 1)
        #expect(c.nodes[m3]!.commit == c.nodes[m1]!.commit)
        // Replication continues by appends after the snapshot.
        c.propose(m1, [0xEE])
        c.settle()
        c.tickAll(times: 2)
        #expect(c.applied[m3]?.last?.data == [0xEE])
        // What the snapshot covers was never applied entry by entry (m3 had applied at most the first no-op).
        #expect(!c.applied[m3]!.contains { $0.index > LogIndex(1) && $0.index <= snapshotIndex })
        // A restart comes back from the snapshot and the log after it.
        c.restart(m3)
        #expect(c.nodes[m3]!.applied == snapshotIndex)
        #expect(c.nodes[m3]!.commit >= snapshotIndex)
    }

    @Test func brokenSnapshotTransferRestartsCleanly() {
        var c = clusterWithFollowerBehindCompaction()
        c.isolated = []
        // The first stream loses a middle chunk: the follower must not install a file with a hole.
        var dropped = false
        // Three silent heartbeat rounds send the leader back to probing m3, which finds the log compacted.
        for _ in 0..<3 {
            c.tick(m1)
            c.settle { m in
                guard m.kind == .snapshot, m.snapshotOffset > 0, !dropped else { return false }
                dropped = true
                return true
            }
        }
        #expect(dropped)
        #expect(c.installed[m3, default: []].isEmpty)
        #expect(c.nodes[m3]!.firstIndex == LogIndex(1))
        // A corrupted chunk in the next stream fails the file's checksum: still nothing installed.
        var corrupted = false
        c.tick(m1)
        c.settle(corrupt: { m in
            if m.kind == .snapshot && !corrupted { m.data[0] ^= 1; corrupted = true }
        })
        #expect(corrupted)
        #expect(c.installed[m3, default: []].isEmpty)
        // Later heartbeats make the leader ask again, and the clean stream installs.
        c.tickAll(times: 6)
        #expect(c.snapshotRequests.count >= 3)
        #expect(c.installed[m3] == [c.nodes[m1]!.snapshot])
        #expect(c.nodes[m3]!.commit == c.nodes[m1]!.commit)
    }

    /// The follower holds entries it has not persisted (and some in a batch it was handed) when a snapshot
    /// through the middle of them is restored: only what follows the snapshot may reach storage.
    @Test func snapshotArrivingWhileAppendsAreInFlight() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        c.tickAll(times: 2)
        c.isolated = [m2, m3]
        for i in 0..<6 { c.propose(m1, [UInt8(i)]) }
        c.collect()
        let appends = c.queue.filter { $0.to == m2 && $0.kind == .append }
        c.queue = []
        for m in appends { c.nodes[m2]!.step(m) }
        // One batch is handed out but not yet persisted when the snapshot completes.
        let inFlight = c.nodes[m2]!.ready()
        #expect(!inFlight.entries.isEmpty)
        let last = c.nodes[m2]!.lastIndex
        let through = last - 2
        let metadata = SnapshotMetadata(index: through, term: c.nodes[m1]!.term, clusterTimeNanos: 0,
                                        membership: Membership(voters: c.ids))
        let restored = c.nodes[m2]!.restoreSnapshot(metadata)
        #expect(restored)
        #expect(c.nodes[m2]!.firstIndex == through + 1)
        #expect(c.nodes[m2]!.lastIndex == last)
        #expect(c.nodes[m2]!.applied == through)
        // The caller finishes the older batch first, then installs.
        c.nodes[m2]!.storage.append(inFlight.entries)
        c.nodes[m2]!.advance(inFlight)
        let r = c.nodes[m2]!.ready()
        #expect(r.snapshot == metadata)
        #expect(r.entries.allSatisfy { $0.index > through })
        #expect(r.committedEntries.allSatisfy { $0.index > through })
        c.nodes[m2]!.storage.applySnapshot(metadata)
        c.nodes[m2]!.storage.append(r.entries)
        c.nodes[m2]!.advance(r)
        #expect(c.nodes[m2]!.storage.firstIndex == through + 1)
        #expect(c.nodes[m2]!.storage.lastIndex == last)
        #expect(r.messagesAfterPersist.contains { $0.kind == .appendResponse && $0.index == through })
        // A snapshot no newer than the commit index is refused.
        let restoredAgain = c.nodes[m2]!.restoreSnapshot(metadata)
        #expect(!restoredAgain)
    }

    @Test func learnerDoesNotVoteAndIsNotCountedForCommit() {
        var c = TestCluster(size: 3, founders: 2)
        c.elect(m1)
        c.tickAll(times: 2)
        c.changeConfig(m1, ConfigChange(.addLearner, m3))
        // One uncommitted change at a time.
        c.changeConfig(m1, ConfigChange(.addLearner, m4), accepted: false)
        c.settle()
        c.tickAll(times: 3)
        #expect(c.nodes[m3]!.learners == [m3])
        #expect(c.nodes[m3]!.voters == [m1, m2])
        #expect(c.nodes[m1]!.progress[m3]?.match == c.nodes[m1]!.lastIndex)
        // With m2 gone, the learner's acknowledgement must not commit anything: the quorum is {m1, m2}.
        c.isolated = [m2]
        let commit = c.nodes[m1]!.commit
        c.propose(m1, [1])
        c.settle()
        #expect(c.nodes[m3]!.lastIndex == c.nodes[m1]!.lastIndex)
        #expect(c.nodes[m1]!.commit == commit)
        // A learner never campaigns, and its vote does not make a leader.
        let term = c.nodes[m3]!.term
        c.isolated = [m1, m2]
        c.tick(m3, times: 100)
        c.settle()
        #expect(c.nodes[m3]!.term == term && c.nodes[m3]!.role == .follower)
        // Promoted once caught up, it counts.
        c.isolated = []
        c.tickAll(times: 3)
        c.changeConfig(m1, ConfigChange(.addVoter, m3))
        c.settle()
        c.tickAll(times: 2)
        #expect(c.nodes[m3]!.voters == [m1, m2, m3])
        c.isolated = [m2]
        let before = c.nodes[m1]!.commit
        c.propose(m1, [2])
        c.settle()
        #expect(c.nodes[m1]!.commit > before)
    }

    @Test func removedLeaderStepsDownAfterCommitAndStopsCampaigning() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        c.tickAll(times: 2)
        // While the removal is uncommitted, m1 keeps leading (and replicating) a cluster without itself.
        c.isolated = [m2, m3]
        c.changeConfig(m1, ConfigChange(.remove, m1))
        c.settle()
        #expect(c.nodes[m1]!.role == .leader)
        #expect(c.nodes[m1]!.voters == [m2, m3])
        c.isolated = []
        c.settle()
        c.tickAll(times: 3)
        #expect(c.nodes[m1]!.role == .follower)
        #expect(c.applied[m1]?.last?.kind == .configChange)
        // A voter took over (handed over with TimeoutNow) and commits without m1.
        let leader = c.leaders
        #expect(leader.count == 1 && leader != [m1])
        c.propose(leader[0], [3])
        c.isolated = [m1]
        c.settle()
        c.tickAll(times: 2)
        #expect(c.applied[leader[0]]?.last?.data == [3])
        // The removed member never campaigns again.
        c.isolated = []
        let term = c.nodes[m1]!.term
        c.tick(m1, times: 100)
        c.settle()
        #expect(c.nodes[m1]!.role == .follower && c.nodes[m1]!.term == term)
        #expect(c.leaders == leader)
    }

    /// A config entry that never committed is truncated by the next leader; the old membership is back.
    @Test func truncatedConfigEntryStopsCounting() {
        var c = TestCluster(size: 3) { $0.checkQuorum = false }
        c.elect(m1)
        c.tickAll(times: 2)
        c.isolated = [m2, m3]
        c.changeConfig(m1, ConfigChange(.remove, m3))
        c.settle()
        #expect(c.nodes[m1]!.voters == [m1, m2])
        c.isolated = [m1]
        c.elect(m2)
        c.propose(m2, [9])
        c.settle()
        c.isolated = []
        c.tickAll(times: 3)
        #expect(c.nodes[m1]!.voters == [m1, m2, m3])
        #expect(c.nodes[m1]!.role == .follower)
    }

    @Test func leaseReadIsImmediateAndNeverAnsweredByAPartitionedLeader() {
        var c = TestCluster(size: 3) { $0.leaseReads = true }
        // Members refuse votes for an election timeout after starting (they may have promised a lease before).
        c.elect(m1)
        #expect(c.leaders.isEmpty)
        c.tickAll(times: 10)
        c.tickAll(times: 30)
        guard let leader = c.leaders.first else { Issue.record("no leader"); return }
        c.tickAll(times: 2)
        // Healthy: answered at once, without a heartbeat round.
        c.readIndex(leader, context: 1)
        #expect(c.nodes[leader]!.ready().readStates.map(\.context) == [1])
        c.isolated = [leader]
        var answered: [ReadState] = []
        var context: UInt64 = 10
        var ticks = 0
        while c.nodes[leader]!.role == .leader && ticks < 100 {
            c.tick(leader)
            ticks += 1
            // The lease runs out before check-quorum deposes the leader: from then on no read is answered.
            if ticks >= 10 && c.nodes[leader]!.role == .leader {
                context += 1
                c.readIndex(leader, context: context)
            }
            c.settle()
            answered += c.reads[leader, default: []].filter { $0.context > 10 }
            c.reads[leader] = []
        }
        #expect(c.nodes[leader]!.role == .follower)
        #expect(answered.isEmpty)
        let accepted = c.nodes[leader]!.readIndex(context: 99)
        #expect(!accepted)
    }

    /// The lease lasts electionTimeoutTicks - leaseSafetyMarginTicks from the last heartbeat a quorum
    /// acknowledged (counted from when it was sent), then reads need a heartbeat round again.
    @Test func leaseEndsAtTheSafetyMargin() {
        var c = TestCluster(size: 3) { $0.leaseReads = true; $0.electionTimeoutTicks = 10; $0.leaseSafetyMarginTicks = 2 }
        c.tickAll(times: 40)
        guard let leader = c.leaders.first else { Issue.record("no leader"); return }
        // This round's heartbeat is sent and acknowledged; then the leader hears nothing more.
        c.tickAll(times: 1)
        c.isolated = [leader]
        var immediate: [Int] = []
        for k in 0..<12 where c.nodes[leader]!.role == .leader {
            _ = c.nodes[leader]!.readIndex(context: UInt64(100 + k))
            if !c.nodes[leader]!.ready().readStates.isEmpty { immediate.append(k) }
            c.tick(leader)
        }
        #expect(immediate == Array(0..<8))
    }

    /// A member added after compaction knows no configuration; the snapshot's header gives it the membership,
    /// and it keeps it across a restart.
    @Test func learnerAddedAfterCompactionLearnsMembershipFromSnapshot() {
        var c = TestCluster(size: 3, founders: 2)
        c.elect(m1)
        for i in 0..<5 { c.propose(m1, [UInt8(i)]) }
        c.settle()
        c.tickAll(times: 2)
        c.compact(m1)
        #expect(c.nodes[m3]!.voters.isEmpty)
        c.changeConfig(m1, ConfigChange(.addLearner, m3))
        c.settle()
        c.tickAll(times: 4)
        #expect(c.installed[m3]?.count == 1)
        #expect(c.nodes[m3]!.voters == [m1, m2])
        #expect(c.nodes[m3]!.learners == [m3])
        #expect(c.nodes[m3]!.commit == c.nodes[m1]!.commit)
        c.restart(m3)
        #expect(c.nodes[m3]!.learners == [m3])
        #expect(c.nodes[m3]!.voters == [m1, m2])
    }
}
