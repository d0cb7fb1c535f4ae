// An incremental HTTP/1.1 request parser: bytes in, request heads and body pieces out.
// It never buffers: it reports how much of the caller's buffer it consumed, so bodies stream through untouched.

/// How a request's body is delimited (RFC 9112 §6).
package enum BodyFraming: Sendable, Equatable {
    case none
    case length(Int)
    case chunked
}

package struct HTTP1Limits: Sendable {
    /// A request line longer than this is answered 414.
    package var requestLineBytesMax = 64 * 1024
    /// A head (request line and header fields) longer than this is answered 431.
    package var headerBytesMax = 1024 * 1024
    /// A body longer than this (after any decoding) is answered 413.
    package var bodyBytesMax = 64 * 1024 * 1024
    /// A body is handed on in pieces of at most this many bytes.
    package var bodyPieceBytesMax = 64 * 1024

    package init() {}
}

package struct HTTP1RequestParser {
    package enum Event: Equatable {
        /// More bytes are needed before anything can be reported.
        case needMore
        case head(HTTPRequestHead, BodyFraming)
        /// The first `count` bytes of the buffer that was passed in are body bytes (and were consumed).
        case body(count: Int)
        /// The request's body is complete; the next bytes belong to the next request.
        case end
        case error(HTTPError)
    }

    private enum State {
        case head(scanned: Int)
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
    }

    package let limits: HTTP1Limits
    private var state: State = .head(scanned: 0)
    private var bodyBytesSeen = 0

    package init(limits: HTTP1Limits) {
        self.limits = limits
    }

    /// True while the parser waits for a request's first bytes or its head.
    package var isBetweenRequests: Bool {
        if case .head = state { return true }
        return false
    }

    /// Reports the next event found at the start of `buffer` and how many bytes it consumed.
    package mutating func next(_ buffer: UnsafeRawBufferPointer) -> (event: Event, consumed: Int) {
        switch state {
        case .head(let scanned):
            return parseHead(buffer, scanned: scanned)
        case .fixedBody(let remaining):
            if remaining == 0 {
                state = .head(scanned: 0)
                return (.end, 0)
            }
            guard !buffer.isEmpty else { return (.needMore, 0) }
            let count = min(remaining, buffer.count, limits.bodyPieceBytesMax)
            state = .fixedBody(remaining: remaining - count)
            return (.body(count: count), count)
        case .chunkSize:
            return parseChunkSize(buffer)
        case .chunkData(let remaining):
            guard !buffer.isEmpty else { return (.needMore, 0) }
            let count = min(remaining, buffer.count, limits.bodyPieceBytesMax)
            state = remaining == count ? .chunkDataEnd : .chunkData(remaining: remaining - count)
            return (.body(count: count), count)
        case .chunkDataEnd:
            guard let lineEnd = lineEnd(buffer, from: 0, max: 2) else {
                return buffer.count >= 2 ? (.error(HTTPError(400, "bad chunk terminator")), 0) : (.needMore, 0)
            }
            guard lineEnd.contentEnd == 0 else { return (.error(HTTPError(400, "bad chunk terminator")), 0) }
            state = .chunkSize
            return (.needMore, lineEnd.next)
        case .trailers:
            return parseTrailers(buffer)
        }
    }

    // MARK: - Head

    private mutating func parseHead(_ buffer: UnsafeRawBufferPointer, scanned: Int) -> (event: Event, consumed: Int) {
        // Robustness (RFC 9112 §2.2): empty lines before a request line are ignored.
        var start = 0
        while start < buffer.count, buffer[start] == 0x0D || buffer[start] == 0x0A { start += 1 }
        if start > 0 {
            state = .head(scanned: 0)
            return (.needMore, start)
        }
        // Find the blank line that ends the head, resuming where the last call stopped.
        var i = max(0, scanned - 3)
        var headEnd = -1
        while i < buffer.count {
            if buffer[i] == 0x0A {
                if i + 1 < buffer.count, buffer[i + 1] == 0x0A { headEnd = i + 2; break }
                if i + 2 < buffer.count, buffer[i + 1] == 0x0D, buffer[i + 2] == 0x0A { headEnd = i + 3; break }
            }
            i += 1
        }
        if headEnd < 0 {
            let firstLineEnd = lineEnd(buffer, from: 0, max: limits.requestLineBytesMax + 2)
            if firstLineEnd == nil && buffer.count > limits.requestLineBytesMax {
                return (.error(HTTPError(414, "request line too long")), 0)
            }
            if buffer.count > limits.headerBytesMax {
                return (.error(HTTPError(431, "header fields too large")), 0)
            }
            state = .head(scanned: buffer.count)
            return (.needMore, 0)
        }
        if headEnd > limits.headerBytesMax + 4 {
            return (.error(HTTPError(431, "header fields too large")), 0)
        }
        switch HTTP1RequestParser.decodeHead(UnsafeRawBufferPointer(rebasing: buffer[0..<headEnd]), limits: limits) {
        case .failure(let error):
            return (.error(error), 0)
        case .success(let (head, framing)):
            bodyBytesSeen = 0
            switch framing {
            case .none: state = .fixedBody(remaining: 0)
            case .length(let n): state = .fixedBody(remaining: n)
            case .chunked: state = .chunkSize
            }
            return (.head(head, framing), headEnd)
        }
    }

    private static func decodeHead(
        _ bytes: UnsafeRawBufferPointer, limits: HTTP1Limits
    ) -> Result<(HTTPRequestHead, BodyFraming), HTTPError> {
        var lines: [UnsafeRawBufferPointer] = []
        var lineStart = 0
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x0A {
                var end = i
                if end > lineStart, bytes[end - 1] == 0x0D { end -= 1 }
                lines.append(UnsafeRawBufferPointer(rebasing: bytes[lineStart..<end]))
                lineStart = i + 1
            }
            i += 1
        }
        guard let requestLine = lines.first else { return .failure(HTTPError(400, "empty request")) }
        if requestLine.count > limits.requestLineBytesMax { return .failure(HTTPError(414, "request line too long")) }
        if requestLine.contains(0x0D) { return .failure(HTTPError(400, "bare CR in request line")) }

        let parts = requestLine.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            return .failure(HTTPError(400, "malformed request line"))
        }
        guard parts[0].allSatisfy(isTokenByte) else { return .failure(HTTPError(400, "malformed method")) }
        guard parts[1].allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
            return .failure(HTTPError(400, "malformed request target"))
        }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        guard target.hasPrefix("/") || target == "*" || target.hasPrefix("http://") || target.hasPrefix("https://")
        else { return .failure(HTTPError(400, "malformed request target")) }

        let versionText = String(decoding: parts[2], as: UTF8.self)
        let version: HTTPVersion
        switch versionText {
        case "HTTP/1.1": version = .http1_1
        case "HTTP/1.0": version = .http1_0
        default:
            let v = Array(parts[2])
            if v.count == 8, versionText.hasPrefix("HTTP/"), (0x30...0x39).contains(v[5]), v[6] == 0x2E,
                (0x30...0x39).contains(v[7]) {
                return .failure(HTTPError(505, "unsupported HTTP version"))
            }
            return .failure(HTTPError(400, "malformed HTTP version"))
        }

        var headers = HTTPHeaders()
        for line in lines.dropFirst() where !line.isEmpty {
            guard line[0] != 0x20, line[0] != 0x09 else { return .failure(HTTPError(400, "obsolete line folding")) }
            guard let colon = line.firstIndex(of: 0x3A), colon > 0 else {
                return .failure(HTTPError(400, "malformed header field"))
            }
            let name = UnsafeRawBufferPointer(rebasing: line[0..<colon])
            // Whitespace before the colon is a smuggling vector (RFC 9112 §5.1): refuse it.
            guard name.allSatisfy(isTokenByte) else { return .failure(HTTPError(400, "malformed header name")) }
            let value = UnsafeRawBufferPointer(rebasing: line[(colon + 1)...])
            guard !value.contains(where: { $0 == 0 || $0 == 0x0D || $0 == 0x0A }) else {
                return .failure(HTTPError(400, "invalid character in header value"))
            }
            headers.add(
                String(decoding: name, as: UTF8.self),
                String(String(decoding: value, as: UTF8.self).trimmingASCIIWhitespace()))
        }

        if version == .http1_1 {
            let hosts = headers.values("host")
            guard hosts.count == 1 else {
                return .failure(HTTPError(400, hosts.isEmpty ? "missing required Host header" : "too many Host headers"))
            }
        }
        return framing(headers, version: version, limits: limits).map { (HTTPRequestHead(method: method, target: target, version: version, headers: headers), $0) }
    }

    private static func framing(_ headers: HTTPHeaders, version: HTTPVersion, limits: HTTP1Limits) -> Result<BodyFraming, HTTPError> {
        let transferCodings = headers.values("transfer-encoding")
            .flatMap { $0.split(separator: ",") }
            .map { $0.trimmingASCIIWhitespace().lowercased() }
        let lengths = headers.values("content-length")
            .flatMap { $0.split(separator: ",", omittingEmptySubsequences: false) }
            .map { String($0.trimmingASCIIWhitespace()) }

        if !transferCodings.isEmpty {
            // Both framings at once is the classic smuggling request (RFC 9112 §6.1): refuse, never guess.
            guard lengths.isEmpty else { return .failure(HTTPError(400, "both Transfer-Encoding and Content-Length")) }
            guard version == .http1_1 else { return .failure(HTTPError(411, "Transfer-Encoding in an HTTP/1.0 request")) }
            guard transferCodings.last == "chunked", transferCodings.filter({ $0 == "chunked" }).count == 1 else {
                return .failure(HTTPError(400, "chunked must be the final transfer coding, once"))
            }
            guard transferCodings.count == 1 else { return .failure(HTTPError(501, "unsupported transfer coding")) }
            return .success(.chunked)
        }
        guard let first = lengths.first else { return .success(.none) }
        guard lengths.allSatisfy({ $0 == first }) else { return .failure(HTTPError(400, "conflicting Content-Length")) }
        guard !first.isEmpty, first.utf8.count <= 18, first.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            let length = Int(first)
        else { return .failure(HTTPError(400, "invalid Content-Length")) }
        guard length <= limits.bodyBytesMax else { return .failure(HTTPError(413, "request body too large")) }
        return .success(length == 0 ? .none : .length(length))
    }

    // MARK: - Chunked bodies

    private mutating func parseChunkSize(_ buffer: UnsafeRawBufferPointer) -> (event: Event, consumed: Int) {
        let lineBytesMax = 4096
        guard let line = lineEnd(buffer, from: 0, max: lineBytesMax) else {
            return buffer.count >= lineBytesMax ? (.error(HTTPError(400, "chunk size line too long")), 0) : (.needMore, 0)
        }
        var size = 0
        var digits = 0
        var i = 0
        while i < line.contentEnd, let digit = hexDigitValue(buffer[i]) {
            guard digits < 15 else { return (.error(HTTPError(400, "chunk size too large")), 0) }
            size = size << 4 | Int(digit)
            digits += 1
            i += 1
        }
        guard digits > 0 else { return (.error(HTTPError(400, "malformed chunk size")), 0) }
        while i < line.contentEnd, buffer[i] == 0x20 || buffer[i] == 0x09 { i += 1 }
        guard i == line.contentEnd || buffer[i] == 0x3B else { return (.error(HTTPError(400, "malformed chunk size")), 0) }
        bodyBytesSeen += size
        guard bodyBytesSeen <= limits.bodyBytesMax else { return (.error(HTTPError(413, "request body too large")), 0) }
        state = size == 0 ? .trailers : .chunkData(remaining: size)
        return (.needMore, line.next)
    }

    private mutating func parseTrailers(_ buffer: UnsafeRawBufferPointer) -> (event: Event, consumed: Int) {
        var offset = 0
        while let line = lineEnd(buffer, from: offset, max: limits.headerBytesMax) {
            offset = line.next
            if line.contentEnd == line.start {
                state = .head(scanned: 0)
                return (.end, offset)
            }
        }
        if buffer.count - offset >= limits.headerBytesMax { return (.error(HTTPError(431, "trailer fields too large")), 0) }
        // Trailers are ignored; consume whole lines so they never count twice.
        return (.needMore, offset)
    }

    /// The end of the line starting at `from`: where its content ends (before CR LF or LF) and where the next begins.
    private func lineEnd(_ buffer: UnsafeRawBufferPointer, from: Int, max: Int) -> (start: Int, contentEnd: Int, next: Int)? {
        var i = from
        let limit = min(buffer.count, from + max)
        while i < limit {
            if buffer[i] == 0x0A {
                let contentEnd = i > from && buffer[i - 1] == 0x0D ? i - 1 : i
                return (from, contentEnd, i + 1)
            }
            i += 1
        }
        return nil
    }
}

private func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
        UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
        UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"): true
    default: false
    }
}

extension HTTPRequestHead: Equatable {
    package static func == (a: HTTPRequestHead, b: HTTPRequestHead) -> Bool {
        a.method == b.method && a.target == b.target && a.version == b.version
            && a.headers.fields.elementsEqual(b.headers.fields) { $0.name == $1.name && $0.value == $1.value }
    }
}
