// Watch events from the member's queue to the watchers' connections: each event encoded once, off that queue, and
// shared by every watcher it reaches; each watcher feeds its connection as it drains, and a slow one is dropped.
import CairnAPI
import CairnHTTP
import CairnStore
import DequeModule
import Dispatch
import Synchronization

/// One event's JSON body, shared (never copied) by every watcher that gets it.
package final class EncodedWatchEvent: Sendable {
    package let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }
}

/// Encodes and hands out watch events on its own queue, so the member's queue only collects who is woken.
package final class WatchDelivery: @unchecked Sendable {
    /// The newest encodings are kept up to this many bytes, so watchers that resume from history (many clients
    /// re-watching from the same index) share them too.
    static let recentBytesMax = 16 * 1024 * 1024

    private let queue = DispatchQueue(label: "cairn.watch-delivery")
    /// Ends long-polls that waited their full time.
    let deadlines = WatchDeadlines()
    private let counts = Mutex((encodedEvents: 0, droppedWatchers: 0))
    // Touched on `queue` only. An event is named by its index and key (one expiry removes many keys at one index).
    private struct EventName: Hashable { var index: UInt64; var key: StoreKey }
    private var recent: [EventName: EncodedWatchEvent] = [:]
    private var recentOrder = Deque<EventName>()
    private var recentBytes = 0

    /// Events encoded so far: one per event that woke anyone, however many watchers it woke.
    package var encodedEvents: Int { counts.withLock { $0.encodedEvents } }
    /// Stream watchers cut off for not reading (`WatchOutput.queuedBytesMax`).
    package var droppedWatchers: Int { counts.withLock { $0.droppedWatchers } }

    /// Delivers `event`, encoded once, to each of `watchers` in order; events are delivered in the order given.
    func deliver(_ event: StoreEvent, to watchers: [@Sendable (EncodedWatchEvent) -> Void]) {
        queue.async { [self] in
            let encoded = encoding(of: event)
            for watcher in watchers { watcher(encoded) }
        }
    }

    private func encoding(of event: StoreEvent) -> EncodedWatchEvent {
        let name = EventName(index: event.etcdIndex, key: event.node.key)
        if let known = recent[name] { return known }
        let encoded = EncodedWatchEvent(KeysResponse.event(event))
        counts.withLock { $0.encodedEvents += 1 }
        recent[name] = encoded
        recentOrder.append(name)
        recentBytes += encoded.bytes.count
        while recentBytes > Self.recentBytesMax, let oldest = recentOrder.popFirst() {
            recentBytes -= recent.removeValue(forKey: oldest)?.bytes.count ?? 0
        }
        return encoded
    }

    func watcherDropped() { counts.withLock { $0.droppedWatchers += 1 } }
}

/// One watch's response body: the events it was given, fed to the exchange in pieces as the connection drains, so
/// the connection never holds more than its output bound of them. Its state lives on the exchange's loop thread.
final class WatchOutput: @unchecked Sendable {
    /// A stream watcher whose undelivered events pass this is dropped: its connection is closed (HTTP/1.1) or its
    /// stream reset (HTTP/2), so the client sees the response cut off and re-watches from its last index.
    static let queuedBytesMax = 8 * 1024 * 1024
    /// Events go to the connection in pieces of at most this, so a large event is never copied whole per watcher.
    static let pieceBytesMax = 64 * 1024

    private let exchange: HTTPExchange
    private let isStream: Bool
    private let delivery: WatchDelivery
    private var queued = Deque<EncodedWatchEvent>()
    /// How much of `queued.first` has gone to the exchange.
    private var sentOfFirst = 0
    private var queuedBytes = 0
    private var waitingForRoom = false
    private var writing = false
    /// No more events are taken; the response finishes once the queue is empty.
    private var ending = false
    private var finished = false
    private var deadline: WatchDeadlines.Token?

    init(exchange: HTTPExchange, isStream: Bool, delivery: WatchDelivery) {
        self.exchange = exchange
        self.isStream = isStream
        self.delivery = delivery
    }

    /// Ends the response, empty if no event came, after `seconds` (etcd ends a long-poll after five minutes).
    /// The deadline is dropped, and with it what it holds, as soon as the watch ends or its client goes.
    func endAfter(seconds: Int, then expired: @escaping @Sendable () -> Void) {
        exchange.run { [self] in
            guard !finished else { return }
            deadline = delivery.deadlines.add(seconds: seconds) { [weak self] in
                expired()
                self?.end()
            }
        }
    }

