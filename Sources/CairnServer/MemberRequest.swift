// The body of `POST /v2/members` and `PUT /v2/members/ID` read as etcd reads it: Go's encoding/json into
// `{"peerURLs": [...]}`, then each URL through Go's net/url and etcd's checks, with their error messages verbatim.
enum MemberRequest {
    /// Go's `maxNestingDepth` in encoding/json: deeper input is a syntax error, and nothing here recurses.
    static let jsonDepthMax = 10_000

    /// The peer URLs of a request body, as etcd stores them (normalised, sorted), or the message of etcd's 400.
    static func peerURLs(_ body: [UInt8]) -> Result<[String], MemberRequestError> {
        if let syntax = goJSONSyntaxError(body) { return .failure(MemberRequestError(syntax)) }
        let strings: [String]
        switch decodePeerURLs(body) {
        case .success(let decoded): strings = decoded
        case .failure(let error): return .failure(error)
        }
        guard !strings.isEmpty else { return .failure(MemberRequestError("no valid URLs given")) }
        var urls: [String] = []
        for text in strings {
            switch etcdURL(goTrimmedSpace(text)) {
            case .success(let url): urls.append(url)
            case .failure(let error): return .failure(error)
            }
        }
        return .success(urls.sorted())
    }

    /// Go's `strings.TrimSpace`: Unicode white space off both ends.
    static func goTrimmedSpace(_ text: String) -> Substring {
        let isSpace = { (character: Character) in character.unicodeScalars.allSatisfy(\.properties.isWhitespace) }
        guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) }) else { return "" }
        return text[first...last]
    }

    // MARK: Go's encoding/json scanner (checkValid): the first syntax error, worded as Go words it.

    private enum Expect { case value, objectKeyOrEnd, objectKey, colon, objectCommaOrEnd, arrayValueOrEnd, arrayCommaOrEnd, end }
    private enum Container { case object, array }

    static func goJSONSyntaxError(_ bytes: [UInt8]) -> String? {
        var stack: [Container] = []
        var expect = Expect.value
        var index = 0
        func invalid(_ byte: UInt8, _ context: String) -> String { "invalid character \(quoteChar(byte)) \(context)" }
        func afterValue() { expect = stack.last.map { $0 == .object ? .objectCommaOrEnd : .arrayCommaOrEnd } ?? .end }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1; continue }
            switch expect {
            case .end:
                return invalid(byte, "after top-level value")
            case .colon:
                guard byte == UInt8(ascii: ":") else { return invalid(byte, "after object key") }
                expect = .value
                index += 1
                continue
            case .objectCommaOrEnd, .arrayCommaOrEnd:
                let isObject = expect == .objectCommaOrEnd
                if byte == UInt8(ascii: ",") {
                    expect = isObject ? .objectKey : .value
                } else if byte == UInt8(ascii: isObject ? "}" : "]") {
                    stack.removeLast()
                    afterValue()
                } else {
                    return invalid(byte, isObject ? "after object key:value pair" : "after array element")
                }
                index += 1
                continue
            case .objectKeyOrEnd, .objectKey:
                if byte == UInt8(ascii: "}") && expect == .objectKeyOrEnd {
                    stack.removeLast()
                    afterValue()
                    index += 1
                    continue
                }
                guard byte == UInt8(ascii: "\"") else { return invalid(byte, "looking for beginning of object key string") }
                switch scanString(bytes, from: index) {
                case .failure(let error): return error.message
                case .success(let end): index = end
                }
                expect = .colon
                continue
            case .value, .arrayValueOrEnd:
                if byte == UInt8(ascii: "]") && expect == .arrayValueOrEnd {
                    stack.removeLast()
                    afterValue()
                    index += 1
                    continue
                }
            }
            // A value begins here.
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard stack.count < jsonDepthMax else { return invalid(byte, "exceeded max depth") }
                let isObject = byte == UInt8(ascii: "{")
                stack.append(isObject ? .object : .array)
                expect = isObject ? .objectKeyOrEnd : .arrayValueOrEnd
                index += 1
                continue
            case UInt8(ascii: "\""):
                switch scanString(bytes, from: index) {
                case .failure(let error): return error.message
                case .success(let end): index = end
                }
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                switch scanNumber(bytes, from: index) {
                case .failure(let error): return error.message
                case .success(let end): index = end
                }
            case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                let word = byte == UInt8(ascii: "t") ? "true" : byte == UInt8(ascii: "f") ? "false" : "null"
                for (offset, want) in word.utf8.enumerated().dropFirst() {
                    let got = index + offset < bytes.count ? bytes[index + offset] : endOfInput
                    if got != want { return invalid(got, "in literal \(word) (expecting \(quoteChar(want)))") }
                }
                index += word.utf8.count
            default:
                return invalid(byte, "looking for beginning of value")
            }
            afterValue()
        }
        return expect == .end ? nil : "unexpected end of JSON input"
    }

    private struct ScanError: Error { var message: String }

    /// What Go's scanner reads at the end of its input: a space, which ends a number and breaks a literal or escape.
    private static let endOfInput = UInt8(ascii: " ")

    /// The index after the string literal starting at `start` (a quote).
    private static func scanString(_ bytes: [UInt8], from start: Int) -> Result<Int, ScanError> {
        var index = start + 1
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""): return .success(index + 1)
            case UInt8(ascii: "\\"):
                index += 1
                let escape = index < bytes.count ? bytes[index] : endOfInput
                if escape == UInt8(ascii: "u") {
                    for _ in 0..<4 {
                        index += 1
                        let digit = index < bytes.count ? bytes[index] : endOfInput
                        guard hexValue(digit) != nil else {
                            return .failure(ScanError(message: "invalid character \(quoteChar(digit)) in \\u hexadecimal character escape"))
                        }
                    }
                } else if !Array("\"\\/bfnrt".utf8).contains(escape) {
                    return .failure(ScanError(message: "invalid character \(quoteChar(escape)) in string escape code"))
                }
            case 0..<0x20:
                return .failure(ScanError(message: "invalid character \(quoteChar(byte)) in string literal"))
            default: break
            }
            index += 1
        }
        return .failure(ScanError(message: "unexpected end of JSON input"))
    }

    /// The index after the number starting at `start`.
    private static func scanNumber(_ bytes: [UInt8], from start: Int) -> Result<Int, ScanError> {
        var index = start
        func isDigit(_ at: Int) -> Bool { at < bytes.count && (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[at]) }
        func need(_ context: String) -> ScanError {
            ScanError(message: "invalid character \(quoteChar(index < bytes.count ? bytes[index] : endOfInput)) \(context)")
        }
        if bytes[index] == UInt8(ascii: "-") {
            index += 1
            guard isDigit(index) else { return .failure(need("in numeric literal")) }
        }
        if bytes[index] == UInt8(ascii: "0") { index += 1 } else { while isDigit(index) { index += 1 } }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            guard isDigit(index) else { return .failure(need("after decimal point in numeric literal")) }
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard isDigit(index) else { return .failure(need("in exponent of numeric literal")) }
            while isDigit(index) { index += 1 }
        }
        return .success(index)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// Go's `quoteChar`: the byte as a rune in single quotes, escaped as `strconv.Quote` escapes it.
    static func quoteChar(_ byte: UInt8) -> String {
        if byte == UInt8(ascii: "'") { return #"'\''"# }
        if byte == UInt8(ascii: "\"") { return #"'"'"# }
        return "'" + goQuoted(Unicode.Scalar(byte)) + "'"
    }

    /// One scalar as `strconv.Quote` writes it inside its quotes, for the scalars a byte can be (U+0000 to U+00FF).
    private static func goQuoted(_ scalar: Unicode.Scalar) -> String {
        switch scalar.value {
        case 0x07: return #"\a"#
        case 0x08: return #"\b"#
        case 0x0C: return #"\f"#
        case 0x0A: return #"\n"#
        case 0x0D: return #"\r"#
        case 0x09: return #"\t"#
        case 0x0B: return #"\v"#
        case 0x5C: return #"\\"#
        case 0x22: return #"\""#
        case 0..<0x20, 0x7F: return #"\x"# + hex2(scalar.value)
        case 0x80..<0xA1, 0xAD: return #"\u00"# + hex2(scalar.value)
        default: return String(Character(scalar))
        }
    }

    private static func hex2(_ value: UInt32) -> String {
        let text = String(value, radix: 16)
        return text.count < 2 ? "0" + text : text
    }

    // MARK: Decoding into `struct { PeerURLs []string "json:\"peerURLs\"" }`

    static let goRequestType = #"struct { PeerURLs []string "json:\"peerURLs\"" }"#

    /// The `peerURLs` array of valid JSON (checked by `goJSONSyntaxError` first): Go matches the key without regard
    /// to case, lets the last one win, leaves `null` as nothing and reports the first value of the wrong type.
    private static func decodePeerURLs(_ bytes: [UInt8]) -> Result<[String], MemberRequestError> {
        var reader = JSONReader(bytes: bytes)
        let top = reader.kind()
        guard top == "object" else {
            return top == "null" ? .success([]) : .failure(MemberRequestError("json: cannot unmarshal \(top) into Go value of type \(goRequestType)"))
        }
        var urls: [String] = []
        var firstError: MemberRequestError?
        reader.index += 1
        while true {
            reader.skipSpace()
            // The end of input cannot come first in valid JSON; checking it anyway bounds the loop.
            if reader.current == UInt8(ascii: "}") || reader.current == nil { break }
            if reader.current == UInt8(ascii: ",") { reader.index += 1; reader.skipSpace() }
            let key = reader.string()
            reader.skipSpace()
            reader.index += 1  // the colon
            reader.skipSpace()
            guard key.lowercased() == "peerurls" else { reader.skipValue(); continue }
            switch reader.kind() {
            case "null": reader.skipValue(); urls = []
            case "array":
                urls = []
                reader.index += 1
                while true {
                    reader.skipSpace()
                    if reader.current == UInt8(ascii: "]") || reader.current == nil { reader.index += 1; break }
                    if reader.current == UInt8(ascii: ",") { reader.index += 1; reader.skipSpace() }
                    switch reader.kind() {
                    case "string": urls.append(reader.string())
                    case "null": reader.skipValue(); urls.append("")
                    case let kind:
                        reader.skipValue()
                        urls.append("")
                        firstError = firstError ?? MemberRequestError("json: cannot unmarshal \(kind) into Go struct field .peerURLs of type string")
                    }
                }
            case let kind:
                reader.skipValue()
                firstError = firstError ?? MemberRequestError("json: cannot unmarshal \(kind) into Go struct field .peerURLs of type []string")
            }
        }
        return firstError.map { .failure($0) } ?? .success(urls)
    }

    // MARK: Go's net/url `Parse`, then etcd's `types.NewURLs` checks

    /// The URL as Go prints it back (the scheme in lower case), or etcd's message for it.
    static func etcdURL(_ text: Substring) -> Result<String, MemberRequestError> {
        let url = String(text)
        func parseError(_ why: String) -> MemberRequestError { MemberRequestError("parse \(goQuote(url)): \(why)") }
        var rest = url.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
        if rest.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) { return .failure(parseError("net/url: invalid control character in URL")) }
        // The scheme: a letter, then letters, digits, '+', '-', '.', up to the first ':'.
        var scheme = ""
        for (offset, character) in rest.enumerated() {
            if character.isASCII && character.isLetter { continue }
            if character.isASCII && (character.isNumber || "+-.".contains(character)) && offset > 0 { continue }
            if character == ":" {
                if offset == 0 { return .failure(parseError("missing protocol scheme")) }
                scheme = String(rest.prefix(offset)).lowercased()
                rest = rest.dropFirst(offset + 1)
            }
            break
        }
        if let query = rest.firstIndex(of: "?") { rest = rest[..<query] }
        var host: Substring = ""
        var path: Substring = rest
        if !rest.hasPrefix("/") {
            if scheme.isEmpty, let colon = rest.firstIndex(of: ":"), !rest[..<colon].contains("/") {
                return .failure(parseError("first path segment in URL cannot contain colon"))
            }
            path = scheme.isEmpty ? rest : ""  // with a scheme, the rest is opaque: no host, no path
        } else if rest.hasPrefix("//") && (!scheme.isEmpty || !rest.hasPrefix("///")) {
            let authority = rest.dropFirst(2).prefix { $0 != "/" }
            path = rest.dropFirst(2 + authority.count)
            host = authority.lastIndex(of: "@").map { authority[authority.index(after: $0)...] } ?? authority
            if let why = goHostError(host) { return .failure(parseError(why)) }
        }
        guard ["http", "https", "unix", "unixs"].contains(scheme) else {
            return .failure(MemberRequestError("URL scheme must be http, https, unix, or unixs: \(url)"))
        }
        guard splitsAsHostPort(host) else { return .failure(MemberRequestError("URL address does not have the form \"host:port\": \(url)")) }
        guard path.isEmpty else { return .failure(MemberRequestError("URL must not contain a path: \(url)")) }
        let schemeEnd = url.firstIndex(of: ":").map { url.index(after: $0) } ?? url.endIndex
        return .success(scheme + ":" + url[schemeEnd...])
    }

    /// Go's `parseHost` checks: a port after the host is digits only, and no byte a host may not hold.
    private static func goHostError(_ host: Substring) -> String? {
        var portStart: Substring.Index?
        if host.hasPrefix("[") {
            guard let close = host.lastIndex(of: "]") else { return "missing ']' in host" }
            portStart = host.index(after: close)
        } else if let colon = host.lastIndex(of: ":") {
            portStart = colon
        }
        if let portStart {
            let colonPort = host[portStart...]
            if !colonPort.isEmpty && (!colonPort.hasPrefix(":") || !colonPort.dropFirst().allSatisfy({ $0.isASCII && $0.isNumber })) {
                return "invalid port \(goQuote(String(colonPort))) after host"
            }
        }
        let bytes = Array(host.utf8)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, hexValue(bytes[index + 1]) != nil, hexValue(bytes[index + 2]) != nil else {
                    let escape = String(decoding: bytes[index..<min(bytes.count, index + 3)], as: UTF8.self)
                    return "invalid URL escape \(goQuote(escape))"
                }
                // A host may hold only %25 or escapes of bytes from 0x80 (Go's rule for hosts).
                if (hexValue(bytes[index + 1]) ?? 0) < 8 && !(bytes[index + 1] == UInt8(ascii: "2") && bytes[index + 2] == UInt8(ascii: "5")) {
                    return "invalid URL escape \(goQuote(String(decoding: bytes[index..<index + 3], as: UTF8.self)))"
                }
                index += 3
                continue
            }
            let allowed = Array("!$&'()*+,;=:[]<>\"-_.~".utf8)
            if byte < 0x80 && !(byte.isASCIIAlphanumeric || allowed.contains(byte)) {
                return "invalid character \(goQuote(String(UnicodeScalar(byte)))) in host name"
            }
            index += 1
        }
        return nil
    }

    /// Whether Go's `net.SplitHostPort` accepts the host: a last ':' before the port, brackets only around the host.
    private static func splitsAsHostPort(_ hostPort: Substring) -> Bool {
        guard let colon = hostPort.lastIndex(of: ":") else { return false }
        var afterHost = hostPort.startIndex
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]"), hostPort.index(after: close) == colon else { return false }
            afterHost = hostPort.index(after: close)
        } else if hostPort[..<colon].contains(":") {
            return false
        }
        return !hostPort.dropFirst().contains("[") && !hostPort[afterHost...].contains("]")
    }

    /// Go's `%q` of a string: printable characters as they are, the rest escaped.
    static func goQuote(_ text: String) -> String {
        var quoted = "\""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x100 {
                quoted += goQuoted(scalar)
            } else {
                quoted += String(Character(scalar))
            }
        }
        return quoted + "\""
    }
}

