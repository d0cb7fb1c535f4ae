// JSON written directly into bytes the way Go's encoding/json writes it (etcd's answers are Go's output):
// HTML-safe escapes for <, > and &, \u2028 and \u2029 escaped, RFC 3339 times with nanoseconds trimmed.

package struct GoJSON {
    package private(set) var bytes: [UInt8] = []

    package init(capacity: Int = 256) {
        bytes.reserveCapacity(capacity)
    }

    package mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    package mutating func literal(_ text: String) {
        bytes.append(contentsOf: text.utf8)
    }

    /// Bytes that are already JSON text (base64, digits), appended as they are.
    package mutating func raw(bytes text: [UInt8]) {
        bytes.append(contentsOf: text)
    }

    package mutating func number<T: BinaryInteger>(_ value: T) {
        bytes.append(contentsOf: String(value).utf8)
    }

    package mutating func string(_ text: String) {
        var text = text
        text.withUTF8 { string(utf8: $0) }
    }

    /// A string given as bytes, as Go writes one: valid UTF-8 is copied (but for Go's escapes), and each byte that
    /// does not start a valid UTF-8 sequence becomes `\ufffd`, as in Go's `encodeState.string`.
    package mutating func string<C: Collection<UInt8>>(utf8: C) {
        bytes.append(UInt8(ascii: "\""))
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            switch byte {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case UInt8(ascii: "\n"): raw("\\n")
            case UInt8(ascii: "\r"): raw("\\r")
            case UInt8(ascii: "\t"): raw("\\t")
            case UInt8(ascii: "<"): raw("\\u003c")
            case UInt8(ascii: ">"): raw("\\u003e")
            case UInt8(ascii: "&"): raw("\\u0026")
            case 0..<0x20:
                raw("\\u00")
                let hex: StaticString = "0123456789abcdef"
                hex.withUTF8Buffer { digits in
                    bytes.append(digits[Int(byte >> 4)])
                    bytes.append(digits[Int(byte & 0xF)])
                }
            case 0x20..<0x80:
                // A run of bytes that need no escape is copied at once (most values are one such run).
                var end = utf8.index(after: index)
                while end != utf8.endIndex, Self.isPlain(utf8[end]) { end = utf8.index(after: end) }
                bytes.append(contentsOf: utf8[index..<end])
                index = end
                continue
            default:
                let length = validSequenceLength(utf8, at: index)
                guard length > 0 else {
                    raw("\\ufffd")
                    index = utf8.index(after: index)
                    continue
                }
                let end = utf8.index(index, offsetBy: length)
                // U+2028 and U+2029 (E2 80 A8, E2 80 A9) are escaped, as Go does for JavaScript's sake.
                if length == 3, byte == 0xE2, utf8[utf8.index(after: index)] == 0x80,
                    case let third = utf8[utf8.index(index, offsetBy: 2)], third == 0xA8 || third == 0xA9
                {
                    raw(third == 0xA8 ? "\\u2028" : "\\u2029")
                } else {
                    bytes.append(contentsOf: utf8[index..<end])
                }
                index = end
                continue
            }
            index = utf8.index(after: index)
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Printable ASCII that Go writes as it is.
    private static func isPlain(_ byte: UInt8) -> Bool {
        byte >= 0x20 && byte < 0x80 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") && byte != UInt8(ascii: "<")
            && byte != UInt8(ascii: ">") && byte != UInt8(ascii: "&")
    }

    /// The length of the valid UTF-8 sequence starting at `index` (a lead byte of 0x80 or more), or 0 if there is
    /// none: Go's `utf8.DecodeRune` rules (no overlong forms, no surrogates, nothing above U+10FFFF).
    private func validSequenceLength<C: Collection<UInt8>>(_ utf8: C, at index: C.Index) -> Int {
        let lead = utf8[index]
        // The length a lead byte announces and the range its second byte must fall in.
        let length: Int, second: ClosedRange<UInt8>
        switch lead {
        case 0xC2...0xDF: (length, second) = (2, 0x80...0xBF)
        case 0xE0: (length, second) = (3, 0xA0...0xBF)
        case 0xE1...0xEC, 0xEE...0xEF: (length, second) = (3, 0x80...0xBF)
        case 0xED: (length, second) = (3, 0x80...0x9F)
        case 0xF0: (length, second) = (4, 0x90...0xBF)
        case 0xF1...0xF3: (length, second) = (4, 0x80...0xBF)
        case 0xF4: (length, second) = (4, 0x80...0x8F)
        default: return 0
        }
        var position = utf8.index(after: index)
        for offset in 1..<length {
            guard position != utf8.endIndex else { return 0 }
            let byte = utf8[position]
            guard offset == 1 ? second.contains(byte) : (0x80...0xBF).contains(byte) else { return 0 }
            position = utf8.index(after: position)
        }
        return length
    }

    /// Go's `time.Time` in JSON: RFC 3339 in UTC with the fraction's trailing zeros removed.
    package mutating func time(unixNanoseconds: Int64) {
        bytes.append(UInt8(ascii: "\""))
        bytes.append(contentsOf: rfc3339Nano(unixNanoseconds).utf8)
        bytes.append(UInt8(ascii: "\""))
    }

    package mutating func take() -> [UInt8] {
        defer { bytes = [] }
        return bytes
    }
}

/// RFC 3339 with nanoseconds, trailing zeros of the fraction trimmed (Go's `time.RFC3339Nano`), always UTC.
package func rfc3339Nano(_ unixNanoseconds: Int64) -> String {
    let seconds = unixNanoseconds >= 0 ? unixNanoseconds / 1_000_000_000 : (unixNanoseconds - 999_999_999) / 1_000_000_000
    let nanos = unixNanoseconds - seconds * 1_000_000_000
    let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
    let secondOfDay = seconds - days * 86_400
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let mp = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    func pad(_ n: Int64, _ width: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
    var text = "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
    if nanos > 0 {
        var fraction = pad(nanos, 9)
        while fraction.hasSuffix("0") { fraction.removeLast() }
        text += "." + fraction
    }
    return text + "Z"
}
