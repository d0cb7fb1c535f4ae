// HTTP/2 (h2c) on a connection through nghttp2: frames in and out of memory buffers, streams mapped to exchanges.
// Flow control is manual: a stream's window reopens only as its handler consumes the body, so uploads stay bounded.
private import CNGHTTP2

final class HTTP2Session {
    private unowned let connection: Connection
    private var session: OpaquePointer?
    private var streams: [Int32: HTTP2Stream] = [:]
    /// Streams whose request head arrived during the current `receive`; handlers run after nghttp2 returns.
    private var arrived: [HTTP2Stream] = []
    private var failed = false
    private var pumping = false
    /// Streams whose unsent body shrank during a pump; their writers are woken once nghttp2 has returned.
    private var streamsToWake: [HTTP2Stream] = []
    private var streamsOverBodyLimit: [HTTP2Stream] = []
    private var streamsClosed: [HTTP2Stream] = []
    /// Header bytes (as counted for `MAX_HEADER_LIST_SIZE`) of this connection's open streams.
    private var headerBytesHeld = 0
    /// A stream's unread request body and unsent response body are each bounded by this.
    static let streamWindowBytes: Int32 = 256 * 1024
    static let connectionWindowBytes: Int32 = 1024 * 1024

    init(connection: Connection, upgrade: (settings: [UInt8], request: HTTPRequestHead)?) {
        self.connection = connection
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            guard let frame, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
                frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
            else { return 0 }
            HTTP2Session.from(userData).beginStream(frame.pointee.hd.stream_id)
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _, userData in
            guard let frame, let name, let value else { return 0 }
            HTTP2Session.from(userData).header(
                stream: frame.pointee.hd.stream_id,
                name: UnsafeBufferPointer(start: name, count: nameLength), value: UnsafeBufferPointer(start: value, count: valueLength))
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            guard let frame else { return 0 }
            let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
            let type = frame.pointee.hd.type
            if type == UInt8(NGHTTP2_HEADERS.rawValue) || type == UInt8(NGHTTP2_DATA.rawValue) {
                HTTP2Session.from(userData).frameReceived(
                    stream: frame.pointee.hd.stream_id, isHeaders: type == UInt8(NGHTTP2_HEADERS.rawValue), endStream: endStream)
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            guard let data else { return 0 }
            HTTP2Session.from(userData).dataReceived(stream: streamID, Array(UnsafeBufferPointer(start: data, count: length)))
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, _, userData in
            HTTP2Session.from(userData).streamClosed(streamID)
            return 0
        }
        var options: OpaquePointer?
        nghttp2_option_new(&options)
        defer { nghttp2_option_del(options) }
        nghttp2_option_set_no_auto_window_update(options, 1)
        nghttp2_option_set_max_send_header_block_length(options, 1024 * 1024)
        // nghttp2's own per-connection state stays small: its HPACK tables are bounded by the 4 KiB default table size
        // both ways, a header field it buffers by 64 KiB, a header block by 8 CONTINUATION frames (its defaults);
        // closed streams are not kept for priorities.
        nghttp2_option_set_max_deflate_dynamic_table_size(options, 4096)
        nghttp2_option_set_no_closed_streams(options, 1)
        // nghttp2's HTTP checks reset a stream whose `:authority` is a URL (`http://host:port`), which grpc-go sends
        // for etcdctl's `endpoint status` and Go's server (etcd) accepts; Cairn checks what it relies on itself
        // (`HTTP2Stream.start`: a method, a path from the root).
        nghttp2_option_set_no_http_messaging(options, 1)
        nghttp2_session_server_new2(&session, callbacks, Unmanaged.passUnretained(self).toOpaque(), options)

        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: 256),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: UInt32(Self.streamWindowBytes)),
            nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue),
                value: UInt32(connection.configuration.http1.headerBytesMax)),
        ]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count)
        nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, Self.connectionWindowBytes)

        if let upgrade {
            let isHead: Int32 = upgrade.request.method == "HEAD" ? 1 : 0
            let status = upgrade.settings.withUnsafeBufferPointer {
                nghttp2_session_upgrade2(session, $0.baseAddress, $0.count, isHead, nil)
            }
            if status != 0 {
                failed = true
            } else {
                var head = upgrade.request
                head.version = .http2
                let stream = HTTP2Stream(id: 1, session: self)
                stream.head = head
                stream.remoteEnded = true
                streams[1] = stream
                arrived.append(stream)
                startArrivedStreams()
            }
        }
    }

    deinit {
        nghttp2_session_del(session)
    }

    private static func from(_ userData: UnsafeMutableRawPointer?) -> HTTP2Session {
        Unmanaged<HTTP2Session>.fromOpaque(userData!).takeUnretainedValue()
    }

    var hasOpenStreams: Bool { !streams.isEmpty }

    /// True once nghttp2 wants neither to read nor to write (GOAWAY exchanged, or a fatal error).
    var isFinished: Bool { failed || (nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0) }

    /// Feeds received bytes; false on a protocol error (the connection then closes).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !failed else { return false }
        let n = nghttp2_session_mem_recv(session, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
        if n < 0 {
            failed = true
            return false
        }
        // Handlers run only now that nghttp2 has returned: they may submit frames, which callbacks must not.
        startArrivedStreams()
        let overLimit = streamsOverBodyLimit
        streamsOverBodyLimit.removeAll()
        for stream in overLimit { stream.failBody(HTTPError(413, "request body too large")) }
        notifyClosedStreams()
        for stream in streams.values where stream.exchange != nil { stream.deliverPendingBody() }
        return true
    }

    private func startArrivedStreams() {
        let started = arrived
        arrived.removeAll()
        for stream in started { stream.start(connection: connection) }
    }

    /// Moves nghttp2's pending frames into the connection's output, while the connection has room, then wakes
    /// writers whose streams drained. nghttp2 must not be re-entered from its own callbacks (its send buffer would
    /// be reused under us), so a call made while pumping only leaves the outer loop to continue.
    func pump() {
        guard !failed, !pumping else { return }
        pumping = true
        sendPendingFrames()
        pumping = false
        let waking = streamsToWake
        streamsToWake.removeAll()
        for stream in waking { stream.notifyIfRoom() }
        notifyClosedStreams()
    }

    private func notifyClosedStreams() {
        let closed = streamsClosed
        streamsClosed.removeAll()
        for stream in closed where stream.exchange?.responseFinished != true { stream.exchange?.transportClosed() }
    }

    private func sendPendingFrames() {
        while connection.exchangeHasRoomForSession() {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 {
                failed = true
                return
            }
            guard n > 0, let data else { return }
            connection.send(Array(UnsafeBufferPointer(start: data, count: n)))
        }
    }

    /// The connection's output drained below its bound: continue sending, and wake writers waiting for room.
    func drained() {
        pump()
        for stream in streams.values { stream.notifyIfRoom() }
    }

    func goAway() {
        nghttp2_submit_goaway(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
            UInt32(NGHTTP2_NO_ERROR.rawValue), nil, 0)
    }

    func closeAll() {
        let open = streams.values
        streams.removeAll()
        for stream in open { releaseHeaderBytes(of: stream) }
        for stream in open { stream.exchange?.transportClosed() }
    }

    // MARK: - nghttp2 callbacks

    private func beginStream(_ id: Int32) {
        streams[id] = HTTP2Stream(id: id, session: self)
    }

    /// Keeps a request header unless it takes its stream past the advertised `MAX_HEADER_LIST_SIZE` (answered 431) or
    /// the connection past `http2HeaderBytesMax` (stream refused): an HPACK bomb decodes into nothing held.
    /// Dropped fields are still decoded by nghttp2, which keeps its table in step with the client's.
    private func header(stream id: Int32, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        guard let stream = streams[id], stream.exchange == nil, stream.headerRefusal == nil else { return }
        // RFC 9113 §6.5.2: a field's size is its name and value plus 32.
        let size = name.count + value.count + 32
        if stream.headerListBytes + size > connection.configuration.http1.headerBytesMax {
            refuseHeaders(stream, .tooLarge)
            return
        }
        if headerBytesHeld + size > connection.configuration.http2HeaderBytesMax {
            refuseHeaders(stream, .connectionFull)
            return
        }
        stream.headerListBytes += size
        headerBytesHeld += size
        connection.gauges.http2HeaderBytesChanged(by: size)
        let name = String(decoding: name, as: UTF8.self), value = String(decoding: value, as: UTF8.self)
        switch name {
        case ":method": stream.head.method = value
        case ":path": stream.head.target = value
        case ":authority": stream.head.headers.add("host", value)
        case ":scheme": break
        default: stream.head.headers.add(name, value)
        }
    }

    private func refuseHeaders(_ stream: HTTP2Stream, _ refusal: HTTP2Stream.HeaderRefusal) {
        stream.headerRefusal = refusal
        stream.head.headers = HTTPHeaders()
        releaseHeaderBytes(of: stream)
    }

    private func releaseHeaderBytes(of stream: HTTP2Stream) {
        headerBytesHeld -= stream.headerListBytes
        connection.gauges.http2HeaderBytesChanged(by: -stream.headerListBytes)
        stream.headerListBytes = 0
    }

    private func frameReceived(stream id: Int32, isHeaders: Bool, endStream: Bool) {
        guard let stream = streams[id] else { return }
        if isHeaders, stream.exchange == nil, !stream.isArrived {
            stream.isArrived = true
            arrived.append(stream)
        }
        if endStream { stream.remoteEnded = true }
    }

    private func dataReceived(stream id: Int32, _ bytes: [UInt8]) {
        guard let stream = streams[id], stream.exchange?.responseFinished == false || stream.exchange == nil else {
            nghttp2_session_consume(session, id, bytes.count)
            return
        }
        stream.bodyBytesReceived += bytes.count
        if !stream.bodyUnbounded, stream.bodyBytesReceived > connection.configuration.http1.bodyBytesMax {
            if !stream.bodyFailed { streamsOverBodyLimit.append(stream) }
            nghttp2_session_consume(session, id, bytes.count)
            return
        }
        stream.pendingBody.append(contentsOf: bytes)
    }

    private func streamClosed(_ id: Int32) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        releaseHeaderBytes(of: stream)
        if !stream.pendingBody.isEmpty { nghttp2_session_consume_connection(session, stream.pendingBody.count) }
        stream.pendingBody.removeAll()
        streamsClosed.append(stream)
    }

    // MARK: - Stream operations

    func consume(_ stream: Int32, bytes: Int) {
        nghttp2_session_consume(session, stream, bytes)
    }

    func resumeData(_ stream: Int32) {
        nghttp2_session_resume_data(session, stream)
    }

    func reset(_ stream: Int32, error: UInt32 = NGHTTP2_NO_ERROR.rawValue) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, error)
    }

    func submitResponse(_ stream: Int32, status: Int, headers: HTTPHeaders, hasBody: Bool) {
        var fields: [(String, String)] = [(":status", String(status))]
        for (name, value) in headers where name != "connection" && name != "transfer-encoding" && name != "keep-alive" {
            fields.append((name, value))
        }
        Self.withNameValues(fields) { nva, count in
            if hasBody {
                var provider = nghttp2_data_provider()
                provider.read_callback = { _, streamID, buffer, length, flags, _, userData in
                    HTTP2Session.from(userData).readBody(stream: streamID, into: buffer!, length: length, flags: flags!)
                }
                nghttp2_submit_response(session, stream, nva, count, &provider)
            } else {
                nghttp2_submit_response(session, stream, nva, count, nil)
            }
        }
    }

    /// nghttp2's name-value array for `fields`, valid during `body` only.
    private static func withNameValues(_ fields: [(String, String)], _ body: (UnsafePointer<nghttp2_nv>, Int) -> Void) {
        var storage: [UInt8] = []
        for (name, value) in fields {
            storage.append(contentsOf: name.utf8)
            storage.append(contentsOf: value.utf8)
        }
        // One byte more, so the base address exists even when every field is empty.
        storage.append(0)
        storage.withUnsafeMutableBufferPointer { buffer in
            var offset = 0
            var nva: [nghttp2_nv] = []
            for (name, value) in fields {
                let nameLength = name.utf8.count, valueLength = value.utf8.count
                nva.append(nghttp2_nv(
                    name: buffer.baseAddress! + offset, value: buffer.baseAddress! + offset + nameLength,
                    namelen: nameLength, valuelen: valueLength, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue)))
                offset += nameLength + valueLength
            }
            // Every caller has a field at least (`:status`, `grpc-status`); an empty list submits nothing.
            nva.withUnsafeBufferPointer { fields in
                if let first = fields.baseAddress { body(first, fields.count) }
            }
        }
    }

    private func readBody(stream id: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[id] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let count = min(length, stream.outgoing.count - stream.outgoingStart)
        if count == 0 && !stream.localEnded { return Int(NGHTTP2_ERR_DEFERRED.rawValue) }
        stream.outgoing.withUnsafeBufferPointer { source in
            buffer.update(from: source.baseAddress! + stream.outgoingStart, count: count)
        }
        stream.outgoingStart += count
        if stream.outgoingStart == stream.outgoing.count {
            stream.outgoing.removeAll(keepingCapacity: true)
            stream.outgoingStart = 0
            if stream.localEnded {
                flags.pointee |= UInt32(NGHTTP2_DATA_FLAG_EOF.rawValue)
                // Trailers end the stream instead of the last DATA frame; nghttp2 takes them from inside this callback.
                if let trailers = stream.trailers {
                    stream.trailers = nil
                    flags.pointee |= UInt32(NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue)
                    Self.withNameValues(trailers.fields.map { ($0.name, $0.value) }) { nva, count in
                        _ = nghttp2_submit_trailer(session, id, nva, count)
                    }
                }
            }
        }
        streamsToWake.append(stream)
        return count
    }
}

