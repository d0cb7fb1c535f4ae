// The cairn executable: etcd's flags in, a running member out. Subcommands come with their issues.
// Go's flag package accepts `-name` as well as `--name`; scripts written for etcd use both, so both work here.
import ArgumentParser
import CairnReplica
import CairnServer
import CairnStorage
import Glibc
import Logging

struct Cairn: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "A replicated key-value store that speaks etcd's HTTP API.",
        subcommands: [Serve.self, StorageCommand.self, SnapshotCommand.self],
        defaultSubcommand: Serve.self)
}

/// The flags that name a member and its cluster. A member and `cairn snapshot restore` take them alike, so a
/// member is restored with the flags it will be started with.
struct MemberFlags: ParsableArguments {
    @Option(help: "Human-readable name for this member.")
    var name = "default"

    @Option(name: .customLong("data-dir"), help: "Path to the data directory (default: NAME.cairn).")
    var dataDir: String?

    @Option(name: .customLong("initial-advertise-peer-urls"), help: "This member's peer URLs advertised to the rest of the cluster.")
    var initialAdvertisePeerURLs = "http://127.0.0.1:2380"

    @Option(name: .customLong("initial-cluster"), help: "Initial cluster configuration for bootstrapping (name=peerURL,...).")
    var initialCluster: String?

    @Option(name: .customLong("initial-cluster-token"), help: "Initial cluster token for the cluster during bootstrap.")
    var initialClusterToken = "etcd-cluster"

    var dataDirectory: String { dataDir ?? "\(name).cairn" }

    /// `--initial-advertise-peer-urls`, checked.
    func peerURLs() throws(ConfigurationError) -> [String] {
        _ = try URLList.parse(initialAdvertisePeerURLs, flag: "initial-advertise-peer-urls")
        return initialAdvertisePeerURLs.split(separator: ",").map(String.init)
    }

    /// `--initial-cluster`, or this member alone when it is not given (as etcd's default).
    func initialClusterOrSelf(peerURLs: [String]) -> String {
        initialCluster ?? peerURLs.map { "\(name)=\($0)" }.joined(separator: ",")
    }

    /// The members and IDs the flags give, checked against this member's name and peer URLs.
    func bootstrap() throws(ConfigurationError) -> ClusterBootstrap {
        let peerURLs = try peerURLs()
        return try ClusterBootstrap(initialCluster: initialClusterOrSelf(peerURLs: peerURLs), name: name,
                                    advertisedPeerURLs: peerURLs, token: initialClusterToken)
    }
}

