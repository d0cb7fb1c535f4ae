// Client sessions hold a bounded amount: answers in bytes per client and in total, and a bounded number of
// clients. What is forgotten is chosen by cluster time then client name, so every replica forgets the same; a
// retry of a forgotten answer is refused, never applied again.
import CairnTestSupport
import Testing
@testable import CairnStore

@Suite struct SessionBoundsTests {
    /// A write's answer whose node and previous node each hold `valueBytes`.
    func bigAnswer(_ index: UInt64, valueBytes: Int) -> Result<StoreEvent, StoreError> {
        let value = String(repeating: "v", count: valueBytes)
        return .success(StoreEvent(action: .set, node: NodeView(key: "/big", value: value, isDirectory: false, createdIndex: index, modifiedIndex: index),
                                   prevNode: NodeView(key: "/big", value: value, isDirectory: false, createdIndex: 1, modifiedIndex: index - 1),
                                   etcdIndex: index))
    }

    @Test func aHundredTwoMegabyteAnswersDoNotPileUp() {
        var sessions = ClientSessions()
        let before = mallocBytesInUse()
        for request in UInt64(1)...100 {
            sessions.record(client: "writer", request: request, result: bigAnswer(request + 1, valueBytes: 2 << 20), at: Int64(request))
        }
        let kept = mallocBytesInUse() - before
        // Kept whole, these answers took 400 MB; a client's answers are now bounded (8 MiB).
        #expect(kept < 32 << 20, "\(kept) bytes kept for one client")
        // (Compared outside #expect, which would print 4 MB answers on failure.)
        let lastKept = sessions.lookup(client: "writer", request: 100) == .answered(bigAnswer(101, valueBytes: 2 << 20))
        let firstForgotten = sessions.lookup(client: "writer", request: 1) == .forgotten
        #expect(lastKept && firstForgotten, "the newest answer is kept; a retry of a dropped one is refused")
    }

    func limits(perClient: Int = 1 << 30, total: Int = 1 << 30, clients: Int = 1000) -> ClientSessions.Limits {
        var limits = ClientSessions.Limits()
        limits.answerBytesPerClientMax = perClient
        limits.answerBytesMax = total
        limits.clientsMax = clients
        return limits
    }

    func kilobyteAnswer(_ index: UInt64) -> Result<StoreEvent, StoreError> {
        .success(StoreEvent(action: .set, node: NodeView(key: "/k", value: String(repeating: "x", count: 1000), isDirectory: false,
                                                         createdIndex: index, modifiedIndex: index), prevNode: nil, etcdIndex: index))
    }

    @Test func aClientsAnswersAreBoundedInBytesOldestFirst() {
        var sessions = ClientSessions(limits: limits(perClient: 4000))
        for request in UInt64(1)...10 { sessions.record(client: "c", request: request, result: kilobyteAnswer(request), at: 0) }
        #expect(sessions.answerBytes <= 4000)
        #expect((1...7).allSatisfy { sessions.lookup(client: "c", request: $0) == .forgotten })
        #expect((8...10).allSatisfy { sessions.lookup(client: "c", request: $0) == .answered(kilobyteAnswer($0)) })
        #expect(sessions.lookup(client: "c", request: 11) == .new)
    }

    @Test func allAnswersAreBoundedInBytesLeastRecentlySeenClientFirst() {
        var sessions = ClientSessions(limits: limits(total: 5500))
        for (time, client) in ["e", "d", "c", "b", "a", "f", "g"].enumerated() {
            sessions.record(client: client, request: 1, result: kilobyteAnswer(1), at: Int64(time / 2))
        }
        // Seen at 0: e and d; at 1: c and b; at 2: a and f; at 3: g. Forgotten first: d, then e (same time, by name).
        #expect(sessions.answerBytes <= 5500 && sessions.count == 7, "the clients stay, to refuse retries")
        #expect(sessions.lookup(client: "d", request: 1) == .forgotten && sessions.lookup(client: "e", request: 1) == .forgotten)
        #expect(["a", "b", "c", "f", "g"].allSatisfy { sessions.lookup(client: $0, request: 1) == .answered(kilobyteAnswer(1)) })
    }

    @Test func clientsAreBoundedInNumberLeastRecentlySeenFirst() {
        var sessions = ClientSessions(limits: limits(clients: 3))
        sessions.record(client: "c", request: 1, result: kilobyteAnswer(1), at: 1)
        sessions.record(client: "a", request: 1, result: kilobyteAnswer(1), at: 1)
        sessions.record(client: "b", request: 1, result: kilobyteAnswer(1), at: 2)
        sessions.record(client: "c", request: 2, result: kilobyteAnswer(2), at: 3)
        sessions.record(client: "d", request: 1, result: kilobyteAnswer(1), at: 3)
        #expect(sessions.count == 3)
        #expect(sessions.lookup(client: "a", request: 1) == .new, "the least recently seen client is forgotten whole")
        #expect(["b", "c", "d"].allSatisfy { sessions.lookup(client: $0, request: 1) == .answered(kilobyteAnswer(1)) })
    }

    @Test func aRestoredTableForgetsWhatTheOriginalForgets() throws {
        let small = limits(perClient: 3000, total: 8000, clients: 5)
        var original = ClientSessions(limits: small)
        for step in 0..<40 {
            original.record(client: "client-\(step % 7)", request: UInt64(step / 7 + 1), result: kilobyteAnswer(UInt64(step)), at: Int64(step / 3))
        }
        var sink = PieceSink()
        try original.write(to: &sink)
        var source = BytesSource(bytes: sink.bytes)
        var restored = try ClientSessions.read(from: &source, limits: small)
        #expect(restored == original)
        for step in 40..<80 {
            let client = "client-\(step % 9)", request = UInt64(step / 9 + 10)
            original.record(client: client, request: request, result: kilobyteAnswer(UInt64(step)), at: Int64(step / 3))
            restored.record(client: client, request: request, result: kilobyteAnswer(UInt64(step)), at: Int64(step / 3))
        }
        #expect(restored == original && original.count <= 5 && original.answerBytes <= 8000)
        var generous = ClientSessions()
        for step in 0..<40 { generous.record(client: "client-\(step % 7)", request: 1, result: kilobyteAnswer(UInt64(step)), at: Int64(step)) }
        var written = PieceSink()
        try generous.write(to: &written)
        var again = BytesSource(bytes: written.bytes)
        let cut = try ClientSessions.read(from: &again, limits: small)
        #expect(cut.count == 5 && cut.answerBytes <= 8000, "a table from larger limits is held to the reader's")
    }
}
