// One member's key space driven by Raft, on one serial queue: writes become log entries (proposed here, or forwarded
// to the leader), are made durable (one fsync per Raft batch, shared by every client waiting in it), and are applied
// in log order when committed; the applied root is published for lock-free reads. `quorum=true` reads confirm
// leadership with ReadIndex (no log write) and wait only until the applied index reaches the read index.
// TTLs and expiry follow the cluster time carried in the entries, never this machine's wall clock.
import CairnBase
import CairnMVCC
import CairnPeer
import CairnRaft
import CairnStorage
import CairnStore
import DequeModule
import Dispatch
import Glibc
import Logging
import Synchronization

package final class KeySpaceNode: @unchecked Sendable {
    /// What a read sees: an immutable root and the indexes it reflects.
    package struct View: Sendable {
        package var root: StoreNode
        /// The v3 key space, beside the v2 one (separate, as in etcd).
        package var mvcc = MVCCKeySpace()
        package var etcdIndex: UInt64
        package var raftIndex: UInt64
        package var raftTerm: UInt64
        /// Cluster time of the last applied entry, and this process's clock when it was applied (0 before any).
        var clusterTimeNanos: Int64 = 0
        var appliedAtNanos: Int64 = 0
    }

    /// Where this member stands in the cluster, for stats, health and forwarding decisions.
    package struct RaftStatus: Sendable {
        package var isLeader = false
        package var leader: UInt64?
        package var term: UInt64 = 0
        package var commit: UInt64 = 0
        package var leaderChanges = 0
        /// Raft's configuration as this member sees it.
        package var voters: [UInt64] = []
        package var learners: [UInt64] = []
        package var applied: UInt64 = 0
        /// This member's writes proposed and not yet applied or failed.
        package var pendingProposals = 0
        /// Why this member cannot write (a full disk, an I/O error, no descriptor left), while it cannot; nil when healthy.
        package var storageFailure: String?
    }

    package struct Options: Sendable {
        package var id: UInt64
        /// The initial voters; empty for a member joining an existing cluster (it learns the membership from the log).
        package var voters: [UInt64]
        /// The initial member table (names and peer URLs of the initial voters; empty when joining).
        package var members: [MemberRecord] = []
        /// What this member publishes about itself once it is in the cluster.
        package var name = "default"
        package var clientURLs: [String] = []
        package var heartbeatIntervalMilliseconds = 100
        package var electionTimeoutMilliseconds = 1000
        package var snapshotCount = 100_000
        package var historyBytesMax = 64 * 1024 * 1024
        /// The v3 key space's automatic compaction, proposed by the leader (nil: none).
        package var autoCompaction: AutoCompaction.Mode?
        /// How often v3 watchers that asked for progress notifications get one (etcd's default: 10 minutes).
        package var watchProgressNotifyIntervalMilliseconds = 600_000
        /// How long a write or a `quorum=true` read waits for its entry or read index before failing.
        package var requestTimeoutMilliseconds = 7000

        package init(id: UInt64, voters: [UInt64]) {
            self.id = id
            self.voters = voters
        }
    }

    package let queue = DispatchQueue(label: "cairn.node")
    package let metrics = ServerMetrics()
    package var id: UInt64 { options.id }
    private let clusterIDBox: Mutex<UInt64>
    /// The cluster's ID (etcd's `X-Etcd-Cluster-Id`); 0 while a joining member has not yet learned it.
    package var clusterID: UInt64 {
        get { clusterIDBox.withLock { $0 } }
        set { clusterIDBox.withLock { $0 = newValue } }
    }
    private let persistQueue = DispatchQueue(label: "cairn.persist")
    private let snapshotQueue = DispatchQueue(label: "cairn.snapshot")
    private let membersObserverQueue = DispatchQueue(label: "cairn.members")
    let clock: ClusterClock
    private let storage: Storage
    let options: Options
    private let logger = Logger(label: "cairn.node")
    private var keySpace: KeySpace
    /// The v3 side: its key space, lease deadlines, watchers and answers (KeySpaceNode+V3.swift).
    var v3: V3State
    private var sessions = ClientSessions()
    private var members: MemberTable
    /// The cluster's first configuration: from the log when it says, else from the flags (empty when joining).
    private let initialMembership: Membership
    private var publishedMembership = Membership(voters: [])
    private let publishedMembers: Mutex<MemberTable>
    private var membersChanged: @Sendable (MemberTable) -> Void = { _ in }
    private var sessionsSweptMinute: Int64 = 0
    private let hub: WatchHub
    /// Watch events are encoded and handed out there, off this queue; `hub` only collects the watchers to wake here.
    package let watchDelivery = WatchDelivery()
    private var watchersWoken: [@Sendable (EncodedWatchEvent) -> Void] = []
    var raft: RaftNode<RaftLog>
    private let log: RaftLog
    private var appliedRaftIndex: UInt64
    private(set) var appliedClusterTime: Int64 = 0
    private var snapshotIndex: UInt64
    private var snapshotInProgress = false
    /// Backups waiting for the next snapshot to be written.
    private var backupsWaiting: [@Sendable (Result<BackupFile, any Error>) -> Void] = []
    private let snapshotSendQueue = DispatchQueue(label: "cairn.snapshot-send")
    /// Followers a snapshot is being streamed to (one stream each).
    private var snapshotStreams: Set<MemberID> = []
    private var snapshotReceiver = SnapshotReceiver(fileBytesMax: 64 << 30)
    private var incomingSnapshot: ReceivedSnapshotFile?
    /// A complete incoming file is being verified; chunks meanwhile are dropped (the leader streams again).
    private var snapshotVerifying = false
    /// Verified snapshot files the core accepted, waiting for the batch that installs them.
    private var receivedSnapshotPaths: [LogIndex: String] = [:]
    static let snapshotChunkBytes = 1 << 20
    static let snapshotQueuedBytesMax = 4 << 20
    /// Set for a failure the member does not recover from by itself (installing a received snapshot failed).
    private var storageFailed = false
    /// The batch whose persist failed, waiting to be persisted again. While set nothing is acknowledged, writes and
    /// `quorum=true` reads are refused, and the core is frozen (no ticks, no peer messages) as a paused process is.
    private var stalledBatch: (ready: Ready, hardState: CairnStorage.HardState?)?
    /// The wait before the next storage retry: doubling from `storageRetryMillisecondsMin` to `storageRetryMillisecondsMax`.
    private var storageRetryMilliseconds = KeySpaceNode.storageRetryMillisecondsMin
    static let storageRetryMillisecondsMin = 100
    static let storageRetryMillisecondsMax = 5_000
    /// Why storage fails, while it does (published in `RaftStatus.storageFailure`).
    private var storageFailure: String?
    private var driveScheduled = false
    private var persisting = false
    /// Set for a member that joined with an empty data directory: votes are withheld until it has applied up to
    /// this index (`.max` until it first hears a leader).
    private var voteFloor: UInt64?
    /// The run each peer last announced (`NodeFrame.alive`).
    private var peerIncarnations: [UInt64: UInt64] = [:]
    private var ticksSinceAlive = 0
    private var announcedLeader: MemberID?
    private var stopped = false
    private var membersDirty = false
    private var attributesPending = false
    private var bootstrapPending = false
    private var savedHardState: CairnRaft.HardState
    private let published: Mutex<View>
    private let status = Mutex(RaftStatus())
    private var timers: [any DispatchSourceTimer] = []
    private var expiryPending = false
    private let statistics = Mutex(StoreStatistics())
    private var sendFrame: @Sendable (_ to: UInt64, _ channel: PeerChannel, _ frame: PeerFrame) -> Void = { _, _, _ in }
    /// Bulk frames that wait for room on the link rather than being dropped (snapshot streams).
    private var sendPaced: @Sendable (_ to: UInt64, _ frame: PeerFrame, _ queued: @escaping @Sendable (Bool) -> Void) -> Void = { _, _, queued in queued(false) }

    typealias WriteCompletion = (Result<[(event: StoreEvent, removed: RemovedNodes)], StoreError>, View) -> Void
    private typealias ReadCompletion = (Result<View, StoreError>) -> Void
    /// This run of this member, as proposals and forwarded reads name it.
    let requester: Requester
    private(set) var nextSequence: UInt64 = 1
    /// This member's proposals awaiting their entry's application, by sequence; the deque orders their deadlines.
    private(set) var writers: [UInt64: WriteCompletion] = [:]
    private var writerDeadlines: Deque<(sequence: UInt64, deadline: Int64)> = []
    /// Proposals made while no leader is known; sent when one is.
    private var unsent: [[UInt8]] = []
    private var nextReadContext: UInt64 = 1
    private var readers: [UInt64: ReadCompletion] = [:]
    private var readerDeadlines: Deque<(context: UInt64, deadline: Int64)> = []
    /// Rounds waiting for a leader to be known, by round context.
    private var unsentReads: [UInt64] = []
    /// Confirmed reads waiting for the applied index to reach their read index.
    private var readsAwaitingApply: [(index: UInt64, context: UInt64)] = []
    /// Reads (this member's, and on the leader those followers forwarded) gather here until the round that confirms
    /// them starts: every read that arrives while the queue is busy shares one ReadIndex round (one heartbeat to each
    /// follower, one frame to the leader) instead of paying for its own.
    private var nextReadRound = ReadRound()
    /// Rounds started and not yet confirmed, by round context.
    private var readRounds: [UInt64: ReadRound] = [:]

    /// Log entry kinds come from `EntryKind`; a normal entry's payload is a `Proposal` of a `StoreCommand`.
    /// Recovers from `storage`: the newest snapshot now; the log after it as Raft re-commits it.
    /// - Parameter initialIndex: where a new store index starts (etcd's own bootstrap writes come first, 2 per member + 1).
    package init(clock: ClusterClock, initialIndex: UInt64, storage: Storage, options: Options, clusterID: UInt64 = 0) throws {
        self.clock = clock
        clusterIDBox = Mutex(clusterID)
        self.storage = storage
        self.options = options
        var random = SystemRandomNumberGenerator()
        requester = Requester(member: options.id, incarnation: random.next())
        hub = WatchHub(historyBytesMax: options.historyBytesMax)
        keySpace = KeySpace(initialIndex: initialIndex)
        v3 = V3State(minimumLeaseTTL: Self.minimumLeaseTTL(options), autoCompaction: options.autoCompaction.map(AutoCompaction.init))
        // A restart without snapshots takes the initial members from the log's first member entry, not from the flags
        // (which change as members come and go): Raft's initial configuration and the store's first index follow it.
        let logged = try Self.loggedInitialMembers(storage.writer)
        initialMembership = Membership(voters: (logged?.map(\.id) ?? options.voters).map(MemberID.init))
        members = MemberTable(logged ?? options.members)
        if let logged { keySpace = KeySpace(initialIndex: Self.storeInitialIndex(memberCount: logged.count)) }
        let initial = initialMembership
        let snapshots = try storage.snapshots()
        // Raft counts on from a snapshot's index: one near 2^64 (a crafted file) would overflow at the next entry.
        if let huge = snapshots.first(where: { $0.lastIndex > RaftLimits.indexMax }) {
            throw StorageError.corrupt(path: huge.path, offset: 0, index: huge.lastIndex, reason: "snapshot index beyond Raft's bound \(RaftLimits.indexMax)")
        }
        if let newest = snapshots.last {
            let loaded = try Self.loadSnapshot(fs: storage.fs, path: newest.path)
            keySpace = loaded.keySpace
            sessions = loaded.sessions
            members = loaded.members
            appliedRaftIndex = loaded.header.lastIndex
            appliedClusterTime = Int64(bitPattern: loaded.header.clusterTimeNanos)
            v3.restore(loaded.mvcc, at: appliedClusterTime)
        } else {
            appliedRaftIndex = 0
        }
        snapshotIndex = appliedRaftIndex
        // The log starts after the oldest snapshot kept whose next entry the log still holds, so a follower a little
        // behind the newest snapshot still catches up from the log rather than by a whole snapshot.
        let walFirst = try storage.writer.withLog { $0.firstIndex }
        var base = SnapshotMetadata.none
        if let oldest = snapshots.first(where: { $0.lastIndex + 1 >= walFirst }) {
            base = try Self.metadata(of: try Self.header(fs: storage.fs, path: oldest.path), initial: initial)
        }
        let logger = self.logger
        log = try RaftLog(writer: storage.writer, snapshot: base) { error in
            logger.critical("the log cannot be read; stopping", metadata: ["error": "\(error)"])
            fatalError("log read failed: \(error)")
        }
        let recovered = storage.recoveredHardState
        // Raft would trap on the `+ 1` of a term this large (one forged heartbeat used to leave one on disk).
        guard recovered.term <= RaftLimits.termMax, recovered.commit <= RaftLimits.indexMax, log.lastIndex.value <= RaftLimits.indexMax else {
            throw StorageError.corrupt(path: storage.directory + "/hardstate", offset: 0, index: log.lastIndex.value,
                                       reason: "term \(recovered.term), commit \(recovered.commit) or last index \(log.lastIndex.value) is beyond Raft's bound \(RaftLimits.termMax)")
        }
        savedHardState = CairnRaft.HardState(term: Term(recovered.term), vote: recovered.vote == 0 ? nil : MemberID(recovered.vote),
                                             commit: LogIndex(max(recovered.commit, appliedRaftIndex)))
        var config = RaftConfig(id: MemberID(options.id), voters: initialMembership.voters, randomSeed: options.id ^ UInt64(bitPattern: clock.now()))
        config.heartbeatIntervalTicks = 1
        config.electionTimeoutTicks = max(2, options.electionTimeoutMilliseconds / max(1, options.heartbeatIntervalMilliseconds))
        raft = RaftNode(config: config, storage: log, hardState: savedHardState)
        if options.voters.isEmpty && appliedRaftIndex == 0 && log.lastIndex == .zero { voteFloor = .max }
        publishedMembers = Mutex(members)
        published = Mutex(View(root: keySpace.root, mvcc: v3.space, etcdIndex: keySpace.currentIndex, raftIndex: appliedRaftIndex,
                               raftTerm: recovered.term, clusterTimeNanos: appliedClusterTime, appliedAtNanos: clock.now()))
    }

    /// Connects the node to its peers: frames go out through `send` (or `sendPaced`, which waits for room on the bulk
    /// channel and says whether the frame was queued); frames in arrive through `receive`.
    package func connect(send: @escaping @Sendable (_ to: UInt64, _ channel: PeerChannel, _ frame: PeerFrame) -> Void,
                         sendPaced: @escaping @Sendable (_ to: UInt64, _ frame: PeerFrame, _ queued: @escaping @Sendable (Bool) -> Void) -> Void) {
        queue.sync {
            sendFrame = send
            self.sendPaced = sendPaced
        }
    }

    package func start() {
        queue.async { [self] in
            raft.observe(monotonicNanos: UInt64(clamping: clock.now()))
            // A lone voter need not wait out an election timeout to lead itself.
            if initialMembership.voters == [MemberID(options.id)] && raft.voters == [MemberID(options.id)] { raft.campaign() }
            scheduleDrive()
        }
        let tick = DispatchSource.makeTimerSource(queue: queue)
        let interval = DispatchTimeInterval.milliseconds(options.heartbeatIntervalMilliseconds)
        tick.schedule(deadline: .now() + interval, repeating: interval)
        tick.setEventHandler { [unowned self] in onTick() }
        tick.resume()
        // etcd checks for expired keys every 500 ms; so does the leader, through a logged expire command.
        let expiry = DispatchSource.makeTimerSource(queue: queue)
        expiry.schedule(deadline: .now() + .milliseconds(500), repeating: .milliseconds(500))
        expiry.setEventHandler { [unowned self] in
            proposeExpiryIfDue()
            proposeLeaseRevokesIfDue()
            proposeCompactionIfDue()
            notifyWatchProgressIfDue()
        }
        expiry.resume()
        timers = [tick, expiry]
    }

    /// Stops ticking and taking batches, and waits for storage work in flight; the storage may be closed after.
    package func stop() {
        queue.sync {
            stopped = true
            for timer in timers { timer.cancel() }
            timers = []
        }
        persistQueue.sync {}
        snapshotQueue.sync {}
        snapshotSendQueue.sync {}
    }

    /// A lone voter re-commits its whole log at once on start; a member with peers applies up to the commit index it
    /// recorded. Waiting for that (bounded) before serving keeps every write this member knew was committed readable
    /// the moment it answers again, leader or not (its plain reads may be stale until it hears from the leader, as
    /// etcd's are).
    package func awaitRecovery(timeoutMilliseconds: Int = 30_000) {
        let target = queue.sync { raft.voters == [MemberID(options.id)] ? log.lastIndex.value : raft.commit.value }
        for _ in 0..<(timeoutMilliseconds / 5) where view().raftIndex < target {
            usleep(5_000)
        }
    }

    /// The latest applied state; safe from any thread.
    package func view() -> View { published.withLock { $0 } }

    package var raftStatus: RaftStatus { status.withLock { $0 } }

    /// Gauges for `/metrics`, etcd's names where etcd has one.
    package var metricGauges: [(String, String, Double)] {
        let s = raftStatus
        return [
            ("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", s.leader == nil ? 0 : 1),
            ("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", s.isLeader ? 1 : 0),
            ("etcd_server_leader_changes_seen_total", "The number of leader changes seen.", Double(s.leaderChanges)),
            ("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.", Double(s.commit)),
            ("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.", Double(s.applied)),
            ("etcd_server_proposals_pending", "The current number of pending proposals to commit.", Double(s.pendingProposals)),
            ("etcd_debugging_store_watchers", "Count of currently active watchers.", Double(watcherCount)),
            ("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", Double(v3WatcherCount)),
            ("cairn_raft_term", "The Raft term this member is in.", Double(s.term)),
            ("cairn_raft_apply_lag_entries", "Committed entries this member has not applied yet.", Double(s.commit &- min(s.commit, s.applied))),
            ("cairn_raft_voters", "Voters in Raft's configuration as this member sees it.", Double(s.voters.count)),
            ("cairn_raft_learners", "Learners in Raft's configuration as this member sees it.", Double(s.learners.count)),
            ("cairn_storage_failing", "1 while this member cannot write (a full disk, an I/O error, no descriptor left) and refuses writes; 0 otherwise.",
             s.storageFailure == nil ? 0 : 1),
        ]
    }

    /// Cluster time now, as this member estimates it: the last applied entry's time advanced by the monotonic
    /// clock since. Before any entry is applied, this process's clock.
    package var now: Int64 {
        let view = view()
        let local = clock.now()
        guard view.clusterTimeNanos != 0 else { return local }
        return view.clusterTimeNanos + max(0, local - view.appliedAtNanos)
    }

    package var storeStatistics: StoreStatistics {
        var counted = statistics.withLock { $0 }
        counted.watchers = watcherCount
        return counted
    }

    package func countRead(succeeded: Bool) {
        statistics.withLock { succeeded ? ($0.getsSuccess += 1) : ($0.getsFail += 1) }
    }

    /// etcd writes two entries per member and the cluster version into its store before any client write.
    static func storeInitialIndex(memberCount: Int) -> UInt64 { UInt64(2 * max(1, memberCount) + 1) }

    /// The members of the log's bootstrap entry, when the log still starts at its first entry (no snapshot yet).
    private static func loggedInitialMembers(_ writer: GroupCommitWriter) throws -> [MemberRecord]? {
        let records = try writer.withLog { wal -> [LogEntryRecord] in
            guard wal.firstIndex == 1, wal.lastIndex >= 1 else { return [] }
            return try wal.entries(1..<(min(wal.lastIndex, 16) + 1))
        }
        for record in records {
            if let kind = EntryKind(rawValue: record.kind), let proposal = try? Proposal(decoding: record.payload, kind: kind),
               case .member(.bootstrap(let members)) = proposal.body {
                return members
            }
        }
        return nil
    }

    // MARK: - Snapshot files

    /// A snapshot file's key space and sessions; its body checksum is checked before any of it is used.
    static func loadSnapshot(fs: FileSystem, path: String)
        throws -> (keySpace: KeySpace, sessions: ClientSessions, members: MemberTable, mvcc: MVCCKeySpace, header: SnapshotHeader)
    {
        let reader = try SnapshotReader(fs: fs, path: path)
        defer { reader.close() }
        var source = SnapshotChunks(reader: reader)
        let (root, index) = try TreeSnapshot.read(from: &source)
        let sessions = try ClientSessions.read(from: &source)
        let members = try MemberTable.read(from: &source)
        // Snapshots written before v3 end here: they load with an empty v3 key space.
        let mvcc = try source.isAtEnd() ? MVCCKeySpace() : try Self.readMVCCSection(from: &source)
        guard try source.isAtEnd() else {
            throw StorageError.corrupt(path: path, offset: 0, index: reader.header.lastIndex, reason: "bytes after the v3 key space")
        }
        return (KeySpace(root: root, currentIndex: index), sessions, members, mvcc, reader.header)
    }

    private static func header(fs: FileSystem, path: String) throws -> SnapshotHeader {
        let reader = try SnapshotReader(fs: fs, path: path)
        defer { reader.close() }
        return reader.header
    }

    /// What the core knows of a snapshot file; a file without membership (none was recorded) has the initial one.
    private static func metadata(of header: SnapshotHeader, initial: Membership) throws -> SnapshotMetadata {
        SnapshotMetadata(index: LogIndex(header.lastIndex), term: Term(header.lastTerm), clusterTimeNanos: header.clusterTimeNanos,
                         membership: header.membership.isEmpty ? initial : try Membership(decoding: header.membership))
    }

    // MARK: - Writes

    /// Replicates a write, applies it in log order, and calls `completion` (on the node queue) with the outcome and
    /// the view right after it. Fails with etcd's timeout error if its entry is not applied within the request timeout.
    /// With a `session`, a retry of the same request is answered as the first attempt was and applied only once.
    package func propose(_ command: StoreCommand, session: SessionRequest? = nil,
                         completion: @escaping @Sendable (Result<StoreEvent, StoreError>, View) -> Void) {
        queue.async { [self] in
            submit(command, session: session) { result, view in completion(result.map { $0[0].event }, view) }
        }
    }

    private func submit(_ command: StoreCommand, session: SessionRequest? = nil, completion: @escaping WriteCompletion) {
        submit(.command(command.encoded()), session: session, completion: completion)
    }

    func submit(_ body: Proposal.Body, session: SessionRequest? = nil, completion: @escaping WriteCompletion) {
        if let failure = storageUnavailable() { return completion(.failure(failure), view()) }
        let sequence = nextSequence
        nextSequence += 1
        writers[sequence] = completion
        writerDeadlines.append((sequence, clock.now() + Int64(options.requestTimeoutMilliseconds) * 1_000_000))
        route(Proposal(origin: requester, sequence: sequence, session: session, body: body).encoded())
        scheduleDrive()
    }

    /// A proposal goes into the log here when this member leads, to the leader when one is known, or waits for one.
    private func route(_ proposal: [UInt8]) {
        raft.observe(monotonicNanos: UInt64(clamping: clock.now()))
        // The initial members go into the log before anything else a leader appends (see `MemberChange.bootstrap`).
        if raft.role == .leader, !members.isLogged, !bootstrapPending { logInitialMembers() }
        if raft.propose(proposal) { return }
        if let leader = raft.leader, leader.value != options.id {
            sendFrame(leader.value, .bulk, PeerFrame(type: NodeFrame.propose, payload: proposal))
        } else {
            unsent.append(proposal)
        }
    }

    // MARK: - Members

    /// The member table as last applied; safe from any thread.
    package var memberTable: MemberTable { publishedMembers.withLock { $0 } }

    /// Called (in order, off the node queue) with the new table whenever an applied entry or an installed snapshot
    /// changes it, and once at once with the current one: the server points the transport at the members.
    package func onMembersChanged(_ observer: @escaping @Sendable (MemberTable) -> Void) {
        let observers = membersObserverQueue
        queue.sync {
            membersChanged = { table in observers.async { observer(table) } }
            membersChanged(members)
        }
    }

    /// Replicates a change to the member table; `completion` runs on the node queue once it is applied (or failed).
    /// Raft's configuration follows the table: the leader adds new members as learners, promotes them once they have
    /// caught up and removes members no longer listed (itself included), one change at a time.
    func proposeMemberChange(_ change: MemberChange, completion: @escaping @Sendable (Result<MemberTable, StoreError>) -> Void) {
        queue.async { [self] in
            submit(.member(change)) { [self] result, _ in completion(result.map { _ in members }) }
        }
    }

    private func setMembers(_ table: MemberTable) {
        members = table
        publishedMembers.withLock { $0 = table }
        membersChanged(table)
    }

    /// On the leader, every tick: log the initial members once, then move Raft's configuration one step towards the
    /// member table. Every member also publishes its own name and client URLs until the table shows them.
    private func reconcileMembership() {
        if let mine = members.members[options.id], mine.name != options.name || mine.clientURLs != options.clientURLs,
           !attributesPending, raft.leader != nil {
            attributesPending = true
            submit(.member(.attributes(id: options.id, name: options.name, clientURLs: options.clientURLs))) { [self] _, _ in
                attributesPending = false
            }
        }
        guard raft.role == .leader else { return }
        if !members.isLogged {
            if !bootstrapPending { logInitialMembers() }
            return
        }
        let wanted = Set(members.members.keys.map(MemberID.init))
        let current = raft.membership
        if let gone = current.members.first(where: { !wanted.contains($0) }) {
            raft.proposeConfigChange(ConfigChange(.remove, gone))
        } else if let new = wanted.sorted().first(where: { !current.contains($0) }) {
            raft.proposeConfigChange(ConfigChange(.addLearner, new))
        } else if let ready = current.learners.first(where: { (raft.progress[$0]?.match.value ?? 0) + Self.learnerLagEntriesMax >= raft.commit.value }) {
            raft.proposeConfigChange(ConfigChange(.addVoter, ready))
        }
    }

    private func logInitialMembers() {
        bootstrapPending = true
        submit(.member(.bootstrap(members.sorted))) { [self] _, _ in bootstrapPending = false }
    }

    /// A learner this close to the leader's commit index votes from then on.
    static let learnerLagEntriesMax: UInt64 = 64

    // MARK: - Linearizable reads

    /// Calls `completion` (on the node queue) with a view at least as new as every write acknowledged before the call:
    /// the leader confirms it still leads (ReadIndex, a heartbeat round and no log entry), then this member waits until
    /// it has applied the read index.
    package func linearizableRead(completion: @escaping @Sendable (Result<View, StoreError>) -> Void) {
        queue.async { [self] in
            if let failure = storageUnavailable() { return completion(.failure(failure)) }
            let context = nextReadContext
            nextReadContext += 1
            readers[context] = completion
            readerDeadlines.append((context, clock.now() + Int64(options.requestTimeoutMilliseconds) * 1_000_000))
            nextReadRound.local.append(context)
            scheduleDrive()
        }
    }

    /// Starts a round for the reads gathered since the last one; runs in the scheduled drive, so the reads that
    /// arrived in the blocks queued before it share the round.
    private func startReadRound() {
        guard !nextReadRound.isEmpty else { return }
        var round = nextReadRound
        nextReadRound = ReadRound()
        let context = nextReadContext
        nextReadContext += 1
        round.deadline = clock.now() + Int64(options.requestTimeoutMilliseconds) * 1_000_000
        readRounds[context] = round
        routeRead(context)
    }

    private func routeRead(_ context: UInt64) {
        if raft.readIndex(context: context) { return }
        if let leader = raft.leader, leader.value != options.id {
            let request = ReadRequest(requester: requester, context: context)
            sendFrame(leader.value, .control, PeerFrame(type: NodeFrame.readIndex, payload: request.encoded()))
        } else {
            unsentReads.append(context)
        }
    }

    /// A round's read index is known: followers that forwarded reads to it learn it, this member's reads wait for it.
    private func readRoundConfirmed(context: UInt64, index: UInt64) {
        guard let round = readRounds.removeValue(forKey: context) else { return }
        for request in round.forwarded {
            sendFrame(request.requester.member, .control, PeerFrame(type: NodeFrame.readIndexReady, payload: request.encoded(index: index)))
        }
        for reader in round.local { readConfirmed(context: reader, index: index) }
    }

    private func readConfirmed(context: UInt64, index: UInt64) {
        guard readers[context] != nil else { return }
        if index <= appliedRaftIndex {
            readers.removeValue(forKey: context)?(.success(view()))
        } else {
            readsAwaitingApply.append((index, context))
        }
    }

    // MARK: - Peers

    /// A frame from a peer; runs on the node queue (the transport delivers there). Returns false, and changes
    /// nothing, for a frame that fails `PeerInput`'s checks: the transport then closes the link it came on.
    @discardableResult
    package func receive(from peer: UInt64, frame: PeerFrame) -> Bool {
        dispatchPrecondition(condition: .onQueue(queue))
        guard stalledBatch == nil else { return true }
        let input: PeerInput
        do { input = try PeerInput(frame: frame, from: peer, localID: options.id) } catch {
            metrics.count("cairn_peer_frames_refused_total")
            logger.warning("refused a peer frame; closing the link", metadata: ["type": "\(frame.type)", "from": "\(hex(peer))", "error": "\(error)"])
            return false
        }
        switch input {
        case .raft(let message):
            if let floor = voteFloor {
                if message.kind == .append || message.kind == .heartbeat, floor == .max { voteFloor = message.commit.value }
                // A member that joined with an empty disk has acknowledged nothing it still holds: it takes no
                // part in elections until it has applied what was committed when it first heard the leader.
                if message.kind == .vote || message.kind == .preVote { return true }
            }
            raft.step(message)
        case .proposal(let bytes):
            route(bytes)
        case .readIndex(let request):
            if raft.role == .leader { nextReadRound.forwarded.append(request) }
        case .alive(let incarnation):
            if peerIncarnations.updateValue(incarnation, forKey: peer) != incarnation {
                raft.restartReplication(to: MemberID(peer))
            }
        case .readIndexReady(let request, let index):
            // An answer meant for an earlier run of this member concerns a read that no longer exists.
            if request.requester == requester { readRoundConfirmed(context: request.context, index: index) }
        }
        scheduleDrive()
        return true
    }

    private func send(_ message: Message) {
        let channel: PeerChannel = message.kind == .append && !message.entries.isEmpty ? .bulk : .control
        sendFrame(message.to.value, channel, PeerFrame(type: NodeFrame.raft, payload: message.encoded()))
    }

    // MARK: - The Raft loop

    private func onTick() {
        guard stalledBatch == nil else { return expireRequests() }
        raft.tick(monotonicNanos: UInt64(clamping: clock.now()))
        if raft.leader != nil {
            let proposals = unsent, reads = unsentReads
            unsent = []
            unsentReads = []
            for proposal in proposals { route(proposal) }
            for context in reads { routeRead(context) }
        }
        expireRequests()
        ticksSinceAlive += 1
        // Once per election timeout, and at once to a new leader (a joiner may know no other member yet).
        let leaderChanged = raft.leader != announcedLeader
        if leaderChanged || ticksSinceAlive >= max(1, options.electionTimeoutMilliseconds / max(1, options.heartbeatIntervalMilliseconds)) {
            ticksSinceAlive = 0
            announcedLeader = raft.leader
            var writer = ByteWriter(capacity: 8)
            writer.u64(requester.incarnation)
            var peers = Set(members.members.keys)
            if let leader = raft.leader { peers.insert(leader.value) }
            for peer in peers where peer != options.id {
                sendFrame(peer, .control, PeerFrame(type: NodeFrame.alive, payload: writer.bytes))
            }
        }
        reconcileMembership()
        scheduleDrive()
    }

    /// Fails writes and reads that outlived the request timeout, as etcd does (its answer may still be applied later).
    private func expireRequests() {
        let now = clock.now()
        while let first = writerDeadlines.first, first.deadline <= now {
            writerDeadlines.removeFirst()
            if let writer = writers.removeValue(forKey: first.sequence) {
                metrics.count("etcd_server_proposals_failed_total")
                writer(.failure(Self.timedOut(keySpace.currentIndex)), view())
            }
        }
        while let first = readerDeadlines.first, first.deadline <= now {
            readerDeadlines.removeFirst()
            readers.removeValue(forKey: first.context)?(.failure(Self.timedOut(keySpace.currentIndex)))
        }
        // A round the leader never confirmed (it lost leadership) is forgotten once its reads would have timed out.
        if readRounds.contains(where: { $0.value.deadline <= now }) { readRounds = readRounds.filter { $0.value.deadline > now } }
        if readers.isEmpty {
            readsAwaitingApply.removeAll()
            unsentReads.removeAll()
        }
        if writers.isEmpty { unsent.removeAll() }
    }

    private static func timedOut(_ index: UInt64) -> StoreError {
        StoreError(.raftInternal, "etcdserver: request timed out", index: index)
    }

    /// Drives once the blocks already queued have run, so what they bring (proposals, acknowledgements, reads) goes
    /// into one batch and one ReadIndex round rather than one each.
    private func scheduleDrive() {
        guard !driveScheduled else { return }
        driveScheduled = true
        queue.async { [self] in
            driveScheduled = false
            startReadRound()
            drive()
        }
    }

    /// Takes the core's next batch: sends what may go now, applies what is committed and answers confirmed reads,
    /// persists, then (back on this queue) sends what waited for the persist and acknowledges the batch. One batch at
    /// a time: proposals arriving during a persist gather into the next batch, so its fsync covers all of them.
    private func drive() {
        guard !persisting, !storageFailed, stalledBatch == nil, !stopped, raft.hasReady else { return publishStatus() }
        let ready = raft.ready()
        if let snapshot = ready.snapshot {
            do { try installSnapshot(snapshot) } catch { return storageFailed(error) }
        }
        for message in ready.messages { send(message) }
        for request in ready.snapshotsToSend { streamSnapshot(request) }
        for chunk in ready.snapshotChunks { receiveSnapshotChunk(chunk) }
        // Committed entries are already durable here, so they are applied (and their writers answered) without
        // waiting for this batch's own persist: a write's answer never waits behind the fsync of later writes.
        apply(ready.committedEntries)
        for state in ready.readStates { readRoundConfirmed(context: state.context, index: state.index.value) }
        // Term and vote must be durable before a vote or an acknowledgement leaves; commit need not be (it is
        // learned again from the leader; `finish` records it without an fsync), so a batch that only moves commit
        // costs no extra fsync.
        let hardState = ready.hardState.flatMap { h in
            h.term != savedHardState.term || h.vote != savedHardState.vote
                ? CairnStorage.HardState(term: h.term.value, vote: h.vote?.value ?? 0, commit: h.commit.value) : nil
        }
        guard !ready.entries.isEmpty || hardState != nil else { return finish(ready) }
        // A follower persists off this queue, so it keeps forwarding new writes to the leader and confirming reads
        // while its disk works (a snapshot's fsync on the same disk can stall it for tens of milliseconds). The
        // leader persists here: what reaches it meanwhile could only join its next batch anyway, and not hopping to
        // a storage thread and back saves two thread wake-ups per batch on the write path.
        if raft.role == .leader {
            do { try persist(ready.entries, hardState: hardState) } catch { return persistFailed(ready, hardState: hardState, error: error) }
            return persisted(ready, savedHardState: hardState != nil)
        }
        persisting = true
        persistQueue.async { [self] in
            do {
                try persist(ready.entries, hardState: hardState)
                queue.async { [self] in persisted(ready, savedHardState: hardState != nil) }
            } catch {
                queue.async { [self] in persistFailed(ready, hardState: hardState, error: error) }
            }
        }
    }

    /// Makes a batch's entries and changed hard state durable; runs on the node queue or the persist queue.
    private func persist(_ entries: [Entry], hardState: CairnStorage.HardState?) throws {
        let started = clock.now()
        try RaftLog.write(entries, to: storage.writer)
        if !entries.isEmpty { metrics.walFsync.observe(seconds: Double(clock.now() - started) / 1e9) }
        if let hardState { try storage.saveHardState(hardState) }
    }

    private func persisted(_ ready: Ready, savedHardState saved: Bool) {
        if saved, let h = ready.hardState { savedHardState = h }
        log.didPersist(ready.entries)
        persisting = false
        finish(ready)
    }

    /// The rest of a batch, once its persist is durable.
    private func finish(_ ready: Ready) {
        // Every entry through the commit index is durable here, so it is recorded (no fsync of its own): a member
        // restarted while no leader can be reached applies and serves what it knew was committed.
        if let h = ready.hardState { storage.recordCommit(min(h.commit.value, log.lastIndex.value)) }
        for message in ready.messagesAfterPersist { send(message) }
        raft.advance(ready)
        // After advance: the core describes snapshots only up to what it knows is applied.
        if !ready.committedEntries.isEmpty { snapshotIfDue() }
        drive()
    }

    private func storageFailed(_ error: Error) {
        storageFailed = true
        storageFailure = "\(Self.describe(error)); refused until restart"
        persisting = false
        logger.critical("storage failed; this member stops taking part until restarted", metadata: ["error": "\(error)"])
        publishStatus()
        failWaitingRequests()
    }

    /// A batch's persist failed (a full disk, an I/O error, no descriptor left): nothing more is acknowledged, the
    /// requests waiting are failed, and the same batch is persisted again after a growing delay, until it succeeds.
    private func persistFailed(_ ready: Ready, hardState: CairnStorage.HardState?, error: Error) {
        persisting = false
        if stalledBatch == nil {
            logger.critical("storage failed; writes are refused while it is retried", metadata: ["error": "\(error)"])
            metrics.count("cairn_storage_failures_total")
        } else {
            logger.warning("storage still fails", metadata: ["error": "\(error)", "retry in ms": "\(storageRetryMilliseconds)"])
        }
        stalledBatch = (ready, hardState)
        storageFailure = "\(Self.describe(error)); retrying"
        publishStatus()
        failWaitingRequests()
        let delay = storageRetryMilliseconds
        storageRetryMilliseconds = min(2 * delay, Self.storageRetryMillisecondsMax)
        queue.asyncAfter(deadline: .now() + .milliseconds(delay)) { [self] in retryStalledBatch() }
    }

    /// Brings the log back to what is durable (`Storage.recover`: whatever a failed write or fsync left is cut off,
    /// never trusted) and persists the stalled batch again; off the node queue, as recovery re-reads the log.
    private func retryStalledBatch() {
        guard let (ready, hardState) = stalledBatch, !stopped else { return }
        persistQueue.async { [self] in
            do {
                try storage.recover()
                try persist(ready.entries, hardState: hardState)
                queue.async { [self] in
                    logger.notice("storage recovered; writes are taken again")
                    stalledBatch = nil
                    storageFailure = nil
                    storageRetryMilliseconds = Self.storageRetryMillisecondsMin
                    persisted(ready, savedHardState: hardState != nil)
                }
            } catch {
                queue.async { [self] in persistFailed(ready, hardState: hardState, error: error) }
            }
        }
    }

    /// The answer to a write or `quorum=true` read while storage fails: etcd's shape, the reason in the cause.
    private func storageUnavailable() -> StoreError? {
        storageFailure.map { StoreError(.raftInternal, "etcdserver: storage unavailable: \($0)", index: keySpace.currentIndex) }
    }

    private func failWaitingRequests() {
        guard let failure = storageUnavailable() else { return }
        for (_, completion) in writers { completion(.failure(failure), view()) }
        writers = [:]
        writerDeadlines = []
        for (_, completion) in readers { completion(.failure(failure)) }
        readers = [:]
        readerDeadlines = []
    }

    /// The system's words for a failed call (errno), else the error itself.
    private static func describe(_ error: Error) -> String {
        if case StorageError.io(let operation, _, let code) = error { return "\(String(cString: strerror(code))) (\(operation))" }
        return "\(error)"
    }

    /// Runs after every batch: the configuration is copied out only when it changed.
    private func publishStatus() {
        let leader = raft.leader?.value
        let membershipChanged = raft.membership != publishedMembership
        if membershipChanged { publishedMembership = raft.membership }
        status.withLock {
            if $0.leader != leader && leader != nil { $0.leaderChanges += 1 }
            $0.leader = leader
            $0.isLeader = raft.role == .leader
            $0.term = raft.term.value
            $0.commit = raft.commit.value
            if membershipChanged {
                $0.voters = raft.voters.map(\.value)
                $0.learners = raft.learners.map(\.value)
            }
            $0.applied = appliedRaftIndex
            $0.pendingProposals = writers.count
            $0.storageFailure = storageFailure
        }
    }

    // MARK: - Applying

    /// Applies committed entries in order (skipping those a snapshot already holds), publishes the new root once,
    /// then wakes watchers and answers this member's writers.
    private func apply(_ entries: [Entry]) {
        var answered: [(WriteCompletion, Result<[(event: StoreEvent, removed: RemovedNodes)], StoreError>)] = []
        var events: [(event: StoreEvent, removed: RemovedNodes)] = []
        let v3RevisionBefore = v3.space.revision
        for entry in entries where entry.index.value > appliedRaftIndex {
            appliedRaftIndex = entry.index.value
            appliedClusterTime = Int64(bitPattern: entry.clusterTimeNanos)
            promoteLeasesIfLeading(entryTerm: entry.term.value)
            guard entry.kind == .normal || entry.kind == .unversioned else { continue }
            // An entry that cannot be decoded (a newer binary's, or damage that got past the checks) is a no-op on
            // every member alike: the same bytes fail the same way everywhere, so the replicas still agree.
            guard let (proposal, command) = decodeCommitted(entry) else { continue }
            let result: Result<[(event: StoreEvent, removed: RemovedNodes)], StoreError>
            switch proposal.body {
            case .member(let change):
                if case .bootstrap(let records) = change, !members.isLogged {
                    // Nothing precedes this entry but noops, so the store is still empty: it starts where etcd's would
                    // for this many members (a joiner learns it here).
                    keySpace = KeySpace(initialIndex: Self.storeInitialIndex(memberCount: records.count))
                }
                members.apply(change)
                membersDirty = true
                result = .success([])
            case .mvcc(let bytes):
                applyV3(bytes, proposal: proposal, index: entry.index.value)
                result = .success([])
            case .command:
                guard let command else { continue }
                let isReplay: Bool
                (result, isReplay) = applyOnce(command, session: proposal.session)
                if !isReplay {
                    statistics.withLock {
                        if command.method == .expire {
                            $0.expireCount += (try? result.get().count) ?? 0
                        } else {
                            $0.count(command, succeeded: (try? result.get()) != nil)
                        }
                    }
                    if case .success(let applied) = result { events += applied }
                }
            }
            if proposal.origin == requester, let completion = writers.removeValue(forKey: proposal.sequence) {
                answered.append((completion, result))
            }
        }
        guard !entries.isEmpty else { return }
        if let floor = voteFloor, floor != .max, appliedRaftIndex >= floor { voteFloor = nil }
        if membersDirty {
            membersDirty = false
            setMembers(members)
        }
        let view = publish()
        for (event, removed) in events {
            hub.notify(event, removedPaths: removed)
            guard !watchersWoken.isEmpty else { continue }
            watchDelivery.deliver(event, to: watchersWoken)
            watchersWoken.removeAll()
        }
        for (completion, result) in answered { completion(result, view) }
        deliverV3Watches(since: v3RevisionBefore)
        if !readsAwaitingApply.isEmpty {
            var waiting: [(index: UInt64, context: UInt64)] = []
            for read in readsAwaitingApply {
                if read.index <= appliedRaftIndex { readers.removeValue(forKey: read.context)?(.success(view)) } else { waiting.append(read) }
            }
            readsAwaitingApply = waiting
        }
    }

    /// A committed entry's proposal and, for a command, the command; nil (logged and counted) when either cannot be
    /// decoded, and the entry is then applied as a no-op.
    private func decodeCommitted(_ entry: Entry) -> (Proposal, StoreCommand?)? {
        do {
            let proposal = try Proposal(decoding: entry.data, kind: entry.kind)
            guard case .command(let bytes) = proposal.body else { return (proposal, nil) }
            let command = try StoreCommand(decoding: bytes)
            guard Proposal.isApplicable(command) else { throw TreeSnapshotError.malformed("a write with a negative TTL or expiration") }
            return (proposal, command)
        } catch {
            metrics.count("cairn_entries_undecodable_total")
            logger.error("a committed entry cannot be decoded; applied as a no-op", metadata: ["index": "\(entry.index)", "error": "\(error)"])
            return nil
        }
    }

    /// Applies a command unless its session already has the answer; records the answer for a retry.
    /// `isReplay` marks an answer given again: nothing changed, so there is nothing to count or notify.
    private func applyOnce(_ command: StoreCommand, session: SessionRequest?)
        -> (result: Result<[(event: StoreEvent, removed: RemovedNodes)], StoreError>, isReplay: Bool)
    {
        // Sessions idle for an hour of cluster time go, swept once per cluster-time minute (the same on every member).
        let minute: Int64 = 60_000_000_000
        if appliedClusterTime / minute != sessionsSweptMinute {
            sessionsSweptMinute = appliedClusterTime / minute
            sessions.expire(at: appliedClusterTime)
        }
        guard let session, command.method != .expire else { return (Self.apply(command, to: &keySpace, at: appliedClusterTime), false) }
        switch sessions.lookup(client: session.client, request: session.request) {
        case .answered(let answer):
            return (answer.map { [($0, .none)] }, true)
        case .forgotten:
            let cause = "session \(session.client): request \(session.request) is older than the answers kept"
            return (.failure(StoreError(.raftInternal, cause, index: keySpace.currentIndex)), true)
        case .new:
            let result = Self.apply(command, to: &keySpace, at: appliedClusterTime)
            sessions.record(client: session.client, request: session.request, result: result.map { $0[0].event }, at: appliedClusterTime)
            return (result, false)
        }
    }

    /// Applies one logged command: a write (one event), or the expiry of everything due by its cut-off (any number).
    private static func apply(_ command: StoreCommand, to keySpace: inout KeySpace, at time: Int64)
        -> Result<[(event: StoreEvent, removed: RemovedNodes)], StoreError>
    {
        guard command.method == .expire else { return keySpace.apply(command.resolvingTTL(at: time), now: time).map { [$0] } }
        return .success(keySpace.expire(upTo: command.expiration))
    }

    package func watch(path: StoreKey, recursive: Bool, stream: Bool, sinceIndex: UInt64,
                       deliver: @escaping @Sendable (EncodedWatchEvent) -> Void,
                       registered: @escaping @Sendable (Result<WatchHub.WatcherID?, StoreError>, View) -> Void) {
        queue.async { [self] in
            let view = published.withLock { $0 }
            var fromHistory: [StoreEvent] = []
            var isRegistered = false
            let result = hub.watch(path: path, recursive: recursive, stream: stream, sinceIndex: sinceIndex,
                                   currentIndex: keySpace.currentIndex) { [unowned self] event in
                if isRegistered { watchersWoken.append(deliver) } else { fromHistory.append(event) }
            }
            registered(result, view)
            isRegistered = true
            for event in fromHistory { watchDelivery.deliver(event, to: [deliver]) }
        }
    }

    package func cancelWatch(_ id: WatchHub.WatcherID) {
        queue.async { [self] in hub.remove(id) }
    }

    package var watcherCount: Int { queue.sync { hub.watcherCount } }

    /// The leader alone proposes expiry, with its cluster time as the cut-off; every member applies it at the same index.
    private func proposeExpiryIfDue() {
        let now = self.now
        guard raft.role == .leader, !expiryPending, let due = keySpace.nextExpiration, due <= now else { return }
        expiryPending = true
        var command = StoreCommand(method: .expire)
        command.expiration = now
        submit(command) { [self] _, _ in expiryPending = false }
    }

    /// Every `snapshotCount` entries, or sooner for a waiting backup.
    private func snapshotIfDue() {
        if appliedRaftIndex - snapshotIndex >= UInt64(max(1, options.snapshotCount)) || !backupsWaiting.isEmpty { takeSnapshot() }
    }

    /// Streams the current root into a snapshot file off the node queue, then lets storage drop the snapshots and log
    /// segments no longer needed, and the core's log start after the oldest kept. Backups waiting get the new file.
    private func takeSnapshot() {
        guard !snapshotInProgress, let metadata = raft.snapshotMetadata(through: LogIndex(appliedRaftIndex)) else { return }
        snapshotInProgress = true
        let root = keySpace.root, storeIndex = keySpace.currentIndex, sessions = self.sessions, members = self.members
        let mvcc = v3.space
        let header = SnapshotHeader(lastIndex: metadata.index.value, lastTerm: metadata.term.value,
                                    clusterTimeNanos: metadata.clusterTimeNanos, membership: metadata.membership.encoded())
        let storage = self.storage
        let initial = initialMembership
        let backups = backupsWaiting
        backupsWaiting = []
        snapshotQueue.async { [self] in
            do {
                let started = clock.now()
                let writer = try storage.beginSnapshot(header)
                var sink = SnapshotFileSink(writer: writer)
                do {
                    try TreeSnapshot.write(root: root, currentIndex: storeIndex, to: &sink)
                    try sessions.write(to: &sink)
                    try members.write(to: &sink)
                    try Self.writeMVCCSection(mvcc, to: &sink)
                    _ = try writer.finish()
                } catch {
                    writer.abort()
                    throw error
                }
                metrics.snapshotSave.observe(seconds: Double(clock.now() - started) / 1e9)
                // Opened before `retain` runs, so no later snapshot can remove the file under a backup's stream.
                for backup in backups { backup(Result { try BackupFile(fs: storage.fs, path: storage.snapshotPath(lastIndex: header.lastIndex)) }) }
                try storage.retain()
                let oldest = try storage.snapshots().first.map { try Self.metadata(of: try Self.header(fs: storage.fs, path: $0.path), initial: initial) }
                logger.info("snapshot saved", metadata: ["index": "\(header.lastIndex)"])
                queue.async { [self] in
                    snapshotIndex = max(snapshotIndex, header.lastIndex)
                    snapshotInProgress = false
                    if let oldest { log.applySnapshot(oldest) }
                    if !backupsWaiting.isEmpty { takeSnapshot() }
                }
            } catch {
                logger.error("snapshot failed", metadata: ["index": "\(header.lastIndex)", "error": "\(error)"])
                for backup in backups { backup(.failure(error)) }
                queue.async { [self] in snapshotInProgress = false }
            }
        }
    }

    // MARK: - Backup

    /// Calls `completion` (off the node queue) with a snapshot file holding every write acknowledged before the call:
    /// a ReadIndex round first, then a snapshot of the state applied at that point (or later), written as any other.
    package func backup(completion: @escaping @Sendable (Result<BackupFile, any Error>) -> Void) {
        linearizableRead { [self] result in
            if case .failure(let error) = result { return completion(.failure(error)) }
            backupsWaiting.append(completion)
            takeSnapshot()
        }
    }

    /// Leader side: streams the snapshot file the core names to a follower, a chunk at a time, paced by the link
    /// (at most `snapshotQueuedBytesMax` waiting in memory), then tells the core how it went.
    private func streamSnapshot(_ request: SnapshotRequest) {
        guard !snapshotStreams.contains(request.to) else { return }
        snapshotStreams.insert(request.to)
        let path = storage.snapshotPath(lastIndex: request.metadata.index.value)
        let fs = storage.fs, from = MemberID(options.id), chunkBytes = Self.snapshotChunkBytes
        let sendPaced = self.sendPaced, sendQueue = snapshotSendQueue, started = clock.now()
        let finished: @Sendable (Bool) -> Void = { [self] success in
            if success { metrics.snapshotSend.observe(seconds: Double(clock.now() - started) / 1e9) }
            queue.async { [self] in
                snapshotStreams.remove(request.to)
                raft.reportSnapshot(to: request.to, success: success)
                if !success { logger.notice("snapshot stream failed", metadata: ["to": "\(hex(request.to.value))"]) }
                scheduleDrive()
            }
        }
        sendQueue.async {
            let file: OpenFile
            let size: UInt64
            do {
                file = try fs.open(path, create: false)
                size = try fs.size(file)
            } catch {
                return finished(false)
            }
            @Sendable func send(from offset: UInt64) {
                let count = Int(min(UInt64(chunkBytes), size - offset))
                let done = offset + UInt64(count) == size
                let chunk: Message
                do { chunk = request.chunk(from: from, offset: offset, data: try fs.read(file, at: offset, count: count), isLast: done) } catch {
                    fs.close(file)
                    return finished(false)
                }
                sendPaced(request.to.value, PeerFrame(type: NodeFrame.raft, payload: chunk.encoded())) { queued in
                    guard queued, !done else {
                        fs.close(file)
                        return finished(queued)
                    }
                    sendQueue.async { send(from: offset + UInt64(count)) }
                }
            }
            send(from: 0)
        }
    }

    /// Follower side: chunks of the leader's stream go into a temporary file in order; a complete file is verified
    /// (off this queue) and offered to the core, which hands it back in a later batch for installing.
    private func receiveSnapshotChunk(_ chunk: Message) {
        guard !snapshotVerifying else { return }
        do {
            switch snapshotReceiver.receive(chunk) {
            case .drop: return
            case .start:
                incomingSnapshot?.abort()
                incomingSnapshot = try storage.receiveSnapshot()
                try incomingSnapshot!.append(chunk.data)
            case .append:
                guard let incomingSnapshot else { return snapshotReceiver.reset() }
                try incomingSnapshot.append(chunk.data)
            }
        } catch {
            logger.error("snapshot receive failed", metadata: ["error": "\(error)"])
            incomingSnapshot?.abort()
            incomingSnapshot = nil
            return snapshotReceiver.reset()
        }
        guard snapshotReceiver.complete, let file = incomingSnapshot else { return }
        incomingSnapshot = nil
        snapshotReceiver.reset()
        snapshotVerifying = true
        let initial = initialMembership, fs = storage.fs
        snapshotQueue.async { [self] in
            let outcome = Result { () throws -> (String, SnapshotMetadata) in
                let (path, header) = try file.finish()
                return (path, try Self.metadata(of: header, initial: initial))
            }
            queue.async { [self] in
                snapshotVerifying = false
                switch outcome {
                case .success(let (path, metadata)) where metadata.index == chunk.index && metadata.term == chunk.logTerm:
                    if raft.restoreSnapshot(metadata) {
                        receivedSnapshotPaths[metadata.index] = path
                    } else {
                        try? fs.remove(path)
                    }
                case .success(let (path, metadata)):
                    logger.error("received snapshot does not match its stream", metadata: ["index": "\(metadata.index)"])
                    try? fs.remove(path)
                case .failure(let error):
                    logger.error("received snapshot refused", metadata: ["error": "\(error)"])
                }
                scheduleDrive()
            }
        }
    }

    /// Replaces the key space with a snapshot the core accepted from the leader, and aligns the log with it.
    private func installSnapshot(_ metadata: SnapshotMetadata) throws {
        guard let path = receivedSnapshotPaths.removeValue(forKey: metadata.index) else {
            throw StorageError.corrupt(path: storage.directory, offset: 0, index: metadata.index.value, reason: "installing a snapshot never received")
        }
        let loaded = try Self.loadSnapshot(fs: storage.fs, path: path)
        try storage.adoptReceivedSnapshot(loaded.header)
        keySpace = loaded.keySpace
        sessions = loaded.sessions
        setMembers(loaded.members)
        appliedRaftIndex = metadata.index.value
        appliedClusterTime = Int64(bitPattern: metadata.clusterTimeNanos)
        v3.restore(loaded.mvcc, at: appliedClusterTime)
        catchUpV3Watchers()
        snapshotIndex = appliedRaftIndex
        log.applySnapshot(metadata)
        publish()
        logger.notice("installed the leader's snapshot", metadata: ["index": "\(metadata.index)"])
    }

    @discardableResult
    private func publish() -> View {
        let view = View(root: keySpace.root, mvcc: v3.space, etcdIndex: keySpace.currentIndex, raftIndex: appliedRaftIndex, raftTerm: raft.term.value,
                        clusterTimeNanos: appliedClusterTime, appliedAtNanos: clock.now())
        published.withLock { $0 = view }
        return view
    }
}

