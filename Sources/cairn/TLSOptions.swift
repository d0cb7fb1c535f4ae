// etcd's TLS flags for the client and peer URLs. Boolean ones follow Go's flag package: `--auto-tls` alone,
// `--auto-tls=true` and `--auto-tls=false` all work (main.swift turns the bare form into `=true`).
import ArgumentParser
import CairnHTTP
import CairnServer

struct TLSOptions: ParsableArguments {
    @Option(name: .customLong("cert-file"), help: "Path to the client server TLS cert file.")
    var certFile = ""
    @Option(name: .customLong("key-file"), help: "Path to the client server TLS key file.")
    var keyFile = ""
    @Option(name: .customLong("client-cert-auth"), help: "Enable client cert authentication.")
    var clientCertAuth = "false"
    @Option(name: .customLong("trusted-ca-file"), help: "Path to the client server TLS trusted CA cert file.")
    var trustedCAFile = ""
    @Option(name: .customLong("auto-tls"), help: "Client TLS using generated certificates.")
    var autoTLS = "false"
    @Option(name: .customLong("client-crl-file"), help: "Path to the client certificate revocation list file.")
    var clientCRLFile = ""
    @Option(name: .customLong("peer-cert-file"), help: "Path to the peer server TLS cert file.")
    var peerCertFile = ""
    @Option(name: .customLong("peer-key-file"), help: "Path to the peer server TLS key file.")
    var peerKeyFile = ""
    @Option(name: .customLong("peer-client-cert-auth"), help: "Enable peer client cert authentication.")
    var peerClientCertAuth = "false"
    @Option(name: .customLong("peer-trusted-ca-file"), help: "Path to the peer server TLS trusted CA file.")
    var peerTrustedCAFile = ""
    @Option(name: .customLong("peer-auto-tls"), help: "Peer TLS using self-generated certificates if --peer-key-file and --peer-cert-file are not provided.")
    var peerAutoTLS = "false"
    @Option(name: .customLong("peer-cert-allowed-cn"), help: "Required CN for client certs connecting to the peer endpoint.")
    var peerCertAllowedCN = ""
    @Option(name: .customLong("peer-crl-file"), help: "Path to the peer certificate revocation list file.")
    var peerCRLFile = ""
    @Option(name: .customLong("client-cert-allowed-hostname"), help: "Allowed TLS hostname for client cert authentication.")
    var clientCertAllowedHostname = ""
    @Option(name: .customLong("peer-cert-allowed-hostname"), help: "Allowed TLS hostname for inter peer authentication.")
    var peerCertAllowedHostname = ""
    @Option(name: .customLong("cipher-suites"), help: "Comma-separated list of supported TLS cipher suites between client/server and peers (empty for OpenSSL's defaults).")
    var cipherSuites = ""
    @Option(name: .customLong("tls-min-version"), help: "Minimum TLS version supported: TLS1.2 or TLS1.3.")
    var tlsMinVersion = "TLS1.2"

    /// The flags Go parses as booleans: given alone they mean true.
    static let booleanFlagNames = ["client-cert-auth", "auto-tls", "peer-client-cert-auth", "peer-auto-tls"]
    static let flagNames = booleanFlagNames + [
        "cert-file", "key-file", "trusted-ca-file", "client-crl-file", "peer-cert-file", "peer-key-file", "peer-trusted-ca-file",
        "peer-cert-allowed-cn", "peer-crl-file", "client-cert-allowed-hostname", "peer-cert-allowed-hostname", "cipher-suites",
        "tls-min-version",
    ]

    func apply(to configuration: inout ServerConfiguration) throws {
        func boolean(_ value: String, _ flag: String) throws -> Bool {
            // Go's strconv.ParseBool.
            switch value {
            case "1", "t", "T", "true", "TRUE", "True": return true
            case "0", "f", "F", "false", "FALSE", "False": return false
            default: throw ValidationError("invalid boolean value \"\(value)\" for -\(flag)")
            }
        }
        func path(_ value: String) -> String? { value.isEmpty ? nil : value }
        configuration.clientTLS.certificateFile = path(certFile)
        configuration.clientTLS.keyFile = path(keyFile)
        configuration.clientTLS.clientCertificateAuth = try boolean(clientCertAuth, "client-cert-auth")
        configuration.clientTLS.trustedCAFile = path(trustedCAFile)
        configuration.clientTLS.autoTLS = try boolean(autoTLS, "auto-tls")
        configuration.clientTLS.revocationListFile = path(clientCRLFile)
        configuration.peerTLS.certificateFile = path(peerCertFile)
        configuration.peerTLS.keyFile = path(peerKeyFile)
        configuration.peerTLS.clientCertificateAuth = try boolean(peerClientCertAuth, "peer-client-cert-auth")
        configuration.peerTLS.trustedCAFile = path(peerTrustedCAFile)
        configuration.peerTLS.autoTLS = try boolean(peerAutoTLS, "peer-auto-tls")
        configuration.peerTLS.allowedCommonName = path(peerCertAllowedCN)
        configuration.peerTLS.revocationListFile = path(peerCRLFile)
        configuration.clientTLS.allowedHostname = path(clientCertAllowedHostname)
        configuration.peerTLS.allowedHostname = path(peerCertAllowedHostname)
        configuration.cipherSuites = cipherSuites.split(separator: ",").map { String($0.trimmingASCIIWhitespace()) }
        guard let version = TLSVersion(rawValue: tlsMinVersion) else {
            throw ValidationError("--tls-min-version must be TLS1.2 or TLS1.3, not \"\(tlsMinVersion)\"")
        }
        configuration.tlsMinimumVersion = version
    }
}
