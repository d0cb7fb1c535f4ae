// Every limit and timeout of the HTTP server, each with its unit last in its name.
// Defaults follow Go's net/http where etcd relies on it (1 MiB of header) and common servers elsewhere.
import Glibc

package struct HTTPServerConfiguration: Sendable {
    package var addresses: [ListenAddress]
    package var http1 = HTTP1Limits()
    /// Connections beyond this are answered 503 and closed at once.
    package var connectionsMax = 20_000
    /// Request header bytes (counted as for `MAX_HEADER_LIST_SIZE`) held by one HTTP/2 connection's open streams; a
    /// stream that would pass it is refused (`REFUSED_STREAM`). Each stream is also bounded by `http1.headerBytesMax`.
    package var http2HeaderBytesMax = 4 * 1024 * 1024
    /// A connection whose unsent output passes this is not read further, and its writers wait, until it drains.
    package var outputBytesHigh = 256 * 1024
    /// Keep-alive connections with no request under way are closed after this long.
    package var idleTimeoutSeconds = 120
    /// A request head must arrive whole within this long of its first byte (a slow-header client cannot hold a slot).
    package var headerTimeoutSeconds = 10
    /// A request body that makes no progress for this long, while the handler waits for it, closes the connection.
    package var bodyIdleTimeoutSeconds = 30
    /// Output that the client does not read for this long closes the connection.
    package var writeStallTimeoutSeconds = 60
    /// In-flight requests get this long to finish after a shutdown begins; then their connections are closed.
    package var shutdownGraceSeconds = 10
    /// Connections are spread over this many serial I/O queues: one per core (more only adds switches).
    package var eventLoopCount = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    package var listenBacklog: Int32 = 1024
    /// Serves the `https://` addresses; required when any address uses TLS.
    package var tls: TLSContext?
    /// A TLS handshake must finish within this long of the accept (a stalled client cannot hold a slot).
    package var tlsHandshakeTimeoutSeconds = 10

    package init(addresses: [ListenAddress]) {
        self.addresses = addresses
    }
}