/// A snapshot file's body as the key space's snapshot source: exact reads across the file's chunks.
/// The reads one ReadIndex round confirms: this member's (by reader context) and, on the leader, followers' rounds.
private struct ReadRound {
    var local: [UInt64] = []
    var forwarded: [ReadRequest] = []
    var deadline: Int64 = 0
    var isEmpty: Bool { local.isEmpty && forwarded.isEmpty }
}

struct SnapshotChunks: SnapshotSource {
    let reader: SnapshotReader
    var buffer: [UInt8] = []
    var offset = 0

    init(reader: SnapshotReader) {
        self.reader = reader
    }

    mutating func read(exactly count: Int) throws -> [UInt8] {
        while buffer.count - offset < count {
            guard let chunk = try reader.next() else { throw TreeSnapshotError.truncated }
            buffer = Array(buffer[offset...]) + chunk
            offset = 0
        }
        defer { offset += count }
        return Array(buffer[offset..<(offset + count)])
    }

    /// True when every byte of the chunks read so far has been consumed.
    var isDrained: Bool { offset == buffer.count }

    /// True when the file has no byte left to read (reads the next chunk to know).
    mutating func isAtEnd() throws -> Bool {
        while offset == buffer.count {
            guard let chunk = try reader.next() else { return true }
            buffer = chunk
            offset = 0
        }
        return false
    }
}

