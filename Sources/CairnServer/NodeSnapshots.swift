// The runner's snapshot files: writing the Replica's state (off the node queue), streaming a file to a follower
// paced by its link, receiving and verifying the leader's stream, and loading files back as a Replica's state.
import CairnBase
import CairnMVCC
import CairnMemberStorage
import CairnPeer
import CairnRaft
import CairnReplica
import CairnStorage
import CairnStore

/// Snapshot files in flight, owned by the node queue.
struct SnapshotFiles {
    /// Followers a snapshot is being streamed to (one stream each).
    var streams: Set<MemberID> = []
    var receiver = SnapshotReceiver(fileBytesMax: 64 << 30)
    var incoming: ReceivedSnapshotFile?
    /// A complete incoming file is being verified; chunks meanwhile are dropped (the leader streams again).
    var verifying = false
    /// Verified snapshot files the core accepted, waiting for the batch that installs them.
    var received: [LogIndex: String] = [:]
}

extension KeySpaceNode {
    static let snapshotChunkBytes = 1 << 20
    static let snapshotQueuedBytesMax = 4 << 20

    /// Streams the state into a snapshot file off the node queue, then lets storage drop the snapshots and log
    /// segments no longer needed, and the core's log start after the oldest kept. Backups waiting get the new file.
    func writeSnapshot(_ metadata: SnapshotMetadata, _ state: ReplicaState) {
        let storage = self.storage, initial = replica.initialMembership
        let backups = backupsWaiting
        backupsWaiting = []
        snapshotQueue.async { [self] in
            do {
                let started = clock.now()
                try MemberStorage.writeSnapshot(metadata, state, to: storage)
                metrics.snapshotSave.observe(seconds: Double(clock.now() - started) / 1e9)
                // Opened before `retain` runs, so no later snapshot can remove the file under a backup's stream.
                for backup in backups { backup(Result { try BackupFile(fs: storage.fs, path: storage.snapshotPath(lastIndex: metadata.index.value)) }) }
                let oldest = try MemberStorage.retain(storage, initial: initial)
                logger.info("snapshot saved", metadata: ["index": "\(metadata.index)"])
                queue.async { [self] in run(replica.snapshotWritten(index: metadata.index.value, oldestKept: oldest)) }
            } catch {
                logger.error("snapshot failed", metadata: ["index": "\(metadata.index)", "error": "\(error)"])
                for backup in backups { backup(.failure(error)) }
                queue.async { [self] in replica.snapshotFailed() }
            }
        }
    }

    /// Leader side: streams the snapshot file the core names to a follower, a chunk at a time, paced by the link
    /// (at most `snapshotQueuedBytesMax` waiting in memory), then tells the Replica how it went.
    func streamSnapshot(_ request: SnapshotRequest) {
        guard !snapshotFiles.streams.contains(request.to) else { return }
        snapshotFiles.streams.insert(request.to)
        let path = storage.snapshotPath(lastIndex: request.metadata.index.value)
        let fs = storage.fs, from = MemberID(options.id), chunkBytes = Self.snapshotChunkBytes
        let sendPaced = self.sendPaced, sendQueue = snapshotSendQueue, started = clock.now()
        let finished: @Sendable (Bool) -> Void = { [self] success in
            if success { metrics.snapshotSend.observe(seconds: Double(clock.now() - started) / 1e9) }
            queue.async { [self] in
                snapshotFiles.streams.remove(request.to)
                replica.snapshotSent(to: request.to, success: success)
                if !success { logger.notice("snapshot stream failed", metadata: ["to": "\(hex(request.to.value))"]) }
                scheduleDrive()
            }
        }
        sendQueue.async {
            let file: OpenFile
            let size: UInt64
            do {
                file = try fs.open(path, create: false)
                size = try fs.size(file)
            } catch {
                return finished(false)
            }
            @Sendable func send(from offset: UInt64) {
                let count = Int(min(UInt64(chunkBytes), size - offset))
                let done = offset + UInt64(count) == size
                let chunk: Message
                do { chunk = request.chunk(from: from, offset: offset, data: try fs.read(file, at: offset, count: count), isLast: done) } catch {
                    fs.close(file)
                    return finished(false)
                }
                sendPaced(request.to.value, PeerFrame(type: NodeFrame.raft, payload: chunk.encoded())) { queued in
                    guard queued, !done else {
                        fs.close(file)
                        return finished(queued)
                    }
                    sendQueue.async { send(from: offset + UInt64(count)) }
                }
            }
            send(from: 0)
        }
    }

    /// Follower side: chunks of the leader's stream go into a temporary file in order; a complete file is verified
    /// (off this queue) and offered to the core, which hands it back in a later batch for installing.
    func receiveSnapshotChunk(_ chunk: Message) {
        guard !snapshotFiles.verifying else { return }
        do {
            switch snapshotFiles.receiver.receive(chunk) {
            case .drop: return
            case .start:
                snapshotFiles.incoming?.abort()
                let file = try storage.receiveSnapshot()
                snapshotFiles.incoming = file
                try file.append(chunk.data)
            case .append:
                guard let incoming = snapshotFiles.incoming else { return snapshotFiles.receiver.reset() }
                try incoming.append(chunk.data)
            }
        } catch {
            logger.error("snapshot receive failed", metadata: ["error": "\(error)"])
            snapshotFiles.incoming?.abort()
            snapshotFiles.incoming = nil
            return snapshotFiles.receiver.reset()
        }
        guard snapshotFiles.receiver.complete, let file = snapshotFiles.incoming else { return }
        snapshotFiles.incoming = nil
        snapshotFiles.receiver.reset()
        snapshotFiles.verifying = true
        let initial = replica.initialMembership, fs = storage.fs
        snapshotQueue.async { [self] in
            let outcome = Result { () throws -> (String, SnapshotMetadata) in
                let (path, header) = try file.finish()
                return (path, try MemberStorage.metadata(of: header, initial: initial))
            }
            queue.async { [self] in
                snapshotFiles.verifying = false
                switch outcome {
                case .success(let (path, metadata)) where metadata.index == chunk.index && metadata.term == chunk.logTerm:
                    if replica.snapshotReceived(metadata) {
                        snapshotFiles.received[metadata.index] = path
                    } else {
                        try? fs.remove(path)
                    }
                case .success(let (path, metadata)):
                    logger.error("received snapshot does not match its stream", metadata: ["index": "\(metadata.index)"])
                    try? fs.remove(path)
                case .failure(let error):
                    logger.error("received snapshot refused", metadata: ["error": "\(error)"])
                }
                scheduleDrive()
            }
        }
    }

    /// The state of a received snapshot the core accepted, with the file adopted as this member's newest snapshot.
    func loadReceivedSnapshot(_ metadata: SnapshotMetadata) throws -> ReplicaState {
        guard let path = snapshotFiles.received.removeValue(forKey: metadata.index) else {
            throw StorageError.corrupt(path: storage.directory, offset: 0, index: metadata.index.value, reason: "installing a snapshot never received")
        }
        return try MemberStorage.adoptReceived(path: path, storage: storage)
    }
}
