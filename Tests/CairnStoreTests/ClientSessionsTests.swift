// Exactly-once bookkeeping: a recorded answer comes back for its request, old answers are forgotten safely,
// idle sessions expire by cluster time, and the table survives a snapshot round trip byte for byte.
import CairnBase
import Testing
@testable import CairnStore

@Suite struct ClientSessionsTests {
    let minute: Int64 = 60_000_000_000

    func event(_ index: UInt64) -> StoreEvent {
        var e = StoreEvent(action: .set, node: NodeView(key: "/k", value: "v\(index)", isDirectory: false, expiration: 5, ttl: 3,
                                                        createdIndex: index, modifiedIndex: index),
                           prevNode: NodeView(key: "/k", value: nil, isDirectory: true, createdIndex: 1, modifiedIndex: 2), etcdIndex: index)
        e.isRefresh = index % 2 == 0
        return e
    }

    @Test func aRecordedAnswerIsGivenAgain() {
        var sessions = ClientSessions()
        #expect(sessions.lookup(client: "a", request: 1) == .new)
        sessions.record(client: "a", request: 1, result: .success(event(7)), at: 0)
        sessions.record(client: "a", request: 2, result: .failure(StoreError(.testFailed, "[x != y]", index: 8)), at: 0)
        #expect(sessions.lookup(client: "a", request: 1) == .answered(.success(event(7))))
        #expect(sessions.lookup(client: "a", request: 2) == .answered(.failure(StoreError(.testFailed, "[x != y]", index: 8))))
        #expect(sessions.lookup(client: "a", request: 3) == .new)
        #expect(sessions.lookup(client: "b", request: 1) == .new)
    }

    @Test func answersBeyondTheBoundAreForgottenNotReapplied() {
        var sessions = ClientSessions()
        let total = UInt64(ClientSessions.answersPerClientMax + 10)
        for request in 1...total { sessions.record(client: "a", request: request, result: .success(event(request)), at: 0) }
        #expect(sessions.lookup(client: "a", request: 1) == .forgotten)
        #expect(sessions.lookup(client: "a", request: 10) == .forgotten)
        #expect(sessions.lookup(client: "a", request: 11) == .answered(.success(event(11))))
        #expect(sessions.lookup(client: "a", request: total + 1) == .new)
    }

    @Test func idleSessionsExpireByClusterTime() {
        var sessions = ClientSessions()
        sessions.record(client: "old", request: 1, result: .success(event(1)), at: 0)
        sessions.record(client: "busy", request: 1, result: .success(event(2)), at: 0)
        sessions.record(client: "busy", request: 2, result: .success(event(3)), at: 30 * minute)
        sessions.expire(at: ClientSessions.idleNanosMax - 1)
        #expect(sessions.count == 2)
        sessions.expire(at: ClientSessions.idleNanosMax)
        #expect(sessions.count == 1)
        #expect(sessions.lookup(client: "old", request: 1) == .new)
        #expect(sessions.lookup(client: "busy", request: 2) == .answered(.success(event(3))))
    }

    @Test func theTableSurvivesASnapshotAndDamageIsAnError() throws {
        var sessions = ClientSessions()
        for client in 0..<50 {
            for request in 1...UInt64(client % 5 + 1) {
                sessions.record(client: "client-\(client)", request: request, result: .success(event(request)), at: Int64(client))
            }
        }
        var sink = PieceSink()
        try sessions.write(to: &sink)
        var source = BytesSource(bytes: sink.bytes)
        #expect(try ClientSessions.read(from: &source) == sessions)
        #expect(source.offset == sink.bytes.count)
        for cut in stride(from: 0, to: sink.bytes.count, by: 97) {
            var short = BytesSource(bytes: Array(sink.bytes[0..<cut]))
            #expect(throws: (any Error).self) { try ClientSessions.read(from: &short) }
        }
    }
}
