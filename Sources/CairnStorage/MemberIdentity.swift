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

    /// Records `self` in a directory that has no identity yet; refuses one that belongs to another member or cluster.
    package func claim(fs: FileSystem, directory: String) throws {
        guard let stored = try Self.read(fs: fs, directory: directory) else {
            return try MetadataFile.replace(fs: fs, directory: directory, name: Self.fileName, magic: Self.magic, fields: [clusterID, memberID])
        }
        guard stored == self else { throw StorageError.foreign(path: directory, stored: stored, expected: self) }
    }

    /// The identity a directory was claimed for; nil when it never was.
    package static func read(fs: FileSystem, directory: String) throws -> MemberIdentity? {
        try MetadataFile.read(fs: fs, directory: directory, name: fileName, magic: magic, fieldCount: 2, what: "member")
            .map { MemberIdentity(clusterID: $0[0], memberID: $0[1]) }
    }
}
