// The Raft core: elections (pre-vote, check-quorum), replication with per-follower progress, commitment,
// ReadIndex and lease reads, leadership transfer, snapshots, membership changes and cluster-time stamping.
// Pure: no I/O, no clock, no threads.
import CairnBase

package struct RaftConfig: Sendable {
    package var id: MemberID
    /// The initial configuration, in effect until the log or a snapshot holds a config-change entry.
    /// A member joining an existing cluster starts with none: it learns the membership from the leader.
    package var voters: [MemberID]
    package var electionTimeoutTicks: Int = 10
    package var heartbeatIntervalTicks: Int = 1
    package var maxMessageBytes: Int = 1 << 20
    package var maxInflightMessages: Int = 256
    package var preVote: Bool = true
    package var checkQuorum: Bool = true
    /// Answers `readIndex` from the leader's lease (no heartbeat round) while a quorum acknowledged a heartbeat
    /// sent within the last `electionTimeoutTicks - leaseSafetyMarginTicks`. Needs `checkQuorum`: followers only
    /// refuse other candidates for an election timeout after hearing the leader, and ticks must run at about
    /// the same rate on every member; the margin absorbs the drift and the tick phase.
    package var leaseReads: Bool = false
    package var leaseSafetyMarginTicks: Int = 2
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
/// 1. If `snapshot` is set (a snapshot received from the leader that `restoreSnapshot` accepted): replace the
///    state machine with that snapshot's contents and make the snapshot file the member's current one, then
///    make `snapshot` the storage's snapshot — entries through its index are dropped, and the whole log when
///    storage does not hold that index with that term (`MemoryLogStorage.applySnapshot`) — durably, before
///    anything below.
/// 2. Persist `entries` into `storage` (appending; an entry overwrites any stored entry at its index and
///    everything after it) and `hardState` if present. Send `messages` at any time — they do not depend on this persist
///    (a leader's appends go out in parallel with its own write).
/// 3. After the persist is durable, send `messagesAfterPersist` (votes and acknowledgements promise durable state).
/// 4. Apply `committedEntries` in order; they are already durable locally, so this need not wait for step 2's
///    persist (applying them while this batch's entries are written keeps answers off the fsync path). Serve
///    `readStates` once applied reaches their index. A `.configChange` entry needs nothing from the application: the core changed the
///    membership when it appended it (a removed member may be shut down once the entry is applied).
/// 5. For each of `snapshotsToSend` (leader side), stream the member's current snapshot file — the one whose
///    header is `metadata`; it is the one storage was compacted to — to `to` as `.snapshot` messages in file
///    order: `term` and `from` as in the request, `index`/`logTerm` = the snapshot's index/term, each chunk's
///    `snapshotOffset` and `data` (bounded, e.g. `maxMessageBytes`), `snapshotDone` on the last. When the
///    stream is delivered or has failed, call `reportSnapshot(to:success:)` exactly once. Any failure is safe
///    to report: the core asks again later.
/// 6. For each of `snapshotChunks` (follower side; from the current leader, for a snapshot newer than the
///    commit index), feed a `SnapshotReceiver`: it says whether to start a new temporary file, append to it or
///    drop the chunk. When a chunk completes a file whose trailer checksum and header (index, term) match,
///    call `restoreSnapshot(metadata)` with the header; install the file in step 1 of the batch that carries it.
///    A broken transfer is simply abandoned: the leader's next stream starts over at offset 0.
/// 7. Call `advance(ready)` with this batch before asking for the next one.
///
/// Compaction is the application's choice: after writing a snapshot of the state through applied index N with
/// the header `snapshotMetadata(through: N)`, it calls `storage.applySnapshot(header)` whenever it likes.
package struct Ready: Sendable {
    package var snapshot: SnapshotMetadata?
    package var entries: [Entry] = []
    package var hardState: HardState?
    package var messages: [Message] = []
    package var messagesAfterPersist: [Message] = []
    package var committedEntries: [Entry] = []
    package var readStates: [ReadState] = []
    package var snapshotsToSend: [SnapshotRequest] = []
    package var snapshotChunks: [Message] = []

    package var isEmpty: Bool {
        snapshot == nil && entries.isEmpty && hardState == nil && messages.isEmpty && messagesAfterPersist.isEmpty
            && committedEntries.isEmpty && readStates.isEmpty && snapshotsToSend.isEmpty && snapshotChunks.isEmpty
    }
}

package struct Progress: Sendable {
    /// `snapshot`: the follower needs entries compacted away; nothing is sent until the caller's stream ends.
    package enum State: Sendable { case probe, replicate, snapshot }
    package var state: State = .probe
    package var match: LogIndex = .zero
    package var next: LogIndex
    /// Last index of each append in flight, oldest first; bounded by maxInflightMessages.
    package var inflight: [LogIndex] = []
    /// In probe state only one append is outstanding until the follower answers.
    package var probeSent = false
    package var recentActive = false
    package var readSequenceAcked: UInt64 = 0
    /// The latest heartbeat tick the follower acknowledged: the start of the lease it grants.
    package var leaseTickAcked: UInt64 = 0
    package var stalledHeartbeats = 0
    /// In snapshot state: the index of the snapshot being streamed.
    package var pendingSnapshot: LogIndex = .zero
}

let stalledHeartbeatsBeforeProbe = 3

package struct RaftNode<Storage: RaftLogStorage> {
    package let config: RaftConfig
    /// The durable log. The caller persists a batch's entries into it (in place, so a value-type storage
    /// is not copied) before calling `advance`.
    package var storage: Storage
    package internal(set) var role: RaftRole = .follower
    package internal(set) var term: Term
    package internal(set) var vote: MemberID?
    package internal(set) var commit: LogIndex
    package internal(set) var leader: MemberID?
    package internal(set) var applied: LogIndex
    /// The leader's view of every member it replicates to; `match` tells the caller when a learner has caught up.
    package internal(set) var progress: [MemberID: Progress] = [:]
    /// The configuration in effect: that of the last config-change entry in the log, else the snapshot's, else
    /// the initial one. It changes when the entry is appended, not when committed (Raft dissertation §4.1): the
    /// configuration is then a function of the log alone, so a member's view never depends on how far it has
    /// applied, a truncated config entry simply stops counting, and a restart recovers it from the log.
    package internal(set) var membership: Membership

    /// Entries not yet persisted, starting at `unstableOffset`; they shadow storage from that index on.
    var unstable: [Entry] = []
    var unstableOffset: LogIndex
    /// A snapshot accepted by `restoreSnapshot` that the caller has not installed yet; it shadows storage's.
    var pendingSnapshot: SnapshotMetadata?
    /// Config-change entries in the log, oldest first (trimmed as storage compacts past them).
    var configs: [(index: LogIndex, membership: Membership)] = []
    /// Members other than this one that the leader sends to, in ID order (so output is deterministic).
    var peers: [MemberID] = []
    var random: SeededRandom
    var electionElapsedTicks = 0
    var heartbeatElapsedTicks = 0
    var randomizedElectionTimeoutTicks = 0
    /// Ticks since this member started: heartbeats are stamped with it for the lease.
    var tickCount: UInt64 = 0
    var votesGranted: Set<MemberID> = []
    var votesRejected: Set<MemberID> = []
    var transferTarget: MemberID?
    /// Set once a TimeoutNow went out in this term: its receiver may win an election at any time, lease or not.
    var leaseRevoked = false

    var monotonicNanos: UInt64 = 0
    /// Cluster time = clusterTimeBase + (monotonic now − monotonicBase) while leader.
    var clusterTimeBase: UInt64 = 0
    var monotonicBase: UInt64 = 0

    var readSequence: UInt64 = 0
    var pendingReads: [(sequence: UInt64, state: ReadState)] = []
    var readsAwaitingTermCommit: [UInt64] = []

    var out = Ready()
    var lastHardState: HardState
    /// Messages `step` refused as out of range or inconsistent.
    package internal(set) var messagesDropped = 0

    /// Starts (or restarts) a member from what `storage` and `hardState` hold.
    package init(config: RaftConfig, storage: Storage, hardState: HardState) {
        self.config = config
        self.storage = storage
        self.term = hardState.term
        self.vote = hardState.vote
        self.commit = max(hardState.commit, storage.snapshot.index)
        self.applied = storage.firstIndex - 1
        self.unstableOffset = storage.lastIndex + 1
        self.random = SeededRandom(seed: config.randomSeed ^ config.id.value &* 0x9E37_79B9)
        self.lastHardState = hardState
        self.membership = Membership(voters: config.voters)
        // The membership is the log's: the latest config entry held wins.
        for e in storage.configChangeEntries() {
            if let membership = Self.decodeMembership(e) { configs.append((e.index, membership)) }
        }
        refreshMembership()
        resetElectionTimer()
    }

    // MARK: Log

    package var lastIndex: LogIndex { unstable.isEmpty ? unstableOffset - 1 : unstable[unstable.count - 1].index }
    package var lastTerm: Term { term(at: lastIndex) ?? .zero }
    /// The first index whose entry is held; the one before it is the snapshot's.
    package var firstIndex: LogIndex { pendingSnapshot.map { $0.index + 1 } ?? storage.firstIndex }
    package var snapshot: SnapshotMetadata { pendingSnapshot ?? storage.snapshot }
    package var voters: [MemberID] { membership.voters }
    package var learners: [MemberID] { membership.learners }

    package func term(at index: LogIndex) -> Term? {
        if index >= unstableOffset {
            // Compared before converting: an index 2^63 past the offset does not fit an Int.
            let i = index.value - unstableOffset.value
            return i < UInt64(unstable.count) ? unstable[Int(i)].term : nil
        }
        if let s = pendingSnapshot {
            if index < s.index { return nil }
            if index == s.index { return s.term }
        }
        return storage.term(at: index)
    }

    func entries(from: LogIndex, through: LogIndex, maxBytes: Int) -> [Entry] {
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
    /// Returns false, changing nothing, when the entries would replace a committed one or leave a gap after the log:
    /// no leader sends that (validation refuses it first), so the message is dropped.
    mutating func appendFollowing(_ newEntries: [Entry]) -> Bool {
        var firstNew = 0
        while firstNew < newEntries.count, let t = term(at: newEntries[firstNew].index), t == newEntries[firstNew].term {
            firstNew += 1
        }
        guard firstNew < newEntries.count else { return true }
        let start = newEntries[firstNew].index
        guard start > commit, start <= lastIndex + 1 else { return false }
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
        // A truncated config entry no longer counts; the new ones count at once.
        let configCount = configs.count
        configs.removeAll { $0.index >= start }
        var changed = configs.count != configCount
        for e in newEntries[firstNew...] where e.kind == .configChange {
            if let membership = Self.decodeMembership(e) { configs.append((e.index, membership)) }
            changed = true
        }
        if changed { refreshMembership() }
        return true
    }

    mutating func appendAsLeader(kind: EntryKind, data: [UInt8]) {
        let entry = Entry(term: term, index: lastIndex + 1, clusterTimeNanos: clusterTimeNow(), kind: kind, data: data)
        unstable.append(entry)
        out.entries.append(entry)
    }

    /// Nil for an entry that does not decode (damage on disk; validation keeps such entries out of messages): it
    /// then changes no membership, the same on every member that holds the same bytes.
    static func decodeMembership(_ e: Entry) -> Membership? {
        try? ConfigChangeEntry(decoding: e.data).membership
    }

    /// The membership in effect at `index` (at or after the snapshot).
    package func membership(at index: LogIndex) -> Membership {
        configs.last(where: { $0.index <= index })?.membership ?? baseMembership
    }

    /// What holds before the first config entry in the log: the snapshot's membership, else the initial one.
    var baseMembership: Membership {
        snapshot.index > .zero ? snapshot.membership : Membership(voters: config.voters)
    }

    /// Index of the config-change entry in effect; zero when the membership comes from the snapshot or the
    /// initial configuration.
    package var configIndex: LogIndex { configs.last?.index ?? .zero }

    /// True while the latest config entry is not committed: no other change may be proposed (one at a time).
    var configChangePending: Bool { (configs.last?.index ?? .zero) > commit }

    mutating func refreshMembership() {
        let current = configs.last?.membership ?? baseMembership
        let changed = current != membership
        membership = current
        if changed && role != .leader && !mayCampaign && role != .follower { becomeFollower(term: term, leader: nil) }
        if role == .leader { reconcilePeers() }
    }

    /// The leader replicates to the configuration in effect and, until it commits, to members it removes,
    /// so they learn of their removal and stop campaigning.
    mutating func reconcilePeers() {
        var targets = Set(membership.members)
        if configChangePending, let last = configs.last { targets.formUnion(membership(at: last.index - 1).members) }
        targets.remove(config.id)
        peers = targets.sorted()
        for id in peers where progress[id] == nil { progress[id] = Progress(next: lastIndex + 1) }
        for id in Array(progress.keys) where id != config.id && !targets.contains(id) { progress[id] = nil }
        if let t = transferTarget, !membership.voters.contains(t) { transferTarget = nil }
    }

    // MARK: Inputs

    /// Advances logical time by one tick; `monotonicNanos` is the caller's monotonic clock for cluster time.
    package mutating func tick(monotonicNanos now: UInt64) {
        monotonicNanos = max(monotonicNanos, now)
        tickCount += 1
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
        } else if electionElapsedTicks >= randomizedElectionTimeoutTicks && mayCampaign {
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
        guard role != .leader, mayCampaign else { return }
        if config.preVote { becomePreCandidate() } else { becomeCandidate() }
    }

    /// Returns false when this member is not the leader (the caller forwards or fails the request).
    @discardableResult
    package mutating func propose(_ data: [UInt8]) -> Bool {
        guard role == .leader, transferTarget == nil else { return false }
        appendAsLeader(kind: .normal, data: data)
        broadcastAppend()
        if membership.voters.count == 1 { maybeCommit() }
        return true
    }

    /// Proposes one membership change. Refused (false) when not leader, during a transfer, before this term has
    /// committed an entry (the dissertation's fix for single-server changes), while another change is
    /// uncommitted, or when the change is not valid for the current membership.
    @discardableResult
    package mutating func proposeConfigChange(_ change: ConfigChange) -> Bool {
        guard role == .leader, transferTarget == nil, committedInCurrentTerm, !configChangePending,
              let next = membership.applying(change) else { return false }
        appendAsLeader(kind: .configChange, data: ConfigChangeEntry(change: change, membership: next).encoded())
        configs.append((lastIndex, next))
        refreshMembership()
        broadcastAppend()
        maybeCommit()
        return true
    }

    /// Asks for a linearizable read point; it comes back in `Ready.readStates` with the same context.
    /// Returns false when not leader.
    @discardableResult
    package mutating func readIndex(context: UInt64) -> Bool {
        guard role == .leader else { return false }
        if committedInCurrentTerm && leaseHeld {
            out.readStates.append(ReadState(context: context, index: commit))
        } else if committedInCurrentTerm {
            startRead(context: context)
        } else {
            readsAwaitingTermCommit.append(context)
        }
        return true
    }

    package mutating func transferLeadership(to target: MemberID) {
        guard role == .leader, target != config.id, progress[target] != nil, membership.voters.contains(target) else { return }
        transferTarget = target
        electionElapsedTicks = 0
        if progress[target]!.match == lastIndex { sendTimeoutNow(to: target) } else { sendAppend(to: target) }
    }

    /// The caller learned that `member` runs as a new process: it may have lost what it had not made durable, or
    /// its whole disk if it was wiped and started again. Replication to it restarts from a probe and forgets what
    /// it acknowledged — which only makes commitment more conservative — so a follower that lost acknowledged
    /// entries is found out and refilled instead of being taken for up to date.
    package mutating func restartReplication(to member: MemberID) {
        guard role == .leader, member != config.id, var p = progress[member] else { return }
        p.match = .zero
        p.next = lastIndex + 1
        p.state = .probe
        p.probeSent = false
        p.inflight = []
        progress[member] = p
        sendAppend(to: member)
    }

    /// The leader's caller finished (or gave up) streaming the snapshot requested for `member`. On success the
    /// follower's answer moves it on; either way a follower still behind the log gets a new request later.
    package mutating func reportSnapshot(to member: MemberID, success: Bool) {
        guard role == .leader, var p = progress[member], p.state == .snapshot else { return }
        p.state = .probe
        p.next = success ? max(p.match + 1, p.pendingSnapshot + 1) : p.match + 1
        p.inflight = []
        // Wait for the follower to answer a heartbeat before probing (and, after a failure, asking again),
        // so a stream that keeps failing is retried at the heartbeat rate, not in a loop.
        p.probeSent = true
        progress[member] = p
    }

    /// A snapshot received from the leader is complete and verified. Returns false (drop the file) when it is
    /// not newer than the commit index; otherwise the log now starts after it, the next `Ready` carries it
    /// for installing, and the leader hears once it is durable.
    @discardableResult
    package mutating func restoreSnapshot(_ metadata: SnapshotMetadata) -> Bool {
        guard role != .leader, metadata.index > commit, metadata.index.value <= RaftLimits.indexMax,
              metadata.term.value <= RaftLimits.termMax else { return false }
        let n = metadata.index
        if term(at: n) == metadata.term {
            // Our log agrees at the snapshot's last entry, so what follows it is kept (we may have acknowledged it).
            if unstableOffset <= n {
                unstable.removeFirst(Int(min(UInt64(unstable.count), n.value - unstableOffset.value + 1)))
                unstableOffset = n + 1
            }
            out.entries.removeAll { $0.index <= n }
            configs.removeAll { $0.index <= n }
        } else {
            // A divergent suffix cannot be committed (the snapshot's entry is); drop it all.
            unstable = []
            unstableOffset = n + 1
            out.entries = []
            configs = []
        }
        pendingSnapshot = metadata
        out.snapshot = metadata
        commit = n
        applied = n
        refreshMembership()
        if let leader {
            var r = Message(kind: .appendResponse, from: config.id, to: leader, term: term)
            r.index = n
            out.messagesAfterPersist.append(r)
        }
        check()
        return true
    }

    /// The header for a snapshot of the application's state through `index` (between the current snapshot and
    /// `applied`): the entry's term and cluster time and the membership in effect there. Nil outside that range.
    package func snapshotMetadata(through index: LogIndex) -> SnapshotMetadata? {
        guard index >= snapshot.index, index <= applied, let t = term(at: index) else { return nil }
        let time = index == snapshot.index ? snapshot.clusterTimeNanos
            : entries(from: index, through: index, maxBytes: 0).first?.clusterTimeNanos ?? 0
        return SnapshotMetadata(index: index, term: t, clusterTimeNanos: time, membership: membership(at: index))
    }

    /// Steps a message from a peer. One out of range or inconsistent (`Message.validateRanges`), or with a term more
    /// than `RaftLimits.termJumpMax` above this member's, is dropped and counted in `messagesDropped`: the caller
    /// validates first (and closes the link), this keeps the core safe anyway.
    package mutating func step(_ m: Message) {
        guard (try? m.validateRanges()) != nil, m.to == config.id, m.term.value - min(m.term.value, term.value) <= RaftLimits.termJumpMax else {
            messagesDropped += 1
            return
        }
        defer { check() }
        if m.term > term {
            if m.kind == .preVote { /* a pre-vote never changes our term */ }
            else if m.kind == .preVoteResponse && !m.reject { /* granted at a future term we will campaign in */ }
            else if (m.kind == .vote || m.kind == .preVote) && !m.leadershipTransfer && inLease(from: m.from) {
                return
            } else {
                let leaderOfTerm: MemberID? = (m.kind == .append || m.kind == .heartbeat || m.kind == .snapshot) ? m.from : nil
                becomeFollower(term: m.term, leader: leaderOfTerm)
            }
        } else if m.term < term {
            // A stale leader learns of the newer term so it steps down (needed with check-quorum and pre-vote).
            if m.kind == .append || m.kind == .heartbeat || m.kind == .snapshot {
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
        case .snapshot: handleSnapshotChunk(m)
        case .timeoutNow:
            if role != .leader && mayCampaign { becomeCandidate(transfer: true) }
        }
    }

    // MARK: Ready / Advance

    /// The application applied the committed entries through `index` itself, straight from its durable log (a restart
    /// replaying it): they are not handed out again. Raft's `applied` only moves forward, and never past the commit index.
    package mutating func markApplied(through index: LogIndex) {
        applied = max(applied, min(index, commit))
    }

    package var hasReady: Bool { !out.isEmpty || hardState != lastHardState || nextApplyBound > applied }

    package var hardState: HardState { HardState(term: term, vote: vote, commit: commit) }

    var nextApplyBound: LogIndex { min(commit, unstableOffset - 1) }

    package mutating func ready() -> Ready {
        var r = out
        if hardState != lastHardState { r.hardState = hardState }
        if nextApplyBound > applied {
            r.committedEntries = entries(from: applied + 1, through: nextApplyBound, maxBytes: Int.max)
        }
        out = Ready()
        return r
    }

    /// Acknowledges a batch from `ready()`: its snapshot, entries and hard state are durable, its committed entries applied.
    package mutating func advance(_ r: Ready) {
        if let s = r.snapshot, s == pendingSnapshot { pendingSnapshot = nil }
        if let h = r.hardState { lastHardState = h }
        if let last = r.committedEntries.last { applied = max(applied, last.index) }
        if let last = r.entries.last, term(at: last.index) == last.term, last.index >= unstableOffset {
            // Only what the caller has now persisted leaves the unstable tail; later appends stay.
            let persistedCount = Int(last.index.value - unstableOffset.value) + 1
            unstable.removeFirst(persistedCount)
            unstableOffset = last.index + 1
        }
        // Config entries the caller compacted away are history: the snapshot carries their membership.
        if let first = configs.first, first.index <= storage.snapshot.index {
            configs.removeAll { $0.index <= storage.snapshot.index }
        }
        if role == .leader, var p = progress[config.id] {
            p.match = unstableOffset - 1
            p.next = p.match + 1
            progress[config.id] = p
            maybeCommit()
        }
    }
}
