// `--auto-tls` and `--peer-auto-tls`: a self-signed certificate and key made at start, as etcd makes them (ECDSA,
// organisation "etcd", one year, the listen hosts as names), kept in the data directory and reused when present.
import COpenSSL
import Glibc

package enum SelfSignedCertificate {
    package static let validitySeconds = 365 * 24 * 3600

    /// `directory`/cert.pem and key.pem, made now unless both exist; returns their paths.
    package static func ensure(directory: String, hosts: [String]) throws(TLSError) -> (certificate: String, key: String) {
        let certificate = directory + "/cert.pem", key = directory + "/key.pem"
        if access(certificate, F_OK) == 0, access(key, F_OK) == 0 { return (certificate, key) }
        try makeDirectories(directory)
        ERR_clear_error()
        guard let keyContext = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nil) else { throw TLSError.openSSL("auto TLS: key context") }
        defer { EVP_PKEY_CTX_free(keyContext) }
        var privateKey: OpaquePointer?
        guard EVP_PKEY_keygen_init(keyContext) == 1, cairn_EVP_PKEY_CTX_set_ec_curve(keyContext, NID_X9_62_prime256v1) == 1,
              EVP_PKEY_keygen(keyContext, &privateKey) == 1, let privateKey else { throw TLSError.openSSL("auto TLS: cannot make a key") }
        defer { EVP_PKEY_free(privateKey) }
        guard let x509 = X509_new() else { throw TLSError.openSSL("auto TLS: certificate") }
        defer { X509_free(x509) }
        let subject = X509_get_subject_name(x509)
        let altNames = hosts.map { host in
            isAddressLiteral(host) ? "IP:\(host)" : "DNS:\(host)"
        }.joined(separator: ",")
        guard X509_set_version(x509, 2) == 1,
              ASN1_INTEGER_set(X509_get_serialNumber(x509), Int.random(in: 1...Int(Int32.max))) == 1,
              X509_gmtime_adj(X509_getm_notBefore(x509), 0) != nil,
              X509_gmtime_adj(X509_getm_notAfter(x509), validitySeconds) != nil,
              X509_set_pubkey(x509, privateKey) == 1,
              X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC, "etcd", -1, -1, 0) == 1,
              X509_set_issuer_name(x509, subject) == 1,
              addExtension(x509, NID_key_usage, "critical,digitalSignature,keyEncipherment"),
              addExtension(x509, NID_ext_key_usage, "serverAuth,clientAuth"),
              altNames.isEmpty || addExtension(x509, NID_subject_alt_name, altNames),
              X509_sign(x509, privateKey, EVP_sha256()) > 0
        else { throw TLSError.openSSL("auto TLS: cannot make the certificate") }
        try write(key, mode: 0o600) { PEM_write_bio_PrivateKey($0, privateKey, nil, nil, 0, nil, nil) == 1 }
        try write(certificate, mode: 0o644) { PEM_write_bio_X509($0, x509) == 1 }
        return (certificate, key)
    }

    private static func addExtension(_ x509: OpaquePointer, _ nid: Int32, _ value: String) -> Bool {
        guard let extensionValue = X509V3_EXT_conf_nid(nil, nil, nid, value) else { return false }
        defer { X509_EXTENSION_free(extensionValue) }
        return X509_add_ext(x509, extensionValue, -1) == 1
    }

    /// Writes `path` through a BIO, created with `mode` first so a key is never readable by others.
    private static func write(_ path: String, mode: mode_t, _ body: (OpaquePointer) -> Bool) throws(TLSError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw TLSError("auto TLS: cannot write \(path): \(String(cString: strerror(errno)))") }
        guard let bio = BIO_new_fd(fd, BIO_CLOSE) else {
            close(fd)
            throw TLSError.openSSL("auto TLS: cannot write \(path)")
        }
        defer { BIO_free_all(bio) }
        guard body(bio) else { throw TLSError.openSSL("auto TLS: cannot write \(path)") }
    }

    private static func makeDirectories(_ path: String) throws(TLSError) {
        var partial = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, 0o700) != 0, errno != EEXIST {
                throw TLSError("auto TLS: cannot make \(partial): \(String(cString: strerror(errno)))")
            }
        }
    }
}
