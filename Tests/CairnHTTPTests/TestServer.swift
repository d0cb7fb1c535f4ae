// An in-process server with handlers that exercise streaming, waiting and backpressure, and a raw socket client.
// Integration tests talk to it over real loopback sockets, byte for byte.
import CairnBase
import CairnTestSupport
import Dispatch
import Foundation
import Glibc
import Synchronization
import Testing
@testable import CairnHTTP

/// What the test handlers observed, for assertions.
final class Observations: Sendable {
    let closedPaths = Mutex<[String]>([])
    let bodyFailures = Mutex<[Int]>([])
    let producedBytes = Mutex(0)
    let largestBodyPiece = Mutex(0)
    /// "path status" for each answer the exchanges reported.
    let answers = Mutex<[String]>([])
    /// Lets `/answer-then-block` give its connection's queue back.
    let queueRelease = DispatchSemaphore(value: 0)
}

struct TestHandler: HTTPHandler {
    let seen: Observations
    /// Byte i of a streamed body is i % 251; a piece of 256 periods makes every piece the same bytes.
    static let streamPiece = (0..<(251 * 256)).map { UInt8($0 % 251) }

    func handle(_ exchange: HTTPExchange) {
        let path = String(exchange.request.rawPath)
        let query = FormDecoding.decode(exchange.request.rawQuery).pairs
        exchange.onResponse { status in seen.answers.withLock { $0.append("\(path) \(status)") } }
        switch path {
        case "/count":
            // Reads the body piece by piece, keeping only a running count and checksum.
            nonisolated(unsafe) var count = 0
            nonisolated(unsafe) var crc = CRC32C()
            @Sendable func next(_ part: BodyPart) {
                switch part {
                case .data(let bytes):
                    count += bytes.count
                    crc.update(bytes)
                    seen.largestBodyPiece.withLock { $0 = max($0, bytes.count) }
                    exchange.readBody(next)
                case .end:
                    exchange.respond(status: 200, body: Array("bytes=\(count) crc=\(crc.value)".utf8))
                case .failed(let error):
                    seen.bodyFailures.withLock { $0.append(error.status) }
                }
            }
            exchange.onClose { seen.closedPaths.withLock { $0.append(path) } }
            exchange.readBody(next)
        case "/stream":
            // Streams `bytes` of a repeating pattern, writing only when the connection has room.
            let total = Int(query.first { $0.name == "bytes" }?.value ?? "0") ?? 0
            exchange.startResponse(status: 200, headers: HTTPHeaders([("content-type", "application/octet-stream")]))
            nonisolated(unsafe) var sent = 0
            @Sendable func produce() {
                guard sent < total else { return exchange.finish() }
                let count = min(TestHandler.streamPiece.count, total - sent)
                let piece = count == TestHandler.streamPiece.count ? TestHandler.streamPiece : Array(TestHandler.streamPiece[0..<count])
                sent += count
                seen.producedBytes.withLock { $0 += count }
                exchange.write(piece, whenReady: produce)
            }
            produce()
        case "/wait":
            exchange.onClose { seen.closedPaths.withLock { $0.append(path) } }
        case "/abort":
            // Starts a body, then gives up on it, as a watch dropped for not reading does.
            exchange.startResponse(status: 200)
            exchange.write(Array("partial".utf8))
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(200)) { exchange.abort() }
        case "/answer-then-block":
            // Answers from outside a socket event, then keeps the connection's queue busy until the test releases it.
            DispatchQueue.global().async {
                exchange.run {
                    exchange.respond(status: 200, body: Array("answered".utf8))
                    seen.queueRelease.wait()
                }
            }
        case "/slow":
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(300)) {
                exchange.respond(status: 200, body: Array("slow".utf8))
            }
        case "/big":
            exchange.respond(status: 200, headers: HTTPHeaders([("content-type", "application/json")]),
                             body: Array(String(repeating: "{\"key\":\"/a\",\"value\":\"b\"},", count: 4000).utf8))
        default:
            exchange.respond(status: 200, body: Array("\(exchange.request.method) \(exchange.request.target)".utf8))
        }
    }
}

final class TestServer {
    let server: HTTPServer
    let seen = Observations()
    var port: UInt16 { server.boundAddresses[0].port }

