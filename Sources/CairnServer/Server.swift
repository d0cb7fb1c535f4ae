// One running member: binds the client URLs, serves until SIGTERM/SIGINT, then shuts down gracefully.
// The only place that owns signals and the process's lifetime.
import CairnHTTP
import CairnStorage
import Dispatch
import Glibc
import Logging

package final class Server: @unchecked Sendable {
    package let configuration: ServerConfiguration
    private let http: HTTPServer
    private var signalSources: [any DispatchSourceSignal] = []
    private let logger = Logger(label: "cairn")

    private let node: KeySpaceNode

    private let storage: Storage

    /// Opens (and locks) the data directory and recovers the key space from it.
    package init(configuration: ServerConfiguration) throws {
        self.configuration = configuration
        let clock = ClusterClock()
        let bootstrap = configuration.bootstrap ?? (try? ClusterBootstrap(
            initialCluster: configuration.initialCluster, name: configuration.name,
            advertisedPeerURLs: configuration.initialAdvertisePeerURLs, token: configuration.initialClusterToken))
        let members = bootstrap?.members.count ?? 1
        // etcd's own bootstrap writes (two per member, then the cluster version) come before any user write.
        let logger = Logger(label: "cairn.storage")
        storage = try Storage(fs: PosixFileSystem(), directory: configuration.dataDirectory) { logger.notice("\($0)") }
        node = try KeySpaceNode(clock: clock, initialIndex: UInt64(2 * members + 1), historyBytesMax: configuration.watchHistoryBytesMax,
                                storage: storage, snapshotCount: configuration.snapshotCount)
        let member = MemberInfo(
            id: bootstrap?.localID ?? 0, name: configuration.name, peerURLs: configuration.initialAdvertisePeerURLs,
            clientURLs: configuration.advertiseClientURLs, clusterID: bootstrap?.clusterID ?? 0, startTime: clock.now())
        http = HTTPServer(configuration: HTTPServerConfiguration(addresses: configuration.listenClientURLs),
                          handler: ClientHandler(member: member, node: node))
    }

    /// Starts serving and never returns: the process exits when a signal's graceful shutdown completes.
    /// Every client connection and every long-poll watcher holds a descriptor: take all the system allows.
    private func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("could not raise the open-file limit", metadata: ["limit": "\(limit.rlim_cur)"])
        }
    }

    package func runForever() throws -> Never {
        raiseOpenFileLimit()
        node.start()
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
