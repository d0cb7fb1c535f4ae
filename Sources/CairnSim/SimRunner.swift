// The simulator's runner for each member: it executes a Replica's actions as the server's runner does, with a
// simulated slow disk, an in-memory snapshot file in the product's format and the faulty network; and checks
// what the members apply against each other.
import CairnBase
import CairnRaft
import CairnReplica
import CairnStore

extension SimCluster {
    /// Executes a member's actions in order; what an action reports back runs next.
    mutating func execute(_ id: UInt64, _ actions: [ReplicaAction]) throws(SimFailure) {
        var pending = actions[...]
        while let action = pending.popFirst() {
            guard members[Int(id) - 1].replica != nil else { return }
            let next = try perform(id, action)
            if !next.isEmpty { pending = next[...] + pending }
        }
    }

    private mutating func perform(_ id: UInt64, _ action: ReplicaAction) throws(SimFailure) -> [ReplicaAction] {
        switch action {
        case .persist(let entries, let hardState, _, _):
            members[Int(id) - 1].persisting = (entries, hardState)
            let slow = faultsEnabled && random.chance(options.slowDiskPercent, in: 100)
            members[Int(id) - 1].persistDueStep = step + (slow ? Int.random(in: 1...5, using: &random) : 0)
            return []
        case .recordCommit(let index):
            var h = members[Int(id) - 1].replica!.raft.storage.hardState
            h.commit = max(h.commit, LogIndex(index))
            members[Int(id) - 1].replica!.raft.storage.setHardState(h)
        case .send(let to, let message):
            send(from: id, to: to, message)
        case .applied(let batch):
            try applied(id, batch)
        case .readDone(let token, nil):
            try check { () throws -> Void in
                try checker.readReady(ReadState(context: token, index: LogIndex(members[Int(id) - 1].replica!.appliedIndex)))
            }
            readsServed += 1
        case .writeSnapshot(let metadata, let state):
            guard members[Int(id) - 1].appliedIndex == metadata.index else {
                throw .safety(step: step, "seed \(seed): \(id) snapshots \(metadata.index) having applied \(members[Int(id) - 1].appliedIndex)")
            }
            members[Int(id) - 1].snapshotFile = SimSnapshotFile.encode(metadata, digest: members[Int(id) - 1].digest, state: state)
            // One snapshot kept: the log starts after it.
            return members[Int(id) - 1].replica!.snapshotWritten(index: metadata.index.value, oldestKept: metadata)
        case .streamSnapshot(let request):
            streamSnapshot(from: id, request)
        case .receiveSnapshotChunk(let chunk):
            receiveChunk(id, chunk)
        case .loadSnapshot(let metadata):
            guard let file = members[Int(id) - 1].installing.first(where: { $0.metadata == metadata })?.file,
                  let decoded = SimSnapshotFile.decode(file), let state = SimSnapshotFile.state(of: decoded.body) else {
                throw .safety(step: step, "seed \(seed): \(id) was told to install \(metadata.index) without a verified file")
            }
            try check { () throws -> Void in try checker.observeRestored(index: metadata.index, digest: decoded.digest, by: MemberID(id)) }
            members[Int(id) - 1].snapshotFile = file
            members[Int(id) - 1].appliedIndex = metadata.index
            members[Int(id) - 1].digest = decoded.digest
            members[Int(id) - 1].installing.removeAll { $0.metadata.index <= metadata.index }
            snapshotsInstalled += 1
            return members[Int(id) - 1].replica!.installSnapshot(state, now: now)
        case .count(let metric) where metric == "cairn_entries_undecodable_total":
            throw .safety(step: step, "seed \(seed): \(id) found a committed entry it cannot decode")
        case .retryPersist(let milliseconds):
            members[Int(id) - 1].retryDueStep = step + milliseconds
        case .writeFailed, .readDone, .membersChanged, .publishStatus, .log, .count:
            break
        }
        return []
    }

