// One TLS session over a non-blocking socket, driven by its owner's Dispatch sources: handshake, read, write.
// OpenSSL reads and writes the descriptor itself (SSL_set_fd) rather than memory BIOs: readiness of the socket is then
// exactly what OpenSSL waits for (WANT_READ is the read source, WANT_WRITE the write source), no second pair of
// buffers holds ciphertext, and OpenSSL holds at most one record (16 KiB and its overhead) each way, released when idle
// (SSL_MODE_RELEASE_BUFFERS). A record longer than TLS allows is refused by OpenSSL with an alert.
import COpenSSL
import Glibc

package final class TLSStream {
    package enum ReadResult: Equatable {
        case bytes(Int)
        /// Nothing now: wait for readability (or writability when `waitsForWritable`).
        case wouldBlock
        /// The peer closed (with or without close_notify).
        case ended
        case failed(String)
    }

    package enum WriteResult: Equatable {
        case wrote(Int)
        case wouldBlock
        case failed(String)
    }

    private let ssl: OpaquePointer
    /// `--peer-cert-allowed-cn`, as the C string OpenSSL's verify callback reads for as long as the session lives.
    private let allowedCommonName: UnsafeMutablePointer<CChar>?
    package private(set) var isHandshaking = true
    /// The last call stopped because OpenSSL must write first (a handshake message, a ticket): wait for writability.
    package private(set) var waitsForWritable = false
    /// The protocol chosen by ALPN (`h2`, `http/1.1`), once the handshake is done.
    package private(set) var negotiatedProtocol: String?

    /// Nil when OpenSSL cannot make a session (out of memory). A dialler `resuming` a session offers it to the server.
    init?(context: OpaquePointer, fd: Int32, accepting: Bool, serverName: String?, verifiesServer: Bool, allowedCommonName: String?,
          allowedHostname: String?, resuming: TLSSession?) {
        guard let ssl = SSL_new(context) else { return nil }
        self.ssl = ssl
        self.allowedCommonName = accepting ? allowedCommonName.flatMap { strdup($0) } : nil
        guard SSL_set_fd(ssl, fd) == 1 else {
            SSL_free(ssl)
            free(self.allowedCommonName)
            return nil
        }
        if accepting {
            SSL_set_accept_state(ssl)
            if let allowedCommonName = self.allowedCommonName { cairn_SSL_require_cn(ssl, allowedCommonName) }
            if let allowedHostname {
                // Checked by the verifier, as Go's VerifyHostname checks it (SANs only), so a mismatch fails the
                // handshake with a bad_certificate alert as etcd's does.
                let parameters = SSL_get0_param(ssl)
                X509_VERIFY_PARAM_set_hostflags(parameters, UInt32(X509_CHECK_FLAG_NEVER_CHECK_SUBJECT))
                if isAddressLiteral(allowedHostname) {
                    _ = X509_VERIFY_PARAM_set1_ip_asc(parameters, allowedHostname)
                } else {
                    _ = X509_VERIFY_PARAM_set1_host(parameters, allowedHostname, allowedHostname.utf8.count)
                }
            }
        } else {
            SSL_set_connect_state(ssl)
            if let resuming { _ = SSL_set_session(ssl, resuming.session) }
            if let serverName {
                let isAddress = isAddressLiteral(serverName)
                // A name goes in SNI; an address is checked against the certificate's IP entries instead.
                if !isAddress { _ = cairn_SSL_set_tlsext_host_name(ssl, serverName) }
                if verifiesServer {
                    if isAddress {
                        _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverName)
                    } else {
                        _ = SSL_set1_host(ssl, serverName)
                    }
                }
            }
        }
    }

    deinit {
        SSL_free(ssl)
        free(allowedCommonName)
    }

    /// Decrypted bytes OpenSSL holds that the socket will not announce again.
    package var hasBufferedInput: Bool { SSL_pending(ssl) > 0 }

    /// Whether the handshake reused an earlier session.
    package var resumedSession: Bool { cairn_SSL_session_reused(ssl) == 1 }

    /// The session a later connection to the same server may resume (nil until the server sent a ticket).
    package func resumableSession() -> TLSSession? {
        guard !isHandshaking, let session = SSL_get1_session(ssl) else { return nil }
        guard SSL_SESSION_is_resumable(session) == 1 else {
            SSL_SESSION_free(session)
            return nil
        }
        return TLSSession(session)
    }

    /// Reads up to `buffer.count` decrypted bytes, finishing the handshake first.
    package func read(into buffer: UnsafeMutableRawBufferPointer) -> ReadResult {
        if isHandshaking {
            if let blocked = continueHandshake() { return blocked == .wouldBlock ? .wouldBlock : .failed(blocked.reason) }
        }
        ERR_clear_error()
        let n = SSL_read(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
        if n > 0 {
            waitsForWritable = false
            return .bytes(Int(n))
        }
        switch outcome(of: n) {
        case .wouldBlock: return .wouldBlock
        case .ended: return .ended
        case .failed(let reason): return .failed(reason)
        }
    }

    /// Writes from `buffer`, finishing the handshake first. A retry after `.wouldBlock` must offer the same bytes
    /// again at its start (they may have moved: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
    package func write(_ buffer: UnsafeRawBufferPointer) -> WriteResult {
        if isHandshaking {
            if let blocked = continueHandshake() { return blocked == .wouldBlock ? .wouldBlock : .failed(blocked.reason) }
        }
        guard !buffer.isEmpty else { return .wrote(0) }
        ERR_clear_error()
        let n = SSL_write(ssl, buffer.baseAddress, Int32(clamping: buffer.count))
        if n > 0 {
            waitsForWritable = false
            return .wrote(Int(n))
        }
        switch outcome(of: n) {
        case .wouldBlock: return .wouldBlock
        case .ended: return .failed("the peer closed the connection")
        case .failed(let reason): return .failed(reason)
        }
    }

    /// Sends close_notify if the socket takes it now; never waits (the connection is closing anyway).
    package func closeNotify() {
        guard !isHandshaking else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    private enum Blocked: Equatable {
        case wouldBlock
        case failed(String)
        var reason: String { if case .failed(let reason) = self { reason } else { "" } }
    }

    /// Nil once the handshake is done (and the peer's certificate, if any, accepted).
    private func continueHandshake() -> Blocked? {
        ERR_clear_error()
        let status = SSL_do_handshake(ssl)
        guard status == 1 else {
            switch outcome(of: status) {
            case .wouldBlock: return .wouldBlock
            case .ended: return .failed("the peer closed the connection during the TLS handshake")
            case .failed(let reason):
                // OpenSSL's reason is "certificate verify failed"; the verifier says which check failed.
                let verdict = SSL_get_verify_result(ssl)
                let detail = switch Int32(truncatingIfNeeded: verdict) {
                case X509_V_OK: ""
                case X509_V_ERR_APPLICATION_VERIFICATION: " (the certificate's CN is not the one allowed)"
                default: " (\(String(cString: X509_verify_cert_error_string(verdict))))"
                }
                return .failed("TLS handshake: \(reason)\(detail)")
            }
        }
        isHandshaking = false
        waitsForWritable = false
        var selected: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &selected, &length)
        if let selected, length > 0 {
            negotiatedProtocol = String(decoding: UnsafeBufferPointer(start: selected, count: Int(length)), as: UTF8.self)
        }
        return nil
    }

    private enum Outcome {
        case wouldBlock
        case ended
        case failed(String)
    }

    private func outcome(of status: Int32) -> Outcome {
        let savedErrno = errno
        switch SSL_get_error(ssl, status) {
        case SSL_ERROR_WANT_READ:
            waitsForWritable = false
            return .wouldBlock
        case SSL_ERROR_WANT_WRITE:
            waitsForWritable = true
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .ended
        case SSL_ERROR_SYSCALL:
            if savedErrno == EAGAIN || savedErrno == EWOULDBLOCK || savedErrno == EINTR { return .wouldBlock }
            if savedErrno == 0 { return .ended }
            return .failed(String(cString: strerror(savedErrno)))
        default:
            return .failed(drainOpenSSLErrors())
        }
    }

    /// The common name of the peer's certificate (the first, if several), or nil without one: what a client
    /// certificate names its user by.
    package func peerCommonName() -> String? {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        guard let subject = X509_get_subject_name(certificate) else { return nil }
        let index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(subject, index), let data = X509_NAME_ENTRY_get_data(entry) else { return nil }
        guard let bytes = ASN1_STRING_get0_data(data) else { return nil }
        let count = Int(ASN1_STRING_length(data))
        guard count >= 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
    }
}

/// A dialler's TLS session kept to resume the next connection to the same server with (one reference, freed here).
package final class TLSSession: @unchecked Sendable {
    let session: OpaquePointer

    init(_ session: OpaquePointer) { self.session = session }

    deinit { SSL_SESSION_free(session) }
}

/// An IPv4 or IPv6 literal (checked against a certificate's IP entries), as opposed to a host name.
func isAddressLiteral(_ host: String) -> Bool {
    host.contains(":") || (!host.isEmpty && host.allSatisfy { $0 == "." || ("0"..."9").contains($0) })
}
