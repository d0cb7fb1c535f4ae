// TLS settings as etcd's flags give them, and the OpenSSL context built from them: certificate, key, trusted CA,
// CRL, cipher suites, minimum version, ALPN, session cache. It reloads when its files change on disk.
import COpenSSL
import Glibc
import Synchronization

package enum TLSVersion: String, Sendable, CaseIterable {
    case tls12 = "TLS1.2"
    case tls13 = "TLS1.3"
}

package struct TLSConfiguration: Sendable {
    /// This side's certificate and key: required to accept; a dialler without them shows no client certificate.
    package var certificateFile: String?
    package var keyFile: String?
    /// Peers' certificates must chain to this CA (accepting: with `requiresClientCertificate`; dialling: always).
    package var trustedCAFile: String?
    /// Dialling without `trustedCAFile`: check the server against the system's CAs (as etcdctl does) rather than not
    /// at all (as members with `--peer-auto-tls` do).
    package var trustsSystemCAs = false
    /// `--client-cert-auth`: a client without a certificate from the trusted CA fails the handshake.
    package var requiresClientCertificate = false
    /// Certificates this list revokes fail the handshake. As in etcd only its serial numbers count: an expired list,
    /// or a certificate whose issuer has none in it, is not refused for that.
    package var revocationListFile: String?
    /// TLS 1.2 suites by their IANA (Go) names, as `--cipher-suites` takes them; empty for OpenSSL's defaults.
    /// TLS 1.3 suites are not configurable, as in Go.
    package var cipherSuites: [String] = []
    package var minimumVersion = TLSVersion.tls12
    /// `--peer-cert-allowed-cn`: the peer's certificate must carry this common name.
    package var allowedCommonName: String?
    /// `--client-cert-allowed-hostname`, `--peer-cert-allowed-hostname`: the peer's certificate must name this host (or
    /// address) among its subject alternative names, as Go's `VerifyHostname` checks.
    package var allowedHostname: String?
    /// Offer `h2` and `http/1.1` by ALPN (client port); the peer port speaks its own protocol and offers none.
    package var offersHTTP = false
    /// The files are looked at no more often than this, and only when a handshake starts; new handshakes then use
    /// the new pair, connections already made keep theirs.
    package var reloadCheckIntervalMilliseconds = 2000

    package init(certificateFile: String?, keyFile: String?) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}

package struct TLSError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }

    /// `what` followed by OpenSSL's queued errors (which are cleared).
    static func openSSL(_ what: String) -> TLSError { TLSError("\(what): \(drainOpenSSLErrors())") }
}

