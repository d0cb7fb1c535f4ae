// A whole cluster of real `Replica`s on real storage in one process driven by a seed: every frame through the
// members' own codec and checks, delayed, lost, duplicated and reordered; partitions, power losses on each member's
// simulated file system, slow and failing disks, snapshot files streamed chunk by chunk, membership changes; safety
// checked every step.
import CairnBase
import CairnMemberStorage
import CairnRaft
import CairnReplica
import CairnStorage
import CairnStore

package struct SimOptions: Sendable {
    package var memberCount = 3
    /// 240 since the members run on real storage (about a third more work a step than the in-memory log was), so the
    /// 10,000-seed swarm takes about the time it took with 300.
    package var chaosSteps = 240
    /// After healing, a leader must exist and a proposal must commit within this many steps.
    package var healDeadlineSteps = 300
    package var maxDelaySteps = 4
    package var lossPercent = 5
    package var duplicatePercent = 3
    package var crashPercent = 1
    package var restartPercent = 10
    package var partitionChangePercent = 2
    package var slowDiskPercent = 20
    /// Chance that a persist meets a failing disk (a failed fsync, or a full disk); the member stalls and retries.
    package var diskFailurePercent = 0
    package var proposePercent = 30
    package var readPercent = 10
    /// Each member snapshots its state and compacts its log every this many applied entries.
    package var snapshotEveryEntries = 10
    /// Snapshot files are streamed in chunks of this size.
    package var snapshotChunkBytes = 24
    /// Chance that a snapshot chunk leaves its stream's order, or has a byte flipped on the way.
    package var chunkReorderPercent = 5
    package var chunkCorruptPercent = 1
    /// Chance per step that a member is added to or removed from the member table.
    package var configChangePercent = 2
    package var membersMax = 7
    package var leaseReads = false
    /// Clock drift: each member's clock misses one tick in every so many steps, drawn from this range (nil: none).
    /// Lease reads are only safe while drift stays within their margin (2 of 10 election-timeout ticks here).
    package var tickSkipPeriodStepsRange: ClosedRange<Int>? = nil

    package init() {}
}

package enum SimFailure: Error, CustomStringConvertible {
    case safety(step: Int, String)
    case liveness(String)

    package var description: String {
        switch self {
        case .safety(let step, let what): "safety violation at step \(step): \(what)"
        case .liveness(let what): "liveness failure after healing: \(what)"
        }
    }
}

