// watch-bench's one-shot mode: N fresh long-poll watchers on a key, one PUT, the time until each has its event;
// a new key and new connections every round.
import Glibc

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

/// Every watcher's latency in ms, from the PUT's send to its event, over all `rounds`.
func oneShotLatencies(_ address: sockaddr_in, watchers: Int, rounds: Int) -> [Double] {
    let headEnd = Array("\r\n\r\n".utf8), action = Array("\"action\"".utf8)
    var latencies: [Double] = []
    let run = nowNanos()
    for round in 0..<rounds {
        let key = "watched/\(run)-\(round)"
        let fds = (0..<watchers).map { _ in open(address, sending: "GET /v2/keys/\(key)?wait=true HTTP/1.1\r\nHost: x\r\n\r\n") }
        // A watch answers its head at once: after it, the watch is in place.
        _ = readUntil(fds, timeoutSeconds: 30) { contains($0, headEnd) }
        usleep(200_000)
        let start = nowNanos()
        let put = open(address, sending: putRequest(key: key, value: "1"))
        // The head was read above; what follows it is the event.
        latencies += readUntil(fds, timeoutSeconds: 60) { contains($0, action) }.map { Double($0 - start) / 1e6 }
        _ = readUntil([put], timeoutSeconds: 30) { contains($0, headEnd) }
        for fd in fds + [put] { close(fd) }
    }
    return latencies
}

func putRequest(key: String, value: String) -> String {
    "PUT /v2/keys/\(key) HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + "Content-Length: \(6 + value.utf8.count)\r\n\r\nvalue=\(value)"
}
