// Raft's hard state (term, vote, commit) in its own small file, replaced atomically and checksummed.
// Why a file and not log records: it changes on elections (rare), so write-new + fsync + rename + fsync-dir is cheap, and the log keeps one record type.

import CairnBase

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
