// Recovery of a member from its data directory (`MemberStorage`, shared by the server and the simulator), on the
// simulated file system: the states a crash can leave between a batch's writes.
import CairnBase
import CairnMemberStorage
import CairnRaft
import CairnReplica
import CairnStorage
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
}
