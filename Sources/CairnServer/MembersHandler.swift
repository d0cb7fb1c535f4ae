// `/v2/members` as etcd 3.4 serves it: list, add (by peer URLs), update peer URLs, remove. Changes go through the
// log as member-table entries; the leader then moves Raft's configuration (learner first, then voter) to match.
import CairnAPI
import CairnHTTP
import CairnStore
import Foundation

struct MembersHandler: Sendable {
    let node: KeySpaceNode
    /// Added members get IDs derived like the initial ones (peer URLs and token), so the new member, started with
    /// the same token, knows its own ID.
    let token: String
    static let bodyBytesMax = 64 * 1024

    func handle(_ exchange: HTTPExchange, memberPath: Substring) {
        let method = exchange.request.method
        if memberPath.isEmpty || memberPath == "/" {
            switch method {
            case "GET", "HEAD": return respond(exchange, 200, members(node.memberTable))
            case "POST": return add(exchange)
            default: return ClientHandler.methodNotAllowed(exchange, ["GET", "HEAD", "POST"])
            }
        }
        let idText = String(memberPath.dropFirst())
        guard let id = UInt64(idText, radix: 16), String(id, radix: 16) == idText.lowercased() else {
            return message(exchange, 404, "No such member: \(idText)")
        }
        switch method {
        case "DELETE":
            guard node.memberTable.members[id] != nil else { return message(exchange, 404, "No such member: \(idText)") }
            change(exchange, .remove(id: id), status: 204)
        case "PUT":
            peerURLs(exchange) { urls in
                guard node.memberTable.members[id] != nil else { return message(exchange, 404, "No such member: \(idText)") }
                if let owner = urls.lazy.compactMap({ node.memberTable.owner(ofPeerURL: $0) }).first, owner != id {
                    return message(exchange, 409, "etcdserver: peerURL exists")
                }
                change(exchange, .updatePeerURLs(id: id, peerURLs: urls), status: 204)
            }
        default:
            ClientHandler.methodNotAllowed(exchange, ["DELETE", "PUT"])
        }
    }

    private func add(_ exchange: HTTPExchange) {
        peerURLs(exchange) { urls in
            let table = node.memberTable
            if urls.contains(where: { table.owner(ofPeerURL: $0) != nil }) { return message(exchange, 409, "etcdserver: peerURL exists") }
            let id = ClusterBootstrap.memberID(peerURLs: urls, token: token)
            guard table.members[id] == nil else { return message(exchange, 409, "etcdserver: ID exists") }
            change(exchange, .add(id: id, peerURLs: urls), status: 201) { table in
                let record = table.members[id] ?? MemberRecord(id: id, name: "", peerURLs: urls, clientURLs: [])
                var json = GoJSON()
                Self.member(record, into: &json)
                json.raw("\n")
                return json.take()
            }
        }
    }

    /// The JSON body's `peerURLs`, each a valid http URL, or etcd's 400/415 answer.
    private func peerURLs(_ exchange: HTTPExchange, then: @escaping @Sendable ([String]) -> Void) {
        let type = exchange.request.headers["content-type"]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard type == "application/json" else {
            return message(exchange, 415, "Bad Content-Type \(exchange.request.headers["content-type"] ?? ""), accept application/json")
        }
        exchange.collectBody(bytesMax: Self.bodyBytesMax) { result in
            guard case .success(let bytes) = result,
                  let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any],
                  let urls = object["peerURLs"] as? [String], !urls.isEmpty
            else { return message(exchange, 400, "unexpected end of JSON input or missing peerURLs") }
            for url in urls {
                do { _ = try URLList.parse(url, flag: "peerURLs") } catch { return message(exchange, 400, "\(error)") }
            }
            then(urls)
        }
    }

    private func change(_ exchange: HTTPExchange, _ change: MemberChange, status: Int,
                        body: @escaping @Sendable (MemberTable) -> [UInt8] = { _ in [] }) {
        // Changes before the initial members are logged would be ignored (see `MemberTable.apply`).
        guard node.memberTable.isLogged else { return message(exchange, 503, "etcdserver: the cluster is still starting; retry") }
        node.proposeMemberChange(change) { result in
            switch result {
            case .success(let table): respond(exchange, status, body(table))
            case .failure(let error): message(exchange, 500, error.cause.isEmpty ? error.code.message : error.cause)
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
        var headers = ClientHandler.corsHeaders(contentType: "application/json")
        headers.add("X-Etcd-Cluster-Id", hex(node.clusterID))
        exchange.respond(status: status, headers: headers, body: status == 204 ? [] : body)
    }

    private func message(_ exchange: HTTPExchange, _ status: Int, _ text: String) {
        var json = GoJSON()
        json.raw("{\"message\":")
        json.string(text)
        json.raw("}\n")
        respond(exchange, status, json.take())
    }
}
