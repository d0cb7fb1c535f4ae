// Writes to the v3 key space, each one of etcd's write transactions: every change in it shares the next revision
// (with its own sub-revision), reads inside it see its earlier changes, and the revision moves only if something
// changed. Leases attach to and detach from keys here; revoking a lease deletes its keys in one revision.
import HashTreeCollections

extension MVCCKeySpace {
    /// One write transaction in progress: the revision it began at and how many changes it made so far.
    struct Write {
        let beginRevision: Int64
        var changes: Int64 = 0
        var revision: Int64 { beginRevision + 1 }
        /// What reads inside the transaction see.
        var readRevision: Int64 { changes > 0 ? beginRevision + 1 : beginRevision }
    }

    private mutating func commit(_ write: Write) -> Int64 {
        if write.changes > 0 { advance(to: write.revision) }
        return revision
    }

    // MARK: - Put and delete

    package mutating func put(_ request: PutRequest) throws(MVCCError) -> PutResponse {
        try request.validate()
        try checkPut(request)
        var write = Write(beginRevision: revision)
        var response = put(request, in: &write)
        response.revision = commit(write)
        return response
    }

    package mutating func deleteRange(_ request: DeleteRangeRequest) throws(MVCCError) -> DeleteRangeResponse {
        if request.range.start.isEmpty { throw .emptyKey }
        var write = Write(beginRevision: revision)
        var response = deleteRange(request, in: &write)
        response.revision = commit(write)
        return response
    }

    /// What etcd checks of a put before any change: the lease exists; a key whose value or lease is kept exists.
    private func checkPut(_ request: PutRequest) throws(MVCCError) {
        if request.lease != 0 && leases[request.lease] == nil { throw .leaseNotFound }
        if (request.ignoreValue || request.ignoreLease) && get(request.key) == nil { throw .keyNotFound }
    }

    private mutating func put(_ request: PutRequest, in write: inout Write) -> PutResponse {
        let previous = get(request.key)
        let value = request.ignoreValue ? previous?.value ?? [] : request.value
        let lease = request.ignoreLease ? previous?.lease ?? 0 : request.lease
        let kv = KeyValue(key: request.key, createRevision: previous?.createRevision ?? write.revision,
                          modRevision: write.revision, version: (previous?.version ?? 0) + 1, value: value, lease: lease)
        record(kv, sub: write.changes)
        write.changes += 1
        let key = ByteKey(request.key)
        if let old = previous?.lease, old != 0 { leases.detach(key, from: old) }
        if lease != 0 { leases.attach(key, to: lease) }
        return PutResponse(prevKV: request.prevKV ? previous : nil, revision: write.revision)
    }

    private mutating func deleteRange(_ request: DeleteRangeRequest, in write: inout Write) -> DeleteRangeResponse {
        var doomed: [KeyValue] = []
        visit(request.range, at: revision) { doomed.append($0) }
        for kv in doomed {
            record(.tombstone(kv.key, at: write.revision), sub: write.changes)
            write.changes += 1
            if kv.lease != 0 { leases.detach(ByteKey(kv.key), from: kv.lease) }
        }
        return DeleteRangeResponse(deleted: Int64(doomed.count), prevKVs: request.prevKV ? doomed : [],
                                   revision: doomed.isEmpty && write.changes == 0 ? write.beginRevision : write.revision)
    }

    // MARK: - Transactions

    /// etcd 3.4's Txn: every compare (nested ones too) is evaluated first against the state before the
    /// transaction, the puts and reads of the branches taken are checked, then the branches run in one revision.
    package mutating func txn(_ request: TxnRequest, opsMax: Int = TxnRequest.opsMaxDefault) throws(MVCCError) -> TxnResponse {
        try request.validate(opsMax: opsMax)
        var path: [Bool] = []
        evaluate(request, into: &path)
        var position = 0
        try check(request, path: path, position: &position)
        var write = Write(beginRevision: revision)
        position = 0
        var response = run(request, path: path, position: &position, in: &write)
        response.revision = commit(write)
        return response
    }

    /// The branch each transaction takes, outer first, in the order `run` meets them.
    private func evaluate(_ request: TxnRequest, into path: inout [Bool]) {
        let succeeded = request.compare.allSatisfy(compare)
        path.append(succeeded)
        for case .txn(let nested) in succeeded ? request.success : request.failure { evaluate(nested, into: &path) }
    }

