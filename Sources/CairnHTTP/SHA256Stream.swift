// SHA-256 over a stream of pieces through OpenSSL's EVP digest: etcd's snapshot stream ends with the digest of what
// came before it, which etcdctl's `snapshot save` expects (it checks the length, `restore` the digest).
import COpenSSL

package final class SHA256Stream: @unchecked Sendable {
    private let context: OpaquePointer

    package init() {
        context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    deinit {
        EVP_MD_CTX_free(context)
    }

    package func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
    }

    /// The digest (32 bytes); the stream is spent after it.
    package func finish() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        digest.withUnsafeMutableBufferPointer { _ = EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        return digest
    }
}
