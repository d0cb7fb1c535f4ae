// Member-to-member messaging: each member dials every other member twice (a control channel for heartbeats,
// votes and reads, a bulk channel for appends and snapshot chunks), so a heartbeat never waits behind data.
// A connection opens with a hello naming cluster and members; a stranger is refused with a reason, never served.
// On https:// peer URLs the TLS handshake comes first: with peer client-certificate auth, a peer without a trusted
// certificate is dropped there, before any frame is read.
// Control links time round trips with a probe the accepting side echoes at once.
import CairnBase
import CairnHTTP
import Dispatch
import Glibc
import Synchronization

package enum PeerChannel: UInt8, Sendable, CaseIterable {
    case control = 0
    case bulk = 1
}

package struct PeerTransportConfiguration: Sendable {
    /// 0 for a member joining an existing cluster: it learns the ID from the first member that welcomes it.
    package var clusterID: UInt64
    package var localID: UInt64
    package var listenAddresses: [ListenAddress]
    /// A frame longer than this is corruption: the connection is dropped. The largest a member sends is an append
    /// holding one entry of the WAL's largest record (16 MiB) with a message's fixed fields; snapshot chunks are 1 MiB.
    package var frameBytesMax = 17 * 1024 * 1024
    /// Before its hello is accepted a connection may announce no frame longer than this (a hello is 25 bytes) and
    /// reads no more than this at a time, so a stranger holds a few KiB, never a frame's worth of memory.
    package var helloBytesMax = 4 * 1024
    /// A connection that has not sent an accepted hello this long after it was accepted is closed.
    package var helloTimeoutMilliseconds = 5000
    /// Accepted connections still waiting for their hello; one past this is closed at once.
    package var unhelloedConnectionsMax = 64
    /// Accepted connections of one member (it dials two, and a restart leaves the old ones until they close); a
    /// hello past this closes that member's oldest connection.
    package var connectionsPerMemberMax = 8
    /// Unsent bytes per peer and channel; frames beyond are dropped (Raft retransmits) rather than queued forever.
    package var controlSendBytesMax = 4 * 1024 * 1024
    package var bulkSendBytesMax = 64 * 1024 * 1024
    /// Frames kept per peer and channel while its link is down or still dialling, sent once it connects: a
    /// follower's forwarded write must not be lost because the leader's link was still being dialled. Past this the
    /// oldest go (Raft retransmits its own messages).
    package var downQueueBytesMax = 1024 * 1024
    package var reconnectDelayMillisecondsMin = 50
    package var reconnectDelayMillisecondsMax = 2000
    /// How often each control link times a round trip (and once as soon as it is welcomed).
    package var roundTripProbeIntervalMilliseconds = 1000
    /// Serves the `https://` listen addresses (the handshake must finish within `helloTimeoutMilliseconds`).
    package var acceptingTLS: TLSContext?
    /// Dials members whose peer URL is `https://`, presenting this member's certificate.
    package var diallingTLS: TLSContext?

    package init(clusterID: UInt64, localID: UInt64, listenAddresses: [ListenAddress]) {
        self.clusterID = clusterID
        self.localID = localID
        self.listenAddresses = listenAddresses
    }
}

/// Frame types below 240 are the node's own; these belong to the transport.
enum TransportFrame {
    static let hello: UInt8 = 250
    static let welcome: UInt8 = 251
    static let refuse: UInt8 = 252
    /// A dialler's monotonic send time (u64 nanoseconds), echoed back unchanged as a `probeEcho`.
    static let probe: UInt8 = 253
    static let probeEcho: UInt8 = 254
}