    init(configure: (inout HTTPServerConfiguration) -> Void = { _ in }) throws {
        var configuration = HTTPServerConfiguration(addresses: [ListenAddress(host: "127.0.0.1", port: 0)])
        configuration.eventLoopCount = 2
        configure(&configuration)
        server = HTTPServer(configuration: configuration, handler: TestHandler(seen: seen))
        try server.start()
    }

    func stop() {
        let done = DispatchSemaphore(value: 0)
        server.shutdown { done.signal() }
        done.wait()
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }
}

/// A blocking loopback client with a receive timeout, for byte-exact exchanges.
/// Request text named for the test log, which would otherwise print the whole text of the long ones.
struct RawRequest: CustomTestStringConvertible, Sendable {
    let name: String
    let text: String
    init(_ name: String, _ text: String) { self.name = name; self.text = text }
    var testDescription: String { name }
}

final class RawClient {
    let fd: Int32

    init(port: UInt16, receiveBufferBytes: Int32? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBufferBytes {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { throw SocketError(operation: "connect", errno: errno) }
    }

    deinit { close(fd) }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Sends zeros until `upTo` bytes are out or the socket has had no room for `stalledMilliseconds`; returns the count.
    func sendUntilBlocked(upTo total: Int, stalledMilliseconds: Int32) -> Int {
        let zeros = [UInt8](repeating: 0, count: 64 * 1024)
        var sent = 0
        while sent < total {
            var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&ready, 1, stalledMilliseconds) == 1 else { return sent }
            let n = zeros.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, min($0.count, total - sent), Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            }
            if n < 0, errno == EAGAIN { continue }
            guard n > 0 else { return sent }
            sent += n
        }
        return sent
    }

    /// Reads until the peer closes or the timeout passes.
    func readToEnd() -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return result }
            result.append(contentsOf: buffer[0..<n])
        }
    }

    /// Reads one response: head, then a Content-Length or chunked body. Nil on timeout or close.
    func readResponse(isHead: Bool = false) -> (status: Int, headers: [String: String], body: [UInt8])? {
        guard let head = readUntil(Array("\r\n\r\n".utf8)) else { return nil }
        let lines = String(decoding: head, as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1]) ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() where line.contains(":") {
            let parts = line.split(separator: ":", maxSplits: 1)
            headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        if status == 100 { return readResponse(isHead: isHead) }
        if isHead { return (status, headers, []) }
        if let length = headers["content-length"].flatMap(Int.init) {
            guard let body = readExactly(length) else { return nil }
            return (status, headers, body)
        }
        if headers["transfer-encoding"] == "chunked" {
            var body: [UInt8] = []
            while let line = readUntil([13, 10]), let size = Int(String(decoding: line.dropLast(2), as: UTF8.self), radix: 16) {
                if size == 0 { _ = readUntil([13, 10]); return (status, headers, body) }
                guard let chunk = readExactly(size + 2) else { return nil }
                body.append(contentsOf: chunk.dropLast(2))
            }
            return nil
        }
        return (status, headers, [])
    }

    private var pending: [UInt8] = []

    private func fill() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return false }
        pending.append(contentsOf: buffer[0..<n])
        return true
    }

    private func readUntil(_ terminator: [UInt8]) -> [UInt8]? {
        while true {
            if let range = pending.firstRange(of: terminator) {
                let result = Array(pending[..<range.upperBound])
                pending.removeFirst(range.upperBound)
                return result
            }
            guard fill() else { return nil }
        }
    }

    func readExactly(_ count: Int) -> [UInt8]? {
        while pending.count < count { guard fill() else { return nil } }
        let result = Array(pending[0..<count])
        pending.removeFirst(count)
        return result
    }

    /// True if the peer has closed (a read returns end of file within the timeout).
    func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) <= 0
    }
}


/// Runs a command and returns its exit status and standard output. The output goes through a file: a pipe could be
/// inherited by children that concurrent tests spawn, and reading it to the end would wait for them.
func run(_ arguments: [String]) throws -> (status: Int32, output: Data) {
    let file = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cairn-http-test-\(UUID().uuidString)")
    FileManager.default.createFile(atPath: file.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: file) }
    let handle = try FileHandle(forWritingTo: file)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.standardOutput = handle
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    try handle.close()
    return (process.terminationStatus, try Data(contentsOf: file))
}