/// Runs a member: etcd's flags. The default, so `cairn --name n1 ...` works as `etcd --name n1 ...` does.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run a member (the default; takes etcd's flags).")

    @OptionGroup var member: MemberFlags

    @OptionGroup var tls: TLSOptions

    @Option(name: .customLong("listen-client-urls"), help: "URLs to listen on for client traffic.")
    var listenClientURLs = "http://127.0.0.1:2379"

    @Option(name: .customLong("advertise-client-urls"), help: "Client URLs advertised to the rest of the cluster.")
    var advertiseClientURLs = "http://127.0.0.1:2379"

    @Option(name: .customLong("listen-peer-urls"), help: "URLs to listen on for peer traffic.")
    var listenPeerURLs = "http://127.0.0.1:2380"

    @Option(name: .customLong("initial-cluster-state"), help: "Initial cluster state: new or existing.")
    var initialClusterState = "new"

    @Option(name: .customLong("heartbeat-interval"), help: "Time (in milliseconds) of a heartbeat interval.")
    var heartbeatInterval = 100

    @Option(name: .customLong("election-timeout"), help: "Time (in milliseconds) for an election to timeout.")
    var electionTimeout = 1000

    @Option(name: .customLong("snapshot-count"), help: "Number of committed transactions to trigger a snapshot to disk.")
    var snapshotCount = 100_000

    @Option(name: .customLong("enable-v2"), help: "Accepted for etcd compatibility; the v2 API is always enabled.")
    var enableV2 = "true"

    @Option(name: .customLong("log-level"), help: "Log level: debug, info, warn, error.")
    var logLevel = "info"

    @Option(name: .customLong("auto-compaction-mode"), help: "Interpret 'auto-compaction-retention' one of: periodic|revision.")
    var autoCompactionMode = "periodic"

    @Option(name: .customLong("auto-compaction-retention"), help: "Auto compaction retention for mvcc key value store. 0 means disable auto compaction.")
    var autoCompactionRetention = "0"

    @Option(name: .customLong("experimental-watch-progress-notify-interval"), help: "Duration of periodic watch progress notifications.")
    var watchProgressNotifyInterval = "10m0s"

    @Option(name: .customLong("auth-token"), help: "Specify auth token type: 'simple' or 'jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256|ES256|...,ttl=5m'.")
    var authToken = "simple"

    @Option(name: .customLong("auth-token-ttl"), help: "The lifetime in seconds of the auth token.")
    var authTokenTTL = 300

    @Option(name: .customLong("bcrypt-cost"), help: "Specify bcrypt algorithm cost factor for auth password hashing.")
    var bcryptCost = 10

    @Option(name: .customLong("quota-backend-bytes"), help: "Raise alarms when the v3 key space exceeds the given quota. 0 means use the default quota.")
    var quotaBackendBytes: Int64 = 0

    @Option(name: .customLong("max-request-bytes"), help: "Maximum client request size in bytes the server will accept (v3).")
    var maxRequestBytes = 1024 * 1024 + 512 * 1024

    @Flag(name: .customLong("linearizable-reads"), help: "Serve every GET as if it had quorum=true (Cairn's own flag).")
    var linearizableReads = false

    func validate() throws {
        guard ["new", "existing"].contains(initialClusterState) else {
            throw ValidationError("--initial-cluster-state must be \"new\" or \"existing\", not \"\(initialClusterState)\"")
        }
        guard heartbeatInterval > 0, electionTimeout > 0 else {
            throw ValidationError("--heartbeat-interval and --election-timeout must be positive")
        }
        guard electionTimeout >= 5 * heartbeatInterval else {
            throw ValidationError("--election-timeout (\(electionTimeout)) should be at least 5 times --heartbeat-interval (\(heartbeatInterval))")
        }
        guard maxRequestBytes > 0, maxRequestBytes <= 1 << 30 else { throw ValidationError("--max-request-bytes must be between 1 and 1073741824") }
        guard snapshotCount > 0 else { throw ValidationError("--snapshot-count must be positive") }
        guard ["true", "false"].contains(enableV2) else { throw ValidationError("--enable-v2 must be true or false") }
        guard Self.logLevels[logLevel] != nil else { throw ValidationError("--log-level must be one of debug, info, warn, error") }
        _ = try serverConfiguration()
    }

    func serverConfiguration() throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        do {
            configuration.name = member.name
            configuration.dataDirectory = member.dataDirectory
            configuration.listenClientURLs = try URLList.parse(listenClientURLs, flag: "listen-client-urls")
            _ = try URLList.parse(advertiseClientURLs, flag: "advertise-client-urls")
            configuration.advertiseClientURLs = advertiseClientURLs.split(separator: ",").map(String.init)
            configuration.listenPeerURLs = try URLList.parse(listenPeerURLs, flag: "listen-peer-urls")
            configuration.initialAdvertisePeerURLs = try member.peerURLs()
            configuration.initialCluster = member.initialClusterOrSelf(peerURLs: configuration.initialAdvertisePeerURLs)
            configuration.bootstrap = try member.bootstrap()
        } catch {
            throw ValidationError(error.description)
        }
        configuration.initialClusterState = initialClusterState
        configuration.initialClusterToken = member.initialClusterToken
        configuration.heartbeatIntervalMilliseconds = heartbeatInterval
        configuration.electionTimeoutMilliseconds = electionTimeout
        configuration.snapshotCount = snapshotCount
        configuration.linearizableReads = linearizableReads
        configuration.maxRequestBytes = maxRequestBytes
        configuration.quotaBackendBytes = quotaBackendBytes
        if authToken.hasPrefix("jwt,") {
            do { configuration.jwtTokens = try JWTTokens(options: authToken.dropFirst(4)) } catch { throw ValidationError(error.description) }
        } else if authToken != "simple" {
            throw ValidationError("--auth-token must be \"simple\" or \"jwt,...\"")
        }
        guard authTokenTTL >= 1 else { throw ValidationError("--auth-token-ttl must be at least 1 second") }
        guard PasswordHash.costRange.contains(bcryptCost) else {
            throw ValidationError("--bcrypt-cost must be between \(PasswordHash.costRange.lowerBound) and \(PasswordHash.costRange.upperBound)")
        }
        configuration.authTokenTTLSeconds = authTokenTTL
        configuration.bcryptCost = bcryptCost
        guard let progressNanos = parseGoDurationNanos(watchProgressNotifyInterval), progressNanos >= 1_000_000 else {
            throw ValidationError("--experimental-watch-progress-notify-interval must be a duration of 1ms or more (\"10m\", \"30s\")")
        }
        configuration.watchProgressNotifyIntervalMilliseconds = Int(progressNanos / 1_000_000)
        do {
            configuration.autoCompaction = try AutoCompactionFlags.parse(mode: autoCompactionMode, retention: autoCompactionRetention)
        } catch {
            throw ValidationError(error.description)
        }
        try tls.apply(to: &configuration)
        return configuration
    }

    /// Every member flag, for `ETCD_*` environment variables.
    static let flagNames = [
        "name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls", "initial-advertise-peer-urls",
        "initial-cluster", "initial-cluster-state", "initial-cluster-token", "heartbeat-interval", "election-timeout",
        "snapshot-count", "enable-v2", "log-level", "max-request-bytes", "auto-compaction-mode", "auto-compaction-retention",
        "experimental-watch-progress-notify-interval", "quota-backend-bytes", "auth-token", "auth-token-ttl", "bcrypt-cost",
    ] + TLSOptions.flagNames

    static let logLevels: [String: Logger.Level] = ["debug": .debug, "info": .info, "warn": .warning, "error": .error]

    func run() throws {
        Server.holdShutdownSignals()
        LogLineHandler.bootstrap(level: Self.logLevels[logLevel]!)
        do {
            let server = try Server(configuration: try serverConfiguration())
            try server.runForever()
        } catch let error as ValidationError {
            throw error
        } catch {
            throw ValidationError("cannot serve: \(error)")
        }
    }
}