package final class PeerTransport: @unchecked Sendable {
    package let configuration: PeerTransportConfiguration
    /// Targets the delivery queue: sockets, timers and the node share one serial context, so a frame reaches the node
    /// and the node's frames reach their sockets with no thread hand-off between them.
    private let queue: DispatchQueue
    /// Shared by the sockets on `queue`.
    let readScratch = ReadScratch()
    /// Names this transport on its delivery queue, so a send from there knows it may write at once.
    private static let deliveryQueueKey = DispatchSpecificKey<ObjectIdentifier>()
    private let deliver: @Sendable (_ from: UInt64, _ frame: PeerFrame) -> Bool
    private let report: @Sendable (String) -> Void
    private var listeners: [SocketListener] = []
    private var roundTripProbes: (any DispatchSourceTimer)?
    private var links: [LinkKey: OutgoingLink] = [:]
    /// Links with frames queued by `send` and not yet written; `flushScheduled` while a flush waits on the queue.
    private var linksToFlush: [OutgoingLink] = []
    private var flushScheduled = false
    private var incoming: [ObjectIdentifier: IncomingConnection] = [:]
    /// The members that may connect (the member table, this member excepted), as last given to `setPeers`.
    private var members: Set<UInt64> = []
    /// Order of acceptance, so the oldest connection of a member is the one closed past `connectionsPerMemberMax`.
    private var acceptedCount: UInt64 = 0
    private var stopped = false
    private let stats = Mutex(PeerTransportStats())
    package private(set) var boundAddresses: [ListenAddress] = []
    /// The cluster this member belongs to (learned when joining); confined to `queue`.
    private var clusterID: UInt64
    /// Called once on the transport's queue when a joining member learns its cluster's ID.
    package var learnedClusterID: @Sendable (UInt64) -> Void = { _ in }
    /// Called on the transport's queue with each round trip timed to a peer on its control link.
    package var roundTripMeasured: @Sendable (_ peer: UInt64, _ seconds: Double) -> Void = { _, _ in }

    struct LinkKey: Hashable {
        var peer: UInt64
        var channel: PeerChannel
    }

    /// `deliver` runs on `deliveryQueue` (the transport's queue targets it) for every frame from a peer, in order per
    /// connection, as it is read: a node busy with it holds that link's reading too. It returns false for a frame it
    /// refuses, and the connection the frame came on is then closed (the frame is counted as refused).
    /// Never wait on the transport (`start`, `stop`) from `deliveryQueue`: they wait for it.
    /// `report` receives one line per noteworthy event (a refused stranger, a lost connection).
    package init(configuration: PeerTransportConfiguration, deliveryQueue: DispatchQueue,
                 report: @escaping @Sendable (String) -> Void = { _ in },
                 deliver: @escaping @Sendable (_ from: UInt64, _ frame: PeerFrame) -> Bool) {
        self.configuration = configuration
        self.clusterID = configuration.clusterID
        queue = DispatchQueue(label: "cairn.peer", target: deliveryQueue)
        self.deliver = deliver
        self.report = report
        deliveryQueue.setSpecific(key: Self.deliveryQueueKey, value: ObjectIdentifier(self))
    }

    package func start() throws {
        if configuration.acceptingTLS == nil, let address = configuration.listenAddresses.first(where: \.usesTLS) {
            throw TLSError("\(address.url) needs a peer certificate and key")
        }
        var opened: [(Int32, ListenAddress)] = []
        do {
            for address in configuration.listenAddresses {
                for (fd, port) in try Socket.listen(address, backlog: 128) {
                    opened.append((fd, ListenAddress(host: address.host, port: port, usesTLS: address.usesTLS)))
                }
            }
        } catch {
            for (fd, _) in opened { close(fd) }
            throw error
        }
        queue.sync {
            for (fd, address) in opened {
                boundAddresses.append(address)
                let tls = address.usesTLS ? configuration.acceptingTLS : nil
                let listener = SocketListener(fd: fd, queue: queue) { [weak self] fd in self?.acceptPending(fd, tls: tls) ?? true }
                listener.start()
                listeners.append(listener)
            }
            let interval = DispatchTimeInterval.milliseconds(configuration.roundTripProbeIntervalMilliseconds)
            let probes = DispatchSource.makeTimerSource(queue: queue)
            probes.schedule(deadline: .now() + interval, repeating: interval)
            probes.setEventHandler { [unowned self] in
                for link in links.values { link.probeRoundTrip() }
            }
            probes.resume()
            roundTripProbes = probes
        }
    }

    /// Sets the members to talk to (all but this one) and their peer addresses; links to others are closed. Only
    /// these members' hellos are accepted from then on (call it before `start` so the first connections find them).
    package func setPeers(_ peers: [UInt64: ListenAddress]) {
        queue.async { [self] in
            guard !stopped else { return }
            members = Set(peers.keys).subtracting([configuration.localID])
            for connection in incoming.values {
                if let sender = connection.sender, !members.contains(sender) {
                    connection.socket.close(reason: "member \(hex(sender)) left the cluster")
                }
            }
            for (key, link) in links where peers[key.peer] != link.address {
                link.shutdown()
                links[key] = nil
            }
            for (peer, address) in peers where peer != configuration.localID {
                for channel in PeerChannel.allCases where links[LinkKey(peer: peer, channel: channel)] == nil {
                    let link = OutgoingLink(peer: peer, channel: channel, address: address, transport: self)
                    links[LinkKey(peer: peer, channel: channel)] = link
                    link.connect()
                }
            }
        }
    }

    /// Queues `frame` for `peer`; dropped (and counted) if the peer is unreachable or its channel is backed up.
    /// Called on the delivery queue (which the transport's queue targets, so nothing else of the transport runs
    /// meanwhile), it queues the frame on its socket at once, and the frames of one turn of that queue leave
    /// together, in one write per link, when the turn ends or at `flush`.
    package func send(to peer: UInt64, channel: PeerChannel, frame: PeerFrame) {
        guard DispatchQueue.getSpecific(key: Self.deliveryQueueKey) == ObjectIdentifier(self) else {
            return queue.async { [self] in send(to: peer, channel: channel, frame: frame) }
        }
        let link = links[LinkKey(peer: peer, channel: channel)]
        let sent = link?.send(frame, flushNow: false) ?? false
        stats.withLock { sent ? ($0.framesSent += 1) : ($0.framesDropped += 1) }
        guard sent, let link, !link.flushPending else { return }
        link.flushPending = true
        linksToFlush.append(link)
        guard !flushScheduled else { return }
        flushScheduled = true
        // Behind the blocks already queued on the delivery queue's turn: no thread hand-off.
        queue.async { [self] in flush() }
    }

    /// Writes the frames `send` queued, now (call on the delivery queue): a leader's appends must leave before its
    /// own fsync, not after it.
    package func flush() {
        flushScheduled = false
        let links = linksToFlush
        linksToFlush.removeAll(keepingCapacity: true)
        for link in links {
            link.flushPending = false
            link.flush()
        }
    }

    /// Queues `frame` for `peer` once fewer than `queuedBytesMax` bytes wait on that link, so a long stream (a
    /// snapshot) is paced by the network instead of filling memory; `done` runs on the transport's queue with true
    /// when queued, false when the link is down or goes down first. Frames queued this way keep their order.
    package func sendPaced(to peer: UInt64, channel: PeerChannel, frame: PeerFrame, queuedBytesMax: Int,
                           done: @escaping @Sendable (Bool) -> Void) {
        queue.async { [self] in
            guard let link = links[LinkKey(peer: peer, channel: channel)] else { return done(false) }
            link.sendPaced(frame, queuedBytesMax: queuedBytesMax, done: done)
        }
    }

    package var statistics: PeerTransportStats { stats.withLock { $0 } }

    package func stop() {
        queue.sync {
            stopped = true
            roundTripProbes?.cancel()
            roundTripProbes = nil
            for listener in listeners { listener.stop() }
            listeners.removeAll()
            for link in links.values { link.shutdown() }
            links.removeAll()
            for connection in incoming.values { connection.socket.close(reason: "transport stopped") }
            incoming.removeAll()
        }
    }

    // MARK: - Incoming connections

    /// Accepts every waiting connection; false when descriptors ran out (the listener then pauses).
    private func acceptPending(_ fd: Int32, tls: TLSContext?) -> Bool {
        while true {
            switch Socket.tryAccept(fd) {
            case .accepted(let client): accepted(client, tls: tls)
            case .none: return true
            case .exhausted: return false
            }
        }
    }

    private func accepted(_ fd: Int32, tls: TLSContext?) {
        guard !stopped else { Glibc.close(fd); return }
        let waiting = incoming.values.count { $0.sender == nil }
        let session = tls?.makeSession(fd: fd)
        guard waiting < configuration.unhelloedConnectionsMax, tls == nil || session != nil else {
            stats.withLock { $0.connectionsRefused += 1 }
            Glibc.close(fd)
            return
        }
        // Until its hello is accepted the connection may only hold a hello's worth of bytes.
        let socket = FramedSocket(
            stream: SocketStream(fd: fd, tls: session), queue: queue, scratch: readScratch, connecting: false, frameBytesMax: configuration.helloBytesMax,
            sendBytesMax: 64 * 1024)
        acceptedCount += 1
        let connection = IncomingConnection(socket: socket, order: acceptedCount)
        let id = ObjectIdentifier(socket)
        incoming[id] = connection
        // Read now: the descriptor is closed by the time a refused handshake is reported.
        let remote = tls == nil ? "" : Socket.peerAddress(fd)
        socket.onFrame = { [unowned self] frame in received(frame, on: connection) }
        socket.onClose = { [unowned self, unowned socket] reason in
            incoming[id] = nil
            if socket.failedHandshake {
                stats.withLock { $0.connectionsRefused += 1 }
                report("peer: refused a connection from \(remote): \(reason)")
            }
        }
        socket.start()
        queue.asyncAfter(deadline: .now() + .milliseconds(configuration.helloTimeoutMilliseconds)) { [weak connection, weak self] in
            guard let connection, connection.sender == nil, !connection.socket.isClosed else { return }
            self?.stats.withLock { $0.connectionsRefused += 1 }
            connection.socket.close(reason: "no hello within the timeout")
        }
    }

    /// Returns false to stop reading: a refused hello or frame, the connection is closing.
    private func received(_ frame: PeerFrame, on connection: IncomingConnection) -> Bool {
        let socket = connection.socket
        guard let from = connection.sender else {
            switch checkHello(frame) {
            case .success(let from):
                connection.sender = from
                socket.frameBytesMax = configuration.frameBytesMax
                let same = incoming.values.filter { $0.sender == from }.sorted { $0.order < $1.order }
                for oldest in same.prefix(max(0, same.count - configuration.connectionsPerMemberMax)) {
                    oldest.socket.close(reason: "member \(hex(from)) has more than \(configuration.connectionsPerMemberMax) connections")
                }
                // The peer is up (it may have just restarted): dial it back now rather than when a backoff ends.
                for channel in PeerChannel.allCases { links[LinkKey(peer: from, channel: channel)]?.connectNowIfDown() }
                // The welcome names the cluster, so a joining member learns which one it joined.
                var payload: [UInt8] = []
                appendLittleEndian(clusterID, to: &payload)
                socket.send(PeerFrame(type: TransportFrame.welcome, payload: payload))
                return true
            case .failure(let refusal):
                stats.withLock { $0.connectionsRefused += 1 }
                report("peer: refused a connection: \(refusal.reason)")
                socket.send(PeerFrame(type: TransportFrame.refuse, payload: Array(refusal.reason.utf8)))
                // Let the refusal reach the dialler before closing.
                queue.asyncAfter(deadline: .now() + .milliseconds(100)) { socket.close(reason: refusal.reason) }
                return false
            }
        }
        if frame.type == TransportFrame.probe {
            // Echoed here rather than by the node, so the time measured is the network's, not the node's backlog.
            socket.send(PeerFrame(type: TransportFrame.probeEcho, payload: frame.payload))
            return true
        }
        stats.withLock { $0.framesReceived += 1 }
        guard deliver(from, frame) else {
            stats.withLock { $0.framesRefused += 1 }
            socket.close(reason: "refused a frame of type \(frame.type) from member \(hex(from))")
            return false
        }
        return true
    }

    private func checkHello(_ frame: PeerFrame) -> Result<UInt64, HandshakeRefusal> {
        guard frame.type == TransportFrame.hello, frame.payload.count == 25 else {
            return .failure(HandshakeRefusal("expected a hello frame"))
        }
        let cluster = readLittleEndianUInt64(frame.payload[0..<8])
        let from = readLittleEndianUInt64(frame.payload[8..<16])
        let to = readLittleEndianUInt64(frame.payload[16..<24])
        guard clusterID != 0 else { return .failure(HandshakeRefusal("member \(hex(configuration.localID)) is still joining its cluster")) }
        // A member still joining (cluster 0) is let in: Raft ignores it until the cluster has added it.
        guard cluster == clusterID || cluster == 0 else {
            return .failure(HandshakeRefusal(
                "cluster ID mismatch: member \(hex(from)) is in cluster \(hex(cluster)), this member \(hex(configuration.localID)) is in cluster \(hex(clusterID))"))
        }
        guard to == configuration.localID else {
            return .failure(HandshakeRefusal("member \(hex(from)) dialled member \(hex(to)), but this is member \(hex(configuration.localID))"))
        }
        guard from != configuration.localID else {
            return .failure(HandshakeRefusal("member \(hex(from)) has this member's own ID: duplicate member IDs"))
        }
        // Only members of the table talk to this member; one still joining (cluster 0) must have been added first.
        guard members.contains(from) else {
            return .failure(HandshakeRefusal("member \(hex(from)) is not in this member's member table"))
        }
        return .success(from)
    }

    func helloFrame(to peer: UInt64, channel: PeerChannel) -> PeerFrame {
        var payload: [UInt8] = []
        appendLittleEndian(clusterID, to: &payload)
        appendLittleEndian(configuration.localID, to: &payload)
        appendLittleEndian(peer, to: &payload)
        payload.append(channel.rawValue)
        return PeerFrame(type: TransportFrame.hello, payload: payload)
    }

    var transportQueue: DispatchQueue { queue }

    /// A connection under way to `address`, through TLS for an `https://` one (resuming `session` if the member
    /// still takes it); nil when it cannot start.
    func dial(_ address: ListenAddress, resuming session: TLSSession?) -> SocketStream? {
        guard let fd = try? Socket.connect(address) else { return nil }
        guard address.usesTLS else { return SocketStream(fd: fd, tls: nil) }
        guard let tls = configuration.diallingTLS, let stream = tls.makeSession(fd: fd, serverName: address.host, resuming: session) else {
            report("peer: cannot dial \(address.url) without a peer certificate (--peer-cert-file, --peer-key-file or --peer-auto-tls)")
            Glibc.close(fd)
            return nil
        }
        return SocketStream(fd: fd, tls: stream)
    }

    func linkRefused(peer: UInt64, reason: String) {
        stats.withLock { $0.refusals += 1 }
        report("peer: member \(hex(peer)) refused this member: \(reason)")
    }

    /// A welcome's cluster ID: adopted by a joining member, refused (link dropped) when it names another cluster.
    func welcomed(clusterID welcomed: UInt64, by peer: UInt64) -> Bool {
        if clusterID == 0, welcomed != 0 {
            clusterID = welcomed
            report("peer: joined cluster \(hex(welcomed)) (welcomed by member \(hex(peer)))")
            learnedClusterID(welcomed)
            return true
        }
        return welcomed == clusterID
    }

    func linkConnected() {
        stats.withLock { $0.connects += 1 }
    }

    func linkWelcomed(resumedTLS: Bool) {
        if resumedTLS { stats.withLock { $0.tlsSessionsResumed += 1 } }
    }
}

