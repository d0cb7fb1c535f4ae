// One running member: binds the client URLs, serves until SIGTERM/SIGINT, then shuts down gracefully.
// The only place that owns signals and the process's lifetime.
import CairnHTTP
import CairnPeer
import CairnReplica
import CairnStorage
import Dispatch
import Glibc
import Logging
import Synchronization

package final class Server: @unchecked Sendable {
    package let configuration: ServerConfiguration
    private let http: HTTPServer
    private var signalSources: [any DispatchSourceSignal] = []
    private let signalQueue = DispatchQueue(label: "cairn.signals")
    private let logger = Logger(label: "cairn")

    private let node: KeySpaceNode
    private let storage: Storage
    private let peerLogger = Logger(label: "cairn.peer")
    /// Started once the member table lists another member (a lone member binds no peer port).
    private var transport: PeerTransport?
    /// From the peer TLS flags: contexts to accept members with and to dial them with; nil in the clear.
    private let peerTLS: (accepting: TLSContext, dialling: TLSContext)?
    private let transportLock = Mutex(())

    /// Opens (and locks) the data directory and recovers the key space from it.
    ///
    /// A member of a new cluster derives its member and cluster IDs from the flags, as etcd does. A member joining an
    /// existing cluster (`--initial-cluster-state existing`, added first through `POST /v2/members`) derives its own
    /// ID the same way, learns the cluster's ID from the first member that welcomes it, and learns the membership and
    /// the data from the leader. A restarted member is whatever its data directory says, and refuses other flags.
    package init(configuration: ServerConfiguration) throws {
        self.configuration = configuration
        // TLS files are checked before the data directory is locked: a bad one changes nothing.
        var httpConfiguration = HTTPServerConfiguration(addresses: configuration.listenClientURLs)
        let tlsLogger = Logger(label: "cairn.tls")
        if let tls = try configuration.clientTLS.configuration(
            urls: configuration.listenClientURLs, dataDirectory: configuration.dataDirectory,
            cipherSuites: configuration.cipherSuites, minimumVersion: configuration.tlsMinimumVersion) {
            httpConfiguration.tls = try TLSContext(configuration: tls, role: .accepting) { tlsLogger.notice("\($0)") }
        }
        if var tls = try configuration.peerTLS.configuration(
            urls: configuration.listenPeerURLs, dataDirectory: configuration.dataDirectory,
            cipherSuites: configuration.cipherSuites, minimumVersion: configuration.tlsMinimumVersion) {
            let accepting = try TLSContext(configuration: tls, role: .accepting) { tlsLogger.notice("peer \($0)") }
            // The allowed CN and host are what this member asks of those who dial it.
            tls.allowedCommonName = nil
            tls.allowedHostname = nil
            peerTLS = (accepting, try TLSContext(configuration: tls, role: .dialling) { tlsLogger.notice("peer \($0)") })
        } else {
            peerTLS = nil
        }
        let clock = ClusterClock()
        let bootstrap = try configuration.bootstrap ?? ClusterBootstrap(
            initialCluster: configuration.initialCluster, name: configuration.name,
            advertisedPeerURLs: configuration.initialAdvertisePeerURLs, token: configuration.initialClusterToken)
        let localID = bootstrap.localID
        let joining = configuration.initialClusterState == "existing"
        let logger = Logger(label: "cairn.storage")
        storage = try Storage(fs: PosixFileSystem(), directory: configuration.dataDirectory) { logger.notice("\($0)") }
        // A data directory already in use names its member and cluster, whatever --initial-cluster says now (it
        // changes as members come and go); it must be this member's: the ID derived from name, peer URLs and token.
        var clusterID = bootstrap.clusterID
        if let stored = storage.storedIdentity {
            guard stored.memberID == localID else {
                storage.close()
                throw StorageError.foreign(path: configuration.dataDirectory, stored: stored,
                                           expected: MemberIdentity(clusterID: stored.clusterID, memberID: localID))
            }
            clusterID = stored.clusterID
        } else if joining {
            clusterID = 0
        } else {
            try storage.claim(MemberIdentity(clusterID: clusterID, memberID: localID))
        }
        let fresh = storage.storedIdentity == nil
        let initialMembers = joining && fresh ? [] : bootstrap.members
        var options = KeySpaceNode.Options(id: localID, voters: initialMembers.map(\.id))
        options.members = initialMembers.map(MemberRecord.init)
        options.name = configuration.name
        options.clientURLs = configuration.advertiseClientURLs
        options.heartbeatIntervalMilliseconds = configuration.heartbeatIntervalMilliseconds
        options.electionTimeoutMilliseconds = configuration.electionTimeoutMilliseconds
        options.snapshotCount = configuration.snapshotCount
        // etcd's request timeout: 5 s plus two election timeouts.
        options.requestTimeoutMilliseconds = 5000 + 2 * configuration.electionTimeoutMilliseconds
        options.historyBytesMax = configuration.watchHistoryBytesMax
        options.autoCompaction = configuration.autoCompaction
        options.watchProgressNotifyIntervalMilliseconds = configuration.watchProgressNotifyIntervalMilliseconds
        // etcd's own bootstrap writes (two per member, then the cluster version) come before any user write; a joiner
        // learns the count from the log's first member entry.
        node = try KeySpaceNode(clock: clock, initialIndex: KeySpaceNode.storeInitialIndex(memberCount: initialMembers.count), storage: storage,
                                options: options, clusterID: clusterID)
        let member = MemberInfo(
            id: localID, name: configuration.name, peerURLs: configuration.initialAdvertisePeerURLs,
            clientURLs: configuration.advertiseClientURLs, startTime: clock.now())
        http = HTTPServer(configuration: httpConfiguration,
                          handler: ClientHandler(member: member, node: node, token: configuration.initialClusterToken,
                                                 linearizableReads: configuration.linearizableReads,
                                                 requestBytesMax: configuration.maxRequestBytes,
                                                 quotaBytes: configuration.quotaBackendBytes < 0 ? nil
                                                     : configuration.quotaBackendBytes == 0 ? V3Handler.quotaBytesDefault
                                                     : Int(clamping: configuration.quotaBackendBytes),
                                                 auth: V3AuthGate(bcryptCost: configuration.bcryptCost,
                                                                  tokenTTLSeconds: configuration.authTokenTTLSeconds,
                                                                  jwt: configuration.jwtTokens)))
        if joining && fresh {
            // Until the cluster's table arrives, the members named on the command line are who to talk to.
            try startTransport(clusterID: 0, peers: bootstrap.members.map(MemberRecord.init))
        }
    }

    /// Starts the peer transport (once) and points it at `peers`, this member excepted.
    private func startTransport(clusterID: UInt64, peers: [MemberRecord]) throws {
        let addresses = peers.filter { $0.id != node.id }.reduce(into: [UInt64: ListenAddress]()) { result, member in
            if let url = member.peerURLs.first, let address = try? URLList.parse(url, flag: "peer-urls")[0] { result[member.id] = address }
        }
        try transportLock.withLock { _ in
            if let transport { return transport.setPeers(addresses) }
            let node = self.node, storage = self.storage, peerLogger = self.peerLogger
            var transportConfiguration = PeerTransportConfiguration(clusterID: clusterID, localID: node.id, listenAddresses: configuration.listenPeerURLs)
            transportConfiguration.acceptingTLS = peerTLS?.accepting
            transportConfiguration.diallingTLS = peerTLS?.dialling
            let transport = PeerTransport(
                configuration: transportConfiguration,
                deliveryQueue: node.queue, report: { peerLogger.notice("\($0)") },
                deliver: { from, frame in node.receive(from: from, frame: frame) })
            transport.learnedClusterID = { learned in
                node.clusterID = learned
                do { try storage.claim(MemberIdentity(clusterID: learned, memberID: node.id)) } catch {
                    peerLogger.critical("cannot record the cluster this member joined", metadata: ["error": "\(error)"])
                }
            }
            transport.roundTripMeasured = { peer, seconds in node.metrics.peerRoundTrip.observe(to: peer, seconds: seconds) }
            node.connect(send: { to, channel, frame in transport.send(to: to, channel: channel, frame: frame) },
                         flush: { transport.flush() },
                         sendPaced: { to, frame, queued in
                             transport.sendPaced(to: to, channel: .bulk, frame: frame, queuedBytesMax: KeySpaceNode.snapshotQueuedBytesMax, done: queued)
                         })
            // The members first: a hello is accepted only from a member the transport knows.
            transport.setPeers(addresses)
            do { try transport.start() } catch {
                transport.stop()
                throw error
            }
            self.transport = transport
        }
    }

    /// Every client connection and every long-poll watcher holds a descriptor: take all the system allows.
    private func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
            logger.warning("could not raise the open-file limit", metadata: ["limit": "\(limit.rlim_cur)"])
        }
    }

    private static let shutdownSignals = [SIGTERM, SIGINT]

    /// Blocks SIGTERM and SIGINT in the calling thread and so in every thread started after it. Call it first, before
    /// any thread exists: a signal that comes before `runForever` listens for it (while the member starts, or just
    /// after it first answers) then waits for it, instead of killing the member mid-start or, ignored, being lost.
    package static func holdShutdownSignals() {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signalNumber in shutdownSignals { sigaddset(&signals, signalNumber) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
    }

    /// Starts serving and never returns: the process exits when a signal's graceful shutdown completes. Call
    /// `holdShutdownSignals` first.
    package func runForever() throws -> Never {
        raiseOpenFileLimit()
        node.onMembersChanged { [self] table in
            // A joiner's table is empty until the leader's log or snapshot fills it: it keeps the flags' peers.
            guard !table.members.isEmpty, table.members.count > 1 || transport != nil else { return }
            do { try startTransport(clusterID: node.clusterID, peers: table.sorted) } catch {
                logger.critical("cannot listen for peers", metadata: ["error": "\(error)"])
            }
        }
        node.start()
        node.awaitRecovery()
        try http.start()
        logger.info(
            "serving client requests on \(http.boundAddresses.map(\.url).joined(separator: ","))",
            metadata: ["name": "\(configuration.name)"])
        // The sources take the signals once libdispatch has registered them; only then may the main thread become
        // libdispatch's signal thread (`dispatchMain`), which waits with the signals unblocked.
        let registered = DispatchSemaphore(value: 0)
        for signalNumber in Self.shutdownSignals {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: signalQueue)
            source.setRegistrationHandler { registered.signal() }
            source.setEventHandler { [http, node, logger] in
                logger.notice("received signal \(signalNumber), shutting down")
                // A snapshot after the last write: the next start replays nothing.
                http.shutdown {
                    node.stopWithSnapshot()
                    exit(0)
                }
            }
            source.resume()
            signalSources.append(source)
        }
        for _ in Self.shutdownSignals { _ = registered.wait(timeout: .now() + .seconds(5)) }
        dispatchMain()
    }
}
