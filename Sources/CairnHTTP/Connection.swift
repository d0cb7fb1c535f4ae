// One client connection: non-blocking socket I/O (plain or TLS) from Dispatch sources on its serial queue, timeouts,
// backpressure, HTTP/1.1. ALPN's `h2` or the HTTP/2 preface hands the connection to nghttp2, anything else is HTTP/1.1.
import Glibc

final class Connection: @unchecked Sendable, ExchangeTransport, IOQueueDeadline {
    private enum Mode {
        case detecting
        case http1
        case http2(HTTP2Session)
    }

    let id: Int
    let ioQueue: IOQueue
    let configuration: HTTPServerConfiguration
    let handler: any HTTPHandler
    private let stream: SocketStream
    /// Weak: a server dropped without `shutdown` must not be reached by a connection's last events.
    private weak var server: HTTPServer?
    let gauges: HTTPServerGauges
    /// Names the connection to its queue's deadline sweep.
    private var token: UInt64 = 0
    /// Made in `init`; nil only until then.
    private var sources: SocketSources?

    // Everything below is touched on the queue only.
    private var mode = Mode.detecting
    /// Received bytes not yet consumed are `input[inputStart...]`. Reads land in the queue's scratch buffer first,
    /// so an idle connection holds no read buffer of its own.
    private var input: [UInt8] = []
    private var inputStart = 0
    private var output: [UInt8] = []
    private var outputStart = 0
    /// The client sent its FIN: nothing more to read, and level-triggered readiness would repeat it forever.
    private var inputEnded = false
    private var flushScheduled = false
    private var inSocketEvent = false
    /// A read is queued for input OpenSSL decrypted ahead, which the read source will not announce.
    private var bufferedReadScheduled = false
    private var closeWhenFlushed = false
    private(set) var isClosed = false
    private var isDraining = false

    // HTTP/1.1 state.
    private var parser: HTTP1RequestParser
    private var exchange: HTTPExchange?
    private var exchangeWantsBody = false
    private var exchangeBodyDone = false
    private var exchangeSentContinue = false
    private var chunkedOutput = false
    private var closeAfterResponse = false
    private var processing = false
    private var needsProcessing = false

    // Timeouts: all in `monotonicNanoseconds`.
    private var lastReadNanos: UInt64 = 0
    private var lastWriteNanos: UInt64 = 0
    private var headStartNanos: UInt64?
    /// In-flight requests are cut off here once a shutdown's grace period ends.
    private var drainDeadline = UInt64.max
    /// The queue calls `deadlinePassed` from here on; the real deadline may since have moved later.
    private(set) var deadline: UInt64 = .max

    private var inputBytesMax: Int { configuration.http1.headerBytesMax + 64 * 1024 }
    private var pendingOutput: Int { output.count - outputStart }
    var pendingOutputBytes: Int { pendingOutput }

    init(id: Int, stream: SocketStream, server: HTTPServer, ioQueue: IOQueue, configuration: HTTPServerConfiguration, handler: any HTTPHandler) {
        self.id = id
        self.stream = stream
        self.server = server
        self.gauges = server.gauges
        self.ioQueue = ioQueue
        self.configuration = configuration
        self.handler = handler
        self.parser = HTTP1RequestParser(limits: configuration.http1)
        sources = SocketSources(fd: stream.fd, queue: ioQueue.queue, onReadable: { [weak self] in self?.onReadable() },
                                onWritable: { [weak self] in self?.onWritable() })
    }

    /// Starts reading; called once, on the queue.
    func start() {
        // A shutdown may have closed it while the start was on its way.
        guard !isClosed else { return }
        let now = monotonicNanoseconds()
        lastReadNanos = now
        lastWriteNanos = now
        token = ioQueue.add(self)
        sources?.setReading(true)
        rearmTimer()
    }

    // MARK: - Reading

