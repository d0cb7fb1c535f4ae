// `/v2/keys` over HTTP: request values in (path, query, form body), etcd's answers out — writes through the node,
// reads from the latest published root, watches held open until their event, their timeout or their client goes.
import CairnAPI
import CairnBase
import CairnHTTP
import CairnReplica
import CairnStore
import Dispatch

struct KeysHandler: Sendable {
    let node: KeySpaceNode
    /// Plain GETs are linearizable too (`--linearizable-reads`).
    let linearizableReads: Bool
    /// With v2 auth on, each request's key is checked against its user's roles (or the guest role).
    let credentials: V2Credentials
    /// etcd gives up on a long-poll after five minutes and ends the response empty; so does Cairn.
    let watchTimeoutSeconds = 300
    /// Go's limit on a form body (`http: POST too large`).
    static let formBytesMax = 10 * 1024 * 1024

    func handle(_ exchange: HTTPExchange, keyPath rawKeyPath: Substring) {
        guard case .success(let keyBytes) = FormDecoding.decodePathBytes(rawKeyPath) else {
            return exchange.respond(status: 400, headers: HTTPHeaders([("content-type", "text/plain; charset=utf-8")]),
                                    body: Array("400 Bad Request".utf8))
        }
        let keyPath = StoreKey(bytes: keyBytes)
        let query = FormDecoding.decode(exchange.request.rawQuery)
        let method = exchange.request.method
        let isForm = exchange.request.headers["content-type"]?.split(separator: ";").first?.trimmingASCIIWhitespace().lowercased()
            == "application/x-www-form-urlencoded"
        guard (method == "PUT" || method == "POST") && isForm else {
            return dispatch(exchange, keyPath: keyPath, parameters: query.pairs, formError: query.error)
        }
        exchange.collectBody(bytesMax: Self.formBytesMax) { result in
            switch result {
            case .success(let bytes):
                let form = bytes.withUnsafeBufferPointer { FormDecoding.decode(bytes: $0) }
                dispatch(exchange, keyPath: keyPath, parameters: form.pairs + query.pairs, formError: form.error ?? query.error)
            case .failure(let error):
                dispatch(exchange, keyPath: keyPath, parameters: [], formError: error.status == 413 ? "http: POST too large" : error.reason)
            }
        }
    }

    private func dispatch(_ exchange: HTTPExchange, keyPath: StoreKey, parameters: [(name: String, value: String)], formError: String?) {
        let parsed = KeysRequest.parse(method: exchange.request.method, keyPath: keyPath, parameters: parameters, formError: formError)
        // After parsing, as etcd checks: the path as requested and the request's recursive flag.
        if case .success(let request) = parsed,
           !credentials.allowsKey(exchange.request, node.view().mvcc.auth.v2, key: String(decoding: keyPath.bytes, as: UTF8.self),
                                  recursive: request.isRecursive) {
            return respondError(exchange, StoreError(.unauthorized, "Insufficient credentials", index: 0))
        }
        switch parsed {
        case .failure(let error):
            respondError(exchange, error)
        case .success(.read(let path, let recursive, _, let quorum)):
            guard quorum || linearizableReads else { return read(exchange, path: path, recursive: recursive, view: node.view()) }
            node.linearizableRead { result in
                switch result {
                case .failure(let error): respondError(exchange, error)
                case .success(let view): read(exchange, path: path, recursive: recursive, view: view)
                }
            }
        case .success(.write(let command, let noValueOnSuccess)):
            let session: SessionRequest?
            switch Self.session(of: exchange.request) {
            case .failure(let error): return respondError(exchange, StoreError(.invalidField, error.cause, index: node.view().etcdIndex))
            case .success(let named): session = named
            }
            node.propose(command, session: session) { result, view in
                switch result {
                case .failure(let error):
                    respondError(exchange, error)
                case .success(let event):
                    exchange.respond(status: event.isCreation ? 201 : 200, headers: successHeaders(view, etcdIndex: event.etcdIndex),
                                     body: KeysResponse.event(event, noValueOnSuccess: noValueOnSuccess))
                }
            }
        case .success(.watch(let path, let recursive, let stream, let sinceIndex)):
            watch(exchange, path: path, recursive: recursive, stream: stream, sinceIndex: sinceIndex)
        }
    }

