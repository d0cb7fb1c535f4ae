// The client-facing HTTP handler: routes etcd's paths to their answers, with etcd's 404/405 and CORS headers.
// Pure answers come from the API module; this file only connects them to exchanges.
import CairnHTTP

package struct ClientHandler: HTTPHandler {
    /// The version this member reports: clients choose code paths by it, so it is the etcd release Cairn matches.
    package static let versionBody = Array(#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#.utf8)

    package init() {}

    package func handle(_ exchange: HTTPExchange) {
        let path = exchange.request.rawPath
        switch path {
        case "/version":
            guard allow(exchange, ["GET"]) else { return }
            exchange.respond(status: 200, headers: headers(contentType: "application/json"), body: Self.versionBody)
        case "/health":
            guard allow(exchange, ["GET"]) else { return }
            exchange.respond(status: 200, headers: headers(contentType: "text/plain; charset=utf-8"), body: Array(#"{"health":"true"}"#.utf8))
        default:
            var headers = headers(contentType: "text/plain; charset=utf-8")
            headers.add("X-Content-Type-Options", "nosniff")
            exchange.respond(status: 404, headers: headers, body: Array("404 page not found\n".utf8))
        }
    }

    /// etcd's answer to a method a path does not take: 405 with an Allow header.
    private func allow(_ exchange: HTTPExchange, _ methods: [String]) -> Bool {
        if methods.contains(exchange.request.method) || (exchange.request.method == "HEAD" && methods.contains("GET")) { return true }
        var headers = headers(contentType: "text/plain; charset=utf-8")
        headers.add("Allow", methods.joined(separator: ","))
        headers.add("X-Content-Type-Options", "nosniff")
        exchange.respond(status: 405, headers: headers, body: Array("Method Not Allowed\n".utf8))
        return false
    }

    private func headers(contentType: String) -> HTTPHeaders {
        HTTPHeaders([
            ("Access-Control-Allow-Headers", "accept, content-type, authorization"),
            ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
            ("Access-Control-Allow-Origin", "*"),
            ("Content-Type", contentType),
        ])
    }
}
