// The Raft core: elections (pre-vote, check-quorum), replication with per-follower progress, commitment,
// ReadIndex, leadership transfer and cluster-time stamping. Pure: no I/O, no clock, no threads.
import CairnBase

package struct RaftConfig: Sendable {
    package var id: MemberID
    package var voters: [MemberID]
    package var electionTimeoutTicks: Int = 10
    package var heartbeatIntervalTicks: Int = 1
    package var maxMessageBytes: Int = 1 << 20
    package var maxInflightMessages: Int = 256
    package var preVote: Bool = true
    package var checkQuorum: Bool = true
    /// Runs the invariant checks of `RaftInvariants` on every step; for tests and the simulator only.
    package var debugChecks: Bool = false
    package var randomSeed: UInt64

    package init(id: MemberID, voters: [MemberID], randomSeed: UInt64) {
        self.id = id
        self.voters = voters
        self.randomSeed = randomSeed
    }
}

package enum RaftRole: Sendable { case follower, preCandidate, candidate, leader }

/// One batch of work for the caller.
///
/// Caller contract (once per batch, in this order):
/// 1. Persist `entries` into `storage` (appending; an entry overwrites any stored entry at its index and
///    everything after it) and `hardState` if present. Send `messages` at any time — they do not depend on this persist
///    (a leader's appends go out in parallel with its own write).
/// 2. After the persist is durable, send `messagesAfterPersist` (votes and acknowledgements promise durable state).
/// 3. Apply `committedEntries` in order; they are already durable locally. Serve `readStates` once applied
///    reaches their index.
/// 4. Call `advance(ready)` with this batch before asking for the next one.
package struct Ready: Sendable {
    package var entries: [Entry] = []
    package var hardState: HardState?
    package var messages: [Message] = []
    package var messagesAfterPersist: [Message] = []
    package var committedEntries: [Entry] = []
    package var readStates: [ReadState] = []

    package var isEmpty: Bool {
        entries.isEmpty && hardState == nil && messages.isEmpty && messagesAfterPersist.isEmpty
            && committedEntries.isEmpty && readStates.isEmpty
    }
}

package struct Progress: Sendable {
    package enum State: Sendable { case probe, replicate }
    package var state: State = .probe
    package var match: LogIndex = .zero
    package var next: LogIndex
    /// Last index of each append in flight, oldest first; bounded by maxInflightMessages.
    package var inflight: [LogIndex] = []
    /// In probe state only one append is outstanding until the follower answers.
    package var probeSent = false
    package var recentActive = false
    package var readSequenceAcked: UInt64 = 0
    package var stalledHeartbeats = 0
}

private let stalledHeartbeatsBeforeProbe = 3