package struct PeerTransportStats: Sendable {
    package var framesSent = 0
    package var framesDropped = 0
    package var framesReceived = 0
    /// Frames the node refused; each closed the connection it came on.
    package var framesRefused = 0
    package var connects = 0
    package var refusals = 0
    /// Accepted connections closed before or at their hello: refused hellos, timeouts, and those past the cap.
    package var connectionsRefused = 0
    /// Dialled TLS connections that resumed the session of an earlier one (no certificate exchange).
    package var tlsSessionsResumed = 0
}

/// An accepted connection: who is on the other end (after hello).
final class IncomingConnection: @unchecked Sendable {
    let socket: FramedSocket
    /// When it was accepted, among this transport's connections.
    let order: UInt64
    var sender: UInt64?

    init(socket: FramedSocket, order: UInt64) {
        self.socket = socket
        self.order = order
    }
}

struct HandshakeRefusal: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}


/// The dialling side of one (peer, channel): connects, says hello, reconnects with backoff when the link drops.
final class OutgoingLink: @unchecked Sendable {
    let peer: UInt64
    let channel: PeerChannel
    let address: ListenAddress
    private unowned let transport: PeerTransport
    private var socket: FramedSocket?
    private var delayMilliseconds: Int
    private var isShutDown = false
    /// Probes wait for the welcome, so none of them times the connect and the handshake.
    private var isWelcomed = false
    /// The last TLS session with this member, offered when dialling it again.
    private var tlsSession: TLSSession?

