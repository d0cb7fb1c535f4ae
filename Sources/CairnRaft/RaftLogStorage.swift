// The stable part of the Raft log as the core sees it, and an in-memory implementation for tests and the simulator.
// The storage module plugs a durable log in behind the same protocol.

package protocol RaftLogStorage {
    /// Index of the first entry held (1 until compaction exists).
    var firstIndex: LogIndex { get }
    /// Index of the last persisted entry; firstIndex - 1 when empty.
    var lastIndex: LogIndex { get }
    /// Term of the entry at `index`; `.zero` for index 0; nil when not held.
    func term(at index: LogIndex) -> Term?
    /// Entries in `range` (inclusive bounds), stopping once `maxBytes` is exceeded (at least one entry).
    func entries(from: LogIndex, through: LogIndex, maxBytes: Int) -> [Entry]
}

package struct MemoryLogStorage: RaftLogStorage, Sendable {
    package private(set) var stored: [Entry] = []
    package private(set) var hardState = HardState()

    package init() {}

    package var firstIndex: LogIndex { LogIndex(1) }
    package var lastIndex: LogIndex { LogIndex(UInt64(stored.count)) }

    package func term(at index: LogIndex) -> Term? {
        if index.value == 0 { return .zero }
        guard index.value <= UInt64(stored.count) else { return nil }
        return stored[Int(index.value) - 1].term
    }

    package func entries(from: LogIndex, through: LogIndex, maxBytes: Int) -> [Entry] {
        var result: [Entry] = []
        var bytes = 0
        var i = from.value
        while i <= through.value && i <= UInt64(stored.count) {
            let e = stored[Int(i) - 1]
            bytes += e.sizeBytes
            if !result.isEmpty && bytes > maxBytes { break }
            result.append(e)
            i += 1
        }
        return result
    }

    /// Appends entries, first dropping any stored suffix they overwrite (a follower's truncation).
    package mutating func append(_ entries: [Entry]) {
        guard let first = entries.first else { return }
        precondition(first.index.value >= 1 && first.index.value <= UInt64(stored.count) + 1, "gap in log append")
        stored.removeSubrange((Int(first.index.value) - 1)...)
        stored.append(contentsOf: entries)
    }

    package mutating func setHardState(_ state: HardState) { hardState = state }
}
