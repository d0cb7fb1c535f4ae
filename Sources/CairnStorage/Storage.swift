// One node's data directory: its lock, hard state, log (through the group-commit writer) and snapshots.
// `Storage.open` is recovery: it refuses to start on any damage except a torn log tail, which it cuts and logs.
//
// Layout (all in the data directory): LOCK, hardstate, commit, wal-<first index>.log, snapshot-<last index>.snap.

package struct StorageOptions: Sendable {
    package var wal = WALOptions()
    /// Snapshots kept by `retain`; the log keeps every entry after the oldest of them.
    package var snapshotsKept = 2
    package var batchEntriesMax = 4096

    package init(wal: WALOptions = WALOptions(), snapshotsKept: Int = 2, batchEntriesMax: Int = 4096) {
        self.wal = wal
        self.snapshotsKept = snapshotsKept
        self.batchEntriesMax = batchEntriesMax
    }
}

/// flock on `<dir>/LOCK`: a second process (a node or the storage tool) gets `StorageError.locked`.
package final class DataDirectoryLock: Sendable {
    private let fs: FileSystem
    private let file: OpenFile

    package init(fs: FileSystem, directory: String) throws {
        self.fs = fs
        file = try fs.lock(joinPath(directory, "LOCK"))
    }

    package func release() { fs.close(file) }
}

