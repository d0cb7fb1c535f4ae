// One running member: binds the client URLs, serves until SIGTERM/SIGINT, then shuts down gracefully.
// The only place that owns signals and the process's lifetime.
import CairnHTTP
import Dispatch
import Glibc

package final class Server: @unchecked Sendable {
    package let configuration: ServerConfiguration
    private let http: HTTPServer
    private var signalSources: [any DispatchSourceSignal] = []

    package init(configuration: ServerConfiguration) {
        self.configuration = configuration
        http = HTTPServer(configuration: HTTPServerConfiguration(addresses: configuration.listenClientURLs), handler: ClientHandler())
    }

    /// Starts serving and never returns: the process exits when a signal's graceful shutdown completes.
    package func runForever() throws -> Never {
        try http.start()
        log("cairn: serving client requests on \(http.boundAddresses.map { "http://\($0)" }.joined(separator: ","))")
        for signalNumber in [SIGTERM, SIGINT] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
            source.setEventHandler { [http] in
                log("cairn: received signal \(signalNumber), shutting down")
                http.shutdown { exit(0) }
            }
            source.resume()
            signalSources.append(source)
        }
        dispatchMain()
    }
}

func log(_ message: String) {
    var line = message + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
