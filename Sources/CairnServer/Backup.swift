// Backup and restore: a live member streams a fresh snapshot file (`GET /cairn/snapshot`, see `KeySpaceNode.backup`);
// `cairn snapshot save` downloads and verifies it; `cairn snapshot restore` builds a new member's data directory from
// it. The backup is the member's own snapshot format, checksums included, so a damaged copy is never restored.
import CairnBase
import CairnAPI
import CairnHTTP
import CairnMemberStorage
import CairnRaft
import CairnReplica
import CairnStorage
import CairnStore
import Dispatch
import Glibc
import Synchronization

/// Backups a member streams at once: each writes a full snapshot and holds its file open while it streams (a
/// deleted snapshot's disk space stays taken until then), so a second one at the same time gets 429 and retries.
package final class BackupSlots: Sendable {
    package static let backupsConcurrentMax = 1
    private let running = Mutex(0)

    package init() {}

    /// A release to call once when the backup ends (more calls do nothing); nil while `backupsConcurrentMax` run.
    package func take() -> (@Sendable () -> Void)? {
        let taken = running.withLock { count in
            guard count < Self.backupsConcurrentMax else { return false }
            count += 1
            return true
        }
        guard taken else { return nil }
        let released = Atomic<Bool>(false)
        return { [self, released] in
            if !released.exchange(true, ordering: .acquiringAndReleasing) { running.withLock { $0 -= 1 } }
        }
    }

    /// The answer to a backup refused because another is running.
    package static let busyBody = Array(#"{"message":"a backup of this member is already running; retry once it ends"}"#.utf8) + [0x0A]
}

/// An open snapshot file for a backup stream: the descriptor keeps it readable even once retention removes its name.
package final class BackupFile: Sendable {
    private let fs: FileSystem
    private let file: OpenFile
    package let size: UInt64
    package let header: SnapshotHeader

    init(fs: FileSystem, path: String) throws {
        let reader = try SnapshotReader(fs: fs, path: path)
        header = reader.header
        reader.close()
        self.fs = fs
        file = try fs.open(path, create: false)
        do { size = try fs.size(file) } catch {
            fs.close(file)
            throw error
        }
    }

    /// A reader that leaves a piece of the stream (1 MiB) untaken this long is cut off (the answer ends short of its
    /// Content-Length), so a stalled or trickling backup client never keeps the file, or the backup slot, for long.
    package static let backupPieceSecondsMax = 10

    /// Sends the file as the answer, 1 MiB at a time, each piece read only once the connection has room for it;
    /// `ended` runs once when the stream ends, whole or not, and the file is closed.
    func stream(to exchange: HTTPExchange, pieceSecondsMax: Int = BackupFile.backupPieceSecondsMax, ended: @escaping @Sendable () -> Void) {
        exchange.startResponse(status: 200, headers: HTTPHeaders([
            ("Content-Type", "application/octet-stream"),
            ("X-Raft-Index", String(header.lastIndex)), ("X-Raft-Term", String(header.lastTerm)),
        ]), contentLength: Int(size))
        // A short answer ends short of its Content-Length, which the downloader refuses.
        stream(to: BackupSink(onClose: exchange.onClose, write: { piece, _, ready in exchange.write(piece, whenReady: ready) },
                              finish: { _ in exchange.finish() }),
               pieceSecondsMax: pieceSecondsMax, ended: ended)
    }

    /// Sends the file to `sink` as `stream(to: HTTPExchange)` does (gRPC's Snapshot call sends it so too).
    func stream(to sink: BackupSink, pieceSecondsMax: Int = BackupFile.backupPieceSecondsMax, ended: @escaping @Sendable () -> Void) {
        let queue = DispatchQueue(label: "cairn.backup-stream")
        nonisolated(unsafe) var closed = false  // touched on `queue` only
        nonisolated(unsafe) var piecesTaken = 0  // touched on `queue` only
        @Sendable func close() {
            guard !closed else { return }
            closed = true
            fs.close(file)
            ended()
        }
        sink.onClose { queue.async { close() } }
        @Sendable func send(from offset: UInt64) {
            guard !closed else { return }
            guard offset < size else {
                close()
                return sink.finish(true)
            }
            let count = Int(min(UInt64(1 << 20), size - offset))
            guard let piece = try? fs.read(file, at: offset, count: count), piece.count == count else {
                close()
                return sink.finish(false)
            }
            piecesTaken += 1
            let piecesBefore = piecesTaken
            queue.asyncAfter(deadline: .now() + .seconds(pieceSecondsMax)) {
                guard !closed, piecesTaken == piecesBefore else { return }
                close()
                sink.finish(false)
            }
            let next = offset + UInt64(count)
            sink.write(piece, size - next) { queue.async { send(from: next) } }
        }
        queue.async { send(from: 0) }
    }
}

/// Where a backup stream goes: the piece and the bytes still to come after it (`whenReady` once it can take more),
/// then `finish` (true when whole); `onClose` registers what runs if the reader goes first.
struct BackupSink: Sendable {
    let onClose: @Sendable (@escaping @Sendable () -> Void) -> Void
    let write: @Sendable ([UInt8], UInt64, @escaping @Sendable () -> Void) -> Void
    let finish: @Sendable (Bool) -> Void
}

/// What a backup file holds, read whole and checked: every checksum, then the key space, sessions and members.
package struct BackupContents {
    package let header: SnapshotHeader
    package let keySpace: KeySpace
    let sessions: ClientSessions
    package let members: MemberTable
    package let bytes: UInt64

    package init(fs: FileSystem, path: String) throws {
        // A copy saved by etcdctl through gRPC carries etcd's tail after the Cairn file: read the file inside.
        let fs = try EtcdSnapshotTail.view(fs, path)
        let loaded = try MemberStorage.loadSnapshot(fs: fs, path: path)
        let file = try fs.open(path, create: false)
        defer { fs.close(file) }
        bytes = try fs.size(file)
        header = loaded.header
        keySpace = loaded.state.keySpace
        sessions = loaded.state.sessions
        members = loaded.state.members
    }
}

package enum BackupError: Error, CustomStringConvertible {
    case notEmpty(String)
    case download(String)

    package var description: String {
        switch self {
        case .notEmpty(let directory): "data directory \(directory) is not empty: restore builds a new member's directory"
        case .download(let reason): reason
        }
    }
}

package enum Restore {
    /// Writes a new member's data directory from a backup: the backup's keys, index and sessions, with the members
    /// of `bootstrap` (a new cluster, as `--initial-cluster` and the token name it) in place of the old ones. Every
    /// member restored from the same file with the same flags starts from the same snapshot, so they agree.
    package static func restore(_ backup: BackupContents, into directory: String, bootstrap: ClusterBootstrap, fs: FileSystem) throws {
        try fs.makeDirectory(directory)
        let lock = try DataDirectoryLock(fs: fs, directory: directory)
        defer { lock.release() }
        guard try fs.list(directory).allSatisfy({ $0 == "LOCK" }) else { throw BackupError.notEmpty(directory) }
        let voters = Membership(voters: bootstrap.members.map { MemberID($0.id) })
        let header = SnapshotHeader(lastIndex: backup.header.lastIndex, lastTerm: backup.header.lastTerm,
                                    clusterTimeNanos: backup.header.clusterTimeNanos, membership: voters.encoded())
        let writer = try SnapshotWriter(fs: fs, directory: directory, header: header)
        var sink = SnapshotFileSink(writer: writer)
        do {
            try TreeSnapshot.write(root: backup.keySpace.root, currentIndex: backup.keySpace.currentIndex, to: &sink)
            try backup.sessions.write(to: &sink)
            try MemberTable(bootstrap.members.map(MemberRecord.init), isLogged: true).write(to: &sink)
            _ = try writer.finish()
        } catch {
            writer.abort()
            throw error
        }
        // The term starts where the backup's log ended, so no member's term is behind its own snapshot.
        try HardStateFile.save(HardState(term: header.lastTerm, vote: 0, commit: header.lastIndex), fs: fs, directory: directory)
        try MemberIdentity(clusterID: bootstrap.clusterID, memberID: bootstrap.localID).claim(fs: fs, directory: directory)
    }
}

package enum BackupDownload {
    /// Downloads a member's backup over HTTP into `path` (through `path.part`, synced, then renamed), after checking
    /// every checksum of the copy; returns what it holds. `url` is one of the member's client URLs; an `https://` one
    /// is reached with `tls` (the CA to trust and the client certificate to show, as etcdctl's flags give them).
    package static func save(from url: String, to path: String, fs: FileSystem, timeoutSeconds: Int = 60,
                             tls: TLSConfiguration? = nil, authorization: String? = nil) throws -> BackupContents {
        let endpoint = try URLList.parse(url, flag: "endpoints")[0]
        let partial = path + ".part"
        let authorizationLine = authorization.map { "Authorization: \($0)\r\n" } ?? ""
        let (fd, _, receive) = try send(Array("GET /cairn/snapshot HTTP/1.1\r\nHost: \(endpoint)\r\n\(authorizationLine)Connection: close\r\n\r\n".utf8),
                                             to: endpoint, timeoutSeconds: timeoutSeconds, tls: tls)
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var received: [UInt8] = []
        var headEnd: Int?
        while headEnd == nil {
            guard received.count < 64 * 1024 else { throw BackupError.download("\(endpoint): the answer's head is too long") }
            let n = try receive(&buffer)
            guard n > 0 else { throw BackupError.download("\(endpoint): the connection ended before the answer's head") }
            received += buffer[0..<n]
            headEnd = firstRange(of: [13, 10, 13, 10], in: received)
        }
        let head = String(decoding: received[0..<headEnd!], as: UTF8.self)
        var body = Array(received[(headEnd! + 4)...])
        let lines = head.split(separator: "\r\n")
        let status = lines.first.flatMap { $0.split(separator: " ").dropFirst().first.flatMap { Int($0) } } ?? 0
        let length = lines.dropFirst().compactMap { line -> UInt64? in
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
            return UInt64(parts[1].trimmingASCIIWhitespace())
        }.first
        guard status == 200, let length else {
            while body.count < 64 * 1024 {
                guard let n = try? receive(&buffer), n > 0 else { break }
                body += buffer[0..<n]
            }
            throw BackupError.download("\(endpoint) answered \(status): \(String(decoding: body.prefix(500), as: UTF8.self))")
        }
        let file = try fs.open(partial, create: true)
        do {
            try fs.truncate(file, to: 0)
            var written: UInt64 = 0
            while true {
                if !body.isEmpty {
                    guard written + UInt64(body.count) <= length else { throw BackupError.download("\(endpoint) sent more than \(length) bytes") }
                    try fs.write(file, at: written, body)
                    written += UInt64(body.count)
                }
                if written == length { break }
                let n = try receive(&buffer)
                guard n > 0 else { throw BackupError.download("\(endpoint): the stream ended after \(written) of \(length) bytes") }
                body = Array(buffer[0..<n])
            }
            try fs.sync(file)
            fs.close(file)
        } catch {
            fs.close(file)
            try? fs.remove(partial)
            throw error
        }
        let contents: BackupContents
        do { contents = try BackupContents(fs: fs, path: partial) } catch {
            try? fs.remove(partial)
            throw error
        }
        try fs.rename(partial, to: path)
        let slash = path.lastIndex(of: "/")
        try fs.syncDirectory(slash.map { String(path[..<$0]) }.flatMap { $0.isEmpty ? "/" : $0 } ?? ".")
        return contents
    }

    /// etcd's v3 Authenticate through the gateway: the token for `user` ("name:password"), for backups with auth on.
    package static func authenticate(_ url: String, user: String, timeoutSeconds: Int = 60, tls: TLSConfiguration? = nil) throws -> String {
        let endpoint = try URLList.parse(url, flag: "endpoints")[0]
        guard let colon = user.firstIndex(of: ":") else { throw BackupError.download("--user must be NAME:PASSWORD") }
        var json = GoJSON()
        json.raw("{\"name\":")
        json.string(String(user[..<colon]))
        json.raw(",\"password\":")
        json.string(String(user[user.index(after: colon)...]))
        json.raw("}")
        let body = json.take()
        let (fd, _, receive) = try send(Array("POST /v3/auth/authenticate HTTP/1.1\r\nHost: \(endpoint)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8) + body,
                                        to: endpoint, timeoutSeconds: timeoutSeconds, tls: tls)
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024), answer: [UInt8] = []
        while answer.count < 64 * 1024 {
            let n = try receive(&buffer)
            if n == 0 { break }
            answer += buffer[0..<n]
        }
        guard let start = firstRange(of: Array("\"token\":\"".utf8), in: answer) else {
            throw BackupError.download("\(endpoint) refused the user: \(String(decoding: answer.suffix(300), as: UTF8.self))")
        }
        let token = answer[(start + 9)...].prefix { $0 != UInt8(ascii: "\"") }
        return String(decoding: token, as: UTF8.self)
    }

    /// Connects (with TLS for an `https://` endpoint) and writes `request`; returns the socket, its stream and a reader
    /// that gives the bytes read into a buffer (0 at the end; a timeout or a TLS failure is an error).
    private static func send(_ request: [UInt8], to endpoint: ListenAddress, timeoutSeconds: Int, tls: TLSConfiguration?) throws
        -> (Int32, SocketStream, (inout [UInt8]) throws -> Int) {
        let fd = try connect(endpoint, timeoutSeconds: timeoutSeconds)
        var session: TLSStream?
        if endpoint.usesTLS {
            var system = TLSConfiguration(certificateFile: nil, keyFile: nil)
            system.trustsSystemCAs = true
            let context: TLSContext
            do { context = try TLSContext(configuration: tls ?? system, role: .dialling) } catch {
                Glibc.close(fd)
                throw error
            }
            guard let made = context.makeSession(fd: fd, serverName: endpoint.host) else {
                Glibc.close(fd)
                throw BackupError.download("\(endpoint): cannot start a TLS session")
            }
            session = made
        }
        let stream = SocketStream(fd: fd, tls: session)
        let receive = { (buffer: inout [UInt8]) throws -> Int in
            switch buffer.withUnsafeMutableBytes({ stream.read(into: $0) }) {
            case .bytes(let n): return n
            case .ended: return 0
            case .wouldBlock: throw BackupError.download("\(endpoint): no answer within \(timeoutSeconds) s")
            case .failed(let reason): throw BackupError.download("\(endpoint): \(reason)")
            }
        }
        // On a blocking socket a write (the TLS handshake first) completes or fails whole.
        switch request.withUnsafeBytes({ stream.write($0) }) {
        case .wrote(request.count): return (fd, stream, receive)
        case .failed(let reason):
            Glibc.close(fd)
            throw BackupError.download("\(endpoint): could not send the request: \(reason)")
        default:
            Glibc.close(fd)
            throw BackupError.download("\(endpoint): could not send the request")
        }
    }

    /// A blocking socket connected to `endpoint` within the timeout, reads timing out after it too.
    private static func connect(_ endpoint: ListenAddress, timeoutSeconds: Int) throws -> Int32 {
        let fd = try Socket.connect(endpoint)
        var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let error = poll(&ready, 1, Int32(timeoutSeconds * 1000)) == 1 ? Socket.pendingError(fd) : ETIMEDOUT
        guard error == 0 else {
            Glibc.close(fd)
            throw BackupError.download("cannot connect to \(endpoint): \(String(cString: strerror(error)))")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    private static func firstRange(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        return (0...(haystack.count - needle.count)).first { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
    }
}
