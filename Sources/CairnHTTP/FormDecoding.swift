// Query strings, form bodies and paths decoded the way etcd (Go's net/url) decodes them.
// Go keeps the pairs it could decode and reports the first error; etcd turns that error into "Invalid form".

package enum FormDecoding {
    package struct Decoded: Sendable {
        /// Every key=value pair in order; a repeated key appears once per occurrence.
        package var pairs: [(name: String, value: String)] = []
        /// Go's error text for the first malformed pair, if any.
        package var error: String?
    }

    /// Decodes `application/x-www-form-urlencoded` text or a query string: `&` separates pairs, `+` is a space.
    package static func decode(_ text: some StringProtocol) -> Decoded {
        var contiguous = String(text)
        return contiguous.withUTF8 { decode(bytes: $0) }
    }

    /// The same over the bytes themselves: every request with a form or a query comes here, so it works on one
    /// buffer with no generic collection in the loop.
    package static func decode(bytes: UnsafeBufferPointer<UInt8>) -> Decoded {
        var decoded = Decoded()
        var start = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "&")) ?? bytes.count
            let segment = UnsafeBufferPointer(rebasing: bytes[start..<end])
            start = end + 1
            if segment.isEmpty { continue }
            if segment.contains(UInt8(ascii: ";")) {
                decoded.error = decoded.error ?? "invalid semicolon separator in query"
                continue
            }
            let equals = segment.firstIndex(of: UInt8(ascii: "=")) ?? segment.count
            let rawName = UnsafeBufferPointer(rebasing: segment[..<equals])
            if rawName.isEmpty { continue }
            let rawValue = UnsafeBufferPointer(rebasing: segment[min(equals + 1, segment.count)...])
            switch (unescape(rawName, plusIsSpace: true), unescape(rawValue, plusIsSpace: true)) {
            case (.success(let name), .success(let value)):
                decoded.pairs.append((name, value))
            case (.failure(let error), _), (_, .failure(let error)):
                decoded.error = decoded.error ?? error.message
            }
        }
        return decoded
    }

    package struct EscapeError: Error, Equatable {
        package var message: String
    }

    /// Percent-decodes a path: `+` stays `+`. A malformed escape is an error, as in Go's `url.PathUnescape`.
    package static func decodePath(_ path: some StringProtocol) -> Result<String, EscapeError> {
        var contiguous = String(path)
        return contiguous.withUTF8 { unescape($0, plusIsSpace: false) }
    }

    /// The same, keeping the decoded bytes as they are (a key's `%ff` is the byte 0xFF, not U+FFFD).
    package static func decodePathBytes(_ path: some StringProtocol) -> Result<[UInt8], EscapeError> {
        var contiguous = String(path)
        return contiguous.withUTF8 { unescapeBytes($0, plusIsSpace: false) }
    }

    private static func unescape(_ bytes: UnsafeBufferPointer<UInt8>, plusIsSpace: Bool) -> Result<String, EscapeError> {
        guard bytes.contains(where: { $0 == UInt8(ascii: "%") || ($0 == UInt8(ascii: "+") && plusIsSpace) }) else {
            return .success(String(decoding: bytes, as: UTF8.self))
        }
        return unescapeBytes(bytes, plusIsSpace: plusIsSpace).map { String(decoding: $0, as: UTF8.self) }
    }

    private static func unescapeBytes(_ input: UnsafeBufferPointer<UInt8>, plusIsSpace: Bool) -> Result<[UInt8], EscapeError> {
        var output: [UInt8] = []
        output.reserveCapacity(input.count)
        var i = 0
        while i < input.count {
            let byte = input[i]
            if byte == UInt8(ascii: "%") {
                guard i + 2 < input.count,
                    let high = hexDigitValue(input[i + 1]), let low = hexDigitValue(input[i + 2])
                else {
                    let bad = UnsafeBufferPointer(rebasing: input[i..<min(i + 3, input.count)])
                    return .failure(EscapeError(message: "invalid URL escape \"\(String(decoding: bad, as: UTF8.self))\""))
                }
                output.append(high << 4 | low)
                i += 3
            } else {
                output.append(byte == UInt8(ascii: "+") && plusIsSpace ? UInt8(ascii: " ") : byte)
                i += 1
            }
        }
        return .success(output)
    }
}