    private func onReadable() {
        guard !isClosed else { return }
        inSocketEvent = true
        defer {
            inSocketEvent = false
            if pendingOutput > 0 { flushNow() }
        }
        var sawEOF = false
        var reads = 0
        let readScratch = ioQueue.readScratch.bytes
        reading: while reads < 4, input.count - inputStart < inputBytesMax {
            reads += 1
            let room = min(readScratch.count, inputBytesMax - (input.count - inputStart))
            switch stream.read(into: UnsafeMutableRawBufferPointer(rebasing: readScratch[0..<room])) {
            case .bytes(let n):
                compactInput()
                input.append(contentsOf: UnsafeRawBufferPointer(rebasing: readScratch[0..<n]))
                lastReadNanos = monotonicNanoseconds()
                if headStartNanos == nil, parser.isBetweenRequests, exchange == nil { headStartNanos = lastReadNanos }
                // OpenSSL returns one record per read: only a plain socket's short read means it is drained.
                if n < room, stream.tls == nil { break reading }
            case .ended:
                sawEOF = true
                inputEnded = true
                break reading
            case .wouldBlock:
                break reading
            case .failed(let reason):
                if stream.isHandshaking {
                    configuration.tls?.handshakeRefused(fd: stream.fd, reason: reason)
                    stream.discardReceived()
                }
                close()
                return
            }
        }
        processInput()
        if sawEOF { peerClosed() }
        updateInterest()
        rearmTimer()
    }

    private func compactInput() {
        if inputStart == input.count {
            input.removeAll(keepingCapacity: input.capacity <= 64 * 1024)
            inputStart = 0
        } else if inputStart > 64 * 1024 {
            input.removeFirst(inputStart)
            inputStart = 0
        }
    }

    /// Reading stops while the input buffer is full or while output is backed up (the client is not reading);
    /// the write source runs only while output waits. Only changes reach Dispatch: most events change nothing.
    private func updateInterest() {
        guard !isClosed, let sources else { return }
        let pauseReading = input.count - inputStart >= inputBytesMax || pendingOutput > configuration.outputBytesHigh
        sources.setReading(!pauseReading && !inputEnded)
        sources.setWriting(pendingOutput > 0 || stream.waitsForWritable)
        if sources.isReading, stream.hasBufferedInput, !bufferedReadScheduled {
            bufferedReadScheduled = true
            ioQueue.execute { [weak self] in
                self?.bufferedReadScheduled = false
                self?.onReadable()
            }
        }
    }

    /// The socket has room: a TLS handshake or read that had to write goes on, then queued output goes out.
    private func onWritable() {
        if stream.waitsForWritable { onReadable() }
        flushNow()
    }

    private func peerClosed() {
        if case .http1 = mode, let exchange, exchange.responseFinished {
            closeWhenFlushed = true
            flushNow()
        } else {
            close()
        }
    }

    // MARK: - Protocol dispatch

    private static let http2Preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    /// Feeds buffered input to the protocol. Re-entrant calls (a handler answering synchronously) only set a flag.
    private func processInput() {
        if processing {
            needsProcessing = true
            return
        }
        processing = true
        defer { processing = false }
        repeat {
            needsProcessing = false
            guard !isClosed else { return }
            switch mode {
            case .detecting:
                if stream.tls?.negotiatedProtocol == "h2" {
                    startHTTP2(upgrade: nil)
                    needsProcessing = true
                    continue
                }
                let available = input.count - inputStart
                let compared = min(available, Self.http2Preface.count)
                if compared == 0 { return }
                if input[inputStart..<(inputStart + compared)].elementsEqual(Self.http2Preface[0..<compared]) {
                    if compared < Self.http2Preface.count { return }
                    startHTTP2(upgrade: nil)
                } else {
                    mode = .http1
                }
                needsProcessing = true
            case .http1:
                processHTTP1()
            case .http2(let session):
                let available = input.count - inputStart
                if available > 0 {
                    let ok = input.withUnsafeBytes { session.receive(UnsafeRawBufferPointer(rebasing: $0[inputStart...])) }
                    inputStart = input.count
                    if !ok { return close() }
                }
                session.pump()
                if session.isFinished { closeWhenFlushed = true; flushNow() }
            }
        } while needsProcessing
    }

    private func startHTTP2(upgrade: (settings: [UInt8], request: HTTPRequestHead)?) {
        let session = HTTP2Session(connection: self, upgrade: upgrade)
        mode = .http2(session)
        headStartNanos = nil
        if isDraining { session.goAway() }
    }

    // MARK: - HTTP/1.1

