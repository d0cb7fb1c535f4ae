// A hand-driven cluster for targeted Raft tests: messages are queued and delivered only when the test says,
// so each scenario controls exactly which member hears what. Snapshots follow the Ready contract end to end.
import CairnBase
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
    /// The founding voters; other members start knowing no configuration, as a member added later does.
    let founders: [MemberID]
    var configure: (inout RaftConfig) -> Void
    /// Each member's current snapshot file (header + CRC32C), its incoming stream and restores waiting for a batch.
    var snapshotFiles: [MemberID: [UInt8]] = [:]
    var receivers: [MemberID: SnapshotReceiver] = [:]
    var receiving: [MemberID: [UInt8]] = [:]
    var snapshotRequests: [SnapshotRequest] = []
    var installed: [MemberID: [SnapshotMetadata]] = [:]
    var chunkBytes = 8

    init(size: Int, founders: Int? = nil, configure: @escaping (inout RaftConfig) -> Void = { _ in }) {
        ids = (1...UInt64(size)).map(MemberID.init)
        self.founders = Array(ids.prefix(founders ?? size))
        self.configure = configure
        for id in ids { nodes[id] = makeNode(id, storage: MemoryLogStorage()) }
    }

    func makeNode(_ id: MemberID, storage: MemoryLogStorage) -> RaftNode<MemoryLogStorage> {
        var config = RaftConfig(id: id, voters: founders.contains(id) ? founders : [], randomSeed: 42)
        config.debugChecks = true
        configure(&config)
        return RaftNode(config: config, storage: storage, hardState: storage.hardState)
    }

    static func m(_ v: UInt64) -> MemberID { MemberID(v) }

    static func snapshotFile(_ metadata: SnapshotMetadata) -> [UInt8] {
        var bytes = metadata.encoded()
        withUnsafeBytes(of: CRC32C.checksum(bytes).littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    static func readSnapshotFile(_ bytes: [UInt8]) -> SnapshotMetadata? {
        guard bytes.count > 4 else { return nil }
        let body = Array(bytes[..<(bytes.count - 4)])
        let crc = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[body.count + $1]) << (8 * UInt32($1)) }
        guard crc == CRC32C.checksum(body) else { return nil }
        return try? SnapshotMetadata(decoding: body)
    }

    /// Persists and collects every member's ready batch; messages and snapshot chunks go into the queue.
    mutating func collect() {
        for id in ids where nodes[id]!.hasReady {
            let r = nodes[id]!.ready()
            if let s = r.snapshot {
                nodes[id]!.storage.applySnapshot(s)
                installed[id, default: []].append(s)
            }
            nodes[id]!.storage.append(r.entries)
            if let h = r.hardState { nodes[id]!.storage.setHardState(h) }
            queue += r.messages + r.messagesAfterPersist
            applied[id, default: []] += r.committedEntries
            reads[id, default: []] += r.readStates
            for request in r.snapshotsToSend { stream(from: id, request) }
            for chunk in r.snapshotChunks { receive(id, chunk) }
            nodes[id]!.advance(r)
        }
    }

    mutating func stream(from id: MemberID, _ request: SnapshotRequest) {
        snapshotRequests.append(request)
        let file = snapshotFiles[id]!
        var offset = 0
        while offset < file.count {
            let end = min(file.count, offset + chunkBytes)
            queue.append(request.chunk(from: id, offset: UInt64(offset), data: Array(file[offset..<end]), isLast: end == file.count))
            offset = end
        }
    }

    mutating func receive(_ id: MemberID, _ chunk: Message) {
        var receiver = receivers[id] ?? SnapshotReceiver(fileBytesMax: 1 << 20)
        defer { receivers[id] = receiver }
        switch receiver.receive(chunk) {
        case .drop: return
        case .start: receiving[id] = chunk.data
        case .append: receiving[id, default: []] += chunk.data
        }
        guard receiver.complete else { return }
        let file = receiving[id] ?? []
        receiver.reset()
        guard let metadata = Self.readSnapshotFile(file), metadata.index == chunk.index, metadata.term == chunk.logTerm,
              nodes[id]!.restoreSnapshot(metadata) else { return }
        snapshotFiles[id] = file
    }

    /// The application's snapshot of everything applied, then compaction of the log before it.
    mutating func compact(_ id: MemberID) {
        let metadata = nodes[id]!.snapshotMetadata(through: nodes[id]!.applied)!
        snapshotFiles[id] = Self.snapshotFile(metadata)
        nodes[id]!.storage.applySnapshot(metadata)
    }

    /// Delivers until quiet (bounded), honouring isolation and dropping what `drop` selects. A snapshot stream's
    /// outcome is reported to its leader once its chunks were delivered or dropped.
    mutating func settle(rounds: Int = 50, drop: (Message) -> Bool = { _ in false },
                         corrupt: (inout Message) -> Void = { _ in }) {
        for _ in 0..<rounds {
            collect()
            if queue.isEmpty { return }
            let batch = queue
            queue = []
            var streams: [(from: MemberID, to: MemberID, ok: Bool)] = []
            for var m in batch {
                corrupt(&m)
                let delivered = !isolated.contains(m.from) && !isolated.contains(m.to) && !drop(m)
                if delivered { nodes[m.to]!.step(m) }
                guard m.kind == .snapshot else { continue }
                if let i = streams.firstIndex(where: { $0.from == m.from && $0.to == m.to }) {
                    streams[i].ok = streams[i].ok && delivered
                } else {
                    streams.append((m.from, m.to, delivered))
                }
            }
            for s in streams { nodes[s.from]!.reportSnapshot(to: s.to, success: s.ok) }
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

    mutating func changeConfig(_ id: MemberID, _ change: ConfigChange, accepted expected: Bool = true,
                               sourceLocation: SourceLocation = #_sourceLocation) {
        let accepted = nodes[id]!.proposeConfigChange(change)
        #expect(accepted == expected, "\(id) on \(change)", sourceLocation: sourceLocation)
    }

    mutating func readIndex(_ id: MemberID, context: UInt64, sourceLocation: SourceLocation = #_sourceLocation) {
        let accepted = nodes[id]!.readIndex(context: context)
        #expect(accepted, "\(id) refused the read", sourceLocation: sourceLocation)
    }

    var leaders: [MemberID] { ids.filter { nodes[$0]!.role == .leader } }
}
