// The listening side: sockets on every configured address, accepting onto a pool of serial queues, limits, shutdown.
// It knows nothing of etcd; a handler receives each exchange.
import Dispatch
import Glibc
import Synchronization

package final class HTTPServer: @unchecked Sendable {
    package let configuration: HTTPServerConfiguration
    private let handler: any HTTPHandler
    private let acceptQueue = DispatchQueue(label: "cairn.http.accept")
    private let queues: [DispatchQueue]
    /// One read buffer per queue, shared by its connections (a serial queue runs one of them at a time).
    private let readScratches: [UnsafeMutableRawBufferPointer]
    private let queueKey = DispatchSpecificKey<Int>()
    private var listeners: [(fd: Int32, source: any DispatchSourceRead)] = []
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
        queues = (0..<max(1, configuration.queueCount)).map { DispatchQueue(label: "cairn.http.connections.\($0)") }
        for (index, queue) in queues.enumerated() { queue.setSpecific(key: queueKey, value: index) }
        readScratches = queues.map { _ in .allocate(byteCount: 64 * 1024, alignment: 16) }
    }

    deinit {
        for scratch in readScratches { scratch.deallocate() }
    }

    /// Binds every address; throws (and binds nothing) if any fails.
    package func start() throws {
        signal(SIGPIPE, SIG_IGN)
        var opened: [(Int32, ListenAddress)] = []
        do {
            for address in configuration.addresses {
                for (fd, port) in try Socket.listen(address, backlog: configuration.listenBacklog) {
                    opened.append((fd, ListenAddress(host: address.host, port: port)))
                }
            }
        } catch {
            for (fd, _) in opened { close(fd) }
            throw error
        }
        for (fd, address) in opened {
            boundAddresses.append(address)
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: acceptQueue)
            source.setEventHandler { [unowned self] in acceptPending(fd) }
            source.setCancelHandler { close(fd) }
            listeners.append((fd, source))
            source.resume()
        }
    }

    package var connectionCount: Int { state.withLock { $0.connections.count } }

    private func acceptPending(_ listener: Int32) {
        for _ in 0..<64 {
            guard let fd = Socket.accept(listener) else { return }
            let admitted: (Connection, DispatchQueue)? = state.withLock { state in
                guard !state.isShuttingDown, state.connections.count < configuration.connectionsMax else { return nil }
                let id = state.nextID
                state.nextID += 1
                let queueIndex = id % queues.count
                let connection = Connection(
                    id: id, fd: fd, server: self, queue: queues[queueIndex], queueKey: queueKey, queueID: queueIndex,
                    readScratch: readScratches[queueIndex], configuration: configuration, handler: handler)
                state.connections[id] = connection
                return (connection, queues[queueIndex])
            }
            guard let (connection, queue) = admitted else {
                refuse(fd)
                continue
            }
            queue.async { connection.start() }
        }
    }

    /// Over the connection limit: a best-effort 503 on the fresh socket, then close.
    private func refuse(_ fd: Int32) {
        let answer = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 19\r\n\r\ntoo many connections"
        _ = answer.utf8CString.withUnsafeBytes { send(fd, $0.baseAddress, $0.count - 1, Int32(MSG_NOSIGNAL)) }
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
        acceptQueue.sync {
            for listener in listeners { listener.source.cancel() }
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
        for connection in open { connection.queue.async { connection.drain() } }
        let grace = DispatchTime.now() + .seconds(configuration.shutdownGraceSeconds)
        acceptQueue.asyncAfter(deadline: grace) { [self] in
            let remaining = state.withLock { Array($0.connections.values) }
            for connection in remaining { connection.queue.async { connection.close() } }
        }
    }
}
