// A member's durable state on `CairnStorage`, shared by the server's runner and the simulator: recovery of a Replica
// from its data directory, a batch's persist, and snapshot files as Replica state. No queue, thread or clock.
import CairnBase
import CairnRaft
import CairnReplica
import CairnStorage
import CairnStore

package enum MemberStorage {
    /// Recovers from `storage`: the newest snapshot's state; the log after the oldest snapshot kept whose next entry
    /// the log still holds, so a follower a little behind the newest snapshot still catches up from the log.
    /// - Parameter readFailed: called when a later log read finds damage (a runner stops rather than replicate a guess).
    package static func recover(storage: Storage, options: ReplicaOptions, incarnation: UInt64, randomSeed: UInt64,
                                readFailed: @escaping (Error) -> Never) throws -> ReplicaRecovery<RaftLog> {
        let logged = try loggedInitialMembers(storage.writer)
        let initial = Replica<RaftLog>.initialMembership(logged: logged, options: options)
        let snapshots = try storage.snapshots()
        // Raft counts on from a snapshot's index: one near 2^64 (a crafted file) would overflow at the next entry.
        if let huge = snapshots.first(where: { $0.lastIndex > RaftLimits.indexMax }) {
            throw StorageError.corrupt(path: huge.path, offset: 0, index: huge.lastIndex, reason: "snapshot index beyond Raft's bound \(RaftLimits.indexMax)")
        }
        var newest: (state: ReplicaState, index: UInt64, clusterTimeNanos: Int64)?
        if let file = snapshots.last {
            let (state, header) = try loadSnapshot(fs: storage.fs, path: file.path)
            newest = (state, header.lastIndex, Int64(bitPattern: header.clusterTimeNanos))
        }
        let walFirst = try storage.writer.withLog { $0.firstIndex }
        var base = SnapshotMetadata.none
        if let oldest = snapshots.first(where: { $0.lastIndex + 1 >= walFirst }) {
            base = try metadata(of: try header(fs: storage.fs, path: oldest.path), initial: initial)
        }
        let log = try RaftLog(writer: storage.writer, snapshot: base, readFailed: readFailed)
        let recovered = storage.recoveredHardState
        // Raft would trap on the `+ 1` of a term this large (one forged heartbeat used to leave one on disk).
        guard recovered.term <= RaftLimits.termMax, recovered.commit <= RaftLimits.indexMax, log.lastIndex.value <= RaftLimits.indexMax else {
            throw StorageError.corrupt(path: storage.directory + "/hardstate", offset: 0, index: log.lastIndex.value,
                                       reason: "term \(recovered.term), commit \(recovered.commit) or last index \(log.lastIndex.value) is beyond Raft's bound \(RaftLimits.termMax)")
        }
        var hardState = CairnRaft.HardState(term: Term(recovered.term), vote: recovered.vote == 0 ? nil : MemberID(recovered.vote),
                                            commit: LogIndex(recovered.commit))
        // A batch's entries are durable before its hard state: a crash between leaves entries of a term the hard state
        // never reached. They came from that term's leader, so the member had taken the term, and had voted in it for
        // no one (a vote goes out only after the persist that records it). Saved, so the term holds from now on.
        if let lastTerm = log.term(at: log.lastIndex), lastTerm > hardState.term {
            hardState = CairnRaft.HardState(term: lastTerm, vote: nil, commit: hardState.commit)
            try storage.saveHardState(stored(hardState))
        }
        return ReplicaRecovery(log: log, hardState: hardState, snapshot: newest, loggedMembers: logged,
                               incarnation: incarnation, randomSeed: randomSeed)
    }

    /// The next committed entries a restart replays into `replica` (`Replica.replay`); empty once it is done. They
    /// follow its applied index up to the commit index, read in one sequential read of at most `bytesMax` bytes: the
    /// log is read once, in order, and never held whole in memory.
    package static func nextReplayEntries(for replica: Replica<RaftLog>, bytesMax: Int = replayReadBytesMax) throws -> [Entry] {
        try replayEntries(in: replica.raft.storage, from: LogIndex(replica.appliedIndex + 1), through: replica.raft.commit, bytesMax: bytesMax)
    }

    /// The entries from `from` through `commit` that one replay read brings (`nextReplayEntries`); empty past `commit`.
    package static func replayEntries(in log: RaftLog, from: LogIndex, through commit: LogIndex, bytesMax: Int = replayReadBytesMax) throws -> [Entry] {
        guard from <= commit else { return [] }
        return try log.entries(from: from, bytesMax: bytesMax).filter { $0.index <= commit }
    }

    /// One replay read: large enough that reading costs little per entry, small enough to keep memory flat.
    package static let replayReadBytesMax = 4 << 20

    /// Makes a batch's entries and changed hard state durable (the Replica's `persist` action).
    package static func persist(_ entries: [Entry], hardState: CairnRaft.HardState?, to storage: Storage) throws {
        try RaftLog.write(entries, to: storage.writer)
        if let hardState { try storage.saveHardState(stored(hardState)) }
    }

    package static func stored(_ hardState: CairnRaft.HardState) -> CairnStorage.HardState {
        CairnStorage.HardState(term: hardState.term.value, vote: hardState.vote?.value ?? 0, commit: hardState.commit.value)
    }

    /// The members of the log's bootstrap entry, when the log still starts at its first entry (no snapshot yet).
    private static func loggedInitialMembers(_ writer: GroupCommitWriter) throws -> [MemberRecord]? {
        let records = try writer.withLog { wal -> [LogEntryRecord] in
            guard wal.firstIndex == 1, wal.lastIndex >= 1 else { return [] }
            return try wal.entries(1..<(min(wal.lastIndex, Replica<RaftLog>.loggedMembersEntriesMax) + 1))
        }
        return Replica<RaftLog>.loggedMembers(in: records.compactMap(Entry.init))
    }

    // MARK: - Snapshot files

    /// A snapshot file's state; its body checksum is checked before any of it is used.
    package static func loadSnapshot(fs: FileSystem, path: String) throws -> (state: ReplicaState, header: SnapshotHeader) {
        let reader = try SnapshotReader(fs: fs, path: path)
        defer { reader.close() }
        var source = SnapshotChunks(reader: reader)
        return (try ReplicaState.read(from: &source), reader.header)
    }

    package static func header(fs: FileSystem, path: String) throws -> SnapshotHeader {
        let reader = try SnapshotReader(fs: fs, path: path)
        defer { reader.close() }
        return reader.header
    }

    /// What the core knows of a snapshot file; a file without membership (none was recorded) has the initial one.
    package static func metadata(of header: SnapshotHeader, initial: Membership) throws -> SnapshotMetadata {
        SnapshotMetadata(index: LogIndex(header.lastIndex), term: Term(header.lastTerm), clusterTimeNanos: header.clusterTimeNanos,
                         membership: header.membership.isEmpty ? initial : try Membership(decoding: header.membership))
    }

    /// Writes the Replica's state as the snapshot file of `metadata` (the Replica's `writeSnapshot` action).
    package static func writeSnapshot(_ metadata: SnapshotMetadata, _ state: ReplicaState, to storage: Storage) throws {
        let header = SnapshotHeader(lastIndex: metadata.index.value, lastTerm: metadata.term.value,
                                    clusterTimeNanos: metadata.clusterTimeNanos, membership: metadata.membership.encoded())
        let writer = try storage.beginSnapshot(header)
        var sink = SnapshotFileSink(writer: writer)
        do {
            try state.write(to: &sink)
            _ = try writer.finish()
        } catch {
            writer.abort()
            throw error
        }
    }

    /// After a snapshot is written: drops the snapshots and log segments no longer needed, and returns the oldest
    /// snapshot kept, which the core's log starts after (`Replica.snapshotWritten`).
    package static func retain(_ storage: Storage, initial: Membership) throws -> SnapshotMetadata? {
        try storage.retain()
        return try storage.snapshots().first.map { try metadata(of: try header(fs: storage.fs, path: $0.path), initial: initial) }
    }

    /// The state of a received, verified snapshot file, with the file adopted as the member's newest snapshot.
    package static func adoptReceived(path: String, storage: Storage) throws -> ReplicaState {
        let (state, header) = try loadSnapshot(fs: storage.fs, path: path)
        try storage.adoptReceivedSnapshot(header)
        return state
    }
}

/// A snapshot file's body as a snapshot source: exact reads across the file's chunks.
package struct SnapshotChunks: SnapshotBodySource {
    let reader: SnapshotReader
    var buffer: [UInt8] = []
    var offset = 0

    package init(reader: SnapshotReader) {
        self.reader = reader
    }

    package mutating func read(exactly count: Int) throws -> [UInt8] {
        while buffer.count - offset < count {
            guard let chunk = try reader.next() else { throw TreeSnapshotError.truncated }
            buffer = Array(buffer[offset...]) + chunk
            offset = 0
        }
        defer { offset += count }
        return Array(buffer[offset..<(offset + count)])
    }

    /// True when the file has no byte left to read (reads the next chunk to know).
    package mutating func isAtEnd() throws -> Bool {
        while offset == buffer.count {
            guard let chunk = try reader.next() else { return true }
            buffer = chunk
            offset = 0
        }
        return false
    }
}

/// The key space's snapshot stream into a snapshot file.
package struct SnapshotFileSink: SnapshotSink {
    let writer: SnapshotWriter
    package init(writer: SnapshotWriter) { self.writer = writer }
    package func write(_ bytes: [UInt8]) throws { try writer.write(bytes) }
}