/// `cairn storage dump|verify`: read a stopped member's data directory (refused while a member holds its lock).
struct StorageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Inspect a stopped member's log and snapshots.",
        subcommands: [Dump.self, Verify.self])

    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the hard state, the snapshot headers and every log entry, decoded.")

        @Option(name: .customLong("data-dir"), help: "The member's data directory.")
        var dataDir: String

        func run() throws {
            do {
                try StorageTool.dump(fs: PosixFileSystem(), directory: dataDir, describe: describeLogEntry) { print($0) }
            } catch {
                throw ValidationError("\(error)")
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check every checksum; exit non-zero on damage.")

        @Option(name: .customLong("data-dir"), help: "The member's data directory.")
        var dataDir: String

        func run() throws {
            let damage: [StorageTool.Damage]
            do {
                damage = try StorageTool.verify(fs: PosixFileSystem(), directory: dataDir)
            } catch {
                throw ValidationError("\(error)")
            }
            for problem in damage { print(problem) }
            guard damage.isEmpty else { throw ExitCode(2) }
            print("\(dataDir): no damage found")
        }
    }
}

/// `-flag` becomes `--flag`, as Go's flag package treats them alike.
var arguments = CommandLine.arguments.dropFirst().map { argument in
    argument.hasPrefix("-") && !argument.hasPrefix("--") && argument.count > 2 ? "-" + argument : argument
}.map { argument in
    // Go's boolean flags stand alone (`--auto-tls`); ArgumentParser's options want a value.
    TLSOptions.booleanFlagNames.contains(where: { argument == "--" + $0 }) ? argument + "=true" : argument
}
// Like etcd, every member flag can come from the environment (`ETCD_NAME`, `ETCD_INITIAL_CLUSTER`, ...), as container
// images and unit files written for etcd set them; a flag on the command line wins.
if arguments.first != "storage", arguments.first != "snapshot" {
    // `--` alone names no flag (and has nothing to split).
    let given = Set(arguments.compactMap { $0.hasPrefix("--") ? String($0.dropFirst(2).prefix { $0 != "=" }) : nil })
    for flag in Serve.flagNames where !given.contains(flag) {
        let variable = "ETCD_" + String(flag.uppercased().map { $0 == "-" ? "_" : $0 })
        if let value = getenv(variable) { arguments += ["--" + flag, String(cString: value)] }
    }
}
Cairn.main(arguments)