package struct RaftNode<Storage: RaftLogStorage> {
    package let config: RaftConfig
    /// The durable log. The caller persists a batch's entries into it (in place, so a value-type storage
    /// is not copied) before calling `advance`.
    package var storage: Storage
    package private(set) var role: RaftRole = .follower
    package private(set) var term: Term
    package private(set) var vote: MemberID?
    package private(set) var commit: LogIndex
    package private(set) var leader: MemberID?
    package private(set) var applied: LogIndex
    package private(set) var progress: [MemberID: Progress] = [:]

    /// Entries not yet persisted, starting at `unstableOffset`; they shadow storage from that index on.
    private var unstable: [Entry] = []
    private var unstableOffset: LogIndex
    private var random: SeededRandom
    private var electionElapsedTicks = 0
    private var heartbeatElapsedTicks = 0
    private var randomizedElectionTimeoutTicks = 0
    private var votesGranted: Set<MemberID> = []
    private var votesRejected: Set<MemberID> = []
    private var transferTarget: MemberID?

    private var monotonicNanos: UInt64 = 0
    /// Cluster time = clusterTimeBase + (monotonic now − monotonicBase) while leader.
    private var clusterTimeBase: UInt64 = 0
    private var monotonicBase: UInt64 = 0

    private var readSequence: UInt64 = 0
    private var pendingReads: [(sequence: UInt64, state: ReadState)] = []
    private var readsAwaitingTermCommit: [UInt64] = []

    private var out = Ready()
    private var lastHardState: HardState

    /// Starts (or restarts) a member from what `storage` and `hardState` hold.
    package init(config: RaftConfig, storage: Storage, hardState: HardState) {
        self.config = config
        self.storage = storage
        self.term = hardState.term
        self.vote = hardState.vote
        self.commit = hardState.commit
        self.applied = storage.firstIndex - 1
        self.unstableOffset = storage.lastIndex + 1
        self.random = SeededRandom(seed: config.randomSeed ^ config.id.value &* 0x9E37_79B9)
        self.lastHardState = hardState
        resetElectionTimer()
    }

    // MARK: Log

    package var lastIndex: LogIndex { unstable.isEmpty ? unstableOffset - 1 : unstable[unstable.count - 1].index }
    package var lastTerm: Term { term(at: lastIndex) ?? .zero }

    package func term(at index: LogIndex) -> Term? {
        if index >= unstableOffset {
            let i = Int(index.value - unstableOffset.value)
            return i < unstable.count ? unstable[i].term : nil
        }
        return storage.term(at: index)
    }

    private func entries(from: LogIndex, through: LogIndex, maxBytes: Int) -> [Entry] {
        guard from <= through else { return [] }
        var result: [Entry] = []
        if from < unstableOffset {
            result = storage.entries(from: from, through: min(through, unstableOffset - 1), maxBytes: maxBytes)
            if result.last?.index != min(through, unstableOffset - 1) { return result }
        }
        var bytes = result.reduce(0) { $0 + $1.sizeBytes }
        var i = max(from, unstableOffset)
        while i <= through {
            let e = unstable[Int(i.value - unstableOffset.value)]
            bytes += e.sizeBytes
            if !result.isEmpty && bytes > maxBytes { break }
            result.append(e)
            i = i + 1
        }
        return result
    }

    /// Appends after `index`, truncating a conflicting suffix. Entries already held with the same term are kept.
    private mutating func appendFollowing(_ newEntries: [Entry]) {
        var firstNew = 0
        while firstNew < newEntries.count, let t = term(at: newEntries[firstNew].index), t == newEntries[firstNew].term {
            firstNew += 1
        }
        guard firstNew < newEntries.count else { return }
        let start = newEntries[firstNew].index
        precondition(start > commit, "truncating committed entry \(start) (commit \(commit))")
        if start >= unstableOffset {
            unstable.removeSubrange(Int(start.value - unstableOffset.value)...)
        } else {
            unstable.removeAll()
            unstableOffset = start
        }
        unstable.append(contentsOf: newEntries[firstNew...])
        // Entries not yet handed out that the conflict replaced must not reach the caller: a batch's entries are
        // one contiguous run, as storage appends them (a stale entry ahead of the new ones would be kept).
        out.entries.removeAll { $0.index >= start }
        out.entries.append(contentsOf: newEntries[firstNew...])
    }

    private mutating func appendAsLeader(kind: EntryKind, data: [UInt8]) {
        let entry = Entry(term: term, index: lastIndex + 1, clusterTimeNanos: clusterTimeNow(), kind: kind, data: data)
        unstable.append(entry)
        out.entries.append(entry)
    }

    // MARK: Inputs

    /// Advances logical time by one tick; `monotonicNanos` is the caller's monotonic clock for cluster time.
    package mutating func tick(monotonicNanos now: UInt64) {
        monotonicNanos = max(monotonicNanos, now)
        electionElapsedTicks += 1
        if role == .leader {
            heartbeatElapsedTicks += 1
            if electionElapsedTicks >= config.electionTimeoutTicks {
                electionElapsedTicks = 0
                transferTarget = nil
                if config.checkQuorum && !quorumActive() {
                    becomeFollower(term: term, leader: nil)
                    return
                }
            }
            if heartbeatElapsedTicks >= config.heartbeatIntervalTicks {
                heartbeatElapsedTicks = 0
                broadcastHeartbeat()
            }
        } else if electionElapsedTicks >= randomizedElectionTimeoutTicks && isVoter {
            campaign()
        }
        check()
    }

    /// Moves the clock cluster time is read from without a tick, so an entry proposed between ticks is stamped
    /// with the caller's time rather than the last tick's.
    package mutating func observe(monotonicNanos now: UInt64) {
        monotonicNanos = max(monotonicNanos, now)
    }

    package mutating func campaign() {
        guard role != .leader, isVoter else { return }
        if config.preVote { becomePreCandidate() } else { becomeCandidate() }
    }

    /// Returns false when this member is not the leader (the caller forwards or fails the request).
    @discardableResult
    package mutating func propose(_ data: [UInt8]) -> Bool {
        guard role == .leader, transferTarget == nil else { return false }
        appendAsLeader(kind: .normal, data: data)
        broadcastAppend()
        if config.voters.count == 1 { maybeCommit() }
        return true
    }

    /// Asks for a linearizable read point; it comes back in `Ready.readStates` with the same context.
    /// Returns false when not leader.
    @discardableResult
    package mutating func readIndex(context: UInt64) -> Bool {
        guard role == .leader else { return false }
        if committedInCurrentTerm {
            startRead(context: context)
        } else {
            readsAwaitingTermCommit.append(context)
        }
        return true
    }

    package mutating func transferLeadership(to target: MemberID) {
        guard role == .leader, target != config.id, progress[target] != nil else { return }
        transferTarget = target
        electionElapsedTicks = 0
        if progress[target]!.match == lastIndex { send(kind: .timeoutNow, to: target) } else { sendAppend(to: target) }
    }

    package mutating func step(_ m: Message) {
        defer { check() }
        if m.term > term {
            if m.kind == .preVote { /* a pre-vote never changes our term */ }
            else if m.kind == .preVoteResponse && !m.reject { /* granted at a future term we will campaign in */ }
            else if (m.kind == .vote || m.kind == .preVote) && !m.leadershipTransfer && inLease(from: m.from) {
                return
            } else {
                let leaderOfTerm: MemberID? = (m.kind == .append || m.kind == .heartbeat) ? m.from : nil
                becomeFollower(term: m.term, leader: leaderOfTerm)
            }
        } else if m.term < term {
            // A stale leader learns of the newer term so it steps down (needed with check-quorum and pre-vote).
            if m.kind == .append || m.kind == .heartbeat {
                out.messagesAfterPersist.append(Message(kind: .appendResponse, from: config.id, to: m.from, term: term))
            } else if m.kind == .preVote {
                var r = Message(kind: .preVoteResponse, from: config.id, to: m.from, term: term)
                r.reject = true
                out.messagesAfterPersist.append(r)
            }
            return
        }
        switch m.kind {
        case .preVote, .vote: handleVoteRequest(m)
        case .preVoteResponse, .voteResponse: handleVoteResponse(m)
        case .append: handleAppend(m)
        case .heartbeat: handleHeartbeat(m)
        case .appendResponse: handleAppendResponse(m)
        case .heartbeatResponse: handleHeartbeatResponse(m)
        case .timeoutNow:
            if role != .leader && isVoter { becomeCandidate(transfer: true) }
        }
    }

    // MARK: Ready / Advance

    package var hasReady: Bool { !out.isEmpty || hardState != lastHardState || nextApplyBound > applied }

    package var hardState: HardState { HardState(term: term, vote: vote, commit: commit) }

    private var nextApplyBound: LogIndex { min(commit, unstableOffset - 1) }

    package mutating func ready() -> Ready {
        var r = out
        if hardState != lastHardState { r.hardState = hardState }
        if nextApplyBound > applied {
            r.committedEntries = entries(from: applied + 1, through: nextApplyBound, maxBytes: Int.max)
        }
        out = Ready()
        return r
    }

    /// Acknowledges a batch from `ready()`: its entries and hard state are durable, its committed entries applied.
    package mutating func advance(_ r: Ready) {
        if let h = r.hardState { lastHardState = h }
        if let last = r.committedEntries.last { applied = max(applied, last.index) }
        if let last = r.entries.last, term(at: last.index) == last.term, last.index >= unstableOffset {
            // Only what the caller has now persisted leaves the unstable tail; later appends stay.
            let persistedCount = Int(last.index.value - unstableOffset.value) + 1
            unstable.removeFirst(persistedCount)
            unstableOffset = last.index + 1
        }
        if role == .leader, var p = progress[config.id] {
            p.match = unstableOffset - 1
            p.next = p.match + 1
            progress[config.id] = p
            maybeCommit()
        }
    }

    // MARK: Roles

    private var isVoter: Bool { config.voters.contains(config.id) }
    private var quorum: Int { config.voters.count / 2 + 1 }

    private mutating func resetElectionTimer() {
        electionElapsedTicks = 0
        randomizedElectionTimeoutTicks = config.electionTimeoutTicks + Int.random(in: 0..<config.electionTimeoutTicks, using: &random)
    }

    private mutating func becomeFollower(term newTerm: Term, leader newLeader: MemberID?) {
        if newTerm > term { vote = nil }
        term = newTerm
        role = .follower
        leader = newLeader
        transferTarget = nil
        progress = [:]
        pendingReads = []
        readsAwaitingTermCommit = []
        resetElectionTimer()
    }

    private mutating func becomePreCandidate() {
        role = .preCandidate
        leader = nil
        votesGranted = [config.id]
        votesRejected = []
        resetElectionTimer()
        if votesGranted.count >= quorum { becomeCandidate(); return }
        requestVotes(kind: .preVote, term: term.value + 1)
    }

    private mutating func becomeCandidate(transfer: Bool = false) {
        term = Term(term.value + 1)
        vote = config.id
        role = .candidate
        leader = nil
        votesGranted = [config.id]
        votesRejected = []
        resetElectionTimer()
        if votesGranted.count >= quorum { becomeLeader(); return }
        requestVotes(kind: .vote, term: term.value, transfer: transfer)
    }

    private mutating func requestVotes(kind: MessageKind, term requestTerm: UInt64, transfer: Bool = false) {
        for peer in config.voters where peer != config.id {
            var m = Message(kind: kind, from: config.id, to: peer, term: Term(requestTerm))
            m.index = lastIndex
            m.logTerm = lastTerm
            m.leadershipTransfer = transfer
            // The candidate's own vote is in its hard state: requests follow its persist.
            out.messagesAfterPersist.append(m)
        }
    }

    private mutating func becomeLeader() {
        role = .leader
        leader = config.id
        heartbeatElapsedTicks = 0
        electionElapsedTicks = 0
        let lastTime = lastIndex.value == 0 ? 0 : (entries(from: lastIndex, through: lastIndex, maxBytes: 0).first?.clusterTimeNanos ?? 0)
        // A brand-new log has no time to continue from: the first leader starts the cluster clock from its own.
        clusterTimeBase = lastIndex.value == 0 ? monotonicNanos : lastTime
        monotonicBase = monotonicNanos
        progress = [:]
        for peer in config.voters {
            var p = Progress(next: lastIndex + 1)
            if peer == config.id { p.match = unstableOffset - 1; p.state = .replicate; p.recentActive = true }
            progress[peer] = p
        }
        appendAsLeader(kind: .noop, data: [])
        broadcastAppend()
        if config.voters.count == 1 { maybeCommit() }
    }

    private func clusterTimeNow() -> UInt64 {
        let t = clusterTimeBase &+ (monotonicNanos &- monotonicBase)
        if let last = unstable.last { return max(t, last.clusterTimeNanos) }
        return t
    }

    private mutating func quorumActive() -> Bool {
        var active = 0
        for (id, var p) in progress {
            if id == config.id || p.recentActive { active += 1 }
            p.recentActive = false
            progress[id] = p
        }
        return active >= quorum
    }

    /// With check-quorum, a member that heard from a live leader within the election timeout ignores vote
    /// requests, so a rejoining partitioned node cannot depose a working leader. Transfer campaigns are exempt.
    private func inLease(from: MemberID) -> Bool {
        config.checkQuorum && leader != nil && leader != from && electionElapsedTicks < config.electionTimeoutTicks
    }

    // MARK: Votes

    private mutating func handleVoteRequest(_ m: Message) {
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

    private mutating func handleVoteResponse(_ m: Message) {
        let expected: RaftRole = m.kind == .voteResponse ? .candidate : .preCandidate
        guard role == expected else { return }
        if m.kind == .preVoteResponse && m.term != Term(term.value + 1) && !m.reject { return }
        if m.reject { votesRejected.insert(m.from) } else { votesGranted.insert(m.from) }
        if votesGranted.count >= quorum {
            if role == .preCandidate { becomeCandidate() } else { becomeLeader() }
        } else if votesRejected.count >= quorum {
            becomeFollower(term: term, leader: nil)
        }
    }

    // MARK: Follower side

    private mutating func handleAppend(_ m: Message) {
        role = .follower
        leader = m.from
        electionElapsedTicks = 0
        var r = Message(kind: .appendResponse, from: config.id, to: m.from, term: term)
        var m = m
        if m.index < commit {
            // The prefix up to our commit is settled; a delayed duplicate must not touch it.
            let settled = Int(commit.value - m.index.value)
            if settled >= m.entries.count {
                r.index = commit
                out.messagesAfterPersist.append(r)
                return
            }
            m.entries.removeFirst(settled)
            m.index = commit
            m.logTerm = term(at: commit) ?? .zero
        }
        guard let t = term(at: m.index), t == m.logTerm else {
            r.reject = true
            r.index = m.index
            // Hint: our last index whose term is at most the leader's term there, so the leader can skip
            // every entry of a term we do not share in one round trip.
            var hint = min(m.index, lastIndex)
            while hint > commit, let t = term(at: hint), t > m.logTerm { hint = hint - 1 }
            r.hintIndex = hint
            r.hintTerm = term(at: hint) ?? .zero
            out.messagesAfterPersist.append(r)
            return
        }
        appendFollowing(m.entries)
        let lastNew = m.index + UInt64(m.entries.count)
        commit = max(commit, min(m.commit, lastNew))
        r.index = lastNew
        out.messagesAfterPersist.append(r)
    }

    private mutating func handleHeartbeat(_ m: Message) {
        role = .follower
        leader = m.from
        electionElapsedTicks = 0
        // The heartbeat's commit is only safe up to what we know matches the leader, which the leader
        // guarantees by sending min(its commit, our match).
        if m.commit > commit && m.commit <= lastIndex { commit = m.commit }
        var r = Message(kind: .heartbeatResponse, from: config.id, to: m.from, term: term)
        r.readSequence = m.readSequence
        out.messages.append(r)
    }

    // MARK: Leader side

    private mutating func handleAppendResponse(_ m: Message) {
        guard role == .leader, var p = progress[m.from] else { return }
        p.recentActive = true
        if m.reject {
            // Stale rejections (for an index we no longer send from) are ignored.
            let stale = p.state == .probe ? m.index != p.next - 1 : m.index <= p.match
            guard !stale else { progress[m.from] = p; return }
            if p.state == .replicate {
                p.next = p.match + 1
            } else {
                var i = m.hintIndex
                while i > p.match, let t = term(at: i), t > m.hintTerm { i = i - 1 }
                p.next = max(p.match + 1, min(m.index, i + 1))
            }
            p.state = .probe
            p.probeSent = false
            p.inflight = []
            progress[m.from] = p
            sendAppend(to: m.from)
            return
        }
        if m.index > p.match {
            p.stalledHeartbeats = 0
            p.match = m.index
            p.next = max(p.next, m.index + 1)
            if p.state == .probe { p.state = .replicate; p.inflight = [] }
        }
        p.inflight.removeAll { $0 <= m.index }
        p.probeSent = false
        progress[m.from] = p
        maybeCommit()
        if transferTarget == m.from && p.match == lastIndex { send(kind: .timeoutNow, to: m.from) }
        sendAppend(to: m.from)
    }

    private mutating func handleHeartbeatResponse(_ m: Message) {
        guard role == .leader, var p = progress[m.from] else { return }
        p.recentActive = true
        p.readSequenceAcked = max(p.readSequenceAcked, m.readSequence)
        p.probeSent = false
        if p.match < lastIndex {
            // Appends may have been lost while replicating; after a few silent rounds fall back to probing.
            p.stalledHeartbeats += 1
            if p.state == .replicate && p.stalledHeartbeats >= stalledHeartbeatsBeforeProbe {
                p.state = .probe
                p.next = p.match + 1
                p.inflight = []
                p.stalledHeartbeats = 0
            }
        }
        progress[m.from] = p
        if p.match < lastIndex { sendAppend(to: m.from) }
        releaseReads()
    }

    private mutating func maybeCommit() {
        var matches = config.voters.map { progress[$0]?.match ?? .zero }
        matches.sort(by: >)
        let candidate = matches[quorum - 1]
        // Only an entry of the current term is committed by counting replicas (Raft §5.4.2, Figure 8).
        guard candidate > commit, term(at: candidate) == term else { return }
        let wasCommittedInTerm = committedInCurrentTerm
        commit = candidate
        broadcastAppend()
        if !wasCommittedInTerm {
            let waiting = readsAwaitingTermCommit
            readsAwaitingTermCommit = []
            for context in waiting { startRead(context: context) }
        }
    }

    private var committedInCurrentTerm: Bool { term(at: commit) == term }

    /// The sequence is taken after the read index is fixed, so only heartbeats sent after that confirm it.
    private mutating func startRead(context: UInt64) {
        readSequence += 1
        pendingReads.append((readSequence, ReadState(context: context, index: commit)))
        if quorum == 1 { releaseReads() } else { broadcastHeartbeat() }
    }

    private mutating func releaseReads() {
        guard !pendingReads.isEmpty else { return }
        var acks = config.voters.map { $0 == config.id ? readSequence : (progress[$0]?.readSequenceAcked ?? 0) }
        acks.sort(by: >)
        let confirmed = acks[quorum - 1]
        while let first = pendingReads.first, first.sequence <= confirmed {
            out.readStates.append(first.state)
            pendingReads.removeFirst()
        }
    }

    private mutating func broadcastAppend() {
        for peer in config.voters where peer != config.id { sendAppend(to: peer) }
    }

    private mutating func broadcastHeartbeat() {
        for peer in config.voters where peer != config.id {
            var m = Message(kind: .heartbeat, from: config.id, to: peer, term: term)
            m.commit = min(commit, progress[peer]?.match ?? .zero)
            m.readSequence = readSequence
            out.messages.append(m)
        }
    }

    /// Sends whatever the follower lacks, as soon as it exists, within the in-flight window and byte bound.
    private mutating func sendAppend(to peer: MemberID) {
        guard var p = progress[peer] else { return }
        defer { progress[peer] = p }
        while true {
            if p.state == .probe && p.probeSent { return }
            if p.state == .replicate && p.inflight.count >= config.maxInflightMessages { return }
            let hasEntries = p.next <= lastIndex
            // In replicate state only send when there is something new or commit news to give.
            if p.state == .replicate && !hasEntries { return }
            var m = Message(kind: .append, from: config.id, to: peer, term: term)
            m.index = p.next - 1
            m.logTerm = term(at: m.index) ?? .zero
            m.entries = entries(from: p.next, through: lastIndex, maxBytes: config.maxMessageBytes)
            m.commit = commit
            out.messages.append(m)
            let last = m.index + UInt64(m.entries.count)
            if p.state == .probe {
                p.probeSent = true
                return
            }
            p.inflight.append(last)
            p.next = last + 1
        }
    }

    private mutating func send(kind: MessageKind, to peer: MemberID) {
        out.messages.append(Message(kind: kind, from: config.id, to: peer, term: term))
    }

    private func check() {
        if config.debugChecks { RaftInvariants.checkLocal(self) }
    }
}
