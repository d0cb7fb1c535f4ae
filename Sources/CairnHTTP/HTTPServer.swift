// The listening side: sockets on every configured address, accepted on the first I/O queue and spread over all of them,
// limits, shutdown. It knows nothing of etcd; a handler receives each exchange.
import Dispatch
import Glibc
import Synchronization

package final class HTTPServer: @unchecked Sendable {
    package let configuration: HTTPServerConfiguration
    private let handler: any HTTPHandler
    private let ioQueues: [IOQueue]
    /// Touched on the first queue only, like the accepting it does.
    private var listeners: [SocketListener] = []
    private let state = Mutex(State())

    private struct State {
        var connections: [Int: Connection] = [:]
        var nextID = 0
        var isShuttingDown = false
        var shutdownWaiters: [@Sendable () -> Void] = []
    }

    /// The addresses actually bound (port 0 in the configuration becomes the port the kernel chose).
    package private(set) var boundAddresses: [ListenAddress] = []

    package init(configuration: HTTPServerConfiguration, handler: any HTTPHandler) {
        self.configuration = configuration
        self.handler = handler
        ioQueues = (0..<max(1, configuration.eventLoopCount)).map { IOQueue(label: "cairn-http-\($0)") }
    }

    deinit {
        // A listener left reading with nobody to accept would fire forever.
        ioQueues[0].sync {
            for listener in listeners { listener.stop() }
        }
    }

    /// Binds every address; throws (and binds nothing) if any fails.
    package func start() throws {
        signal(SIGPIPE, SIG_IGN)
        if configuration.tls == nil, let address = configuration.addresses.first(where: \.usesTLS) {
            throw TLSError("\(address.url) needs a certificate and key")
        }
        var opened: [(Int32, ListenAddress)] = []
        do {
            for address in configuration.addresses {
                for (fd, port) in try Socket.listen(address, backlog: configuration.listenBacklog) {
                    opened.append((fd, ListenAddress(host: address.host, port: port, usesTLS: address.usesTLS)))
                }
            }
        } catch {
            for (fd, _) in opened { close(fd) }
            throw error
        }
        boundAddresses.append(contentsOf: opened.map(\.1))
        let sockets = opened.map { (fd: $0.0, tls: $0.1.usesTLS ? configuration.tls : nil) }
        ioQueues[0].sync {
            for (fd, tls) in sockets {
                let listener = SocketListener(fd: fd, queue: ioQueues[0].queue) { [weak self] fd in
                    self?.acceptPending(fd, tls: tls) ?? true
                }
                listener.start()
                listeners.append(listener)
            }
        }
    }

    package var connectionCount: Int { state.withLock { $0.connections.count } }

    /// What this server's connections hold now, for tests and diagnosis.
    package let gauges = HTTPServerGauges()

    /// Accepts up to 64 waiting connections; false when descriptors ran out (the listener then pauses).
    private func acceptPending(_ listener: Int32, tls: TLSContext?) -> Bool {
        for _ in 0..<64 {
            let fd: Int32
            switch Socket.tryAccept(listener) {
            case .accepted(let accepted): fd = accepted
            case .none: return true
            case .exhausted: return false
            }
            let session = tls?.makeSession(fd: fd)
            if tls != nil, session == nil {
                close(fd)
                continue
            }
            let stream = SocketStream(fd: fd, tls: session)
            let admitted: Connection? = state.withLock { state in
                guard !state.isShuttingDown, state.connections.count < configuration.connectionsMax else { return nil }
                let id = state.nextID
                state.nextID += 1
                let connection = Connection(
                    id: id, stream: stream, server: self, ioQueue: ioQueues[id % ioQueues.count], configuration: configuration, handler: handler)
                state.connections[id] = connection
                return connection
            }
            guard let connection = admitted else {
                // A TLS client would not understand a plain answer.
                if tls == nil { refuse(fd) } else { close(fd) }
                continue
            }
            if connection.ioQueue.isCurrent { connection.start() } else { connection.ioQueue.execute { connection.start() } }
        }
        return true
    }

    /// Over the connection limit: a best-effort 503 on the fresh socket, then close.
    private func refuse(_ fd: Int32) {
        let body = "too many connections"
        let answer = Array(("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n" + body).utf8)
        _ = answer.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        close(fd)
    }

    func connectionClosed(_ connection: Connection) {
        let waiters: [@Sendable () -> Void] = state.withLock { state in
            state.connections[connection.id] = nil
            guard state.isShuttingDown, state.connections.isEmpty else { return [] }
            defer { state.shutdownWaiters.removeAll() }
            return state.shutdownWaiters
        }
        for waiter in waiters { waiter() }
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish (up to the grace period), then close everything.
    /// `completion` runs once every connection is closed.
    package func shutdown(completion: @escaping @Sendable () -> Void) {
        ioQueues[0].sync {
            for listener in listeners { listener.stop() }
            listeners.removeAll()
        }
        let open: [Connection] = state.withLock { state in
            state.isShuttingDown = true
            state.shutdownWaiters.append(completion)
            return Array(state.connections.values)
        }
        if open.isEmpty {
            let waiters = state.withLock { state in
                defer { state.shutdownWaiters.removeAll() }
                return state.shutdownWaiters
            }
            for waiter in waiters { waiter() }
            return
        }
        let grace = monotonicNanoseconds() + UInt64(configuration.shutdownGraceSeconds) * 1_000_000_000
        for connection in open { connection.ioQueue.execute { connection.drain(deadline: grace) } }
    }
}

/// Counts of what a server's connections hold, kept as they change: tests assert bounds on them where process memory
/// (which other tests move) would say nothing.
package final class HTTPServerGauges: Sendable {
    private let http2HeaderBytes = Mutex((held: 0, peak: 0))
    private let counts = Mutex((exchanges: 0, gzipStreams: 0))

    /// Request header bytes held by open HTTP/2 streams across connections, and the most ever held at once.
    package var http2HeaderBytesHeld: (held: Int, peak: Int) { http2HeaderBytes.withLock { $0 } }
    /// Exchanges still in memory (a finished or abandoned one must not be kept alive by a timer or a watch).
    package var exchangesLive: Int { counts.withLock { $0.exchanges } }
    /// zlib deflate streams in memory, each about 256 KiB.
    package var gzipStreamsLive: Int { counts.withLock { $0.gzipStreams } }

    func http2HeaderBytesChanged(by delta: Int) {
        http2HeaderBytes.withLock {
            $0.held += delta
            $0.peak = max($0.peak, $0.held)
        }
    }

    func exchangesChanged(by delta: Int) { counts.withLock { $0.exchanges += delta } }
    func gzipStreamsChanged(by delta: Int) { counts.withLock { $0.gzipStreams += delta } }
}
