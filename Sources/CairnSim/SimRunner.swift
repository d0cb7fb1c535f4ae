// The simulator's runner for each member: it executes a Replica's actions as the server's runner does, through the
// server's storage code (`MemberStorage`) on the member's simulated file system, slow and failing, and the faulty
// network; and checks what the members apply against each other.
import CairnBase
import CairnMemberStorage
import CairnRaft
import CairnReplica
import CairnStorage
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
        case .persist(let entries, let hardState, let recoverFirst):
            members[Int(id) - 1].persisting = (entries, hardState, recoverFirst)
            let slow = faultsEnabled && random.chance(options.slowDiskPercent, in: 100)
            members[Int(id) - 1].persistDueStep = step + (slow ? Int.random(in: 1...5, using: &random) : 0)
            return []
        case .recordCommit(let index):
            members[Int(id) - 1].storage!.recordCommit(index)
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
            let digest = members[Int(id) - 1].digest
            if let other = snapshotDigests[metadata.index], other != digest {
                throw .safety(step: step, "seed \(seed): \(id) snapshots \(metadata.index) with a state another member's snapshot there lacks")
            }
            snapshotDigests[metadata.index] = digest
            let storage = members[Int(id) - 1].storage!, initial = members[Int(id) - 1].replica!.initialMembership
            // A full disk refuses the snapshot file; the member goes on with its log and snapshots later.
            let full = faultsEnabled && random.chance(options.diskFailurePercent, in: 100)
            if full { members[Int(id) - 1].fs.limitSpace(bytes: 0) }
            let outcome = Result { () throws -> SnapshotMetadata? in
                try MemberStorage.writeSnapshot(metadata, state, to: storage)
                return try MemberStorage.retain(storage, initial: initial)
            }
            members[Int(id) - 1].fs.limitSpace(bytes: nil)
            let oldestKept: SnapshotMetadata?
            switch outcome {
            case .success(let oldest): oldestKept = oldest
            case .failure(let error):
                guard full else { throw .safety(step: step, "seed \(seed): \(id) failed to write snapshot \(metadata.index) on a working disk: \(error)") }
                diskFailures += 1
                members[Int(id) - 1].replica!.snapshotFailed()
                return []
            }
            return members[Int(id) - 1].replica!.snapshotWritten(index: metadata.index.value, oldestKept: oldestKept)
        case .streamSnapshot(let request):
            streamSnapshot(from: id, request)
        case .receiveSnapshotChunk(let chunk):
            try receiveChunk(id, chunk)
        case .loadSnapshot(let metadata):
            guard let path = members[Int(id) - 1].installing.first(where: { $0.metadata == metadata })?.path,
                  let digest = snapshotDigests[metadata.index] else {
                throw .safety(step: step, "seed \(seed): \(id) was told to install \(metadata.index) without a verified file")
            }
            let state: ReplicaState
            do { state = try MemberStorage.adoptReceived(path: path, storage: members[Int(id) - 1].storage!) } catch {
                throw .safety(step: step, "seed \(seed): \(id) cannot load the snapshot file it verified: \(error)")
            }
            try check { () throws -> Void in try checker.observeRestored(index: metadata.index, digest: digest, by: MemberID(id)) }
            members[Int(id) - 1].appliedIndex = metadata.index
            members[Int(id) - 1].digest = digest
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

    /// The slow disk's turn: the batch's entries and hard state go through storage (after cutting back what a failed
    /// persist left, when the Replica retries one), on a disk that may fail the fsync with EIO or be full.
    mutating func finishPersistIfDue(_ id: UInt64) throws(SimFailure) {
        guard let persisting = members[Int(id) - 1].persisting, members[Int(id) - 1].persistDueStep <= step else { return }
        members[Int(id) - 1].persisting = nil
        let fs = members[Int(id) - 1].fs, storage = members[Int(id) - 1].storage!
        let failing = faultsEnabled && random.chance(options.diskFailurePercent, in: 100)
        if failing {
            if random.chance(1, in: 2) { fs.failSyncs(errno: 5) } else { fs.limitSpace(bytes: 0) }
        }
        let outcome = Result { () throws in
            if persisting.recoverFirst { try storage.recover() }
            try MemberStorage.persist(persisting.entries, hardState: persisting.hardState, to: storage)
        }
        fs.failSyncs(errno: nil)
        fs.limitSpace(bytes: nil)
        switch outcome {
        case .success:
            try execute(id, members[Int(id) - 1].replica!.persisted(now: now))
        case .failure(let error):
            guard failing else { throw .safety(step: step, "seed \(seed): \(id) failed to persist on a working disk: \(error)") }
            diskFailures += 1
            try execute(id, members[Int(id) - 1].replica!.persistFailed(reason: "\(error)", now: now))
        }
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
        guard let file = snapshotFile(id, index: request.metadata.index) else {
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

    /// The leader's snapshot file for `index`, whole; nil once storage removed it (a newer one replaced it).
    private func snapshotFile(_ id: UInt64, index: LogIndex) -> [UInt8]? {
        let storage = members[Int(id) - 1].storage!
        guard let file = try? storage.fs.open(storage.snapshotPath(lastIndex: index.value), create: false) else { return nil }
        defer { storage.fs.close(file) }
        guard let size = try? storage.fs.size(file), size <= UInt64(members[Int(id) - 1].receiver.fileBytesMax) else { return nil }
        return try? storage.fs.read(file, at: 0, count: Int(size))
    }

    /// The follower's side, as the server's: chunks go into storage's temporary file, a complete one is verified and
    /// renamed into place, and offered to the Replica (removed again if refused).
    private mutating func receiveChunk(_ id: UInt64, _ chunk: Message) throws(SimFailure) {
        let storage = members[Int(id) - 1].storage!
        do {
            switch members[Int(id) - 1].receiver.receive(chunk) {
            case .drop: return
            case .start:
                members[Int(id) - 1].receiving?.abort()
                let file = try storage.receiveSnapshot()
                members[Int(id) - 1].receiving = file
                try file.append(chunk.data)
            case .append:
                guard let file = members[Int(id) - 1].receiving else { return members[Int(id) - 1].receiver.reset() }
                try file.append(chunk.data)
            }
        } catch {
            throw .safety(step: step, "seed \(seed): \(id) failed to receive a snapshot chunk on a working disk: \(error)")
        }
        guard members[Int(id) - 1].receiver.complete, let file = members[Int(id) - 1].receiving else { return }
        members[Int(id) - 1].receiver.reset()
        members[Int(id) - 1].receiving = nil
        // A corrupted file fails verification and a mismatched one is removed; the leader streams again.
        guard let (path, header) = try? file.finish() else { return }
        let initial = members[Int(id) - 1].replica!.initialMembership
        guard let metadata = try? MemberStorage.metadata(of: header, initial: initial), metadata.index == chunk.index,
              metadata.term == chunk.logTerm, members[Int(id) - 1].replica!.snapshotReceived(metadata) else {
            try? storage.fs.remove(path)
            return
        }
        members[Int(id) - 1].installing.append((metadata, path))
    }

    /// Commitment by the configuration in effect: a commit index a leader reached by counting is durably held
    /// by a majority of the voters of its latest configuration, or of the one before it (a change may have been
    /// appended since the commit in the same step). Learners and a leader removing itself must not be counted.
    /// The commit index a leader inherits is not checked: the configuration that counted it may be one the new
    /// leader never saw (a removal after it), and single-server changes only promise overlapping majorities.
    mutating func checkCommitQuorum(_ leader: RaftNode<RaftLog>) throws {
        let id = leader.config.id
        let c = leader.commit
        let last = checkedCommit[id]
        checkedCommit[id] = (leader.term, c)
        guard let last, last.term == leader.term, last.commit < c else { return }
        guard c > leader.snapshot.index, let t = leader.term(at: c) else { return }
        func disk(_ m: Member) -> RaftLog? { m.replica?.raft.storage ?? m.disk }
        func holds(_ voter: MemberID) -> Bool {
            guard voter.value >= 1, voter.value <= UInt64(members.count), let d = disk(members[Int(voter.value) - 1]) else { return false }
            return d.snapshot.index >= c || d.term(at: c) == t
        }
        let previous = leader.configIndex > .zero ? leader.membership(at: leader.configIndex - 1) : leader.membership
        for config in [leader.membership, previous] where config.voters.filter(holds).count > config.voters.count / 2 { return }
        let views = previous.members.map { v in
            let d = disk(members[Int(v.value) - 1])
            let p = leader.progress[v]
            return "\(v) disk \(d.map { "\($0.firstIndex)...\($0.lastIndex)@\($0.term(at: $0.lastIndex) ?? .zero)" } ?? "-") leader sees \(p.map { "\($0.state) match \($0.match)" } ?? "-")"
        }
        throw ClusterChecker.Violation(description: "commit quorum: \(id) committed \(c)@\(t) held by \(ids.map(MemberID.init).filter(holds)), voters \(leader.membership.voters) (before: \(previous.voters)); \(views.joined(separator: "; "))")
    }
}
