// The values of etcd's v3 key space: byte keys, revisions, key-values, key ranges, events and errors, mirroring
// etcd's mvccpb and etcdserverpb shapes so the API layer can render them as etcd does.

/// A key as bytes, ordered as etcd orders keys (byte-wise, a prefix before its extensions).
package struct ByteKey: Comparable, Hashable, Sendable, CustomStringConvertible {
    package var bytes: [UInt8]

    package init(_ bytes: [UInt8]) { self.bytes = bytes }
    package init(_ string: String) { self.bytes = Array(string.utf8) }

    package static func < (a: ByteKey, b: ByteKey) -> Bool {
        a.bytes.withUnsafeBufferPointer { x in
            b.bytes.withUnsafeBufferPointer { y in
                let common = min(x.count, y.count)
                var i = 0
                while i < common {
                    if x[i] != y[i] { return x[i] < y[i] }
                    i += 1
                }
                return x.count < y.count
            }
        }
    }

    package var description: String { String(decoding: bytes, as: UTF8.self) }
}

/// A point in the key space's history: `main` counts transactions that changed something, `sub` the changes within one.
package struct Revision: Comparable, Hashable, Sendable {
    package var main: Int64
    package var sub: Int64

    package init(main: Int64, sub: Int64 = 0) {
        self.main = main
        self.sub = sub
    }

    package static func < (a: Revision, b: Revision) -> Bool { (a.main, a.sub) < (b.main, b.sub) }
}

/// One version of a key. A deletion is recorded as a tombstone: `createRevision` 0 and the deletion's revision
/// as `modRevision` (what etcd's watch events carry for a DELETE).
package struct KeyValue: Sendable, Equatable {
    package var key: [UInt8]
    package var createRevision: Int64
    package var modRevision: Int64
    package var version: Int64
    package var value: [UInt8]
    package var lease: Int64

    package init(key: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, value: [UInt8], lease: Int64 = 0) {
        self.key = key
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.value = value
        self.lease = lease
    }

    package var isTombstone: Bool { createRevision == 0 }

    static func tombstone(_ key: [UInt8], at revision: Int64) -> KeyValue {
        KeyValue(key: key, createRevision: 0, modRevision: revision, version: 0, value: [])
    }

    /// Bytes this version costs the key space, for the quota (the key and value, plus etcd's fixed per-revision cost).
    var accountedBytes: Int { key.count + value.count + 48 }
}

/// Which keys a request names, as etcd reads `key` and `range_end`: no end is the key alone, an end of one zero
/// byte is every key from `key` on, any other end is the half-open range [key, end).
package struct KeyRange: Sendable, Equatable {
    package var start: [UInt8]
    /// nil: the single key `start`; empty: no upper bound; otherwise exclusive.
    package var end: [UInt8]?

    package init(key: [UInt8], rangeEnd: [UInt8]) {
        start = key
        if rangeEnd.isEmpty {
            end = nil
        } else if rangeEnd == [0] {
            end = []
        } else {
            end = rangeEnd
        }
    }

    package static func single(_ key: [UInt8]) -> KeyRange { KeyRange(key: key, rangeEnd: []) }
    /// Every key that starts with `prefix` (etcd's `--prefix`: the end is the prefix with its last byte below 0xff
    /// incremented; no such byte means no end).
    package static func prefix(_ prefix: [UInt8]) -> KeyRange {
        var end = prefix
        while let last = end.last {
            if last < 0xff {
                end[end.count - 1] = last + 1
                return KeyRange(key: prefix, rangeEnd: end)
            }
            end.removeLast()
        }
        return KeyRange(key: prefix, rangeEnd: [0])
    }

    package func contains(_ key: ByteKey) -> Bool {
        let startKey = ByteKey(start)
        guard let end else { return key == startKey }
        return !(key < startKey) && (end.isEmpty || key < ByteKey(end))
    }

    /// Whether keys at or after `key` can still be inside the range (the end of an ascending scan).
    func continues(past key: ByteKey) -> Bool {
        guard let end else { return key == ByteKey(start) }
        return end.isEmpty || key < ByteKey(end)
    }
}

package enum EventType: Sendable, Equatable {
    case put
    case delete
}

/// One change, as a watcher sees it.
package struct Event: Sendable, Equatable {
    package var type: EventType
    package var kv: KeyValue
    package var prevKV: KeyValue?
}

/// The key space's errors, with etcd's messages (the API layer maps them to gRPC codes and HTTP statuses).
package enum MVCCError: Error, Equatable, Sendable, CustomStringConvertible {
    case compacted
    case futureRevision
    case keyNotFound
    case leaseNotFound
    case leaseExists
    case leaseTTLTooLarge
    case emptyKey
    case valueProvided
    case leaseProvided
    case tooManyOps
    case duplicateKey
    case noSpace
    case auth(AuthError)

    package var description: String {
        switch self {
        case .compacted: "mvcc: required revision has been compacted"
        case .futureRevision: "mvcc: required revision is a future revision"
        case .keyNotFound: "etcdserver: key not found"
        case .leaseNotFound: "etcdserver: requested lease not found"
        case .leaseExists: "etcdserver: lease already exists"
        case .leaseTTLTooLarge: "etcdserver: too large lease TTL"
        case .emptyKey: "etcdserver: key is not provided"
        case .valueProvided: "etcdserver: value is provided"
        case .leaseProvided: "etcdserver: lease is provided"
        case .tooManyOps: "etcdserver: too many operations in txn request"
        case .duplicateKey: "etcdserver: duplicate key given in txn request"
        case .noSpace: "etcdserver: mvcc: database space exceeded"
        case .auth(let error): error.description
        }
    }
}
