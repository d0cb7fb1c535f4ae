// The typed errors of the storage module.
// Every corruption error names the file, the byte offset and (when known) the log index, so an operator can find it.

package enum StorageError: Error, Equatable, CustomStringConvertible {
    /// A system call failed; `errno` is the raw value (EIO, ENOSPC, ...).
    case io(operation: String, path: String, errno: Int32)
    /// Fewer bytes than asked for: corruption, never data.
    case shortRead(path: String, offset: UInt64, expectedBytes: Int, gotBytes: Int)
    /// Damage found on disk. `index` is the log index of the record at or just before the damage.
    case corrupt(path: String, offset: UInt64, index: UInt64?, reason: String)
    /// Another process holds the data directory's lock file.
    case locked(path: String)
    /// An append did not continue the log (index gap or repeat), or a read asked outside the log.
    case badIndex(expected: UInt64, got: UInt64)
    case outOfRange(index: UInt64, first: UInt64, last: UInt64)
    /// The data directory belongs to another member or another cluster.
    case foreign(path: String, stored: MemberIdentity, expected: MemberIdentity)
    /// An earlier write or sync failed in a way that leaves the file state unknown; the node must stop.
    case failed(underlying: String)

    package var isNoSpace: Bool {
        if case .io(_, _, let code) = self { return code == 28 }  // ENOSPC
        return false
    }

    package var description: String {
        switch self {
        case let .io(op, path, code): return "\(op) \(path): errno \(code)"
        case let .shortRead(path, offset, expected, got):
            return "short read of \(path) at byte \(offset): wanted \(expected) bytes, got \(got)"
        case let .corrupt(path, offset, index, reason):
            return "corrupt \(path) at byte \(offset)\(index.map { " (index \($0))" } ?? ""): \(reason)"
        case let .locked(path): return "data directory is locked by another process (\(path))"
        case let .badIndex(expected, got): return "append expected index \(expected), got \(got)"
        case let .outOfRange(index, first, last): return "index \(index) outside the log [\(first), \(last)]"
        case let .foreign(path, stored, expected):
            let hex = { (id: UInt64) in String(id, radix: 16) }
            return "data directory \(path) belongs to member \(hex(stored.memberID)) of cluster \(hex(stored.clusterID)), "
                + "not to member \(hex(expected.memberID)) of cluster \(hex(expected.clusterID)) (check --name, "
                + "--initial-cluster, --initial-advertise-peer-urls and --initial-cluster-token, or use an empty --data-dir)"
        case let .failed(underlying): return "storage stopped after an earlier failure: \(underlying)"
        }
    }
}
