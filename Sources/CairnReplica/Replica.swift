// One member's decisions as a pure state machine: client writes and reads, peer messages, ticks and storage outcomes
// in, `ReplicaAction`s out. No queue, clock, file or socket: the server's runner and the simulator both drive it.
import CairnBase
import CairnMVCC
import CairnRaft
import CairnStore
import DequeModule

/// The durable log as the Replica sees it: the Raft core reads it, the runner writes it (`persist`), and the Replica
/// tells it what became durable and where a snapshot now starts it.
package protocol ReplicaLog: RaftLogStorage {
    /// The entries of a `persist` action are durable (they replace any stored suffix from the first one's index).
    mutating func didPersist(_ entries: [Entry])
    /// The log starts after `metadata` from now on (`MemoryLogStorage.applySnapshot`'s rule).
    mutating func applySnapshot(_ metadata: SnapshotMetadata)
}

/// The in-memory log of tests and the simulator: what a persist made durable, the core's log and the disk in one.
extension MemoryLogStorage: ReplicaLog {
    package mutating func didPersist(_ entries: [Entry]) { append(entries) }
}

/// What a runner recovered from storage for a Replica to start from.
package struct ReplicaRecovery<Log: ReplicaLog> {
    package var log: Log
    package var hardState: HardState
    /// The newest snapshot's state and where it stands (nil: none).
    package var snapshot: (state: ReplicaState, index: UInt64, clusterTimeNanos: Int64)?
    /// The members of the log's bootstrap entry, when the log still starts at its first entry.
    package var loggedMembers: [MemberRecord]?
    /// This run of this member (a random nonce), and the Raft core's random seed.
    package var incarnation: UInt64
    package var randomSeed: UInt64

    package init(log: Log, hardState: HardState, snapshot: (state: ReplicaState, index: UInt64, clusterTimeNanos: Int64)?,
                 loggedMembers: [MemberRecord]?, incarnation: UInt64, randomSeed: UInt64) {
        self.log = log
        self.hardState = hardState
        self.snapshot = snapshot
        self.loggedMembers = loggedMembers
        self.incarnation = incarnation
        self.randomSeed = randomSeed
    }
}