    init(peer: UInt64, channel: PeerChannel, address: ListenAddress, transport: PeerTransport) {
        self.peer = peer
        self.channel = channel
        self.address = address
        self.transport = transport
        self.delayMilliseconds = transport.configuration.reconnectDelayMillisecondsMin
    }

    func connect() {
        // A retry timer may fire after the link came up another way.
        guard !isShutDown, socket == nil else { return }
        let configuration = transport.configuration
        guard let stream = transport.dial(address, resuming: tlsSession) else { return retryLater() }
        let socket = FramedSocket(
            stream: stream, queue: transport.transportQueue, scratch: transport.readScratch, connecting: true, frameBytesMax: configuration.frameBytesMax,
            sendBytesMax: channel == .control ? configuration.controlSendBytesMax : configuration.bulkSendBytesMax)
        self.socket = socket
        socket.send(transport.helloFrame(to: peer, channel: channel))
        socket.onConnected = { [unowned self] in
            isConnected = true
            // What waited for the link goes now, after the hello and in order, before anything sent later.
            for waiting in waitingFrames { _ = self.socket?.send(waiting) }
            waitingFrames = []
            waitingBytes = 0
            delayMilliseconds = transport.configuration.reconnectDelayMillisecondsMin
            transport.linkConnected()
        }
        socket.onFrame = { [unowned self] frame in
            if frame.type == TransportFrame.welcome, frame.payload.count == 8 {
                let cluster = readLittleEndianUInt64(frame.payload[0..<8])
                if !transport.welcomed(clusterID: cluster, by: peer) {
                    transport.linkRefused(peer: peer, reason: "it is in cluster \(hex(cluster))")
                    delayMilliseconds = transport.configuration.reconnectDelayMillisecondsMax
                    self.socket?.close(reason: "welcomed into another cluster")
                } else {
                    isWelcomed = true
                    transport.linkWelcomed(resumedTLS: self.socket?.resumedSession ?? false)
                    probeRoundTrip()
                }
            }
            if frame.type == TransportFrame.probeEcho, frame.payload.count == 8 {
                let sent = readLittleEndianUInt64(frame.payload[...]), now = DispatchTime.now().uptimeNanoseconds
                if now >= sent { transport.roundTripMeasured(peer, Double(now - sent) / 1e9) }
            }
            if frame.type == TransportFrame.refuse {
                transport.linkRefused(peer: peer, reason: String(decoding: frame.payload, as: UTF8.self))
                // A refusal is a configuration error: back off to the longest delay.
                delayMilliseconds = transport.configuration.reconnectDelayMillisecondsMax
            }
            return true
        }
        socket.onSent = { [unowned self] in pumpPaced() }
        // A member that takes the connection but never finishes the TLS handshake or never welcomes (a socket that
        // connected to itself, as a dial to a free local port can) must not hold the link and its waiting frames.
        transport.transportQueue.asyncAfter(deadline: .now() + .milliseconds(configuration.helloTimeoutMilliseconds)) { [weak self, weak socket] in
            guard let self, let socket, self.socket === socket, !socket.isClosed, !isWelcomed else { return }
            socket.close(reason: socket.isHandshaking ? "TLS handshake not finished within \(configuration.helloTimeoutMilliseconds) ms"
                                                      : "not welcomed within \(configuration.helloTimeoutMilliseconds) ms")
        }
        socket.onClose = { [unowned self, unowned socket] _ in
            // Read before the session goes: by now the member has sent its tickets (they come with the first answers).
            if let session = socket.resumableSession { tlsSession = session }
            self.socket = nil
            isWelcomed = false
            isConnected = false
            failPaced()
            retryLater()
        }
        socket.start()
    }

