// etcd's v3 JSON gateway, the answer side: byte for byte what etcd 3.4's grpc-gateway writes (jsonpb with proto
// field names): fields in proto order, zero values left out, 64-bit integers as strings, bytes in base64.
import CairnBase
import CairnMVCC

/// The response header of every v3 answer.
package struct V3Header: Sendable, Equatable {
    package var clusterID: UInt64
    package var memberID: UInt64
    package var revision: Int64
    package var raftTerm: UInt64

    package init(clusterID: UInt64, memberID: UInt64, revision: Int64, raftTerm: UInt64) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.revision = revision
        self.raftTerm = raftTerm
    }
}

/// A JSON object under construction with jsonpb's rules: a comma before every member but the first, zeros omitted.
/// It takes the caller's buffer for its lifetime (swapped, never copied) and hands it back when finished.
struct V3Object {
    var json = GoJSON(capacity: 0)
    private var first = true

    init(taking buffer: inout GoJSON) {
        swap(&json, &buffer)
        json.raw("{")
    }

    mutating func finish(into buffer: inout GoJSON) {
        json.raw("}")
        swap(&json, &buffer)
    }

    mutating func nameField(_ name: StaticString) {
        if !first { json.raw(",") }
        first = false
        json.raw("\"")
        json.raw(name)
        json.raw("\":")
    }

    mutating func int64<T: BinaryInteger>(_ field: StaticString, _ value: T) {
        guard value != 0 else { return }
        nameField(field)
        json.raw("\"")
        json.number(value)
        json.raw("\"")
    }

    mutating func bytes(_ field: StaticString, _ value: [UInt8]) {
        guard !value.isEmpty else { return }
        nameField(field)
        V3JSON.base64(&json, value)
    }

    mutating func bool(_ field: StaticString, _ value: Bool) {
        guard value else { return }
        nameField(field)
        json.raw("true")
    }

    /// A nested message, written by `body` into the same buffer (always written: a set message is never omitted).
    mutating func object(_ field: StaticString, _ body: (inout V3Object) -> Void) {
        nameField(field)
        var inner = V3Object(taking: &json)
        body(&inner)
        inner.finish(into: &json)
    }

    /// A repeated field; left out when empty.
    mutating func array<T>(_ field: StaticString, _ items: [T], _ body: (inout GoJSON, T) -> Void) {
        guard !items.isEmpty else { return }
        nameField(field)
        json.raw("[")
        for (index, item) in items.enumerated() {
            if index > 0 { json.raw(",") }
            body(&json, item)
        }
        json.raw("]")
    }
}

