// `/metrics` as a scraper reads it: answers counted by method and code (a watch once, when its event ends it),
// and etcd's per-peer round-trip histogram with etcd's buckets.
import Dispatch
import Foundation
import Testing
@testable import CairnServer

@Suite struct MetricsTests {
    /// `/metrics` and `/v2/stats` read what the node published: a scrape never waits on a busy node queue (before,
    /// the watcher gauges waited for it, holding the HTTP queue that served the scrape).
    @Test func gaugesAndStatisticsDoNotWaitForTheNodeQueue() throws {
        let member = try LoneMember()
        let release = DispatchSemaphore(value: 0), busy = DispatchSemaphore(value: 0)
        member.node.queue.async {
            busy.signal()
            release.wait()
        }
        busy.wait()
        defer { release.signal() }
        let node = member.node, read = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            _ = node.metricGauges
            _ = node.storeStatistics
            read.signal()
        }
        #expect(read.wait(timeout: .now() + 10) == .success, "read while the node queue is busy")
    }

    @Test func answersAreCountedByMethodAndCodeAndAWatchOnce() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        let created = try curl(["-X", "PUT", "-d", "value=1", "-w", " %{http_code}", cairn.baseURL + "/v2/keys/a"])
        #expect(created.hasSuffix(" 201"), "\(created)")
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", cairn.baseURL + "/v2/keys/missing"]) == "404")
        // The watch waits for the next index, so it is answered once, by the write below, whenever it registers.
        let index = try #require(created.firstMatch(of: /"modifiedIndex":(\d+)/).flatMap { Int($0.1) })
        let watch = Process()
        watch.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        watch.arguments = ["-sS", "-o", "/dev/null", cairn.baseURL + "/v2/keys/w?wait=true&waitIndex=\(index + 1)"]
        try watch.run()
        #expect(try curl(["-X", "PUT", "-d", "value=2", "-o", "/dev/null", "-w", "%{http_code}", cairn.baseURL + "/v2/keys/w"]) == "201")
        watch.waitUntilExit()

        let lines = Set(try curl([cairn.baseURL + "/metrics"]).split(separator: "\n").map(String.init))
        #expect(lines.contains(#"cairn_http_responses_total{method="PUT",code="201"} 2"#))
        #expect(lines.contains(#"cairn_http_responses_total{method="GET",code="404"} 1"#))
        #expect(lines.contains(#"etcd_http_failed_total{method="GET",code="404"} 1"#))
        #expect(!lines.contains { $0.hasPrefix(#"etcd_http_failed_total{method="PUT""#) })
        // The watch is the only GET answered 200 so far: this scrape is counted once it has been sent.
        #expect(lines.contains(#"cairn_http_responses_total{method="GET",code="200"} 1"#))
        #expect(lines.contains(#"etcd_http_received_total{method="GET"} 3"#))
        let again = try curl([cairn.baseURL + "/metrics"])
        #expect(again.contains(#"cairn_http_responses_total{method="GET",code="200"} 2"#))
    }

    @Test func peerRoundTripsHaveEtcdsBucketsPerPeer() {
        let metrics = ServerMetrics()
        metrics.peerRoundTrip.observe(to: 0x2a, seconds: 0.00015)
        metrics.peerRoundTrip.observe(to: 0x2a, seconds: 5)
        metrics.peerRoundTrip.observe(to: 0xbeef, seconds: 0.001)
        let lines = metrics.render(gauges: []).split(separator: "\n").map(String.init)
        let name = "etcd_network_peer_round_trip_time_seconds"
        #expect(lines.contains("# TYPE \(name) histogram"))
        let buckets = lines.filter { $0.hasPrefix(name + #"_bucket{To="2a","#) }
        #expect(buckets.count == 17)
        #expect(buckets.first == name + #"_bucket{To="2a",le="0.0001"} 0"#)
        #expect(buckets.contains(name + #"_bucket{To="2a",le="0.0002"} 1"#))
        #expect(buckets.contains(name + #"_bucket{To="2a",le="3.2768"} 1"#))
        #expect(buckets.last == name + #"_bucket{To="2a",le="+Inf"} 2"#)
        #expect(lines.contains(name + #"_count{To="2a"} 2"#))
        #expect(lines.contains(name + #"_bucket{To="beef",le="0.0008"} 0"#))
        #expect(lines.contains(name + #"_bucket{To="beef",le="0.0016"} 1"#))
        #expect(lines.contains(name + #"_count{To="beef"} 1"#))
    }
}
