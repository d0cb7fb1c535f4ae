// One thread that waits in epoll and runs its sockets' code itself: no hand-off between readiness and the handler.
// Other threads reach it with `execute`; deadlines are checked coarsely, so activity never costs a timer syscall.
import Glibc
import Synchronization
private import CEpoll

/// A descriptor a loop watches. Called on the loop's thread only.
protocol EventLoopSocket: AnyObject {
    /// The descriptor is ready: `events` holds epoll's EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP bits.
    func socketReady(_ events: UInt32)
    /// When `deadlinePassed` is due (`.max` for never); the loop looks at it at least once per sweep.
    var deadline: UInt64 { get }
    func deadlinePassed()
}

/// Readiness a socket asks its loop for.
struct SocketInterest: Equatable {
    var readable: Bool
    var writable: Bool

    static let none = SocketInterest(readable: false, writable: false)

    var epollEvents: UInt32 { (readable ? CAIRN_EPOLL_IN : 0) | (writable ? CAIRN_EPOLL_OUT : 0) }
}

/// The monotonic clock all deadlines are measured in.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

final class EventLoop: @unchecked Sendable {
    static let readableEvents = CAIRN_EPOLL_IN
    static let writableEvents = CAIRN_EPOLL_OUT
    static let failureEvents = CAIRN_EPOLL_ERR | CAIRN_EPOLL_HUP

    /// Deadlines fire up to this late: one sweep over the loop's sockets per interval at most.
    private static let sweepIntervalNanos: UInt64 = 200_000_000
    private static let eventsMax: Int32 = 256
    /// The eventfd's token; socket tokens count up from 1.
    private static let wakeToken: UInt64 = 0

    private let epollFD: Int32
    private let wakeFD: Int32
    private var thread = pthread_t()
    private let name: String

    private struct Inbox {
        var tasks: [@Sendable () -> Void] = []
        /// True while the loop is in (or about to enter) a blocking epoll_wait: only then does a task need a wake-up.
        var isSleeping = false
        var wakeSent = false
    }
    private let inbox = Mutex(Inbox())

