// Targeted tests for Raft's classic traps, each driven message by message through TestCluster.
// Every test asserts on state a broken core would get wrong.
import CairnRaft
import Testing

@Suite struct RaftScenarioTests {
    let m1 = MemberID(1), m2 = MemberID(2), m3 = MemberID(3), m4 = MemberID(4), m5 = MemberID(5)

    @Test func electsLeaderAndCommitsProposal() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        #expect(c.leaders == [m1])
        c.propose(m1, [9])
        c.settle()
        c.tickAll(times: 2)
        for id in c.ids { #expect(c.applied[id]?.last?.data == [9]) }
        // Entry 1 is the leader's no-op, so the proposal is entry 2.
        #expect(c.applied[m2]?.map(\.kind) == [.noop, .normal])
    }

    @Test func voteIsPersistedAcrossRestart() {
        var c = TestCluster(size: 3) { $0.preVote = false }
        c.isolated = [m3]
        c.elect(m1)
        #expect(c.nodes[m2]!.vote == m1)
        let termVoted = c.nodes[m2]!.term
        c.restart(m2)
        #expect(c.nodes[m2]!.vote == m1)
        // A second candidate in the same term must be refused by the restarted member.
        var request = Message(kind: .vote, from: m3, to: m2, term: termVoted)
        request.index = LogIndex(5)
        request.logTerm = termVoted
        c.nodes[m2]!.step(request)
        let r = c.nodes[m2]!.ready()
        #expect(r.messagesAfterPersist.first { $0.kind == .voteResponse }?.reject == true)
    }

