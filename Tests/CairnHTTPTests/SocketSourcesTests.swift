// Sockets opened and closed by the thousand on several queues at once, with both sources on: closing must never
// race libdispatch's event thread (a crash or a socket whose events never come).
import CairnTestSupport
import Dispatch
import Glibc
import Synchronization
import Testing
@testable import CairnHTTP

@Suite struct SocketSourcesTests {
    /// Each cycle: a socket pair, this side read and write sources on, a byte from the other side, read, cancel;
    /// the next cycle starts once the descriptor is closed. With a `shutdown` before the cancel (as once), one round
    /// in four or five crashed in `_dispatch_unote_unregister_muxed` or stalled; four rounds catch it most times.
    @Test func socketsClosedWhileBothSourcesAreOnNeverCrashOrStall() {
        let queuesCount = 4
        let cyclesPerQueue = 5_000
        for round in 1...4 {
            let finishedQueues = Atomic(0)
            for index in 0..<queuesCount {
                let queue = DispatchQueue(label: "socket-churn-\(index)")
                queue.async { Self.cycle(on: queue, left: cyclesPerQueue) { finishedQueues.add(1, ordering: .relaxed) } }
            }
            let finished = eventually(seconds: 15) { finishedQueues.load(ordering: .relaxed) == queuesCount }
            #expect(finished, "round \(round): \(finishedQueues.load(ordering: .relaxed)) of \(queuesCount) queues finished")
            if !finished { return }
        }
    }

    private static func cycle(on queue: DispatchQueue, left: Int, done: @escaping @Sendable () -> Void) {
        guard left > 0 else { return done() }
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else { return }
        let (local, remote) = (pair[0], pair[1])
        _ = fcntl(local, F_SETFL, fcntl(local, F_GETFL) | O_NONBLOCK)
        nonisolated(unsafe) var sources: SocketSources?
        sources = SocketSources(fd: local, queue: queue, onReadable: {
            var byte: UInt8 = 0
            _ = read(local, &byte, 1)
            sources?.cancel()
        }, onWritable: {
            // Writable at once and again: the write side is re-armed until the read side ends the cycle.
            sources?.setWriting(false)
            sources?.setWriting(true)
        }, onClosed: {
            // The other end closes only now: its close would raise a hang-up of its own.
            close(remote)
            sources = nil
            cycle(on: queue, left: left - 1, done: done)
        })
        sources?.setReading(true)
        sources?.setWriting(true)
        var byte: UInt8 = 1
        _ = write(remote, &byte, 1)
    }
}