struct MemberRequestError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// Reads values out of JSON already known to be valid; used only after `goJSONSyntaxError` found none.
private struct JSONReader {
    let bytes: [UInt8]
    var index = 0

    var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func skipSpace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    /// Go's name for the kind of value at the reader (as its type errors say it).
    mutating func kind() -> String {
        skipSpace()
        switch current {
        case UInt8(ascii: "{"): return "object"
        case UInt8(ascii: "["): return "array"
        case UInt8(ascii: "\""): return "string"
        case UInt8(ascii: "t"), UInt8(ascii: "f"): return "bool"
        case UInt8(ascii: "n"): return "null"
        default: return "number"
        }
    }

    /// Skips one value, however deeply nested, without recursion; a scalar ends at the delimiter after it.
    mutating func skipValue() {
        skipSpace()
        var depth = 0
        while let byte = current {
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                if depth == 0 { return }
                depth -= 1
                index += 1
                if depth == 0 { return }
            case UInt8(ascii: "\""):
                _ = string()
                if depth == 0 { return }
            case UInt8(ascii: ","):
                if depth == 0 { return }
                index += 1
            default:
                index += 1
            }
        }
    }

    /// The string literal at the reader, unescaped; invalid UTF-8 becomes U+FFFD, as in Go.
    mutating func string() -> String {
        var out: [UInt8] = []
        index += 1
        while let byte = current, byte != UInt8(ascii: "\"") {
            index += 1
            guard byte == UInt8(ascii: "\\"), let escape = current else { out.append(byte); continue }
            index += 1
            switch escape {
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = hex4()
                if (0xD800..<0xDC00).contains(scalar), current == UInt8(ascii: "\\"), index + 1 < bytes.count,
                   bytes[index + 1] == UInt8(ascii: "u") {
                    let save = index
                    index += 2
                    let low = hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + (scalar - 0xD800) << 10 + (low - 0xDC00)
                    } else {
                        index = save
                    }
                }
                out.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8))
            default: out.append(escape)
            }
        }
        index += 1
        return String(decoding: out, as: UTF8.self)
    }

    private mutating func hex4() -> UInt32 {
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let byte = current else { break }
            index += 1
            let digit: UInt32 = switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
            default: UInt32(byte &- UInt8(ascii: "A") &+ 10)
            }
            value = value << 4 | digit
        }
        return value
    }
}

private extension UInt8 {
    var isASCIIAlphanumeric: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self)
    }
}
