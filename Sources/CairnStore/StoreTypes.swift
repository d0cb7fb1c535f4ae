// What the key space takes in (commands, which are what the log carries) and gives back (events and errors),
// mirroring etcd's v2 request, event and error shapes so the API layer can render them byte for byte.

/// One write, exactly as etcd's v2 server receives it after parsing (its `RequestV2`).
package struct StoreCommand: Sendable, Equatable {
    package enum Method: String, Sendable {
        case put = "PUT", post = "POST", delete = "DELETE"
        /// Removes every node whose expiration is at or before `time`; issued by the leader, so all replicas agree.
        case expire = "EXPIRE"
    }

    package var method: Method
    package var path: StoreKey = .root
    package var value: String = ""
    package var dir = false
    package var prevValue: String = ""
    package var prevIndex: UInt64 = 0
    package var prevExist: Bool?
    /// Cluster-time nanoseconds at which the node expires; 0 for permanent. For `expire`, the cut-off time.
    package var expiration: Int64 = 0
    /// A TTL as the client gave it, still relative; `resolvingTTL(at:)` makes it an expiration when applied.
    package var ttlNanos: Int64?
    package var recursive = false
    package var refresh = false

    package init(method: Method, path: StoreKey = .root) {
        self.method = method
        self.path = path
    }

    package init(method: Method, path: String) {
        self.init(method: method, path: StoreKey(path))
    }

    /// The command with its relative TTL turned into an expiration at cluster time `now` (saturating: a TTL past
    /// what nanoseconds hold is forever).
    package func resolvingTTL(at now: Int64) -> StoreCommand {
        guard let ttlNanos else { return self }
        var resolved = self
        resolved.ttlNanos = nil
        let (sum, overflow) = now.addingReportingOverflow(ttlNanos)
        resolved.expiration = overflow ? .max : sum
        return resolved
    }
}

/// A node as an event or a listing shows it; the JSON layer renders exactly these fields.
package struct NodeView: Sendable, Equatable {
    package var key: StoreKey
    package var value: String?
    package var isDirectory: Bool
    package var expiration: Int64?
    package var ttl: Int64
    package var createdIndex: UInt64
    package var modifiedIndex: UInt64

    package init(_ node: StoreNode, key: StoreKey, now: Int64) {
        self.key = key
        value = node.value
        isDirectory = node.isDirectory
        expiration = node.expiration
        ttl = node.ttlSeconds(now: now)
        createdIndex = node.createdIndex
        modifiedIndex = node.modifiedIndex
    }

    package init(key: StoreKey, value: String?, isDirectory: Bool, expiration: Int64? = nil, ttl: Int64 = 0,
                 createdIndex: UInt64, modifiedIndex: UInt64) {
        self.key = key
        self.value = value
        self.isDirectory = isDirectory
        self.expiration = expiration
        self.ttl = ttl
        self.createdIndex = createdIndex
        self.modifiedIndex = modifiedIndex
    }
}

package enum StoreAction: String, Sendable {
    case get, set, create, update, delete
    case compareAndSwap, compareAndDelete, expire
}

package struct StoreEvent: Sendable, Equatable {
    package var action: StoreAction
    package var node: NodeView
    package var prevNode: NodeView?
    /// The store's index once this event happened (X-Etcd-Index).
    package var etcdIndex: UInt64
    package var isRefresh = false

    /// etcd answers 201 for a create, or a set that made a new node.
    package var isCreation: Bool { action == .create || (action == .set && prevNode == nil) }
}

/// etcd's v2 error codes, with their messages and HTTP statuses.
package enum StoreErrorCode: Int, Sendable {
    case keyNotFound = 100, testFailed = 101, notFile = 102, notDir = 104, nodeExist = 105, rootReadOnly = 107
    case dirNotEmpty = 108, unauthorized = 110
    case prevValueRequired = 201, ttlNaN = 202, indexNaN = 203, invalidField = 209, invalidForm = 210
    case refreshValue = 211, refreshTTLRequired = 212
    case raftInternal = 300, leaderElect = 301
    case eventIndexCleared = 401

    package var message: String {
        switch self {
        case .keyNotFound: "Key not found"
        case .testFailed: "Compare failed"
        case .notFile: "Not a file"
        case .notDir: "Not a directory"
        case .nodeExist: "Key already exists"
        case .rootReadOnly: "Root is read only"
        case .dirNotEmpty: "Directory not empty"
        case .unauthorized: "The request requires user authentication"
        case .prevValueRequired: "PrevValue is Required in POST form"
        case .ttlNaN: "The given TTL in POST form is not a number"
        case .indexNaN: "The given index in POST form is not a number"
        case .invalidField: "Invalid field"
        case .invalidForm: "Invalid POST form"
        case .refreshValue: "Value provided on refresh"
        case .refreshTTLRequired: "A TTL must be provided on refresh"
        case .raftInternal: "Raft Internal Error"
        case .leaderElect: "During Leader Election"
        case .eventIndexCleared: "The event in requested index is outdated and cleared"
        }
    }

    package var httpStatus: Int {
        switch self {
        case .keyNotFound: 404
        case .unauthorized: 401
        case .notFile, .dirNotEmpty: 403
        case .testFailed, .nodeExist: 412
        case .raftInternal, .leaderElect: 500
        default: 400
        }
    }
}

package struct StoreError: Error, Sendable, Equatable {
    package var code: StoreErrorCode
    /// The cause's bytes: a key named in a cause is kept as its bytes, which need not be UTF-8.
    package var causeBytes: [UInt8]
    package var index: UInt64

    package init(_ code: StoreErrorCode, _ cause: String, index: UInt64) {
        self.init(code, causeBytes: Array(cause.utf8), index: index)
    }

    /// An error whose cause is a key, as etcd names the key it could not find, write or use as a directory.
    package init(_ code: StoreErrorCode, _ key: StoreKey, index: UInt64) {
        self.init(code, causeBytes: key.bytes, index: index)
    }

    package init(_ code: StoreErrorCode, causeBytes: [UInt8], index: UInt64) {
        self.code = code
        self.causeBytes = causeBytes
        self.index = index
    }

    /// The cause as text (bytes that are not UTF-8 show as U+FFFD).
    package var cause: String { String(decoding: causeBytes, as: UTF8.self) }
}