package final class Storage: Sendable {
    package let fs: FileSystem
    package let directory: String
    package let options: StorageOptions
    package let writer: GroupCommitWriter
    private let lock: DataDirectoryLock
    private let commitRecords: CommitRecords

    /// Hard state as last loaded at open (its commit the newest of the file's and the commit records'); save term and
    /// vote changes with `saveHardState`, commit advances with `recordCommit`.
    package let recoveredHardState: HardState
    /// The member and cluster the directory was claimed for before this open (nil for a new directory).
    package let storedIdentity: MemberIdentity?

    /// - Parameter identity: when given, the directory must belong to this member (or be claimed for it now).
    package init(fs: FileSystem, directory: String, options: StorageOptions = StorageOptions(), identity: MemberIdentity? = nil,
                 logger: @escaping @Sendable (String) -> Void) throws {
        try fs.makeDirectory(directory)
        let lock = try DataDirectoryLock(fs: fs, directory: directory)
        do {
            storedIdentity = try MemberIdentity.read(fs: fs, directory: directory)
            try identity?.claim(fs: fs, directory: directory)
            try SnapshotFiles.removeAbandoned(fs: fs, directory: directory, logger: logger)
            let snapshots = try SnapshotFiles.list(fs: fs, directory: directory)
            var hardState = try HardStateFile.load(fs: fs, directory: directory) ?? HardState()
            let wal = try WAL.open(fs: fs, directory: directory, options: options.wal,
                                   initialIndex: (snapshots.last?.lastIndex ?? 0) + 1, logger: logger)
            if let newest = snapshots.last {
                let reader = try SnapshotReader(fs: fs, path: newest.path)
                let header = reader.header
                reader.close()
                try Self.alignLog(wal, with: header, logger: logger)
            }
            // Entries before the log's first one must be covered by a snapshot (or the log starts at 1).
            let covered = snapshots.last?.lastIndex ?? 0
            if wal.firstIndex > covered + 1 {
                let path = joinPath(directory, WALFormat.segmentName(wal.firstIndex))
                let first = wal.firstIndex
                wal.close()
                throw StorageError.corrupt(path: path, offset: 0, index: first,
                    reason: "log starts at \(first) but snapshots cover only up to \(covered): entries are missing")
            }
            // A commit index past the log's end cannot be trusted to name durable entries: never claim more.
            hardState.commit = min(max(hardState.commit, try CommitRecords.load(fs: fs, directory: directory)), wal.lastIndex)
            recoveredHardState = hardState
            do {
                commitRecords = try CommitRecords(fs: fs, directory: directory, commit: hardState.commit)
            } catch {
                wal.close()
                throw error
            }
            writer = GroupCommitWriter(wal: wal, batchEntriesMax: options.batchEntriesMax)
        } catch {
            lock.release()
            throw error
        }
        self.fs = fs
        self.directory = directory
        self.options = options
        self.lock = lock
    }

    package func close() {
        writer.close()
        commitRecords.close()
        lock.release()
    }

    /// Claims the directory for a member that learned its cluster's ID only after opening it (a joining member).
    package func claim(_ identity: MemberIdentity) throws {
        try identity.claim(fs: fs, directory: directory)
    }

    package func saveHardState(_ state: HardState) throws {
        try HardStateFile.save(state, fs: fs, directory: directory)
    }

    /// After a failed write or sync (a full disk, an I/O error, no descriptor left): brings the log back to what is
    /// durable on disk and clears the failure, or throws while the disk still fails (see `GroupCommitWriter.recover`).
    package func recover() throws {
        try writer.recover()
    }

    /// Records that the log is committed through `index`, without an fsync (see `CommitRecords`). Every entry through
    /// `index` must already be durable in the log.
    package func recordCommit(_ index: UInt64) {
        commitRecords.record(index)
    }

    /// Complete snapshot files, oldest first (headers are read by opening a `SnapshotReader`).
    package func snapshots() throws -> [(lastIndex: UInt64, path: String)] {
        try SnapshotFiles.list(fs: fs, directory: directory)
    }

    /// Where the complete snapshot of the log through `lastIndex` lives.
    package func snapshotPath(lastIndex: UInt64) -> String {
        joinPath(directory, SnapshotFormat.name(lastIndex))
    }

    package func receiveSnapshot() throws -> ReceivedSnapshotFile {
        try ReceivedSnapshotFile(fs: fs, directory: directory)
    }

    /// After a snapshot from the leader is installed (its file renamed into place): align the log with it, then
    /// drop what the snapshots kept no longer need.
    package func adoptReceivedSnapshot(_ header: SnapshotHeader) throws {
        try writer.withLog { try Self.alignLog($0, with: header, logger: { _ in }) }
        try retain()
    }

    /// The log continues the newest snapshot only if it holds the snapshot's last entry with the same term or starts
    /// right after it; otherwise (a leader's snapshot replaced a log that had diverged or fallen behind, and a crash
    /// came before the log was reset) it starts over after the snapshot. A member's own snapshots always qualify.
    private static func alignLog(_ wal: WAL, with header: SnapshotHeader, logger: @Sendable (String) -> Void) throws {
        // A log starting after the snapshot's next entry is missing entries: left for the caller to refuse.
        if wal.firstIndex >= header.lastIndex + 1 { return }
        if wal.lastIndex >= header.lastIndex, wal.term(at: header.lastIndex) == header.lastTerm { return }
        logger("storage: the log (\(wal.firstIndex)...\(wal.lastIndex)) does not continue snapshot \(header.lastIndex) "
               + "(term \(header.lastTerm)); it starts over after the snapshot")
        try wal.reset(nextIndex: header.lastIndex + 1)
    }

    package func beginSnapshot(_ header: SnapshotHeader) throws -> SnapshotWriter {
        try SnapshotWriter(fs: fs, directory: directory, header: header)
    }

    /// Keeps the newest `options.snapshotsKept` snapshots and deletes older ones, then deletes log segments
    /// wholly covered by the oldest snapshot kept. Call after a snapshot's `finish`.
    package func retain() throws {
        let all = try snapshots()
        guard all.count >= options.snapshotsKept, options.snapshotsKept > 0 else { return }
        let doomed = all.dropLast(options.snapshotsKept)
        for s in doomed { try fs.remove(s.path) }
        if !doomed.isEmpty { try fs.syncDirectory(directory) }
        let oldestKept = all[all.count - options.snapshotsKept].lastIndex
        try writer.withLog { try $0.compactPrefix(through: oldestKept) }
    }
}
