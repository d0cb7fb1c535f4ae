// etcd's gRPC messages (CairnProto, generated) to and from the key space's own requests and answers: a field for a
// field, as etcd's v3rpc reads them (a compare's target picks its union member; an unset member is zero).
import CairnAPI
import CairnMVCC
import CairnProto
import Foundation


// MARK: - Requests

extension RangeRequest {
    init(_ m: Etcdserverpb_RangeRequest) {
        self.init(range: KeyRange(key: [UInt8](m.key), rangeEnd: [UInt8](m.rangeEnd)))
        limit = m.limit
        revision = m.revision
        switch m.sortOrder {
        case .ascend: sortOrder = .ascend
        case .descend: sortOrder = .descend
        default: sortOrder = .none
        }
        switch m.sortTarget {
        case .version: sortTarget = .version
        case .create: sortTarget = .create
        case .mod: sortTarget = .mod
        case .value: sortTarget = .value
        default: sortTarget = .key
        }
        serializable = m.serializable
        keysOnly = m.keysOnly
        countOnly = m.countOnly
        minModRevision = m.minModRevision
        maxModRevision = m.maxModRevision
        minCreateRevision = m.minCreateRevision
        maxCreateRevision = m.maxCreateRevision
    }
}

extension PutRequest {
    init(_ m: Etcdserverpb_PutRequest) {
        self.init(key: [UInt8](m.key), value: [UInt8](m.value))
        lease = m.lease
        prevKV = m.prevKv
        ignoreValue = m.ignoreValue
        ignoreLease = m.ignoreLease
    }
}

extension DeleteRangeRequest {
    init(_ m: Etcdserverpb_DeleteRangeRequest) {
        self.init(range: KeyRange(key: [UInt8](m.key), rangeEnd: [UInt8](m.rangeEnd)))
        prevKV = m.prevKv
    }
}

extension TxnRequest {
    /// Nested transactions recurse at most as deep as SwiftProtobuf decoded them (its depth limit, 100).
    init(_ m: Etcdserverpb_TxnRequest) throws(V3Error) {
        self.init()
        for c in m.compare {
            let result: Compare.Result
            switch c.result {
            case .greater: result = .greater
            case .less: result = .less
            case .notEqual: result = .notEqual
            default: result = .equal
            }
            let target: Compare.Target
            switch c.target {
            case .create: target = .createRevision(c.createRevision)
            case .mod: target = .modRevision(c.modRevision)
            case .value: target = .value([UInt8](c.value))
            case .lease: target = .lease(c.lease)
            default: target = .version(c.version)
            }
            compare.append(Compare(KeyRange(key: [UInt8](c.key), rangeEnd: [UInt8](c.rangeEnd)), target, result))
        }
        success = try Self.ops(m.success)
        failure = try Self.ops(m.failure)
    }

    private static func ops(_ ops: [Etcdserverpb_RequestOp]) throws(V3Error) -> [RequestOp] {
        var result: [RequestOp] = []
        for op in ops {
            switch op.request {
            case .requestRange(let r)?: result.append(.range(RangeRequest(r)))
            case .requestPut(let p)?: result.append(.put(PutRequest(p)))
            case .requestDeleteRange(let d)?: result.append(.deleteRange(DeleteRangeRequest(d)))
            case .requestTxn(let t)?: result.append(.txn(try TxnRequest(t)))
            // etcd's checkRequestOp: an empty union.
            case nil: throw V3Error(.invalidArgument, MVCCError.keyNotFound.description)
            }
        }
        return result
    }
}

extension V3WatchRequest {
    init(_ m: Etcdserverpb_WatchCreateRequest) {
        self.init(range: KeyRange(key: [UInt8](m.key), rangeEnd: [UInt8](m.rangeEnd)))
        startRevision = m.startRevision
        prevKV = m.prevKv
        progressNotify = m.progressNotify
        for filter in m.filters {
            switch filter {
            case .noput: noPut = true
            case .nodelete: noDelete = true
            default: break
            }
        }
    }
}

// MARK: - Answers

