// A JSON reader for request bodies: iterative (an explicit stack, no recursion over input), bounded in nesting
// depth, numbers kept as their text so 64-bit integers stay exact. Error messages follow Go's encoding/json,
// which etcd's gateway answers with.

package indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    /// The number's text as written, for exact integer conversion by the caller.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// Members in the order written; a repeated name keeps its last value when looked up, as Go does.
    case object([(String, JSONValue)])

    package static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): true
        case (.bool(let x), .bool(let y)): x == y
        case (.number(let x), .number(let y)): x == y
        case (.string(let x), .string(let y)): x == y
        case (.array(let x), .array(let y)): x == y
        case (.object(let x), .object(let y)): x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: false
        }
    }

    /// The value of member `name` of an object (the last one when repeated).
    package subscript(name: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last { $0.0 == name }?.1
    }
}

package struct JSONSyntaxError: Error, Equatable, CustomStringConvertible {
    package var description: String
}

package enum JSONReader {
    /// Deeper nesting is refused: no etcd request needs more than a few levels per nested transaction.
    package static let depthMax = 512

    private enum Container {
        case array([JSONValue])
        case object([(String, JSONValue)], pendingName: String?)
    }

    package static func parse(_ bytes: [UInt8]) throws(JSONSyntaxError) -> JSONValue {
        var scanner = Scanner(bytes: bytes)
        var stack: [Container] = []
        var result: JSONValue?
        scanner.skipSpace()
        while true {
            // A value is expected here: the document, an array element or an object member's value.
            var value: JSONValue
            switch try scanner.peekValueStart() {
            case UInt8(ascii: "{"):
                scanner.advance()
                guard stack.count < depthMax else { throw JSONSyntaxError(description: "exceeded max depth") }
                scanner.skipSpace()
                if scanner.peek() == UInt8(ascii: "}") {
                    scanner.advance()
                    value = .object([])
                } else {
                    stack.append(.object([], pendingName: try scanner.memberName()))
                    scanner.skipSpace()
                    continue
                }
            case UInt8(ascii: "["):
                scanner.advance()
                guard stack.count < depthMax else { throw JSONSyntaxError(description: "exceeded max depth") }
                scanner.skipSpace()
                if scanner.peek() == UInt8(ascii: "]") {
                    scanner.advance()
                    value = .array([])
                } else {
                    stack.append(.array([]))
                    continue
                }
            default:
                value = try scanner.scalar()
            }
            // Close every container the value completes.
            while true {
                scanner.skipSpace()
                guard let top = stack.popLast() else {
                    result = value
                    break
                }
                switch top {
                case .array(var elements):
                    elements.append(value)
                    let next = scanner.peek()
                    if next == UInt8(ascii: ",") {
                        scanner.advance()
                        scanner.skipSpace()
                        stack.append(.array(elements))
                    } else if next == UInt8(ascii: "]") {
                        scanner.advance()
                        value = .array(elements)
                        continue
                    } else {
                        throw scanner.unexpected("after array element")
                    }
                case .object(var members, let name):
                    members.append((name ?? "", value))
                    let next = scanner.peek()
                    if next == UInt8(ascii: ",") {
                        scanner.advance()
                        scanner.skipSpace()
                        stack.append(.object(members, pendingName: try scanner.memberName()))
                        scanner.skipSpace()
                    } else if next == UInt8(ascii: "}") {
                        scanner.advance()
                        value = .object(members)
                        continue
                    } else {
                        throw scanner.unexpected("after object key:value pair")
                    }
                }
                break
            }
            if let result {
                scanner.skipSpace()
                if scanner.peek() != nil { throw scanner.unexpected("after top-level value") }
                return result
            }
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var position = 0

        func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }
        mutating func advance() { position += 1 }

        mutating func skipSpace() {
            while let byte = peek(), byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { position += 1 }
        }

        func unexpected(_ context: String) -> JSONSyntaxError {
            guard let byte = peek() else { return JSONSyntaxError(description: "unexpected end of JSON input") }
            return JSONSyntaxError(description: "invalid character \(Self.quoted(byte)) \(context)")
        }

        /// Go quotes the offending character: 'x', or '\n' style escapes for control characters.
        static func quoted(_ byte: UInt8) -> String {
            switch byte {
            case UInt8(ascii: "'"): return "'\\''"
            case UInt8(ascii: "\""): return "'\"'"
            case 0x0A: return "'\\n'"
            case 0x0D: return "'\\r'"
            case 0x09: return "'\\t'"
            case 0..<0x20: return "'\\x" + String(byte, radix: 16).leftPadded(2) + "'"
            default: return "'" + String(decoding: [byte], as: UTF8.self) + "'"
            }
        }

        func peekValueStart() throws(JSONSyntaxError) -> UInt8 {
            guard let byte = peek() else { throw JSONSyntaxError(description: "unexpected end of JSON input") }
            return byte
        }

        mutating func memberName() throws(JSONSyntaxError) -> String {
            guard peek() == UInt8(ascii: "\"") else { throw unexpected("looking for beginning of object key string") }
            let name = try string()
            skipSpace()
            guard peek() == UInt8(ascii: ":") else { throw unexpected("after object key") }
            advance()
            skipSpace()
            return name
        }

        mutating func scalar() throws(JSONSyntaxError) -> JSONValue {
            guard let byte = peek() else { throw JSONSyntaxError(description: "unexpected end of JSON input") }
            switch byte {
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw unexpected("looking for beginning of value")
            }
        }

        mutating func literal(_ word: StaticString) throws(JSONSyntaxError) {
            let expected = word.withUTF8Buffer { Array($0) }
            let name = String(describing: word)
            for (offset, byte) in expected.enumerated() {
                guard let actual = peek() else { throw JSONSyntaxError(description: "unexpected end of JSON input") }
                guard actual == byte else {
                    throw JSONSyntaxError(description: "invalid character \(Self.quoted(actual)) in literal \(name) (expecting \(Self.quoted(expected[offset])))")
                }
                advance()
            }
        }

        mutating func number() throws(JSONSyntaxError) -> String {
            let start = position
            if peek() == UInt8(ascii: "-") { advance() }
            guard let first = peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first) else {
                throw unexpected("in numeric literal")
            }
            func digits() { while let d = peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) { advance() } }
            if first == UInt8(ascii: "0") { advance() } else { digits() }
            if peek() == UInt8(ascii: ".") {
                advance()
                guard let d = peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) else { throw unexpected("after decimal point in numeric literal") }
                digits()
            }
            if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
                advance()
                if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { advance() }
                guard let d = peek(), (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(d) else { throw unexpected("in exponent of numeric literal") }
                digits()
            }
            return String(decoding: bytes[start..<position], as: UTF8.self)
        }

        mutating func string() throws(JSONSyntaxError) -> String {
            advance()  // the opening quote
            var output: [UInt8] = []
            while true {
                guard let byte = peek() else { throw JSONSyntaxError(description: "unexpected end of JSON input") }
                advance()
                switch byte {
                case UInt8(ascii: "\""):
                    // Invalid UTF-8 becomes U+FFFD, as Go decodes it.
                    return String(decoding: output, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    guard let escape = peek() else { throw JSONSyntaxError(description: "unexpected end of JSON input") }
                    advance()
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): output.append(escape)
                    case UInt8(ascii: "b"): output.append(0x08)
                    case UInt8(ascii: "f"): output.append(0x0C)
                    case UInt8(ascii: "n"): output.append(0x0A)
                    case UInt8(ascii: "r"): output.append(0x0D)
                    case UInt8(ascii: "t"): output.append(0x09)
                    case UInt8(ascii: "u"):
                        var scalar = try hex4()
                        if (0xD800..<0xDC00).contains(scalar), peek() == UInt8(ascii: "\\"),
                           position + 1 < bytes.count, bytes[position + 1] == UInt8(ascii: "u")
                        {
                            position += 2
                            let low = try hex4()
                            scalar = (0xDC00..<0xE000).contains(low) ? 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00) : 0xFFFD
                        }
                        let character = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                        output.append(contentsOf: String(Character(character)).utf8)
                    default:
                        position -= 1
                        throw unexpected("in string escape code")
                    }
                case 0..<0x20:
                    position -= 1
                    throw unexpected("in string literal")
                default:
                    output.append(byte)
                }
            }
        }

        mutating func hex4() throws(JSONSyntaxError) -> UInt32 {
            var value: UInt32 = 0
            for _ in 0..<4 {
                guard let byte = peek() else { throw JSONSyntaxError(description: "unexpected end of JSON input") }
                let digit: UInt32
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
                default: throw unexpected("in \\u hexadecimal character escape")
                }
                value = value << 4 | digit
                advance()
            }
            return value
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
