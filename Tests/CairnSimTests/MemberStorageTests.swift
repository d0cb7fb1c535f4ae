// Recovery of a member from its data directory (`MemberStorage`, shared by the server and the simulator), on the
// simulated file system: the states a crash can leave between a batch's writes, and the replay of the committed log.
import CairnBase
import CairnMemberStorage
import CairnRaft
import CairnReplica
import CairnStorage
import CairnStore
import Testing

@Suite struct MemberStorageTests {
    /// Found by the simulator on real storage (seed 4354): a follower persisted a new leader's entries, then crashed
    /// before its hard state recorded the leader's term. It came back with a log ending in a term above its own,
    /// which Raft's invariants forbid (it could have led a lower term after entries of a higher one).
    @Test func entriesDurableBeforeTheirTermRecoverTheTerm() throws {
        let fs = SimulatedFileSystem()
        var options = ReplicaOptions(id: 1, voters: [1, 2, 3])
        options.name = "m1"
        let storage = try Storage(fs: fs, directory: "/data", logger: { _ in })
        try MemberStorage.persist([], hardState: HardState(term: Term(1), vote: MemberID(2), commit: .zero), to: storage)
        let entries = [Entry(term: Term(3), index: LogIndex(1), clusterTimeNanos: 0, kind: .normal, data: [1])]
        // The batch's entries are durable; the crash comes before its hard state (term 3) is saved.
        try RaftLog.write(entries, to: storage.writer)
        storage.close()
        var random = SeededRandom(seed: 1)
        fs.crash(random: &random)

        let reopened = try Storage(fs: fs, directory: "/data", logger: { _ in })
        let recovery = try MemberStorage.recover(storage: reopened, options: options, incarnation: 1, randomSeed: 1) { error in
            fatalError("log read failed: \(error)")
        }
        #expect(recovery.hardState.term == Term(3))
        #expect(recovery.hardState.vote == nil)
        #expect(recovery.log.lastIndex == LogIndex(1))
        reopened.close()
        // The corrected term was saved: a second recovery finds it in the hard state file.
        let again = try Storage(fs: fs, directory: "/data", logger: { _ in })
        defer { again.close() }
        #expect(again.recoveredHardState.term == 3 && again.recoveredHardState.vote == 0)
    }

    /// A log of `count` v2 writes of /k<i % 3> (index i holds value "v<i>"), durable, committed through `commit`.
    static func storage(writes count: UInt64, commit: UInt64, fs: SimulatedFileSystem) throws {
        let storage = try Storage(fs: fs, directory: "/data", logger: { _ in })
        let entries = (1...count).map { i in
            var command = StoreCommand(method: .put, path: StoreKey("/k\(i % 3)"))
            command.value = "v\(i)"
            let proposal = Proposal(origin: Requester(member: 1, incarnation: 1), sequence: i, body: .command(command.encoded()))
            return Entry(term: Term(1), index: LogIndex(i), clusterTimeNanos: i, kind: .normal, data: proposal.encoded())
        }
        try MemberStorage.persist(entries, hardState: HardState(term: Term(1), vote: MemberID(1), commit: LogIndex(commit)), to: storage)
        storage.close()
    }

    static func recovered(_ fs: SimulatedFileSystem) throws -> (Storage, Replica<RaftLog>) {
        let storage = try Storage(fs: fs, directory: "/data", logger: { _ in })
        let recovery = try MemberStorage.recover(storage: storage, options: ReplicaOptions(id: 1, voters: [1]), incarnation: 2, randomSeed: 1) { error in
            fatalError("log read failed: \(error)")
        }
        return (storage, Replica(options: ReplicaOptions(id: 1, voters: [1]), storeInitialIndex: 3, recovery: recovery))
    }

    /// A restart applies its committed log itself, in bounded sequential reads, before the core runs: the state is
    /// there at once, and the core hands none of those entries out again (it used to re-read and apply the whole log
    /// as its first batch). Entries past the commit index are left to the core.
    @Test func restartReplaysTheCommittedLogOnceInBoundedReads() throws {
        let fs = SimulatedFileSystem()
        try Self.storage(writes: 50, commit: 47, fs: fs)
        var (storage, replica) = try Self.recovered(fs)
        defer { storage.close() }
        var reads = 0, applied: [LogIndex] = []
        while case let entries = try MemberStorage.nextReplayEntries(for: replica, bytesMax: 400), !entries.isEmpty {
            reads += 1
            for case .applied(let batch) in replica.replay(entries, now: 1) { applied += batch.entries.map(\.index) }
        }
        #expect(reads > 3)
        #expect(applied == (1...47).map(LogIndex.init))
        #expect(replica.appliedIndex == 47 && replica.raft.applied == LogIndex(47))
        #expect(try replica.keySpace.lookup("/k1").get().value == "v46" && replica.keySpace.lookup("/k2").get().value == "v47")
        #expect(!replica.raft.hasReady)
        // The rest is the core's once it commits it: a lone voter elects itself and applies 48...50.
        replica.start(now: 2)
        var actions = replica.drive(now: 3)
        for _ in 0..<8 where actions.contains(where: { if case .persist = $0 { true } else { false } }) {
            for case .persist(let entries, let hardState, _) in actions { try MemberStorage.persist(entries, hardState: hardState, to: storage) }
            actions = replica.persisted(now: 4)
        }
        #expect(try replica.appliedIndex == 51 && replica.keySpace.lookup("/k2").get().value == "v50")
    }

    /// Damage the replay's read finds (after recovery checked the log) stops the member, naming the file and offset.
    @Test func damageFoundByTheReplayReadStops() throws {
        let fs = SimulatedFileSystem()
        try Self.storage(writes: 20, commit: 20, fs: fs)
        let (storage, replica) = try Self.recovered(fs)
        defer { storage.close() }
        let segment = try #require(try fs.list("/data").first { $0.hasPrefix("wal-") })
        let file = try fs.open("/data/" + segment, create: false)
        try fs.write(file, at: 200, [0xFF])
        fs.close(file)
        do {
            _ = try MemberStorage.nextReplayEntries(for: replica, bytesMax: 1 << 20)
            Issue.record("the damaged record was read")
        } catch StorageError.corrupt(let path, let offset, _, let reason) {
            #expect(path == "/data/" + segment && offset <= 200 && !reason.isEmpty)
        }
    }
}
