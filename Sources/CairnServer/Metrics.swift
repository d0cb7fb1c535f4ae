// `/metrics` in Prometheus's text format (0.0.4), with etcd's metric names where etcd has one. Counters and
// histograms are updated where things happen; gauges are read from the node when scraped.
import CairnBase
import Synchronization

/// A histogram with fixed buckets (upper bounds in seconds), safe from any thread.
package final class Histogram: Sendable {
    let name: String
    let help: String
    let bounds: [Double]
    private let state: Mutex<(counts: [UInt64], sum: Double, count: UInt64)>

    /// etcd's buckets for disk and snapshot durations: 1 ms doubling to 8.192 s.
    static let etcdDiskBuckets = (0..<14).map { 0.001 * Double(1 << $0) }
    /// etcd's buckets for peer round trips: 0.1 ms doubling to 3.2768 s.
    static let etcdPeerRoundTripBuckets = (0..<16).map { 0.0001 * Double(1 << $0) }

    init(name: String, help: String, bounds: [Double] = etcdDiskBuckets) {
        self.name = name
        self.help = help
        self.bounds = bounds
        state = Mutex((Array(repeating: 0, count: bounds.count), 0, 0))
    }

    package func observe(seconds: Double) {
        state.withLock { s in
            if let bucket = bounds.firstIndex(where: { seconds <= $0 }) { s.counts[bucket] += 1 }
            s.sum += seconds
            s.count += 1
        }
    }

    func render(into text: inout String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        renderSamples(into: &text, labels: "")
    }

    /// The samples alone; `labels` (`To="2a"`, or empty) are set on each of them.
    func renderSamples(into text: inout String, labels: String) {
        let (counts, sum, count) = state.withLock { $0 }
        let bucketLabels = labels.isEmpty ? "" : labels + ","
        let otherLabels = labels.isEmpty ? "" : "{\(labels)}"
        var cumulative: UInt64 = 0
        for (bound, n) in zip(bounds, counts) {
            cumulative += n
            text += "\(name)_bucket{\(bucketLabels)le=\"\(bound)\"} \(cumulative)\n"
        }
        text += "\(name)_bucket{\(bucketLabels)le=\"+Inf\"} \(count)\n\(name)_sum\(otherLabels) \(sum)\n\(name)_count\(otherLabels) \(count)\n"
    }
}

/// One histogram per peer, labelled as etcd labels them: `To` is the peer's member ID in hex.
package final class PeerHistograms: Sendable {
    let name: String
    let help: String
    let bounds: [Double]
    private let byPeer = Mutex<[UInt64: Histogram]>([:])

    init(name: String, help: String, bounds: [Double]) {
        self.name = name
        self.help = help
        self.bounds = bounds
    }

    package func observe(to peer: UInt64, seconds: Double) {
        let histogram = byPeer.withLock { histograms in
            if let existing = histograms[peer] { return existing }
            let created = Histogram(name: name, help: help, bounds: bounds)
            histograms[peer] = created
            return created
        }
        histogram.observe(seconds: seconds)
    }

    func render(into text: inout String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        for (peer, histogram) in byPeer.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            histogram.renderSamples(into: &text, labels: "To=\"\(hex(peer))\"")
        }
    }
}

