// Bootstrap flags: IDs equal to etcd's for the same flags, and every misconfiguration refused with a clear reason.
import CairnBase
import Testing
@testable import CairnServer

@Suite struct ClusterBootstrapTests {
    @Test func sha1KnownAnswers() {
        func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined() }
        #expect(hex(SHA1.digest(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(SHA1.digest([])) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(hex(SHA1.digest(Array(String(repeating: "a", count: 1000).utf8))) == "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }

    @Test func idsMatchEtcd() throws {
        // Read off etcd 3.4.23 started with these flags: GET /v2/members and its X-Etcd-Cluster-Id header.
        let bootstrap = try ClusterBootstrap(
            initialCluster: "default=http://127.0.0.1:24800", name: "default",
            advertisedPeerURLs: ["http://127.0.0.1:24800"], token: "etcd-cluster")
        #expect(bootstrap.localID == 0x886b_03c4_ae67_9a15)
        #expect(bootstrap.clusterID == 0x263d_e825_2887_371c)
    }

    @Test func threeMembersEachSeeTheSameCluster() throws {
        let cluster = "a=http://127.0.0.1:2380,b=http://127.0.0.1:2381,c=http://127.0.0.1:2382"
        let views = try ["a", "b", "c"].enumerated().map { index, name in
            try ClusterBootstrap(initialCluster: cluster, name: name, advertisedPeerURLs: ["http://127.0.0.1:\(2380 + index)"], token: "t")
        }
        #expect(Set(views.map(\.clusterID)).count == 1)
        #expect(Set(views.map(\.localID)).count == 3)
        #expect(views[0].members.map(\.name) == ["a", "b", "c"])
        let otherToken = try ClusterBootstrap(initialCluster: cluster, name: "a", advertisedPeerURLs: ["http://127.0.0.1:2380"], token: "u")
        #expect(otherToken.clusterID != views[0].clusterID)
    }

    @Test(arguments: [
        ("a=http://127.0.0.1:2380", "b", ["http://127.0.0.1:2380"], "no member named \"b\""),
        ("a=http://127.0.0.1:2380,b=http://127.0.0.1:2380", "a", ["http://127.0.0.1:2380"], "duplicate URL"),
        ("a=http://127.0.0.1:2380", "a", ["http://127.0.0.1:2390"], "--initial-advertise-peer-urls"),
        ("a", "a", ["http://127.0.0.1:2380"], "is not name=URL"),
        ("a=127.0.0.1:2380", "a", ["127.0.0.1:2380"], "invalid URL"),
    ])
    func misconfigurationsAreRefused(cluster: String, name: String, advertised: [String], message: String) {
        do {
            _ = try ClusterBootstrap(initialCluster: cluster, name: name, advertisedPeerURLs: advertised, token: "t")
            Issue.record("accepted \(cluster)")
        } catch {
            #expect(error.description.contains(message), "\(error.description)")
        }
    }
}
