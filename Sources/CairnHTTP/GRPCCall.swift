// One gRPC call on an HTTP/2 exchange: request messages read one at a time as the handler asks (so flow control
// follows the handler), response messages written with backpressure, the status in trailers, `grpc-timeout` enforced.
import Dispatch

package final class GRPCCall: @unchecked Sendable {
    package let exchange: HTTPExchange
    /// `/package.Service/Method`.
    package let method: String
    /// The compression of the request's messages, used for the answer's too.
    package let encoding: GRPCEncoding

    // State below is touched on the exchange's queue only.
    private var reader: GRPCMessageReader
    private var bodyEnded = false
    private var headersSent = false
    private var ended = false
    private var endHandlers: [@Sendable () -> Void] = []
    private var deadline: (any DispatchSourceTimer)?

    /// Starts a call on a gRPC request; nil (and the call already answered) when the request is refused at once:
    /// not HTTP/2, a method other than POST, an unknown `grpc-encoding`, a malformed `grpc-timeout`.
    package static func start(_ exchange: HTTPExchange, messageBytesMax: Int) -> GRPCCall? {
        let request = exchange.request
        guard request.version == .http2 else {
            exchange.respond(status: 505, headers: HTTPHeaders([("content-type", "text/plain; charset=utf-8")]),
                             body: Array("gRPC requires HTTP/2\n".utf8))
            return nil
        }
        guard request.method == "POST" else {
            exchange.respond(status: 405, headers: HTTPHeaders([("allow", "POST")]))
            return nil
        }
        let encodingHeader = request.headers["grpc-encoding"]
        guard let encoding = GRPCEncoding(header: encodingHeader) else {
            trailersOnly(exchange, GRPCStatus(GRPCStatus.unimplementedCode,
                                              "grpc: Decompressor is not installed for grpc-encoding \"\(encodingHeader ?? "")\""))
            return nil
        }
        var timeout: Int64?
        if let header = request.headers["grpc-timeout"] {
            guard let nanoseconds = GRPCFraming.timeoutNanoseconds(header) else {
                trailersOnly(exchange, GRPCStatus(GRPCStatus.internalCode, "transport: malformed grpc-timeout: \(header)"))
                return nil
            }
            timeout = nanoseconds
        }
        let call = GRPCCall(exchange, method: String(request.rawPath), encoding: encoding, messageBytesMax: messageBytesMax)
        exchange.liftBodyBytesLimit()
        exchange.onClose { [call] in call.run { call.endOnce() } }
        if let timeout { call.expire(afterNanoseconds: timeout) }
        return call
    }

    private init(_ exchange: HTTPExchange, method: String, encoding: GRPCEncoding, messageBytesMax: Int) {
        self.exchange = exchange
        self.method = method
        self.encoding = encoding
        reader = GRPCMessageReader(messageBytesMax: messageBytesMax, encoding: encoding)
    }

    /// Runs `work` on the call's queue (the exchange's), where its calls take effect in order.
    package func run(_ work: @escaping @Sendable () -> Void) { exchange.run(work) }

    /// Runs `handler` once when the call ends: finished by the server, reset or left by the client, or past its deadline.
    package func onEnd(_ handler: @escaping @Sendable () -> Void) {
        run { [self] in
            if ended { handler() } else { endHandlers.append(handler) }
        }
    }

    // MARK: - Request messages

    /// The next request message, or nil once the client has ended its side. A malformed one ends the call with its
    /// status and is reported as `.failure` (the handler stops). `receiver` runs on the call's queue.
    package func receive(_ receiver: @escaping @Sendable (Result<[UInt8]?, GRPCStatus>) -> Void) {
        run { [self] in
            guard !ended else { return receiver(.failure(GRPCStatus(GRPCStatus.canceledCode, "context canceled"))) }
            do throws(GRPCStatus) {
                if let message = try reader.next() { return receiver(.success(message)) }
                if bodyEnded {
                    guard reader.pendingBytes == 0 else {
                        throw GRPCStatus(GRPCStatus.internalCode, "grpc: the request ended inside a message")
                    }
                    return receiver(.success(nil))
                }
            } catch {
                finish(error)
                return receiver(.failure(error))
            }
            exchange.readBody { [self] part in
                switch part {
                case .data(let bytes): reader.append(bytes)
                case .end: bodyEnded = true
                case .failed:
                    endOnce()
                    return receiver(.failure(GRPCStatus(GRPCStatus.canceledCode, "context canceled")))
                }
                receive(receiver)
            }
        }
    }

    /// The request message of a unary or server-streaming call: the first one; anything after it is not read (as
    /// grpc-go's server, and so etcd, answers a unary call once its first message has arrived).
    package func receiveOne(_ receiver: @escaping @Sendable (Result<[UInt8], GRPCStatus>) -> Void) {
        receive { [self] first in
            switch first {
            case .failure(let status): receiver(.failure(status))
            case .success(nil):
                let status = GRPCStatus(GRPCStatus.internalCode, "grpc: the client sent no request message")
                finish(status)
                receiver(.failure(status))
            case .success(let message?): receiver(.success(message))
            }
        }
    }

    // MARK: - Answer

    /// The answer's headers, sent before the first message (at once for a stream the client waits on).
    package func sendHeaders() {
        run { [self] in
            guard !headersSent, !ended else { return }
            headersSent = true
            var headers = HTTPHeaders([("content-type", "application/grpc")])
            if encoding == .gzip { headers.add("grpc-encoding", "gzip") }
            exchange.startResponse(status: 200, headers: headers, compressible: false)
        }
    }

    /// One message framed for this call (prefix, and gzip if the call uses it), for writers that queue bytes.
    package func framed(_ message: [UInt8]) -> [UInt8] { GRPCFraming.frame(message, encoding: encoding) }

    /// Sends one response message; `whenReady` runs once the connection can take more.
    package func send(_ message: [UInt8], whenReady: (@Sendable () -> Void)? = nil) {
        sendHeaders()
        exchange.write(framed(message), whenReady: whenReady)
    }

    /// Ends the call with `status`: in trailers after the answer's messages, or alone (trailers-only) if none was sent.
    package func finish(_ status: GRPCStatus) {
        run { [self] in
            guard !ended else { return }
            var fields = HTTPHeaders([("grpc-status", String(status.code))])
            if !status.message.isEmpty { fields.add("grpc-message", GRPCFraming.percentEncoded(status.message)) }
            if headersSent {
                exchange.finish(trailers: fields)
            } else {
                var headers = HTTPHeaders([("content-type", "application/grpc")])
                for (name, value) in fields { headers.add(name, value) }
                exchange.respondHeadersOnly(status: 200, headers: headers)
            }
            endOnce()
        }
    }

    static func trailersOnly(_ exchange: HTTPExchange, _ status: GRPCStatus) {
        var headers = HTTPHeaders([("content-type", "application/grpc"), ("grpc-status", String(status.code))])
        headers.add("grpc-message", GRPCFraming.percentEncoded(status.message))
        exchange.respondHeadersOnly(status: 200, headers: headers)
    }

    private func expire(afterNanoseconds nanoseconds: Int64) {
        let timer = DispatchSource.makeTimerSource(queue: .global())
        // A deadline past any real one (the header allows 99,999,999 hours) is as good as none.
        let bounded = min(nanoseconds, Int64(365 * 24 * 3600) * 1_000_000_000)
        timer.schedule(deadline: .now() + .nanoseconds(Int(bounded)))
        timer.setEventHandler { [weak self] in
            self?.finish(GRPCStatus(GRPCStatus.deadlineExceededCode, "context deadline exceeded"))
        }
        // Set on the call's queue, where `endOnce` cancels it (the timer's own firing is harmless after the end).
        nonisolated(unsafe) let started = timer
        run { [self] in
            deadline = started
            started.resume()
            if ended { endOnce(cancelling: started) }
        }
    }

    private func endOnce(cancelling late: (any DispatchSourceTimer)? = nil) {
        late?.cancel()
        guard !ended else { return }
        ended = true
        deadline?.cancel()
        deadline = nil
        let handlers = endHandlers
        endHandlers.removeAll()
        for handler in handlers { handler() }
    }
}
