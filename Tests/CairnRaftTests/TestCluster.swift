// A hand-driven cluster for targeted Raft tests: messages are queued and delivered only when the test says,
// so each scenario controls exactly which member hears what.
import CairnRaft
import Testing

struct TestCluster {
    var nodes: [MemberID: RaftNode<MemoryLogStorage>] = [:]
    var queue: [Message] = []
    var applied: [MemberID: [Entry]] = [:]
    var reads: [MemberID: [ReadState]] = [:]
    /// Members whose traffic (both ways) is dropped.
    var isolated: Set<MemberID> = []
    let ids: [MemberID]
    var configure: (inout RaftConfig) -> Void

    init(size: Int, configure: @escaping (inout RaftConfig) -> Void = { _ in }) {
        ids = (1...UInt64(size)).map(MemberID.init)
        self.configure = configure
        for id in ids { nodes[id] = makeNode(id, storage: MemoryLogStorage()) }
    }

    func makeNode(_ id: MemberID, storage: MemoryLogStorage) -> RaftNode<MemoryLogStorage> {
        var config = RaftConfig(id: id, voters: ids, randomSeed: 42)
        config.debugChecks = true
        configure(&config)
        return RaftNode(config: config, storage: storage, hardState: storage.hardState)
    }

    static func m(_ v: UInt64) -> MemberID { MemberID(v) }

    /// Persists and collects every member's ready batch; messages go into the queue.
    mutating func collect() {
        for id in ids where nodes[id]!.hasReady {
            let r = nodes[id]!.ready()
            nodes[id]!.storage.append(r.entries)
            if let h = r.hardState { nodes[id]!.storage.setHardState(h) }
            queue += r.messages + r.messagesAfterPersist
            applied[id, default: []] += r.committedEntries
            reads[id, default: []] += r.readStates
            nodes[id]!.advance(r)
        }
    }

    /// Delivers until quiet (bounded), honouring isolation and dropping what `drop` selects.
    mutating func settle(rounds: Int = 50, drop: (Message) -> Bool = { _ in false }) {
        for _ in 0..<rounds {
            collect()
            if queue.isEmpty { return }
            let batch = queue
            queue = []
            for m in batch where !isolated.contains(m.from) && !isolated.contains(m.to) && !drop(m) { nodes[m.to]!.step(m) }
        }
    }

    mutating func tick(_ id: MemberID, times: Int = 1) {
        for _ in 0..<times { nodes[id]!.tick(monotonicNanos: 0) }
    }

    mutating func tickAll(times: Int) {
        for _ in 0..<times { for id in ids { nodes[id]!.tick(monotonicNanos: 0) }; settle() }
    }

    mutating func elect(_ id: MemberID) {
        nodes[id]!.campaign()
        settle()
    }

    /// Restarts from what was persisted (tests persist every batch at once).
    mutating func restart(_ id: MemberID) {
        nodes[id] = makeNode(id, storage: nodes[id]!.storage)
    }

    /// Proposes on a member that must accept (be leader).
    mutating func propose(_ id: MemberID, _ data: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
        let accepted = nodes[id]!.propose(data)
        #expect(accepted, "\(id) refused the proposal", sourceLocation: sourceLocation)
    }

    mutating func readIndex(_ id: MemberID, context: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
        let accepted = nodes[id]!.readIndex(context: context)
        #expect(accepted, "\(id) refused the read", sourceLocation: sourceLocation)
    }

    var leaders: [MemberID] { ids.filter { nodes[$0]!.role == .leader } }
}