    // Touched on the loop's thread only.
    private var sockets: [UInt64: any EventLoopSocket] = [:]
    private var nextToken: UInt64 = 1
    /// Tasks the loop gave itself (`execute` on the loop's thread): run at the end of the current turn, no lock needed.
    private var ownTasks: [@Sendable () -> Void] = []
    private var earliestDeadline = UInt64.max
    private var lastSweepNanos: UInt64 = 0
    private var isStopped = false
    private let readyTokens = UnsafeMutablePointer<UInt64>.allocate(capacity: Int(eventsMax))
    private let readyEvents = UnsafeMutablePointer<UInt32>.allocate(capacity: Int(eventsMax))
    /// One read buffer shared by the loop's connections (they run one at a time), so an idle one holds none.
    let readScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)

    init(name: String) {
        self.name = name
        epollFD = cairn_epoll_create()
        wakeFD = cairn_eventfd()
        precondition(epollFD >= 0 && wakeFD >= 0, "epoll: \(String(cString: strerror(errno)))")
        _ = cairn_epoll_ctl(epollFD, CAIRN_EPOLL_CTL_ADD, wakeFD, CAIRN_EPOLL_IN, Self.wakeToken)
        // The thread keeps the loop alive until `stop`.
        let retained = Unmanaged.passRetained(self).toOpaque()
        let status = pthread_create(&thread, nil, { context in
            let loop = Unmanaged<EventLoop>.fromOpaque(context!).takeRetainedValue()
            loop.run()
            return nil
        }, retained)
        precondition(status == 0, "pthread_create: \(String(cString: strerror(status)))")
        pthread_detach(thread)
    }

    deinit {
        close(epollFD)
        close(wakeFD)
        readyTokens.deallocate()
        readyEvents.deallocate()
        readScratch.deallocate()
    }

    /// Whether the caller is running on this loop's thread.
    var isCurrent: Bool { pthread_equal(pthread_self(), thread) != 0 }

    /// Runs `task` on the loop's thread: after the current turn when called from it, else as soon as the loop wakes.
    func execute(_ task: @escaping @Sendable () -> Void) {
        if isCurrent {
            ownTasks.append(task)
            return
        }
        let mustWake = inbox.withLock { inbox in
            inbox.tasks.append(task)
            guard inbox.isSleeping, !inbox.wakeSent else { return false }
            inbox.wakeSent = true
            return true
        }
        if mustWake {
            var one: UInt64 = 1
            _ = write(wakeFD, &one, 8)
        }
    }

    /// Ends the thread once it has run the tasks already given; sockets still registered are left as they are.
    func stop() {
        execute { [self] in isStopped = true }
    }

    // MARK: - Sockets (loop's thread only)

    /// Watches `fd` for `interest`; returns the token that names it to `setInterest` and `unregister`.
    func register(_ fd: Int32, interest: SocketInterest, socket: any EventLoopSocket) -> UInt64 {
        let token = nextToken
        nextToken += 1
        sockets[token] = socket
        _ = cairn_epoll_ctl(epollFD, CAIRN_EPOLL_CTL_ADD, fd, interest.epollEvents, token)
        return token
    }

    func setInterest(_ token: UInt64, fd: Int32, _ interest: SocketInterest) {
        _ = cairn_epoll_ctl(epollFD, CAIRN_EPOLL_CTL_MOD, fd, interest.epollEvents, token)
    }

    /// Stops watching `fd`; call before closing it. Events already collected for the token are dropped.
    func unregister(_ token: UInt64, fd: Int32) {
        _ = cairn_epoll_ctl(epollFD, CAIRN_EPOLL_CTL_DEL, fd, 0, token)
        sockets[token] = nil
    }

    /// A socket's deadline moved earlier: the loop wakes for it (at the next sweep).
    func deadlineChanged(_ deadline: UInt64) {
        earliestDeadline = min(earliestDeadline, deadline)
    }

    // MARK: - The loop

    private func run() {
        cairn_name_thread(name)
        while true {
            let timeout = waitTimeoutMillis()
            let sleeping = inbox.withLock { inbox in
                inbox.isSleeping = timeout != 0 && inbox.tasks.isEmpty
                return inbox.isSleeping
            }
            let count = cairn_epoll_wait(epollFD, readyTokens, readyEvents, Self.eventsMax, sleeping ? timeout : 0)
            let tasks = inbox.withLock { inbox in
                inbox.isSleeping = false
                inbox.wakeSent = false
                defer { inbox.tasks.removeAll(keepingCapacity: true) }
                return inbox.tasks
            }
            for index in 0..<Int(max(count, 0)) {
                let token = readyTokens[index]
                if token == Self.wakeToken {
                    var counter: UInt64 = 0
                    _ = read(wakeFD, &counter, 8)
                } else if let socket = sockets[token] {
                    socket.socketReady(readyEvents[index])
                }
            }
            for task in tasks { task() }
            // Tasks given during this turn (flushes after a handler answered) run now; theirs wait for the next turn.
            let own = ownTasks
            ownTasks.removeAll(keepingCapacity: true)
            for task in own { task() }
            sweepDeadlines()
            if isStopped { return }
        }
    }

    /// Zero when work is waiting, the time to the next due sweep, or forever when no socket has a deadline.
    private func waitTimeoutMillis() -> Int32 {
        if !ownTasks.isEmpty { return 0 }
        guard earliestDeadline != .max else { return -1 }
        let due = max(earliestDeadline, lastSweepNanos + Self.sweepIntervalNanos)
        let now = monotonicNanoseconds()
        guard due > now else { return 0 }
        return Int32(min((due - now + 999_999) / 1_000_000, UInt64(Int32.max)))
    }

    private func sweepDeadlines() {
        guard earliestDeadline != .max else { return }
        let now = monotonicNanoseconds()
        guard now >= earliestDeadline, now >= lastSweepNanos + Self.sweepIntervalNanos else { return }
        lastSweepNanos = now
        var earliest = UInt64.max
        var due: [any EventLoopSocket] = []
        for socket in sockets.values {
            let deadline = socket.deadline
            if deadline <= now { due.append(socket) } else { earliest = min(earliest, deadline) }
        }
        earliestDeadline = earliest
        // Each re-arms its next deadline (or closes) through `deadlineChanged`.
        for socket in due { socket.deadlinePassed() }
    }
}
