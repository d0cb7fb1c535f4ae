// Forged numbers and inconsistent messages against the Raft core: terms and indexes near 2^64, entries that do not
// follow their index, undecodable config changes, lease stamps from the future. Each used to trap; now it is dropped.
import CairnBase
import CairnRaft
import Testing

@Suite struct RaftBoundsTests {
    let m1 = MemberID(1), m2 = MemberID(2), m3 = MemberID(3)

    func heartbeat(term: UInt64, from: MemberID, to: MemberID) -> Message {
        Message(kind: .heartbeat, from: from, to: to, term: Term(term))
    }

    /// The issue's attack: one heartbeat at term 2^64 − 1 made every member trap on `term + 1` when it next campaigned.
    @Test func aHeartbeatAtTerm2To64IsDroppedAndTheClusterStillElects() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        let before = c.nodes[m2]!.term
        for id in [m2, m3] { c.nodes[id]!.step(heartbeat(term: UInt64.max, from: m1, to: id)) }
        #expect(c.nodes[m2]!.term == before && c.nodes[m2]!.messagesDropped == 1)
        // The leader goes away; the others campaign (a term + 1 each) and one of them leads.
        c.isolated = [m1]
        c.tickAll(times: 60)
        #expect([m2, m3].contains { c.nodes[$0]!.role == .leader })
    }

    /// At the bound itself a member is stuck as a follower, not trapped.
    @Test func aMemberAtTheTermBoundNeverCampaignsPastIt() {
        var node = RaftNode(config: RaftConfig(id: m2, voters: [m1, m2, m3], randomSeed: 1), storage: MemoryLogStorage(),
                            hardState: HardState(term: Term(RaftLimits.termMax - 1)))
        node.step(heartbeat(term: RaftLimits.termMax, from: m1, to: m2))
        #expect(node.term.value == RaftLimits.termMax)
        node.step(heartbeat(term: RaftLimits.termMax + 1, from: m1, to: m2))
        #expect(node.term.value == RaftLimits.termMax && node.messagesDropped == 1)
        for _ in 0..<100 { node.tick(monotonicNanos: 0) }
        #expect(node.term.value == RaftLimits.termMax && node.role == .follower)
        node.campaign()
        #expect(node.term.value == RaftLimits.termMax)
    }

    @Test func indexesAt2To63AndBeyondAreLookedUpAndRefusedWithoutTrapping() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        #expect(c.nodes[m2]!.term(at: LogIndex(UInt64.max)) == nil)
        #expect(c.nodes[m2]!.term(at: LogIndex(1 << 63)) == nil)
        let term = c.nodes[m1]!.term
        for index in [UInt64.max, 1 << 63, RaftLimits.indexMax + 1] {
            var append = Message(kind: .append, from: m1, to: m2, term: term)
            append.index = LogIndex(index)
            append.logTerm = term
            c.nodes[m2]!.step(append)
            var vote = Message(kind: .vote, from: m3, to: m2, term: term)
            vote.index = LogIndex(index)
            c.nodes[m2]!.step(vote)
        }
        #expect(c.nodes[m2]!.messagesDropped == 6)
    }

    /// An entry below the commit index, or past the end of the log, used to hit a precondition or an out-of-range removal.
    @Test func entriesThatDoNotFollowTheirIndexAreDropped() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        c.propose(m1, [1])
        c.settle()
        c.tickAll(times: 2)
        let follower = c.nodes[m2]!
        let term = Term(follower.term.value + 1)
        let commit = follower.commit, last = follower.lastIndex
        #expect(commit.value >= 2)
        var belowCommit = Message(kind: .append, from: m1, to: m2, term: term)
        belowCommit.index = commit
        belowCommit.logTerm = follower.term(at: commit)!
        belowCommit.entries = [Entry(term: term, index: LogIndex(1), clusterTimeNanos: 0, kind: .normal, data: [7])]
        var pastTheEnd = Message(kind: .append, from: m1, to: m2, term: term)
        pastTheEnd.index = last
        pastTheEnd.logTerm = follower.term(at: last)!
        pastTheEnd.entries = [Entry(term: term, index: last + 5, clusterTimeNanos: 0, kind: .normal, data: [7])]
        for forged in [belowCommit, pastTheEnd] {
            #expect(throws: InvalidMessage.self) { try forged.validateRanges() }
            c.nodes[m2]!.step(forged)
        }
        #expect(c.nodes[m2]!.lastIndex == last && c.nodes[m2]!.commit == commit && c.nodes[m2]!.messagesDropped == 2)
    }

    /// A config-change entry that does not decode changes no membership, from a peer or from the disk at restart.
    @Test func anUndecodableConfigChangeIsRefusedByValidationAndHarmlessInTheCore() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        c.tickAll(times: 2)
        let follower = c.nodes[m2]!
        let term = follower.term, last = follower.lastIndex
        var append = Message(kind: .append, from: m1, to: m2, term: term)
        append.index = last
        append.logTerm = follower.term(at: last)!
        append.entries = [Entry(term: term, index: last + 1, clusterTimeNanos: 0, kind: .configChange, data: [9, 9, 9])]
        #expect(throws: InvalidMessage.self) { try append.validate { _, _ in true } }
        c.nodes[m2]!.step(append)
        #expect(c.nodes[m2]!.lastIndex == last + 1 && c.nodes[m2]!.voters == [m1, m2, m3])
        var storage = MemoryLogStorage()
        storage.append([Entry(term: Term(1), index: LogIndex(1), clusterTimeNanos: 0, kind: .configChange, data: [9])])
        let restarted = RaftNode(config: RaftConfig(id: m2, voters: [m1, m2, m3], randomSeed: 1), storage: storage,
                                 hardState: HardState(term: Term(1)))
        #expect(restarted.voters == [m1, m2, m3])
    }

    /// A heartbeat answer stamped with a tick the leader never reached used to overflow the lease arithmetic.
    @Test func aLeaseStampFromTheFutureNeitherTrapsNorExtendsTheLease() {
        var c = TestCluster(size: 3) { $0.leaseReads = true }
        c.tickAll(times: 40)
        guard let leader = c.leaders.first else { Issue.record("no leader"); return }
        let term = c.nodes[leader]!.term
        for peer in c.ids where peer != leader {
            for tick in [UInt64.max, RaftLimits.counterMax] {
                var answer = Message(kind: .heartbeatResponse, from: peer, to: leader, term: term)
                answer.sentTick = tick
                c.nodes[leader]!.step(answer)
            }
        }
        let askedFirst = c.nodes[leader]!.readIndex(context: 1)
        #expect(askedFirst)
        c.isolated = Set(c.ids.filter { $0 != leader })
        for _ in 0..<8 { c.nodes[leader]!.tick(monotonicNanos: 0) }
        _ = c.nodes[leader]!.ready()
        // Cut off for most of an election timeout: a lease taken from a future stamp would still answer at once.
        let askedAgain = c.nodes[leader]!.readIndex(context: 2)
        let answered = c.nodes[leader]!.ready().readStates
        #expect(askedAgain && !answered.contains { $0.context == 2 })
    }

    /// A snapshot file's header is checksummed, not trusted: one naming an index near 2^64 is refused, not installed.
    @Test func aSnapshotBeyondTheIndexBoundIsRefused() {
        var c = TestCluster(size: 3)
        c.elect(m1)
        for index in [UInt64.max, RaftLimits.indexMax + 1] {
            let metadata = SnapshotMetadata(index: LogIndex(index), term: Term(1), clusterTimeNanos: 0, membership: Membership(voters: [m1, m2, m3]))
            let restored = c.nodes[m2]!.restoreSnapshot(metadata)
            #expect(!restored)
        }
        #expect(c.nodes[m2]!.commit.value < 10)
    }

    @Test func validationNamesWhatIsWrong() {
        var append = Message(kind: .append, from: m1, to: m2, term: Term(5))
        append.index = LogIndex(10)
        append.logTerm = Term(4)
        append.entries = [Entry(term: Term(5), index: LogIndex(11), clusterTimeNanos: 0, kind: .normal, data: [1])]
        #expect(throws: Never.self) { try append.validate { _, _ in true } }
        #expect(throws: InvalidMessage.self) { try append.validate { _, _ in false } }
        // Once the leader says an entry is committed it is decided: taken as it is (applied as a no-op if it cannot be read).
        var committed = append
        committed.commit = LogIndex(11)
        #expect(throws: Never.self) { try committed.validate { _, _ in false } }
        var cases: [Message] = []
        var m = append; m.entries[0].term = Term(6); cases.append(m)          // entry term after the leader's
        m = append; m.entries[0].term = Term(3); cases.append(m)              // entry term before the log term
        m = append; m.logTerm = Term(6); cases.append(m)                      // log term after the term
        m = append; m.to = m1; cases.append(m)                                // to itself
        m = append; m.data = [1]; cases.append(m)                             // snapshot bytes on an append
        m = append; m.kind = .heartbeat; cases.append(m)                      // entries on a heartbeat
        m = append; m.entries[0].kind = .noop; cases.append(m)                // a noop with bytes
        m = append; m.commit = LogIndex(RaftLimits.indexMax + 1); cases.append(m)
        m = append; m.readSequence = UInt64.max; cases.append(m)
        m = append; m.index = LogIndex(RaftLimits.indexMax); m.entries[0].index = LogIndex(RaftLimits.indexMax + 1); cases.append(m)
        for (n, bad) in cases.enumerated() {
            #expect(throws: InvalidMessage.self, "case \(n)") { try bad.validate { _, _ in true } }
        }
    }
}