    /// The slow disk finished a persist: the hard state and entries are durable, the batch goes on.
    mutating func finishPersistIfDue(_ id: UInt64) throws(SimFailure) {
        guard let (_, hardState) = members[Int(id) - 1].persisting, members[Int(id) - 1].persistDueStep <= step else { return }
        members[Int(id) - 1].persisting = nil
        // A failed write or fsync leaves nothing durable (storage cuts back to what was before it).
        if faultsEnabled && random.chance(options.diskFailurePercent, in: 100) {
            diskFailures += 1
            return try execute(id, members[Int(id) - 1].replica!.persistFailed(reason: "simulated I/O error", now: now))
        }
        if let hardState { members[Int(id) - 1].replica!.raft.storage.setHardState(hardState) }
        try execute(id, members[Int(id) - 1].replica!.persisted(now: now))
    }

    /// State Machine Safety: every member applies the same entries in order, each index once.
    private mutating func applied(_ id: UInt64, _ batch: AppliedBatch) throws(SimFailure) {
        writesAnswered += batch.writes.count
        let highestTerm = liveIDs.compactMap { members[Int($0) - 1].replica?.raft.term }.max() ?? .zero
        for e in batch.entries {
            guard e.index == members[Int(id) - 1].appliedIndex + 1 else {
                throw .safety(step: step, "seed \(seed): \(id) applied \(e.index) after \(members[Int(id) - 1].appliedIndex)")
            }
            members[Int(id) - 1].appliedIndex = e.index
            members[Int(id) - 1].digest = ClusterChecker.digest(members[Int(id) - 1].digest, e)
        }
        try check { () throws -> Void in try checker.observeApplied(batch.entries, by: MemberID(id), highestTerm: highestTerm) }
        for token in batch.reads {
            try check { () throws -> Void in try checker.readReady(ReadState(context: token, index: LogIndex(batch.view.raftIndex))) }
            readsServed += 1
        }
    }

    private func check(_ body: () throws -> Void) throws(SimFailure) {
        do { try body() } catch { throw .safety(step: step, "seed \(seed): \(error)") }
    }

    /// The leader's side streams its current snapshot file in order, one chunk per step, over the faulty network.
    private mutating func streamSnapshot(from id: UInt64, _ request: SnapshotRequest) {
        guard let file = members[Int(id) - 1].snapshotFile, SimSnapshotFile.decode(file)?.metadata == request.metadata else {
            return members[Int(id) - 1].replica!.snapshotSent(to: request.to, success: false)
        }
        let streamID = nextStream
        nextStream += 1
        var stream = Stream(leader: id, to: request.to, ok: true, reportStep: step)
        let base = step + Int.random(in: 0...options.maxDelaySteps, using: &random)
        // At most 8 chunks or so, whatever the state's size: a stream of hundreds would rarely cross a lossy network whole.
        let chunkBytes = max(options.snapshotChunkBytes, file.count / 8 + 1)
        var offset = 0
        var k = 0
        while offset < file.count {
            let end = min(file.count, offset + chunkBytes)
            var m = request.chunk(from: MemberID(id), offset: UInt64(offset), data: Array(file[offset..<end]), isLast: end == file.count)
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
            let (type, payload) = PeerMessage.raft(m).frame
            for _ in 0..<copies {
                network.append(InFlight(deliverStep: deliver, order: random.next(), type: type, payload: payload, from: id,
                                        to: request.to.value, stream: streamID))
            }
        }
        streams[streamID] = stream
    }

    /// The follower's side: assembles chunks into a temporary file and offers a verified one to the Replica.
    private mutating func receiveChunk(_ id: UInt64, _ chunk: Message) {
        switch members[Int(id) - 1].receiver.receive(chunk) {
        case .drop: return
        case .start: members[Int(id) - 1].receiving = chunk.data
        case .append: members[Int(id) - 1].receiving += chunk.data
        }
        guard members[Int(id) - 1].receiver.complete else { return }
        let file = members[Int(id) - 1].receiving
        members[Int(id) - 1].receiver.reset()
        members[Int(id) - 1].receiving = []
        // A corrupted or mismatched file is dropped; the leader streams again.
        guard let decoded = SimSnapshotFile.decode(file), decoded.metadata.index == chunk.index,
              decoded.metadata.term == chunk.logTerm else { return }
        if members[Int(id) - 1].replica!.snapshotReceived(decoded.metadata) {
            members[Int(id) - 1].installing.append((decoded.metadata, file))
        }
    }

