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
        var decoded = Decoded()
        for segment in text.utf8.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            if segment.contains(UInt8(ascii: ";")) {
                decoded.error = decoded.error ?? "invalid semicolon separator in query"
                continue
            }
            let parts = segment.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let rawName = parts[0]
            if rawName.isEmpty { continue }
            let rawValue = parts.count > 1 ? Array(parts[1]) : []
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
        unescape(path.utf8, plusIsSpace: false)
    }

    /// The same, keeping the decoded bytes as they are (a key's `%ff` is the byte 0xFF, not U+FFFD).
    package static func decodePathBytes(_ path: some StringProtocol) -> Result<[UInt8], EscapeError> {
        unescapeBytes(path.utf8, plusIsSpace: false)
    }

    private static func unescape(_ bytes: some Collection<UInt8>, plusIsSpace: Bool) -> Result<String, EscapeError> {
        guard bytes.contains(where: { $0 == UInt8(ascii: "%") || ($0 == UInt8(ascii: "+") && plusIsSpace) }) else {
            return .success(String(decoding: bytes, as: UTF8.self))
        }
        return unescapeBytes(bytes, plusIsSpace: plusIsSpace).map { String(decoding: $0, as: UTF8.self) }
    }

    private static func unescapeBytes(_ bytes: some Collection<UInt8>, plusIsSpace: Bool) -> Result<[UInt8], EscapeError> {
        let input = Array(bytes)
        var output: [UInt8] = []
        output.reserveCapacity(input.count)
        var i = 0
        while i < input.count {
            let byte = input[i]
            if byte == UInt8(ascii: "%") {
                guard i + 2 < input.count,
                    let high = hexDigitValue(input[i + 1]), let low = hexDigitValue(input[i + 2])
                else {
                    let bad = input[i..<min(i + 3, input.count)]
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
