// The Raft core's view of the durable log: the write-ahead log in `CairnStorage`, with the term of every entry
// mirrored here so the core's many term look-ups never wait on the writer's lock while a batch fsyncs.
// Owned by the node queue; entries are read back from disk only for followers that are behind.
import CairnRaft
import CairnStorage

final class RaftLog: RaftLogStorage {
    private let writer: GroupCommitWriter
    private(set) var firstIndex: LogIndex
    /// Terms of the entries from `firstIndex` on.
    private var terms: [Term]
    /// The entry just before `firstIndex` (the newest snapshot's last entry, or index 0).
    private var base: (index: LogIndex, term: Term)
    /// A log read fails only on damage; stopping with the reason beats replicating a guess.
    private let readFailed: (Error) -> Never

    init(writer: GroupCommitWriter, snapshot: (index: UInt64, term: UInt64)?, readFailed: @escaping (Error) -> Never) throws {
        self.writer = writer
        self.readFailed = readFailed
        let (first, terms) = try writer.withLog { wal in
            (wal.firstIndex, (wal.firstIndex..<(wal.lastIndex + 1)).map { Term(wal.term(at: $0)!) })
        }
        firstIndex = LogIndex(first)
        self.terms = terms
        if let snapshot, snapshot.index == first - 1 {
            base = (LogIndex(snapshot.index), Term(snapshot.term))
        } else {
            base = (LogIndex(first - 1), .zero)
        }
    }

    var lastIndex: LogIndex { firstIndex + UInt64(terms.count) - 1 }

    func term(at index: LogIndex) -> Term? {
        if index == base.index { return base.term }
        guard index >= firstIndex, index <= lastIndex else { return nil }
        return terms[Int(index.value - firstIndex.value)]
    }

    func entries(from: LogIndex, through: LogIndex, maxBytes: Int) -> [Entry] {
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

    /// Writes a batch from the core (dropping any stored suffix it replaces) and waits until it is durable.
    /// Runs off the node queue; the node calls `didPersist` on its queue afterwards.
    static func write(_ entries: [Entry], to writer: GroupCommitWriter) throws {
        guard let first = entries.first else { return }
        try writer.withLog { wal in
            if first.index.value <= wal.lastIndex { try wal.truncateSuffix(after: first.index.value - 1) }
        }
        try writer.append(entries.map(LogEntryRecord.init))
    }

    /// Mirrors a batch that `write` made durable.
    func didPersist(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        if first.index <= lastIndex { terms.removeSubrange(Int(first.index.value - firstIndex.value)...) }
        terms.append(contentsOf: entries.map(\.term))
    }

    /// Mirrors the storage's compaction (whole segments before the oldest snapshot kept leave the disk).
    func didCompact() {
        let newFirst: LogIndex
        do { newFirst = LogIndex(try writer.withLog { $0.firstIndex }) } catch { readFailed(error) }
        guard newFirst > firstIndex else { return }
        let newBase = (newFirst - 1, term(at: newFirst - 1) ?? .zero)
        terms.removeFirst(min(terms.count, Int(newFirst.value - firstIndex.value)))
        firstIndex = newFirst
        base = newBase
    }
}

extension Entry {
    /// nil for a record kind the core does not know.
    init?(_ record: LogEntryRecord) {
        guard let kind = EntryKind(rawValue: record.kind) else { return nil }
        self.init(term: Term(record.term), index: LogIndex(record.index), clusterTimeNanos: record.clusterTimeNanos,
                  kind: kind, data: record.payload)
    }
}

extension LogEntryRecord {
    init(_ entry: Entry) {
        self.init(index: entry.index.value, term: entry.term.value, kind: entry.kind.rawValue,
                  clusterTimeNanos: entry.clusterTimeNanos, payload: entry.data)
    }
}