package enum V3JSON {
    package static func error(_ error: V3Error) -> [UInt8] {
        var json = GoJSON()
        json.raw("{\"error\":")
        json.string(error.message)
        json.raw(",\"message\":")
        json.string(error.message)
        json.raw(",\"code\":")
        json.number(error.code.rawValue)
        json.raw("}")
        return json.take()
    }

    static func header(_ object: inout V3Object, _ header: V3Header) {
        object.object("header") { h in
            h.int64("cluster_id", header.clusterID)
            h.int64("member_id", header.memberID)
            h.int64("revision", header.revision)
            h.int64("raft_term", header.raftTerm)
        }
    }

    /// A response inside a transaction: its header holds only the revision.
    static func innerHeader(_ object: inout V3Object, revision: Int64) {
        object.object("header") { $0.int64("revision", revision) }
    }

    static func base64(_ json: inout GoJSON, _ value: [UInt8]) {
        json.raw("\"")
        json.raw(bytes: Base64.encode(value))
        json.raw("\"")
    }

    static func keyValue(_ json: inout GoJSON, _ kv: KeyValue) {
        var object = V3Object(taking: &json)
        keyValueMembers(&object, kv)
        object.finish(into: &json)
    }

    static func keyValueMembers(_ object: inout V3Object, _ kv: KeyValue) {
        object.bytes("key", kv.key)
        object.int64("create_revision", kv.createRevision)
        object.int64("mod_revision", kv.modRevision)
        object.int64("version", kv.version)
        object.bytes("value", kv.value)
        object.int64("lease", kv.lease)
    }

    static func rangeBody(_ object: inout V3Object, _ response: RangeResponse) {
        object.array("kvs", response.kvs, keyValue)
        object.bool("more", response.more)
        object.int64("count", response.count)
    }

    static func putBody(_ object: inout V3Object, _ response: PutResponse) {
        if let prev = response.prevKV { object.object("prev_kv") { keyValueMembers(&$0, prev) } }
    }

    static func deleteBody(_ object: inout V3Object, _ response: DeleteRangeResponse) {
        object.int64("deleted", response.deleted)
        object.array("prev_kvs", response.prevKVs, keyValue)
    }

    static func txnBody(_ object: inout V3Object, _ response: TxnResponse) {
        object.bool("succeeded", response.succeeded)
        object.array("responses", response.responses) { json, op in
            var wrapper = V3Object(taking: &json)
            switch op {
            case .range(let r): wrapper.object("response_range") { innerHeader(&$0, revision: r.revision); rangeBody(&$0, r) }
            case .put(let p): wrapper.object("response_put") { innerHeader(&$0, revision: p.revision); putBody(&$0, p) }
            case .deleteRange(let d): wrapper.object("response_delete_range") { innerHeader(&$0, revision: d.revision); deleteBody(&$0, d) }
            // etcd leaves a nested transaction's header empty.
            case .txn(let t): wrapper.object("response_txn") { $0.object("header") { _ in }; txnBody(&$0, t) }
            }
            wrapper.finish(into: &json)
        }
    }

    package static func range(_ header: V3Header, _ response: RangeResponse) -> [UInt8] {
        answer(header) { rangeBody(&$0, response) }
    }

    package static func put(_ header: V3Header, _ response: PutResponse) -> [UInt8] {
        answer(header) { putBody(&$0, response) }
    }

    package static func deleteRange(_ header: V3Header, _ response: DeleteRangeResponse) -> [UInt8] {
        answer(header) { deleteBody(&$0, response) }
    }

    package static func txn(_ header: V3Header, _ response: TxnResponse) -> [UInt8] {
        answer(header) { txnBody(&$0, response) }
    }

    /// Compaction and lease revoke answer with the header alone.
    package static func headerOnly(_ header: V3Header) -> [UInt8] {
        answer(header) { _ in }
    }

    package static func leaseGranted(_ header: V3Header, _ lease: Lease) -> [UInt8] {
        answer(header) { o in
            o.int64("ID", lease.id)
            o.int64("TTL", lease.ttl)
        }
    }

    /// TimeToLive: `ttl` is -1 for an unknown lease, which then has no granted TTL or keys.
    package static func timeToLive(_ header: V3Header, id: Int64, ttl: Int64, lease: Lease?, keys: Bool) -> [UInt8] {
        answer(header) { o in
            o.int64("ID", id)
            o.int64("TTL", ttl)
            if let lease {
                o.int64("grantedTTL", lease.ttl)
                if keys { o.array("keys", lease.keys.sorted()) { base64(&$0, $1.bytes) } }
            }
        }
    }

    package static func leases(_ header: V3Header, _ ids: [Int64]) -> [UInt8] {
        answer(header) { o in
            o.array("leases", ids) { json, id in
                var status = V3Object(taking: &json)
                status.int64("ID", id)
                status.finish(into: &json)
            }
        }
    }

    /// One keep-alive answer on the gateway's stream: `{"result":{...}}` and a newline.
    package static func keepAlive(_ header: V3Header, id: Int64, ttl: Int64) -> [UInt8] {
        var json = GoJSON()
        var outer = V3Object(taking: &json)
        outer.object("result") { o in
            Self.header(&o, header)
            o.int64("ID", id)
            o.int64("TTL", ttl)
        }
        outer.finish(into: &json)
        json.raw("\n")
        return json.take()
    }

    private static func answer(_ header: V3Header, _ body: (inout V3Object) -> Void) -> [UInt8] {
        var json = GoJSON()
        var object = V3Object(taking: &json)
        Self.header(&object, header)
        body(&object)
        object.finish(into: &json)
        return json.take()
    }
}