    /// Sends a probe stamped with the monotonic clock; its echo's arrival times the round trip.
    func probeRoundTrip() {
        guard channel == .control, isWelcomed, let socket else { return }
        var payload: [UInt8] = []
        appendLittleEndian(DispatchTime.now().uptimeNanoseconds, to: &payload)
        socket.send(PeerFrame(type: TransportFrame.probe, payload: payload))
    }

    func connectNowIfDown() {
        guard socket == nil else { return }
        delayMilliseconds = transport.configuration.reconnectDelayMillisecondsMin
        connect()
    }

    private func retryLater() {
        guard !isShutDown else { return }
        let delay = delayMilliseconds
        delayMilliseconds = min(delayMilliseconds * 2, transport.configuration.reconnectDelayMillisecondsMax)
        // Jitter keeps members that lost each other at once from reconnecting in lockstep.
        let jitter = Int.random(in: 0...(delay / 4 + 1))
        transport.transportQueue.asyncAfter(deadline: .now() + .milliseconds(delay + jitter)) { [weak self] in self?.connect() }
    }

    /// Whether the socket's connect (and TLS handshake) finished; before, a send waits here so a failed dial takes
    /// nothing with it.
    private var isConnected = false
    /// Frames that came while the link was down or dialling, oldest first, at most `downQueueBytesMax` bytes.
    private var waitingFrames: [PeerFrame] = []
    private var waitingBytes = 0

