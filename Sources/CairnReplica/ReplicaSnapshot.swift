// What a snapshot's body holds (the v2 tree, client sessions, the member table, the v3 key space) and its one stream
// format, written to a sink and read from a source, so the runner's files and the simulator's share it.
import CairnMVCC
import CairnStore

/// The replicated state at one applied index, as a snapshot carries it.
package struct ReplicaState: Sendable {
    package var keySpace: KeySpace
    package var sessions: ClientSessions
    package var members: MemberTable
    package var mvcc: MVCCKeySpace

    package init(keySpace: KeySpace, sessions: ClientSessions = ClientSessions(), members: MemberTable, mvcc: MVCCKeySpace = MVCCKeySpace()) {
        self.keySpace = keySpace
        self.sessions = sessions
        self.members = members
        self.mvcc = mvcc
    }

    static let mvccSectionMagic = Array("CAIRNV31".utf8)

    /// Layout: the tree (`TreeSnapshot`), the sessions, the member table, then "CAIRNV31" and the v3 key space as
    /// `MVCCKeySpace.writeSnapshot` lays it out.
    package func write(to sink: inout some SnapshotSink) throws {
        try TreeSnapshot.write(root: keySpace.root, currentIndex: keySpace.currentIndex, to: &sink)
        try sessions.write(to: &sink)
        try members.write(to: &sink)
        try sink.write(Self.mvccSectionMagic)
        try mvcc.writeSnapshot { try sink.write($0) }
    }

    /// Reads a body whole; a body that ends after the member table (written before v3) has an empty v3 key space.
    package static func read(from source: inout some SnapshotBodySource) throws -> ReplicaState {
        let (root, index) = try TreeSnapshot.read(from: &source)
        let sessions = try ClientSessions.read(from: &source)
        let members = try MemberTable.read(from: &source)
        var mvcc = MVCCKeySpace()
        if try !source.isAtEnd() {
            guard try source.read(exactly: mvccSectionMagic.count) == mvccSectionMagic else { throw TreeSnapshotError.badMagic }
            mvcc = try MVCCKeySpace.readSnapshot { try source.read(exactly: $0) }
        }
        guard try source.isAtEnd() else { throw TreeSnapshotError.malformed("bytes after the v3 key space") }
        return ReplicaState(keySpace: KeySpace(root: root, currentIndex: index), sessions: sessions, members: members, mvcc: mvcc)
    }
}

/// A snapshot body that can tell where it ends.
package protocol SnapshotBodySource: SnapshotSource {
    /// True when no byte is left to read.
    mutating func isAtEnd() throws -> Bool
}
