// etcd's TLS flags for one side (client or peer) and the OpenSSL contexts they make: certificate files or a
// self-signed pair (`--auto-tls`), CA, CRL, client-certificate auth; refused at start-up as etcd refuses them.
import CairnHTTP

package struct TLSFlags: Sendable {
    package enum Side: String, Sendable {
        case client, peer
        /// The flag prefix: `--cert-file` for clients, `--peer-cert-file` for peers.
        var prefix: String { self == .client ? "" : "peer-" }
    }

    package var side: Side
    package var certificateFile: String?
    package var keyFile: String?
    package var trustedCAFile: String?
    /// `--client-cert-auth` / `--peer-client-cert-auth`.
    package var clientCertificateAuth = false
    /// `--auto-tls` / `--peer-auto-tls`: a self-signed pair in the data directory when no files are given.
    package var autoTLS = false
    /// `--client-crl-file` / `--peer-crl-file`.
    package var revocationListFile: String?
    /// `--peer-cert-allowed-cn` (peers only).
    package var allowedCommonName: String?
    /// `--client-cert-allowed-hostname` / `--peer-cert-allowed-hostname`.
    package var allowedHostname: String?

    package init(side: Side) { self.side = side }

    /// Whether anything asks for TLS on this side.
    var isConfigured: Bool { certificateFile != nil || keyFile != nil || autoTLS }

    /// The settings to build contexts from, or nil when the side stays in the clear. `urls` are this side's listen URLs
    /// (an `https://` one needs a certificate); auto TLS names their hosts and writes under `dataDirectory`.
    func configuration(urls: [ListenAddress], dataDirectory: String, cipherSuites: [String],
                       minimumVersion: TLSVersion) throws -> TLSConfiguration? {
        let files: (certificate: String, key: String)
        switch (certificateFile, keyFile) {
        case (let certificate?, let key?):
            files = (certificate, key)
        case (nil, nil):
            if autoTLS {
                files = try SelfSignedCertificate.ensure(directory: dataDirectory + "/fixtures/\(side.rawValue)",
                                                         hosts: Array(Set(urls.map(\.host))).sorted())
            } else if let secure = urls.first(where: \.usesTLS) {
                throw ConfigurationError(
                    "TLS key/cert (--\(side.prefix)cert-file, --\(side.prefix)key-file) must be provided for \(side.rawValue) url \(secure.url) with HTTPS scheme")
            } else {
                return nil
            }
        default:
            throw ConfigurationError("--\(side.prefix)cert-file and --\(side.prefix)key-file must be given together")
        }
        var configuration = TLSConfiguration(certificateFile: files.certificate, keyFile: files.key)
        configuration.trustedCAFile = trustedCAFile
        configuration.requiresClientCertificate = clientCertificateAuth
        configuration.revocationListFile = revocationListFile
        configuration.allowedCommonName = allowedCommonName
        configuration.allowedHostname = allowedHostname
        configuration.cipherSuites = cipherSuites
        configuration.minimumVersion = minimumVersion
        configuration.offersHTTP = side == .client
        if clientCertificateAuth, trustedCAFile == nil {
            throw ConfigurationError("--\(side == .client ? "" : "peer-")client-cert-auth needs --\(side.prefix)trusted-ca-file")
        }
        return configuration
    }
}
