// The v3 command encoding: every command round-trips, and damaged bytes (every prefix, random mutations, nesting
// past the bound, counts past the bytes) are refused with an error, never a trap or a huge allocation.
import CairnBase
import Testing
@testable import CairnMVCC

@Suite struct MVCCCommandTests {
    static var everyKind: [MVCCCommand] {
        var put = PutRequest(key: b("k"), value: b("v"))
        put.lease = 42
        put.prevKV = true
        put.ignoreLease = false
        var range = RangeRequest(range: .prefix(b("p")))
        range.limit = 3
        range.sortOrder = .descend
        range.sortTarget = .mod
        range.keysOnly = true
        range.maxCreateRevision = 9
        let txn = TxnRequest(
            compare: [Compare(.single(b("a")), .value(b("x")), .notEqual), Compare(KeyRange(key: b("a"), rangeEnd: [0]), .lease(7), .less)],
            success: [.put(put), .range(range), .txn(TxnRequest(success: [.deleteRange(DeleteRangeRequest(range: .prefix(b("q"))))]))],
            failure: [.deleteRange(DeleteRangeRequest(range: .single(b("z"))))])
        return [.put(put), .deleteRange(DeleteRangeRequest(range: KeyRange(key: b("a"), rangeEnd: b("b")))), .txn(txn),
                .compact(revision: 77), .grantLease(id: 5, ttl: 60), .revokeLease(id: 5)]
    }

    @Test func everyCommandRoundTrips() throws {
        for command in Self.everyKind {
            #expect(try MVCCCommand(decoding: command.encoded()) == command)
        }
    }

    @Test func everyPrefixAndEveryTrailingByteIsRefused() {
        for command in Self.everyKind {
            let bytes = command.encoded()
            for end in 0..<bytes.count { #expect(throws: MVCCCommandError.self) { try MVCCCommand(decoding: Array(bytes[..<end])) } }
            #expect(throws: MVCCCommandError.self) { try MVCCCommand(decoding: bytes + [0]) }
        }
    }

    @Test func aNewerFormatIsNamedAsSuch() {
        var bytes = MVCCCommand.compact(revision: 1).encoded()
        bytes[0] = 2
        #expect(throws: MVCCCommandError.version(2)) { try MVCCCommand(decoding: bytes) }
    }

    @Test func randomMutationsNeverTrap() {
        var random = SeededRandom(seed: 12)
        var decoded = 0
        for round in 0..<20_000 {
            var bytes = Self.everyKind[round % Self.everyKind.count].encoded()
            for _ in 0...Int(random.next() % 4) {
                let at = Int(random.next() % UInt64(bytes.count))
                switch random.next() % 3 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: random.next())
                case 1: bytes.remove(at: at)
                default: bytes.insert(UInt8(truncatingIfNeeded: random.next()), at: at)
                }
                if bytes.isEmpty { bytes = [1] }
            }
            if (try? MVCCCommand(decoding: bytes)) != nil { decoded += 1 }
        }
        #expect(decoded < 20_000)
    }

    @Test func nestingPastTheBoundAndHugeCountsAreRefused() {
        var deep = TxnRequest()
        for _ in 0..<200 { deep = TxnRequest(success: [.txn(deep)]) }
        #expect(throws: MVCCCommandError.self) { try MVCCCommand(decoding: MVCCCommand.txn(deep).encoded()) }
        // A transaction claiming four billion compares in a few bytes.
        #expect(throws: MVCCCommandError.self) { try MVCCCommand(decoding: [1, 3, 0xff, 0xff, 0xff, 0xff, 0, 0]) }
    }
}