extension Connection {
    /// Whether the connection's output is below its bound (HTTP/2 stops moving frames out of nghttp2 above it).
    func exchangeHasRoomForSession() -> Bool { !isClosed && pendingOutputBytes < configuration.outputBytesHigh }
}

/// One HTTP/2 stream carrying one exchange.
final class HTTP2Stream: ExchangeTransport {
    let id: Int32
    private unowned let session: HTTP2Session
    var head = HTTPRequestHead(method: "", target: "", version: .http2, headers: HTTPHeaders())
    enum HeaderRefusal { case tooLarge, connectionFull }
    var headerRefusal: HeaderRefusal?
    var headerListBytes = 0
    var exchange: HTTPExchange?
    var isArrived = false
    var remoteEnded = false
    var wantsBody = false
    var bodyFailed = false
    var pendingBody: [UInt8] = []
    var bodyBytesReceived = 0
    var outgoing: [UInt8] = []
    var outgoingStart = 0
    var localEnded = false
    /// Trailer fields to send once the body has gone out (the last DATA frame then leaves the stream open for them).
    var trailers: HTTPHeaders?
    /// The handler reads the body as a stream of bounded messages: no total bound (flow control bounds what waits).
    var bodyUnbounded = false
    private var waitingForRoom = false

    init(id: Int32, session: HTTP2Session) {
        self.id = id
        self.session = session
    }