/// OpenSSL's error queue for this thread as one line, emptied.
func drainOpenSSLErrors() -> String {
    var reasons: [String] = []
    while true {
        let code = ERR_get_error()
        if code == 0 { break }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &text, text.count)
        // `count` bounds the loop: a queue is short, but nothing here should trust that.
        if reasons.count < 8 { reasons.append(String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
    }
    return reasons.isEmpty ? "no detail from OpenSSL" : reasons.joined(separator: "; ")
}

/// An OpenSSL context for one side (accepting or dialling), rebuilt when its files change. Thread-safe: sessions are
/// made on any I/O queue.
package final class TLSContext: @unchecked Sendable {
    package enum Role: Sendable { case accepting, dialling }

    /// Sessions a server remembers for resumption (TLS 1.2 session IDs; tickets need no memory on the server).
    package static let sessionCacheEntriesMax = 10_000
    /// Refused handshakes reported per second at most; the rest are counted in the next report, so garbage from the
    /// network cannot flood the log.
    package static let refusalReportsPerSecondMax = 10

    package let configuration: TLSConfiguration
    package let role: Role
    private let report: @Sendable (String) -> Void
    private let state: Mutex<State>
    private let refusals = Mutex((windowNanos: UInt64(0), reported: 0, suppressed: 0))

    private struct State: @unchecked Sendable {
        var context: OpaquePointer
        var stamps: [FileStamp]
        var checkedNanos: UInt64
    }

    /// Builds the context now, so a bad file or flag fails at start-up. `report` hears about reloads.
    package init(configuration: TLSConfiguration, role: Role, report: @escaping @Sendable (String) -> Void = { _ in }) throws(TLSError) {
        self.configuration = configuration
        self.role = role
        self.report = report
        // OpenSSL writes to the socket with write(2), not send(MSG_NOSIGNAL): a peer gone must not kill the process.
        signal(SIGPIPE, SIG_IGN)
        let stamps = FileStamp.of(Self.files(configuration))
        let context = try Self.makeContext(configuration, role: role)
        state = Mutex(State(context: context, stamps: stamps, checkedNanos: monotonicNanoseconds()))
    }

    deinit {
        state.withLock { SSL_CTX_free($0.context) }
    }

    /// A session over the connected socket `fd`, with the current certificate (nil if OpenSSL has no memory for it).
    /// `serverName`: the host dialled, checked against the peer's certificate when a CA is configured; `resuming`: a
    /// session from an earlier connection to it.
    package func makeSession(fd: Int32, serverName: String? = nil, resuming: TLSSession? = nil) -> TLSStream? {
        let context = currentContext()
        defer { SSL_CTX_free(context) }
        return TLSStream(context: context, fd: fd, accepting: role == .accepting, serverName: serverName,
                         verifiesServer: configuration.trustedCAFile != nil || configuration.trustsSystemCAs, allowedCommonName: configuration.allowedCommonName,
                         allowedHostname: configuration.allowedHostname, resuming: role == .dialling ? resuming : nil)
    }

    /// Reports a handshake refused (an untrusted certificate, garbage, a timeout) with the peer's address, as etcd
    /// logs "rejected connection".
    package func handshakeRefused(fd: Int32, reason: String, now: UInt64 = monotonicNanoseconds()) {
        let suppressed: Int? = refusals.withLock { window in
            // Another queue may have read a later clock and taken the lock first: never subtract past zero.
            if now >= window.windowNanos, now - window.windowNanos >= 1_000_000_000 {
                window.windowNanos = now
                window.reported = 0
            }
            guard window.reported < Self.refusalReportsPerSecondMax else {
                window.suppressed += 1
                return nil
            }
            window.reported += 1
            defer { window.suppressed = 0 }
            return window.suppressed
        }
        guard let suppressed else { return }
        let more = suppressed > 0 ? " (and \(suppressed) more not reported)" : ""
        report("tls: rejected connection from \(Socket.peerAddress(fd)): \(reason)\(more)")
    }

    /// The context to start a handshake with, referenced for the caller (free it); rebuilt first if its files changed.
    private func currentContext() -> OpaquePointer {
        let now = monotonicNanoseconds()
        let due = state.withLock { state -> [FileStamp]? in
            // Another queue may have read a later clock and checked first: never subtract past zero.
            guard now >= state.checkedNanos,
                  now - state.checkedNanos >= UInt64(max(0, configuration.reloadCheckIntervalMilliseconds)) * 1_000_000 else { return nil }
            state.checkedNanos = now
            return state.stamps
        }
        if let previous = due {
            let stamps = FileStamp.of(Self.files(configuration))
            if stamps != previous {
                // Built outside the lock: handshakes on other queues go on with the old pair meanwhile.
                do {
                    let fresh = try Self.makeContext(configuration, role: role)
                    state.withLock { state in
                        SSL_CTX_free(state.context)
                        state.context = fresh
                        state.stamps = stamps
                    }
                    report("tls: reloaded \(Self.files(configuration).joined(separator: ", "))")
                } catch {
                    // A half-written pair fails to load; the old one serves until the files make sense again.
                    report("tls: keeping the previous certificate: \(error)")
                }
            }
        }
        return state.withLock { state in
            SSL_CTX_up_ref(state.context)
            return state.context
        }
    }

    private static func files(_ configuration: TLSConfiguration) -> [String] {
        [configuration.certificateFile, configuration.keyFile, configuration.trustedCAFile, configuration.revocationListFile].compactMap { $0 }
    }

    private static func makeContext(_ configuration: TLSConfiguration, role: Role) throws(TLSError) -> OpaquePointer {
        ERR_clear_error()
        guard let context = SSL_CTX_new(role == .accepting ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError.openSSL("cannot make a TLS context")
        }
        do {
            try configure(context, configuration, role: role)
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        return context
    }

    private static func configure(_ context: OpaquePointer, _ configuration: TLSConfiguration, role: Role) throws(TLSError) {
        let minimum = configuration.minimumVersion == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard cairn_SSL_CTX_set_min_proto_version(context, minimum) == 1 else { throw TLSError.openSSL("minimum TLS version") }
        _ = cairn_SSL_CTX_set_mode(context)
        cairn_SSL_CTX_set_options(context)
        switch (configuration.certificateFile, configuration.keyFile) {
        case (let certificate?, let key?):
            guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1 else {
                throw TLSError.openSSL("cannot load the certificate \(certificate)")
            }
            guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else { throw TLSError.openSSL("cannot load the key \(key)") }
            guard SSL_CTX_check_private_key(context) == 1 else {
                throw TLSError.openSSL("the key \(key) does not match the certificate \(certificate)")
            }
        case (nil, nil) where role == .dialling:
            break
        default:
            throw TLSError("a TLS \(role == .accepting ? "server needs" : "client certificate needs") both a certificate and a key file")
        }
        if !configuration.cipherSuites.isEmpty {
            var names: [String] = []
            for suite in configuration.cipherSuites {
                // Go also names the ChaCha20 suites without their hash.
                guard let name = cairn_openssl_cipher_name(suite) ?? cairn_openssl_cipher_name(suite + "_SHA256") else {
                    throw TLSError("unexpected TLS cipher suite \"\(suite)\"")
                }
                names.append(String(cString: name))
            }
            guard SSL_CTX_set_cipher_list(context, names.joined(separator: ":")) == 1 else {
                throw TLSError.openSSL("cipher suites \(configuration.cipherSuites.joined(separator: ","))")
            }
        }
        if let authority = configuration.trustedCAFile {
            guard SSL_CTX_load_verify_locations(context, authority, nil) == 1 else {
                throw TLSError.openSSL("cannot load the trusted CA file \(authority)")
            }
        }
        if let revocations = configuration.revocationListFile {
            let store = SSL_CTX_get_cert_store(context)
            guard let lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file()),
                  X509_load_crl_file(lookup, revocations, X509_FILETYPE_PEM) >= 1 else {
                throw TLSError.openSSL("cannot load the revocation list \(revocations)")
            }
            X509_STORE_set_flags(store, UInt(X509_V_FLAG_CRL_CHECK))
        }
        switch role {
        case .accepting:
            if configuration.requiresClientCertificate {
                cairn_SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT)
                if let authority = configuration.trustedCAFile, let names = SSL_load_client_CA_file(authority) {
                    SSL_CTX_set_client_CA_list(context, names)
                }
            }
            cairn_SSL_CTX_set_session_cache(context, sessionCacheEntriesMax)
            // Sessions resume only into the context that made them; this names it (required with client certificates).
            let contextID = Array("cairn".utf8)
            _ = SSL_CTX_set_session_id_context(context, contextID, UInt32(contextID.count))
            if configuration.offersHTTP { cairn_SSL_CTX_select_http_alpn(context) }
        case .dialling:
            if configuration.trustedCAFile == nil, configuration.trustsSystemCAs, SSL_CTX_set_default_verify_paths(context) != 1 {
                throw TLSError.openSSL("cannot load the system's CA certificates")
            }
            if configuration.trustedCAFile != nil || configuration.trustsSystemCAs { cairn_SSL_CTX_set_verify(context, SSL_VERIFY_PEER) }
        }
    }
}

/// What tells a file changed: its inode (a file replaced by rename), size and modification time.
private struct FileStamp: Equatable {
    var inode: UInt
    var size: Int
    var modifiedSeconds: Int
    var modifiedNanos: Int

    static func of(_ paths: [String]) -> [FileStamp] {
        paths.map { path in
            var info = stat()
            guard stat(path, &info) == 0 else { return FileStamp(inode: 0, size: -1, modifiedSeconds: 0, modifiedNanos: 0) }
            return FileStamp(inode: UInt(info.st_ino), size: Int(info.st_size), modifiedSeconds: Int(info.st_mtim.tv_sec),
                             modifiedNanos: Int(info.st_mtim.tv_nsec))
        }
    }
}
