// `/v3/` and `/v3beta/` as etcd 3.4's JSON gateway serves them: POST bodies decoded by CairnAPI, writes and lease
// operations through the log, ranges linearizable unless `serializable`, answers and errors as etcd writes them.
import CairnAPI
import CairnHTTP
import CairnMVCC
import CairnStore

package struct V3Handler: Sendable {
    enum Endpoint: String {
        case range = "kv/range", put = "kv/put", deleteRange = "kv/deleterange", txn = "kv/txn", compaction = "kv/compaction"
        case leaseGrant = "lease/grant", leaseRevoke = "lease/revoke", leaseKeepAlive = "lease/keepalive"
        case leaseTimeToLive = "lease/timetolive", leaseLeases = "lease/leases"
        // etcd's additional bindings for three lease calls (etcd3gw uses them).
        case leaseRevokeAlias = "kv/lease/revoke", leaseTimeToLiveAlias = "kv/lease/timetolive", leaseLeasesAlias = "kv/lease/leases"
        case watch = "watch", status = "maintenance/status", alarm = "maintenance/alarm"
        case memberList = "cluster/member/list", memberAdd = "cluster/member/add", memberRemove = "cluster/member/remove"
        case memberUpdate = "cluster/member/update", memberPromote = "cluster/member/promote"
    }

    /// etcd's default `--max-request-bytes`: 1.5 MiB.
    package static let requestBytesMaxDefault = 1024 * 1024 + 512 * 1024
    /// gRPC takes this much more than `--max-request-bytes` in one message, as etcd configures it.
    static let grpcOverheadBytes = 512 * 1024

    let service: V3Service
    var node: KeySpaceNode { service.node }
    var requestBytesMax: Int { service.requestBytesMax }
    var auth: V3AuthGate { service.auth }

    /// etcd's default quota (`--quota-backend-bytes 0`): 2 GiB.
    package static let quotaBytesDefault = 2 << 30

    init(service: V3Service) {
        self.service = service
    }

    /// The JSON body read at most: base64 makes bytes a third longer and JSON adds its own, so twice the request
    /// bound plus gRPC's overhead; a longer body gets gRPC's "message larger than max".
    var bodyBytesMax: Int { 2 * (requestBytesMax + Self.grpcOverheadBytes) }

    /// The endpoint of a gateway path, nil when the path is not under `/v3/` or `/v3beta/`.
    static func endpointPath(_ path: Substring) -> Substring? {
        for prefix in ["/v3/", "/v3beta/"] where path.hasPrefix(prefix) { return path.dropFirst(prefix.count) }
        return nil
    }

    func handle(_ exchange: HTTPExchange, endpointPath: Substring) {
        let endpoint = Endpoint(rawValue: String(endpointPath))
        let authPath = endpointPath.hasPrefix("auth/") ? endpointPath.dropFirst(5) : nil
        guard endpoint != nil || authPath != nil else { return plain(exchange, status: 404, "Not Found\n") }
        guard exchange.request.method == "POST" else { return plain(exchange, status: 405, "Method Not Allowed\n") }
        exchange.collectBody(bytesMax: bodyBytesMax) { [self] result in
            do throws(V3Error) {
                let body: [UInt8]
                switch result {
                case .failure(let error) where error.status == 413:
                    throw V3Error(.resourceExhausted, "grpc: received message larger than max (more than \(bodyBytesMax) bytes)")
                case .failure(let error): throw V3Error(.invalidArgument, error.reason)
                case .success(let bytes): body = bytes
                }
                // An empty body is an empty request, as the gateway reads it.
                let json = body.allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 } ? Array("{}".utf8) : body
                let space = node.view().mvcc
                let user = try auth.user(for: endpoint, authenticating: authPath == "authenticate", exchange.request, space.auth, now: node.now)
                if endpoint == .watch { return V3WatchStream(handler: self, exchange: exchange, user: user).start(json) }
                let fields = try V3Fields(json: json)
                guard let endpoint else { return try authCall(exchange, authPath ?? "", fields, user: user) }
                try auth.authorize(endpoint, fields, user: user, space)
                try dispatch(exchange, endpoint, fields)
            } catch {
                respond(exchange, error)
            }
        }
    }

    private func dispatch(_ exchange: HTTPExchange, _ endpoint: Endpoint, _ fields: V3Fields) throws(V3Error) {
        switch endpoint {
        case .range:
            service.range(try fields.rangeRequest()) { [self] result in
                switch result {
                case .success(let (header, response)): json(exchange, V3JSON.range(header, response))
                case .failure(let error): respond(exchange, error)
                }
            }
        case .put: service.put(try fields.putRequest(), answer(exchange))
        case .deleteRange: service.deleteRange(try fields.deleteRangeRequest(), answer(exchange))
        case .txn: service.txn(try fields.txnRequest(), answer(exchange))
        case .compaction: service.compact(revision: try fields.int64("revision"), answer(exchange))
        case .leaseGrant: service.leaseGrant(ttl: try fields.int64("TTL"), id: try fields.int64("ID"), answer(exchange))
        case .leaseRevoke, .leaseRevokeAlias: service.leaseRevoke(id: try fields.int64("ID"), answer(exchange))
        case .leaseKeepAlive:
            let id = try fields.int64("ID")
            service.leaseKeepAlive(id: id) { [self] result in
                switch result {
                case .success(let (header, ttl)): stream(exchange, V3JSON.keepAlive(header, id: id, ttl: ttl))
                case .failure(let error): respond(exchange, error)
                }
            }
        case .leaseTimeToLive, .leaseTimeToLiveAlias:
            let id = try fields.int64("ID"), keys = try fields.bool("keys")
            service.leaseTimeToLive(id: id) { [self] header, ttl, lease in
                json(exchange, V3JSON.timeToLive(header, id: id, ttl: ttl, lease: lease, keys: keys))
            }
        case .leaseLeases, .leaseLeasesAlias:
            let (header, ids) = service.leases()
            json(exchange, V3JSON.leases(header, ids))
        case .status:
            let (header, status) = service.status()
            json(exchange, V3JSON.status(header, status))
        case .alarm:
            // etcd answers alarm calls without a header.
            let action = try fields.enumeration("action", [("GET", 0), ("ACTIVATE", 1), ("DEACTIVATE", 2)]) ?? 0
            let alarm = try fields.enumeration("alarm", [("NONE", 0), ("NOSPACE", 1), ("CORRUPT", 2)]) ?? 0
            service.alarm(action: action, alarm: alarm, memberID: try fields.uint64("memberID")) { [self] result in
                switch result {
                case .success(let members): json(exchange, V3JSON.alarms(members))
                case .failure(let error): respond(exchange, error)
                }
            }
        case .memberList: members(exchange, .success(service.memberList()))
        case .memberAdd:
            service.memberAdd(peerURLs: try fields.strings("peerURLs"), isLearner: try fields.bool("isLearner")) { [self] in members(exchange, $0) }
        case .memberRemove: service.memberRemove(id: try fields.uint64("ID")) { [self] in members(exchange, $0) }
        case .memberUpdate:
            service.memberUpdate(id: try fields.uint64("ID"), peerURLs: try fields.strings("peerURLs")) { [self] in members(exchange, $0) }
        case .memberPromote: throw service.memberPromote(id: try fields.uint64("ID"))
        case .watch:
            break
        }
    }

    private func members(_ exchange: HTTPExchange, _ result: Result<V3MembersAnswer, V3Error>) {
        switch result {
        case .success(let answer): json(exchange, V3JSON.memberList(answer.header, answer.members, added: answer.added))
        case .failure(let error): respond(exchange, error)
        }
    }

    /// A write's answer (or refusal) as the gateway writes it.
    private func answer(_ exchange: HTTPExchange) -> @Sendable (Result<(MVCCResult, KeySpaceNode.View), V3Error>) -> Void {
        { [self] result in
            switch result {
            case .success(let (answer, view)): json(exchange, body(of: answer, view))
            case .failure(let error): respond(exchange, error)
            }
        }
    }

    private func body(of answer: MVCCResult, _ view: KeySpaceNode.View) -> [UInt8] {
        switch answer {
        case .put(let r): V3JSON.put(header(view, revision: r.revision), r)
        case .deleteRange(let r): V3JSON.deleteRange(header(view, revision: r.revision), r)
        case .txn(let r): V3JSON.txn(header(view, revision: r.revision), r)
        case .compacted(let revision), .leaseRevoked(let revision): V3JSON.headerOnly(header(view, revision: revision))
        case .leaseGranted(let lease, let revision): V3JSON.leaseGranted(header(view, revision: revision), lease)
        case .leaseKeptAlive(let lease, let revision): V3JSON.keepAlive(header(view, revision: revision), id: lease.id, ttl: lease.ttl)
        case .alarms(let members): V3JSON.alarms(members)
        case .auth: V3JSON.headerOnly(header(view, revision: view.mvcc.revision))
        }
    }

    func header(_ view: KeySpaceNode.View, revision: Int64) -> V3Header { service.header(view, revision: revision) }

    // MARK: - Answers

    static let jsonHeaders = ClientHandler.corsHeaders(contentType: "application/json")

    func json(_ exchange: HTTPExchange, _ body: [UInt8]) {
        exchange.respond(status: 200, headers: Self.jsonHeaders, body: body)
    }

    /// A streaming call's single answer, sent chunked as the gateway streams it.
    private func stream(_ exchange: HTTPExchange, _ line: [UInt8]) {
        exchange.startResponse(status: 200, headers: Self.jsonHeaders)
        exchange.write(line)
        exchange.finish()
    }

    func respond(_ exchange: HTTPExchange, _ error: V3Error) {
        exchange.respond(status: error.httpStatus, headers: Self.jsonHeaders, body: V3JSON.error(error))
    }

    func plain(_ exchange: HTTPExchange, status: Int, _ text: String) {
        var headers = ClientHandler.corsHeaders(contentType: "text/plain; charset=utf-8")
        headers.add("X-Content-Type-Options", "nosniff")
        exchange.respond(status: status, headers: headers, body: Array(text.utf8))
    }
}