    func start(connection: Connection) {
        switch headerRefusal {
        case .tooLarge?:
            // As Go's HTTP/2 server (and so etcd) answers a header list over its limit.
            let body = Array("431 Request Header Fields Too Large: header fields too large".utf8)
            outgoing = body
            localEnded = true
            session.submitResponse(
                id, status: 431, headers: HTTPHeaders([("content-type", "text/plain; charset=utf-8"), ("content-length", String(body.count))]),
                hasBody: true)
            if !remoteEnded { session.reset(id) }
            return
        case .connectionFull?:
            // The client may retry once its other streams have finished.
            return session.reset(id, error: NGHTTP2_REFUSED_STREAM.rawValue)
        case nil:
            break
        }
        guard !head.method.isEmpty, head.target.hasPrefix("/") || head.method == "OPTIONS" else {
            session.reset(id)
            return
        }
        head.clientCertificateName = connection.clientCertificateName
        let exchange = HTTPExchange(request: head, transport: self, ioQueue: connection.ioQueue,
                                    requestBodyBytesMax: connection.configuration.http1.bodyBytesMax, gauges: connection.gauges)
        self.exchange = exchange
        connection.handler.handle(exchange)
    }

    func deliverPendingBody() {
        guard wantsBody, let exchange else { return }
        if !pendingBody.isEmpty {
            let bytes = pendingBody
            pendingBody.removeAll()
            wantsBody = false
            session.consume(id, bytes: bytes.count)
            session.pump()
            exchange.deliverBody(.data(bytes))
        } else if remoteEnded {
            wantsBody = false
            exchange.deliverBody(.end)
        }
    }

