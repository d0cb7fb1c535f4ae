// The v3 requests the key space applies and the answers it gives, as etcdserverpb defines them (field for field,
// so the JSON gateway and gRPC layers only translate). Validation that etcd does before proposing lives here too.

package struct RangeRequest: Sendable, Equatable {
    package enum SortOrder: Sendable { case none, ascend, descend }
    package enum SortTarget: Sendable { case key, version, create, mod, value }

    package var range: KeyRange
    package var limit: Int64 = 0
    /// 0 reads the current revision.
    package var revision: Int64 = 0
    package var sortOrder = SortOrder.none
    package var sortTarget = SortTarget.key
    package var serializable = false
    package var keysOnly = false
    package var countOnly = false
    package var minModRevision: Int64 = 0
    package var maxModRevision: Int64 = 0
    package var minCreateRevision: Int64 = 0
    package var maxCreateRevision: Int64 = 0

    package init(range: KeyRange) { self.range = range }
}

package struct PutRequest: Sendable, Equatable {
    package var key: [UInt8]
    package var value: [UInt8]
    package var lease: Int64 = 0
    package var prevKV = false
    package var ignoreValue = false
    package var ignoreLease = false

    package init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }
}

package struct DeleteRangeRequest: Sendable, Equatable {
    package var range: KeyRange
    package var prevKV = false

    package init(range: KeyRange) { self.range = range }
}

package struct Compare: Sendable, Equatable {
    package enum Result: Sendable { case equal, greater, less, notEqual }
    package enum Target: Sendable, Equatable {
        case version(Int64)
        case createRevision(Int64)
        case modRevision(Int64)
        case value([UInt8])
        case lease(Int64)
    }

    package var result: Result
    package var target: Target
    package var range: KeyRange

    package init(_ range: KeyRange, _ target: Target, _ result: Result) {
        self.range = range
        self.target = target
        self.result = result
    }
}

package indirect enum RequestOp: Sendable, Equatable {
    case range(RangeRequest)
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
}

package struct TxnRequest: Sendable, Equatable {
    package var compare: [Compare]
    package var success: [RequestOp]
    package var failure: [RequestOp]

    package init(compare: [Compare] = [], success: [RequestOp] = [], failure: [RequestOp] = []) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }
}

package struct RangeResponse: Sendable, Equatable {
    package var kvs: [KeyValue] = []
    package var more = false
    package var count: Int64 = 0
    package var revision: Int64 = 0
}

package struct PutResponse: Sendable, Equatable {
    package var prevKV: KeyValue?
    package var revision: Int64 = 0
}

package struct DeleteRangeResponse: Sendable, Equatable {
    package var deleted: Int64 = 0
    package var prevKVs: [KeyValue] = []
    package var revision: Int64 = 0
}

package indirect enum ResponseOp: Sendable, Equatable {
    case range(RangeResponse)
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
}

package struct TxnResponse: Sendable, Equatable {
    package var succeeded = false
    package var responses: [ResponseOp] = []
    package var revision: Int64 = 0
}

// MARK: - Checks etcd makes before proposing (v3rpc's checkPutRequest, checkTxnRequest, checkIntervals)

extension PutRequest {
    package func validate() throws(MVCCError) {
        if key.isEmpty { throw .emptyKey }
        if ignoreValue && !value.isEmpty { throw .valueProvided }
        if ignoreLease && lease != 0 { throw .leaseProvided }
    }
}

extension TxnRequest {
    /// etcd's limit on operations per branch (`--max-txn-ops`).
    package static let opsMaxDefault = 128

    /// etcd's checks: no branch or compare list longer than `opsMax`, nested transactions sharing what is left
    /// of it (which also bounds nesting, and so this recursion, to `opsMax` levels), no empty key, and no key
    /// put twice or both put and deleted in one branch.
    package func validate(opsMax: Int = TxnRequest.opsMaxDefault) throws(MVCCError) {
        try checkOps(opsMax: opsMax)
        _ = try Self.checkIntervals(success)
        _ = try Self.checkIntervals(failure)
    }

    private func checkOps(opsMax: Int) throws(MVCCError) {
        let ops = max(compare.count, success.count, failure.count)
        if ops > opsMax { throw .tooManyOps }
        for c in compare where c.range.start.isEmpty { throw .emptyKey }
        for op in success + failure {
            switch op {
            case .range(let r): if r.range.start.isEmpty { throw .emptyKey }
            case .put(let p): try p.validate()
            case .deleteRange(let d): if d.range.start.isEmpty { throw .emptyKey }
            case .txn(let t): try t.checkOps(opsMax: opsMax - ops)
            }
        }
    }

    /// The keys a branch puts and the ranges it deletes, nested branches included; a put may not meet another put
    /// or a delete of the same branch (a success and a failure branch may put the same key: only one runs).
    private static func checkIntervals(_ ops: [RequestOp]) throws(MVCCError) -> (puts: Set<ByteKey>, deletes: [KeyRange]) {
        var deletes: [KeyRange] = []
        for case .deleteRange(let d) in ops { deletes.append(d.range) }
        func deleted(_ key: ByteKey) -> Bool { deletes.contains { $0.contains(key) } }
        var puts = Set<ByteKey>()
        for case .txn(let t) in ops {
            let then = try checkIntervals(t.success)
            let otherwise = try checkIntervals(t.failure)
            for key in then.puts {
                if puts.contains(key) || deleted(key) { throw .duplicateKey }
                puts.insert(key)
            }
            for key in otherwise.puts {
                if (puts.contains(key) && !then.puts.contains(key)) || deleted(key) { throw .duplicateKey }
                puts.insert(key)
            }
            deletes += then.deletes + otherwise.deletes
        }
        for case .put(let p) in ops {
            let key = ByteKey(p.key)
            if puts.contains(key) || deleted(key) { throw .duplicateKey }
            puts.insert(key)
        }
        return (puts, deletes)
    }
}
