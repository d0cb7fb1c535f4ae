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

    let node: KeySpaceNode
    let member: MemberInfo
    /// Added members get IDs derived from their peer URLs and this token, as `/v2/members` gives them.
    let token: String
    /// etcd's `--max-request-bytes`: a request whose encoding is longer is refused with "request is too large".
    let requestBytesMax: Int
    /// etcd's `--quota-backend-bytes`, measured on the key space's kept keys and values (nil: no quota).
    let quotaBytes: Int?
    /// Tokens and permissions once auth is enabled.
    let auth: V3AuthGate

    /// etcd's default quota (`--quota-backend-bytes 0`): 2 GiB.
    package static let quotaBytesDefault = 2 << 30

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
            let request = try fields.rangeRequest()
            if request.range.start.isEmpty { throw V3Error(MVCCError.emptyKey) }
            try checkSize(MVCCCommand.txn(TxnRequest(success: [.range(request)])))
            guard !request.serializable else { return range(exchange, request, node.view()) }
            node.linearizableRead { [self] result in
                switch result {
                case .success(let view): range(exchange, request, view)
                case .failure(let error): respond(exchange, V3Error(.unavailable, String(decoding: error.causeBytes, as: UTF8.self)))
                }
            }
        case .put:
            let request = try fields.putRequest()
            try Self.mvcc { () throws(MVCCError) in try request.validate() }
            try write(exchange, .put(request))
        case .deleteRange:
            let request = try fields.deleteRangeRequest()
            if request.range.start.isEmpty { throw V3Error(MVCCError.emptyKey) }
            try write(exchange, .deleteRange(request))
        case .txn:
            let request = try fields.txnRequest()
            try Self.mvcc { () throws(MVCCError) in try request.validate() }
            try write(exchange, .txn(request))
        case .compaction:
            try write(exchange, .compact(revision: try fields.int64("revision")))
        case .leaseGrant:
            let ttl = try fields.int64("TTL")
            if ttl > LeaseTable.ttlSecondsMax { throw V3Error(MVCCError.leaseTTLTooLarge) }
            var id = try fields.int64("ID")
            // etcd draws a positive 63-bit ID when none is asked for.
            while id == 0 { id = Int64.random(in: 1...Int64.max) }
            try write(exchange, .grantLease(id: id, ttl: ttl))
        case .leaseRevoke, .leaseRevokeAlias:
            try write(exchange, .revokeLease(id: try fields.int64("ID")))
        case .leaseKeepAlive:
            let id = try fields.int64("ID")
            node.proposeV3(.keepAliveLease(id: id)) { [self] result, view in
                // An unknown lease is answered with no TTL, on the stream, as etcd's keep-alive does.
                switch result {
                case .success(.leaseKeptAlive(let lease, let revision)):
                    stream(exchange, V3JSON.keepAlive(header(view, revision: revision), id: id, ttl: lease.ttl))
                case .failure(let error) where error == V3Error(MVCCError.leaseNotFound):
                    stream(exchange, V3JSON.keepAlive(header(view, revision: view.mvcc.revision), id: id, ttl: 0))
                case .failure(let error): respond(exchange, error)
                case .success: respond(exchange, V3Error(.internalError, "etcdserver: unexpected answer to a keep-alive"))
                }
            }
        case .leaseTimeToLive, .leaseTimeToLiveAlias:
            let id = try fields.int64("ID"), keys = try fields.bool("keys")
            node.leaseTimeToLive(id) { [self] ttl, lease, view in
                json(exchange, V3JSON.timeToLive(header(view, revision: view.mvcc.revision), id: id, ttl: ttl, lease: lease, keys: keys))
            }
        case .leaseLeases, .leaseLeasesAlias:
            let view = node.view()
            json(exchange, V3JSON.leases(header(view, revision: view.mvcc.revision), view.mvcc.leases.all.map(\.id)))
        case .status:
            let view = node.view(), raft = node.raftStatus
            let size = Int64(view.mvcc.historyBytes)
            let status = V3Status(version: "3.4.23", dbSize: size, leader: raft.leader ?? 0, raftIndex: raft.commit, raftTerm: raft.term,
                                  raftAppliedIndex: raft.applied, errors: raft.storageFailure.map { [$0] } ?? [], dbSizeInUse: size,
                                  isLearner: raft.learners.contains(node.id))
            json(exchange, V3JSON.status(header(view, revision: view.mvcc.revision), status))
        case .alarm:
            // etcd answers alarm calls without a header. GET (the default) lists; ACTIVATE and DEACTIVATE of NOSPACE go
            // through the log and answer with the alarms they changed; other alarm types are not kept here.
            let action = try fields.enumeration("action", [("GET", 0), ("ACTIVATE", 1), ("DEACTIVATE", 2)]) ?? 0
            let alarm = try fields.enumeration("alarm", [("NONE", 0), ("NOSPACE", 1), ("CORRUPT", 2)]) ?? 0
            let target = try fields.uint64("memberID")
            guard action != 0 else { return json(exchange, V3JSON.alarms(node.view().mvcc.noSpaceAlarms.sorted())) }
            guard alarm == 1 else { return json(exchange, V3JSON.alarms([])) }
            try write(exchange, .alarm(activate: action == 1, member: target))
        case .memberList, .memberAdd, .memberRemove, .memberUpdate, .memberPromote:
            try members(exchange, endpoint, fields)
        case .watch:
            break
        }
    }

    /// etcd's quota check before a write that adds data: past the quota, this member raises its NOSPACE alarm (through
    /// the log, so every member then refuses such writes until it is cleared) and the write is refused.
    private func checkQuota(_ command: MVCCCommand) throws(V3Error) {
        guard let quotaBytes, command.addsData else { return }
        let space = node.view().mvcc
        guard space.historyBytes + command.encoded().count >= quotaBytes else { return }
        if !space.noSpaceAlarms.contains(member.id) { node.proposeV3(.alarm(activate: true, member: member.id)) { _, _ in } }
        throw V3Error(MVCCError.noSpace)
    }

    /// etcd refuses a request whose encoding passes `--max-request-bytes` before proposing it.
    private func checkSize(_ command: MVCCCommand) throws(V3Error) {
        if command.encoded().count > requestBytesMax { throw V3Error(.invalidArgument, "etcdserver: request is too large") }
    }

    private func write(_ exchange: HTTPExchange, _ command: MVCCCommand) throws(V3Error) {
        try checkSize(command)
        try checkQuota(command)
        node.proposeV3(command) { [self] result, view in
            switch result {
            case .failure(let error): respond(exchange, error)
            case .success(let answer): json(exchange, body(of: answer, view))
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

    private func range(_ exchange: HTTPExchange, _ request: RangeRequest, _ view: KeySpaceNode.View) {
        do throws(MVCCError) {
            let response = try view.mvcc.range(request)
            json(exchange, V3JSON.range(header(view, revision: response.revision), response))
        } catch {
            respond(exchange, V3Error(error))
        }
    }

    func header(_ view: KeySpaceNode.View, revision: Int64) -> V3Header {
        V3Header(clusterID: node.clusterID, memberID: member.id, revision: revision, raftTerm: view.raftTerm)
    }

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

extension V3Handler {
    /// The key space's check, its error as the gateway's.
    static func mvcc(_ check: () throws(MVCCError) -> Void) throws(V3Error) {
        do throws(MVCCError) { try check() } catch { throw V3Error(error) }
    }
}
