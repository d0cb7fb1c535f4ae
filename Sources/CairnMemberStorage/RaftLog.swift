// The Raft core's view of the durable log: the write-ahead log in `CairnStorage`, with the term of every entry
// mirrored here so the core's many term look-ups never wait on the writer's lock while a batch fsyncs.
// Owned by the node queue (or the simulator's member); entries are read back from disk only for followers behind.
import CairnRaft
import CairnReplica
import CairnStorage

package final class RaftLog: ReplicaLog {
    private let writer: GroupCommitWriter
    /// The snapshot the log starts after: the newest one taken or installed. The write-ahead log may still hold
    /// entries before it (storage drops whole segments, behind the oldest snapshot kept); the core never sees them.
    package private(set) var snapshot: SnapshotMetadata
    /// Terms of the entries after the snapshot.
    private var terms: [Term]
    /// A log read fails only on damage; stopping with the reason beats replicating a guess.
    private let readFailed: (Error) -> Never

    package init(writer: GroupCommitWriter, snapshot: SnapshotMetadata, readFailed: @escaping (Error) -> Never) throws {
        self.writer = writer
        self.readFailed = readFailed
        self.snapshot = snapshot
        terms = try writer.withLog { wal in wal.terms(from: snapshot.index.value + 1).map(Term.init) }
    }

    package var firstIndex: LogIndex { snapshot.index + 1 }
    package var lastIndex: LogIndex { snapshot.index + UInt64(terms.count) }

    package func term(at index: LogIndex) -> Term? {
        if index == snapshot.index { return snapshot.term }
        guard index > snapshot.index, index <= lastIndex else { return nil }
        return terms[Int(index.value - firstIndex.value)]
    }

    package func entries(from: LogIndex, through: LogIndex, maxBytes: Int) -> [Entry] {
        guard from >= firstIndex, from <= through else { return [] }
        let last = min(through, lastIndex)
        var result: [Entry] = []
        var bytes = 0
        var next = from
        while next <= last {
            let upTo = min(last.value + 1, next.value + 256)
            let records: [LogEntryRecord]
            do {
                records = try writer.withLog { try $0.entries(next.value..<upTo) }
            } catch {
                readFailed(error)
            }
            for record in records {
                guard let entry = Entry(record) else { readFailed(StorageError.corrupt(path: "log", offset: 0, index: record.index, reason: "unknown entry kind \(record.kind)")) }
                bytes += entry.sizeBytes
                if !result.isEmpty && bytes > maxBytes { return result }
                result.append(entry)
            }
            next = LogIndex(upTo)
        }
        return result
    }

    /// Read from where recovery found them (the write-ahead log keeps every entry's kind): not the whole log.
    package func configChangeEntries() -> [Entry] {
        let indexes: [UInt64]
        do { indexes = try writer.withLog { $0.indexes(ofKind: EntryKind.configChange.rawValue, from: firstIndex.value) } } catch {
            readFailed(error)
        }
        return indexes.flatMap { entries(from: LogIndex($0), through: LogIndex($0), maxBytes: .max) }
    }

    /// Entries from `from` on, as many as fit in `bytesMax` bytes of records (at least one), in one sequential read per
    /// segment: a restart walks its committed log with these. Empty past the last entry.
    package func entries(from: LogIndex, bytesMax: Int) throws -> [Entry] {
        guard from >= firstIndex, from <= lastIndex else { return [] }
        return try writer.withLog { try $0.entries(from.value..<(lastIndex.value + 1), bytesMax: bytesMax) }.map { record in
            guard let entry = Entry(record) else {
                throw StorageError.corrupt(path: "log", offset: 0, index: record.index, reason: "unknown entry kind \(record.kind)")
            }
            return entry
        }
    }

    /// Writes a batch from the core (dropping any stored suffix it replaces) and waits until it is durable.
    /// The server runs it off the node queue and calls `didPersist` (through `Replica.persisted`) on its queue afterwards.
    package static func write(_ entries: [Entry], to writer: GroupCommitWriter) throws {
        guard let first = entries.first else { return }
        try writer.withLog { wal in
            if first.index.value <= wal.lastIndex { try wal.truncateSuffix(after: first.index.value - 1) }
        }
        try writer.append(entries.map(LogEntryRecord.init))
    }

    /// Mirrors a batch that `write` made durable.
    package func didPersist(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        if first.index <= lastIndex { terms.removeSubrange(Int(first.index.value - firstIndex.value)...) }
        terms.append(contentsOf: entries.map(\.term))
    }

    /// Makes `metadata` the snapshot the log starts after: the entries it covers leave the core's view, and the whole
    /// log does when it does not hold the snapshot's last entry with that term (a leader's snapshot replacing it).
    /// The disk follows: storage aligns and compacts the write-ahead log.
    package func applySnapshot(_ metadata: SnapshotMetadata) {
        guard metadata.index > snapshot.index else { return }
        if term(at: metadata.index) == metadata.term {
            terms.removeFirst(Int(metadata.index.value - snapshot.index.value))
        } else {
            terms = []
        }
        snapshot = metadata
    }
}

extension Entry {
    /// nil for a record kind the core does not know.
    package init?(_ record: LogEntryRecord) {
        guard let kind = EntryKind(rawValue: record.kind) else { return nil }
        self.init(term: Term(record.term), index: LogIndex(record.index), clusterTimeNanos: record.clusterTimeNanos,
                  kind: kind, data: record.payload)
    }
}

extension LogEntryRecord {
    package init(_ entry: Entry) {
        self.init(index: entry.index.value, term: entry.term.value, kind: entry.kind.rawValue,
                  clusterTimeNanos: entry.clusterTimeNanos, payload: entry.data)
    }
}