    private func processHTTP1() {
        while !isClosed {
            if let exchange {
                let wantsBytes = exchangeWantsBody || (exchange.responseFinished && !exchangeBodyDone)
                guard wantsBytes, !exchangeBodyDone else { return }
                guard let event = nextParserEvent() else { return }
                switch event {
                case .body(let count):
                    let bytes = Array(input[(inputStart - count)..<inputStart])
                    if !exchange.responseFinished {
                        exchangeWantsBody = false
                        exchange.deliverBody(.data(bytes))
                    }
                case .end:
                    exchangeBodyDone = true
                    if exchange.responseFinished {
                        finishExchange()
                    } else {
                        exchangeWantsBody = false
                        exchange.deliverBody(.end)
                    }
                case .error(let error):
                    exchangeBodyDone = true
                    if !exchange.hasStartedResponse {
                        exchange.markAnsweredByServer(status: error.status)
                        sendError(error)
                    } else {
                        closeWhenFlushed = true
                    }
                    exchangeWantsBody = false
                    exchange.deliverBody(.failed(error))
                    exchange.transportClosed()
                    flushNow()
                    return
                case .head, .needMore:
                    return
                }
            } else {
                guard !closeWhenFlushed, pendingOutput <= configuration.outputBytesHigh else { return }
                if isDraining, inputStart == input.count { return close() }
                guard let event = nextParserEvent() else { return }
                switch event {
                case .head(let head, let framing):
                    headStartNanos = nil
                    beginExchange(head, framing: framing)
                case .error(let error):
                    sendError(error)
                    flushNow()
                    return
                case .body, .end, .needMore:
                    return
                }
            }
        }
    }

    /// The next parser event, consuming input; nil when more bytes are needed.
    private func nextParserEvent() -> HTTP1RequestParser.Event? {
        while true {
            let result = input.withUnsafeBytes { parser.next(UnsafeRawBufferPointer(rebasing: $0[inputStart...])) }
            inputStart += result.consumed
            if case .needMore = result.event {
                if result.consumed > 0 { continue }
                return nil
            }
            return result.event
        }
    }

    /// The verified client certificate's name, read once the handshake is done (it cannot change on a connection).
    private(set) lazy var clientCertificateName: String? = stream.tls?.peerCommonName()

    private func beginExchange(_ head: HTTPRequestHead, framing: BodyFraming) {
        var head = head
        head.clientCertificateName = clientCertificateName
        let headers = head.headers
        let keepAlive = head.version == .http1_1
            ? !headers.listContains("connection", token: "close")
            : headers.listContains("connection", token: "keep-alive")
        closeAfterResponse = !keepAlive || isDraining
        if let expect = headers["expect"], expect.lowercased() != "100-continue" {
            return sendError(HTTPError(417, "unsupported expectation"))
        }
        // h2c is HTTP/2 in the clear: over TLS the header is ignored (RFC 7540 §3.2), HTTP/2 comes by ALPN there.
        if framing == .none, stream.tls == nil, headers.listContains("upgrade", token: "h2c"), headers.listContains("connection", token: "http2-settings"),
            let settings = headers["http2-settings"].flatMap(Base64URL.decode)
        {
            send(Array("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".utf8))
            startHTTP2(upgrade: (settings, head))
            needsProcessing = true
            return
        }
        let exchange = HTTPExchange(request: head, transport: self, ioQueue: ioQueue, requestBodyBytesMax: configuration.http1.bodyBytesMax,
                                    gauges: gauges)
        self.exchange = exchange
        exchangeWantsBody = false
        exchangeBodyDone = framing == .none
        exchangeSentContinue = false
        if framing == .none {
            // Consume the parser's zero-length body so it is ready for the next request.
            if case .end = nextParserEvent() {}
        }
        handler.handle(exchange)
    }

    private func finishExchange() {
        exchange = nil
        exchangeWantsBody = false
        if closeAfterResponse {
            closeWhenFlushed = true
            flushNow()
        } else {
            needsProcessing = true
        }
        rearmTimer()
    }

