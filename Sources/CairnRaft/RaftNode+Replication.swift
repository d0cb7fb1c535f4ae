// The Raft core's replication: the follower side (appends, heartbeats, snapshot chunks) and the leader side
// (acknowledgements, commitment, ReadIndex rounds, appends and heartbeats sent). Part of `RaftNode` (RaftNode.swift).
import CairnBase

extension RaftNode {
    // MARK: Follower side

    mutating func handleAppend(_ m: Message) {
        role = .follower
        leader = m.from
        electionElapsedTicks = 0
        var r = Message(kind: .appendResponse, from: config.id, to: m.from, term: term)
        var m = m
        if m.index < commit {
            // The prefix up to our commit is settled; a delayed duplicate must not touch it.
            let settled = commit.value - m.index.value
            if settled >= UInt64(m.entries.count) {
                r.index = commit
                out.messagesAfterPersist.append(r)
                return
            }
            m.entries.removeFirst(Int(settled))
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
        guard appendFollowing(m.entries) else {
            messagesDropped += 1
            return
        }
        let lastNew = m.index + UInt64(m.entries.count)
        commit = max(commit, min(m.commit, lastNew))
        r.index = lastNew
        out.messagesAfterPersist.append(r)
    }

    mutating func handleHeartbeat(_ m: Message) {
        role = .follower
        leader = m.from
        electionElapsedTicks = 0
        // The heartbeat's commit is only safe up to what we know matches the leader, which the leader
        // guarantees by sending min(its commit, our match).
        if m.commit > commit && m.commit <= lastIndex { commit = m.commit }
        var r = Message(kind: .heartbeatResponse, from: config.id, to: m.from, term: term)
        r.readSequence = m.readSequence
        r.sentTick = m.sentTick
        out.messages.append(r)
    }

    /// The bytes are the caller's business; the core keeps the leader's authority (term, election timer) and
    /// passes on only chunks of a snapshot we could use.
    mutating func handleSnapshotChunk(_ m: Message) {
        role = .follower
        leader = m.from
        electionElapsedTicks = 0
        if m.index <= commit {
            // Nothing to install: tell the leader where we are, once per stream.
            if m.snapshotDone {
                var r = Message(kind: .appendResponse, from: config.id, to: m.from, term: term)
                r.index = commit
                out.messagesAfterPersist.append(r)
            }
            return
        }
        out.snapshotChunks.append(m)
    }

    // MARK: Leader side

    mutating func handleAppendResponse(_ m: Message) {
        guard role == .leader, var p = progress[m.from] else { return }
        // An acknowledgement past the leader's log answers nothing it sent (the log does not shrink within a term).
        guard m.index <= lastIndex else {
            messagesDropped += 1
            return
        }
        p.recentActive = true
        if m.reject {
            // Stale rejections (for an index we no longer send from) are ignored.
            let stale = p.state == .probe ? m.index != p.next - 1 : m.index <= p.match
            guard !stale, p.state != .snapshot else { progress[m.from] = p; return }
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
            if p.state == .probe || (p.state == .snapshot && p.match >= p.pendingSnapshot) {
                p.state = .replicate
                p.next = p.match + 1
                p.inflight = []
            }
        }
        p.inflight.removeAll { $0 <= m.index }
        p.probeSent = false
        progress[m.from] = p
        maybeCommit()
        guard role == .leader else { return }
        if transferTarget == m.from && p.match == lastIndex { sendTimeoutNow(to: m.from) }
        sendAppend(to: m.from)
    }

    mutating func handleHeartbeatResponse(_ m: Message) {
        guard role == .leader, var p = progress[m.from] else { return }
        p.recentActive = true
        p.readSequenceAcked = max(p.readSequenceAcked, m.readSequence)
        // A tick from the future was never sent by this leader: it would extend the lease past what was granted.
        p.leaseTickAcked = max(p.leaseTickAcked, min(m.sentTick, tickCount))
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

    mutating func maybeCommit() {
        var matches = membership.voters.map { progress[$0]?.match ?? .zero }
        matches.sort(by: >)
        let candidate = matches[quorum - 1]
        // Only an entry of the current term is committed by counting replicas (Raft §5.4.2, Figure 8).
        guard candidate > commit, term(at: candidate) == term else { return }
        let wasCommittedInTerm = committedInCurrentTerm
        let wasConfigPending = configChangePending
        commit = candidate
        if wasConfigPending && !configChangePending {
            // The change is settled: removed members are no longer replicated to, and a leader that removed
            // itself hands over and steps down (it kept replicating until now so the change could commit).
            if !isVoter { stepDownRemoved(); return }
            reconcilePeers()
        }
        // Followers learn the new commit index now, in an empty append if nothing new is left to send: waiting for
        // the next heartbeat would hold every write answered by a follower for up to a heartbeat interval.
        broadcastAppend(commitNews: true)
        if !wasCommittedInTerm {
            let waiting = readsAwaitingTermCommit
            readsAwaitingTermCommit = []
            for context in waiting { startRead(context: context) }
        }
    }

    mutating func stepDownRemoved() {
        // Tell the voters the commit first, then let the most caught-up one campaign at once.
        broadcastAppend()
        if let successor = membership.voters.max(by: { (progress[$0]?.match ?? .zero) < (progress[$1]?.match ?? .zero) }),
           progress[successor]?.match == lastIndex {
            sendTimeoutNow(to: successor)
        }
        becomeFollower(term: term, leader: nil)
    }

    var committedInCurrentTerm: Bool { term(at: commit) == term }

    /// The sequence is taken after the read index is fixed, so only heartbeats sent after that confirm it.
    mutating func startRead(context: UInt64) {
        readSequence += 1
        pendingReads.append((readSequence, ReadState(context: context, index: commit)))
        if membership.voters == [config.id] { releaseReads() } else { broadcastHeartbeat() }
    }

    mutating func releaseReads() {
        guard !pendingReads.isEmpty else { return }
        var acks = membership.voters.map { $0 == config.id ? readSequence : (progress[$0]?.readSequenceAcked ?? 0) }
        acks.sort(by: >)
        let confirmed = acks[quorum - 1]
        while let first = pendingReads.first, first.sequence <= confirmed {
            out.readStates.append(first.state)
            pendingReads.removeFirst()
        }
    }

    mutating func broadcastAppend(commitNews: Bool = false) {
        for peer in peers { sendAppend(to: peer, commitNews: commitNews) }
    }

    mutating func broadcastHeartbeat() {
        for peer in peers {
            var m = Message(kind: .heartbeat, from: config.id, to: peer, term: term)
            m.commit = min(commit, progress[peer]?.match ?? .zero)
            m.readSequence = readSequence
            m.sentTick = tickCount
            out.messages.append(m)
        }
    }

    /// Sends whatever the follower lacks, as soon as it exists, within the in-flight window and byte bound;
    /// asks the caller for a snapshot when what it lacks is compacted away.
    /// Sends what `peer` lacks; with `commitNews`, a follower in replicate state that lacks nothing gets an empty
    /// append carrying the commit index.
    mutating func sendAppend(to peer: MemberID, commitNews: Bool = false) {
        guard var p = progress[peer] else { return }
        defer { progress[peer] = p }
        var commitNewsPending = commitNews
        while true {
            if p.state == .snapshot { return }
            if p.state == .probe && p.probeSent { return }
            if p.state == .replicate && p.inflight.count >= config.maxInflightMessages { return }
            let hasEntries = p.next <= lastIndex
            // In replicate state only send when there is something new or commit news to give.
            if p.state == .replicate && !hasEntries {
                guard commitNewsPending else { return }
                var m = Message(kind: .append, from: config.id, to: peer, term: term)
                m.index = p.next - 1
                m.logTerm = term(at: m.index) ?? .zero
                m.commit = commit
                out.messages.append(m)
                return
            }
            commitNewsPending = false
            if p.next < firstIndex {
                p.state = .snapshot
                p.pendingSnapshot = snapshot.index
                p.inflight = []
                p.probeSent = false
                out.snapshotsToSend.append(SnapshotRequest(to: peer, term: term, metadata: snapshot))
                return
            }
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

    mutating func sendTimeoutNow(to peer: MemberID) {
        leaseRevoked = true
        out.messages.append(Message(kind: .timeoutNow, from: config.id, to: peer, term: term))
    }

    func check() {
        if config.debugChecks { RaftInvariants.checkLocal(self) }
    }
}