package struct Replica<Log: ReplicaLog> {
    /// Who waits for a proposal's entry to be applied: a client of the runner (by token) or the Replica itself.
    enum Waiter {
        case client(UInt64)
        case expiry, attributes, bootstrap
        case leaseRevoke(Int64)
        case compaction(Int64)
    }

    package let options: ReplicaOptions
    package var raft: RaftNode<Log>
    /// The cluster's first configuration: from the log when it says, else from the options (empty when joining).
    package let initialMembership: Membership
    /// This run of this member, as proposals and forwarded reads name it.
    package let requester: Requester
    package internal(set) var keySpace: KeySpace
    package internal(set) var sessions = ClientSessions()
    package internal(set) var members: MemberTable
    package var v3: V3State
    package internal(set) var statistics = StoreStatistics()
    package internal(set) var appliedIndex: UInt64
    package internal(set) var appliedClusterTime: Int64 = 0
    /// The runner's clock at the last input, and when the last batch was applied.
    var now: Int64 = 0
    var appliedAt: Int64 = 0
    var sessionsSweptMinute: Int64 = 0
    var membersDirty = false
    var expiryPending = false
    var attributesPending = false
    var bootstrapPending = false

    // Writes: this member's proposals awaiting their entry, by sequence; the deque orders their deadlines.
    var nextSequence: UInt64 = 1
    var writers: [UInt64: Waiter] = [:]
    var writerDeadlines: Deque<(sequence: UInt64, deadline: Int64)> = []
    /// Proposals made while no leader is known; sent when one is.
    var unsent: [[UInt8]] = []

    // Reads: by context; rounds gather the reads that arrive between two drives.
    var nextReadContext: UInt64 = 1
    var readers: [UInt64: UInt64] = [:]
    var readerDeadlines: Deque<(context: UInt64, deadline: Int64)> = []
    var unsentReads: [UInt64] = []
    var readsAwaitingApply: [(index: UInt64, context: UInt64)] = []
    var nextReadRound = ReadRound()
    var readRounds: [UInt64: ReadRound] = [:]

    // Peers.
    /// Set for a member that joined with an empty data directory: until it has applied up to `index`, the commit
    /// index when it first heard a leader (of `term`), it votes only for a candidate whose log holds that much
    /// (`index` is `.max` until it first hears a leader).
    var voteFloor: (index: UInt64, term: Term)?
    /// The run each peer last announced (`PeerMessage.alive`).
    var peerIncarnations: [UInt64: UInt64] = [:]
    var ticksSinceAlive = 0
    var announcedLeader: MemberID?

    // The batch loop and storage.
    var savedHardState: HardState
    /// The batch being persisted, and whether its hard state goes with it.
    var persisting: (ready: Ready, hardState: HardState?)?
    /// A batch's messages that wait for its persist because it raises the term.
    var heldMessages: [Message] = []
    /// The batch waiting for its snapshot to be loaded.
    var loading: Ready?
    /// The batch whose persist failed, waiting to be persisted again. While set nothing is acknowledged, writes and
    /// `quorum=true` reads are refused, and the core is frozen (no ticks, no peer messages) as a paused process is.
    var stalled: (ready: Ready, hardState: HardState?)?
    var storageRetryMilliseconds = Self.storageRetryMillisecondsMin
    static var storageRetryMillisecondsMin: Int { 100 }
    static var storageRetryMillisecondsMax: Int { 5_000 }
    /// Set for a failure the member does not recover from by itself (installing a received snapshot failed).
    var storageBroken = false
    /// Why storage fails, while it does.
    package internal(set) var storageFailure: String?

    // Snapshots.
    package internal(set) var snapshotIndex: UInt64
    var snapshotInProgress = false
    /// A backup waits for the next snapshot.
    var backupWanted = false

    /// A learner this close to the leader's commit index votes from then on.
    package static var learnerLagEntriesMax: UInt64 { 64 }

    /// - Parameter storeInitialIndex: where a new v2 store index starts, unless the log's bootstrap entry says.
    package init(options: ReplicaOptions, storeInitialIndex: UInt64, recovery: ReplicaRecovery<Log>) {
        self.options = options
        requester = Requester(member: options.id, incarnation: recovery.incarnation)
        let logged = recovery.loggedMembers
        initialMembership = Self.initialMembership(logged: logged, options: options)
        members = MemberTable(logged ?? options.members)
        keySpace = KeySpace(initialIndex: logged.map { Self.storeInitialIndex(memberCount: $0.count) } ?? storeInitialIndex)
        v3 = V3State(minimumLeaseTTL: options.minimumLeaseTTL, autoCompaction: options.autoCompaction.map(AutoCompaction.init))
        appliedIndex = 0
        if let (state, index, time) = recovery.snapshot {
            keySpace = state.keySpace
            sessions = state.sessions
            members = state.members
            appliedIndex = index
            appliedClusterTime = time
            v3.restore(state.mvcc, at: time)
        }
        snapshotIndex = appliedIndex
        let recovered = recovery.hardState
        savedHardState = HardState(term: recovered.term, vote: recovered.vote, commit: LogIndex(max(recovered.commit.value, appliedIndex)))
        var config = RaftConfig(id: MemberID(options.id), voters: initialMembership.voters, randomSeed: recovery.randomSeed)
        config.heartbeatIntervalTicks = options.raftHeartbeatIntervalTicks
        config.electionTimeoutTicks = options.electionTimeoutTicks
        config.maxMessageBytes = options.raftMessageBytesMax
        config.maxInflightMessages = options.raftInflightMessagesMax
        config.leaseReads = options.raftLeaseReads
        config.debugChecks = options.raftDebugChecks
        raft = RaftNode(config: config, storage: recovery.log, hardState: savedHardState)
        if options.voters.isEmpty && appliedIndex == 0 && recovery.log.lastIndex == .zero { voteFloor = (.max, .zero) }
    }

    /// A restart's replay, before any other input: applies committed entries read straight from the durable log, from
    /// the one after `appliedIndex` on, so the core never hands them out (they are marked applied in it). Entries past
    /// the commit index are left to the core; a chunk that does not continue `appliedIndex` applies nothing.
    package mutating func replay(_ entries: [Entry], now: Int64) -> [ReplicaAction] {
        observe(now)
        let committed = entries.prefix { $0.index <= raft.commit }
        guard let first = committed.first, first.index.value <= appliedIndex + 1 else { return [] }
        var out: [ReplicaAction] = []
        apply(Array(committed), into: &out)
        raft.markApplied(through: LogIndex(appliedIndex))
        snapshotIfDue(into: &out)
        return out
    }

    /// A restart without snapshots takes the initial members from the log's first member entry, not from the options
    /// (which change as members come and go): Raft's initial configuration follows it.
    package static func initialMembership(logged: [MemberRecord]?, options: ReplicaOptions) -> Membership {
        Membership(voters: (logged?.map(\.id) ?? options.voters).map(MemberID.init))
    }

    /// The members of the log's bootstrap entry, looked for among a log's first entries (`loggedMembersEntriesMax`)
    /// when the log still starts at index 1: a restart takes the initial configuration from there.
    package static func loggedMembers(in entries: [Entry]) -> [MemberRecord]? {
        for entry in entries {
            if let proposal = try? Proposal(decoding: entry.data, kind: entry.kind), case .member(.bootstrap(let members)) = proposal.body {
                return members
            }
        }
        return nil
    }

    package static var loggedMembersEntriesMax: UInt64 { 16 }

    /// etcd writes two entries per member and the cluster version into its store before any client write.
    package static func storeInitialIndex(memberCount: Int) -> UInt64 { UInt64(2 * max(1, memberCount) + 1) }

    /// The view of the state applied so far.
    package var view: ReplicaView {
        ReplicaView(root: keySpace.root, mvcc: v3.space, etcdIndex: keySpace.currentIndex, raftIndex: appliedIndex, raftTerm: raft.term.value,
                    clusterTimeNanos: appliedClusterTime, appliedAtNanos: appliedAt)
    }

    /// Cluster time now, as this member estimates it (`ReplicaView.clusterTime`).
    package var clusterNow: Int64 { view.clusterTime(at: now) }

    /// Proposals this member made and has not seen applied or failed.
    package var pendingProposals: Int { writers.count }

    /// Once, before any other input: a lone voter need not wait out an election timeout to lead itself.
    package mutating func start(now: Int64) {
        observe(now)
        appliedAt = now
        if initialMembership.voters == [MemberID(options.id)] && raft.voters == [MemberID(options.id)] { raft.campaign() }
    }

    mutating func observe(_ now: Int64) {
        self.now = now
        raft.observe(monotonicNanos: UInt64(clamping: now))
    }

    // MARK: - Writes

    /// A client's write: its answer comes with `token` in an `applied` batch, or as `writeFailed`.
    package mutating func propose(_ body: Proposal.Body, session: SessionRequest? = nil, token: UInt64, now: Int64) -> [ReplicaAction] {
        observe(now)
        var out: [ReplicaAction] = []
        submit(body, session: session, for: .client(token), into: &out)
        return out
    }

    mutating func submit(_ body: Proposal.Body, session: SessionRequest? = nil, for waiter: Waiter, into out: inout [ReplicaAction]) {
        if let failure = storageUnavailable() { return finish(waiter, failed: failure, into: &out) }
        let sequence = nextSequence
        nextSequence += 1
        writers[sequence] = waiter
        writerDeadlines.append((sequence, now + Int64(options.requestTimeoutMilliseconds) * 1_000_000))
        route(Proposal(origin: requester, sequence: sequence, session: session, body: body).encoded(), into: &out)
    }

    /// A proposal goes into the log here when this member leads, to the leader when one is known, or waits for one.
    mutating func route(_ proposal: [UInt8], into out: inout [ReplicaAction]) {
        // The initial members go into the log before anything else a leader appends (see `MemberChange.bootstrap`).
        if raft.role == .leader, !members.isLogged, !bootstrapPending { logInitialMembers(into: &out) }
        if raft.propose(proposal) { return }
        if let leader = raft.leader, leader.value != options.id {
            out.append(.send(to: leader.value, .proposal(proposal)))
        } else {
            unsent.append(proposal)
        }
    }

    /// A waiter's entry will not be applied for it: a client learns why, the Replica forgets what it waited for.
    mutating func finish(_ waiter: Waiter, failed error: StoreError, into out: inout [ReplicaAction]) {
        if case .client(let token) = waiter { return out.append(.writeFailed(token: token, error)) }
        finishInternal(waiter, outcome: nil)
    }

    /// The Replica's own proposals: what was pending is pending no more.
    mutating func finishInternal(_ waiter: Waiter, outcome: WriteOutcome?) {
        switch waiter {
        case .client: break
        case .expiry: expiryPending = false
        case .attributes: attributesPending = false
        case .bootstrap: bootstrapPending = false
        case .leaseRevoke(let id): v3.revokesPending.remove(id)
        case .compaction(let due):
            v3.compactionPending = false
            let done: Bool
            switch outcome {
            // Already compacted that far counts as done, as in etcd.
            case .v3(.success?)?, .v3(.failure(.compacted)?)?: done = true
            default: done = false
            }
            let finished = clusterNow
            v3.autoCompaction?.compacted(due, succeeded: done, now: finished)
        }
    }

    /// The answer to a write or `quorum=true` read while storage fails: etcd's shape, the reason in the cause.
    func storageUnavailable() -> StoreError? {
        storageFailure.map { StoreError(.raftInternal, "etcdserver: storage unavailable: \($0)", index: keySpace.currentIndex) }
    }

    // MARK: - Members

    /// On the leader, every tick: log the initial members once, then move Raft's configuration one step towards the
    /// member table. Every member also publishes its own name and client URLs until the table shows them.
    mutating func reconcileMembership(into out: inout [ReplicaAction]) {
        if let mine = members.members[options.id], mine.name != options.name || mine.clientURLs != options.clientURLs,
           !attributesPending, raft.leader != nil {
            attributesPending = true
            submit(.member(.attributes(id: options.id, name: options.name, clientURLs: options.clientURLs)), for: .attributes, into: &out)
        }
        guard raft.role == .leader else { return }
        if !members.isLogged {
            if !bootstrapPending { logInitialMembers(into: &out) }
            return
        }
        let wanted = Set(members.members.keys.map(MemberID.init))
        let current = raft.membership
        if let gone = current.members.first(where: { !wanted.contains($0) }) {
            raft.proposeConfigChange(ConfigChange(.remove, gone))
        } else if let new = wanted.sorted().first(where: { !current.contains($0) }) {
            raft.proposeConfigChange(ConfigChange(.addLearner, new))
        } else if let ready = current.learners.first(where: { learner in
            // A learner that has acknowledged nothing yet is not caught up, however short the log.
            let match = raft.progress[learner]?.match.value ?? 0
            return match > 0 && match + Self.learnerLagEntriesMax >= raft.commit.value
        }) {
            raft.proposeConfigChange(ConfigChange(.addVoter, ready))
        }
    }

    mutating func logInitialMembers(into out: inout [ReplicaAction]) {
        bootstrapPending = true
        submit(.member(.bootstrap(members.sorted)), for: .bootstrap, into: &out)
    }

    // MARK: - Linearizable reads

    /// A `quorum=true` read: `readDone(token)` comes once the leader confirmed the read index and this member applied
    /// it. Reads gather until the next `drive`, and share one ReadIndex round.
    package mutating func read(token: UInt64, now: Int64) -> [ReplicaAction] {
        observe(now)
        if let failure = storageUnavailable() { return [.readDone(token: token, failure)] }
        let context = nextReadContext
        nextReadContext += 1
        readers[context] = token
        readerDeadlines.append((context, now + Int64(options.requestTimeoutMilliseconds) * 1_000_000))
        nextReadRound.local.append(context)
        return []
    }

    /// Starts a round for the reads gathered since the last one.
    mutating func startReadRound(into out: inout [ReplicaAction]) {
        guard !nextReadRound.isEmpty else { return }
        var round = nextReadRound
        nextReadRound = ReadRound()
        let context = nextReadContext
        nextReadContext += 1
        round.deadline = now + Int64(options.requestTimeoutMilliseconds) * 1_000_000
        readRounds[context] = round
        routeRead(context, into: &out)
    }

    mutating func routeRead(_ context: UInt64, into out: inout [ReplicaAction]) {
        if raft.readIndex(context: context) { return }
        if let leader = raft.leader, leader.value != options.id {
            out.append(.send(to: leader.value, .readIndex(ReadRequest(requester: requester, context: context))))
        } else {
            unsentReads.append(context)
        }
    }

    /// A round's read index is known: followers that forwarded reads to it learn it, this member's reads wait for it.
    mutating func readRoundConfirmed(context: UInt64, index: UInt64, into out: inout [ReplicaAction]) {
        guard let round = readRounds.removeValue(forKey: context) else { return }
        for request in round.forwarded { out.append(.send(to: request.requester.member, .readIndexReady(request, index: index))) }
        for reader in round.local {
            guard let token = readers[reader] else { continue }
            if index <= appliedIndex {
                readers[reader] = nil
                out.append(.readDone(token: token, nil))
            } else {
                readsAwaitingApply.append((index, reader))
            }
        }
    }

    // MARK: - Peers

    /// A peer's frame. Throws, changing nothing, for a frame that fails `PeerMessage`'s checks: the runner then
    /// closes the link it came on.
    package mutating func receive(from peer: UInt64, type: UInt8, payload: [UInt8], now: Int64) throws(InvalidMessage) -> [ReplicaAction] {
        guard stalled == nil else { return [] }
        let input = try PeerMessage(type: type, payload: payload, from: peer, localID: options.id)
        observe(now)
        var out: [ReplicaAction] = []
        switch input {
        case .raft(let message):
            if let floor = voteFloor {
                if message.kind == .append || message.kind == .heartbeat, floor.index == .max { voteFloor = (message.commit.value, message.term) }
                // A member that joined with an empty disk has acknowledged nothing it still holds: until it holds what
                // was committed when it first heard the leader, it votes only for a candidate whose log does (a last
                // term past that leader's holds it by Leader Completeness; that leader's term at that index or later,
                // by Log Matching). Withholding every vote instead could leave a two-voter cluster without a leader.
                if message.kind == .vote || message.kind == .preVote,
                   floor.index == .max || message.logTerm < floor.term || (message.logTerm == floor.term && message.index.value < floor.index) {
                    return []
                }
            }
            raft.step(message)
        case .proposal(let bytes):
            // Only a leader takes a peer's proposal. Passed on from here it would reach the next leader in this
            // member's name, not its proposer's, and be refused there with its link; its proposer times out instead.
            guard raft.role == .leader else {
                out.append(.count(metric: "cairn_forwarded_proposals_dropped_total"))
                break
            }
            if !members.isLogged, !bootstrapPending { logInitialMembers(into: &out) }
            if !raft.propose(bytes) { out.append(.count(metric: "cairn_forwarded_proposals_dropped_total")) }
        case .readIndex(let request):
            if raft.role == .leader { nextReadRound.forwarded.append(request) }
        case .alive(let incarnation):
            if peerIncarnations.updateValue(incarnation, forKey: peer) != incarnation {
                raft.restartReplication(to: MemberID(peer))
            }
        case .readIndexReady(let request, let index):
            // An answer meant for an earlier run of this member concerns a read that no longer exists.
            if request.requester == requester { readRoundConfirmed(context: request.context, index: index, into: &out) }
        }
        return out
    }

    // MARK: - Time

    /// Every heartbeat interval.
    package mutating func tick(now: Int64) -> [ReplicaAction] {
        var out: [ReplicaAction] = []
        guard stalled == nil else {
            self.now = now
            expireRequests(into: &out)
            return out
        }
        self.now = now
        raft.tick(monotonicNanos: UInt64(clamping: now))
        if raft.leader != nil {
            let proposals = unsent, reads = unsentReads
            unsent = []
            unsentReads = []
            for proposal in proposals { route(proposal, into: &out) }
            for context in reads { routeRead(context, into: &out) }
        }
        expireRequests(into: &out)
        ticksSinceAlive += 1
        // Once per election timeout, and at once to a new leader (a joiner may know no other member yet).
        if raft.leader != announcedLeader || ticksSinceAlive >= options.electionTimeoutTicks {
            ticksSinceAlive = 0
            announcedLeader = raft.leader
            var peers = Set(members.members.keys)
            if let leader = raft.leader { peers.insert(leader.value) }
            for peer in peers.sorted() where peer != options.id { out.append(.send(to: peer, .alive(incarnation: requester.incarnation))) }
        }
        reconcileMembership(into: &out)
        return out
    }

    /// Fails writes and reads that outlived the request timeout, as etcd does (its answer may still be applied later).
    mutating func expireRequests(into out: inout [ReplicaAction]) {
        while let first = writerDeadlines.first, first.deadline <= now {
            writerDeadlines.removeFirst()
            if let waiter = writers.removeValue(forKey: first.sequence) {
                out.append(.count(metric: "etcd_server_proposals_failed_total"))
                finish(waiter, failed: Self.timedOut(keySpace.currentIndex), into: &out)
            }
        }
        while let first = readerDeadlines.first, first.deadline <= now {
            readerDeadlines.removeFirst()
            if let token = readers.removeValue(forKey: first.context) { out.append(.readDone(token: token, Self.timedOut(keySpace.currentIndex))) }
        }
        // A round the leader never confirmed (it lost leadership) is forgotten once its reads would have timed out.
        if readRounds.contains(where: { $0.value.deadline <= now }) { readRounds = readRounds.filter { $0.value.deadline > now } }
        if readers.isEmpty {
            readsAwaitingApply.removeAll()
            unsentReads.removeAll()
        }
        if writers.isEmpty { unsent.removeAll() }
    }

    static func timedOut(_ index: UInt64) -> StoreError {
        StoreError(.raftInternal, "etcdserver: request timed out", index: index)
    }

    /// Every 500 ms, as etcd checks for expired keys: the leader proposes expiry with its cluster time as the
    /// cut-off, a revoke for each lease past its deadline, and the compaction `--auto-compaction-*` asks for.
    package mutating func expiryTick(now: Int64) -> [ReplicaAction] {
        self.now = now
        var out: [ReplicaAction] = []
        guard raft.role == .leader else { return out }
        let clusterNow = self.clusterNow
        if !expiryPending, let due = keySpace.nextExpiration, due <= clusterNow {
            expiryPending = true
            var command = StoreCommand(method: .expire)
            command.expiration = clusterNow
            submit(.command(command.encoded()), for: .expiry, into: &out)
        }
        if v3.leasesPromotedTerm == raft.term.value {
            for id in v3.leaseClock.expired(now: clusterNow) where !v3.revokesPending.contains(id) {
                v3.revokesPending.insert(id)
                submit(.mvcc(MVCCCommand.revokeLease(id: id).encoded()), for: .leaseRevoke(id), into: &out)
            }
        }
        // Read before `autoCompaction` is touched: one access to `v3` at a time.
        let revision = v3.space.revision
        if !v3.compactionPending, let due = v3.autoCompaction?.due(now: clusterNow, revision: revision) {
            v3.compactionPending = true
            submit(.mvcc(MVCCCommand.compact(revision: due).encoded()), for: .compaction(due), into: &out)
        }
        return out
    }
}

/// The reads one ReadIndex round confirms: this member's (by reader context) and, on the leader, followers' rounds.
struct ReadRound {
    var local: [UInt64] = []
    var forwarded: [ReadRequest] = []
    var deadline: Int64 = 0
    var isEmpty: Bool { local.isEmpty && forwarded.isEmpty }
}
