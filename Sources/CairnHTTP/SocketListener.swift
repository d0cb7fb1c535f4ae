// A listening socket's read source: it accepts while connections wait and, with no descriptor left, stops reading for
// a moment rather than spin. Shared by the client server and the peer transport.
import Dispatch

package final class SocketListener: @unchecked Sendable {
    /// With no descriptor left (EMFILE, ENFILE), the listener stops reading this long (a level-triggered source would
    /// otherwise fire again at once), then tries again; connections wait in the kernel's backlog meanwhile.
    package static let exhaustedPauseNanos: UInt64 = 100_000_000
    private let queue: DispatchQueue
    /// Accepts what is waiting on the listening descriptor; false when descriptors ran out.
    private let acceptPending: @Sendable (Int32) -> Bool
    /// Made in `init`; nil only until then.
    private var sources: SocketSources?
    private var isStopped = false

    /// `acceptPending` runs on `queue`.
    package init(fd: Int32, queue: DispatchQueue, acceptPending: @escaping @Sendable (Int32) -> Bool) {
        self.queue = queue
        self.acceptPending = acceptPending
        sources = SocketSources(fd: fd, queue: queue, onReadable: { [weak self] in self?.onReadable() })
    }

    /// Starts accepting; on the queue.
    package func start() { sources?.setReading(true) }

    /// Stops accepting and closes the socket; on the queue.
    package func stop() {
        isStopped = true
        sources?.cancel()
    }

    private func onReadable() {
        guard let sources, !acceptPending(sources.fd) else { return }
        sources.setReading(false)
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(Self.exhaustedPauseNanos))) { [weak self] in
            guard let self, !isStopped else { return }
            self.sources?.setReading(true)
        }
    }
}
