// One member's key space on its serial queue: every command (writes and TTL expiry, stamped with cluster time) is
// made durable in the log before it is applied and answered; applied roots are published for lock-free reads;
// every `snapshotCount` entries the tree is streamed into a snapshot file and the log behind it compacted.
// Single-member for now: the sequencer stands where Raft's committed entries will arrive.
import CairnStorage
import CairnStore
import Dispatch
import Logging
import Synchronization

package final class KeySpaceNode: @unchecked Sendable {
    /// What a read sees: an immutable root and the indexes it reflects.
    package struct View: Sendable {
        package var root: StoreNode
        package var etcdIndex: UInt64
        package var raftIndex: UInt64
        package var raftTerm: UInt64
    }

    /// Log entry kind of a key-space command.
    static let commandEntryKind: UInt8 = 1

    package let queue = DispatchQueue(label: "cairn.node")
    private let snapshotQueue = DispatchQueue(label: "cairn.snapshot")
    private let clock: ClusterClock
    private let storage: Storage?
    private let snapshotCount: UInt64
    private let logger = Logger(label: "cairn.node")
    private var keySpace: KeySpace
    private let hub: WatchHub
    /// The index the next command gets in the log; entries below `appliedIndex + 1` are applied.
    private var nextRaftIndex: UInt64
    private var appliedRaftIndex: UInt64
    private var snapshotIndex: UInt64 = 0
    private var snapshotInProgress = false
    private var storageFailed = false
    private let raftTerm: UInt64 = 2
    private let published: Mutex<View>
    private var expiryTimer: (any DispatchSourceTimer)?
    private var expiryPending = false
    private let statistics = Mutex(StoreStatistics())

    /// Recovers from `storage` (newest snapshot, then the log after it) when one is given; otherwise starts empty.
    /// - Parameters:
    ///   - initialIndex: where a new store index starts (etcd's own bootstrap writes come first, 2 per member + 1).
    package init(clock: ClusterClock, initialIndex: UInt64, historyBytesMax: Int, storage: Storage?, snapshotCount: Int) throws {
        self.clock = clock
        self.storage = storage
        self.snapshotCount = UInt64(max(1, snapshotCount))
        hub = WatchHub(historyBytesMax: historyBytesMax)
        keySpace = KeySpace(initialIndex: initialIndex)
        appliedRaftIndex = 0
        if let storage {
            if let newest = try storage.snapshots().last {
                let reader = try SnapshotReader(fs: storage.fs, path: newest.path)
                defer { reader.close() }
                var source = SnapshotChunks(reader: reader)
                let (root, index) = try TreeSnapshot.read(from: &source)
                guard try reader.next() == nil else { throw StorageError.corrupt(path: newest.path, offset: 0, index: newest.lastIndex, reason: "bytes after the key space") }
                keySpace = KeySpace(root: root, currentIndex: index)
                appliedRaftIndex = reader.header.lastIndex
                snapshotIndex = reader.header.lastIndex
            }
            let (first, last) = try storage.writer.withLog { ($0.firstIndex, $0.lastIndex) }
            var index = max(first, appliedRaftIndex + 1)
            while index <= last {
                let batch = try storage.writer.withLog { try $0.entries(index..<min(last + 1, index + 1024)) }
                for entry in batch where entry.kind == Self.commandEntryKind {
                    let command = try StoreCommand(decoding: entry.payload)
                    _ = Self.apply(command, to: &keySpace, at: Int64(bitPattern: entry.clusterTimeNanos))
                    appliedRaftIndex = entry.index
                }
                index += UInt64(batch.count)
                if batch.isEmpty { break }
            }
            appliedRaftIndex = max(appliedRaftIndex, last)
            if appliedRaftIndex < first - 1 { appliedRaftIndex = first - 1 }
        }
        nextRaftIndex = appliedRaftIndex + 1
        published = Mutex(View(root: keySpace.root, etcdIndex: keySpace.currentIndex, raftIndex: appliedRaftIndex, raftTerm: raftTerm))
    }

    package func start() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        // etcd checks for expired keys every 500 ms; so does this member, through a logged expire command.
        timer.schedule(deadline: .now() + .milliseconds(500), repeating: .milliseconds(500))
        timer.setEventHandler { [unowned self] in proposeExpiryIfDue() }
        timer.resume()
        expiryTimer = timer
    }

    /// The latest applied state; safe from any thread.
    package func view() -> View { published.withLock { $0 } }

    package var now: Int64 { clock.now() }

    package var storeStatistics: StoreStatistics {
        var counted = statistics.withLock { $0 }
        counted.watchers = watcherCount
        return counted
    }

    package func countRead(succeeded: Bool) {
        statistics.withLock { succeeded ? ($0.getsSuccess += 1) : ($0.getsFail += 1) }
    }

    /// Makes a write durable, applies it in log order, and calls `completion` (on the node queue) with the outcome
    /// and the view right after it. Concurrent writes share one fsync (the storage's group commit).
    package func propose(_ command: StoreCommand, completion: @escaping @Sendable (Result<StoreEvent, StoreError>, View) -> Void) {
        queue.async { [self] in
            submit(command) { [self] in
                let result = Self.apply(command, to: &keySpace, at: $0).map { $0[0] }
                statistics.withLock { $0.count(command, succeeded: (try? result.get()) != nil) }
                switch result {
                case .success(let (event, removed)):
                    let view = publish()
                    hub.notify(event, removedPaths: removed)
                    completion(.success(event), view)
                case .failure(let error):
                    completion(.failure(error), publish())
                }
            } failed: { [self] error in
                completion(.failure(error), published.withLock { $0 })
            }
        }
    }

    /// Assigns the next log index and cluster time, persists, then runs `apply` on the node queue in log order.
    private func submit(_ command: StoreCommand, apply: @escaping (Int64) -> Void, failed: @escaping (StoreError) -> Void) {
        guard !storageFailed else {
            return failed(StoreError(.raftInternal, "storage failed: writes are refused until restart", index: keySpace.currentIndex))
        }
        let index = nextRaftIndex
        nextRaftIndex += 1
        let time = clock.now()
        guard let storage else {
            appliedRaftIndex = index
            return apply(time)
        }
        let entry = LogEntryRecord(index: index, term: raftTerm, kind: Self.commandEntryKind,
                                   clusterTimeNanos: UInt64(bitPattern: time), payload: command.encoded())
        nonisolated(unsafe) let apply = apply
        nonisolated(unsafe) let failed = failed
        storage.writer.submit([entry]) { [self] result in
            queue.async { [self] in
                switch result {
                case .success:
                    appliedRaftIndex = index
                    apply(time)
                    snapshotIfDue()
                case .failure(let error):
                    storageFailed = true
                    logger.critical("storage failed; refusing writes", metadata: ["error": "\(error)"])
                    failed(StoreError(.raftInternal, "storage failed: \(error)", index: keySpace.currentIndex))
                }
            }
        }
    }

    /// Applies one logged command: a write (one event), or the expiry of everything due by its cut-off (any number).
    private static func apply(_ command: StoreCommand, to keySpace: inout KeySpace, at time: Int64)
        -> Result<[(event: StoreEvent, removed: [String])], StoreError>
    {
        guard command.method == .expire else { return keySpace.apply(command, now: time).map { [$0] } }
        return .success(keySpace.expire(upTo: command.expiration))
    }

    package func watch(path: String, recursive: Bool, stream: Bool, sinceIndex: UInt64,
                       deliver: @escaping @Sendable (StoreEvent) -> Void,
                       registered: @escaping @Sendable (Result<WatchHub.WatcherID?, StoreError>, View) -> Void) {
        queue.async { [self] in
            let view = published.withLock { $0 }
            var fromHistory: [StoreEvent] = []
            var isRegistered = false
            let result = hub.watch(path: path, recursive: recursive, stream: stream, sinceIndex: sinceIndex,
                                   currentIndex: keySpace.currentIndex) { event in
                if isRegistered { deliver(event) } else { fromHistory.append(event) }
            }
            registered(result, view)
            isRegistered = true
            for event in fromHistory { deliver(event) }
        }
    }

    package func cancelWatch(_ id: WatchHub.WatcherID) {
        queue.async { [self] in hub.remove(id) }
    }

    package var watcherCount: Int { queue.sync { hub.watcherCount } }

    private func proposeExpiryIfDue() {
        let now = clock.now()
        guard !expiryPending, let due = keySpace.nextExpiration, due <= now else { return }
        expiryPending = true
        var command = StoreCommand(method: .expire)
        command.expiration = now
        submit(command) { [self] _ in
            expiryPending = false
            let expired = (try? Self.apply(command, to: &keySpace, at: now).get()) ?? []
            statistics.withLock { $0.expireCount += expired.count }
            publish()
            for (event, removed) in expired { hub.notify(event, removedPaths: removed) }
        } failed: { [self] _ in
            expiryPending = false
        }
    }

    /// Every `snapshotCount` entries: stream the current root into a snapshot file off the node queue, then let
    /// storage drop the snapshots and log segments no longer needed.
    private func snapshotIfDue() {
        guard let storage, !snapshotInProgress, appliedRaftIndex - snapshotIndex >= snapshotCount else { return }
        snapshotInProgress = true
        let root = keySpace.root, storeIndex = keySpace.currentIndex, index = appliedRaftIndex, time = clock.now()
        let header = SnapshotHeader(lastIndex: index, lastTerm: raftTerm, clusterTimeNanos: UInt64(bitPattern: time), membership: [])
        snapshotQueue.async { [self] in
            do {
                let writer = try storage.beginSnapshot(header)
                var sink = SnapshotFileSink(writer: writer)
                do {
                    try TreeSnapshot.write(root: root, currentIndex: storeIndex, to: &sink)
                    _ = try writer.finish()
                } catch {
                    writer.abort()
                    throw error
                }
                try storage.retain()
                logger.info("snapshot saved", metadata: ["index": "\(index)"])
                queue.async { [self] in
                    snapshotIndex = index
                    snapshotInProgress = false
                }
            } catch {
                logger.error("snapshot failed", metadata: ["index": "\(index)", "error": "\(error)"])
                queue.async { [self] in snapshotInProgress = false }
            }
        }
    }

    @discardableResult
    private func publish() -> View {
        let view = View(root: keySpace.root, etcdIndex: keySpace.currentIndex, raftIndex: appliedRaftIndex, raftTerm: raftTerm)
        published.withLock { $0 = view }
        return view
    }
}

