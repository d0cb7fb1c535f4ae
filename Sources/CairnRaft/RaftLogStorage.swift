// The stable part of the Raft log as the core sees it, and an in-memory implementation for tests and the simulator.
// The storage module plugs a durable log in behind the same protocol.

package protocol RaftLogStorage {
    /// Index of the first entry held: `snapshot.index + 1`.
    var firstIndex: LogIndex { get }
    /// Index of the last persisted entry; firstIndex - 1 when empty.
    var lastIndex: LogIndex { get }
    /// Term of the entry at `index`; `.zero` for index 0, `snapshot.term` at `snapshot.index`; nil when not held
    /// (compacted or beyond the end).
    func term(at index: LogIndex) -> Term?
    /// Entries in `range` (inclusive bounds, at or after firstIndex), stopping once `maxBytes` is exceeded (at least one entry).
    func entries(from: LogIndex, through: LogIndex, maxBytes: Int) -> [Entry]
    /// The snapshot the log starts after (`SnapshotMetadata.none` before any compaction). Persisted with the log:
    /// a restart must see the same prefix dropped.
    var snapshot: SnapshotMetadata { get }
    /// The config-change entries held, oldest first. A restart needs only these of the whole log; the default reads
    /// every entry to find them, a storage that knows where they are reads just them.
    func configChangeEntries() -> [Entry]
}

extension RaftLogStorage {
    package func configChangeEntries() -> [Entry] {
        var result: [Entry] = []
        var i = firstIndex
        while i <= lastIndex {
            let batch = entries(from: i, through: lastIndex, maxBytes: 1 << 20)
            result += batch.filter { $0.kind == .configChange }
            i = i + UInt64(batch.count)
        }
        return result
    }
}

package struct MemoryLogStorage: RaftLogStorage, Sendable {
    /// Entries after the snapshot: stored[0] is at firstIndex.
    package private(set) var stored: [Entry] = []
    package private(set) var hardState = HardState()
    package private(set) var snapshot = SnapshotMetadata.none

    package init() {}

    package var firstIndex: LogIndex { snapshot.index + 1 }
    package var lastIndex: LogIndex { snapshot.index + UInt64(stored.count) }

    package func term(at index: LogIndex) -> Term? {
        if index == snapshot.index { return snapshot.term }
        guard index > snapshot.index, index <= lastIndex else { return nil }
        return stored[position(index)].term
    }

    package func entries(from: LogIndex, through: LogIndex, maxBytes: Int) -> [Entry] {
        precondition(from >= firstIndex, "entries from \(from) before first index \(firstIndex)")
        var result: [Entry] = []
        var bytes = 0
        var i = from
        while i <= through && i <= lastIndex {
            let e = stored[position(i)]
            bytes += e.sizeBytes
            if !result.isEmpty && bytes > maxBytes { break }
            result.append(e)
            i = i + 1
        }
        return result
    }

    private func position(_ index: LogIndex) -> Int { Int(index.value - snapshot.index.value) - 1 }

    /// Appends entries, first dropping any stored suffix they overwrite (a follower's truncation).
    package mutating func append(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        precondition(first.index >= firstIndex && first.index <= lastIndex + 1, "gap in log append at \(first.index)")
        stored.removeSubrange(position(first.index)...)
        stored.append(contentsOf: entries)
    }

    package mutating func setHardState(_ state: HardState) { hardState = state }

    /// Makes `metadata` the snapshot the log starts after: entries through its index are dropped, and the whole
    /// log too when it does not hold that entry with that term (a snapshot from a leader replacing a divergent
    /// log). Compaction after a local snapshot and installing a received one are the same operation.
    package mutating func applySnapshot(_ metadata: SnapshotMetadata) {
        guard metadata.index > snapshot.index else { return }
        if term(at: metadata.index) == metadata.term {
            stored.removeFirst(Int(metadata.index.value - snapshot.index.value))
        } else {
            stored = []
        }
        snapshot = metadata
    }
}
