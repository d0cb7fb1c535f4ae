// Text the HTTP/1.1 connection writes and reads on the wire besides the parser's: Go's header-name case, and the
// base64url of the h2c upgrade's HTTP2-Settings header.

/// Writes a lowercased header name as Go does (`x-etcd-index` → `X-Etcd-Index`): clients compare recorded answers.
func appendCanonicalHeaderName(_ lowercased: String, to bytes: inout [UInt8]) {
    var upper = true
    for byte in lowercased.utf8 {
        bytes.append(upper && byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 32 : byte)
        upper = byte == UInt8(ascii: "-")
    }
}

/// The base64url alphabet without padding, used by the HTTP2-Settings header (RFC 7540 §3.2.1).
enum Base64URL {
    static func decode(_ text: String) -> [UInt8]? {
        var bits: UInt32 = 0
        var bitCount = 0
        var output: [UInt8] = []
        for byte in text.utf8 {
            let value: UInt8
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = byte - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): value = byte - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = byte - UInt8(ascii: "0") + 52
            case UInt8(ascii: "-"), UInt8(ascii: "+"): value = 62
            case UInt8(ascii: "_"), UInt8(ascii: "/"): value = 63
            case UInt8(ascii: "="): continue
            default: return nil
            }
            bits = bits << 6 | UInt32(value)
            bitCount += 6
            if bitCount >= 8 {
                bitCount -= 8
                output.append(UInt8(truncatingIfNeeded: bits >> UInt32(bitCount)))
            }
        }
        return output
    }
}