    func failBody(_ error: HTTPError) {
        guard !bodyFailed, let exchange else { return }
        bodyFailed = true
        if !exchange.hasStartedResponse {
            exchange.markAnsweredByServer(status: error.status)
            session.submitResponse(id, status: error.status, headers: HTTPHeaders(), hasBody: false)
        }
        session.reset(id)
        wantsBody = false
        exchange.deliverBody(.failed(error))
    }

    func notifyIfRoom() {
        if waitingForRoom, let exchange, exchangeHasRoom(exchange) {
            waitingForRoom = false
            exchange.transportDrained()
        }
    }

    // MARK: ExchangeTransport

    func exchangeWantsBody(_ exchange: HTTPExchange) {
        wantsBody = true
        deliverPendingBody()
    }

    func exchange(_ exchange: HTTPExchange, sendHead status: Int, headers: HTTPHeaders, contentLength: Int?) {
        var headers = headers
        if let contentLength { headers.add("content-length", String(contentLength)) }
        let bodyless = status == 204 || status == 304 || exchange.request.method == "HEAD" || contentLength == 0
        localEnded = bodyless
        session.submitResponse(id, status: status, headers: headers, hasBody: !bodyless)
        session.pump()
    }

    func exchange(_ exchange: HTTPExchange, sendBody bytes: [UInt8]) {
        guard !localEnded else { return }
        outgoing.append(contentsOf: bytes)
        session.resumeData(id)
        session.pump()
    }