package struct SimCluster {
    struct Member {
        var replica: Replica<RaftLog>?
        /// The voters it was started with: the founders', or none for a member added later.
        var initialVoters: [UInt64]
        /// This member's clock misses one tick in every this many steps (nil: no drift).
        var tickSkipPeriodSteps: Int?
        /// Its disk: a data directory on its own simulated file system, which a power loss cuts back to what was
        /// synced (tearing the last unsynced write); the storage open on it while the member runs.
        let fs = SimulatedFileSystem()
        var storage: Storage?
        /// The durable log as the member last knew it, for the commit-quorum check while it is down.
        var disk: RaftLog?
        /// What it applied: index and digest (ClusterChecker.digest), from the snapshot on restart.
        var appliedIndex = LogIndex.zero
        var digest = ClusterChecker.digestSeed
        /// A persist the slow disk has not finished; the Replica takes no batch meanwhile.
        var persisting: (entries: [Entry], hardState: CairnRaft.HardState?, recoverFirst: Bool)?
        var persistDueStep = 0
        /// When a failed persist is retried (the Replica's delay, one millisecond a step).
        var retryDueStep: Int?
        /// The incoming snapshot stream's temporary file, and verified ones waiting for their batch.
        var receiver = SnapshotReceiver(fileBytesMax: 1 << 20)
        var receiving: ReceivedSnapshotFile?
        var installing: [(metadata: SnapshotMetadata, path: String)] = []
    }

    struct InFlight {
        var deliverStep: Int
        var order: UInt64
        var type: UInt8
        var payload: [UInt8]
        var from: UInt64
        var to: UInt64
        /// Chunks of one snapshot stream share an ID; its outcome is reported to the leader afterwards.
        var stream: Int?
    }

    struct Stream {
        var leader: UInt64
        var to: MemberID
        var ok: Bool
        var reportStep: Int
    }

    package let seed: UInt64
    let options: SimOptions
    var random: SeededRandom
    /// By ID − 1: IDs are given in order from 1 (an array reads a member in place; a dictionary would copy it).
    var members: [Member] = []
    var ids: [UInt64]
    var founders: [MemberRecord]
    var network: [InFlight] = []
    var streams: [Int: Stream] = [:]
    var nextStream = 0
    /// Directed links that drop everything: (from, to).
    var blocked: Set<[UInt64]> = []
    var step = 0
    var nextToken: UInt64 = 1
    var checker = ClusterChecker()
    var faultsEnabled = true
    var writesAnswered = 0
    var readsServed = 0
    var snapshotsInstalled = 0
    var configChanges = 0
    var diskFailures = 0
    /// Power losses that caught a persist between its write and its fsync.
    var crashesMidPersist = 0
    /// The applied digest at each snapshot any member wrote: a snapshot file holds the state, the checker digests.
    var snapshotDigests: [LogIndex: UInt64] = [:]
    /// The commit index each leader was last checked at, by term.
    var checkedCommit: [MemberID: (term: Term, commit: LogIndex)] = [:]

    package init(seed: UInt64, options: SimOptions = SimOptions()) throws(SimFailure) {
        self.seed = seed
        self.options = options
        self.random = SeededRandom(seed: seed)
        ids = Array(1...UInt64(options.memberCount))
        founders = ids.map { MemberRecord(id: $0, name: "m\($0)", peerURLs: ["sim://\($0)"], clientURLs: []) }
        for id in ids { try addMember(id, initialVoters: ids) }
    }

    mutating func addMember(_ id: UInt64, initialVoters: [UInt64]) throws(SimFailure) {
        var m = Member(initialVoters: initialVoters)
        if let range = options.tickSkipPeriodStepsRange, random.chance(1, in: 2) { m.tickSkipPeriodSteps = Int.random(in: range, using: &random) }
        members.append(m)
        try restart(id)
    }

    /// A member's data directory on its simulated file system.
    package static let dataDirectory = "/data"
    /// Small segments, so the swarm rolls, compacts and recovers many of them.
    package static let storageOptions = StorageOptions(wal: WALOptions(segmentBytesMax: 4096), snapshotsKept: 2)

    /// Starts (or restarts) a member from its disk by the server's recovery: storage opens the data directory (cutting
    /// a torn log tail), the state comes from the newest snapshot file, the core's log from the write-ahead log.
    mutating func restart(_ id: UInt64) throws(SimFailure) {
        var m = members[Int(id) - 1]
        var options = ReplicaOptions(id: id, voters: m.initialVoters)
        options.members = m.initialVoters.isEmpty ? [] : founders
        options.name = "m\(id)"
        options.heartbeatIntervalMilliseconds = 1
        options.electionTimeoutMilliseconds = 10
        options.snapshotCount = self.options.snapshotEveryEntries
        options.raftHeartbeatIntervalTicks = 2
        options.raftMessageBytesMax = 4096
        options.raftInflightMessagesMax = 8
        options.raftLeaseReads = self.options.leaseReads
        options.raftDebugChecks = true
        let seed = self.seed
        let recovery: ReplicaRecovery<RaftLog>
        do {
            let storage = try Storage(fs: m.fs, directory: Self.dataDirectory, options: Self.storageOptions, logger: { _ in })
            m.storage = storage
            recovery = try MemberStorage.recover(storage: storage, options: options, incarnation: random.next(),
                                                 randomSeed: seed &+ UInt64(step) &+ id) { error in
                // Nothing injects read faults: a log that cannot be read back is a storage bug.
                fatalError("seed \(seed): member \(id) cannot read its log: \(error)")
            }
        } catch {
            throw .safety(step: step, "seed \(seed): \(id) cannot recover from its data directory: \(error)")
        }
        m.appliedIndex = .zero
        m.digest = ClusterChecker.digestSeed
        if let snapshot = recovery.snapshot {
            m.appliedIndex = LogIndex(snapshot.index)
            guard let digest = snapshotDigests[m.appliedIndex] else {
                throw .safety(step: step, "seed \(seed): \(id) recovered snapshot \(snapshot.index), which no member wrote")
            }
            m.digest = digest
        }
        m.replica = Replica(options: options, storeInitialIndex: Replica<RaftLog>.storeInitialIndex(memberCount: founders.count),
                            recovery: recovery)
        m.persisting = nil
        m.retryDueStep = nil
        m.receiver.reset()
        m.receiving = nil
        m.installing = []
        members[Int(id) - 1] = m
        // As the server's runner does: the committed log is replayed before the member takes any input.
        while true {
            let entries: [Entry]
            do { entries = try MemberStorage.nextReplayEntries(for: members[Int(id) - 1].replica!) } catch {
                throw .safety(step: step, "seed \(seed): \(id) cannot read its committed log back: \(error)")
            }
            if entries.isEmpty { break }
            try execute(id, members[Int(id) - 1].replica!.replay(entries, now: now))
        }
        members[Int(id) - 1].replica!.start(now: now)
    }

    var now: Int64 { Int64(step) * 1_000_000 }

    package struct Summary: Sendable {
        package var committedEntries: Int
        package var writesAnswered: Int
        package var readsServed: Int
        package var snapshotsInstalled: Int
        package var configChanges: Int
        package var diskFailures: Int
        package var crashesMidPersist: Int
    }

    /// Runs the chaotic phase, heals everything and checks that the cluster makes progress again.
    @discardableResult
    package mutating func run() throws(SimFailure) -> Summary {
        for _ in 0..<options.chaosSteps { try runStep() }
        faultsEnabled = false
        blocked = []
        for id in ids where members[Int(id) - 1].replica == nil { try restart(id) }
        // A stalled disk works again at once.
        for id in ids where members[Int(id) - 1].retryDueStep != nil { members[Int(id) - 1].retryDueStep = step }
        let committedBefore = checker.committedCount
        for _ in 0..<options.healDeadlineSteps {
            try runStep()
            if checker.committedCount > committedBefore + 1, leaderID != nil {
                return Summary(committedEntries: checker.committedCount, writesAnswered: writesAnswered, readsServed: readsServed,
                               snapshotsInstalled: snapshotsInstalled, configChanges: configChanges, diskFailures: diskFailures,
                               crashesMidPersist: crashesMidPersist)
            }
        }
        throw .liveness("seed \(seed): leader \(leaderID.map { "\($0)" } ?? "none"), committed \(checker.committedCount) (was \(committedBefore)); \(memberStates)")
    }

    /// One line per member, for a failure report.
    var memberStates: String {
        ids.map { id in
            guard let n = members[Int(id) - 1].replica?.raft else { return "\(id) down" }
            return "\(id) \(n.role) \(n.term) leader \(n.leader.map { "\($0)" } ?? "-") commit \(n.commit) log \(n.firstIndex)...\(n.lastIndex)@\(n.lastTerm) voters \(n.voters) learners \(n.learners)"
        }.joined(separator: "; ")
    }

    var leaderID: UInt64? {
        ids.filter { members[Int($0) - 1].replica?.raft.role == .leader }.max { members[Int($0) - 1].replica!.raft.term < members[Int($1) - 1].replica!.raft.term }
    }

    var liveIDs: [UInt64] { ids.filter { members[Int($0) - 1].replica != nil } }

    mutating func runStep() throws(SimFailure) {
        step += 1
        if faultsEnabled { try injectFaults() }
        try deliverDue()
        for id in liveIDs {
            // A slow clock: bounded drift, which the lease's safety margin must absorb.
            if let every = members[Int(id) - 1].tickSkipPeriodSteps, step % every == 0 { continue }
            try execute(id, members[Int(id) - 1].replica!.tick(now: now))
            if step % 50 == 0 { try execute(id, members[Int(id) - 1].replica!.expiryTick(now: now)) }
        }
        // Writes and reads go to any live member: a follower forwards them, a deposed leader is where a stale read
        // would come from.
        if random.chance(options.proposePercent, in: 100), let id = liveIDs.randomElement(using: &random) {
            let token = nextToken
            nextToken += 1
            var command = StoreCommand(method: .put, path: "/k\(token % 16)")
            command.value = "\(token)"
            try execute(id, members[Int(id) - 1].replica!.propose(.command(command.encoded()), token: token, now: now))
        }
        if random.chance(options.readPercent, in: 100), let id = liveIDs.randomElement(using: &random) {
            let token = nextToken
            nextToken += 1
            checker.readRequested(context: token)
            try execute(id, members[Int(id) - 1].replica!.read(token: token, now: now))
        }
        if faultsEnabled && random.chance(options.configChangePercent, in: 100), let leader = leaderID {
            try changeMembership(leader: leader)
        }
        for id in liveIDs { try finishPersistIfDue(id) }
        for id in liveIDs where (members[Int(id) - 1].retryDueStep ?? .max) <= step {
            members[Int(id) - 1].retryDueStep = nil
            try execute(id, members[Int(id) - 1].replica!.retryPersist())
        }
        for id in liveIDs { try execute(id, members[Int(id) - 1].replica!.drive(now: now)) }
        try checkCluster()
    }

    /// Changes the member table through the leader: a new member is added (and started, empty) or one is removed;
    /// the leader's Replica moves Raft's configuration after it.
    mutating func changeMembership(leader: UInt64) throws(SimFailure) {
        let table = members[Int(leader) - 1].replica!.members
        let change: MemberChange
        if ids.count < options.membersMax && random.chance(1, in: 2) {
            let id = UInt64(ids.count) + 1
            change = .add(id: id, peerURLs: ["sim://\(id)"])
            try addMember(id, initialVoters: [])
            ids.append(id)
        } else if table.members.count > 1, let victim = table.members.keys.sorted().randomElement(using: &random) {
            change = .remove(id: victim)
        } else {
            return
        }
        configChanges += 1
        let token = nextToken
        nextToken += 1
        try execute(leader, members[Int(leader) - 1].replica!.propose(.member(change), token: token, now: now))
    }

    mutating func injectFaults() throws(SimFailure) {
        if random.chance(options.crashPercent, in: 100) {
            let id = ids.randomElement(using: &random)!
            if members[Int(id) - 1].replica != nil { crash(id) }
        }
        for id in ids where members[Int(id) - 1].replica == nil && random.chance(options.restartPercent, in: 100) {
            try restart(id)
        }
        if random.chance(options.partitionChangePercent, in: 100) {
            blocked = []
            switch Int.random(in: 0..<4, using: &random) {
            case 0: break
            case 1:
                // Isolate one member both ways.
                let a = ids.randomElement(using: &random)!
                for b in ids where b != a { blocked.insert([a, b]); blocked.insert([b, a]) }
            case 2:
                // One-way: a member can send but not hear.
                let a = ids.randomElement(using: &random)!
                for b in ids where b != a { blocked.insert([b, a]) }
            default:
                // A random set of directed links.
                for a in ids { for b in ids where a != b && random.chance(1, in: 3) { blocked.insert([a, b]) } }
            }
        }
    }

    /// Power loss: the process and all volatile state are gone, and the file system keeps what was synced plus a
    /// seeded prefix of the rest, the last write possibly torn. A persist the slow disk was in the middle of may have
    /// written part of its batch (its fsync never came): the member's files get that too.
    mutating func crash(_ id: UInt64) {
        var m = members[Int(id) - 1]
        if let persisting = m.persisting, let storage = m.storage, random.chance(1, in: 2) {
            crashesMidPersist += 1
            m.fs.failSyncs(errno: 5)
            try? MemberStorage.persist(persisting.entries, hardState: persisting.hardState, to: storage)
            m.fs.failSyncs(errno: nil)
        }
        m.disk = m.replica?.raft.storage
        // An incoming snapshot's temporary file stays behind, for storage to remove when the member starts again.
        m.receiving = nil
        m.storage?.close()
        m.storage = nil
        m.replica = nil
        m.persisting = nil
        m.fs.crash(random: &random)
        members[Int(id) - 1] = m
        checker.memberStopped(MemberID(id))
    }

    mutating func deliverDue() throws(SimFailure) {
        var due: [InFlight] = []
        network.removeAll { m in
            if m.deliverStep <= step { due.append(m); return true }
            return false
        }
        // Equal delivery steps arrive in a seeded order, which together with random delays reorders messages.
        due.sort { ($0.deliverStep, $0.order) < ($1.deliverStep, $1.order) }
        for d in due {
            guard !blocked.contains([d.from, d.to]), members[Int(d.to) - 1].replica != nil else {
                if let s = d.stream { streams[s]?.ok = false }
                continue
            }
            // Every frame goes through the member's own decoding and checks: a member refusing what another
            // member sent is a bug.
            let actions: [ReplicaAction]
            do { actions = try members[Int(d.to) - 1].replica!.receive(from: d.from, type: d.type, payload: d.payload, now: now) } catch {
                throw .safety(step: step, "seed \(seed): \(d.to) refused a frame of type \(d.type) from \(d.from): \(error)")
            }
            try execute(d.to, actions)
        }
        // A stream's outcome reaches the leader once its last chunk was due (as a transport would know).
        for (key, s) in streams.sorted(by: { $0.key < $1.key }) where s.reportStep <= step {
            streams[key] = nil
            members[Int(s.leader) - 1].replica?.snapshotSent(to: s.to, success: s.ok)
        }
    }

    mutating func send(from: UInt64, to: UInt64, _ message: PeerMessage) {
        if faultsEnabled && random.chance(options.lossPercent, in: 100) { return }
        let copies = faultsEnabled && random.chance(options.duplicatePercent, in: 100) ? 2 : 1
        let (type, payload) = message.frame
        for _ in 0..<copies {
            let delay = Int.random(in: 0...options.maxDelaySteps, using: &random)
            network.append(InFlight(deliverStep: step + delay, order: random.next(), type: type, payload: payload, from: from, to: to))
        }
    }

    mutating func checkCluster() throws(SimFailure) {
        let live = liveIDs.map { members[Int($0) - 1].replica!.raft }
        do {
            for n in live { try checker.observe(n) }
            for n in live where n.role == .leader { try checkCommitQuorum(n) }
            for i in live.indices { for j in live.indices where j > i { try ClusterChecker.checkLogMatching(live[i], live[j]) } }
        } catch {
            throw .safety(step: step, "seed \(seed): \(error)")
        }
    }
}

