// A whole Raft cluster in one process driven by a seed: delayed, lost, duplicated and reordered messages,
// one-way and symmetric partitions, crashes that lose unpersisted state, slow disks; safety checked every step.
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
    private struct Member {
        var node: RaftNode<MemoryLogStorage>?
        /// What survives a crash: the persisted log and hard state.
        var disk = MemoryLogStorage()
        /// A batch taken from the core whose persist the slow disk has not finished; the next one waits.
        var pendingReady: Ready?
        var persistDueStep = 0
    }

    private struct InFlight {
        var deliverStep: Int
        var order: UInt64
        var message: Message
    }

    package let seed: UInt64
    private let options: SimOptions
    private var random: SeededRandom
    private var members: [MemberID: Member] = [:]
    private let ids: [MemberID]
    private var network: [InFlight] = []
    /// Directed links that drop everything: (from, to).
    private var blocked: Set<[UInt64]> = []
    private var step = 0
    private var proposalCounter: UInt64 = 0
    private var readCounter: UInt64 = 0
    private var checker = ClusterChecker()
    private var faultsEnabled = true
    private var readsServed = 0

    package init(seed: UInt64, options: SimOptions = SimOptions()) {
        self.seed = seed
        self.options = options
        self.random = SeededRandom(seed: seed)
        ids = (1...UInt64(options.memberCount)).map(MemberID.init)
        for id in ids {
            var m = Member()
            m.node = makeNode(id: id, disk: m.disk)
            members[id] = m
        }
    }

    private func makeNode(id: MemberID, disk: MemoryLogStorage) -> RaftNode<MemoryLogStorage> {
        var config = RaftConfig(id: id, voters: ids, randomSeed: seed &+ UInt64(step))
        config.heartbeatIntervalTicks = 2
        config.electionTimeoutTicks = 10
        config.maxMessageBytes = 4096
        config.maxInflightMessages = 8
        config.debugChecks = true
        return RaftNode(config: config, storage: disk, hardState: disk.hardState)
    }

    package struct Summary: Sendable {
        package var committedEntries: Int
        package var readsServed: Int
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
                return Summary(committedEntries: checker.committedCount, readsServed: readsServed)
            }
        }
        throw .liveness("seed \(seed): leader \(leaderID.map { "\($0)" } ?? "none"), committed \(checker.committedCount) (was \(committedBefore))")
    }

    private var leaderID: MemberID? {
        ids.filter { members[$0]!.node?.role == .leader }.max { members[$0]!.node!.term < members[$1]!.node!.term }
    }

    private mutating func runStep() throws(SimFailure) {
        step += 1
        if faultsEnabled { injectFaults() }
        deliverDue()
        for id in ids where members[id]!.node != nil {
            members[id]!.node!.tick(monotonicNanos: UInt64(step) * 1_000_000)
        }
        if random.chance(options.proposePercent, in: 100), let leader = leaderID {
            proposalCounter += 1
            var bytes: [UInt8] = []
            var value = proposalCounter
            for _ in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value)); value >>= 8 }
            members[leader]!.node!.propose(bytes)
        }
        if random.chance(options.readPercent, in: 100), let leader = leaderID {
            readCounter += 1
            checker.readRequested(context: readCounter)
            members[leader]!.node!.readIndex(context: readCounter)
        }
        for id in ids { try processReady(id) }
        try checkCluster()
    }

    private mutating func injectFaults() {
        if random.chance(options.crashPercent, in: 100) {
            let id = ids.randomElement(using: &random)!
            if members[id]!.node != nil {
                // Whatever the slow disk had not finished is lost with the process.
                members[id]!.disk = members[id]!.node!.storage
                members[id]!.node = nil
                members[id]!.pendingReady = nil
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

    private mutating func restart(_ id: MemberID) {
        members[id]!.node = makeNode(id: id, disk: members[id]!.disk)
        members[id]!.pendingReady = nil
    }

    private mutating func deliverDue() {
        var due: [InFlight] = []
        network.removeAll { m in
            if m.deliverStep <= step { due.append(m); return true }
            return false
        }
        // Equal delivery steps arrive in a seeded order, which together with random delays reorders messages.
        due.sort { ($0.deliverStep, $0.order) < ($1.deliverStep, $1.order) }
        for d in due {
            let m = d.message
            guard !blocked.contains([m.from.value, m.to.value]), members[m.to]!.node != nil else { continue }
            members[m.to]!.node!.step(m)
        }
    }

    private mutating func send(_ messages: [Message]) {
        for m in messages {
            if faultsEnabled && random.chance(options.lossPercent, in: 100) { continue }
            let copies = faultsEnabled && random.chance(options.duplicatePercent, in: 100) ? 2 : 1
            for _ in 0..<copies {
                let delay = Int.random(in: 0...options.maxDelaySteps, using: &random)
                network.append(InFlight(deliverStep: step + delay, order: random.next(), message: m))
            }
        }
    }

    private mutating func processReady(_ id: MemberID) throws(SimFailure) {
        guard members[id]!.node != nil else { return }
        if members[id]!.pendingReady == nil {
            guard members[id]!.node!.hasReady else { return }
            let ready = members[id]!.node!.ready()
            send(ready.messages)
            members[id]!.pendingReady = ready
            let slow = faultsEnabled && random.chance(options.slowDiskPercent, in: 100)
            members[id]!.persistDueStep = step + (slow ? Int.random(in: 1...5, using: &random) : 0)
        }
        guard let ready = members[id]!.pendingReady, members[id]!.persistDueStep <= step else { return }
        members[id]!.node!.storage.append(ready.entries)
        if let h = ready.hardState { members[id]!.node!.storage.setHardState(h) }
        send(ready.messagesAfterPersist)
        let highestTerm = ids.compactMap { members[$0]!.node?.term }.max() ?? .zero
        do {
            try checker.observeApplied(ready.committedEntries, by: id, highestTerm: highestTerm)
            for r in ready.readStates { try checker.readReady(r) }
            readsServed += ready.readStates.count
        } catch {
            throw .safety(step: step, "seed \(seed): \(error)")
        }
        members[id]!.node!.advance(ready)
        members[id]!.pendingReady = nil
    }

    private mutating func checkCluster() throws(SimFailure) {
        let live = ids.compactMap { members[$0]!.node }
        do {
            for n in live { try checker.observe(n) }
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
        return o
    }
}