    /// A client that names itself (`X-Cairn-Client`) and numbers its writes (`X-Cairn-Request`, from 1) gets each
    /// numbered write applied once however often it retries it; both headers or neither.
    /// The error's text is the cause etcd-style clients see.
    static func session(of request: HTTPRequestHead) -> Result<SessionRequest?, SessionHeaderError> {
        let client = request.headers["x-cairn-client"], number = request.headers["x-cairn-request"]
        guard client != nil || number != nil else { return .success(nil) }
        guard let client, let number else { return .failure(SessionHeaderError("X-Cairn-Client and X-Cairn-Request go together")) }
        guard !client.isEmpty, client.utf8.count <= ClientSessions.clientNameBytesMax else {
            return .failure(SessionHeaderError("X-Cairn-Client must be 1 to \(ClientSessions.clientNameBytesMax) bytes"))
        }
        guard let sequence = parseGoUInt64(number), sequence > 0 else {
            return .failure(SessionHeaderError("X-Cairn-Request must be a request number from 1"))
        }
        return .success(SessionRequest(client: client, request: sequence))
    }

    /// Answers a GET from `view`: a plain GET from the latest local root, a `quorum=true` one after ReadIndex.
    private func read(_ exchange: HTTPExchange, path: StoreKey, recursive: Bool, view: KeySpaceNode.View) {
        switch KeySpace.lookup(path, in: view.root, currentIndex: view.etcdIndex) {
        case .failure(let error):
            node.countRead(succeeded: false)
            respondError(exchange, error)
        case .success(let found):
            node.countRead(succeeded: true)
            var producer = ListingProducer(node: found, path: path, recursive: recursive, now: node.now)
            respondStreaming(exchange, status: 200, headers: successHeaders(view, etcdIndex: view.etcdIndex), producer: &producer)
        }
    }

    /// Events reach the watch already encoded (once, for all its watchers) through `WatchOutput`; the client leaving
    /// frees the watch's registration, queue, deadline and deflate state at once. The watch registers here, on the
    /// exchange's queue: its head is sent before any event, as events reach the output through this same queue.
    private func watch(_ exchange: HTTPExchange, path: StoreKey, recursive: Bool, stream: Bool, sinceIndex: UInt64) {
        let node = self.node
        let output = WatchOutput(exchange: exchange, isStream: stream, delivery: node.watchDelivery)
        node.watch(path: path, recursive: recursive, stream: stream, sinceIndex: sinceIndex, deliver: { event in
            output.enqueue(event)
        }, registered: { result, view in
            switch result {
            case .failure(let error):
                respondError(exchange, error)
            case .success(let id):
                // Headers go out at once, as etcd flushes them before waiting: clients know the watch is in place.
                exchange.startResponse(status: 200, headers: successHeaders(view, etcdIndex: view.etcdIndex))
                guard let id else { return }
                exchange.onClose {
                    output.stop()
                    node.cancelWatch(id)
                }
                output.endAfter(seconds: watchTimeoutSeconds) { node.cancelWatch(id) }
            }
        })
    }

    /// Sends a listing whole when it is small (with Content-Length, as etcd does) and in pieces when it is not.
    private func respondStreaming(_ exchange: HTTPExchange, status: Int, headers: HTTPHeaders, producer: inout ListingProducer) {
        let pieceBytes = 64 * 1024
        let first = producer.next(maxBytes: pieceBytes) ?? []
        guard let second = producer.next(maxBytes: pieceBytes) else {
            return exchange.respond(status: status, headers: headers, body: first)
        }
        exchange.startResponse(status: status, headers: headers)
        nonisolated(unsafe) var rest = producer
        exchange.write(first)
        @Sendable func pump() {
            guard let piece = rest.next(maxBytes: pieceBytes) else { return exchange.finish() }
            exchange.write(piece, whenReady: pump)
        }
        exchange.write(second, whenReady: pump)
    }

    private func successHeaders(_ view: KeySpaceNode.View, etcdIndex: UInt64) -> HTTPHeaders {
        var headers = ClientHandler.corsHeaders(contentType: "application/json")
        headers.add("X-Etcd-Cluster-Id", hex(node.clusterID))
        headers.add("X-Etcd-Index", String(etcdIndex))
        headers.add("X-Raft-Index", String(view.raftIndex))
        headers.add("X-Raft-Term", String(view.raftTerm))
        return headers
    }

    private func respondError(_ exchange: HTTPExchange, _ error: StoreError) {
        var headers = ClientHandler.corsHeaders(contentType: "application/json")
        headers.add("X-Etcd-Cluster-Id", hex(node.clusterID))
        headers.add("X-Etcd-Index", String(error.index))
        exchange.respond(status: error.code.httpStatus, headers: headers, body: KeysResponse.error(error))
    }
}

extension KeysRequest {
    var isRecursive: Bool {
        switch self {
        case .read(_, let recursive, _, _), .watch(_, let recursive, _, _): recursive
        case .write(let command, _): command.recursive
        }
    }
}

struct SessionHeaderError: Error {
    var cause: String
    init(_ cause: String) { self.cause = cause }
}
