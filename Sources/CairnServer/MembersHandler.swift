// `/v2/members` as etcd 3.4 serves it: list, the leader, add (by peer URLs), update peer URLs, remove, with etcd's
// statuses and messages. Changes go through the log as member-table entries; the leader then moves Raft's
// configuration (learner first, then voter) to match.
import CairnAPI
import CairnBase
import CairnHTTP
import CairnReplica
import CairnStore

struct MembersHandler: Sendable {
    let node: KeySpaceNode
    /// Added members get IDs derived like the initial ones (peer URLs and token), so the new member, started with
    /// the same token, knows its own ID.
    let token: String
    /// With v2 auth on, member changes need a `root` user (etcd's hasWriteRootAccess).
    let credentials: V2Credentials
    static let bodyBytesMax = 64 * 1024

    /// The methods etcd's members handler takes, in the order its `Allow` header lists them.
    static let methods = ["GET", "POST", "DELETE", "PUT"]

    func handle(_ exchange: HTTPExchange, memberPath rawMemberPath: Substring) {
        // Go decodes the path before any handler sees it, and refuses a malformed escape outright.
        guard case .success(let memberPath) = FormDecoding.decodePath(rawMemberPath) else {
            return exchange.respond(status: 400, headers: HTTPHeaders([("content-type", "text/plain; charset=utf-8")]),
                                    body: Array("400 Bad Request".utf8))
        }
        let method = exchange.request.method
        // As etcd: other methods (HEAD too) are refused before anything else, without the cluster ID header.
        guard Self.methods.contains(method) else { return ClientHandler.methodNotAllowed(exchange, Self.methods) }
        guard method == "GET" || credentials.hasRootAccess(exchange.request, node.view().mvcc.auth.v2) else {
            return V2Credentials.refuse(exchange)
        }
        // etcd's `trimPrefix`: the path after /v2/members and one slash.
        let rest = memberPath.hasPrefix("/") ? memberPath.dropFirst() : memberPath[...]
        switch method {
        case "GET":
            switch rest {
            case "": respond(exchange, 200, members(node.memberTable))
            case "leader": leader(exchange)
            default: message(exchange, 404, "Not found")
            }
        case "POST":
            // etcd adds a member whatever follows /v2/members.
            add(exchange)
        case "DELETE":
            guard let id = memberID(exchange, rest) else { return }
            remove(exchange, id)
        default:
            guard let id = memberID(exchange, rest) else { return }
            peerURLs(exchange) { urls in
                let table = node.memberTable
                guard table.members[id] != nil else { return message(exchange, 404, "No such member: \(hex(id))") }
                if urls.contains(where: { url in table.owner(ofPeerURL: url).map { $0 != id } ?? false }) {
                    return message(exchange, 409, "membership: peerURL exists")
                }
                change(exchange, .updatePeerURLs(id: id, peerURLs: urls), status: 204)
            }
        }
    }

    /// The leader's member record; during an election (no leader known), etcd's 503.
    private func leader(_ exchange: HTTPExchange) {
        guard let leader = node.raftStatus.leader, let record = node.memberTable.members[leader] else {
            return message(exchange, 503, "During election")
        }
        var json = GoJSON()
        Self.member(record, into: &json)
        json.raw("\n")
        respond(exchange, 200, json.take())
    }

    /// etcd's `getID`: the path names a member ID in hex (Go's `ParseUint(s, 16, 64)`), or the answer is sent.
    private func memberID(_ exchange: HTTPExchange, _ text: Substring) -> UInt64? {
        guard !text.isEmpty else {
            // No ID: Go's `http.Error` 405, with the cluster ID and without an Allow header.
            var headers = ClientHandler.corsHeaders(contentType: "text/plain; charset=utf-8")
            headers.add("X-Content-Type-Options", "nosniff")
            headers.add("X-Etcd-Cluster-Id", hex(node.clusterID))
            exchange.respond(status: 405, headers: headers, body: Array("Method Not Allowed\n".utf8))
            return nil
        }
        guard text.utf8.allSatisfy({ $0 < 0x80 && Character(Unicode.Scalar($0)).isHexDigit }), let id = UInt64(text, radix: 16) else {
            message(exchange, 404, "No such member: \(text)")
            return nil
        }
        return id
    }

    private func remove(_ exchange: HTTPExchange, _ id: UInt64) {
        let table = node.memberTable
        // etcd's strict reconfiguration check comes first: the members left must have a quorum of started ones.
        let others = table.members.values.filter { $0.id != id }
        if table.members[id] != nil, others.filter(\.isStarted).count < others.count / 2 + 1 {
            return message(exchange, 500, "Internal Server Error")
        }
        guard table.members[id] != nil else { return message(exchange, 404, "No such member: \(hex(id))") }
        change(exchange, .remove(id: id), status: 204)
    }

