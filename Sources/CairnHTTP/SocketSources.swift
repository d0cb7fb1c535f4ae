// A non-blocking socket's Dispatch read and write sources on one serial queue: turned on and off by need (the write
// source only while output waits), and one close path that closes the descriptor only after both sources let go of it.
import Dispatch
import Glibc

package final class SocketSources: @unchecked Sendable {
    package let fd: Int32
    private let queue: DispatchQueue
    private let onReadable: @Sendable () -> Void
    private let onWritable: @Sendable () -> Void
    private let onClosed: @Sendable () -> Void

    // Touched on `queue` only.
    private var readSource: (any DispatchSourceRead)?
    /// Made on first need: most connections write every answer at once and never wait for writability.
    private var writeSource: (any DispatchSourceWrite)?
    package private(set) var isReading = false
    package private(set) var isWriting = false
    private var isCancelled = false
    /// Sources made and not yet through their cancel handler: the descriptor closes when this reaches zero, so a new
    /// socket cannot reuse its number while Dispatch still watches it.
    private var sourcesOpen = 0

    /// The handlers run on `queue`; they should hold their owner weakly (the sources live until `cancel`).
    /// `onClosed` runs once the descriptor is closed.
    package init(fd: Int32, queue: DispatchQueue, onReadable: @escaping @Sendable () -> Void,
                 onWritable: @escaping @Sendable () -> Void = {}, onClosed: @escaping @Sendable () -> Void = {}) {
        self.fd = fd
        self.queue = queue
        self.onReadable = onReadable
        self.onWritable = onWritable
        self.onClosed = onClosed
    }

    /// Turns reading on or off (on `queue`). Off, a level-triggered source cannot repeat an end of input or a full
    /// listener forever.
    package func setReading(_ on: Bool) {
        guard on != isReading, !isCancelled else { return }
        isReading = on
        if on {
            if let readSource { readSource.resume() } else {
                let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
                prepare(source, handler: onReadable)
                readSource = source
                source.activate()
            }
        } else {
            readSource?.suspend()
        }
    }

    /// Turns waiting for writability on or off (on `queue`).
    package func setWriting(_ on: Bool) {
        guard on != isWriting, !isCancelled else { return }
        isWriting = on
        if on {
            if let writeSource { writeSource.resume() } else {
                let source = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
                prepare(source, handler: onWritable)
                writeSource = source
                source.activate()
            }
        } else {
            writeSource?.suspend()
        }
    }

    private func prepare(_ source: any DispatchSourceProtocol, handler: @escaping @Sendable () -> Void) {
        sourcesOpen += 1
        source.setEventHandler(handler: handler)
        source.setCancelHandler { [self] in
            sourcesOpen -= 1
            if sourcesOpen == 0 { closeDescriptor() }
        }
    }

    /// Stops both sources and closes the descriptor once Dispatch has let go of it (at once if no source was made);
    /// the close sends the FIN. No `shutdown` before it: that raises EPOLLHUP at once, and libdispatch's epoll
    /// backend then handles the hang-up on its event thread while this queue removes the same registration. That
    /// race crashed members in `_dispatch_unote_unregister_muxed` and lost other sockets' events
    /// (swift-corelibs-libdispatch issues 833, 949); `SocketSourcesTests` churns sockets to catch it.
    package func cancel() {
        guard !isCancelled else { return }
        isCancelled = true
        // A suspended source must be resumed to be cancelled (and Dispatch traps on releasing a suspended one).
        if let readSource {
            if !isReading { readSource.resume() }
            readSource.cancel()
        }
        if let writeSource {
            if !isWriting { writeSource.resume() }
            writeSource.cancel()
        }
        isReading = false
        isWriting = false
        if sourcesOpen == 0 { closeDescriptor() }
    }

    private func closeDescriptor() {
        Glibc.close(fd)
        onClosed()
    }
}