/// A snapshot file's body as the key space's snapshot source: exact reads across the file's chunks.
struct SnapshotChunks: SnapshotSource {
    let reader: SnapshotReader
    var buffer: [UInt8] = []
    var offset = 0

    init(reader: SnapshotReader) {
        self.reader = reader
    }

    mutating func read(exactly count: Int) throws -> [UInt8] {
        while buffer.count - offset < count {
            guard let chunk = try reader.next() else { throw TreeSnapshotError.truncated }
            buffer = Array(buffer[offset...]) + chunk
            offset = 0
        }
        defer { offset += count }
        return Array(buffer[offset..<(offset + count)])
    }
}

/// The key space's snapshot stream into a snapshot file.
struct SnapshotFileSink: SnapshotSink {
    let writer: SnapshotWriter
    func write(_ bytes: [UInt8]) throws { try writer.write(bytes) }
}

/// The counters etcd reports at /v2/stats/store.
package struct StoreStatistics: Sendable {
    package var getsSuccess = 0, getsFail = 0
    package var setsSuccess = 0, setsFail = 0
    package var deleteSuccess = 0, deleteFail = 0
    package var updateSuccess = 0, updateFail = 0
    package var createSuccess = 0, createFail = 0
    package var compareAndSwapSuccess = 0, compareAndSwapFail = 0
    package var compareAndDeleteSuccess = 0, compareAndDeleteFail = 0
    package var expireCount = 0
    package var watchers = 0

    mutating func count(_ command: StoreCommand, succeeded: Bool) {
        switch (command.method, command.prevExist) {
        case (.post, _), (.put, false?):
            succeeded ? (createSuccess += 1) : (createFail += 1)
        case (.put, true?) where command.prevIndex == 0 && command.prevValue.isEmpty:
            succeeded ? (updateSuccess += 1) : (updateFail += 1)
        case (.put, _) where command.prevIndex > 0 || !command.prevValue.isEmpty:
            succeeded ? (compareAndSwapSuccess += 1) : (compareAndSwapFail += 1)
        case (.put, _):
            succeeded ? (setsSuccess += 1) : (setsFail += 1)
        case (.delete, _) where command.prevIndex > 0 || !command.prevValue.isEmpty:
            succeeded ? (compareAndDeleteSuccess += 1) : (compareAndDeleteFail += 1)
        case (.delete, _):
            succeeded ? (deleteSuccess += 1) : (deleteFail += 1)
        case (.expire, _):
            break
        }
    }
}
