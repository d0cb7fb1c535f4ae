// One request and its response, as a handler sees it, whichever protocol carried them.
// Bodies flow piece by piece in both directions; gzip (both ways) is applied here, once for HTTP/1.1 and HTTP/2.

package protocol HTTPHandler: Sendable {
    /// Called on the connection's queue as soon as a request head has arrived; the body follows on demand.
    func handle(_ exchange: HTTPExchange)
}

package enum BodyPart: Sendable {
    case data([UInt8])
    case end
    /// The body could not be read (too large, malformed, client gone); the server has answered or closed.
    case failed(HTTPError)
}

/// What carries one exchange: an HTTP/1.1 connection or an HTTP/2 stream. Called on the connection's queue only.
protocol ExchangeTransport: AnyObject {
    func exchangeWantsBody(_ exchange: HTTPExchange)
    func exchange(_ exchange: HTTPExchange, sendHead status: Int, headers: HTTPHeaders, contentLength: Int?)
    func exchange(_ exchange: HTTPExchange, sendBody bytes: [UInt8])
    func exchangeEnded(_ exchange: HTTPExchange)
    /// Ends the response with trailer fields (HTTP/2; HTTP/1.1 ends it without them).
    func exchange(_ exchange: HTTPExchange, endWithTrailers trailers: HTTPHeaders)
    /// A response of one header block that ends the stream, no body and no Content-Length (gRPC's trailers-only).
    func exchange(_ exchange: HTTPExchange, sendHeadersOnly status: Int, headers: HTTPHeaders)
    /// The request body may be as long as the client likes: it is read piece by piece, each bounded by flow control.
    func exchangeLiftsBodyLimit(_ exchange: HTTPExchange)
    /// Whether the transport can take more body bytes for this exchange without passing its output bound.
    func exchangeHasRoom(_ exchange: HTTPExchange) -> Bool
    /// The handler gives up on the exchange mid-response: the client must see it cut off, not complete.
    func exchangeAborted(_ exchange: HTTPExchange)
}