    private func add(_ exchange: HTTPExchange) {
        peerURLs(exchange) { urls in
            let table = node.memberTable
            // etcd's strict reconfiguration check: the started members must be a quorum of the cluster with the new
            // one (except a second member for a single started one, etcd's documented way to restore a cluster).
            let started = table.members.values.filter(\.isStarted).count, count = table.members.count + 1
            guard (started == 1 && count == 2) || started >= count / 2 + 1 else {
                return message(exchange, 500, "Internal Server Error")
            }
            // The peer URLs first: etcd draws IDs at random, so only Cairn's derived IDs can collide, and a URL in use
            // gives the same ID again.
            if urls.contains(where: { table.owner(ofPeerURL: $0) != nil }) { return message(exchange, 409, "membership: peerURL exists") }
            let id = ClusterBootstrap.memberID(peerURLs: urls, token: token)
            guard table.members[id] == nil else { return message(exchange, 409, "membership: ID exists") }
            change(exchange, .add(id: id, peerURLs: urls), status: 201) { table in
                let record = table.members[id] ?? MemberRecord(id: id, name: "", peerURLs: urls, clientURLs: [])
                var json = GoJSON()
                Self.member(record, into: &json)
                json.raw("\n")
                return json.take()
            }
        }
    }

    /// The JSON body's `peerURLs` as etcd reads them (see `MemberRequest`), or etcd's 415/400 answer.
    private func peerURLs(_ exchange: HTTPExchange, then: @escaping @Sendable ([String]) -> Void) {
        // etcd lowers and trims the media type only when parameters follow it.
        var type = exchange.request.headers["content-type"] ?? ""
        if let semicolon = type.firstIndex(of: ";") {
            type = String(type[..<semicolon].trimmingASCIIWhitespace()).lowercased()
        }
        guard type == "application/json" else {
            return message(exchange, 415, "Bad Content-Type \(type), accept application/json")
        }
        exchange.collectBody(bytesMax: Self.bodyBytesMax) { result in
            switch result {
            case .failure(let error): message(exchange, error.status, error.reason)
            case .success(let bytes):
                switch MemberRequest.peerURLs(bytes) {
                case .failure(let error): message(exchange, 400, error.message)
                case .success(let urls): then(urls)
                }
            }
        }
    }

    private func change(_ exchange: HTTPExchange, _ change: MemberChange, status: Int,
                        body: @escaping @Sendable (MemberTable) -> [UInt8] = { _ in [] }) {
        // Changes before the initial members are logged would be ignored (see `MemberTable.apply`).
        guard node.memberTable.isLogged else { return message(exchange, 503, "etcdserver: the cluster is still starting; retry") }
        node.proposeMemberChange(change) { result in
            switch result {
            case .success(let table): respond(exchange, status, body(table))
            // etcd answers every failed change (timeout, no leader) alike.
            case .failure: message(exchange, 500, "Internal Server Error")
            }
        }
    }

    private func members(_ table: MemberTable) -> [UInt8] {
        var json = GoJSON()
        json.raw("{\"members\":[")
        for (index, record) in table.sorted.enumerated() {
            if index > 0 { json.raw(",") }
            Self.member(record, into: &json)
        }
        json.raw("]}\n")
        return json.take()
    }

    static func member(_ record: MemberRecord, into json: inout GoJSON) {
        json.raw("{\"id\":")
        json.string(hex(record.id))
        json.raw(",\"name\":")
        json.string(record.name)
        json.raw(",\"peerURLs\":")
        strings(record.peerURLs, into: &json)
        json.raw(",\"clientURLs\":")
        strings(record.clientURLs, into: &json)
        json.raw("}")
    }

    static func strings(_ values: [String], into json: inout GoJSON) {
        json.raw("[")
        for (index, value) in values.enumerated() {
            if index > 0 { json.raw(",") }
            json.string(value)
        }
        json.raw("]")
    }

    private func respond(_ exchange: HTTPExchange, _ status: Int, _ body: [UInt8]) {
        // etcd's 204 is a bare WriteHeader: no Content-Type.
        var headers = status == 204 ? HTTPHeaders(ClientHandler.cors) : ClientHandler.corsHeaders(contentType: "application/json")
        headers.add("X-Etcd-Cluster-Id", hex(node.clusterID))
        exchange.respond(status: status, headers: headers, body: status == 204 ? [] : body)
    }

    /// etcd's `HTTPError`: `{"message":...}` with no newline after it (json.Marshal, where answers use an Encoder).
    private func message(_ exchange: HTTPExchange, _ status: Int, _ text: String) {
        var json = GoJSON()
        json.raw("{\"message\":")
        json.string(text)
        json.raw("}")
        respond(exchange, status, json.take())
    }
}
