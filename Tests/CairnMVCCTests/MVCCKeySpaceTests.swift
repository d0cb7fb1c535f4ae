// The v3 key space against etcd 3.4's semantics: revisions and versions, ranges at any kept revision, transactions,
// compaction, leases and the watch feed.
import Testing
@testable import CairnMVCC

func b(_ s: String) -> [UInt8] { Array(s.utf8) }

extension MVCCKeySpace {
    @discardableResult
    mutating func put(_ key: String, _ value: String, lease: Int64 = 0) throws -> PutResponse {
        var request = PutRequest(key: b(key), value: b(value))
        request.lease = lease
        return try put(request)
    }

    func keys(_ range: KeyRange, at revision: Int64 = 0) throws -> [String] {
        var request = RangeRequest(range: range)
        request.revision = revision
        return try self.range(request).kvs.map { String(decoding: $0.key, as: UTF8.self) }
    }
}

@Suite struct MVCCKeySpaceTests {
    @Test func revisionsAndVersionsFollowEtcd() throws {
        var space = MVCCKeySpace()
        #expect(space.revision == 1)
        let first = try space.put("a", "1")
        #expect(first.revision == 2)
        try space.put("a", "2")
        let kv = try #require(space.get(b("a")))
        #expect(kv.createRevision == 2 && kv.modRevision == 3 && kv.version == 2 && kv.value == b("2"))
        let deleted = try space.deleteRange(DeleteRangeRequest(range: .single(b("a"))))
        #expect(deleted.deleted == 1 && deleted.revision == 4 && space.revision == 4)
        // Deleting nothing changes nothing, not even the revision.
        let nothing = try space.deleteRange(DeleteRangeRequest(range: .single(b("a"))))
        #expect(nothing.deleted == 0 && nothing.revision == 4)
        // A key put again starts a new generation.
        try space.put("a", "3")
        let again = try #require(space.get(b("a")))
        #expect(again.createRevision == 5 && again.version == 1)
        #expect(space.get(b("a"), at: 3)?.value == b("2"))
        #expect(space.get(b("a"), at: 4) == nil)
    }

    @Test func rangesCoverSingleKeysPrefixesAndEverythingFromAKey() throws {
        var space = MVCCKeySpace()
        for key in ["a", "ab", "abc", "b", "\u{7f}", "a\u{ff}"] { try space.put(key, "v") }
        #expect(try space.keys(.single(b("ab"))) == ["ab"])
        #expect(try space.keys(.prefix(b("a"))) == ["a", "ab", "abc", "a\u{ff}"])
        #expect(try space.keys(KeyRange(key: b("ab"), rangeEnd: [0])) == ["ab", "abc", "a\u{ff}", "b", "\u{7f}"])
        #expect(try space.keys(KeyRange(key: b("ab"), rangeEnd: b("b"))) == ["ab", "abc", "a\u{ff}"])
        #expect(try space.keys(KeyRange(key: b("b"), rangeEnd: b("a"))) == [])
        #expect(try space.keys(KeyRange(key: [0], rangeEnd: [0])).count == 6)
    }

    @Test func limitCountSortAndFilters() throws {
        var space = MVCCKeySpace()
        for (i, key) in ["k1", "k2", "k3", "k4"].enumerated() { try space.put(key, "\(4 - i)") }
        try space.put("k2", "9")
        var request = RangeRequest(range: .prefix(b("k")))
        request.limit = 2
        var response = try space.range(request)
        #expect(response.kvs.map(\.key) == [b("k1"), b("k2")] && response.more && response.count == 4)
        request.limit = 0
        request.sortTarget = .value
        request.sortOrder = .descend
        #expect(try space.range(request).kvs.map(\.value) == [b("9"), b("4"), b("2"), b("1")])
        request.sortOrder = .none  // a target without an order sorts ascending
        #expect(try space.range(request).kvs.map(\.value) == [b("1"), b("2"), b("4"), b("9")])
        request = RangeRequest(range: .prefix(b("k")))
        request.minModRevision = 4
        response = try space.range(request)
        #expect(response.kvs.map(\.key) == [b("k2"), b("k3"), b("k4")] && response.count == 4)
        request = RangeRequest(range: .prefix(b("k")))
        request.countOnly = true
        response = try space.range(request)
        #expect(response.kvs.isEmpty && response.count == 4)
        request.countOnly = false
        request.keysOnly = true
        #expect(try space.range(request).kvs.allSatisfy { $0.value.isEmpty })
    }

