// etcd's `--auth-token jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...`: v3 tokens that are signed JSON Web
// Tokens (claims `exp`, `revision`, `username`, as etcd writes them) instead of logged simple tokens, so any member
// with the key checks one without the log. Signing and checking through OpenSSL: RSA (RS256/384/512) and ECDSA
// (ES256/384/512, the signature as JWT's raw r || s).
import CairnAPI
import CairnBase
import COpenSSL
import Glibc

package struct JWTError: Error, CustomStringConvertible {
    package var description: String
}

/// The keys never change after loading and OpenSSL's EVP_PKEY may be shared by threads for signing and verifying.
package final class JWTTokens: @unchecked Sendable {
    enum Method: String { case RS256, RS384, RS512, ES256, ES384, ES512 }
    /// etcd's default lifetime of a JWT: 5 minutes.
    static let ttlSecondsDefault: Int64 = 300

    let method: Method
    let ttlSeconds: Int64
    private let privateKey: OpaquePointer?
    private let publicKey: OpaquePointer

    /// Parses etcd's option string (after `jwt,`) and loads the keys; a member without `priv-key` checks tokens only.
    package init(options: Substring) throws(JWTError) {
        var values: [Substring: Substring] = [:]
        for option in options.split(separator: ",") {
            let parts = option.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw JWTError(description: "--auth-token: \"\(option)\" is not key=value") }
            values[parts[0]] = parts[1]
        }
        guard let name = values["sign-method"], let method = Method(rawValue: String(name)) else {
            throw JWTError(description: "--auth-token jwt needs sign-method=RS256|RS384|RS512|ES256|ES384|ES512")
        }
        self.method = method
        if let ttl = values["ttl"] {
            guard let nanos = parseGoDurationNanos(String(ttl)), nanos >= 1_000_000_000 else {
                throw JWTError(description: "--auth-token: ttl=\(ttl) is not a duration of a second or more")
            }
            ttlSeconds = nanos / 1_000_000_000
        } else {
            ttlSeconds = Self.ttlSecondsDefault
        }
        guard let publicPath = values["pub-key"] else { throw JWTError(description: "--auth-token jwt needs pub-key=PATH") }
        publicKey = try Self.load(String(publicPath), isPrivate: false)
        privateKey = try values["priv-key"].map { path throws(JWTError) in try Self.load(String(path), isPrivate: true) }
        let isEC = EVP_PKEY_get_base_id(publicKey) == EVP_PKEY_EC
        guard isEC == method.rawValue.hasPrefix("ES") else {
            throw JWTError(description: "--auth-token: the key does not suit sign-method=\(method.rawValue)")
        }
    }

    deinit {
        EVP_PKEY_free(publicKey)
        if let privateKey { EVP_PKEY_free(privateKey) }
    }

    /// A token for `user` at auth revision `revision`, nil when this member has no private key.
    func token(user: String, revision: UInt64, nowNanos: Int64) -> String? {
        guard let privateKey else { return nil }
        var claims = GoJSON()
        claims.raw("{\"exp\":")
        claims.number(nowNanos / 1_000_000_000 + ttlSeconds)
        claims.raw(",\"revision\":")
        claims.number(revision)
        claims.raw(",\"username\":")
        claims.string(user)
        claims.raw("}")
        let signed = Self.base64URL(Array("{\"alg\":\"\(method.rawValue)\",\"typ\":\"JWT\"}".utf8)) + "." + Self.base64URL(claims.take())
        guard let signature = sign(Array(signed.utf8), privateKey) else { return nil }
        return signed + "." + Self.base64URL(signature)
    }

    /// The user and auth revision a valid, unexpired token names; nil for anything else.
    func claims(_ token: String, nowNanos: Int64) -> (user: String, revision: UInt64)? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, token.utf8.count <= 16 * 1024,
              let header = Self.fromBase64URL(parts[0]), let payload = Self.fromBase64URL(parts[1]),
              let signature = Self.fromBase64URL(parts[2]),
              case .object(let headerFields)? = try? JSONReader.parse(header),
              headerFields.last(where: { $0.0 == "alg" })?.1 == .string(method.rawValue),
              verify(Array(token.utf8[..<token.utf8.index(token.utf8.startIndex, offsetBy: parts[0].utf8.count + 1 + parts[1].utf8.count)]), signature),
              case .object(let fields)? = try? JSONReader.parse(payload) else { return nil }
        func number(_ name: String) -> String? {
            if case .number(let text)? = fields.last(where: { $0.0 == name })?.1 { return text }
            return nil
        }
        guard case .string(let user)? = fields.last(where: { $0.0 == "username" })?.1,
              let exp = number("exp").flatMap({ Int64($0) }), exp > nowNanos / 1_000_000_000,
              let revision = number("revision").flatMap({ UInt64($0) }) else { return nil }
        return (user, revision)
    }

    // MARK: - OpenSSL

    private var digest: OpaquePointer? {
        switch method {
        case .RS256, .ES256: EVP_sha256()
        case .RS384, .ES384: EVP_sha384()
        case .RS512, .ES512: EVP_sha512()
        }
    }

    /// ECDSA's r and s are each this long in a JWT.
    private var ecdsaHalfBytes: Int {
        switch method {
        case .ES256: 32
        case .ES384: 48
        case .ES512: 66
        default: 0
        }
    }

    private func sign(_ message: [UInt8], _ key: OpaquePointer) -> [UInt8]? {
        guard let context = EVP_MD_CTX_new() else { return nil }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestSignInit(context, nil, digest, nil, key) == 1 else { return nil }
        var length = 0
        guard EVP_DigestSign(context, nil, &length, message, message.count) == 1 else { return nil }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(context, &signature, &length, message, message.count) == 1 else { return nil }
        signature.removeLast(signature.count - length)
        return ecdsaHalfBytes == 0 ? signature : Self.rawECDSA(der: signature, half: ecdsaHalfBytes)
    }

    private func verify(_ message: [UInt8], _ signature: [UInt8]) -> Bool {
        var signature = signature
        if ecdsaHalfBytes > 0 {
            guard signature.count == 2 * ecdsaHalfBytes, let der = Self.derECDSA(raw: signature) else { return false }
            signature = der
        }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, digest, nil, publicKey) == 1 else { return false }
        return EVP_DigestVerify(context, signature, signature.count, message, message.count) == 1
    }

    private static func rawECDSA(der: [UInt8], half: Int) -> [UInt8]? {
        der.withUnsafeBufferPointer { buffer -> [UInt8]? in
            var cursor: UnsafePointer<UInt8>? = buffer.baseAddress
            guard let sig = d2i_ECDSA_SIG(nil, &cursor, der.count) else { return nil }
            defer { ECDSA_SIG_free(sig) }
            var r: OpaquePointer?, s: OpaquePointer?
            ECDSA_SIG_get0(sig, &r, &s)
            var raw = [UInt8](repeating: 0, count: 2 * half)
            let written = raw.withUnsafeMutableBufferPointer { out -> Bool in
                BN_bn2binpad(r, out.baseAddress, Int32(half)) == Int32(half)
                    && BN_bn2binpad(s, out.baseAddress! + half, Int32(half)) == Int32(half)
            }
            return written ? raw : nil
        }
    }

    private static func derECDSA(raw: [UInt8]) -> [UInt8]? {
        let half = raw.count / 2
        guard let sig = ECDSA_SIG_new() else { return nil }
        defer { ECDSA_SIG_free(sig) }
        let r = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress, Int32(half), nil) }
        let s = raw.withUnsafeBufferPointer { BN_bin2bn($0.baseAddress! + half, Int32(half), nil) }
        guard let r, let s, ECDSA_SIG_set0(sig, r, s) == 1 else {
            BN_free(r)
            BN_free(s)
            return nil
        }
        var out: UnsafeMutablePointer<UInt8>?
        let length = i2d_ECDSA_SIG(sig, &out)
        guard length > 0, let out else { return nil }
        defer { CRYPTO_free(out, #file, #line) }
        return Array(UnsafeBufferPointer(start: out, count: Int(length)))
    }

    private static func load(_ path: String, isPrivate: Bool) throws(JWTError) -> OpaquePointer {
        guard let file = fopen(path, "r") else { throw JWTError(description: "--auth-token: cannot read \(path)") }
        defer { fclose(file) }
        let key = isPrivate ? PEM_read_PrivateKey(file, nil, nil, nil) : PEM_read_PUBKEY(file, nil, nil, nil)
        guard let key else { throw JWTError(description: "--auth-token: \(path) holds no PEM \(isPrivate ? "private" : "public") key") }
        return key
    }

    static func base64URL(_ bytes: [UInt8]) -> String {
        var text = String(decoding: Base64.encode(bytes), as: UTF8.self)
        text = String(text.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
        while text.hasSuffix("=") { text.removeLast() }
        return text
    }

    static func fromBase64URL(_ text: Substring) -> [UInt8]? {
        var standard = text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 }
        while standard.count % 4 != 0 { standard.append("=") }
        return try? Base64.decode(Array(String(standard).utf8))
    }
}
