// Raft's hard state (term, vote, commit): term and vote in a small file replaced atomically (they change on elections,
// rare), and the commit index, which moves every batch, also as checksummed records appended to a file without an fsync.

import CairnBase
import Synchronization

package struct HardState: Equatable, Sendable {
    package var term: UInt64
    package var vote: UInt64  // 0 = no vote
    package var commit: UInt64

    package init(term: UInt64 = 0, vote: UInt64 = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// Format: magic "CAIRNHS1" | term u64 | vote u64 | commit u64 | CRC32C u32 of the preceding 32 bytes.
/// The file only ever appears by rename of a fully synced temporary, so any damage to it refuses the start.
package enum HardStateFile {
    static let name = "hardstate"
    static let magic: [UInt8] = Array("CAIRNHS1".utf8)

    /// The saved state, or nil when none was ever saved.
    package static func load(fs: FileSystem, directory: String) throws -> HardState? {
        guard let fields = try MetadataFile.read(fs: fs, directory: directory, name: name, magic: magic, fieldCount: 3, what: "hard state") else {
            return nil
        }
        return HardState(term: fields[0], vote: fields[1], commit: fields[2])
    }

    /// Durable when this returns: temp file written and synced, renamed over the old one, directory synced.
    package static func save(_ state: HardState, fs: FileSystem, directory: String) throws {
        try MetadataFile.replace(fs: fs, directory: directory, name: name, magic: magic, fields: [state.term, state.vote, state.commit])
    }
}

/// The commit index between hard-state saves, so a member restarted without a leader applies what it knew was committed.
///
/// Format: a file `commit` of 16-byte records, magic "CMIT" | commit u64 | CRC32C u32 of the preceding 12 bytes, written
/// one after another from offset 0 and never rewritten; the file is created full-size (zeros after the first record) so
/// an append never allocates a block. Loading takes the largest valid record: a torn or lost record only makes the
/// index older, which is safe.
///
/// Why no fsync: a record is written only after every entry it covers was made durable by the log's own fdatasync (the
/// caller's rule), so whatever part of the file survives a power loss never claims an entry the log may have lost, and
/// a process crash loses nothing (the page cache keeps it). Each open starts a new file (write, sync, rename, sync the
/// directory) holding the commit recovered, and so does every `commitRecordsMax`-th record: the file stays bounded.
package final class CommitRecords: Sendable {
    static let name = "commit"
    static let magic: [UInt8] = Array("CMIT".utf8)
    static let recordBytes = 16
    /// Records per file before it is replaced by one holding only the newest commit (one fsync per this many batches).
    package static let commitRecordsMax = 4096

    private struct State {
        var file: OpenFile?
        var written = 0
        var newest: UInt64
    }

    private let fs: FileSystem
    private let directory: String
    private let state: Mutex<State>

    /// The largest commit index recorded in `directory` (0 when none).
    package static func load(fs: FileSystem, directory: String) throws -> UInt64 {
        let path = joinPath(directory, name)
        guard try fs.list(directory).contains(name) else { return 0 }
        let file = try fs.open(path, create: false)
        defer { fs.close(file) }
        let size = min(try fs.size(file), UInt64(commitRecordsMax * recordBytes))
        let bytes = try fs.read(file, at: 0, count: Int(size))
        var newest: UInt64 = 0
        var offset = 0
        while offset + recordBytes <= bytes.count {
            if bytes[offset..<offset + 4].elementsEqual(magic),
               CRC32C.checksum(Array(bytes[offset..<offset + 12])) == bytes.readLE(UInt32.self, at: offset + 12) {
                newest = max(newest, bytes.readLE(UInt64.self, at: offset + 4))
            }
            offset += recordBytes
        }
        return newest
    }

    /// Starts a new file in `directory` holding `commit`.
    package init(fs: FileSystem, directory: String, commit: UInt64) throws {
        self.fs = fs
        self.directory = directory
        var initial = State(newest: commit)
        try Self.startFile(&initial, fs: fs, directory: directory)
        state = Mutex(initial)
    }

    private static func record(_ commit: UInt64) -> [UInt8] {
        var bytes = magic
        bytes.appendLE(commit)
        bytes.appendLE(CRC32C.checksum(bytes))
        return bytes
    }

    private static func startFile(_ s: inout State, fs: FileSystem, directory: String) throws {
        if let file = s.file { fs.close(file) }
        s.file = nil
        let path = joinPath(directory, name)
        try replaceAtomically(path, with: record(s.newest) + [UInt8](repeating: 0, count: (commitRecordsMax - 1) * recordBytes),
                              fs: fs, directory: directory)
        s.file = try fs.open(path, create: false)
        s.written = 1
    }

    /// Records `commit` (every entry through it must already be durable in the log) without syncing. A failure loses
    /// only this record, which leaves the recorded index older; the next call tries again.
    package func record(_ commit: UInt64) {
        state.withLock { s in
            guard commit > s.newest else { return }
            s.newest = commit
            guard let file = s.file, s.written < Self.commitRecordsMax else {
                try? Self.startFile(&s, fs: fs, directory: directory)
                return
            }
            s.written += 1
            try? fs.write(file, at: UInt64((s.written - 1) * Self.recordBytes), Self.record(commit))
        }
    }

    /// Makes the records durable (a clean stop) and closes the file.
    package func close() {
        state.withLock { s in
            if let file = s.file {
                try? fs.sync(file)
                fs.close(file)
            }
            s.file = nil
        }
    }
}

/// A small metadata file (hard state, member identity): magic (8 bytes) | u64 fields | CRC32C u32 of everything
/// before it. Replaced whole and atomically, never patched; any damage (size, magic, checksum) is refused.
enum MetadataFile {
    /// The fields, or nil when the file does not exist.
    static func read(fs: FileSystem, directory: String, name: String, magic: [UInt8], fieldCount: Int, what: String) throws -> [UInt64]? {
        let path = joinPath(directory, name)
        guard try fs.list(directory).contains(name) else { return nil }
        let file = try fs.open(path, create: false)
        defer { fs.close(file) }
        let fileBytes = magic.count + 8 * fieldCount + 4
        let size = try fs.size(file)
        guard size == UInt64(fileBytes) else {
            throw StorageError.corrupt(path: path, offset: 0, index: nil, reason: "\(what) file is \(size) bytes, expected \(fileBytes)")
        }
        let bytes = try fs.read(file, at: 0, count: fileBytes)
        guard Array(bytes[0..<magic.count]) == magic,
              CRC32C.checksum(Array(bytes[0..<(fileBytes - 4)])) == bytes.readLE(UInt32.self, at: fileBytes - 4) else {
            throw StorageError.corrupt(path: path, offset: 0, index: nil, reason: "\(what) checksum mismatch")
        }
        return (0..<fieldCount).map { bytes.readLE(UInt64.self, at: magic.count + 8 * $0) }
    }

    static func replace(fs: FileSystem, directory: String, name: String, magic: [UInt8], fields: [UInt64]) throws {
        var bytes = magic
        for field in fields { bytes.appendLE(field) }
        bytes.appendLE(CRC32C.checksum(bytes))
        try replaceAtomically(joinPath(directory, name), with: bytes, fs: fs, directory: directory)
    }
}

/// Replaces the file at `path` with `bytes` so a crash leaves either the old file or the new one, never a mix:
/// write a temporary, sync it, rename it over `path`, sync the directory.
func replaceAtomically(_ path: String, with bytes: [UInt8], fs: FileSystem, directory: String) throws {
    let tmpPath = path + ".tmp"
    let file = try fs.open(tmpPath, create: true)
    defer { fs.close(file) }
    try fs.truncate(file, to: 0)
    try fs.write(file, at: 0, bytes)
    try fs.sync(file)
    try fs.rename(tmpPath, to: path)
    try fs.syncDirectory(directory)
}