extension SimOptions {
    /// Varies cluster size and fault rates with the seed, so a swarm covers calm and hostile schedules.
    package static func forSeed(_ seed: UInt64) -> SimOptions {
        var random = SeededRandom(seed: seed ^ 0x5EED)
        var o = SimOptions()
        o.memberCount = [1, 3, 3, 5, 5].randomElement(using: &random)!
        o.maxDelaySteps = Int.random(in: 0...6, using: &random)
        o.lossPercent = Int.random(in: 0...20, using: &random)
        o.duplicatePercent = Int.random(in: 0...10, using: &random)
        o.crashPercent = Int.random(in: 0...3, using: &random)
        o.partitionChangePercent = Int.random(in: 0...5, using: &random)
        o.slowDiskPercent = Int.random(in: 0...50, using: &random)
        o.snapshotEveryEntries = Int.random(in: 3...30, using: &random)
        o.snapshotChunkBytes = Int.random(in: 8...64, using: &random)
        o.configChangePercent = Int.random(in: 0...4, using: &random)
        o.leaseReads = random.chance(1, in: 3)
        if random.chance(1, in: 2) { o.tickSkipPeriodStepsRange = 10...30 }
        // Drawn last, so the draws above give the schedules they gave before disk faults existed. Not with lease
        // reads: a member whose disk fails freezes its core as a paused process is, and no lease survives a pause
        // (its ticks stop while time goes on; the server reads by ReadIndex only).
        let diskFailurePercent = [0, 0, 1, 3].randomElement(using: &random)!
        o.diskFailurePercent = o.leaseReads ? 0 : diskFailurePercent
        return o
    }
}
