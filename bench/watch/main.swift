// Watch notification latency: N long-poll watchers on one key, one PUT, the time until each watcher has its event.
// One thread and poll(2) over non-blocking sockets, so the generator reads 1,000 events in about a millisecond and
// is not what gets measured (a Python asyncio client took tens of milliseconds for the same).
//
//   watch-bench URL WATCHERS ROUNDS     prints the median and the p99 in ms, over all watchers of all rounds
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

let arguments = CommandLine.arguments
guard arguments.count == 4, let watchers = Int(arguments[2]), let rounds = Int(arguments[3]), watchers > 0, rounds > 0 else {
    fail("usage: watch-bench http://HOST:PORT WATCHERS ROUNDS")
}
let hostPort = arguments[1].hasPrefix("http://") ? String(arguments[1].dropFirst(7)).split(separator: "/").first.map(String.init) ?? "" : ""
guard let colon = hostPort.lastIndex(of: ":"), let port = UInt16(hostPort[hostPort.index(after: colon)...]) else {
    fail("not an http://HOST:PORT URL: \(arguments[1])")
}
var address = sockaddr_in()
address.sin_family = sa_family_t(AF_INET)
address.sin_port = port.bigEndian
guard inet_pton(AF_INET, String(hostPort[..<colon]), &address.sin_addr) == 1 else { fail("the host must be an IPv4 address") }

/// A connected non-blocking socket with `request` sent.
@MainActor func open(sending request: String) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard fd >= 0, connected == 0 else { fail("connect: \(String(cString: strerror(errno)))") }
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    let bytes = Array(request.utf8)
    guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { fail("send: \(String(cString: strerror(errno)))") }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    return fd
}

/// Reads every socket in `fds` as it becomes readable until `done` says its bytes so far are complete; returns the
/// time each completed at. Fails after `timeoutSeconds`. One poll(2) over the sockets still waiting: for 1,000 of
/// them a call costs tens of microseconds, small against what is measured.
func readUntil(_ fds: [Int32], timeoutSeconds: UInt64, done: ([UInt8]) -> Bool) -> [UInt64] {
    var received = [[UInt8]](repeating: [], count: fds.count)
    var finished = [UInt64](repeating: 0, count: fds.count)
    var waiting = fds.indices.map { pollfd(fd: fds[$0], events: Int16(POLLIN), revents: 0) }
    var slots = Array(fds.indices)
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    let deadline = nowNanos() + timeoutSeconds * 1_000_000_000
    while !waiting.isEmpty {
        guard nowNanos() < deadline else { fail("\(waiting.count) of \(fds.count) connections incomplete after \(timeoutSeconds) s") }
        guard poll(&waiting, nfds_t(waiting.count), 100) > 0 else { continue }
        let at = nowNanos()
        var still: [pollfd] = [], stillSlots: [Int] = []
        for (entry, slot) in zip(waiting, slots) {
            if entry.revents != 0 {
                let n = recv(entry.fd, &buffer, buffer.count, 0)
                guard n > 0 else { fail("connection \(slot) ended early: \(n == 0 ? "closed" : String(cString: strerror(errno)))") }
                received[slot] += buffer[0..<n]
                if done(received[slot]) {
                    finished[slot] = at
                    continue
                }
            }
            still.append(pollfd(fd: entry.fd, events: Int16(POLLIN), revents: 0))
            stillSlots.append(slot)
        }
        waiting = still
        slots = stillSlots
    }
    return finished
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    guard haystack.count >= needle.count else { return false }
    return (0...(haystack.count - needle.count)).contains { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
}

let headEnd = Array("\r\n\r\n".utf8), action = Array("\"action\"".utf8)
var latencies: [Double] = []
let run = nowNanos()
for round in 0..<rounds {
    let key = "watched/\(run)-\(round)"
    let fds = (0..<watchers).map { _ in open(sending: "GET /v2/keys/\(key)?wait=true HTTP/1.1\r\nHost: x\r\n\r\n") }
    // A watch answers its head at once: after it, the watch is in place.
    _ = readUntil(fds, timeoutSeconds: 30) { contains($0, headEnd) }
    usleep(200_000)
    let start = nowNanos()
    let put = open(sending: "PUT /v2/keys/\(key) HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                   + "Content-Length: 7\r\n\r\nvalue=1")
    // The head was read above; what follows it is the event.
    latencies += readUntil(fds, timeoutSeconds: 60) { contains($0, action) }.map { Double($0 - start) / 1e6 }
    _ = readUntil([put], timeoutSeconds: 30) { contains($0, headEnd) }
    for fd in fds + [put] { close(fd) }
}
latencies.sort()
let median = latencies.count % 2 == 1 ? latencies[latencies.count / 2] : (latencies[latencies.count / 2 - 1] + latencies[latencies.count / 2]) / 2
let p99 = latencies[min(latencies.count - 1, Int(Double(latencies.count) * 0.99))]
func twoDecimals(_ value: Double) -> String {
    let hundredths = Int((value * 100).rounded())
    return "\(hundredths / 100)." + (hundredths % 100 < 10 ? "0" : "") + "\(hundredths % 100)"
}
print(twoDecimals(median), twoDecimals(p99))