    /// Commitment by the configuration in effect: a commit index a leader reached by counting is durably held
    /// by a majority of the voters of its latest configuration, or of the one before it (a change may have been
    /// appended since the commit in the same step). Learners and a leader removing itself must not be counted.
    /// The commit index a leader inherits is not checked: the configuration that counted it may be one the new
    /// leader never saw (a removal after it), and single-server changes only promise overlapping majorities.
    mutating func checkCommitQuorum(_ leader: RaftNode<MemoryLogStorage>) throws {
        let id = leader.config.id
        let c = leader.commit
        let last = checkedCommit[id]
        checkedCommit[id] = (leader.term, c)
        guard let last, last.term == leader.term, last.commit < c else { return }
        guard c > leader.snapshot.index, let t = leader.term(at: c) else { return }
        func disk(_ m: Member) -> MemoryLogStorage { m.replica?.raft.storage ?? m.disk }
        func holds(_ voter: MemberID) -> Bool {
            guard voter.value >= 1, voter.value <= UInt64(members.count) else { return false }
            let m = members[Int(voter.value) - 1]
            return disk(m).snapshot.index >= c || disk(m).term(at: c) == t
        }
        let previous = leader.configIndex > .zero ? leader.membership(at: leader.configIndex - 1) : leader.membership
        for config in [leader.membership, previous] where config.voters.filter(holds).count > config.voters.count / 2 { return }
        let views = previous.members.map { v in
            let d = disk(members[Int(v.value) - 1])
            let p = leader.progress[v]
            return "\(v) disk \(d.firstIndex)...\(d.lastIndex)@\(d.term(at: d.lastIndex) ?? .zero) leader sees \(p.map { "\($0.state) match \($0.match)" } ?? "-")"
        }
        throw ClusterChecker.Violation(description: "commit quorum: \(id) committed \(c)@\(t) held by \(ids.map(MemberID.init).filter(holds)), voters \(leader.membership.voters) (before: \(previous.voters)); \(views.joined(separator: "; "))")
    }
}

/// The simulator's snapshot file: a length-prefixed `SnapshotMetadata` header, the applied digest, the state in the
/// product's snapshot body format (`ReplicaState`), then a CRC32C of everything before it.
package enum SimSnapshotFile {
    package static func encode(_ metadata: SnapshotMetadata, digest: UInt64, state: ReplicaState) -> [UInt8] {
        var sink = ByteSink()
        // An in-memory sink does not fail.
        try? state.write(to: &sink)
        return encode(metadata, digest: digest, body: sink.bytes)
    }

    package static func encode(_ metadata: SnapshotMetadata, digest: UInt64, body: [UInt8]) -> [UInt8] {
        var writer = ByteWriter()
        writer.lengthPrefixed(metadata.encoded())
        writer.u64(digest)
        writer.raw(body)
        writer.u32(CRC32C.checksum(writer.bytes))
        return writer.bytes
    }

    /// Nil for a file that is short, padded, or fails its checksum; the body is read by `state(of:)`.
    package static func decode(_ bytes: [UInt8]) -> (metadata: SnapshotMetadata, digest: UInt64, body: [UInt8])? {
        guard bytes.count >= 16 else { return nil }
        let body = Array(bytes[..<(bytes.count - 4)])
        var trailer = ByteReader(Array(bytes[(bytes.count - 4)...]))
        guard let crc = try? trailer.u32(), crc == CRC32C.checksum(body) else { return nil }
        var reader = ByteReader(body)
        guard let header = try? reader.lengthPrefixed(), let metadata = try? SnapshotMetadata(decoding: header),
              let digest = try? reader.u64() else { return nil }
        return (metadata, digest, reader.rest())
    }

    /// The state a body holds; nil for one that does not load.
    package static func state(of body: [UInt8]) -> ReplicaState? {
        var source = ByteSource(bytes: body)
        return try? ReplicaState.read(from: &source)
    }
}

/// A snapshot body written into memory.
struct ByteSink: SnapshotSink {
    var bytes: [UInt8] = []
    mutating func write(_ more: [UInt8]) throws { bytes += more }
}

/// A snapshot body read from memory.
struct ByteSource: SnapshotBodySource {
    let bytes: [UInt8]
    var offset = 0

    mutating func read(exactly count: Int) throws -> [UInt8] {
        guard count >= 0, count <= bytes.count - offset else { throw TreeSnapshotError.truncated }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    func isAtEnd() throws -> Bool { offset == bytes.count }
}
