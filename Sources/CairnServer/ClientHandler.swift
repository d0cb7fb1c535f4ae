// The client-facing HTTP handler: routes etcd's paths to their answers, with etcd's 404/405 and CORS headers.
// Pure answers come from the API and store modules; this file only connects them to exchanges.
import CairnAPI
import CairnBase
import CairnHTTP
import CairnMVCC
import CairnStore

/// What this member tells clients about itself and its cluster.
package struct MemberInfo: Sendable {
    package var id: UInt64
    package var name: String
    package var peerURLs: [String]
    package var clientURLs: [String]
    package var startTime: Int64

    package init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String], startTime: Int64) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.startTime = startTime
    }
}

package struct ClientHandler: HTTPHandler {
    /// The version this member reports: clients choose code paths by it, so it is the etcd release Cairn matches.
    package static let versionBody = Array(#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#.utf8)

    let member: MemberInfo
    let node: KeySpaceNode
    let keys: KeysHandler
    let v3: V3Handler
    let grpc: GRPCHandler

    let members: MembersHandler
    let v2Auth: V2AuthHandler
    /// `GET /cairn/snapshot`: one at a time.
    let backups = BackupSlots()
    let console: ConsoleHandler

    package init(member: MemberInfo, node: KeySpaceNode, token: String, linearizableReads: Bool = false,
                 requestBytesMax: Int = V3Handler.requestBytesMaxDefault, quotaBytes: Int? = V3Handler.quotaBytesDefault,
                auth: V3AuthGate = V3AuthGate()) {
        self.member = member
        self.node = node
        let credentials = V2Credentials(bcryptCost: auth.bcryptCost)
        keys = KeysHandler(node: node, linearizableReads: linearizableReads, credentials: credentials)
        let service = V3Service(node: node, member: member, token: token, requestBytesMax: requestBytesMax, quotaBytes: quotaBytes,
                                auth: auth)
        v3 = V3Handler(service: service)
        grpc = GRPCHandler(service: service, backups: backups)
        members = MembersHandler(node: node, token: token, credentials: credentials)
        v2Auth = V2AuthHandler(node: node, credentials: credentials)
        console = ConsoleHandler(member: member, node: node)
    }

    package func handle(_ exchange: HTTPExchange) {
        // etcd's gRPC services share the client port: the content type tells them from HTTP/JSON requests.
        if GRPCFraming.isGRPC(contentType: exchange.request.headers["content-type"]) {
            return grpc.handle(exchange)
        }
        // etcd's CORS wrapper answers every preflight, on any path, before routing.
        if exchange.request.method == "OPTIONS" {
            return exchange.respond(status: 200, headers: HTTPHeaders(Self.cors), body: [])
        }
        let path = exchange.request.rawPath
        let http = node.metrics.http, method = HTTPRequestMetrics.methodNumber(exchange.request.method)
        http.received(method: method)
        exchange.onResponse { code in http.answered(method: method, code: code) }
        // Go's ServeMux answers an unclean path (`//a`, `/a/./b`) with a redirect to the clean one; so does etcd.
        if let clean = goCleanPath(path) {
            return redirect(exchange, to: clean)
        }
        if path == "/v2/keys" || path.hasPrefix("/v2/keys/") {
            guard allow(exchange, ["HEAD", "GET", "PUT", "POST", "DELETE"], allowHeadForGet: false) else { return }
            return keys.handle(exchange, keyPath: path.dropFirst("/v2/keys".count))
        }
        if V2AuthHandler.handles(String(path)) { return v2Auth.handle(exchange, path: String(path)) }
        if let endpoint = V3Handler.endpointPath(path) {
            return v3.handle(exchange, endpointPath: endpoint)
        }
        if path == "/ui" || path.hasPrefix("/ui/") {
            return console.handle(exchange, path: path)
        }
        switch path {
        case "/version":
            guard allow(exchange, ["GET"]) else { return }
            exchange.respond(status: 200, headers: Self.corsHeaders(contentType: "application/json"), body: Self.versionBody)
        case "/health":
            guard allow(exchange, ["GET"]) else { return }
            // As etcd: healthy only while a leader is known, no alarm is raised, and (as for etcd's NOSPACE alarm) this
            // member can write.
            let status = node.raftStatus
            let healthy = status.leader != nil && status.storageFailure == nil && node.view().mvcc.noSpaceAlarms.isEmpty
            guard healthy else {
                // etcd answers through Go's http.Error: nosniff, and a line feed after the JSON.
                var headers = Self.corsHeaders(contentType: "text/plain; charset=utf-8")
                headers.add("X-Content-Type-Options", "nosniff")
                return exchange.respond(status: 503, headers: headers, body: Array(#"{"health":"false"}"#.utf8) + [0x0A])
            }
            exchange.respond(status: 200, headers: Self.corsHeaders(contentType: "text/plain; charset=utf-8"),
                             body: Array(#"{"health":"true"}"#.utf8))
        case _ where path == "/v2/members" || path.hasPrefix("/v2/members/"):
            members.handle(exchange, memberPath: path.dropFirst("/v2/members".count))
        case "/metrics":
            guard allow(exchange, ["GET"]) else { return }
            exchange.respond(status: 200, headers: HTTPHeaders([("Content-Type", "text/plain; version=0.0.4; charset=utf-8")]),
                             body: Array(node.metrics.render(gauges: node.metricGauges).utf8))
        case "/cairn/snapshot":
            guard allow(exchange, ["GET"]) else { return }
            // A backup holds every key and the auth state: with auth on, only `root` takes one.
            do throws(V3Error) {
                let store = node.view().mvcc.auth
                if let user = try v3.auth.user(for: .memberAdd, exchange.request, store, now: node.now), !store.isAdmin(user) {
                    throw V3Error(AuthError.permissionDenied)
                }
            } catch {
                return v3.respond(exchange, error)
            }
            guard let release = backups.take() else {
                return exchange.respond(status: 429, headers: Self.corsHeaders(contentType: "application/json"), body: BackupSlots.busyBody)
            }
            node.backup { [node] result in
                switch result {
                case .success(let file):
                    file.stream(to: exchange, ended: release)
                case .failure(let error):
                    release()
                    let failure = error as? StoreError ?? StoreError(.raftInternal, "backup failed: \(error)", index: node.view().etcdIndex)
                    exchange.respond(status: failure.code.httpStatus, headers: Self.corsHeaders(contentType: "application/json"),
                                     body: KeysResponse.error(failure))
                }
            }
        case "/v2/machines":
            guard allow(exchange, ["GET", "HEAD"]) else { return }
            exchange.respond(status: 200, headers: Self.corsHeaders(contentType: "text/plain; charset=utf-8"),
                             body: Array(member.clientURLs.joined(separator: ", ").utf8))
        case "/v2/stats/self":
            guard allow(exchange, ["GET"]) else { return }
            exchange.respond(status: 200, headers: Self.corsHeaders(contentType: "application/json"), body: selfStatsBody())
        case "/v2/stats/store":
            guard allow(exchange, ["GET"]) else { return }
            exchange.respond(status: 200, headers: Self.corsHeaders(contentType: "application/json"), body: storeStatsBody())
        case "/v2/stats/leader":
            guard allow(exchange, ["GET"]) else { return }
            guard node.raftStatus.isLeader else {
                return exchange.respond(status: 403, headers: Self.corsHeaders(contentType: "application/json"),
                                        body: Array(#"{"message":"not current leader"}"#.utf8) + [0x0A])
            }
            var json = GoJSON()
            json.raw("{\"leader\":")
            json.string(hex(member.id))
            json.raw(",\"followers\":{}}\n")
            exchange.respond(status: 200, headers: Self.corsHeaders(contentType: "application/json"), body: json.take())
        default:
            var headers = Self.corsHeaders(contentType: "text/plain; charset=utf-8")
            headers.add("X-Content-Type-Options", "nosniff")
            exchange.respond(status: 404, headers: headers, body: Array("404 page not found\n".utf8))
        }
    }

    private func selfStatsBody() -> [UInt8] {
        let now = node.now
        var json = GoJSON()
        json.raw("{\"name\":")
        json.string(member.name)
        json.raw(",\"id\":")
        json.string(hex(member.id))
        let raft = node.raftStatus
        json.raw(raft.isLeader ? ",\"state\":\"StateLeader\",\"startTime\":" : ",\"state\":\"StateFollower\",\"startTime\":")
        json.time(unixNanoseconds: member.startTime)
        json.raw(",\"leaderInfo\":{\"leader\":")
        json.string(raft.leader.map(hex) ?? "")
        json.raw(",\"uptime\":")
        json.string(goDuration(now - member.startTime))
        json.raw(",\"startTime\":")
        json.time(unixNanoseconds: member.startTime)
        json.raw("},\"recvAppendRequestCnt\":0,\"sendAppendRequestCnt\":0")
        if let failure = raft.storageFailure {
            // Cairn's own field, present only while this member cannot write.
            json.raw(",\"storageFailure\":")
            json.string(failure)
        }
        json.raw("}\n")
        return json.take()
    }

    private func storeStatsBody() -> [UInt8] {
        let stats = node.storeStatistics
        let fields: [(StaticString, Int)] = [
            ("getsSuccess", stats.getsSuccess), ("getsFail", stats.getsFail), ("setsSuccess", stats.setsSuccess),
            ("setsFail", stats.setsFail), ("deleteSuccess", stats.deleteSuccess), ("deleteFail", stats.deleteFail),
            ("updateSuccess", stats.updateSuccess), ("updateFail", stats.updateFail), ("createSuccess", stats.createSuccess),
            ("createFail", stats.createFail), ("compareAndSwapSuccess", stats.compareAndSwapSuccess),
            ("compareAndSwapFail", stats.compareAndSwapFail), ("compareAndDeleteSuccess", stats.compareAndDeleteSuccess),
            ("compareAndDeleteFail", stats.compareAndDeleteFail), ("expireCount", stats.expireCount), ("watchers", stats.watchers),
        ]
        var json = GoJSON()
        for (index, (name, value)) in fields.enumerated() {
            json.raw(index == 0 ? "{\"" : ",\"")
            json.raw(name)
            json.raw("\":")
            json.number(value)
        }
        json.raw("}\n")
        return json.take()
    }


    private func redirect(_ exchange: HTTPExchange, to path: String) {
        let query = exchange.request.rawQuery
        let location = query.isEmpty ? path : path + "?" + query
        var headers = HTTPHeaders([("Location", location)])
        var body: [UInt8] = []
        if exchange.request.method == "GET" || exchange.request.method == "HEAD" {
            headers.add("Content-Type", "text/html; charset=utf-8")
            body = Array("<a href=\"\(location)\">Moved Permanently</a>.\n\n".utf8)
        }
        exchange.respond(status: 301, headers: headers, body: body)
    }

    /// etcd's answer to a method a path does not take: 405 with an Allow header.
    private func allow(_ exchange: HTTPExchange, _ methods: [String], allowHeadForGet: Bool = true) -> Bool {
        let method = exchange.request.method
        if methods.contains(method) || (allowHeadForGet && method == "HEAD" && methods.contains("GET")) { return true }
        Self.methodNotAllowed(exchange, methods)
        return false
    }

    static func methodNotAllowed(_ exchange: HTTPExchange, _ methods: [String]) {
        var headers = corsHeaders(contentType: "text/plain; charset=utf-8")
        headers.add("Allow", methods.joined(separator: ","))
        headers.add("X-Content-Type-Options", "nosniff")
        exchange.respond(status: 405, headers: headers, body: Array("Method Not Allowed\n".utf8))
    }

    static let cors = [
        ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
        ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
        ("Access-Control-Allow-Origin", "*"),
    ]

    static func corsHeaders(contentType: String) -> HTTPHeaders {
        HTTPHeaders(cors + [("Content-Type", contentType)])
    }
}

/// Go's ServeMux `cleanPath`: `path.Clean` that keeps a trailing slash.
/// The path Go's ServeMux redirects `path` to, or nil when it is clean already (nearly every request: one scan).
func goCleanPath(_ path: Substring) -> String? {
    var bytes = path
    // A trailing slash is kept by the cleaning (but for the root), so only what comes before it must be clean.
    let isClean = bytes.withUTF8 { all in
        StoreKey.isClean(all.count > 2 && all.last == StoreKey.slash ? UnsafeBufferPointer(rebasing: all.dropLast()) : all)
    }
    if isClean { return nil }
    let clean = cleanKeyPath(String(path))
    let redirect = path.hasSuffix("/") && clean != "/" ? clean + "/" : clean
    return redirect == path ? nil : redirect
}

/// Go's `time.Duration.String()` for positive durations of a second or more ("1m2.5s"), and "123ms"-style below.
func goDuration(_ nanoseconds: Int64) -> String {
    guard nanoseconds >= 1_000_000_000 else { return "\(nanoseconds / 1_000_000)ms" }
    var fraction = String(nanoseconds % 1_000_000_000)
    fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
    while fraction.hasSuffix("0") { fraction.removeLast() }
    let seconds = nanoseconds / 1_000_000_000
    let secondsText = "\(seconds % 60)" + (fraction.isEmpty ? "" : "." + fraction) + "s"
    let hours = seconds / 3600, minutes = seconds / 60 % 60
    return hours > 0 ? "\(hours)h\(minutes)m" + secondsText : minutes > 0 ? "\(minutes)m" + secondsText : secondsText
}
