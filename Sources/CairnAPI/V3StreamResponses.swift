// etcd's v3 JSON gateway, the answers beyond the key space: watch stream lines, maintenance status and the member
// list, byte for byte as etcd 3.4 writes them (proto field names, zero values left out, int64 as strings).
import CairnBase
import CairnMVCC

/// A member as `cluster/member/list` shows it.
package struct V3Member: Sendable, Equatable {
    package var id: UInt64
    package var name: String
    package var peerURLs: [String]
    package var clientURLs: [String]
    package var isLearner: Bool

    package init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String], isLearner: Bool) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }
}

/// What `maintenance/status` reports.
package struct V3Status: Sendable, Equatable {
    package var version: String
    package var dbSize: Int64
    package var leader: UInt64
    package var raftIndex: UInt64
    package var raftTerm: UInt64
    package var raftAppliedIndex: UInt64
    package var errors: [String]
    package var dbSizeInUse: Int64
    package var isLearner: Bool

    package init(version: String, dbSize: Int64, leader: UInt64, raftIndex: UInt64, raftTerm: UInt64, raftAppliedIndex: UInt64,
                 errors: [String], dbSizeInUse: Int64, isLearner: Bool) {
        self.version = version
        self.dbSize = dbSize
        self.leader = leader
        self.raftIndex = raftIndex
        self.raftTerm = raftTerm
        self.raftAppliedIndex = raftAppliedIndex
        self.errors = errors
        self.dbSizeInUse = dbSizeInUse
        self.isLearner = isLearner
    }
}

extension V3JSON {
    /// One line of a watch stream: `{"result":{...}}` and a newline. etcd's gateway stream has one watch, ID 0.
    package static func watchLine(_ header: V3Header, watchID: Int64 = 0, created: Bool = false, canceled: Bool = false,
                                  compactRevision: Int64 = 0, cancelReason: String = "", events: [Event] = []) -> [UInt8] {
        var json = GoJSON()
        var outer = V3Object(taking: &json)
        outer.object("result") { o in
            Self.header(&o, header)
            o.int64("watch_id", watchID)
            o.bool("created", created)
            o.bool("canceled", canceled)
            o.int64("compact_revision", compactRevision)
            if !cancelReason.isEmpty {
                o.nameField("cancel_reason")
                o.json.string(cancelReason)
            }
            o.array("events", events) { json, event in
                var e = V3Object(taking: &json)
                if event.type == .delete { e.enumName("type", "DELETE") }
                e.object("kv") { keyValueMembers(&$0, event.kv) }
                if let prev = event.prevKV { e.object("prev_kv") { keyValueMembers(&$0, prev) } }
                e.finish(into: &json)
            }
        }
        outer.finish(into: &json)
        json.raw("\n")
        return json.take()
    }

    /// A stream's failure as the gateway writes it: the error object, no newline.
    package static func streamError(_ error: V3Error) -> [UInt8] { Self.error(error) }

    /// `maintenance/alarm`: NOSPACE alarms by member, and no header (etcd sends none there).
    package static func alarms(_ members: [UInt64]) -> [UInt8] {
        var json = GoJSON()
        var o = V3Object(taking: &json)
        o.array("alarms", members) { json, member in
            var a = V3Object(taking: &json)
            a.int64("memberID", member)
            a.enumName("alarm", "NOSPACE")
            a.finish(into: &json)
        }
        o.finish(into: &json)
        return json.take()
    }

    package static func status(_ header: V3Header, _ status: V3Status) -> [UInt8] {
        var json = GoJSON()
        var o = V3Object(taking: &json)
        Self.header(&o, header)
        o.string("version", status.version)
        o.int64("dbSize", status.dbSize)
        o.int64("leader", status.leader)
        o.int64("raftIndex", status.raftIndex)
        o.int64("raftTerm", status.raftTerm)
        o.int64("raftAppliedIndex", status.raftAppliedIndex)
        o.array("errors", status.errors) { $0.string($1) }
        o.int64("dbSizeInUse", status.dbSizeInUse)
        o.bool("isLearner", status.isLearner)
        o.finish(into: &json)
        return json.take()
    }

    /// The member list, and first the member just added when there is one (`cluster/member/add`). List, update,
    /// remove and promote answer with the list alone.
    package static func memberList(_ header: V3Header, _ members: [V3Member], added: V3Member? = nil) -> [UInt8] {
        var json = GoJSON()
        var o = V3Object(taking: &json)
        Self.header(&o, header)
        if let added { o.object("member") { memberFields(&$0, added) } }
        o.array("members", members) { json, member in
            var m = V3Object(taking: &json)
            memberFields(&m, member)
            m.finish(into: &json)
        }
        o.finish(into: &json)
        return json.take()
    }

    private static func memberFields(_ m: inout V3Object, _ member: V3Member) {
        m.int64("ID", member.id)
        m.string("name", member.name)
        m.array("peerURLs", member.peerURLs) { $0.string($1) }
        m.array("clientURLs", member.clientURLs) { $0.string($1) }
        m.bool("isLearner", member.isLearner)
    }
}

extension V3Object {
    /// A string field; left out when empty.
    mutating func string(_ field: StaticString, _ value: String) {
        guard !value.isEmpty else { return }
        nameField(field)
        json.string(value)
    }

    /// An enum by name (the caller leaves out the zero value).
    mutating func enumName(_ field: StaticString, _ value: StaticString) {
        nameField(field)
        json.raw("\"")
        json.raw(value)
        json.raw("\"")
    }
}