    func exchangeEnded(_ exchange: HTTPExchange) {
        if !localEnded {
            localEnded = true
            session.resumeData(id)
        }
        // The handler answered without reading the whole body: tell the client to stop sending it.
        if !remoteEnded { session.reset(id) }
        session.pump()
    }

    func exchange(_ exchange: HTTPExchange, endWithTrailers trailers: HTTPHeaders) {
        guard !localEnded else { return }
        self.trailers = trailers
        localEnded = true
        session.resumeData(id)
        // No reset even if the client is still sending: a reset could overtake the trailers (gRPC clients end their
        // side once they have the status; what they still send is consumed and dropped).
        session.pump()
    }

    func exchange(_ exchange: HTTPExchange, sendHeadersOnly status: Int, headers: HTTPHeaders) {
        localEnded = true
        session.submitResponse(id, status: status, headers: headers, hasBody: false)
        session.pump()
    }

    func exchangeLiftsBodyLimit(_ exchange: HTTPExchange) {
        bodyUnbounded = true
    }

    func exchangeAborted(_ exchange: HTTPExchange) {
        outgoing = []
        outgoingStart = 0
        localEnded = true
        session.reset(id, error: NGHTTP2_CANCEL.rawValue)
        session.pump()
    }

    func exchangeHasRoom(_ exchange: HTTPExchange) -> Bool {
        let room = outgoing.count - outgoingStart < Int(HTTP2Session.streamWindowBytes)
        if !room { waitingForRoom = true }
        return room
    }
}
