// The v3 JSON gateway against answers recorded from etcd 3.4.23 (`curl -X POST /v3/...` on a fresh member): the
// same requests, replayed in order through the decoder, the key space and the encoder, give etcd's bytes.
import CairnBase
import CairnMVCC
import Testing
@testable import CairnAPI

@Suite struct V3GatewayTests {
    /// The recorded member's IDs and term, so headers compare byte for byte.
    static func header(_ revision: Int64) -> V3Header {
        V3Header(clusterID: 324_952_591_200_643_719, memberID: 3_319_814_642_761_637_952, revision: revision, raftTerm: 2)
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// Decodes `body` as the endpoint does, applies it, and renders the answer (or etcd's error body).
    static func answer(_ path: String, _ body: String, _ space: inout MVCCKeySpace) -> String {
        do throws(V3Error) {
            let fields = try V3Fields(json: Array(body.utf8))
            switch path {
            case "/v3/kv/range":
                let request = try fields.rangeRequest()
                if request.range.start.isEmpty { throw V3Error(MVCCError.emptyKey) }
                do throws(MVCCError) {
                    let response = try space.range(request)
                    return text(V3JSON.range(header(response.revision), response))
                } catch { throw V3Error(error) }
            case "/v3/kv/put":
                let request = try fields.putRequest()
                do throws(MVCCError) {
                    let response = try space.put(request)
                    return text(V3JSON.put(header(response.revision), response))
                } catch { throw V3Error(error) }
            case "/v3/kv/deleterange":
                let request = try fields.deleteRangeRequest()
                do throws(MVCCError) {
                    let response = try space.deleteRange(request)
                    return text(V3JSON.deleteRange(header(response.revision), response))
                } catch { throw V3Error(error) }
            case "/v3/kv/txn":
                let request = try fields.txnRequest()
                do throws(MVCCError) {
                    let response = try space.txn(request)
                    return text(V3JSON.txn(header(response.revision), response))
                } catch { throw V3Error(error) }
            default:
                throw V3Error(.unimplemented, "no such endpoint \(path)")
            }
        } catch {
            return text(V3JSON.error(error))
        }
    }

    static let h = #"{"header":{"cluster_id":"324952591200643719","member_id":"3319814642761637952","revision":"#

    @Test func kvAnswersAreEtcds() {
        var space = MVCCKeySpace()
        let recorded: [(String, String, String)] = [
            ("/v3/kv/put", #"{"key":"Zm9v","value":"YmFy"}"#, Self.h + #""2","raft_term":"2"}}"#),
            ("/v3/kv/put", #"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#,
             Self.h + #""3","raft_term":"2"},"prev_kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}"#),
            ("/v3/kv/range", #"{"key":"Zm9v"}"#,
             Self.h + #""3","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}],"count":"1"}"#),
            ("/v3/kv/range", #"{"key":"bm8="}"#, Self.h + #""3","raft_term":"2"}}"#),
            ("/v3/kv/range", #"{"key":"AA==","range_end":"AA==","limit":"1"}"#,
             Self.h + #""3","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}],"count":"1"}"#),
            ("/v3/kv/range", #"{"key":"AA==","range_end":"AA==","count_only":true}"#, Self.h + #""3","raft_term":"2"},"count":"1"}"#),
            ("/v3/kv/range", #"{"key":"Zm9v","revision":"100"}"#,
             #"{"error":"etcdserver: mvcc: required revision is a future revision","message":"etcdserver: mvcc: required revision is a future revision","code":11}"#),
            ("/v3/kv/range", "{}", #"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#),
            ("/v3/kv/range", #"{"key":"Zm9v","sort_order":"DESCEND","sortTarget":"MOD"}"#,
             Self.h + #""3","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}],"count":"1"}"#),
            ("/v3/kv/range", #"{"key":"Zm9v","limit":2,"unknown":2,"sort_order":2}"#,
             Self.h + #""3","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}],"count":"1"}"#),
            ("/v3/kv/range", #"{"key":"Zm9"}"#,
             #"{"error":"illegal base64 data at input byte 0","message":"illegal base64 data at input byte 0","code":3}"#),
            ("/v3/kv/range", "notjson",
             #"{"error":"invalid character 'o' in literal null (expecting 'u')","message":"invalid character 'o' in literal null (expecting 'u')","code":3}"#),
            ("/v3/kv/deleterange", #"{"key":"Zm9v","prev_kv":true}"#,
             Self.h + #""4","raft_term":"2"},"deleted":"1","prev_kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2","value":"YmF6"}]}"#),
            ("/v3/kv/deleterange", #"{"key":"Zm9v"}"#, Self.h + #""4","raft_term":"2"}}"#),
            ("/v3/kv/put", #"{"key":"YQ==","value":"MQ=="}"#, Self.h + #""5","raft_term":"2"}}"#),
            ("/v3/kv/txn", #"{"compare":[{"key":"YQ==","target":"VALUE","result":"EQUAL","value":"MQ=="}],"success":[{"request_put":{"key":"Yg==","value":"Mg=="}},{"request_range":{"key":"Yg=="}}],"failure":[{"request_range":{"key":"YQ=="}}]}"#,
             Self.h + #""6","raft_term":"2"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"6"}}},{"response_range":{"header":{"revision":"6"},"kvs":[{"key":"Yg==","create_revision":"6","mod_revision":"6","version":"1","value":"Mg=="}],"count":"1"}}]}"#),
            ("/v3/kv/txn", #"{"compare":[{"key":"YQ==","target":"VERSION","result":"GREATER","version":"5"}],"failure":[{"request_range":{"key":"YQ=="}},{"request_delete_range":{"key":"eg=="}}]}"#,
             Self.h + #""6","raft_term":"2"},"responses":[{"response_range":{"header":{"revision":"6"},"kvs":[{"key":"YQ==","create_revision":"5","mod_revision":"5","version":"1","value":"MQ=="}],"count":"1"}},{"response_delete_range":{"header":{"revision":"6"}}}]}"#),
            ("/v3/kv/txn", #"{"success":[{"request_txn":{"success":[{"request_put":{"key":"Yw==","value":"Mw=="}}]}}]}"#,
             Self.h + #""7","raft_term":"2"},"succeeded":true,"responses":[{"response_txn":{"header":{},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"7"}}}]}}]}"#),
            ("/v3/kv/txn", #"{"success":[{"request_put":{"key":"Yw==","value":"Mw=="}},{"request_put":{"key":"Yw==","value":"Mw=="}}]}"#,
             #"{"error":"etcdserver: duplicate key given in txn request","message":"etcdserver: duplicate key given in txn request","code":3}"#),
        ]
        for (path, body, expected) in recorded {
            #expect(Self.answer(path, body, &space) == expected, "\(path) \(body)")
        }
    }

    @Test func leaseAnswersAreEtcds() throws {
        var space = MVCCKeySpace()
        let lease = try space.grantLease(id: 1000, ttl: 30, minimumTTL: 2)
        #expect(Self.text(V3JSON.leaseGranted(Self.header(1), lease)) == Self.h + #""1","raft_term":"2"},"ID":"1000","TTL":"30"}"#)
        _ = try space.put(PutRequest(key: Array("l".utf8), value: Array("1".utf8)))
        var attached = PutRequest(key: Array("l".utf8), value: Array("1".utf8))
        attached.lease = 1000
        _ = try space.put(attached)
        #expect(Self.text(V3JSON.timeToLive(Self.header(8), id: 1000, ttl: 29, lease: space.leases[1000], keys: true))
            == Self.h + #""8","raft_term":"2"},"ID":"1000","TTL":"29","grantedTTL":"30","keys":["bA=="]}"#)
        #expect(Self.text(V3JSON.timeToLive(Self.header(8), id: 99, ttl: -1, lease: nil, keys: false))
            == Self.h + #""8","raft_term":"2"},"ID":"99","TTL":"-1"}"#)
        #expect(Self.text(V3JSON.keepAlive(Self.header(8), id: 1000, ttl: 30))
            == #"{"result":"# + Self.h + #""8","raft_term":"2"},"ID":"1000","TTL":"30"}}"# + "\n")
        #expect(V3Error(MVCCError.leaseExists).httpStatus == 412 && V3Error(MVCCError.leaseNotFound).httpStatus == 404)
        #expect(V3Error(MVCCError.compacted).httpStatus == 400 && V3Error(MVCCError.compacted).code == .outOfRange)
    }

    @Test func hostileBodiesAreRefusedNotTrapped() {
        let deep = String(repeating: "[", count: 100_000)
        #expect(throws: V3Error.self) { try V3Fields(json: Array(deep.utf8)) }
        // A transaction nested past etcd's operation budget is refused while decoding, before any recursion runs deep.
        var nested = #"{"request_put":{"key":"YQ=="}}"#
        for _ in 0..<150 { nested = #"{"request_txn":{"success":["# + nested + "]}}" }
        let body = #"{"success":["# + nested + "]}"
        #expect(throws: V3Error.self) { try V3Fields(json: Array(body.utf8)).txnRequest() }
        for bad in ["", "{", #"{"key":}"#, #"{"key":"YQ=="#, "\u{1}", #"{"limit":"1e400"}"#, #"{"limit":{}}"#, "[]"] {
            #expect(throws: V3Error.self) { try V3Fields(json: Array(bad.utf8)).rangeRequest() }
        }
    }

    @Test func extremeNumbersAreAnsweredNotTrappedOn() throws {
        var space = MVCCKeySpace()
        _ = try space.put(PutRequest(key: Array("a".utf8), value: Array("1".utf8)))
        for limit in [Int64.max, Int64.max - 1, Int64.min] {
            var request = try V3Fields(json: Array(#"{"key":"YQ=="}"#.utf8)).rangeRequest()
            request.limit = limit
            #expect(try space.range(request).kvs.count == 1, "limit \(limit)")
        }
        #expect(Self.answer("/v3/kv/range", #"{"key":"YQ==","limit":"9223372036854775807","revision":"-9223372036854775808"}"#, &space)
            .contains(#""count":"1""#))
    }

    @Test func base64FollowsGo() throws {
        for sample in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let encoded = Base64.encode(Array(sample.utf8))
            #expect(try Base64.decode(encoded) == Array(sample.utf8))
        }
        #expect(Base64.encode(Array("foob".utf8)) == Array("Zm9vYg==".utf8))
        #expect(throws: Base64.DecodeError(offset: 0)) { try Base64.decode(Array("Zm9".utf8)) }
        #expect(throws: Base64.DecodeError(offset: 2)) { try Base64.decode(Array("Zm*v".utf8)) }
        #expect(throws: Base64.DecodeError(offset: 4)) { try Base64.decode(Array("Zg==Zg==".utf8)) }
    }
}