/// Requests by method as they arrive, and answers by method and status code as they go out. Counted under small
/// integers; label text is built only when scraped.
package final class HTTPRequestMetrics: Sendable {
    /// Known methods only, so a client cannot grow the label set; anything else is counted as "other".
    static let methods = ["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "other"]

    struct Answer: Hashable {
        var method: Int
        var code: Int
    }

    private let state = Mutex<(received: [UInt64], answered: [Answer: UInt64])>((Array(repeating: 0, count: methods.count), [:]))

    /// The position of `method` in `methods`, the number the counters take.
    package static func methodNumber(_ method: String) -> Int {
        methods.firstIndex(of: method) ?? methods.count - 1
    }

    package func received(method: Int) {
        state.withLock { $0.received[method] += 1 }
    }

    package func answered(method: Int, code: Int) {
        state.withLock { $0.answered[Answer(method: method, code: code), default: 0] += 1 }
    }

    func render(into text: inout String) {
        let (received, answered) = state.withLock { $0 }
        text += "# HELP etcd_http_received_total Counter of requests received into the system (successfully parsed and authd).\n"
            + "# TYPE etcd_http_received_total counter\n"
        for (method, count) in zip(Self.methods, received) where count > 0 {
            text += "etcd_http_received_total{method=\"\(method)\"} \(count)\n"
        }
        let sorted = answered.sorted { ($0.key.method, $0.key.code) < ($1.key.method, $1.key.code) }
        // etcd's family counts failures only; Cairn's counts every answer, so successes show their code too.
        text += "# HELP etcd_http_failed_total Counter of handle failures of requests, by method (GET/PUT etc.) and code (400, 500 etc.).\n"
            + "# TYPE etcd_http_failed_total counter\n"
        for (answer, count) in sorted where answer.code >= 400 {
            text += "etcd_http_failed_total{method=\"\(Self.methods[answer.method])\",code=\"\(answer.code)\"} \(count)\n"
        }
        text += "# HELP cairn_http_responses_total Counter of answered requests (watches once their answer ends), by method and code.\n"
            + "# TYPE cairn_http_responses_total counter\n"
        for (answer, count) in sorted {
            text += "cairn_http_responses_total{method=\"\(Self.methods[answer.method])\",code=\"\(answer.code)\"} \(count)\n"
        }
    }
}

/// Every metric a member exports.
package final class ServerMetrics: Sendable {
    package let walFsync = Histogram(name: "etcd_disk_wal_fsync_duration_seconds",
                                     help: "The latency distributions of fsync called by WAL (one per batch).")
    package let snapshotSave = Histogram(name: "etcd_debugging_snap_save_total_duration_seconds",
                                         help: "The total latency distributions of save called by snapshot.")
    package let snapshotSend = Histogram(name: "etcd_network_snapshot_send_total_duration_seconds",
                                         help: "Total latency distributions of v2 snapshot sends.")
    package let peerRoundTrip = PeerHistograms(name: "etcd_network_peer_round_trip_time_seconds",
                                               help: "Round-Trip-Time histogram between peers.",
                                               bounds: Histogram.etcdPeerRoundTripBuckets)
    package let http = HTTPRequestMetrics()
    private let counters = Mutex<[String: UInt64]>([:])

    package init() {}

    /// Adds one to a counter; `labels` is Prometheus's `{name="value",...}` text or empty.
    package func count(_ name: String, labels: String = "") {
        counters.withLock { $0[name + labels, default: 0] += 1 }
    }

    package static let counterHelp: [String: String] = [
        "etcd_server_proposals_failed_total": "The total number of failed proposals seen.",
        "cairn_storage_failures_total": "Times this member's storage failed (a full disk, an I/O error, no descriptor left) and it began retrying.",
        "cairn_entries_undecodable_total": "Committed entries that could not be decoded and were applied as no-ops.",
        "cairn_peer_frames_refused_total": "Peer frames refused by validation (the link they came on was closed).",
    ]

    /// Values read from the node at scrape time that only grow (the rest are gauges).
    static let countersReadAtScrape: Set = ["etcd_server_leader_changes_seen_total"]

    /// The whole exposition; `gauges` are (name, help, value) read from the node at scrape time.
    package func render(gauges: [(String, String, Double)]) -> String {
        var text = ""
        for (name, help, value) in gauges {
            let type = Self.countersReadAtScrape.contains(name) ? "counter" : "gauge"
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        let counted = counters.withLock { $0 }
        for (family, help) in Self.counterHelp.sorted(by: { $0.key < $1.key }) {
            text += "# HELP \(family) \(help)\n# TYPE \(family) counter\n"
            let samples = counted.filter { $0.key == family || $0.key.hasPrefix(family + "{") }
            if samples.isEmpty { text += "\(family) 0\n" }
            for (key, value) in samples.sorted(by: { $0.key < $1.key }) { text += "\(key) \(value)\n" }
        }
        http.render(into: &text)
        for histogram in [walFsync, snapshotSave, snapshotSend] { histogram.render(into: &text) }
        peerRoundTrip.render(into: &text)
        return text
    }
}
