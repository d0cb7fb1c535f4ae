// The restart's replay reads ahead: while the node applies one chunk of the committed log, a thread of its own reads,
// checks and decodes the next (`MemberStorage.nextReplayEntries`), at most `chunksAheadMax` chunks ahead.
import CairnMemberStorage
import CairnRaft
import CairnReplica
import Dispatch
import Synchronization

final class ReplayReader: Sendable {
    /// Chunks read and not yet taken: bounds the memory the read-ahead holds (each at most `replayReadBytesMax`).
    static let chunksAheadMax = 2

    /// The log, read here while the node's init applies: nothing writes it before the replay ends (no batch is taken
    /// before `start`), and its reads take the writer's lock.
    private struct Log: @unchecked Sendable { let log: RaftLog }

    private let ready = Mutex<[Result<[Entry], any Error>]>([])
    private let filled = DispatchSemaphore(value: 0)
    private let room = DispatchSemaphore(value: chunksAheadMax)

    /// Starts reading the committed entries after `replica`'s applied index, up to its commit index.
    init(for replica: Replica<RaftLog>) {
        let log = Log(log: replica.raft.storage), commit = replica.raft.commit
        let first = LogIndex(replica.appliedIndex + 1)
        DispatchQueue(label: "cairn.replay-read").async { [self] in
            var next = first
            while true {
                room.wait()
                let chunk = Result { try MemberStorage.replayEntries(in: log.log, from: next, through: commit) }
                ready.withLock { $0.append(chunk) }
                filled.signal()
                guard case .success(let entries) = chunk, let last = entries.last else { return }
                next = last.index + 1
            }
        }
    }

    /// The next chunk, in log order; empty once the replay is done. Throws what the read found (damage names its file
    /// and offset). Call until either: the reading thread has then finished too.
    func next() throws -> [Entry] {
        filled.wait()
        let chunk = ready.withLock { $0.removeFirst() }
        room.signal()
        return try chunk.get()
    }
}
