// v3 watchers: catch-up from history in one answer per batch, then one answer per revision; filters, prevKV,
// ranges and single keys; compacted starts cancelled; progress notifications.
import Testing
@testable import CairnMVCC

@Suite struct V3WatchesTests {
    @Test func aWatcherCatchesUpThenFollowsRevisionByRevision() throws {
        var space = MVCCKeySpace()
        try space.put("w1", "1")  // 2
        _ = try space.deleteRange(DeleteRangeRequest(range: .single(b("w1"))))  // 3
        var watches = V3Watches()
        var request = V3WatchRequest(range: KeyRange(key: b("w"), rangeEnd: b("x")))
        request.startRevision = 2
        request.prevKV = true
        #expect(try watches.create(1, request, in: space) == nil)
        #expect(watches.unsynced == [1])
        let history = watches.catchUp(in: space)
        #expect(history.count == 1 && history[0].revision == 3)
        #expect(history[0].events.map(\.type) == [.put, .delete] && history[0].events[1].prevKV?.value == b("1"))
        #expect(watches.unsynced.isEmpty)
        let before = space.revision
        _ = try space.txn(TxnRequest(success: [.put(PutRequest(key: b("w2"), value: b("2"))), .put(PutRequest(key: b("w3"), value: b("3"))),
                                               .put(PutRequest(key: b("z"), value: b("not watched")))]))
        try space.put("w2", "again")
        let live = watches.applied(since: before, in: space)
        #expect(live.map(\.revision) == [4, 5] && live.map(\.events.count) == [2, 1])
        #expect(live[1].events[0].prevKV?.value == b("2"))
    }

    @Test func singleKeysFiltersAndCancel() throws {
        var space = MVCCKeySpace()
        var watches = V3Watches()
        var puts = V3WatchRequest(range: .single(b("k")))
        puts.noDelete = true
        var deletes = V3WatchRequest(range: .single(b("k")))
        deletes.noPut = true
        _ = try watches.create(1, puts, in: space)
        _ = try watches.create(2, deletes, in: space)
        _ = try watches.create(3, V3WatchRequest(range: .single(b("other"))), in: space)
        #expect(throws: V3Watches.CreateError.duplicateID) { try watches.create(3, V3WatchRequest(range: .single(b("x"))), in: space) }
        var before = space.revision
        try space.put("k", "1")
        _ = try space.deleteRange(DeleteRangeRequest(range: .single(b("k"))))
        let deliveries = watches.applied(since: before, in: space)
        #expect(deliveries.map(\.watchID) == [1, 2] && deliveries.map(\.revision) == [2, 3])
        #expect(deliveries.allSatisfy { $0.events.allSatisfy { $0.prevKV == nil } })
        watches.cancel(1)
        before = space.revision
        try space.put("k", "2")
        #expect(watches.applied(since: before, in: space).isEmpty && watches.count == 2)
    }

    @Test func aCompactedStartIsCancelledWithTheCompactRevision() throws {
        var space = MVCCKeySpace()
        for i in 0..<5 { try space.put("a", "\(i)") }
        try space.compact(4)
        var watches = V3Watches()
        var request = V3WatchRequest(range: .single(b("a")))
        request.startRevision = 3
        let cancel = try watches.create(1, request, in: space)
        #expect(cancel?.canceled == true && cancel?.compactRevision == 4 && watches.count == 0)
        request.startRevision = 4
        #expect(try watches.create(2, request, in: space) == nil)
        #expect(watches.catchUp(in: space).first?.events.map(\.kv.modRevision) == [4, 5, 6])
    }

    @Test func catchUpGoesInBoundedBatches() throws {
        var space = MVCCKeySpace()
        for i in 0..<2_500 { try space.put("hot", "\(i)") }
        var watches = V3Watches()
        var request = V3WatchRequest(range: .single(b("hot")))
        request.startRevision = 1
        _ = try watches.create(7, request, in: space)
        var batches: [Int] = []
        for _ in 0..<10 where !watches.unsynced.isEmpty { batches.append(watches.catchUp(in: space).first?.events.count ?? 0) }
        #expect(batches == [999, 1_000, 501])
    }

    @Test func progressNotificationsGoToSyncedWatchersThatAsked() throws {
        let space = MVCCKeySpace()
        var watches = V3Watches()
        var request = V3WatchRequest(range: .prefix(b("p")))
        request.progressNotify = true
        _ = try watches.create(1, request, in: space)
        _ = try watches.create(2, V3WatchRequest(range: .prefix(b("p"))), in: space)
        #expect(watches.progress(in: space) == [V3WatchDelivery(watchID: 1, revision: 1)])
    }
}
