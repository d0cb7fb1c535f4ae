// A serial Dispatch queue that owns a share of the server's sockets: their sources fire on it, other threads reach it
// with `execute`, and one timer per queue sweeps its sockets' deadlines, so activity never costs a timer of its own.
import Dispatch
import Glibc

/// Something on a queue with a deadline. Called on the queue only.
protocol IOQueueDeadline: AnyObject {
    /// When `deadlinePassed` is due (`.max` for never); the queue looks at it at least once per sweep.
    var deadline: UInt64 { get }
    func deadlinePassed()
}

/// The monotonic clock all deadlines are measured in.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// A 64 KiB read buffer shared by the sockets of one serial queue (they read one at a time), so a read allocates
/// nothing and an idle socket holds no buffer of its own.
package final class ReadScratch: @unchecked Sendable {
    package let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    package init() {}
    deinit { bytes.deallocate() }
}

final class IOQueue: @unchecked Sendable {
    /// Deadlines fire up to this late: one sweep over the queue's sockets per interval at most.
    private static let sweepIntervalNanos: UInt64 = 200_000_000
    private static let identity = DispatchSpecificKey<ObjectIdentifier>()

    let queue: DispatchQueue
    private let sweepTimer: any DispatchSourceTimer

    // Touched on the queue only.
    private var sockets: [UInt64: any IOQueueDeadline] = [:]
    private var nextToken: UInt64 = 1
    private var earliestDeadline = UInt64.max
    /// When the sweep timer fires next (`.max`: not armed).
    private var sweepDueNanos = UInt64.max
    private var lastSweepNanos: UInt64 = 0
    /// One read buffer shared by the queue's connections (they run one at a time), so an idle one holds none.
    let readScratch = ReadScratch()

    init(label: String) {
        queue = DispatchQueue(label: label)
        sweepTimer = DispatchSource.makeTimerSource(queue: queue)
        queue.setSpecific(key: Self.identity, value: ObjectIdentifier(self))
        sweepTimer.setEventHandler { [weak self] in self?.sweep() }
        sweepTimer.schedule(deadline: .distantFuture)
        sweepTimer.activate()
    }

    deinit {
        sweepTimer.cancel()
    }

    /// Whether the caller is running on this queue.
    var isCurrent: Bool { DispatchQueue.getSpecific(key: Self.identity) == ObjectIdentifier(self) }

    /// Runs `task` on the queue, after whatever it is doing now. Dispatch drains every block queued meanwhile in one
    /// wake-up, so answers arriving together from another thread cost one hand-off.
    func execute(_ task: @escaping @Sendable () -> Void) {
        queue.async(execute: task)
    }

    /// Runs `work` on the queue and returns once it has run (at once when called on the queue).
    func sync(_ work: () -> Void) {
        if isCurrent { work() } else { queue.sync(execute: work) }
    }

    // MARK: - Deadlines (queue only)

    /// Adds `socket` to the sweep; returns the token that names it to `remove`.
    func add(_ socket: any IOQueueDeadline) -> UInt64 {
        let token = nextToken
        nextToken += 1
        sockets[token] = socket
        return token
    }

    func remove(_ token: UInt64) {
        sockets[token] = nil
    }

    /// A socket's deadline moved earlier: the timer fires for it (at the next sweep).
    func deadlineChanged(_ deadline: UInt64) {
        guard deadline < earliestDeadline else { return }
        earliestDeadline = deadline
        armSweep()
    }

    /// Sets the timer for the earliest deadline, no sooner than one interval after the last sweep. Deadlines mostly
    /// move later, so this runs rarely: the timer then fires early and the sweep re-arms.
    private func armSweep() {
        guard earliestDeadline != .max else { return }
        let due = max(earliestDeadline, lastSweepNanos + Self.sweepIntervalNanos)
        guard due < sweepDueNanos else { return }
        sweepDueNanos = due
        let now = monotonicNanoseconds()
        let delay = due > now ? due - now : 0
        sweepTimer.schedule(deadline: .now() + .nanoseconds(Int(min(delay, UInt64(Int32.max) * 1_000_000))),
                            leeway: .milliseconds(50))
    }

    private func sweep() {
        sweepDueNanos = .max
        let now = monotonicNanoseconds()
        lastSweepNanos = now
        var earliest = UInt64.max
        var due: [any IOQueueDeadline] = []
        for socket in sockets.values {
            let deadline = socket.deadline
            if deadline <= now { due.append(socket) } else { earliest = min(earliest, deadline) }
        }
        earliestDeadline = earliest
        if earliest == .max { sweepTimer.schedule(deadline: .distantFuture) } else { armSweep() }
        // Each re-arms its next deadline (or closes) through `deadlineChanged`.
        for socket in due { socket.deadlinePassed() }
    }
}
