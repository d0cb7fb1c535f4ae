// What a member is told on its command line, already validated: etcd's flags as values.
// URL lists are checked here so a typo fails at start-up with the flag's name, never later.
import CairnHTTP
import CairnMVCC

package struct ServerConfiguration: Sendable {
    package var name = "default"
    package var dataDirectory = "default.cairn"
    package var listenClientURLs = [ListenAddress(host: "127.0.0.1", port: 2379)]
    package var advertiseClientURLs = ["http://127.0.0.1:2379"]
    package var listenPeerURLs = [ListenAddress(host: "127.0.0.1", port: 2380)]
    package var initialAdvertisePeerURLs = ["http://127.0.0.1:2380"]
    package var initialCluster = "default=http://127.0.0.1:2380"
    package var initialClusterState = "new"
    package var initialClusterToken = "etcd-cluster"
    package var heartbeatIntervalMilliseconds = 100
    package var electionTimeoutMilliseconds = 1000
    package var snapshotCount = 100_000
    /// Every GET confirms leadership (ReadIndex) as `quorum=true` does, not only those that ask.
    package var linearizableReads = false
    /// etcd's `--max-request-bytes`: the largest v3 request taken (its encoding), 1.5 MiB by default.
    package var maxRequestBytes = V3Handler.requestBytesMaxDefault
    /// etcd's `--auto-compaction-mode` and `--auto-compaction-retention`; nil: no automatic compaction (etcd's default).
    package var autoCompaction: AutoCompaction.Mode?
    /// etcd's `--quota-backend-bytes` (0: etcd's 2 GiB default; negative: no quota), on kept v3 keys and values.
    package var quotaBackendBytes: Int64 = 0
    /// etcd's `--bcrypt-cost`: the cost of v3 auth's password hashes.
    package var bcryptCost = PasswordHash.costDefault
    /// etcd's `--auth-token jwt,...` (nil: simple tokens).
    package var jwtTokens: JWTTokens?
    /// etcd's `--auth-token-ttl`: a simple token is forgotten this long after its last use on a member.
    package var authTokenTTLSeconds = V3AuthGate.tokenTTLSecondsDefault
    /// etcd's `--experimental-watch-progress-notify-interval`.
    package var watchProgressNotifyIntervalMilliseconds = 600_000
    /// Watch history kept for resuming watchers, in bytes (etcd keeps 1,000 events whatever their size).
    package var watchHistoryBytesMax = 64 * 1024 * 1024
    /// The validated initial membership and the IDs derived from it.
    package var bootstrap: ClusterBootstrap?
    /// `--cert-file` and the rest: TLS on the client URLs.
    package var clientTLS = TLSFlags(side: .client)
    /// `--peer-cert-file` and the rest: TLS between members.
    package var peerTLS = TLSFlags(side: .peer)
    /// `--cipher-suites`: TLS 1.2 suites for both sides, by their Go names; empty for OpenSSL's defaults.
    package var cipherSuites: [String] = []
    /// `--tls-min-version`.
    package var tlsMinimumVersion = TLSVersion.tls12

    package init() {}
}

package struct ConfigurationError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

package enum URLList {
    /// Parses a comma-separated list of `http://host:port` and `https://host:port` URLs, as etcd's URL flags take them.
    package static func parse(_ text: String, flag: String) throws(ConfigurationError) -> [ListenAddress] {
        var addresses: [ListenAddress] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let url = String(item.trimmingASCIIWhitespace())
            addresses.append(try parseOne(url, flag: flag))
        }
        guard !addresses.isEmpty else { throw ConfigurationError("--\(flag): no URL given") }
        return addresses
    }

    private static func parseOne(_ url: String, flag: String) throws(ConfigurationError) -> ListenAddress {
        func bad(_ why: String) -> ConfigurationError { ConfigurationError("--\(flag): invalid URL \"\(url)\": \(why)") }
        let usesTLS = url.hasPrefix("https://")
        guard usesTLS || url.hasPrefix("http://") else { throw bad("expected http://host:port or https://host:port") }
        var rest = url.dropFirst(usesTLS ? "https://".count : "http://".count)
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.contains("/"), !rest.contains("?"), !rest.contains("#") else { throw bad("a listen URL has no path") }
        let host: Substring
        let portText: Substring
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw bad("unclosed IPv6 bracket") }
            host = rest[rest.index(after: rest.startIndex)..<close]
            let afterBracket = rest[rest.index(after: close)...]
            guard afterBracket.hasPrefix(":") else { throw bad("missing port") }
            portText = afterBracket.dropFirst()
        } else {
            let parts = rest.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw bad(parts.count < 2 ? "missing port" : "IPv6 addresses need brackets") }
            host = parts[0]
            portText = parts[1]
        }
        guard !host.isEmpty else { throw bad("missing host") }
        guard let port = UInt16(portText), String(port) == portText else { throw bad("port must be a number from 0 to 65535") }
        return ListenAddress(host: String(host), port: port, usesTLS: usesTLS)
    }
}
