// Group commit: concurrent appends are gathered into one write and one fdatasync, and each caller is
// acknowledged only after the sync that covers its entries. No timer: a batch is whatever queued during the last sync.

import Dispatch
import Synchronization

package final class GroupCommitWriter: Sendable {
    package typealias Completion = @Sendable (Result<Void, StorageError>) -> Void

    private struct Submission {
        var entries: [LogEntryRecord]
        var done: Completion
    }

    private struct Queue {
        var pending: [Submission] = []
        var draining = false
    }

    private struct Guarded {
        var wal: WAL
        /// Set by a failure that leaves the disk state unknown (a failed fsync, a half-applied batch): sticky.
        var failure: StorageError?
    }

    private let queue = Mutex(Queue())
    private let log: Mutex<Guarded>
    private let drainQueue = DispatchQueue(label: "cairn.storage.group-commit")
    /// A batch stops growing at this many entries, bounding the write size and the wait of the first caller.
    package let batchEntriesMax: Int

    package init(wal: sending WAL, batchEntriesMax: Int = 4096) {
        log = Mutex(Guarded(wal: wal, failure: nil))
        self.batchEntriesMax = batchEntriesMax
    }

    /// Queues entries (which must continue the log in submission order); `done` runs after they are durable
    /// or failed. The caller serializes submissions when their order matters (Raft's node queue does).
    package func submit(_ entries: [LogEntryRecord], done: @escaping Completion) {
        let start = queue.withLock { q -> Bool in
            q.pending.append(Submission(entries: entries, done: done))
            if q.draining { return false }
            q.draining = true
            return true
        }
        if start { drainQueue.async { self.drain() } }
    }

    /// Blocking form of `submit`: writes and syncs on the caller's thread when no batch is queued or being written
    /// (else it joins the queue). A caller that batches by itself (the node persists one Raft batch at a time) thus
    /// pays no thread hand-off per batch.
    package func append(_ entries: [LogEntryRecord]) throws {
        let inline = queue.withLock { q in
            guard !q.draining, q.pending.isEmpty else { return false }
            q.draining = true
            return true
        }
        if inline {
            let result = log.withLock { Self.write(entries, to: &$0) }
            let drainNext = queue.withLock { q in
                q.draining = !q.pending.isEmpty
                return q.draining
            }
            if drainNext { drainQueue.async { self.drain() } }
            return try result.get()
        }
        let finished = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<Void, StorageError>?>(nil)
        submit(entries) { result in
            outcome.withLock { $0 = result }
            finished.signal()
        }
        finished.wait()
        try outcome.withLock { $0! }.get()
    }

    private func drain() {
        while true {
            let batch = queue.withLock { q -> [Submission]? in
                if q.pending.isEmpty {
                    q.draining = false
                    return nil
                }
                var count = 0, taken = 0
                while taken < q.pending.count && (taken == 0 || count + q.pending[taken].entries.count <= batchEntriesMax) {
                    count += q.pending[taken].entries.count
                    taken += 1
                }
                let batch = Array(q.pending[0..<taken])
                q.pending.removeFirst(taken)
                return batch
            }
            guard let batch else { return }
            let result = log.withLock { Self.write(batch.flatMap(\.entries), to: &$0) }
            for s in batch { s.done(result) }
        }
    }

    /// Appends and syncs; a failure that leaves the disk state unknown becomes sticky.
    private static func write(_ entries: [LogEntryRecord], to g: inout Guarded) -> Result<Void, StorageError> {
        if let failure = g.failure { return .failure(.failed(underlying: failure.description)) }
        let lastBefore = g.wal.lastIndex
        do {
            try g.wal.append(entries)
        } catch let error as StorageError {
            // Out of space before any record byte was written (making a segment) leaves the log as it
            // was: fail this batch and keep going, so writes resume when space returns.
            if !(error.isNoSpace && g.wal.lastIndex == lastBefore && !g.wal.recordWriteFailed) { g.failure = error }
            return .failure(error)
        } catch {
            fatalError("storage throws only StorageError: \(error)")
        }
        do {
            try g.wal.sync()
        } catch let error as StorageError {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing is known. Stop.
            g.failure = error
            return .failure(error)
        } catch {
            fatalError("storage throws only StorageError: \(error)")
        }
        return .success(())
    }

    /// Runs `body` with the log while no batch is being written: reads, term lookups, truncation, compaction.
    package func withLog<R: Sendable>(_ body: (WAL) throws -> R) throws -> R {
        try log.withLock { g in
            if let failure = g.failure { throw StorageError.failed(underlying: failure.description) }
            return try body(g.wal)
        }
    }

    /// Goes on after a failure once the disk allows: the log is cut back to what is durable and reopened from disk
    /// (`WAL.reopenedAtDurableEnd`), and the failure is cleared. Throws, leaving the writer failed, while the disk
    /// still fails; call again later.
    package func recover() throws {
        try log.withLock { g in
            do {
                g.wal = try g.wal.reopenedAtDurableEnd()
            } catch let error as StorageError {
                g.failure = error
                throw error
            }
            g.failure = nil
        }
    }

    package func close() {
        log.withLock { $0.wal.close() }
    }
}
