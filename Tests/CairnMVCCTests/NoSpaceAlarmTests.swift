// etcd's NOSPACE alarm in the v3 key space: while one is raised, puts, lease grants and writing transactions are
// refused on apply, and reads, deletes, read-only transactions and compaction go through; the alarms survive a
// snapshot, and a snapshot of the first format (no alarms) still reads.
import CairnBase
import Testing
@testable import CairnMVCC

@Suite struct NoSpaceAlarmTests {
    static func put(_ key: String) -> MVCCCommand { .put(PutRequest(key: Array(key.utf8), value: [1])) }

    @Test func aRaisedAlarmRefusesWritesThatAddDataUntilCleared() throws {
        var space = MVCCKeySpace()
        _ = space.apply(Self.put("a"), minimumLeaseTTL: 2)
        #expect(space.apply(.alarm(activate: true, member: 7), minimumLeaseTTL: 2) == .success(.alarms([7])))
        #expect(space.apply(.alarm(activate: true, member: 7), minimumLeaseTTL: 2) == .success(.alarms([])), "already raised")
        #expect(space.apply(Self.put("b"), minimumLeaseTTL: 2) == .failure(.noSpace))
        #expect(space.apply(.grantLease(id: 1, ttl: 10), minimumLeaseTTL: 2) == .failure(.noSpace))
        let writing = TxnRequest(success: [.txn(TxnRequest(failure: [.deleteRange(DeleteRangeRequest(range: .single([1])))]))])
        #expect(space.apply(.txn(writing), minimumLeaseTTL: 2) == .failure(.noSpace))
        let reading = TxnRequest(success: [.range(RangeRequest(range: .single(Array("a".utf8))))])
        guard case .success(.txn(let answer)) = space.apply(.txn(reading), minimumLeaseTTL: 2) else {
            Issue.record("a read-only transaction is refused")
            return
        }
        #expect(answer.succeeded)
        guard case .success(.deleteRange(let deleted)) = space.apply(.deleteRange(DeleteRangeRequest(range: .single(Array("a".utf8)))), minimumLeaseTTL: 2) else {
            Issue.record("a delete is refused")
            return
        }
        #expect(deleted.deleted == 1)
        #expect(space.apply(.compact(revision: 3), minimumLeaseTTL: 2) == .success(.compacted(revision: 3)))
        #expect(space.apply(.alarm(activate: false, member: 7), minimumLeaseTTL: 2) == .success(.alarms([7])))
        guard case .success(.put) = space.apply(Self.put("b"), minimumLeaseTTL: 2) else {
            Issue.record("a put is refused once the alarm is cleared")
            return
        }
    }

    @Test func alarmsSurviveASnapshotAndTheFirstFormatStillReads() throws {
        var space = MVCCKeySpace()
        _ = space.apply(Self.put("a"), minimumLeaseTTL: 2)
        _ = space.apply(.alarm(activate: true, member: 9), minimumLeaseTTL: 2)
        var stream: [UInt8] = []
        try space.writeSnapshot { stream += $0 }
        var reader = ByteReader(stream)
        #expect(try MVCCKeySpace.readSnapshot { Array(try reader.take($0)) }.noSpaceAlarms == [9])
        // Format 1 is format 2 without the alarm list at the end.
        var first = Array(stream.dropLast(16))
        first[0] = 1
        var old = ByteReader(first)
        let loaded = try MVCCKeySpace.readSnapshot { Array(try old.take($0)) }
        #expect(loaded.noSpaceAlarms.isEmpty && loaded.get(Array("a".utf8))?.value == [1])
        #expect(try MVCCCommand(decoding: MVCCCommand.alarm(activate: true, member: 9).encoded()) == .alarm(activate: true, member: 9))
        #expect(throws: MVCCCommandError.self) { try MVCCCommand(decoding: [1, 8, 2] + [UInt8](repeating: 0, count: 8)) }
    }
}
