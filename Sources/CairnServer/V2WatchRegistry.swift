// The v2 watch registry (`WatchHub`) and the store index its events have reached, behind one lock of their own: a
// watch registers, and a client that leaves frees its watch, from its connection's queue, never the member's.
import CairnStore
import Synchronization

final class V2WatchRegistry: Sendable {
    typealias Delivery = @Sendable (EncodedWatchEvent) -> Void

    /// Touched under `state`'s lock only: the hub calls its watchers' closures there, and they collect here.
    private final class State: @unchecked Sendable {
        let hub: WatchHub
        /// The index of the last batch recorded: a watch of "the next index" starts after it (etcd's X-Etcd-Index).
        var currentIndex: UInt64
        /// While a watch registers, the events history hands it; otherwise the live watchers an event wakes.
        var registering = false
        var fromHistory: [StoreEvent] = []
        var woken: [Delivery] = []

        init(hub: WatchHub, currentIndex: UInt64) {
            self.hub = hub
            self.currentIndex = currentIndex
        }
    }

    private let state: Mutex<State>
    private let delivery: WatchDelivery

    init(historyBytesMax: Int, currentIndex: UInt64, delivery: WatchDelivery) {
        state = Mutex(State(hub: WatchHub(historyBytesMax: historyBytesMax), currentIndex: currentIndex))
        self.delivery = delivery
    }

    var watcherCount: Int { state.withLock { $0.hub.watcherCount } }

    /// Registers a watch as etcd's `GET ?wait=true` does (`WatchHub.watch`); returns the outcome and the index the
    /// watch starts from. Events reach `deliver` from the delivery queue, history first, in index order: they are
    /// handed to that queue under this lock, so a watch registering and a batch being recorded cannot pass each other.
    func watch(path: StoreKey, recursive: Bool, stream: Bool, sinceIndex: UInt64,
               deliver: @escaping Delivery) -> (Result<WatchHub.WatcherID?, StoreError>, startIndex: UInt64) {
        state.withLock { state in
            state.registering = true
            let result = state.hub.watch(path: path, recursive: recursive, stream: stream, sinceIndex: sinceIndex,
                                         currentIndex: state.currentIndex) { [unowned state] event in
                if state.registering { state.fromHistory.append(event) } else { state.woken.append(deliver) }
            }
            state.registering = false
            for event in state.fromHistory { delivery.deliver(event, to: [deliver]) }
            state.fromHistory.removeAll()
            return (result, state.currentIndex)
        }
    }

    func cancel(_ id: WatchHub.WatcherID) {
        state.withLock { $0.hub.remove(id) }
    }

    /// Records an applied batch's events (on the member's queue, in log order), hands each to the watchers it wakes,
    /// and moves the current index to the batch's.
    func record(_ events: [(event: StoreEvent, removed: RemovedNodes)], throughIndex index: UInt64) {
        state.withLock { state in
            for (event, removed) in events {
                state.hub.notify(event, removedPaths: removed)
                guard !state.woken.isEmpty else { continue }
                delivery.deliver(event, to: state.woken)
                state.woken.removeAll()
            }
            state.currentIndex = index
        }
    }
}
