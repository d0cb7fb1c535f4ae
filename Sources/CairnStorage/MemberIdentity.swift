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
        let path = joinPath(directory, Self.fileName)
        guard try fs.list(directory).contains(Self.fileName) else {
            var bytes = Self.magic
            bytes.appendLE(clusterID)
            bytes.appendLE(memberID)
            bytes.appendLE(CRC32C.checksum(bytes))
            return try replaceAtomically(path, with: bytes, fs: fs, directory: directory)
        }
        let file = try fs.open(path, create: false)
        defer { fs.close(file) }
        let size = try fs.size(file)
        guard size == UInt64(Self.fileBytes) else {
            throw StorageError.corrupt(path: path, offset: 0, index: nil, reason: "member file is \(size) bytes, expected \(Self.fileBytes)")
        }
        let bytes = try fs.read(file, at: 0, count: Self.fileBytes)
        guard Array(bytes[0..<8]) == Self.magic, CRC32C.checksum(Array(bytes[0..<24])) == bytes.readLE(UInt32.self, at: 24) else {
            throw StorageError.corrupt(path: path, offset: 0, index: nil, reason: "member file checksum mismatch")
        }
        let stored = MemberIdentity(clusterID: bytes.readLE(UInt64.self, at: 8), memberID: bytes.readLE(UInt64.self, at: 16))
        guard stored == self else { throw StorageError.foreign(path: directory, stored: stored, expected: self) }
    }
}