    private func check(_ request: TxnRequest, path: [Bool], position: inout Int) throws(MVCCError) {
        let succeeded = path[position]
        position += 1
        for op in succeeded ? request.success : request.failure {
            switch op {
            case .put(let put): try checkPut(put)
            case .range(let range):
                if range.revision > revision { throw .futureRevision }
                if range.revision > 0 && range.revision < compactedRevision { throw .compacted }
            case .deleteRange: break
            case .txn(let nested): try check(nested, path: path, position: &position)
            }
        }
    }

    private mutating func run(_ request: TxnRequest, path: [Bool], position: inout Int, in write: inout Write) -> TxnResponse {
        let succeeded = path[position]
        position += 1
        var responses: [ResponseOp] = []
        for op in succeeded ? request.success : request.failure {
            switch op {
            case .range(var range):
                if range.revision <= 0 { range.revision = write.readRevision }
                // Checked before the transaction began; a read inside it cannot fail.
                var answer = (try? rangeInside(range, write)) ?? RangeResponse()
                answer.revision = write.readRevision
                responses.append(.range(answer))
            case .put(let put): responses.append(.put(self.put(put, in: &write)))
            case .deleteRange(let delete): responses.append(.deleteRange(deleteRange(delete, in: &write)))
            case .txn(let nested):
                var answer = run(nested, path: path, position: &position, in: &write)
                answer.revision = write.changes > 0 ? write.revision : write.beginRevision
                responses.append(.txn(answer))
            }
        }
        return TxnResponse(succeeded: succeeded, responses: responses,
                           revision: write.changes > 0 ? write.revision : write.beginRevision)
    }

    /// A range inside a write transaction: the transaction's own changes are already in the maps, at the next revision.
    private func rangeInside(_ request: RangeRequest, _ write: Write) throws(MVCCError) -> RangeResponse {
        guard write.changes > 0 else { return try range(request) }
        var view = self
        view.advance(to: write.revision)
        return try view.range(request)
    }

    /// etcd's applyCompare: every key of the range must satisfy it; a missing key compares as zeros, except that a
    /// value compare on a missing key fails.
    private func compare(_ c: Compare) -> Bool {
        var kvs: [KeyValue] = []
        visit(c.range, at: revision) { kvs.append($0) }
        if kvs.isEmpty {
            if case .value = c.target { return false }
            return Self.compare(KeyValue(key: c.range.start, createRevision: 0, modRevision: 0, version: 0, value: []), c)
        }
        return kvs.allSatisfy { Self.compare($0, c) }
    }

    private static func compare(_ kv: KeyValue, _ c: Compare) -> Bool {
        let order: Int
        switch c.target {
        case .version(let v): order = kv.version < v ? -1 : (kv.version > v ? 1 : 0)
        case .createRevision(let v): order = kv.createRevision < v ? -1 : (kv.createRevision > v ? 1 : 0)
        case .modRevision(let v): order = kv.modRevision < v ? -1 : (kv.modRevision > v ? 1 : 0)
        case .lease(let v): order = kv.lease < v ? -1 : (kv.lease > v ? 1 : 0)
        case .value(let v):
            let a = ByteKey(kv.value)
            let b = ByteKey(v)
            order = a < b ? -1 : (b < a ? 1 : 0)
        }
        switch c.result {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .greater: return order > 0
        case .less: return order < 0
        }
    }

    // MARK: - Leases

    /// Grants lease `id` (chosen by the proposer: apply must not draw randomness) for `ttl` seconds, raised to
    /// `minimumTTL` as etcd's lessor does.
    package mutating func grantLease(id: Int64, ttl: Int64, minimumTTL: Int64) throws(MVCCError) -> Lease {
        // The proposer draws an ID for 0; any other, negative ones too, is taken as etcd takes it.
        if id == 0 { throw .leaseNotFound }
        if ttl > LeaseTable.ttlSecondsMax { throw .leaseTTLTooLarge }
        if leases[id] != nil { throw .leaseExists }
        let lease = Lease(id: id, ttl: max(ttl, minimumTTL))
        leases.insert(lease)
        return lease
    }

    /// Revokes lease `id`, deleting its keys in one revision (in key order, as etcd does). Returns the revision after.
    package mutating func revokeLease(id: Int64) throws(MVCCError) -> Int64 {
        guard let lease = leases[id] else { throw .leaseNotFound }
        var write = Write(beginRevision: revision)
        for key in lease.keys.sorted() {
            _ = deleteRange(DeleteRangeRequest(range: .single(key.bytes)), in: &write)
        }
        leases.remove(id)
        return commit(write)
    }
}
