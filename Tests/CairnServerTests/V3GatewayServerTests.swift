// The v3 JSON gateway of a running member, over HTTP as clients reach it: key-value calls with etcd's answers and
// errors, the request bound, leases that expire with their keys, watch streams, status and members, and the v3 key
// space kept across restarts through snapshots.
import CairnMVCC
import Foundation
import Testing
@testable import CairnServer

private func b(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

/// POSTs `body` to `path` and returns "status body".
private func post(_ cairn: RunningCairn, _ path: String, _ body: String) throws -> String {
    try curl(["-X", "POST", "-w", " %{http_code}", cairn.baseURL + path, "--data-binary", body])
}

@Suite struct V3GatewayServerTests {
    @Test func keyValueCallsAnswerAsEtcd() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        #expect(try post(cairn, "/v3/kv/put", #"{"key":"\#(b("a"))","value":"\#(b("1"))"}"#).hasSuffix(#""revision":"2","raft_term":"1"}} 200"#))
        #expect(try post(cairn, "/v3beta/kv/put", #"{"key":"\#(b("a/b"))","value":"\#(b("2"))","prev_kv":true}"#).hasSuffix(" 200"))
        let range = try post(cairn, "/v3/kv/range", #"{"key":"\#(b("a"))","range_end":"\#(b("b"))"}"#)
        #expect(range.contains(#""kvs":[{"key":"YQ==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="},{"key":"YS9i""#), "\(range)")
        #expect(range.hasSuffix(#""count":"2"} 200"#))
        let local = try post(cairn, "/v3/kv/range", #"{"key":"\#(b("a"))","serializable":true,"count_only":true}"#)
        #expect(local.hasSuffix(#""count":"1"} 200"#))
        let txn = try post(cairn, "/v3/kv/txn", #"{"compare":[{"key":"\#(b("a"))","target":"VALUE","value":"\#(b("1"))"}],"success":[{"request_delete_range":{"key":"\#(b("a/b"))"}}]}"#)
        #expect(txn.contains(#""succeeded":true,"responses":[{"response_delete_range":{"header":{"revision":"4"},"deleted":"1"}}]} 200"#), "\(txn)")
        #expect(try post(cairn, "/v3/kv/compaction", #"{"revision":4}"#).hasSuffix(" 200"))
        #expect(try post(cairn, "/v3/kv/range", #"{"key":"\#(b("a"))","revision":2}"#)
            == #"{"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11} 400"#)
        #expect(try post(cairn, "/v3/kv/deleterange", "{}")
            == #"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3} 400"#)
        #expect(try post(cairn, "/v3/kv/nothing", "{}") == "Not Found\n 404")
        #expect(try curl(["-w", " %{http_code}", cairn.baseURL + "/v3/kv/range"]) == "Method Not Allowed\n 405")
    }

    @Test func requestsPastTheBoundAreRefused() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0", "--max-request-bytes", "1024"])
        defer { _ = cairn.stop() }
        let value = b(String(repeating: "x", count: 2000))
        #expect(try post(cairn, "/v3/kv/put", #"{"key":"\#(b("a"))","value":"\#(value)"}"#)
            == #"{"error":"etcdserver: request is too large","message":"etcdserver: request is too large","code":3} 400"#)
        let file = NSTemporaryDirectory() + "cairn-huge-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Data(#"{"key":"\#(b("a"))","value":"\#(b(String(repeating: "x", count: 3 << 20)))"}"#.utf8).write(to: URL(fileURLWithPath: file))
        let refused = try post(cairn, "/v3/kv/put", "@" + file)
        #expect(refused.hasPrefix(#"{"error":"grpc: received message larger than max"#) && refused.hasSuffix(#""code":8} 429"#), "\(refused.prefix(200))")
        #expect(try post(cairn, "/v3/kv/range", #"{"key":"\#(b("a"))"}"#).hasSuffix(#""raft_term":"1"}} 200"#), "nothing was written")
    }

    @Test func aLeaseKeepsItsKeysUntilItExpires() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        #expect(try post(cairn, "/v3/lease/grant", #"{"ID":7,"TTL":1}"#).hasSuffix(#""ID":"7","TTL":"2"} 200"#), "etcd's minimum TTL is 2 s here")
        _ = try post(cairn, "/v3/kv/put", #"{"key":"\#(b("l"))","value":"\#(b("v"))","lease":7}"#)
        #expect(try post(cairn, "/v3/lease/keepalive", #"{"ID":7}"#).hasSuffix(#""ID":"7","TTL":"2"}}"# + "\n 200"))
        let alive = try post(cairn, "/v3/kv/lease/timetolive", #"{"ID":7,"keys":true}"#)
        #expect(alive.contains(#""grantedTTL":"2","keys":["bA=="]} 200"#), "\(alive)")
        #expect(try post(cairn, "/v3/lease/leases", "{}").hasSuffix(#""leases":[{"ID":"7"}]} 200"#))
        var gone = false
        for _ in 0..<100 where !gone {
            usleep(100_000)
            gone = try post(cairn, "/v3/kv/range", #"{"key":"\#(b("l"))"}"#).hasSuffix(#""revision":"3","raft_term":"1"}} 200"#)
        }
        #expect(gone, "the key went with its lease, in the revision after the put")
        #expect(try post(cairn, "/v3/lease/timetolive", #"{"ID":7}"#).hasSuffix(#""ID":"7","TTL":"-1"} 200"#))
    }

    @Test func aWatchStreamsHistoryThenLiveChangesAndACompactedStartIsCancelled() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        for value in ["1", "2"] { _ = try post(cairn, "/v3/kv/put", #"{"key":"\#(b("w"))","value":"\#(b(value))"}"#) }
        let stream = try curl(["-N", "--max-time", "1", "-X", "POST", cairn.baseURL + "/v3/watch",
                               "-d", #"{"create_request":{"key":"\#(b("w"))","start_revision":2,"prev_kv":true}}"#]).split(separator: "\n")
            .filter { $0.hasPrefix("{") }
        #expect(stream.count == 2, "\(stream)")
        #expect(stream.first?.hasSuffix(#""revision":"3","raft_term":"1"},"created":true}}"#) == true)
        #expect(stream.last?.contains(#""events":[{"kv":{"key":"dw==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}},{"kv":{"key":"dw==","create_revision":"2","mod_revision":"3","version":"2","value":"Mg=="},"prev_kv":{"#) == true)
        _ = try post(cairn, "/v3/kv/compaction", #"{"revision":3}"#)
        let cancelled = try curl(["-N", "--max-time", "1", "-X", "POST", cairn.baseURL + "/v3/watch",
                                  "-d", #"{"create_request":{"key":"\#(b("w"))","start_revision":1}}"#]).split(separator: "\n")
            .filter { $0.hasPrefix("{") }
        #expect(cancelled.last?.hasSuffix(#""raft_term":"1"},"canceled":true,"compact_revision":"3"}}"#) == true, "\(cancelled)")
        // The clients went away: their watchers went with them.
        var freed = false
        for _ in 0..<50 where !freed {
            freed = try curl([cairn.baseURL + "/metrics"]).contains("\netcd_debugging_mvcc_watcher_total 0.0\n")
            if !freed { usleep(100_000) }
        }
        #expect(freed)
    }

    @Test func aWatcherThatAsksGetsProgressNotifications() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0", "--experimental-watch-progress-notify-interval", "300ms"])
        defer { _ = cairn.stop() }
        _ = try post(cairn, "/v3/kv/put", #"{"key":"\#(b("p"))","value":"\#(b("1"))"}"#)
        let lines = try curl(["-N", "--max-time", "2", "-X", "POST", cairn.baseURL + "/v3/watch",
                              "-d", #"{"create_request":{"key":"\#(b("p"))","progress_notify":true}}"#]).split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(lines.count >= 2, "\(lines)")
        #expect(lines.dropFirst().allSatisfy { $0.hasSuffix(#""revision":"2","raft_term":"1"}}}"#) }, "\(lines)")
        let quiet = try curl(["-N", "--max-time", "1", "-X", "POST", cairn.baseURL + "/v3/watch",
                              "-d", #"{"create_request":{"key":"\#(b("p"))"}}"#]).split(separator: "\n").filter { $0.hasPrefix("{") }
        #expect(quiet.count == 1, "a watcher that did not ask gets none")
    }

    @Test func pastTheQuotaTheMemberRaisesNoSpaceUntilTheAlarmIsCleared() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0", "--quota-backend-bytes", "100000"])
        defer { _ = cairn.stop() }
        let value = b(String(repeating: "x", count: 30_000))
        let answers = try (0..<4).map { try post(cairn, "/v3/kv/put", #"{"key":"\#(b("k\($0)"))","value":"\#(value)"}"#).suffix(3) }
        #expect(answers == ["200", "200", "200", "429"])
        var raised = ""
        for _ in 0..<50 where !raised.contains("NOSPACE") {
            raised = try post(cairn, "/v3/maintenance/alarm", #"{"action":"GET"}"#)
            if !raised.contains("NOSPACE") { usleep(100_000) }
        }
        #expect(raised.hasPrefix(#"{"alarms":[{"memberID":""#) && raised.hasSuffix(#","alarm":"NOSPACE"}]} 200"#), "\(raised)")
        #expect(try curl(["-w", " %{http_code}", cairn.baseURL + "/health"]).hasSuffix(" 503"))
        #expect(try post(cairn, "/v3/kv/put", #"{"key":"\#(b("a"))","value":"\#(b("1"))"}"#)
            == #"{"error":"etcdserver: mvcc: database space exceeded","message":"etcdserver: mvcc: database space exceeded","code":8} 429"#)
        #expect(try post(cairn, "/v3/kv/deleterange", #"{"key":"AA==","range_end":"AA=="}"#).contains(#""deleted":"3"} 200"#))
        #expect(try post(cairn, "/v3/kv/compaction", #"{"revision":5}"#).hasSuffix(" 200"))
        let member = String(raised.split(separator: "\"")[5])
        #expect(try post(cairn, "/v3/maintenance/alarm", #"{"action":"DEACTIVATE","alarm":"NOSPACE","memberID":"\#(member)"}"#).contains("NOSPACE"))
        #expect(try post(cairn, "/v3/kv/put", #"{"key":"\#(b("a"))","value":"\#(b("1"))"}"#).hasSuffix(" 200"))
        #expect(try curl(["-w", " %{http_code}", cairn.baseURL + "/health"]).hasSuffix(" 200"))
    }

    @Test func statusAndMembersDescribeTheMember() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0", "--name", "solo"])
        defer { _ = cairn.stop() }
        // A lone member serves before its first election ends: its status shows term 1 within a bounded wait.
        var status = ""
        for _ in 0..<50 {
            status = try post(cairn, "/v3/maintenance/status", "{}")
            if status.contains(#""raftTerm":"1","raftAppliedIndex":"#) { break }
            usleep(100_000)
        }
        #expect(status.contains(#""version":"3.4.31","#) && status.contains(#""raftTerm":"1","raftAppliedIndex":"#), "\(status)")
        let members = try post(cairn, "/v3/cluster/member/list", "{}")
        #expect(members.contains(#""name":"solo","peerURLs":["http://127.0.0.1:2380"]"#), "\(members)")
    }

    @Test func membersAreAddedThroughTheGatewayWithEtcdsChecks() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0", "--name", "solo"])
        defer { _ = cairn.stop() }
        // Until the member has logged the initial member table (just after it starts serving), changes wait.
        var added = ""
        for _ in 0..<50 {
            added = try post(cairn, "/v3/cluster/member/add", #"{"peerURLs":["http://127.0.0.1:9"]}"#)
            if !added.hasSuffix(" 503") { break }
            usleep(100_000)
        }
        #expect(added.contains(#""member":{"ID":""#) && added.contains(#""peerURLs":["http://127.0.0.1:9"]},"members":[{"#) && added.hasSuffix(" 200"), "\(added)")
        let id = try #require(added.split(separator: "\"").dropFirst(added.split(separator: "\"").firstIndex(of: "member")! + 4).first)
        #expect(try post(cairn, "/v3/cluster/member/add", #"{"peerURLs":["http://127.0.0.1:9"]}"#)
            == #"{"error":"etcdserver: Peer URLs already exists","message":"etcdserver: Peer URLs already exists","code":9} 412"#)
        #expect(try post(cairn, "/v3/cluster/member/promote", #"{"ID":"\#(id)"}"#).contains(#""code":9} 412"#),
                "Cairn promotes members itself: a learner is not in sync yet, a voter is no learner")
        #expect(try post(cairn, "/v3/cluster/member/update", #"{"ID":"5","peerURLs":["http://127.0.0.1:10"]}"#)
            == #"{"error":"etcdserver: member not found","message":"etcdserver: member not found","code":5} 404"#)
        // As etcd: with a member that never started, the started ones are no quorum, and that is checked first.
        #expect(try post(cairn, "/v3/cluster/member/remove", #"{"ID":"5"}"#)
            == #"{"error":"etcdserver: re-configuration failed due to not enough started members","message":"etcdserver: re-configuration failed due to not enough started members","code":2} 500"#)
        #expect(try post(cairn, "/v3/cluster/member/add", #"{"peerURLs":["http://127.0.0.1:9"],"isLearner":true}"#).hasSuffix(#""code":12} 501"#))
    }

    @Test func theLeaderCompactsByItselfWithAutoCompaction() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0", "--auto-compaction-mode", "periodic",
                                      "--auto-compaction-retention", "1s"])
        defer { _ = cairn.stop() }
        for value in ["1", "2", "3"] { _ = try post(cairn, "/v3/kv/put", #"{"key":"\#(b("c"))","value":"\#(b(value))"}"#) }
        var compacted = false
        for _ in 0..<100 where !compacted {
            usleep(100_000)
            compacted = try post(cairn, "/v3/kv/range", #"{"key":"\#(b("c"))","revision":2}"#).contains("required revision has been compacted")
        }
        #expect(compacted, "a second of history is kept, then the leader compacts")
        #expect(try post(cairn, "/v3/kv/range", #"{"key":"\#(b("c"))"}"#).contains(#""value":"\#(b("3"))""#))
    }

    @Test(arguments: [("periodic", "1", AutoCompaction.Mode.periodic(retentionNanos: 3_600_000_000_000)),
                      ("periodic", "1h30m", .periodic(retentionNanos: 5_400_000_000_000)),
                      ("periodic", "500ms", .periodic(retentionNanos: 500_000_000)),
                      ("revision", "1000", .revision(retention: 1000))])
    func autoCompactionFlagsReadAsEtcdReadsThem(mode: String, retention: String, expected: AutoCompaction.Mode) throws {
        #expect(try AutoCompactionFlags.parse(mode: mode, retention: retention) == expected)
    }

    @Test func badAutoCompactionFlagsAreRefused() throws {
        #expect(try AutoCompactionFlags.parse(mode: "periodic", retention: "0") == nil)
        for (mode, retention) in [("periodic", "5x"), ("periodic", "-1"), ("revision", "1h"), ("sometimes", "1"), ("periodic", "1e300")] {
            #expect(throws: ConfigurationError.self) { try AutoCompactionFlags.parse(mode: mode, retention: retention) }
        }
    }

    @Test func theV3KeySpaceSurvivesRestartsThroughSnapshots() throws {
        let directory = temporaryDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let flags = ["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0", "--snapshot-count", "7"]
        var cairn = try RunningCairn(flags)
        for i in 0..<20 { _ = try post(cairn, "/v3/kv/put", #"{"key":"\#(b("k\(i % 5)"))","value":"\#(b("v\(i)"))"}"#) }
        _ = try post(cairn, "/v3/lease/grant", #"{"ID":9,"TTL":600}"#)
        _ = try post(cairn, "/v3/kv/put", #"{"key":"\#(b("held"))","value":"\#(b("x"))","lease":9}"#)
        #expect(cairn.stop() == 0)
        cairn = try RunningCairn(flags)
        defer { _ = cairn.stop() }
        let snapshots = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".snap") }
        #expect(!snapshots.isEmpty)
        #expect(try post(cairn, "/v3/kv/range", #"{"key":"\#(b("k4"))","revision":12}"#).contains(#""mod_revision":"11","version":"2","value":"\#(b("v9"))"}"#))
        #expect(try post(cairn, "/v3/lease/timetolive", #"{"ID":9,"keys":true}"#).contains(#""grantedTTL":"600","keys":["aGVsZA=="]}"#))
        #expect(try post(cairn, "/v3/kv/put", #"{"key":"\#(b("after"))","value":"\#(b("r"))"}"#).contains(#""revision":"23""#))
    }
}
