// One running member: binds the client URLs, serves until SIGTERM/SIGINT, then shuts down gracefully.
// The only place that owns signals and the process's lifetime.
import CairnHTTP
import CairnPeer
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
    /// Present when the cluster has other members.
    private let transport: PeerTransport?
    private let peers: [UInt64: ListenAddress]

    /// Opens (and locks) the data directory and recovers the key space from it.
    package init(configuration: ServerConfiguration) throws {
        self.configuration = configuration
        let clock = ClusterClock()
        let bootstrap = configuration.bootstrap ?? (try? ClusterBootstrap(
            initialCluster: configuration.initialCluster, name: configuration.name,
            advertisedPeerURLs: configuration.initialAdvertisePeerURLs, token: configuration.initialClusterToken))
        let members = bootstrap?.members ?? []
        let localID = bootstrap?.localID ?? 0
        let logger = Logger(label: "cairn.storage")
        let identity = bootstrap.map { MemberIdentity(clusterID: $0.clusterID, memberID: $0.localID) }
        storage = try Storage(fs: PosixFileSystem(), directory: configuration.dataDirectory, identity: identity) { logger.notice("\($0)") }
        var options = KeySpaceNode.Options(id: localID, voters: members.isEmpty ? [localID] : members.map(\.id))
        options.heartbeatIntervalMilliseconds = configuration.heartbeatIntervalMilliseconds
        options.electionTimeoutMilliseconds = configuration.electionTimeoutMilliseconds
        options.snapshotCount = configuration.snapshotCount
        // etcd's request timeout: 5 s plus two election timeouts.
        options.requestTimeoutMilliseconds = 5000 + 2 * configuration.electionTimeoutMilliseconds
        options.historyBytesMax = configuration.watchHistoryBytesMax
        // etcd's own bootstrap writes (two per member, then the cluster version) come before any user write.
        node = try KeySpaceNode(clock: clock, initialIndex: UInt64(2 * max(1, members.count) + 1), storage: storage, options: options)
        if members.count > 1, let bootstrap {
            var peers: [UInt64: ListenAddress] = [:]
            for member in members where member.id != localID {
                guard let url = member.peerURLs.first else { continue }
                peers[member.id] = try URLList.parse(url, flag: "initial-cluster")[0]
            }
            let node = self.node
            let peerLogger = Logger(label: "cairn.peer")
            let transport = PeerTransport(
                configuration: PeerTransportConfiguration(clusterID: bootstrap.clusterID, localID: localID,
                                                          listenAddresses: configuration.listenPeerURLs),
                deliveryQueue: node.queue, report: { peerLogger.notice("\($0)") },
                deliver: { from, frame in node.receive(from: from, frame: frame) })
            node.connect(send: { to, channel, frame in transport.send(to: to, channel: channel, frame: frame) },
                         sendPaced: { to, frame, queued in
                             transport.sendPaced(to: to, channel: .bulk, frame: frame, queuedBytesMax: KeySpaceNode.snapshotQueuedBytesMax, done: queued)
                         })
            self.peers = peers
            self.transport = transport
        } else {
            self.peers = [:]
            transport = nil
        }
        var member = MemberInfo(
            id: bootstrap?.localID ?? 0, name: configuration.name, peerURLs: configuration.initialAdvertisePeerURLs,
            clientURLs: configuration.advertiseClientURLs, clusterID: bootstrap?.clusterID ?? 0, startTime: clock.now())
        member.cluster = members
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
        if let transport {
            try transport.start()
            transport.setPeers(peers)
        }
        node.start()
        node.awaitRecovery()
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