    /// Takes an event (any thread); a one-shot watch ends with it.
    func enqueue(_ event: EncodedWatchEvent) {
        exchange.run { [self] in
            guard !ending, !finished else { return }
            if isStream, queuedBytes >= Self.queuedBytesMax {
                delivery.watcherDropped()
                stop()
                return exchange.abort()
            }
            queued.append(event)
            queuedBytes += event.bytes.count
            if !isStream { ending = true }
            pump()
        }
    }

    /// Finishes the response once what is queued has gone out.
    func end() {
        exchange.run { [self] in
            ending = true
            pump()
        }
    }

    /// The client went away: drop the queue and the timer now.
    func stop() {
        finished = true
        if let deadline { delivery.deadlines.remove(deadline) }
        deadline = nil
        queued.removeAll()
        queuedBytes = 0
    }

    private func pump() {
        guard !finished, !writing else { return }
        writing = true
        defer { writing = false }
        while !waitingForRoom, let first = queued.first {
            let end = min(first.bytes.count, sentOfFirst + Self.pieceBytesMax)
            let piece = sentOfFirst == 0 && end == first.bytes.count ? first.bytes : Array(first.bytes[sentOfFirst..<end])
            queuedBytes -= end - sentOfFirst
            sentOfFirst = end
            if sentOfFirst == first.bytes.count {
                queued.removeFirst()
                sentOfFirst = 0
            }
            waitingForRoom = true
            // Runs at once when the connection has room (the loop continues), else when it drains.
            exchange.write(piece) { [self] in
                waitingForRoom = false
                if !writing { pump() }
            }
        }
        if queued.isEmpty, ending, !waitingForRoom {
            stop()
            exchange.finish()
        }
    }
}

/// Long-poll deadlines, each rounded up to a whole second, served by one timer: a timer per watch cost a hand-off to
/// libdispatch's manager thread to arm it and another to cancel it, for every watch (a thousand re-arming watchers
/// per write). Deadlines are kept by the second they fall in, so a watch that ends first is dropped at once.
final class WatchDeadlines: @unchecked Sendable {
    struct Token: Sendable {
        fileprivate let second: UInt64
        fileprivate let id: Int
    }

    private struct State {
        var bySecond: [UInt64: [Int: @Sendable () -> Void]] = [:]
        var count = 0
        var nextID = 0
        /// The second the timer is set for; nil while it is not set.
        var armedSecond: UInt64?
    }

    private let state = Mutex(State())
    /// Scheduled only under `state`'s lock, so two settings never cross.
    private let timer: any DispatchSourceTimer

    init() {
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "cairn.watch-deadlines"))
        timer.schedule(deadline: .distantFuture)
        timer.setEventHandler { [weak self] in self?.expireDue() }
        timer.activate()
    }

    deinit { timer.cancel() }

    /// Deadlines not yet passed nor removed.
    var count: Int { state.withLock { $0.count } }

    /// Calls `expired` (on the timer's queue) between `seconds` and `seconds + 1` from now, unless removed before.
    func add(seconds: Int, _ expired: @escaping @Sendable () -> Void) -> Token {
        let second = Self.currentSecond() + UInt64(max(0, seconds)) + 1
        return state.withLock { state in
            state.nextID += 1
            state.bySecond[second, default: [:]][state.nextID] = expired
            state.count += 1
            if state.armedSecond.map({ second < $0 }) ?? true { arm(second, &state) }
            return Token(second: second, id: state.nextID)
        }
    }

    func remove(_ token: Token) {
        state.withLock { state in
            guard state.bySecond[token.second]?.removeValue(forKey: token.id) != nil else { return }
            state.count -= 1
            if state.bySecond[token.second]?.isEmpty == true { state.bySecond[token.second] = nil }
        }
    }

    private func expireDue() {
        let now = Self.currentSecond()
        let due = state.withLock { state in
            var due: [@Sendable () -> Void] = []
            for second in Array(state.bySecond.keys) where second <= now {
                if let bucket = state.bySecond.removeValue(forKey: second) { due += bucket.values }
            }
            state.count -= due.count
            state.armedSecond = nil
            if let next = state.bySecond.keys.min() { arm(next, &state) }
            return due
        }
        for expired in due { expired() }
    }

    /// Sets the timer for the start of `second` (called under the lock, so settings never cross).
    private func arm(_ second: UInt64, _ state: inout State) {
        state.armedSecond = second
        timer.schedule(deadline: DispatchTime(uptimeNanoseconds: second * 1_000_000_000), leeway: .milliseconds(100))
    }

    private static func currentSecond() -> UInt64 { DispatchTime.now().uptimeNanoseconds / 1_000_000_000 }
}
