// A whole Raft cluster in one process driven by a seed: delayed, lost, duplicated and reordered messages,
// one-way and symmetric partitions, crashes that lose unpersisted state, slow disks, snapshots streamed chunk by
// chunk over the same faulty network, membership changes and lease reads; safety checked every step.
import CairnBase
import CairnRaft

package struct SimOptions: Sendable {
    package var memberCount = 3
    package var chaosSteps = 300
    /// After healing, a leader must exist and a proposal must commit within this many steps.
    package var healDeadlineSteps = 300
    package var maxDelaySteps = 4
    package var lossPercent = 5
    package var duplicatePercent = 3
    package var crashPercent = 1
    package var restartPercent = 10
    package var partitionChangePercent = 2
    package var slowDiskPercent = 20
    package var proposePercent = 30
    package var readPercent = 10
    /// Each member snapshots its state machine and compacts its log every this many applied entries.
    package var snapshotEveryEntries = 10
    /// Snapshot files are streamed in chunks of this size.
    package var snapshotChunkBytes = 24
    /// Chance that a snapshot chunk leaves its stream's order, or has a byte flipped on the way.
    package var chunkReorderPercent = 5
    package var chunkCorruptPercent = 1
    /// Chance per step that the leader is asked for a membership change (add learner, promote, remove).
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

/// The simulator's snapshot file: a length-prefixed `SnapshotMetadata` header, the state machine (its applied
/// digest), then a CRC32C of everything before it — as a real snapshot file is laid out.
package enum SimSnapshotFile {
    package static func encode(_ metadata: SnapshotMetadata, digest: UInt64) -> [UInt8] {
        let header = metadata.encoded()
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt32(header.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes += header
        withUnsafeBytes(of: digest.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: CRC32C.checksum(bytes).littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// Nil for a file that is short, padded, or fails its checksum.
    package static func decode(_ bytes: [UInt8]) -> (metadata: SnapshotMetadata, digest: UInt64)? {
        guard bytes.count >= 16 else { return nil }
        func le(_ at: Int, _ count: Int) -> UInt64 {
            (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) }
        }
        let body = Array(bytes[..<(bytes.count - 4)])
        guard UInt32(le(bytes.count - 4, 4)) == CRC32C.checksum(body) else { return nil }
        let headerCount = Int(le(0, 4))
        guard headerCount == body.count - 12,
              let metadata = try? SnapshotMetadata(decoding: Array(body[4..<(4 + headerCount)])) else { return nil }
        return (metadata, le(4 + headerCount, 8))
    }
}

package struct SimCluster {
    private struct Member {
        var node: RaftNode<MemoryLogStorage>?
        /// The configuration it was started with: the founders', or none for a member added later.
        var initialVoters: [MemberID]
        /// This member's clock misses one tick in every this many steps (nil: no drift).
        var tickSkipPeriodSteps: Int?
        /// What survives a crash: the persisted log and hard state, and the snapshot file the log starts after.
        var disk = MemoryLogStorage()
        var snapshotFile: [UInt8]?
        /// The state machine: applied index and digest (ClusterChecker.digest). Rebuilt from the snapshot on restart.
        var appliedIndex = LogIndex.zero
        var digest = ClusterChecker.digestSeed
        /// A batch taken from the core whose persist the slow disk has not finished; the next one waits.
        var pendingReady: Ready?
        var persistDueStep = 0
        /// The incoming snapshot stream's temporary file, and finished ones waiting for their batch (a newer one
        /// may be accepted while the batch carrying an older one is still on the slow disk).
        var receiver = SnapshotReceiver(fileBytesMax: 1 << 16)
        var receiving: [UInt8] = []
        var installing: [(metadata: SnapshotMetadata, file: [UInt8], digest: UInt64)] = []
    }

    private struct InFlight {
        var deliverStep: Int
        var order: UInt64
        var bytes: [UInt8]
        var from: MemberID
        var to: MemberID
        /// Chunks of one snapshot stream share an ID; its outcome is reported to the leader afterwards.
        var stream: Int?
    }

    private struct Stream {
        var leader: MemberID
        var to: MemberID
        var ok: Bool
        var reportStep: Int
    }

    package let seed: UInt64
    private let options: SimOptions
    private var random: SeededRandom
    private var members: [MemberID: Member] = [:]
    private var ids: [MemberID]
    private var network: [InFlight] = []
    private var streams: [Int: Stream] = [:]
    private var nextStream = 0
    /// Directed links that drop everything: (from, to).
    private var blocked: Set<[UInt64]> = []
    private var step = 0
    private var proposalCounter: UInt64 = 0
    private var readCounter: UInt64 = 0
    private var checker = ClusterChecker()
    private var faultsEnabled = true
    private var readsServed = 0
    private var snapshotsInstalled = 0
    private var configChanges = 0
    /// The commit index each leader was last checked at, by term.
    private var checkedCommit: [MemberID: (term: Term, commit: LogIndex)] = [:]

    package init(seed: UInt64, options: SimOptions = SimOptions()) {
        self.seed = seed
        self.options = options
        self.random = SeededRandom(seed: seed)
        ids = (1...UInt64(options.memberCount)).map(MemberID.init)
        for id in ids { addMember(id, initialVoters: ids) }
    }

    private mutating func addMember(_ id: MemberID, initialVoters: [MemberID]) {
        var m = Member(initialVoters: initialVoters)
        if let range = options.tickSkipPeriodStepsRange, random.chance(1, in: 2) { m.tickSkipPeriodSteps = Int.random(in: range, using: &random) }
        m.node = makeNode(id: id, member: m)
        members[id] = m
    }

    private func makeNode(id: MemberID, member: Member) -> RaftNode<MemoryLogStorage> {
        var config = RaftConfig(id: id, voters: member.initialVoters, randomSeed: seed &+ UInt64(step))
        config.heartbeatIntervalTicks = 2
        config.electionTimeoutTicks = 10
        config.maxMessageBytes = 4096
        config.maxInflightMessages = 8
        config.leaseReads = options.leaseReads
        config.debugChecks = true
        return RaftNode(config: config, storage: member.disk, hardState: member.disk.hardState)
    }

    package struct Summary: Sendable {
        package var committedEntries: Int
        package var readsServed: Int
        package var snapshotsInstalled: Int
        package var configChanges: Int
    }

    /// Runs the chaotic phase, heals everything and checks that the cluster makes progress again.
    @discardableResult
    package mutating func run() throws(SimFailure) -> Summary {
        for _ in 0..<options.chaosSteps { try runStep() }
        faultsEnabled = false
        blocked = []
        for id in ids where members[id]!.node == nil { restart(id) }
        let committedBefore = checker.committedCount
        for _ in 0..<options.healDeadlineSteps {
            try runStep()
            if checker.committedCount > committedBefore + 1, leaderID != nil {
                return Summary(committedEntries: checker.committedCount, readsServed: readsServed,
                               snapshotsInstalled: snapshotsInstalled, configChanges: configChanges)
            }
        }
        throw .liveness("seed \(seed): leader \(leaderID.map { "\($0)" } ?? "none"), committed \(checker.committedCount) (was \(committedBefore)); \(memberStates)")
    }

    /// One line per member, for a failure report.
    private var memberStates: String {
        ids.map { id in
            guard let n = members[id]!.node else { return "\(id) down" }
            return "\(id) \(n.role) \(n.term) leader \(n.leader.map { "\($0)" } ?? "-") commit \(n.commit) log \(n.firstIndex)...\(n.lastIndex)@\(n.lastTerm) voters \(n.voters) learners \(n.learners)"
        }.joined(separator: "; ")
    }

    private var leaderID: MemberID? {
        ids.filter { members[$0]!.node?.role == .leader }.max { members[$0]!.node!.term < members[$1]!.node!.term }
    }

    private mutating func runStep() throws(SimFailure) {
        step += 1
        if faultsEnabled { injectFaults() }
        try deliverDue()
        for id in ids where members[id]!.node != nil {
            // A slow clock: bounded drift, which the lease's safety margin must absorb.
            if let every = members[id]!.tickSkipPeriodSteps, step % every == 0 { continue }
            members[id]!.node!.tick(monotonicNanos: UInt64(step) * 1_000_000)
        }
        if random.chance(options.proposePercent, in: 100), let leader = leaderID {
            proposalCounter += 1
            var bytes: [UInt8] = []
            var value = proposalCounter
            for _ in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value)); value >>= 8 }
            members[leader]!.node!.propose(bytes)
        }
        // Reads go to any member that believes it leads, a deposed one too: that is where a stale read would come from.
        if random.chance(options.readPercent, in: 100),
           let leader = ids.filter({ members[$0]!.node?.role == .leader }).randomElement(using: &random) {
            readCounter += 1
            checker.readRequested(context: readCounter)
            members[leader]!.node!.readIndex(context: readCounter)
        }
        if faultsEnabled && random.chance(options.configChangePercent, in: 100), let leader = leaderID {
            changeMembership(leader: leader)
        }
        for id in ids { try processReady(id) }
        try checkCluster()
    }

    /// Keeps a valid cluster: learners are added as new members and promoted once caught up; any voter
    /// (the leader too) or learner may be removed while another voter remains.
    private mutating func changeMembership(leader: MemberID) {
        let node = members[leader]!.node!
        let membership = node.membership
        let change: ConfigChange
        if let learner = membership.learners.randomElement(using: &random), random.chance(3, in: 4) {
            // The application's promotion rule: caught up with the leader's commit.
            guard (node.progress[learner]?.match ?? .zero) >= node.commit else { return }
            change = ConfigChange(.addVoter, learner)
        } else if ids.count < options.membersMax && random.chance(1, in: 2) {
            change = ConfigChange(.addLearner, MemberID(UInt64(ids.count) + 1))
        } else if membership.voters.count > 1, let victim = membership.members.randomElement(using: &random) {
            change = ConfigChange(.remove, victim)
        } else {
            return
        }
        guard members[leader]!.node!.proposeConfigChange(change) else { return }
        configChanges += 1
        if change.kind == .addLearner {
            // The new member starts empty, knowing no configuration: the leader's log or snapshot tells it.
            addMember(change.member, initialVoters: [])
            ids.append(change.member)
        }
    }

    private mutating func injectFaults() {
        if random.chance(options.crashPercent, in: 100) {
            let id = ids.randomElement(using: &random)!
            if members[id]!.node != nil {
                // Whatever the slow disk had not finished is lost with the process, and so is all volatile state.
                members[id]!.disk = members[id]!.node!.storage
                members[id]!.node = nil
                members[id]!.pendingReady = nil
                members[id]!.receiver.reset()
                members[id]!.receiving = []
                members[id]!.installing = []
            }
        }
        for id in ids where members[id]!.node == nil && random.chance(options.restartPercent, in: 100) {
            restart(id)
        }
        if random.chance(options.partitionChangePercent, in: 100) {
            blocked = []
            switch Int.random(in: 0..<4, using: &random) {
            case 0: break
            case 1:
                // Isolate one member both ways.
                let a = ids.randomElement(using: &random)!
                for b in ids where b != a { blocked.insert([a.value, b.value]); blocked.insert([b.value, a.value]) }
            case 2:
                // One-way: a member can send but not hear.
                let a = ids.randomElement(using: &random)!
                for b in ids where b != a { blocked.insert([b.value, a.value]) }
            default:
                // A random set of directed links.
                for a in ids { for b in ids where a != b && random.chance(1, in: 3) { blocked.insert([a.value, b.value]) } }
            }
        }
    }

    /// Restarts from disk: the state machine from the snapshot file, the core from the log after it.
    private mutating func restart(_ id: MemberID) {
        var m = members[id]!
        if let file = m.snapshotFile, let decoded = SimSnapshotFile.decode(file) {
            precondition(decoded.metadata == m.disk.snapshot, "snapshot file and log disagree on \(id)")
            m.appliedIndex = decoded.metadata.index
            m.digest = decoded.digest
        } else {
            m.appliedIndex = .zero
            m.digest = ClusterChecker.digestSeed
        }
        m.node = makeNode(id: id, member: m)
        m.pendingReady = nil
        members[id] = m
    }

    private mutating func deliverDue() throws(SimFailure) {
        var due: [InFlight] = []
        network.removeAll { m in
            if m.deliverStep <= step { due.append(m); return true }
            return false
        }
        // Equal delivery steps arrive in a seeded order, which together with random delays reorders messages.
        due.sort { ($0.deliverStep, $0.order) < ($1.deliverStep, $1.order) }
        for d in due {
            guard !blocked.contains([d.from.value, d.to.value]), members[d.to]!.node != nil else {
                if let s = d.stream { streams[s]?.ok = false }
                continue
            }
            // Every message crosses the wire encoded, so the codec runs under the whole swarm.
            let m: Message
            do {
                m = try Message(decoding: d.bytes)
            } catch {
                throw .safety(step: step, "seed \(seed): codec refused a message it encoded: \(error)")
            }
            members[d.to]!.node!.step(m)
        }
        // A stream's outcome reaches the leader's caller once its last chunk was due (as a transport would know).
        for (key, s) in streams.sorted(by: { $0.key < $1.key }) where s.reportStep <= step {
            streams[key] = nil
            members[s.leader]!.node?.reportSnapshot(to: s.to, success: s.ok)
        }
    }

    private mutating func send(_ messages: [Message]) {
        for m in messages {
            if faultsEnabled && random.chance(options.lossPercent, in: 100) { continue }
            let copies = faultsEnabled && random.chance(options.duplicatePercent, in: 100) ? 2 : 1
            let bytes = m.encoded()
            for _ in 0..<copies {
                let delay = Int.random(in: 0...options.maxDelaySteps, using: &random)
                network.append(InFlight(deliverStep: step + delay, order: random.next(), bytes: bytes, from: m.from, to: m.to))
            }
        }
    }

    /// The leader's caller streams its current snapshot file in order, one chunk per step, over the faulty network.
    private mutating func streamSnapshot(from id: MemberID, _ request: SnapshotRequest) {
        guard let file = members[id]!.snapshotFile, SimSnapshotFile.decode(file)?.metadata == request.metadata else {
            members[id]!.node!.reportSnapshot(to: request.to, success: false)
            return
        }
        let streamID = nextStream
        nextStream += 1
        var stream = Stream(leader: id, to: request.to, ok: true, reportStep: step)
        let base = step + Int.random(in: 0...options.maxDelaySteps, using: &random)
        var offset = 0
        var k = 0
        while offset < file.count {
            let end = min(file.count, offset + options.snapshotChunkBytes)
            var m = request.chunk(from: id, offset: UInt64(offset), data: Array(file[offset..<end]), isLast: end == file.count)
            offset = end
            var deliver = base + k
            k += 1
            if faultsEnabled && random.chance(options.chunkReorderPercent, in: 100) {
                deliver = step + Int.random(in: 0...(options.maxDelaySteps + 3), using: &random)
            }
            if faultsEnabled && random.chance(options.chunkCorruptPercent, in: 100) {
                let at = Int.random(in: 0..<m.data.count, using: &random)
                m.data[at] ^= 0x40
            }
            stream.reportStep = max(stream.reportStep, deliver + 1)
            if faultsEnabled && random.chance(options.lossPercent, in: 100) { stream.ok = false; continue }
            let copies = faultsEnabled && random.chance(options.duplicatePercent, in: 100) ? 2 : 1
            for _ in 0..<copies {
                network.append(InFlight(deliverStep: deliver, order: random.next(), bytes: m.encoded(), from: id,
                                        to: request.to, stream: streamID))
            }
        }
        streams[streamID] = stream
    }

    /// The follower's caller: assembles chunks into a temporary file and hands a verified one to the core.
    private mutating func receiveChunk(_ id: MemberID, _ chunk: Message) {
        switch members[id]!.receiver.receive(chunk) {
        case .drop: return
        case .start: members[id]!.receiving = chunk.data
        case .append: members[id]!.receiving += chunk.data
        }
        guard members[id]!.receiver.complete else { return }
        let file = members[id]!.receiving
        members[id]!.receiver.reset()
        members[id]!.receiving = []
        // A corrupted or mismatched file is dropped; the leader streams again.
        guard let decoded = SimSnapshotFile.decode(file), decoded.metadata.index == chunk.index,
              decoded.metadata.term == chunk.logTerm else { return }
        if members[id]!.node!.restoreSnapshot(decoded.metadata) {
            members[id]!.installing.append((decoded.metadata, file, decoded.digest))
        }
    }

    private mutating func processReady(_ id: MemberID) throws(SimFailure) {
        guard members[id]!.node != nil else { return }
        if members[id]!.pendingReady == nil {
            guard members[id]!.node!.hasReady else { return }
            let ready = members[id]!.node!.ready()
            send(ready.messages)
            for request in ready.snapshotsToSend { streamSnapshot(from: id, request) }
            for chunk in ready.snapshotChunks { receiveChunk(id, chunk) }
            members[id]!.pendingReady = ready
            let slow = faultsEnabled && random.chance(options.slowDiskPercent, in: 100)
            members[id]!.persistDueStep = step + (slow ? Int.random(in: 1...5, using: &random) : 0)
        }
        guard let ready = members[id]!.pendingReady, members[id]!.persistDueStep <= step else { return }
        do {
            if let s = ready.snapshot {
                guard let inst = members[id]!.installing.first(where: { $0.metadata == s }) else {
                    throw ClusterChecker.Violation(description: "\(id) was told to install \(s.index) without a verified file")
                }
                try checker.observeRestored(index: s.index, digest: inst.digest, by: id)
                members[id]!.snapshotFile = inst.file
                members[id]!.appliedIndex = s.index
                members[id]!.digest = inst.digest
                members[id]!.installing.removeAll { $0.metadata.index <= s.index }
                members[id]!.node!.storage.applySnapshot(s)
                snapshotsInstalled += 1
            }
            members[id]!.node!.storage.append(ready.entries)
            if let h = ready.hardState { members[id]!.node!.storage.setHardState(h) }
            send(ready.messagesAfterPersist)
            let highestTerm = ids.compactMap { members[$0]!.node?.term }.max() ?? .zero
            for e in ready.committedEntries {
                guard e.index == members[id]!.appliedIndex + 1 else {
                    throw ClusterChecker.Violation(description: "\(id) applied \(e.index) after \(members[id]!.appliedIndex)")
                }
                members[id]!.appliedIndex = e.index
                members[id]!.digest = ClusterChecker.digest(members[id]!.digest, e)
            }
            try checker.observeApplied(ready.committedEntries, by: id, highestTerm: highestTerm)
            for r in ready.readStates { try checker.readReady(r) }
            readsServed += ready.readStates.count
        } catch {
            throw .safety(step: step, "seed \(seed): \(error)")
        }
        members[id]!.node!.advance(ready)
        members[id]!.pendingReady = nil
        takeSnapshotIfDue(id)
    }

    /// The application's snapshot policy: every `snapshotEveryEntries` applied entries, write the state and drop
    /// the log before it.
    private mutating func takeSnapshotIfDue(_ id: MemberID) {
        let m = members[id]!
        guard m.appliedIndex.value >= m.node!.snapshot.index.value + UInt64(options.snapshotEveryEntries),
              let metadata = m.node!.snapshotMetadata(through: m.appliedIndex) else { return }
        members[id]!.snapshotFile = SimSnapshotFile.encode(metadata, digest: m.digest)
        members[id]!.node!.storage.applySnapshot(metadata)
    }

    private mutating func checkCluster() throws(SimFailure) {
        let live = ids.compactMap { members[$0]!.node }
        do {
            for n in live { try checker.observe(n) }
            for n in live where n.role == .leader { try checkCommitQuorum(n) }
            for i in live.indices { for j in live.indices where j > i { try ClusterChecker.checkLogMatching(live[i], live[j]) } }
        } catch {
            throw .safety(step: step, "seed \(seed): \(error)")
        }
    }
}

