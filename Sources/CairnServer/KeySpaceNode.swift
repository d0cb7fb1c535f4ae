// One member's key space on its serial queue: commands are sequenced and applied in order, watchers woken, TTLs
// expired by commands stamped with cluster time, and each applied root published for lock-free reads.
// Single-member for now: the sequencer stands where Raft's committed entries will arrive.
import CairnStore
import Dispatch
import Synchronization

package final class KeySpaceNode: @unchecked Sendable {
    /// What a read sees: an immutable root and the indexes it reflects.
    package struct View: Sendable {
        package var root: StoreNode
        package var etcdIndex: UInt64
        package var raftIndex: UInt64
        package var raftTerm: UInt64
    }

    package let queue = DispatchQueue(label: "cairn.node")
    private let clock: ClusterClock
    private var keySpace: KeySpace
    private let hub: WatchHub
    private var raftIndex: UInt64
    private let raftTerm: UInt64 = 2
    private let published: Mutex<View>
    private var expiryTimer: (any DispatchSourceTimer)?
    private let statistics = Mutex(StoreStatistics())

    /// - Parameters:
    ///   - initialIndex: where the store index starts (etcd's own bootstrap writes come first, 2 per member + 1).
    ///   - historyBytesMax: how much watch history to keep.
    package init(clock: ClusterClock, initialIndex: UInt64, historyBytesMax: Int) {
        self.clock = clock
        keySpace = KeySpace(initialIndex: initialIndex)
        hub = WatchHub(historyBytesMax: historyBytesMax)
        raftIndex = initialIndex + 1
        published = Mutex(View(root: keySpace.root, etcdIndex: initialIndex, raftIndex: initialIndex + 1, raftTerm: 2))
    }

    package func start() {
        let timer = DispatchSource.makeTimerSource(queue: queue)
        // etcd checks for expired keys every 500 ms; so does this member, through an expire command.
        timer.schedule(deadline: .now() + .milliseconds(500), repeating: .milliseconds(500))
        timer.setEventHandler { [unowned self] in expireDueKeys() }
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

    /// Applies a write in order; `completion` runs on the node queue with the outcome and the view right after it.
    package func propose(_ command: StoreCommand, completion: @escaping @Sendable (Result<StoreEvent, StoreError>, View) -> Void) {
        queue.async { [self] in
            raftIndex += 1
            let result = keySpace.apply(command, now: clock.now())
            statistics.withLock { $0.count(command, succeeded: (try? result.get()) != nil) }
            switch result {
            case .success(let (event, removed)):
                let view = publish()
                hub.notify(event, removedPaths: removed)
                completion(.success(event), view)
            case .failure(let error):
                completion(.failure(error), publish())
            }
        }
    }

    /// Registers a watch; `registered` runs once on the node queue (with the watcher's ID while it waits, or the
    /// error) before `deliver` runs for any event, history included (also on the node queue).
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

    private func expireDueKeys() {
        let now = clock.now()
        guard let due = keySpace.nextExpiration, due <= now else { return }
        raftIndex += 1
        let expired = keySpace.expire(upTo: now)
        statistics.withLock { $0.expireCount += expired.count }
        publish()
        for (event, removed) in expired { hub.notify(event, removedPaths: removed) }
    }

    @discardableResult
    private func publish() -> View {
        let view = View(root: keySpace.root, etcdIndex: keySpace.currentIndex, raftIndex: raftIndex, raftTerm: raftTerm)
        published.withLock { $0 = view }
        return view
    }
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