package final class HTTPExchange: @unchecked Sendable {
    package let request: HTTPRequestHead
    /// Bodies smaller than this are sent uncompressed even when the client accepts gzip.
    package static let gzipBytesMin = 1024

    private let ioQueue: IOQueue
    private weak var transport: (any ExchangeTransport)?

    // State below is touched on the connection's queue only.
    private var bodyReader: (@Sendable (BodyPart) -> Void)?
    private var bodyInflater: GzipDecompressor?
    private var bodyFinished = false
    private var responseStarted = false
    private(set) var responseFinished = false
    /// Whether a streamed response is gzip-encoded; its deflate state is made at the first body byte (a watch that
    /// waits holds none) and freed when the response ends or the client goes.
    private var compresses = false
    private var compressor: GzipCompressor?
    private let gauges: HTTPServerGauges
    private var isHead: Bool { request.method == "HEAD" }
    private var closeHandlers: [@Sendable () -> Void] = []
    private var responseStatus = 0
    private var responseObserver: (@Sendable (Int) -> Void)?
    private var readyHandlers: [@Sendable () -> Void] = []
    private(set) var isClosed = false
    let requestBodyBytesMax: Int

    init(request: HTTPRequestHead, transport: any ExchangeTransport, ioQueue: IOQueue, requestBodyBytesMax: Int,
         gauges: HTTPServerGauges) {
        self.request = request
        self.transport = transport
        self.ioQueue = ioQueue
        self.requestBodyBytesMax = requestBodyBytesMax
        self.gauges = gauges
        gauges.exchangesChanged(by: 1)
    }

    deinit {
        gauges.exchangesChanged(by: -1)
    }

    /// Runs `work` at once when on the connection's queue (a handler answering from `handle`), else hops there.
    private func onQueue(_ work: @escaping @Sendable () -> Void) {
        if ioQueue.isCurrent { work() } else { ioQueue.execute(work) }
    }

    /// Runs `work` on the exchange's queue, where the exchange's calls take effect in order: a handler keeps
    /// state there that needs no lock of its own.
    package func run(_ work: @escaping @Sendable () -> Void) { onQueue(work) }

    /// Cuts the response off: the connection closes (HTTP/1.1) or the stream is reset (HTTP/2), so the client sees
    /// an incomplete response rather than a complete one. For a watcher too slow to keep up.
    package func abort() {
        onQueue { [self] in
            guard !isClosed else { return }
            if !responseFinished { transport?.exchangeAborted(self) }
            transportClosed()
        }
    }

    // MARK: - Request body

    /// Asks for the next piece of the request body; `reader` is called once, on the connection's queue.
    /// Call again from the reader to continue: the connection reads from the socket only as fast as this is called.
    package func readBody(_ reader: @escaping @Sendable (BodyPart) -> Void) {
        onQueue { [self] in
            if bodyFinished {
                reader(.end)
                return
            }
            if isClosed {
                reader(.failed(HTTPError(499, "client closed the connection")))
                return
            }
            precondition(bodyReader == nil, "readBody called again before the previous piece arrived")
            bodyReader = reader
            if bodyInflater == nil, request.headers["content-encoding"]?.lowercased() == "gzip" {
                bodyInflater = GzipDecompressor(outputBytesMax: requestBodyBytesMax)
            }
            transport?.exchangeWantsBody(self)
        }
    }

    /// Reads the whole body into memory: for small bodies (forms) only; more than `bytesMax` fails with 413.
    package func collectBody(bytesMax: Int, _ done: @escaping @Sendable (Result<[UInt8], HTTPError>) -> Void) {
        nonisolated(unsafe) var collected: [UInt8] = []
        @Sendable func next(_ part: BodyPart) {
            switch part {
            case .data(let bytes):
                collected.append(contentsOf: bytes)
                if collected.count > bytesMax {
                    done(.failure(HTTPError(413, "request body too large")))
                } else {
                    readBody(next)
                }
            case .end: done(.success(collected))
            case .failed(let error): done(.failure(error))
            }
        }
        readBody(next)
    }

    /// Called by the transport with the next piece of the raw (possibly gzip-encoded) body.
    func deliverBody(_ part: BodyPart) {
        guard let reader = bodyReader else { return }
        bodyReader = nil
        switch part {
        case .data(let bytes):
            guard let inflater = bodyInflater else { return reader(part) }
            do {
                let plain = try inflater.decompress(bytes[...])
                if plain.isEmpty {
                    // Nothing decoded yet (a gzip header, say): ask for more without bothering the handler.
                    bodyReader = reader
                    transport?.exchangeWantsBody(self)
                } else {
                    reader(.data(plain))
                }
            } catch {
                let failure = error == .tooLarge ? HTTPError(413, "request body too large") : HTTPError(400, "malformed gzip body")
                bodyFinished = true
                reader(.failed(failure))
            }
        case .end:
            bodyFinished = true
            if let inflater = bodyInflater, !inflater.isFinished {
                reader(.failed(HTTPError(400, "truncated gzip body")))
            } else {
                reader(.end)
            }
        case .failed:
            bodyFinished = true
            reader(part)
        }
    }

    // MARK: - Response

    /// Sends a complete response. Bodies of at least `gzipBytesMin` bytes are compressed when the client accepts gzip.
    package func respond(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        onQueue { [self] in
            guard !responseStarted, !isClosed else { return }
            responseStarted = true
            responseStatus = status
            var headers = headers
            var body = body
            if body.count >= Self.gzipBytesMin, acceptsGzip(headers) {
                headers.add("content-encoding", "gzip")
                headers.add("vary", "Accept-Encoding")
                body = GzipCompressor().compress(body, finish: true)
            }
            transport?.exchange(self, sendHead: status, headers: headers, contentLength: body.count)
            if !body.isEmpty, !isHead { transport?.exchange(self, sendBody: body) }
            finishResponse()
        }
    }

    /// Starts a response whose body follows in pieces (`write`, then `finish`); it is compressed when the client accepts
    /// gzip, unless its length is given (the pieces must then add up to `contentLength`) or it is not `compressible`
    /// (gRPC compresses messages itself).
    package func startResponse(status: Int, headers: HTTPHeaders = HTTPHeaders(), contentLength: Int? = nil, compressible: Bool = true) {
        onQueue { [self] in
            guard !responseStarted, !isClosed else { return }
            responseStarted = true
            responseStatus = status
            var headers = headers
            if contentLength == nil, compressible, acceptsGzip(headers) {
                headers.add("content-encoding", "gzip")
                headers.add("vary", "Accept-Encoding")
                compresses = true
            }
            transport?.exchange(self, sendHead: status, headers: headers, contentLength: contentLength)
        }
    }

    /// Sends a piece of the body. `whenReady` runs once the connection can take more (at once if it already can):
    /// a producer that waits for it never makes the server buffer more than its output bound.
    package func write(_ bytes: [UInt8], whenReady: (@Sendable () -> Void)? = nil) {
        onQueue { [self] in
            guard responseStarted, !responseFinished, !isClosed else { return }
            if !isHead, !bytes.isEmpty {
                let encoded = compresses ? startedCompressor().compress(bytes, finish: false) : bytes
                transport?.exchange(self, sendBody: encoded)
            }
            if let whenReady {
                if transport?.exchangeHasRoom(self) ?? true { whenReady() } else { readyHandlers.append(whenReady) }
            }
        }
    }

    /// Ends a response started with `startResponse`.
    package func finish() {
        onQueue { [self] in
            guard responseStarted, !responseFinished, !isClosed else { return }
            if compresses, !isHead {
                transport?.exchange(self, sendBody: startedCompressor().compress([], finish: true))
            }
            finishResponse()
        }
    }

    /// Ends a response started with `startResponse` with trailer fields (gRPC's status), sent after the body on HTTP/2.
    package func finish(trailers: HTTPHeaders) {
        onQueue { [self] in
            guard responseStarted, !responseFinished, !isClosed else { return }
            if compresses, !isHead {
                transport?.exchange(self, sendBody: startedCompressor().compress([], finish: true))
            }
            responseFinished = true
            compressor = nil
            readyHandlers.removeAll()
            closeHandlers.removeAll()
            reportResponse()
            transport?.exchange(self, endWithTrailers: trailers)
        }
    }

    /// Answers with one header block that ends the response: no body, no Content-Length (gRPC's trailers-only answer).
    package func respondHeadersOnly(status: Int, headers: HTTPHeaders) {
        onQueue { [self] in
            guard !responseStarted, !isClosed else { return }
            responseStarted = true
            responseStatus = status
            responseFinished = true
            readyHandlers.removeAll()
            closeHandlers.removeAll()
            reportResponse()
            transport?.exchange(self, sendHeadersOnly: status, headers: headers)
        }
    }

    /// Lifts the total request body bound (`requestBodyBytesMax`) for a long-lived stream whose reader bounds each
    /// message itself; flow control still bounds what is buffered.
    package func liftBodyBytesLimit() {
        onQueue { [self] in transport?.exchangeLiftsBodyLimit(self) }
    }

    private func startedCompressor() -> GzipCompressor {
        if let compressor { return compressor }
        let started = GzipCompressor(gauges: gauges)
        compressor = started
        return started
    }

    private func finishResponse() {
        responseFinished = true
        compressor = nil
        readyHandlers.removeAll()
        closeHandlers.removeAll()
        reportResponse()
        transport?.exchangeEnded(self)
    }

    private func reportResponse() {
        let observer = responseObserver
        responseObserver = nil
        observer?(responseStatus)
    }

    /// Runs `observer` once with the status when the response has gone out whole (a watch when its event or timeout
    /// ends it), or when the server answered on its own; never for a client that left first. One observer per exchange.
    package func onResponse(_ observer: @escaping @Sendable (Int) -> Void) {
        onQueue { [self] in
            precondition(responseObserver == nil, "onResponse called twice")
            if responseFinished { observer(responseStatus) } else if !isClosed { responseObserver = observer }
        }
    }

    /// Runs `handler` once if the client goes away before the response is finished (a waiting watch frees itself).
    package func onClose(_ handler: @escaping @Sendable () -> Void) {
        onQueue { [self] in
            if isClosed { handler() } else if !responseFinished { closeHandlers.append(handler) }
        }
    }

    /// Whether the response has begun (a handler that failed late can no longer send its own status).
    package var hasStartedResponse: Bool { responseStarted }

    private func acceptsGzip(_ responseHeaders: HTTPHeaders) -> Bool {
        !responseHeaders.contains("content-encoding") && request.headers.listContains("accept-encoding", token: "gzip")
    }

    // MARK: - Transport events

    /// The transport has room again: wake writers waiting for it.
    func transportDrained() {
        let handlers = readyHandlers
        readyHandlers.removeAll()
        for handler in handlers { handler() }
    }

    /// The client went away (connection closed, stream reset).
    func transportClosed() {
        guard !isClosed else { return }
        isClosed = true
        compressor = nil
        readyHandlers.removeAll()
        responseObserver = nil
        if let reader = bodyReader {
            bodyReader = nil
            reader(.failed(HTTPError(499, "client closed the connection")))
        }
        let handlers = closeHandlers
        closeHandlers.removeAll()
        for handler in handlers { handler() }
    }

    /// The server answered on its own with `status` (a body error): the handler's response, if any, is dropped.
    func markAnsweredByServer(status: Int) {
        responseStarted = true
        responseFinished = true
        responseStatus = status
        reportResponse()
    }
}
