// The runner of one member: it owns the member's queue, timers, write-ahead log, snapshot files and peer links, and
// executes what the pure `Replica` decides (persist, send, publish, answer, snapshot). It makes no protocol decision.
// Readers take the published view from any thread; handlers reach the Replica only through this class's queue.
import CairnBase
import CairnMVCC
import CairnMemberStorage
import CairnPeer
import CairnRaft
import CairnReplica
import CairnStorage
import CairnStore
import DequeModule
import Dispatch
import Glibc
import Logging
import Synchronization

package final class KeySpaceNode: @unchecked Sendable {
    package typealias View = ReplicaView
    package typealias Options = ReplicaOptions

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

    package let queue = DispatchQueue(label: "cairn.node")
    package let metrics = ServerMetrics()
    package var id: UInt64 { options.id }
    private let clusterIDBox: Mutex<UInt64>
    /// The cluster's ID (etcd's `X-Etcd-Cluster-Id`); 0 while a joining member has not yet learned it.
    package var clusterID: UInt64 {
        get { clusterIDBox.withLock { $0 } }
        set { clusterIDBox.withLock { $0 = newValue } }
    }
    let persistQueue = DispatchQueue(label: "cairn.persist")
    let snapshotQueue = DispatchQueue(label: "cairn.snapshot")
    let snapshotSendQueue = DispatchQueue(label: "cairn.snapshot-send")
    private let membersObserverQueue = DispatchQueue(label: "cairn.members")
    let clock: ClusterClock
    let storage: Storage
    let options: Options
    let logger = Logger(label: "cairn.node")
    /// The member's decisions; touched on `queue` only.
    var replica: Replica<RaftLog>
    /// The v3 watchers, fed after each applied batch (KeySpaceNode+V3.swift).
    var v3Watchers = V3Watchers()
    private let publishedMembers: Mutex<MemberTable>
    private var membersChanged: @Sendable (MemberTable) -> Void = { _ in }
    /// Watch events are encoded and handed out there, off this queue; the registry only collects the watchers to wake.
    package let watchDelivery = WatchDelivery()
    private let v2Watches: V2WatchRegistry
    private let published: Mutex<View>
    private let status = Mutex(RaftStatus())
    private var publishedMembership = Membership(voters: [])
    /// v3 watchers, as of the last run on the queue: what `/metrics` reads without waiting on it.
    private let v3WatchersPublished = Mutex(0)
    private let readStatistics = Mutex(StoreStatistics())
    private let writeStatistics = Mutex(StoreStatistics())
    private var timers: [any DispatchSourceTimer] = []
    private var driveScheduled = false
    var stopped = false
    var sendFrame: @Sendable (_ to: UInt64, _ channel: PeerChannel, _ frame: PeerFrame) -> Void = { _, _, _ in }
    /// Writes the frames `sendFrame` queued in this turn of the queue now (they go at its end otherwise).
    var flushFrames: @Sendable () -> Void = {}
    /// Bulk frames that wait for room on the link rather than being dropped (snapshot streams).
    var sendPaced: @Sendable (_ to: UInt64, _ frame: PeerFrame, _ queued: @escaping @Sendable (Bool) -> Void) -> Void = { _, _, queued in queued(false) }
    /// Snapshot files in flight: streams to followers, the one being received, verified ones waiting to be installed.
    var snapshotFiles = SnapshotFiles()
    /// Backups waiting for the next snapshot to be written.
    var backupsWaiting: [@Sendable (Result<BackupFile, any Error>) -> Void] = []

    /// A write's answer: the outcome the Replica applied (or why it was not), and the view right after it.
    typealias WriteCompletion = (Result<WriteOutcome, StoreError>, View) -> Void
    private typealias ReadCompletion = (Result<View, StoreError>) -> Void
    private var nextToken: UInt64 = 1
    private var writes: [UInt64: WriteCompletion] = [:]
    private var reads: [UInt64: ReadCompletion] = [:]

    /// Recovers from `storage`: the newest snapshot, then the committed log after it (`Replica.replay`); what follows the
    /// commit index as Raft commits it.
    /// - Parameter initialIndex: where a new store index starts (etcd's own bootstrap writes come first, 2 per member + 1).
    package init(clock: ClusterClock, initialIndex: UInt64, storage: Storage, options: Options, clusterID: UInt64 = 0) throws {
        self.clock = clock
        clusterIDBox = Mutex(clusterID)
        self.storage = storage
        self.options = options
        let logger = self.logger
        var random = SystemRandomNumberGenerator()
        let recovery = try MemberStorage.recover(storage: storage, options: options, incarnation: random.next(),
                                                 randomSeed: options.id ^ UInt64(bitPattern: clock.now())) { error in
            logger.critical("the log cannot be read; stopping", metadata: ["error": "\(error)"])
            fatalError("log read failed: \(error)")
        }
        replica = Replica(options: options, storeInitialIndex: initialIndex, recovery: recovery)
        publishedMembers = Mutex(replica.members)
        var view = replica.view
        view.appliedAtNanos = clock.now()
        published = Mutex(view)
        v2Watches = V2WatchRegistry(historyBytesMax: options.historyBytesMax, currentIndex: view.etcdIndex, delivery: watchDelivery)
        // The committed log after the snapshot is applied now, read once in order (the next chunk read while one is
        // applied), so a restart serves it at once.
        let replay = ReplayReader(for: replica)
        while case let entries = try replay.next(), !entries.isEmpty {
            run(replica.replay(entries, now: clock.now()))
        }
    }

    /// Connects the node to its peers: frames go out through `send` (or `sendPaced`, which waits for room on the bulk
    /// channel and says whether the frame was queued); frames in arrive through `receive`.
    package func connect(send: @escaping @Sendable (_ to: UInt64, _ channel: PeerChannel, _ frame: PeerFrame) -> Void,
                         flush: @escaping @Sendable () -> Void = {},
                         sendPaced: @escaping @Sendable (_ to: UInt64, _ frame: PeerFrame, _ queued: @escaping @Sendable (Bool) -> Void) -> Void) {
        queue.sync {
            sendFrame = send
            flushFrames = flush
            self.sendPaced = sendPaced
        }
    }

    package func start() {
        queue.async { [self] in
            replica.start(now: clock.now())
            scheduleDrive()
        }
        let tick = DispatchSource.makeTimerSource(queue: queue)
        let interval = DispatchTimeInterval.milliseconds(options.heartbeatIntervalMilliseconds)
        tick.schedule(deadline: .now() + interval, repeating: interval)
        tick.setEventHandler { [unowned self] in
            run(replica.tick(now: clock.now()))
            scheduleDrive()
        }
        tick.resume()
        // etcd checks for expired keys every 500 ms; so does the leader, through a logged expire command.
        let expiry = DispatchSource.makeTimerSource(queue: queue)
        expiry.schedule(deadline: .now() + .milliseconds(500), repeating: .milliseconds(500))
        expiry.setEventHandler { [unowned self] in
            run(replica.expiryTick(now: clock.now()))
            notifyWatchProgressIfDue()
            scheduleDrive()
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

    /// A clean stop (SIGTERM, SIGINT): stops as `stop` does, then writes a snapshot of everything applied (unless one
    /// already covers it), so the next start replays nothing. A failure is logged: the log still holds every entry.
    package func stopWithSnapshot() {
        stop()
        let due = queue.sync { () -> (SnapshotMetadata, ReplicaState, Membership)? in
            guard replica.appliedIndex > replica.snapshotIndex else { return nil }
            for case .writeSnapshot(let metadata, let state) in replica.requestSnapshot() { return (metadata, state, replica.initialMembership) }
            return nil
        }
        guard let (metadata, state, initial) = due else { return }
        do {
            try MemberStorage.writeSnapshot(metadata, state, to: storage)
            _ = try MemberStorage.retain(storage, initial: initial)
            logger.info("snapshot saved on stop", metadata: ["index": "\(metadata.index)"])
        } catch {
            logger.error("snapshot on stop failed", metadata: ["index": "\(metadata.index)", "error": "\(error)"])
        }
    }

    /// Init applied the log up to the commit index recorded; a lone voter also commits the rest of its log once it has
    /// elected itself (the last batch before a crash may not have been recorded). Waiting for that (bounded) before
    /// serving keeps every write this member knew was committed readable the moment it answers again, leader or not
    /// (its plain reads may be stale until it hears from the leader, as etcd's are).
    package func awaitRecovery(timeoutMilliseconds: Int = 30_000) {
        let target = queue.sync {
            replica.raft.voters == [MemberID(options.id)] ? replica.raft.storage.lastIndex.value : replica.raft.commit.value
        }
        for _ in 0..<(timeoutMilliseconds / 5) where view().raftIndex < target {
            usleep(5_000)
        }
    }

    /// The latest applied state; safe from any thread.
    package func view() -> View { published.withLock { $0 } }

    package var raftStatus: RaftStatus { status.withLock { $0 } }

    /// Gauges for `/metrics`, etcd's names where etcd has one.
    package var metricGauges: [(String, String, Double)] {
        let s = raftStatus, watchers = (v2: v2Watches.watcherCount, v3: v3WatchersPublished.withLock { $0 })
        return [
            ("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", s.leader == nil ? 0 : 1),
            ("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", s.isLeader ? 1 : 0),
            ("etcd_server_leader_changes_seen_total", "The number of leader changes seen.", Double(s.leaderChanges)),
            ("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.", Double(s.commit)),
            ("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.", Double(s.applied)),
            ("etcd_server_proposals_pending", "The current number of pending proposals to commit.", Double(s.pendingProposals)),
            ("etcd_debugging_store_watchers", "Count of currently active watchers.", Double(watchers.v2)),
            ("etcd_debugging_mvcc_watcher_total", "Total number of watchers.", Double(watchers.v3)),
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
    package var now: Int64 { view().clusterTime(at: clock.now()) }

    package var storeStatistics: StoreStatistics {
        var counted = writeStatistics.withLock { $0 }
        readStatistics.withLock {
            counted.getsSuccess = $0.getsSuccess
            counted.getsFail = $0.getsFail
        }
        counted.watchers = v2Watches.watcherCount
        return counted
    }

    package func countRead(succeeded: Bool) {
        readStatistics.withLock { succeeded ? ($0.getsSuccess += 1) : ($0.getsFail += 1) }
    }

    /// etcd writes two entries per member and the cluster version into its store before any client write.
    static func storeInitialIndex(memberCount: Int) -> UInt64 { Replica<RaftLog>.storeInitialIndex(memberCount: memberCount) }

    // MARK: - Writes

    /// Replicates a write, applies it in log order, and calls `completion` (on the node queue) with the outcome and
    /// the view right after it. Fails with etcd's timeout error if its entry is not applied within the request timeout.
    /// With a `session`, a retry of the same request is answered as the first attempt was and applied only once.
    package func propose(_ command: StoreCommand, session: SessionRequest? = nil,
                         completion: @escaping @Sendable (Result<StoreEvent, StoreError>, View) -> Void) {
        queue.async { [self] in
            submit(.command(command.encoded()), session: session) { result, view in
                completion(result.flatMap { outcome in
                    guard case .v2(let applied) = outcome else { return .failure(StoreError(.raftInternal, "etcdserver: not a v2 write", index: view.etcdIndex)) }
                    return applied.map { $0[0].event }
                }, view)
            }
        }
    }

    /// Hands a proposal to the Replica; `completion` runs on the node queue once it is applied (or failed).
    func submit(_ body: Proposal.Body, session: SessionRequest? = nil, completion: @escaping WriteCompletion) {
        let token = nextToken
        nextToken += 1
        writes[token] = completion
        run(replica.propose(body, session: session, token: token, now: clock.now()))
        scheduleDrive()
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
            membersChanged(replica.members)
        }
    }

    /// Replicates a change to the member table; `completion` runs on the node queue once it is applied (or failed).
    /// Raft's configuration follows the table: the leader adds new members as learners, promotes them once they have
    /// caught up and removes members no longer listed (itself included), one change at a time.
    func proposeMemberChange(_ change: MemberChange, completion: @escaping @Sendable (Result<MemberTable, StoreError>) -> Void) {
        queue.async { [self] in
            submit(.member(change)) { [self] result, _ in
                completion(result.map { outcome in
                    if case .member(let table) = outcome { return table }
                    return replica.members
                })
            }
        }
    }

    // MARK: - Linearizable reads

    /// Calls `completion` (on the node queue) with a view at least as new as every write acknowledged before the call:
    /// the leader confirms it still leads (ReadIndex, a heartbeat round and no log entry), then this member waits until
    /// it has applied the read index.
    package func linearizableRead(completion: @escaping @Sendable (Result<View, StoreError>) -> Void) {
        queue.async { [self] in
            let token = nextToken
            nextToken += 1
            reads[token] = completion
            run(replica.read(token: token, now: clock.now()))
            scheduleDrive()
        }
    }

    // MARK: - Peers

    /// A frame from a peer; runs on the node queue (the transport delivers there). Returns false, and changes
    /// nothing, for a frame that fails `PeerMessage`'s checks: the transport then closes the link it came on.
    @discardableResult
    package func receive(from peer: UInt64, frame: PeerFrame) -> Bool {
        dispatchPrecondition(condition: .onQueue(queue))
        let actions: [ReplicaAction]
        do { actions = try replica.receive(from: peer, type: frame.type, payload: frame.payload, now: clock.now()) } catch {
            metrics.count("cairn_peer_frames_refused_total")
            logger.warning("refused a peer frame; closing the link", metadata: ["type": "\(frame.type)", "from": "\(hex(peer))", "error": "\(error)"])
            return false
        }
        run(actions)
        scheduleDrive()
        return true
    }

    // MARK: - Running the Replica's actions

    /// Drives once the blocks already queued have run, so what they bring (proposals, acknowledgements, reads) goes
    /// into one batch and one ReadIndex round rather than one each.
    func scheduleDrive() {
        guard !driveScheduled else { return }
        driveScheduled = true
        queue.async { [self] in
            driveScheduled = false
            guard !stopped else { return publishStatus() }
            run(replica.drive(now: clock.now()))
        }
    }

    /// Executes actions in order; what an action done in place leads to (a leader's persist, a snapshot load) runs
    /// next, before the rest.
    func run(_ actions: [ReplicaAction]) {
        // Once stopped, storage may be closed: what finishes late (a persist, a snapshot) takes nothing further.
        guard !stopped else { return }
        var pending = Deque(actions)
        while let action = pending.popFirst() {
            switch action {
            case .persist(let entries, let hardState, let recoverFirst):
                // In place: what reaches the member meanwhile could only join its next batch anyway, and not hopping
                // to a storage thread and back saves two wake-ups per batch. A leader's appends are already out.
                if !recoverFirst {
                    // What this turn sent (a leader's appends) goes before the fsync, not after it.
                    flushFrames()
                    do {
                        try persist(entries, hardState: hardState)
                        pending.prepend(contentsOf: replica.persisted(now: clock.now()))
                    } catch {
                        pending.prepend(contentsOf: replica.persistFailed(reason: Self.describe(error), now: clock.now()))
                    }
                } else {
                    persistQueue.async { [self] in
                        let outcome = Result { () throws in
                            // Whatever a failed write or fsync left is cut off, never trusted (`Storage.recover`).
                            if recoverFirst { try storage.recover() }
                            try persist(entries, hardState: hardState)
                        }
                        queue.async { [self] in
                            switch outcome {
                            case .success: run(replica.persisted(now: clock.now()))
                            case .failure(let error): run(replica.persistFailed(reason: Self.describe(error), now: clock.now()))
                            }
                        }
                    }
                }
            case .recordCommit(let index):
                storage.recordCommit(index)
            case .send(let to, let message):
                let (type, payload) = message.frame
                sendFrame(to, message.isBulk ? .bulk : .control, PeerFrame(type: type, payload: payload))
            case .applied(let batch):
                applied(batch)
            case .membersChanged(let table):
                publishedMembers.withLock { $0 = table }
                membersChanged(table)
            case .writeFailed(let token, let error):
                writes.removeValue(forKey: token)?(.failure(error), view())
            case .readDone(let token, let error):
                reads.removeValue(forKey: token)?(error.map { .failure($0) } ?? .success(view()))
            case .writeSnapshot(let metadata, let state):
                writeSnapshot(metadata, state)
            case .streamSnapshot(let request):
                streamSnapshot(request)
            case .receiveSnapshotChunk(let chunk):
                receiveSnapshotChunk(chunk)
            case .loadSnapshot(let metadata):
                do {
                    let state = try loadReceivedSnapshot(metadata)
                    pending.prepend(contentsOf: replica.installSnapshot(state, now: clock.now()))
                } catch {
                    pending.prepend(contentsOf: replica.storageFailed(reason: Self.describe(error)))
                }
            case .retryPersist(let milliseconds):
                queue.asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { [self] in
                    guard !stopped else { return }
                    run(replica.retryPersist())
                }
            case .publishStatus:
                publishStatus()
            case .log(let line):
                logger.log(level: line.level.logLevel, "\(line.message)", metadata: line.metadata.mapValues { .string($0) })
            case .count(let metric):
                metrics.count(metric)
            }
        }
        publishStatus()
    }

    /// Makes a batch's entries and changed hard state durable; runs on the node queue or the persist queue.
    private func persist(_ entries: [Entry], hardState: CairnRaft.HardState?) throws {
        let started = clock.now()
        try RaftLog.write(entries, to: storage.writer)
        if !entries.isEmpty { metrics.walFsync.observe(seconds: Double(clock.now() - started) / 1e9) }
        if let hardState { try storage.saveHardState(MemberStorage.stored(hardState)) }
    }

    /// Publishes an applied batch's view, then wakes watchers and answers this member's writers and readers.
    private func applied(_ batch: AppliedBatch) {
        published.withLock { $0 = batch.view }
        writeStatistics.withLock { $0 = batch.statistics }
        // An installed snapshot wakes no v2 watcher (as in etcd), but moves the index a watch starts from.
        v2Watches.record(batch.isSnapshot ? [] : batch.events, throughIndex: batch.view.etcdIndex)
        if batch.isSnapshot { return resyncV3Watchers(since: batch.v3RevisionBefore) }
        for (token, outcome) in batch.writes { writes.removeValue(forKey: token)?(.success(outcome), batch.view) }
        deliverV3Watches(since: batch.v3RevisionBefore)
        for token in batch.reads { reads.removeValue(forKey: token)?(.success(batch.view)) }
    }

    /// The system's words for a failed call (errno), else the error itself.
    private static func describe(_ error: Error) -> String {
        if case StorageError.io(let operation, _, let code) = error { return "\(String(cString: strerror(code))) (\(operation))" }
        return "\(error)"
    }

    /// After every run: the configuration is copied out only when it changed.
    func publishStatus() {
        let v3Count = v3Watchers.watches.count
        v3WatchersPublished.withLock { $0 = v3Count }
        // Field by field: a copy of the whole Raft core (`let raft = replica.raft`) would retain every array it holds,
        // after every run.
        let leader = replica.raft.leader?.value, isLeader = replica.raft.role == .leader
        let term = replica.raft.term.value, commit = replica.raft.commit.value
        let membershipChanged = replica.raft.membership != publishedMembership
        if membershipChanged { publishedMembership = replica.raft.membership }
        let voters = membershipChanged ? replica.raft.voters.map(\.value) : [], learners = membershipChanged ? replica.raft.learners.map(\.value) : []
        let applied = replica.appliedIndex, pending = replica.pendingProposals, failure = replica.storageFailure
        status.withLock {
            if $0.leader != leader && leader != nil { $0.leaderChanges += 1 }
            $0.leader = leader
            $0.isLeader = isLeader
            $0.term = term
            $0.commit = commit
            if membershipChanged {
                $0.voters = voters
                $0.learners = learners
            }
            $0.applied = applied
            $0.pendingProposals = pending
            $0.storageFailure = failure
        }
    }

    // MARK: - Watches (v2)

    /// Registers a watch from the caller's thread, without waiting for this node's queue (busy with a batch or an
    /// fsync): `registered` runs before this returns, with the view whose `etcdIndex` is the index the watch starts
    /// from. Its events reach `deliver` from the delivery queue.
    package func watch(path: StoreKey, recursive: Bool, stream: Bool, sinceIndex: UInt64,
                       deliver: @escaping @Sendable (EncodedWatchEvent) -> Void,
                       registered: (Result<WatchHub.WatcherID?, StoreError>, View) -> Void) {
        var view = view()
        let (result, startIndex) = v2Watches.watch(path: path, recursive: recursive, stream: stream, sinceIndex: sinceIndex, deliver: deliver)
        view.etcdIndex = startIndex
        registered(result, view)
    }

    package func cancelWatch(_ id: WatchHub.WatcherID) { v2Watches.cancel(id) }

    package var watcherCount: Int { v2Watches.watcherCount }

    // MARK: - Backup

    /// Calls `completion` (off the node queue) with a snapshot file holding every write acknowledged before the call:
    /// a ReadIndex round first, then a snapshot of the state applied at that point (or later), written as any other.
    package func backup(completion: @escaping @Sendable (Result<BackupFile, any Error>) -> Void) {
        linearizableRead { [self] result in
            if case .failure(let error) = result { return completion(.failure(error)) }
            backupsWaiting.append(completion)
            run(replica.requestSnapshot())
        }
    }
}

extension ReplicaLogLine.Level {
    var logLevel: Logger.Level {
        switch self {
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        case .critical: .critical
        }
    }
}

