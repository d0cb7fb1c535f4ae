// The Raft core's roles and votes: follower, pre-candidate, candidate and leader transitions, the election timer,
// check-quorum, and vote requests and answers (pre-vote included). Part of `RaftNode` (RaftNode.swift).
import CairnBase

extension RaftNode {
    // MARK: Roles

    var isVoter: Bool { membership.voters.contains(config.id) }
    /// A voter campaigns; so does a member an uncommitted change removes (dissertation §4.2.2, Figure 4.6): its
    /// log may be the only up-to-date one, and the change needs a leader to commit. It then counts votes by the
    /// new configuration, without its own.
    var mayCampaign: Bool {
        if isVoter { return true }
        guard configChangePending, let last = configs.last else { return false }
        return membership(at: last.index - 1).voters.contains(config.id)
    }

    var votesWon: Bool { votesGranted.filter(membership.voters.contains).count >= quorum }
    var quorum: Int { membership.voters.count / 2 + 1 }

    mutating func resetElectionTimer() {
        electionElapsedTicks = 0
        randomizedElectionTimeoutTicks = config.electionTimeoutTicks + Int.random(in: 0..<config.electionTimeoutTicks, using: &random)
    }

    mutating func becomeFollower(term newTerm: Term, leader newLeader: MemberID?) {
        if newTerm > term { vote = nil }
        term = newTerm
        role = .follower
        leader = newLeader
        transferTarget = nil
        leaseRevoked = false
        progress = [:]
        peers = []
        pendingReads = []
        readsAwaitingTermCommit = []
        resetElectionTimer()
    }

    /// A member at `RaftLimits.termMax` stays a follower: no term may pass the bound (nothing legitimate gets near it).
    var mayRaiseTerm: Bool { term.value < RaftLimits.termMax }

    mutating func becomePreCandidate() {
        guard mayRaiseTerm else { return resetElectionTimer() }
        role = .preCandidate
        leader = nil
        votesGranted = [config.id]
        votesRejected = []
        resetElectionTimer()
        if votesWon { becomeCandidate(); return }
        requestVotes(kind: .preVote, term: term.value + 1)
    }

    mutating func becomeCandidate(transfer: Bool = false) {
        guard mayRaiseTerm else { return becomeFollower(term: term, leader: nil) }
        term = Term(term.value + 1)
        vote = config.id
        role = .candidate
        leader = nil
        votesGranted = [config.id]
        votesRejected = []
        resetElectionTimer()
        if votesWon { becomeLeader(); return }
        requestVotes(kind: .vote, term: term.value, transfer: transfer)
    }

    mutating func requestVotes(kind: MessageKind, term requestTerm: UInt64, transfer: Bool = false) {
        for peer in membership.voters where peer != config.id {
            var m = Message(kind: kind, from: config.id, to: peer, term: Term(requestTerm))
            m.index = lastIndex
            m.logTerm = lastTerm
            m.leadershipTransfer = transfer
            // The candidate's own vote is in its hard state: requests follow its persist.
            out.messagesAfterPersist.append(m)
        }
    }

    mutating func becomeLeader() {
        role = .leader
        leader = config.id
        heartbeatElapsedTicks = 0
        electionElapsedTicks = 0
        leaseRevoked = false
        let lastTime = lastIndex < firstIndex ? snapshot.clusterTimeNanos
            : (entries(from: lastIndex, through: lastIndex, maxBytes: 0).first?.clusterTimeNanos ?? 0)
        // A brand-new log has no time to continue from: the first leader starts the cluster clock from its own.
        clusterTimeBase = lastIndex.value == 0 ? monotonicNanos : lastTime
        monotonicBase = monotonicNanos
        progress = [:]
        var mine = Progress(next: lastIndex + 1)
        mine.match = unstableOffset - 1
        mine.state = .replicate
        mine.recentActive = true
        progress[config.id] = mine
        reconcilePeers()
        appendAsLeader(kind: .noop, data: [])
        broadcastAppend()
        if membership.voters.count == 1 { maybeCommit() }
    }

    func clusterTimeNow() -> UInt64 {
        let t = clusterTimeBase &+ (monotonicNanos &- monotonicBase)
        if let last = unstable.last { return max(t, last.clusterTimeNanos) }
        return t
    }

    mutating func quorumActive() -> Bool {
        var active = 0
        for id in membership.voters where id == config.id || progress[id]?.recentActive == true { active += 1 }
        for id in peers { progress[id]?.recentActive = false }
        return active >= quorum
    }

    /// With check-quorum, a member that heard from a live leader within the election timeout ignores vote
    /// requests, so a rejoining partitioned node cannot depose a working leader. Transfer campaigns are exempt.
    /// With lease reads a member that just started does the same for an election timeout: it may have heard
    /// a leader before its restart, and that leader may be serving reads on the promise.
    func inLease(from: MemberID) -> Bool {
        guard config.checkQuorum else { return false }
        if config.leaseReads && tickCount < UInt64(config.electionTimeoutTicks) { return true }
        return leader != nil && leader != from && electionElapsedTicks < config.electionTimeoutTicks
    }

    /// A quorum acknowledged heartbeats sent recently enough that none of them can have voted for anyone else yet.
    var leaseHeld: Bool {
        guard config.leaseReads, config.checkQuorum, transferTarget == nil, !leaseRevoked else { return false }
        let leaseTicks = UInt64(max(0, config.electionTimeoutTicks - config.leaseSafetyMarginTicks))
        var acked = membership.voters.map { $0 == config.id ? tickCount : (progress[$0]?.leaseTickAcked ?? 0) }
        acked.sort(by: >)
        let start = acked[quorum - 1]
        return start > 0 && tickCount < start &+ leaseTicks && start <= tickCount
    }

    // MARK: Votes

    mutating func handleVoteRequest(_ m: Message) {
        let upToDate = m.logTerm > lastTerm || (m.logTerm == lastTerm && m.index >= lastIndex)
        let grant: Bool
        if m.kind == .vote {
            grant = (vote == nil || vote == m.from) && leader == nil && upToDate
            if grant { vote = m.from; resetElectionTimer() }
        } else {
            grant = upToDate && (m.term > term) && (leader == nil || !inLease(from: m.from))
        }
        var r = Message(kind: m.kind == .vote ? .voteResponse : .preVoteResponse, from: config.id, to: m.from,
                        term: m.kind == .vote ? term : (grant ? m.term : term))
        r.reject = !grant
        out.messagesAfterPersist.append(r)
    }

    mutating func handleVoteResponse(_ m: Message) {
        let expected: RaftRole = m.kind == .voteResponse ? .candidate : .preCandidate
        guard role == expected else { return }
        if m.kind == .preVoteResponse && m.term != Term(term.value + 1) && !m.reject { return }
        if m.reject { votesRejected.insert(m.from) } else { votesGranted.insert(m.from) }
        // Only voters of the configuration in effect count.
        if votesWon {
            if role == .preCandidate { becomeCandidate() } else { becomeLeader() }
        } else if votesRejected.filter(membership.voters.contains).count >= quorum {
            becomeFollower(term: term, leader: nil)
        }
    }
}
