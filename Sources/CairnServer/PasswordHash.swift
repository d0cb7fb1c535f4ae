// Password hashes for v3 auth: bcrypt (`$2b$`, etcd's choice) through libxcrypt, with etcd's `--bcrypt-cost`.
// Hashing is slow on purpose (about 60 ms at cost 10), so callers run it off the connection and node queues.
import CCrypt

package enum PasswordHash {
    /// etcd's default `--bcrypt-cost` and the range it accepts (bcrypt's own).
    package static let costDefault = 10
    package static let costRange = 4...31

    /// A new salted hash of `password`, nil if libxcrypt refuses (an unsupported cost).
    static func make(_ password: String, cost: Int) -> String? {
        var salt = [CChar](repeating: 0, count: Int(CRYPT_GENSALT_OUTPUT_SIZE))
        guard crypt_gensalt_rn("$2b$", UInt(cost), nil, 0, &salt, Int32(salt.count)) != nil else { return nil }
        return hash(password, setting: salt)
    }

    /// Whether `password` hashes to `stored` (a hash `make` returned).
    static func verify(_ password: String, against stored: String) -> Bool {
        guard stored.hasPrefix("$2"), let computed = stored.withCString({ hash(password, setting: $0) }) else { return false }
        // Equal lengths by construction; compare every byte so timing does not tell where they differ.
        let a = Array(computed.utf8), b = Array(stored.utf8)
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    private static func hash(_ password: String, setting: UnsafePointer<CChar>) -> String? {
        // crypt_data is large (about 32 KiB): on the heap, one per call, so calls on any thread are independent.
        let data = UnsafeMutablePointer<crypt_data>.allocate(capacity: 1)
        defer { data.deallocate() }
        data.initialize(to: crypt_data())
        guard let result = crypt_rn(password, setting, data, Int32(MemoryLayout<crypt_data>.size)), result.pointee != 0x2A /* "*" */ else {
            return nil
        }
        return String(cString: result)
    }
}
