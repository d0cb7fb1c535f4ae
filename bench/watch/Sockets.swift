// watch-bench's client side: loopback sockets, the clock, and an HTTP/1.1 response reader that takes bytes as they
// come and hands back whole responses (Content-Length or chunked), so one connection can carry one watch after another.
import Glibc

func fail(_ message: String) -> Never {
    print("watch-bench: \(message)")
    exit(1)
}

func nowNanos() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// A connected non-blocking socket with `request` sent.
func open(_ address: sockaddr_in, sending request: String) -> Int32 {
    var address = address
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard fd >= 0, connected == 0 else { fail("connect: \(String(cString: strerror(errno)))") }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    sendAll(fd, request)
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    return fd
}

/// Sends a small request whole; a loopback socket with nothing unread in flight always has room for one.
func sendAll(_ fd: Int32, _ request: String) {
    let bytes = Array(request.utf8)
    guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { fail("send: \(String(cString: strerror(errno)))") }
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool { firstIndex(of: needle, in: haystack) != nil }

/// Where `needle` first occurs in `haystack` at or after `start`: a plain byte loop, as the client must stay cheap
/// next to the server it measures.
func firstIndex(of needle: [UInt8], in haystack: [UInt8], from start: Int = 0) -> Int? {
    guard let first = needle.first, haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
    return haystack.withUnsafeBufferPointer { bytes in
        needle.withUnsafeBufferPointer { wanted in
            var at = start
            let last = bytes.count - wanted.count
            search: while at <= last {
                if bytes[at] == first {
                    for offset in 1..<wanted.count where bytes[at + offset] != wanted[offset] {
                        at += 1
                        continue search
                    }
                    return at
                }
                at += 1
            }
            return nil
        }
    }
}

/// Responses read off one connection: `append` what arrives, then take each whole one with `next`.
struct ResponseReader {
    struct Response {
        var status: Int
        var body: [UInt8]
    }

    private var buffer: [UInt8] = []
    private var head: (status: Int, chunked: Bool, length: Int)?
    /// Where the body starts in `buffer` once the head is read; for a chunked body, where the next chunk starts.
    private var bodyStart = 0
    private var body: [UInt8] = []

    mutating func append(_ bytes: ArraySlice<UInt8>) { buffer += bytes }

    /// The head has come, the body may not have: a long-poll's head says the watch is in place.
    var hasHead: Bool { head != nil }

    /// The next whole response, or nil until more bytes come. Fails the run on anything that is not HTTP/1.1.
    mutating func next() -> Response? {
        if head == nil {
            guard let end = firstIndex(of: Self.headEnd, in: buffer) else { return nil }
            head = Self.parseHead(buffer[..<end])
            bodyStart = end + 4
        }
        guard let head else { return nil }
        if head.chunked {
            while true {
                guard let lineEnd = firstIndex(of: Self.lineEnd, in: buffer, from: bodyStart) else { return nil }
                guard let size = Self.number(buffer[bodyStart..<lineEnd], radix: 16) else { fail("bad chunk size") }
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    guard let end = firstIndex(of: Self.lineEnd, in: buffer, from: lineEnd + 2) else { return nil }
                    return take(status: head.status, through: end + 2)
                }
                guard buffer.count >= lineEnd + 2 + size + 2 else { return nil }
                body += buffer[(lineEnd + 2)..<(lineEnd + 2 + size)]
                bodyStart = lineEnd + 2 + size + 2
            }
        }
        guard buffer.count >= bodyStart + head.length else { return nil }
        body = Array(buffer[bodyStart..<(bodyStart + head.length)])
        return take(status: head.status, through: bodyStart + head.length)
    }

    private static let headEnd = Array("\r\n\r\n".utf8), lineEnd = Array("\r\n".utf8)
    private static let chunkedHeader = Array("transfer-encoding: chunked".utf8), lengthHeader = Array("content-length:".utf8)

    private static func parseHead(_ head: ArraySlice<UInt8>) -> (status: Int, chunked: Bool, length: Int) {
        let lines = head.split(separator: 13).map { $0.drop { $0 == 10 } }
        guard let statusLine = lines.first, statusLine.starts(with: "HTTP/1.".utf8), statusLine.count >= 12,
              let status = number(statusLine.dropFirst(9).prefix(3), radix: 10) else {
            fail("not an HTTP/1.1 response: \(String(decoding: head.prefix(80), as: UTF8.self))")
        }
        var chunked = false, length = 0
        for line in lines.dropFirst() {
            let lowered = line.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }
            if lowered.elementsEqual(chunkedHeader) { chunked = true }
            if lowered.starts(with: lengthHeader) { length = number(lowered.dropFirst(lengthHeader.count).drop { $0 == 32 }, radix: 10) ?? 0 }
        }
        return (status, chunked, length)
    }

    /// A non-negative number in `digits` (hex or decimal; a chunk extension after `;` is ignored), nil if none.
    private static func number(_ digits: some Collection<UInt8>, radix: Int) -> Int? {
        var value = 0, count = 0
        for byte in digits {
            let digit: Int
            switch byte {
            case 48...57: digit = Int(byte) - 48
            case 97...102 where radix == 16: digit = Int(byte) - 87
            case 65...70 where radix == 16: digit = Int(byte) - 55
            default:
                guard count > 0, byte == 59 || byte == 32 else { return nil }
                return value
            }
            guard count < 15 else { return nil }
            value = value * radix + digit
            count += 1
        }
        return count > 0 ? value : nil
    }

    private mutating func take(status: Int, through end: Int) -> Response {
        let response = Response(status: status, body: body)
        buffer.removeFirst(end)
        head = nil
        body = []
        bodyStart = 0
        return response
    }
}

/// The first `"name":NUMBER` in a JSON body: for an event, the node's (etcd and Cairn both write `node` before `prevNode`).
func firstNumber(named name: String, in body: [UInt8]) -> UInt64? {
    let needle = Array("\"\(name)\":".utf8)
    guard let at = firstIndex(of: needle, in: body) else { return nil }
    var value: UInt64 = 0, position = at + needle.count, digits = 0
    while position < body.count, body[position] >= 48, body[position] <= 57, digits < 19 {
        value = value * 10 + UInt64(body[position] - 48)
        position += 1
        digits += 1
    }
    return digits > 0 ? value : nil
}

func medianAndP99(_ samples: [Double]) -> String {
    guard !samples.isEmpty else { fail("no samples") }
    let sorted = samples.sorted()
    let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    let p99 = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
    func twoDecimals(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        return "\(hundredths / 100)." + (hundredths % 100 < 10 ? "0" : "") + "\(hundredths % 100)"
    }
    return "\(twoDecimals(median)) \(twoDecimals(p99))"
}
