// One running member: binds the client URLs, serves until SIGTERM/SIGINT, then shuts down gracefully.
// The only place that owns signals and the process's lifetime.
import CairnHTTP
import Dispatch
import Glibc
import Logging

package final class Server: @unchecked Sendable {
    package let configuration: ServerConfiguration
    private let http: HTTPServer
    private var signalSources: [any DispatchSourceSignal] = []
    private let logger = Logger(label: "cairn")

    package init(configuration: ServerConfiguration) {
        self.configuration = configuration
        http = HTTPServer(configuration: HTTPServerConfiguration(addresses: configuration.listenClientURLs), handler: ClientHandler())
    }

    /// Starts serving and never returns: the process exits when a signal's graceful shutdown completes.
    package func runForever() throws -> Never {
        try http.start()
        logger.info(
            "serving client requests on \(http.boundAddresses.map { "http://\($0)" }.joined(separator: ","))",
            metadata: ["name": "\(configuration.name)"])
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
            source.setEventHandler { [http, logger] in
                logger.notice("received signal \(signalNumber), shutting down")
                http.shutdown { exit(0) }
            }
            source.resume()
            signalSources.append(source)
        }
        dispatchMain()
    }
}
