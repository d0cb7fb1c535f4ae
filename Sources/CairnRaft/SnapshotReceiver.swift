// The follower side of a chunked snapshot transfer, as pure bookkeeping: which chunks extend the temporary file
// and which are dropped. The caller owns the file and its checksum; the core only ever sees a finished snapshot.

/// The follower caller's bookkeeping for one incoming snapshot stream: it decides, chunk by chunk, whether to
/// start a new temporary file, append to the current one or drop the chunk, so lost, duplicated or reordered
/// chunks never make a file with a hole or a mix of two snapshots. The caller still checks the finished file's
/// trailer checksum and header before `restoreSnapshot`.
package struct SnapshotReceiver: Sendable {
    package enum Action: Equatable, Sendable {
        /// Discard any partial file and start a new one with this chunk.
        case start
        /// Append this chunk to the current file.
        case append
        /// Drop it: a duplicate, a chunk after a gap, or one of another stream.
        case drop
    }

    /// The stream being received: leader, its term and the snapshot's index and term.
    private var stream: (from: MemberID, term: Term, index: LogIndex, snapshotTerm: Term)?
    package private(set) var receivedBytes: UInt64 = 0
    /// The last chunk arrived and every byte before it: the file is whole (its checksum is still to check).
    package private(set) var complete = false
    /// Refuses a stream larger than this, so a broken sender cannot fill the disk.
    package let fileBytesMax: UInt64

    package init(fileBytesMax: UInt64) { self.fileBytesMax = fileBytesMax }

    /// Classifies `chunk`; after `.start` or `.append`, `complete` says whether the file is whole. Any first chunk
    /// starts over — a leader's new stream, or a late duplicate that only costs progress — since continuing a
    /// partial file across streams would need both to cut their chunks at the same offsets.
    package mutating func receive(_ chunk: Message) -> Action {
        let id = (chunk.from, chunk.term, chunk.index, chunk.logTerm)
        let size = UInt64(chunk.data.count)
        if chunk.snapshotOffset == 0 {
            guard size <= fileBytesMax else { stream = nil; return .drop }
            stream = id
            receivedBytes = size
            complete = chunk.snapshotDone
            return .start
        }
        guard let s = stream, s == id, !complete, chunk.snapshotOffset == receivedBytes,
              receivedBytes + size <= fileBytesMax else {
            // After a gap the rest of this stream is useless: it waits for the leader's next one.
            return .drop
        }
        receivedBytes += size
        complete = chunk.snapshotDone
        return .append
    }

    /// Forgets the stream (after restoring or rejecting the finished file).
    package mutating func reset() {
        stream = nil
        receivedBytes = 0
        complete = false
    }
}
