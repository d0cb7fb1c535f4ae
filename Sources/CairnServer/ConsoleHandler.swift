// The web console at /ui/: its files (built into the binary, see ConsoleFiles.swift) and /ui/api/member, the one
// answer the console needs that etcd's API lacks (a member's own term and applied index), readable from any origin.
import CairnAPI
import CairnBase
import CairnHTTP

/// One file of the console: its text and how it is served.
struct ConsoleFile: Sendable {
    let contentType: String
    /// A strong validator: the first 16 hex digits of the file's SHA-1, quoted.
    let etag: String
    let body: [UInt8]

    init(contentType: String, etag: String, text: String) {
        self.contentType = contentType
        self.etag = etag
        body = Array(text.utf8)
    }
}

struct ConsoleHandler {
    let member: MemberInfo
    let node: KeySpaceNode

    /// Browsers keep the files and revalidate them on each load (a cheap 304), so a member upgraded in place serves
    /// its new console at once. The policy allows no other source of code: the console works with no network.
    static let fileHeaders: [(String, String)] = [
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", "default-src 'self'; connect-src *; frame-ancestors 'none'"),
    ]

    /// Answers `/ui` and everything under it.
    func handle(_ exchange: HTTPExchange, path: Substring) {
        guard exchange.request.method == "GET" || exchange.request.method == "HEAD" else {
            return ClientHandler.methodNotAllowed(exchange, ["GET", "HEAD"])
        }
        if path == "/ui" {
            return exchange.respond(status: 301, headers: HTTPHeaders([("Location", "/ui/")]))
        }
        if path == "/ui/api/member" {
            return exchange.respond(status: 200, headers: ClientHandler.corsHeaders(contentType: "application/json"),
                                    body: memberBody())
        }
        let name = path == "/ui/" ? "index.html" : String(path.dropFirst("/ui/".count))
        guard let file = ConsoleFiles.byName[name] else {
            var headers = HTTPHeaders([("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")])
            headers.add("Cache-Control", "no-cache")
            return exchange.respond(status: 404, headers: headers, body: Array("404 page not found\n".utf8))
        }
        var headers = HTTPHeaders(Self.fileHeaders + [("ETag", file.etag)])
        if exchange.request.headers.listContains("if-none-match", token: file.etag) {
            return exchange.respond(status: 304, headers: headers)
        }
        headers.add("Content-Type", file.contentType)
        exchange.respond(status: 200, headers: headers, body: file.body)
    }

    /// This member as it sees itself: name, ID, Raft role, term, commit and applied index, and the leader it follows.
    private func memberBody() -> [UInt8] {
        let raft = node.raftStatus
        var json = GoJSON()
        json.raw("{\"name\":")
        json.string(member.name)
        json.raw(",\"id\":")
        json.string(hex(member.id))
        json.raw(raft.isLeader ? ",\"state\":\"StateLeader\",\"leader\":" : ",\"state\":\"StateFollower\",\"leader\":")
        json.string(raft.leader.map(hex) ?? "")
        json.raw(",\"term\":")
        json.number(raft.term)
        json.raw(",\"commit\":")
        json.number(raft.commit)
        json.raw(",\"applied\":")
        json.number(raft.applied)
        json.raw("}\n")
        return json.take()
    }
}