    @Test func readsAtOlderRevisionsAndTheirErrors() throws {
        var space = MVCCKeySpace()
        try space.put("a", "1")  // 2
        try space.put("b", "1")  // 3
        _ = try space.deleteRange(DeleteRangeRequest(range: .single(b("a"))))  // 4
        try space.put("a", "2")  // 5
        #expect(try space.keys(KeyRange(key: [0], rangeEnd: [0]), at: 2) == ["a"])
        #expect(try space.keys(KeyRange(key: [0], rangeEnd: [0]), at: 3) == ["a", "b"])
        #expect(try space.keys(KeyRange(key: [0], rangeEnd: [0]), at: 4) == ["b"])
        var request = RangeRequest(range: .single(b("a")))
        request.revision = 6
        #expect(throws: MVCCError.futureRevision) { try space.range(request) }
        try space.compact(4)
        request.revision = 3
        #expect(throws: MVCCError.compacted) { try space.range(request) }
        #expect(try space.keys(KeyRange(key: [0], rangeEnd: [0]), at: 4) == ["b"])
        #expect(try space.keys(KeyRange(key: [0], rangeEnd: [0])) == ["a", "b"])
        #expect(throws: MVCCError.compacted) { try space.compact(4) }
        #expect(throws: MVCCError.futureRevision) { try space.compact(6) }
    }

    @Test func compactionForgetsWhatNoReadCanSee() throws {
        var space = MVCCKeySpace()
        for i in 0..<100 { try space.put("hot", "\(i)") }
        try space.put("gone", "x")
        _ = try space.deleteRange(DeleteRangeRequest(range: .single(b("gone"))))
        let bytesBefore = space.historyBytes
        try space.compact(space.revision)
        // "hot"'s newest version, and "gone"'s tombstone, which is at the target itself.
        #expect(space.history.count == 2 && space.latest.count == 2)
        #expect(space.historyBytes < bytesBefore / 50)
        #expect(space.get(b("hot"))?.value == b("99"))
        try space.put("other", "y")
        try space.compact(space.revision)
        #expect(space.latest.count == 2 && space.get(b("gone")) == nil)
    }

    @Test func transactionsCompareThenRunOneBranchInOneRevision() throws {
        var space = MVCCKeySpace()
        try space.put("x", "1")  // 2
        let txn = TxnRequest(
            compare: [Compare(.single(b("x")), .value(b("1")), .equal), Compare(.single(b("missing")), .version(0), .equal)],
            success: [.put(PutRequest(key: b("x"), value: b("2"))), .put(PutRequest(key: b("y"), value: b("3"))),
                      .range(RangeRequest(range: KeyRange(key: [0], rangeEnd: [0])))],
            failure: [.put(PutRequest(key: b("z"), value: b("no")))])
        let response = try space.txn(txn)
        #expect(response.succeeded && response.revision == 3 && space.revision == 3)
        guard case .range(let inside) = response.responses[2] else { Issue.record("no range answer"); return }
        // A read inside sees the transaction's own writes, both at the one new revision.
        #expect(inside.kvs.map(\.modRevision) == [3, 3] && inside.revision == 3)
        #expect(space.get(b("z")) == nil && space.get(b("y"))?.createRevision == 3)
        // A value compare on a missing key fails; the failure branch runs.
        let failed = try space.txn(TxnRequest(compare: [Compare(.single(b("nope")), .value([]), .equal)],
                                              failure: [.range(RangeRequest(range: .single(b("x"))))]))
        #expect(!failed.succeeded && failed.revision == 3)
        // A compare over a range holds only if every key satisfies it.
        let ranged = try space.txn(TxnRequest(compare: [Compare(KeyRange(key: b("x"), rangeEnd: b("z")), .modRevision(3), .equal)]))
        #expect(ranged.succeeded)
    }

    @Test func nestedTransactionsSeeThePreTransactionStateInTheirCompares() throws {
        var space = MVCCKeySpace()
        try space.put("k", "old")
        let nested = TxnRequest(compare: [Compare(.single(b("k")), .value(b("old")), .equal)],
                                success: [.put(PutRequest(key: b("n"), value: b("saw old")))])
        let outer = TxnRequest(success: [.put(PutRequest(key: b("k"), value: b("new"))), .txn(nested)])
        _ = try space.txn(outer)
        #expect(space.get(b("n"))?.value == b("saw old"))
    }