    private func sendError(_ error: HTTPError) {
        let body = "\(error.status) \(HTTPStatus.reasonPhrase(error.status)): \(error.reason)"
        send(Array(("HTTP/1.1 \(error.status) \(HTTPStatus.reasonPhrase(error.status))\r\n"
            + "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body).utf8))
        closeWhenFlushed = true
    }

    // MARK: ExchangeTransport (HTTP/1.1)

    func exchangeWantsBody(_ exchange: HTTPExchange) {
        guard exchange === self.exchange else { return }
        if exchangeBodyDone { return exchange.deliverBody(.end) }
        if !exchangeSentContinue, exchange.request.version == .http1_1, exchange.request.headers["expect"] != nil {
            exchangeSentContinue = true
            send(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        exchangeWantsBody = true
        processInput()
        updateInterest()
        rearmTimer()
    }

    func exchange(_ exchange: HTTPExchange, sendHead status: Int, headers: HTTPHeaders, contentLength: Int?) {
        guard exchange === self.exchange else { return }
        // A body the client was told to hold back (no 100 Continue sent) may or may not follow: only closing is safe.
        if !exchangeBodyDone, exchange.request.headers["expect"] != nil, !exchangeSentContinue { closeAfterResponse = true }
        if isDraining { closeAfterResponse = true }
        var head: [UInt8] = []
        head.reserveCapacity(256)
        func line(_ name: some StringProtocol, _ value: some StringProtocol) {
            head.append(contentsOf: name.utf8)
            head.append(contentsOf: ": ".utf8)
            head.append(contentsOf: value.utf8)
            head.append(contentsOf: "\r\n".utf8)
        }
        head.append(contentsOf: "HTTP/1.1 \(status) \(HTTPStatus.reasonPhrase(status))\r\n".utf8)
        var hasDate = false
        for (name, value) in headers {
            if name == "date" { hasDate = true }
            appendCanonicalHeaderName(name, to: &head)
            head.append(contentsOf: ": ".utf8)
            head.append(contentsOf: value.utf8)
            head.append(contentsOf: "\r\n".utf8)
        }
        if !hasDate { line("Date", HTTPDate.now()) }
        let bodyless = status < 200 || status == 204 || status == 304
        chunkedOutput = false
        if let contentLength {
            if !bodyless { line("Content-Length", String(contentLength)) }
        } else if !bodyless, exchange.request.method != "HEAD" {
            if exchange.request.version == .http1_1 {
                line("Transfer-Encoding", "chunked")
                chunkedOutput = true
            } else {
                closeAfterResponse = true
            }
        }
        if closeAfterResponse { line("Connection", "close") }
        head.append(contentsOf: "\r\n".utf8)
        send(head)
    }

    func exchange(_ exchange: HTTPExchange, sendBody bytes: [UInt8]) {
        guard exchange === self.exchange, !bytes.isEmpty else { return }
        if chunkedOutput {
            send(Array((String(bytes.count, radix: 16) + "\r\n").utf8))
            send(bytes)
            send([0x0D, 0x0A])
        } else {
            send(bytes)
        }
    }

    func exchangeEnded(_ exchange: HTTPExchange) {
        guard exchange === self.exchange else { return }
        if chunkedOutput { send(Array("0\r\n\r\n".utf8)) }
        chunkedOutput = false
        if exchangeBodyDone {
            finishExchange()
            processInput()
        } else if exchange.request.headers["expect"] != nil, !exchangeSentContinue {
            closeWhenFlushed = true
            flushNow()
        } else {
            // The handler did not read the whole body: skip the rest to reach the next request.
            processInput()
        }
        updateInterest()
        // A response that ended outside a socket event (a watch's event, an answer from the node) goes out now: its
        // flush would otherwise wait behind every block already queued, such as the next watchers' events.
        if !inSocketEvent, !isClosed, pendingOutput > 0 { flushNow() }
    }

    func exchangeHasRoom(_ exchange: HTTPExchange) -> Bool {
        pendingOutput < configuration.outputBytesHigh
    }

    // HTTP/1.1 carries no gRPC: trailers are dropped and a headers-only answer is an empty one.
    func exchange(_ exchange: HTTPExchange, endWithTrailers trailers: HTTPHeaders) { exchangeEnded(exchange) }

    func exchange(_ exchange: HTTPExchange, sendHeadersOnly status: Int, headers: HTTPHeaders) {
        self.exchange(exchange, sendHead: status, headers: headers, contentLength: 0)
        exchangeEnded(exchange)
    }

    func exchangeLiftsBodyLimit(_ exchange: HTTPExchange) {}

    func exchangeAborted(_ exchange: HTTPExchange) {
        guard exchange === self.exchange else { return }
        close()
    }

    // MARK: - Writing

    /// Queues bytes for the socket. Inside a socket event they are written together when the event's work is done;
    /// otherwise (a handler answering later) in a block queued behind the queue's current work, which serves every
    /// answer this connection gets meanwhile.
    func send(_ bytes: [UInt8]) {
        guard !isClosed, !bytes.isEmpty else { return }
        if outputStart == output.count {
            output.removeAll(keepingCapacity: true)
            outputStart = 0
        }
        output.append(contentsOf: bytes)
        if !inSocketEvent, !flushScheduled {
            flushScheduled = true
            ioQueue.execute { [self] in
                flushScheduled = false
                flushNow()
            }
        }
    }

    /// Writes queued output now, as far as the socket takes it.
    func flushNow() {
        guard !isClosed else { return }
        let wasAbove = pendingOutput >= configuration.outputBytesHigh
        while outputStart < output.count {
            let written = output.withUnsafeBytes { stream.write(UnsafeRawBufferPointer(rebasing: $0[outputStart...])) }
            guard case .wrote(let n) = written else {
                if case .failed = written { return close() }
                break
            }
            if n == 0 { break }
            outputStart += n
            lastWriteNanos = monotonicNanoseconds()
        }
        if outputStart == output.count {
            output.removeAll(keepingCapacity: output.capacity <= 1024 * 1024)
            outputStart = 0
            if closeWhenFlushed { return close() }
        } else if outputStart > 1024 * 1024 {
            output.removeFirst(outputStart)
            outputStart = 0
        }
        if wasAbove, pendingOutput < configuration.outputBytesHigh { outputDrained() }
        updateInterest()
        rearmTimer()
    }

    private func outputDrained() {
        switch mode {
        case .http1:
            exchange?.transportDrained()
            processInput()
        case .http2(let session):
            session.drained()
        case .detecting:
            break
        }
    }

    // MARK: - Timeouts

    private func currentDeadline() -> UInt64? {
        let deadline = protocolDeadline()
        guard drainDeadline != .max else { return deadline }
        return min(deadline ?? .max, drainDeadline)
    }

    private func protocolDeadline() -> UInt64? {
        let second: UInt64 = 1_000_000_000
        // Reads during the handshake move no application byte, so `lastReadNanos` is still the accept time.
        if stream.isHandshaking { return lastReadNanos + UInt64(configuration.tlsHandshakeTimeoutSeconds) * second }
        if pendingOutput > 0 { return lastWriteNanos + UInt64(configuration.writeStallTimeoutSeconds) * second }
        switch mode {
        case .http2(let session):
            return session.hasOpenStreams ? nil : lastReadNanos + UInt64(configuration.idleTimeoutSeconds) * second
        case .detecting, .http1:
            if exchange != nil {
                // A parsed request is the handler's now: a long-poll may wait as long as it likes.
                return exchangeWantsBody ? lastReadNanos + UInt64(configuration.bodyIdleTimeoutSeconds) * second : nil
            }
            if let headStartNanos { return headStartNanos + UInt64(configuration.headerTimeoutSeconds) * second }
            return lastReadNanos + UInt64(configuration.idleTimeoutSeconds) * second
        }
    }

    private func rearmTimer() {
        guard !isClosed, let deadline = currentDeadline() else { return }
        // Deadlines mostly move later; the sweep then calls early and this re-arms, so activity costs no bookkeeping.
        if deadline < self.deadline {
            self.deadline = deadline
            ioQueue.deadlineChanged(deadline)
        }
    }

    func deadlinePassed() {
        deadline = .max
        guard !isClosed else { return }
        guard let deadline = currentDeadline() else { return }
        if monotonicNanoseconds() >= deadline {
            if stream.isHandshaking {
                configuration.tls?.handshakeRefused(
                    fd: stream.fd, reason: "TLS handshake not finished within \(configuration.tlsHandshakeTimeoutSeconds) s")
            }
            if headStartNanos != nil, exchange == nil, pendingOutput == 0, case .http1 = mode {
                sendError(HTTPError(408, "request head not received in time"))
                flushNow()
                close()
            } else {
                close()
            }
        } else {
            rearmTimer()
        }
    }

    // MARK: - Shutdown

    /// Stops taking new requests: idle connections close now, busy ones after their current response or at `deadline`.
    func drain(deadline: UInt64) {
        guard !isClosed, !isDraining else { return }
        isDraining = true
        drainDeadline = deadline
        rearmTimer()
        switch mode {
        case .http2(let session):
            session.goAway()
            session.pump()
            if session.isFinished || !session.hasOpenStreams { closeWhenFlushed = true; flushNow() }
        case .detecting, .http1:
            if exchange == nil { close() } else { closeAfterResponse = true }
        }
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        ioQueue.remove(token)
        stream.closeNotify()
        sources?.cancel()
        let exchange = self.exchange
        self.exchange = nil
        exchange?.transportClosed()
        if case .http2(let session) = mode { session.closeAll() }
        server?.connectionClosed(self)
    }
}
