// etcd's `--auto-compaction-mode` and `--auto-compaction-retention`, read as etcd 3.4 reads them: periodic takes
// hours as a bare number or a Go duration ("90m", "1h30m"), revision takes a count; "0" turns compaction off.
// Go's duration syntax is parsed here too, for the duration flags.
import CairnMVCC

package enum AutoCompactionFlags {
    package static func parse(mode: String, retention: String) throws(ConfigurationError) -> AutoCompaction.Mode? {
        switch mode {
        case "periodic":
            let nanos: Int64
            if let hours = Double(retention), hours.isFinite, hours >= 0 {
                guard hours * 3_600e9 < 9e18 else { throw ConfigurationError("--auto-compaction-retention \(retention) is too long") }
                nanos = Int64(hours * 3_600e9)
            } else {
                guard let duration = parseGoDurationNanos(retention) else {
                    throw ConfigurationError("--auto-compaction-retention \(retention) is neither hours nor a duration (\"5m\", \"1h30m\")")
                }
                nanos = duration
            }
            return nanos == 0 ? nil : .periodic(retentionNanos: nanos)
        case "revision":
            guard let count = Int64(retention), count >= 0 else {
                throw ConfigurationError("--auto-compaction-retention \(retention) must be a number of revisions")
            }
            return count == 0 ? nil : .revision(retention: count)
        default:
            throw ConfigurationError("--auto-compaction-mode must be \"periodic\" or \"revision\", not \"\(mode)\"")
        }
    }
}

/// Go's `time.ParseDuration` for non-negative durations: numbers (decimals allowed) each followed by a unit.
package func parseGoDurationNanos(_ text: String) -> Int64? {
    let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3_600e9)]
    var rest = Substring(text)
    var total = 0.0
    guard !rest.isEmpty else { return nil }
    while !rest.isEmpty {
        let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        guard !number.isEmpty, let value = Double(number) else { return nil }
        rest = rest.dropFirst(number.count)
        // The longest unit that matches ("ms" before "m").
        guard let unit = units.filter({ rest.hasPrefix($0.0) }).max(by: { $0.0.count < $1.0.count }) else { return nil }
        rest = rest.dropFirst(unit.0.count)
        total += value * unit.1
    }
    return total.isFinite && total < 9e18 ? Int64(total) : nil
}