enum GRPCAnswer {
    static func header(_ h: V3Header) -> Etcdserverpb_ResponseHeader {
        var m = Etcdserverpb_ResponseHeader()
        m.clusterID = h.clusterID
        m.memberID = h.memberID
        m.revision = h.revision
        m.raftTerm = h.raftTerm
        return m
    }

    /// A response inside a transaction: its header holds only the revision.
    static func innerHeader(revision: Int64) -> Etcdserverpb_ResponseHeader {
        var m = Etcdserverpb_ResponseHeader()
        m.revision = revision
        return m
    }

    static func keyValue(_ kv: KeyValue) -> Mvccpb_KeyValue {
        var m = Mvccpb_KeyValue()
        m.key = Data(kv.key)
        m.createRevision = kv.createRevision
        m.modRevision = kv.modRevision
        m.version = kv.version
        m.value = Data(kv.value)
        m.lease = kv.lease
        return m
    }

    static func event(_ event: Event) -> Mvccpb_Event {
        var m = Mvccpb_Event()
        m.type = event.type == .delete ? .delete : .put
        m.kv = keyValue(event.kv)
        if let prev = event.prevKV { m.prevKv = keyValue(prev) }
        return m
    }

    static func range(_ header: Etcdserverpb_ResponseHeader, _ r: RangeResponse) -> Etcdserverpb_RangeResponse {
        var m = Etcdserverpb_RangeResponse()
        m.header = header
        m.kvs = r.kvs.map(keyValue)
        m.more = r.more
        m.count = r.count
        return m
    }

    static func put(_ header: Etcdserverpb_ResponseHeader, _ r: PutResponse) -> Etcdserverpb_PutResponse {
        var m = Etcdserverpb_PutResponse()
        m.header = header
        if let prev = r.prevKV { m.prevKv = keyValue(prev) }
        return m
    }

    static func deleteRange(_ header: Etcdserverpb_ResponseHeader, _ r: DeleteRangeResponse) -> Etcdserverpb_DeleteRangeResponse {
        var m = Etcdserverpb_DeleteRangeResponse()
        m.header = header
        m.deleted = r.deleted
        m.prevKvs = r.prevKVs.map(keyValue)
        return m
    }

    /// Nested transactions' answers recurse as deep as their requests did (bounded by the decoder's depth limit).
    static func txn(_ header: Etcdserverpb_ResponseHeader, _ r: TxnResponse) -> Etcdserverpb_TxnResponse {
        var m = Etcdserverpb_TxnResponse()
        m.header = header
        m.succeeded = r.succeeded
        m.responses = r.responses.map { op in
            var o = Etcdserverpb_ResponseOp()
            switch op {
            case .range(let x): o.responseRange = range(innerHeader(revision: x.revision), x)
            case .put(let x): o.responsePut = put(innerHeader(revision: x.revision), x)
            case .deleteRange(let x): o.responseDeleteRange = deleteRange(innerHeader(revision: x.revision), x)
            // etcd leaves a nested transaction's header empty.
            case .txn(let x): o.responseTxn = txn(Etcdserverpb_ResponseHeader(), x)
            }
            return o
        }
        return m
    }

    static func member(_ member: V3Member) -> Etcdserverpb_Member {
        var m = Etcdserverpb_Member()
        m.id = member.id
        m.name = member.name
        m.peerUrls = member.peerURLs
        m.clientUrls = member.clientURLs
        m.isLearner = member.isLearner
        return m
    }

    static func alarms(_ members: [UInt64]) -> Etcdserverpb_AlarmResponse {
        var m = Etcdserverpb_AlarmResponse()
        m.alarms = members.map { id in
            var a = Etcdserverpb_AlarmMember()
            a.memberID = id
            a.alarm = .nospace
            return a
        }
        return m
    }

    static func status(_ header: V3Header, _ s: V3Status) -> Etcdserverpb_StatusResponse {
        var m = Etcdserverpb_StatusResponse()
        m.header = Self.header(header)
        m.version = s.version
        m.dbSize = s.dbSize
        m.leader = s.leader
        m.raftIndex = s.raftIndex
        m.raftTerm = s.raftTerm
        m.raftAppliedIndex = s.raftAppliedIndex
        m.errors = s.errors
        m.dbSizeInUse = s.dbSizeInUse
        m.isLearner = s.isLearner
        return m
    }
}