    @Test func leaderStepsDownOnHigherTerm() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        let t = c.nodes[m1]!.term
        c.nodes[m1]!.step(Message(kind: .append, from: m2, to: m1, term: Term(t.value + 5)))
        #expect(c.nodes[m1]!.role == .follower)
        #expect(c.nodes[m1]!.term == Term(t.value + 5))
    }

    @Test func partitionedOldLeaderReadIndexNeverCompletes() {
        var c = TestCluster(size: 3) { $0.checkQuorum = false }
        c.elect(m1)
        c.tickAll(times: 2)
        c.isolated = [m1]
        c.elect(m2)
        #expect(c.nodes[m2]!.role == .leader)
        c.propose(m2, [7])
        c.settle()
        // m1 still believes it leads; its read must never be released.
        c.readIndex(m1, context: 1)
        for _ in 0..<50 { c.tick(m1); c.settle() }
        #expect(c.reads[m1, default: []].isEmpty)
        // The new leader serves reads, at an index that includes its write.
        c.readIndex(m2, context: 2)
        c.settle()
        #expect(c.reads[m2]?.first?.index ?? .zero >= c.applied[m2]!.last!.index)
    }

    @Test func checkQuorumStepsDownIsolatedLeader() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        c.isolated = [m1]
        for _ in 0..<25 { c.tick(m1); c.settle() }
        #expect(c.nodes[m1]!.role == .follower)
    }

    @Test func preVotePreventsDisruptionByRejoiningNode() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        let term = c.nodes[m1]!.term
        c.isolated = [m3]
        for _ in 0..<100 { c.tick(m3); c.settle() }
        // Pre-vote never succeeds in isolation, so m3's term does not run away.
        #expect(c.nodes[m3]!.term == term)
        c.isolated = []
        c.tickAll(times: 30)
        #expect(c.leaders == [m1])
        #expect(c.nodes[m1]!.term == term)
    }

    @Test func withoutPreVoteRejoiningNodeDisrupts() {
        // The control for the test above: it shows that scenario can fail.
        var c = TestCluster(size: 3) { $0.preVote = false; $0.checkQuorum = false }
        c.elect(m1)
        let term = c.nodes[m1]!.term
        c.isolated = [m3]
        for _ in 0..<100 { c.tick(m3); c.settle() }
        #expect(c.nodes[m3]!.term > term)
        c.isolated = []
        c.tickAll(times: 3)
        #expect(c.nodes[m1]!.term > term)
    }

    @Test func leadershipTransfer() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        c.propose(m1, [1])
        c.settle()
        c.nodes[m1]!.transferLeadership(to: m3)
        c.settle()
        #expect(c.leaders == [m3])
        c.propose(m3, [2])
        c.settle()
        c.tickAll(times: 2)
        #expect(c.applied[m1]?.last?.data == [2])
    }

    /// Figure 8: a leader must not commit an entry of an earlier term by counting replicas.
    @Test func figure8OldTermEntryIsNotCommittedByCounting() {
        // Check-quorum's lease would make members ignore the new candidates right after hearing a leader;
        // these scenarios elect leaders on demand, so it is off.
        var c = TestCluster(size: 5) { $0.maxMessageBytes = 1; $0.checkQuorum = false; $0.preVote = false }
        c.elect(m1)
        c.tickAll(times: 2)
        let base = c.nodes[m1]!.commit
        // Term-2 leader m1 appends an entry that only m2 receives, then crashes.
        c.isolated = [m3, m4, m5]
        c.propose(m1, [0xA])
        c.settle()
        #expect(c.nodes[m2]!.lastIndex == base + 1)
        // m5 wins a later term with m3, m4's votes, but its entries reach nobody.
        c.isolated = [m1, m2]
        c.nodes[m5]!.campaign()
        c.settle { $0.kind == .append }
        #expect(c.nodes[m5]!.role == .leader)
        c.propose(m5, [0xB])
        c.isolated = [m1, m2, m3, m4]
        c.settle()
        // m1 comes back and is elected by m2, m3 (m4 votes too); it replicates its old entry one per message.
        c.isolated = [m5]
        c.queue = []
        c.restart(m1)
        // Deliver everything except m1's entries of its own term, so only the old entry spreads. m1 may need
        // a second campaign: m3 and m4 already voted in m5's term.
        for round in 0..<40 {
            if round % 20 == 0 && c.nodes[m1]!.role != .leader { c.nodes[m1]!.campaign() }
            c.collect()
            let batch = c.queue
            c.queue = []
            for var msg in batch where !c.isolated.contains(msg.to) && !c.isolated.contains(msg.from) {
                if msg.kind == .append, c.nodes[m1]!.role == .leader {
                    let leaderTerm = c.nodes[m1]!.term
                    msg.entries.removeAll { $0.term == leaderTerm }
                }
                c.nodes[msg.to]!.step(msg)
            }
        }
        #expect(c.nodes[m1]!.role == .leader)
        // The old entry sits on a majority (m1, m2, m3 or m4) but is not of m1's term: it must stay uncommitted.
        let replicas = c.ids.filter { c.nodes[$0]!.term(at: base + 1) == c.nodes[m1]!.term(at: base + 1) }
        #expect(replicas.count >= 3)
        #expect(c.nodes[m1]!.commit == base)
        // Once the new term's no-op reaches them (heartbeats notice the stripped appends), both commit.
        c.tickAll(times: 8)
        #expect(c.nodes[m1]!.commit == base + 2)
    }

    /// A delayed duplicate of an older, shorter append must not truncate entries that followed it.
    @Test func delayedDuplicateAppendDoesNotTruncate() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        c.tickAll(times: 2)
        let leaderTerm = c.nodes[m1]!.term
        let last = c.nodes[m2]!.lastIndex
        func entry(_ i: LogIndex) -> Entry { Entry(term: leaderTerm, index: i, clusterTimeNanos: 0, kind: .normal, data: [1]) }
        var short = Message(kind: .append, from: m1, to: m2, term: leaderTerm)
        short.index = last
        short.logTerm = leaderTerm
        short.entries = [entry(last + 1)]
        var long = short
        long.entries = [entry(last + 1), entry(last + 2)]
        c.nodes[m2]!.step(long)
        c.nodes[m2]!.step(short)
        #expect(c.nodes[m2]!.lastIndex == last + 2)
    }

    /// An append from an old term after a new leader truncated the follower must be refused.
    @Test func staleTermAppendAfterTruncationIsRefused() {
        var c = TestCluster(size: 3) { $0.checkQuorum = false }
        c.elect(m1)
        c.tickAll(times: 2)
        let oldTerm = c.nodes[m1]!.term
        c.isolated = [m1]
        c.elect(m2)
        c.tickAll(times: 2)
        let kept = c.nodes[m3]!.lastIndex
        var stale = Message(kind: .append, from: m1, to: m3, term: oldTerm)
        stale.index = LogIndex(1)
        stale.logTerm = oldTerm
        stale.entries = [Entry(term: oldTerm, index: LogIndex(2), clusterTimeNanos: 0, kind: .normal, data: [5])]
        c.nodes[m3]!.step(stale)
        #expect(c.nodes[m3]!.lastIndex == kept)
        #expect(c.nodes[m3]!.term(at: kept) == c.nodes[m2]!.term)
    }

    @Test func clusterTimeContinuesAcrossLeaders() {
        var c = TestCluster(size: 3) { $0.checkQuorum = false }
        c.nodes[m1]!.tick(monotonicNanos: 1_000)
        c.elect(m1)
        c.nodes[m1]!.tick(monotonicNanos: 5_000)
        c.propose(m1, [1])
        c.settle()
        c.tickAll(times: 2)
        // The first leader of an empty log starts the cluster clock from its own clock (elected at 1,000).
        let t1 = c.applied[m1]!.last!.clusterTimeNanos
        #expect(t1 == 5_000)
        // m2's monotonic clock is unrelated (it starts at 0); cluster time must not go backwards.
        c.isolated = [m1]
        c.elect(m2)
        c.propose(m2, [2])
        c.settle()
        c.tickAll(times: 2)
        #expect(c.applied[m2]!.last!.clusterTimeNanos >= t1)
    }
}