    func send(_ frame: PeerFrame, flushNow: Bool = true) -> Bool {
        if let socket, isConnected { return socket.send(frame, flushNow: flushNow) }
        guard !isShutDown, frame.payload.count <= transport.configuration.downQueueBytesMax else { return false }
        waitingFrames.append(frame)
        waitingBytes += frame.payload.count
        while waitingBytes > transport.configuration.downQueueBytesMax, !waitingFrames.isEmpty {
            waitingBytes -= waitingFrames.removeFirst().payload.count
        }
        return true
    }

    /// Whether the transport holds this link for its next `flush`.
    var flushPending = false

    /// Writes what `send` queued without flushing.
    func flush() { socket?.flush() }

    private var paced: [(frame: PeerFrame, queuedBytesMax: Int, done: @Sendable (Bool) -> Void)] = []
    private var pumping = false

    func sendPaced(_ frame: PeerFrame, queuedBytesMax: Int, done: @escaping @Sendable (Bool) -> Void) {
        guard socket != nil else { return done(false) }
        paced.append((frame, queuedBytesMax, done))
        pumpPaced()
    }

    /// Queues waiting paced frames while the link has room; re-entered from `onSent`, hence the guard.
    private func pumpPaced() {
        guard !pumping else { return }
        pumping = true
        defer { pumping = false }
        while let next = paced.first, let socket, socket.pendingBytes < next.queuedBytesMax {
            paced.removeFirst()
            next.done(socket.send(next.frame))
        }
    }

    private func failPaced() {
        let failed = paced
        paced = []
        for waiting in failed { waiting.done(false) }
    }

    func shutdown() {
        isShutDown = true
        waitingFrames = []
        waitingBytes = 0
        failPaced()
        socket?.close(reason: "link shut down")
        socket = nil
    }
}