extension SimCluster {
    /// Commitment by the configuration in effect: a commit index a leader reached by counting is durably held
    /// by a majority of the voters of its latest configuration, or of the one before it (a change may have been
    /// appended since the commit in the same step). Learners and a leader removing itself must not be counted.
    /// The commit index a leader inherits is not checked: the configuration that counted it may be one the new
    /// leader never saw (a removal after it), and single-server changes only promise overlapping majorities.
    private mutating func checkCommitQuorum(_ leader: RaftNode<MemoryLogStorage>) throws {
        let id = leader.config.id
        let c = leader.commit
        let last = checkedCommit[id]
        checkedCommit[id] = (leader.term, c)
        guard let last, last.term == leader.term, last.commit < c else { return }
        guard c > leader.snapshot.index, let t = leader.term(at: c) else { return }
        func holds(_ voter: MemberID) -> Bool {
            guard let m = members[voter] else { return false }
            let disk = m.node?.storage ?? m.disk
            return disk.snapshot.index >= c || disk.term(at: c) == t
        }
        let previous = leader.configIndex > .zero ? leader.membership(at: leader.configIndex - 1) : leader.membership
        for config in [leader.membership, previous] where config.voters.filter(holds).count > config.voters.count / 2 { return }
        let views = previous.members.map { v in
            let m = members[v]!
            let disk = m.node?.storage ?? m.disk
            let p = leader.progress[v]
            return "\(v) disk \(disk.firstIndex)...\(disk.lastIndex)@\(disk.term(at: disk.lastIndex) ?? .zero) leader sees \(p.map { "\($0.state) match \($0.match)" } ?? "-")"
        }
        throw ClusterChecker.Violation(description: "commit quorum: \(id) committed \(c)@\(t) held by \(ids.filter(holds)), voters \(leader.membership.voters) (before: \(previous.voters)); \(views.joined(separator: "; "))")
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
        return o
    }
}
