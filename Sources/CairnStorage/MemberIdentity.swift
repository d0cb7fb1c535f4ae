// Which member of which cluster a data directory belongs to, written once when the directory is first used.
// A member started on another member's or another cluster's directory is refused before it touches the log.
import CairnBase

/// Format: magic "CAIRNID1" | cluster ID u64 | member ID u64 | CRC32C u32 of the preceding 24 bytes.
package struct MemberIdentity: Equatable, Sendable {
    package var clusterID: UInt64
    package var memberID: UInt64

    package init(clusterID: UInt64, memberID: UInt64) {
        self.clusterID = clusterID
        self.memberID = memberID
    }

    static let fileName = "member"
    static let magic: [UInt8] = Array("CAIRNID1".utf8)
    static let fileBytes = 28

    /// Records `self` in a directory that has no identity yet; refuses one that belongs to another member or cluster.
    package func claim(fs: FileSystem, directory: String) throws {
        guard let stored = try Self.read(fs: fs, directory: directory) else {
            var bytes = Self.magic
            bytes.appendLE(clusterID)
            bytes.appendLE(memberID)
            bytes.appendLE(CRC32C.checksum(bytes))
            return try replaceAtomically(joinPath(directory, Self.fileName), with: bytes, fs: fs, directory: directory)
        }
        guard stored == self else { throw StorageError.foreign(path: directory, stored: stored, expected: self) }
    }

    /// The identity a directory was claimed for; nil when it never was.
    package static func read(fs: FileSystem, directory: String) throws -> MemberIdentity? {
        let path = joinPath(directory, fileName)
        guard try fs.list(directory).contains(fileName) else { return nil }
        let file = try fs.open(path, create: false)
        defer { fs.close(file) }
        let size = try fs.size(file)
        guard size == UInt64(fileBytes) else {
            throw StorageError.corrupt(path: path, offset: 0, index: nil, reason: "member file is \(size) bytes, expected \(fileBytes)")
        }
        let bytes = try fs.read(file, at: 0, count: fileBytes)
        guard Array(bytes[0..<8]) == magic, CRC32C.checksum(Array(bytes[0..<24])) == bytes.readLE(UInt32.self, at: 24) else {
            throw StorageError.corrupt(path: path, offset: 0, index: nil, reason: "member file checksum mismatch")
        }
        return MemberIdentity(clusterID: bytes.readLE(UInt64.self, at: 8), memberID: bytes.readLE(UInt64.self, at: 16))
    }
}