    @Test func etcdRefusesDuplicateKeysAndTooManyOps() {
        var space = MVCCKeySpace()
        let twice = TxnRequest(success: [.put(PutRequest(key: b("a"), value: [])), .put(PutRequest(key: b("a"), value: []))])
        #expect(throws: MVCCError.duplicateKey) { try space.txn(twice) }
        let putAndDelete = TxnRequest(success: [.put(PutRequest(key: b("ab"), value: [])),
                                                .deleteRange(DeleteRangeRequest(range: .prefix(b("a"))))])
        #expect(throws: MVCCError.duplicateKey) { try space.txn(putAndDelete) }
        let bothBranches = TxnRequest(success: [.txn(TxnRequest(success: [.put(PutRequest(key: b("a"), value: []))],
                                                                failure: [.put(PutRequest(key: b("a"), value: []))]))])
        #expect((try? space.txn(bothBranches)) != nil)
        let many = TxnRequest(success: Array(repeating: .range(RangeRequest(range: .single(b("a")))), count: 129))
        #expect(throws: MVCCError.tooManyOps) { try space.txn(many) }
        // Nested transactions share the budget, which bounds their depth.
        var deep = TxnRequest(success: [.put(PutRequest(key: b("d"), value: []))])
        for _ in 0..<200 { deep = TxnRequest(success: [.txn(deep)]) }
        #expect(throws: MVCCError.tooManyOps) { try space.txn(deep) }
        #expect(throws: MVCCError.emptyKey) { try space.put(PutRequest(key: [], value: b("v"))) }
        #expect(space.revision == 2)
    }

    @Test func leasesHoldKeysAndRevokingDeletesThemInOneRevision() throws {
        var space = MVCCKeySpace()
        #expect(throws: MVCCError.leaseNotFound) { try space.put("a", "1", lease: 7) }
        let lease = try space.grantLease(id: 7, ttl: 1, minimumTTL: 3)
        #expect(lease.ttl == 3)
        #expect(throws: MVCCError.leaseExists) { try space.grantLease(id: 7, ttl: 5, minimumTTL: 3) }
        #expect(throws: MVCCError.leaseTTLTooLarge) { try space.grantLease(id: 8, ttl: 9_000_000_001, minimumTTL: 3) }
        try space.put("a", "1", lease: 7)
        try space.put("b", "1", lease: 7)
        try space.put("c", "1", lease: 7)
        try space.put("c", "2")  // put without the lease detaches the key
        var keep = PutRequest(key: b("a"), value: b("kept lease"))
        keep.ignoreLease = true
        _ = try space.put(keep)
        #expect(space.leases[7]?.keys == [ByteKey("a"), ByteKey("b")])
        let revision = try space.revokeLease(id: 7)
        #expect(revision == space.revision && space.get(b("a")) == nil && space.get(b("b")) == nil)
        #expect(space.get(b("c"))?.value == b("2") && space.leases[7] == nil)
        var events: [Event] = []
        try space.events(from: revision) { _, event in
            events.append(event)
            return true
        }
        #expect(events.map(\.type) == [.delete, .delete] && events.allSatisfy { $0.kv.modRevision == revision })
    }

    @Test func theWatchFeedReplaysFromAnyKeptRevisionWithPreviousValues() throws {
        var space = MVCCKeySpace()
        try space.put("a", "1")  // 2
        try space.put("a", "2")  // 3
        _ = try space.deleteRange(DeleteRangeRequest(range: .single(b("a"))))  // 4
        var seen: [(Revision, Event)] = []
        try space.events(from: 3, prevKV: true) { at, event in
            seen.append((at, event))
            return true
        }
        #expect(seen.map(\.0.main) == [3, 4])
        #expect(seen[0].1.prevKV?.value == b("1") && seen[1].1.type == .delete && seen[1].1.prevKV?.value == b("2"))
        try space.compact(3)
        #expect(throws: MVCCError.compacted) { try space.events(from: 2) { _, _ in true } }
    }

    @Test func leaseDeadlinesSaturateInsteadOfTrapping() {
        var clock = LeaseClock()
        let huge = Lease(id: 1, ttl: LeaseTable.ttlSecondsMax)
        clock.renew(huge, now: 1_800_000_000_000_000_000)
        #expect(clock.remainingSeconds(1, now: 0) > 0)
        #expect(clock.expired(now: .max - 1).isEmpty)
        clock.renew(Lease(id: 2, ttl: 5), now: 0)
        #expect(clock.remainingSeconds(2, now: 1) == 4 && clock.expired(now: 5_000_000_000) == [2])
    }
}
