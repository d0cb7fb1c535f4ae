// Who the members are, as etcd's members API shows them: name, peer URLs, client URLs by member ID. Replicated:
// changed only by applied log entries and carried in snapshots, so every member lists the same cluster. Raft's own
// configuration (voters, learners) follows this table: the leader reconciles the one with the other.
import CairnBase
import CairnRaft
import CairnStore

package struct MemberRecord: Equatable, Sendable {
    package var id: UInt64
    package var name: String
    package var peerURLs: [String]
    package var clientURLs: [String]

    package init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String]) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
    }

    /// etcd's `IsStarted`: the member has started and published its name.
    package var isStarted: Bool { !name.isEmpty }
}

/// One change to the table, as a log entry carries it.
package enum MemberChange: Equatable, Sendable {
    /// A member added through the API: known by its peer URLs until it starts and publishes its attributes.
    case add(id: UInt64, peerURLs: [String])
    case remove(id: UInt64)
    case updatePeerURLs(id: UInt64, peerURLs: [String])
    /// A member's own name and client URLs, published when it starts (etcd's `publish`).
    case attributes(id: UInt64, name: String, clientURLs: [String])
    /// The initial members, logged by the cluster's first leader so the log alone (or a snapshot) describes the
    /// cluster to a member that joins later.
    case bootstrap([MemberRecord])

    package func encoded() -> [UInt8] {
        var w = ByteWriter()
        func strings(_ values: [String]) {
            w.u32(UInt32(values.count))
            for value in values { w.lengthPrefixed(Array(value.utf8)) }
        }
        switch self {
        case .add(let id, let peerURLs): w.u8(0); w.u64(id); strings(peerURLs)
        case .remove(let id): w.u8(1); w.u64(id)
        case .updatePeerURLs(let id, let peerURLs): w.u8(2); w.u64(id); strings(peerURLs)
        case .attributes(let id, let name, let clientURLs): w.u8(3); w.u64(id); w.lengthPrefixed(Array(name.utf8)); strings(clientURLs)
        case .bootstrap(let records):
            w.u8(4)
            w.u32(UInt32(records.count))
            for record in records {
                w.u64(record.id)
                w.lengthPrefixed(Array(record.name.utf8))
                strings(record.peerURLs)
                strings(record.clientURLs)
            }
        }
        return w.bytes
    }

    package init(decoding bytes: [UInt8]) throws {
        var r = ByteReader(bytes)
        func strings() throws -> [String] {
            let count = try r.u32()
            guard count <= 64 else { throw TreeSnapshotError.malformed("\(count) URLs") }
            return try (0..<count).map { _ in String(decoding: try r.lengthPrefixed(), as: UTF8.self) }
        }
        switch try r.u8() {
        case 0: self = .add(id: try r.u64(), peerURLs: try strings())
        case 1: self = .remove(id: try r.u64())
        case 2: self = .updatePeerURLs(id: try r.u64(), peerURLs: try strings())
        case 3: self = .attributes(id: try r.u64(), name: String(decoding: try r.lengthPrefixed(), as: UTF8.self), clientURLs: try strings())
        case 4:
            let count = try r.u32()
            guard count <= 1024 else { throw TreeSnapshotError.malformed("\(count) members") }
            self = .bootstrap(try (0..<count).map { _ in
                MemberRecord(id: try r.u64(), name: String(decoding: try r.lengthPrefixed(), as: UTF8.self), peerURLs: try strings(), clientURLs: try strings())
            })
        case let kind: throw TreeSnapshotError.malformed("member change kind \(kind)")
        }
        guard r.isAtEnd else { throw TreeSnapshotError.malformed("\(r.remaining) bytes after a member change") }
    }
}

package struct MemberTable: Equatable, Sendable {
    package private(set) var members: [UInt64: MemberRecord] = [:]
    /// Whether the log holds the initial members (see `MemberChange.bootstrap`).
    package private(set) var isLogged = false

    package init(_ records: [MemberRecord], isLogged: Bool = false) {
        for record in records { members[record.id] = record }
        self.isLogged = isLogged
    }

    /// Members by ID, as etcd lists them.
    package var sorted: [MemberRecord] { members.values.sorted { $0.id < $1.id } }

    package func owner(ofPeerURL url: String) -> UInt64? { members.values.first { $0.peerURLs.contains(url) }?.id }

    /// Changes before the initial members are logged are ignored, so every member, a joiner replaying the log
    /// from its start included, holds the same table at every index.
    package mutating func apply(_ change: MemberChange) {
        if case .bootstrap(let records) = change {
            guard !isLogged else { return }
            isLogged = true
            self = MemberTable(records, isLogged: true)
            return
        }
        guard isLogged else { return }
        switch change {
        case .add(let id, let peerURLs):
            members[id] = MemberRecord(id: id, name: members[id]?.name ?? "", peerURLs: peerURLs, clientURLs: members[id]?.clientURLs ?? [])
        case .remove(let id):
            members[id] = nil
        case .updatePeerURLs(let id, let peerURLs):
            members[id]?.peerURLs = peerURLs
        case .attributes(let id, let name, let clientURLs):
            // A member removed meanwhile stays removed.
            members[id]?.name = name
            members[id]?.clientURLs = clientURLs
        case .bootstrap:
            break
        }
    }

    // MARK: Snapshot stream

    package static let magic = Array("CAIRNMB1".utf8)

    /// Layout: "CAIRNMB1" | logged u8 | u32 length | the members as a `MemberChange.bootstrap` entry encodes them.
    package func write(to sink: inout some SnapshotSink) throws {
        var w = ByteWriter()
        w.raw(Self.magic)
        w.u8(isLogged ? 1 : 0)
        w.lengthPrefixed(MemberChange.bootstrap(sorted).encoded())
        try sink.write(w.bytes)
    }

    package static func read(from source: inout some SnapshotSource) throws -> MemberTable {
        guard try source.read(exactly: magic.count) == magic else { throw TreeSnapshotError.badMagic }
        let isLogged = try source.readInteger(1) == 1
        guard case .bootstrap(let records) = try MemberChange(decoding: try source.readLengthPrefixed(bytesMax: 1 << 20)) else {
            throw TreeSnapshotError.malformed("the member table is not a member list")
        }
        return MemberTable(records, isLogged: isLogged)
    }
}
