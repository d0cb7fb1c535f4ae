// `/metrics` in Prometheus's text format (0.0.4), with etcd's metric names where etcd has one. Counters and
// histograms are updated where things happen; gauges are read from the node when scraped.
import Synchronization

/// A histogram with fixed buckets (upper bounds in seconds), safe from any thread.
package final class Histogram: Sendable {
    let name: String
    let help: String
    let bounds: [Double]
    private let state: Mutex<(counts: [UInt64], sum: Double, count: UInt64)>

    /// etcd's buckets for disk and snapshot durations: 1 ms doubling to 8.192 s.
    static let etcdDiskBuckets = (0..<14).map { 0.001 * Double(1 << $0) }

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
        let (counts, sum, count) = state.withLock { $0 }
        text += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
        var cumulative: UInt64 = 0
        for (bound, n) in zip(bounds, counts) {
            cumulative += n
            text += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        text += "\(name)_bucket{le=\"+Inf\"} \(count)\n\(name)_sum \(sum)\n\(name)_count \(count)\n"
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
    private let counters = Mutex<[String: UInt64]>([:])

    package init() {}

    /// Adds one to a counter; `labels` is Prometheus's `{name="value",...}` text or empty.
    package func count(_ name: String, labels: String = "") {
        counters.withLock { $0[name + labels, default: 0] += 1 }
    }

    package static let counterHelp: [String: String] = [
        "etcd_server_proposals_failed_total": "The total number of failed proposals seen.",
        "etcd_http_received_total": "Counter of requests received into the system (successfully parsed and authd).",
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
        for histogram in [walFsync, snapshotSave, snapshotSend] { histogram.render(into: &text) }
        return text
    }
}