/// The key space's snapshot stream into a snapshot file.
struct SnapshotFileSink: SnapshotSink {
    let writer: SnapshotWriter
    func write(_ bytes: [UInt8]) throws { try writer.write(bytes) }
}

/// The counters etcd reports at /v2/stats/store.
package struct StoreStatistics: Sendable {
    package var getsSuccess = 0, getsFail = 0
    package var setsSuccess = 0, setsFail = 0
    package var deleteSuccess = 0, deleteFail = 0
    package var updateSuccess = 0, updateFail = 0
    package var createSuccess = 0, createFail = 0
    package var compareAndSwapSuccess = 0, compareAndSwapFail = 0
    package var compareAndDeleteSuccess = 0, compareAndDeleteFail = 0
    package var expireCount = 0
    package var watchers = 0

    mutating func count(_ command: StoreCommand, succeeded: Bool) {
        switch (command.method, command.prevExist) {
        case (.post, _), (.put, false?):
            succeeded ? (createSuccess += 1) : (createFail += 1)
        case (.put, true?) where command.prevIndex == 0 && command.prevValue.isEmpty:
            succeeded ? (updateSuccess += 1) : (updateFail += 1)
        case (.put, _) where command.prevIndex > 0 || !command.prevValue.isEmpty:
            succeeded ? (compareAndSwapSuccess += 1) : (compareAndSwapFail += 1)
        case (.put, _):
            succeeded ? (setsSuccess += 1) : (setsFail += 1)
        case (.delete, _) where command.prevIndex > 0 || !command.prevValue.isEmpty:
            succeeded ? (compareAndDeleteSuccess += 1) : (compareAndDeleteFail += 1)
        case (.delete, _):
            succeeded ? (deleteSuccess += 1) : (deleteFail += 1)
        case (.expire, _):
            break
        }
    }
}
