// watch-bench's re-arming mode, as v2 clients watch: each watcher keeps one keep-alive connection and, on each
// event, at once asks on it for the next (`wait=true&waitIndex=<modifiedIndex+1>`); one PUT every interval.
import Glibc

/// Connections polled together, each with its reader; `handle` gets every whole response as it completes.
private struct Connections {
    var fds: [Int32] = []
    var readers: [ResponseReader] = []
    private var buffer = [UInt8](repeating: 0, count: 64 * 1024)

    mutating func add(_ fd: Int32) {
        fds.append(fd)
        readers.append(ResponseReader())
    }

    /// Waits up to `milliseconds` for bytes, reads what came, and hands out whole responses with the time they came.
    mutating func pollOnce(milliseconds: Int32, _ handle: (_ slot: Int, ResponseReader.Response, _ at: UInt64) -> Void) {
        var entries = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        guard poll(&entries, nfds_t(entries.count), milliseconds) > 0 else { return }
        for (slot, entry) in entries.enumerated() where entry.revents != 0 {
            let n = recv(entry.fd, &buffer, buffer.count, 0)
            // Each read's own time: a response is timed when this client has it, not when the poll that found it returned.
            let at = nowNanos()
            guard n > 0 else { fail("connection \(slot) ended early: \(n == 0 ? "closed" : String(cString: strerror(errno)))") }
            readers[slot].append(buffer[0..<n])
            while let response = readers[slot].next() { handle(slot, response, at) }
        }
    }
}

/// Every watcher's latency in ms, from a PUT's send to that PUT's event, over all rounds after the first (a warm-up).
func rearmLatencies(_ address: sockaddr_in, watchers: Int, rounds: Int, intervalMilliseconds: Int) -> [Double] {
    let key = "rearmed/\(nowNanos())"
    func watchRequest(from index: UInt64) -> String { "GET /v2/keys/\(key)?wait=true&waitIndex=\(index) HTTP/1.1\r\nHost: x\r\n\r\n" }
    func deadline(_ seconds: UInt64) -> UInt64 { nowNanos() + seconds * 1_000_000_000 }
    var connections = Connections()
    // The writer is slot 0; its first PUT creates the key, and the watchers start after that index.
    connections.add(open(address, sending: putRequest(key: key, value: "0")))
    var createdIndex: UInt64?
    let created = deadline(30)
    while createdIndex == nil, nowNanos() < created {
        connections.pollOnce(milliseconds: 100) { _, response, _ in
            guard response.status / 100 == 2, let index = firstNumber(named: "modifiedIndex", in: response.body) else {
                fail("the first PUT failed: \(response.status) \(String(decoding: response.body, as: UTF8.self))")
            }
            createdIndex = index
        }
    }
    guard let createdIndex else { fail("no answer to the first PUT") }
    let writer = connections.fds[0]
    for _ in 0..<watchers { connections.add(open(address, sending: watchRequest(from: createdIndex + 1))) }
    // A watch answers its head at once: once all have, every watch is in place.
    let armed = deadline(30)
    while connections.readers.dropFirst().contains(where: { !$0.hasHead }) {
        guard nowNanos() < armed else { fail("watches not in place after 30 s") }
        connections.pollOnce(milliseconds: 100) { _, response, _ in fail("unexpected response \(response.status) before any write") }
    }
    usleep(200_000)

    let fds = connections.fds
    var sentAtByIndex: [UInt64: UInt64] = [:]
    var events: [(index: UInt64, at: UInt64, round: Int)] = []
    var lastSent: UInt64 = 0
    for round in 0..<rounds {
        let due = lastSent + UInt64(intervalMilliseconds) * 1_000_000
        // Waiting, the client reads what comes (the heads of the watches just re-armed), so none is left to read
        // when the event is timed.
        while case let now = nowNanos(), now < due {
            connections.pollOnce(milliseconds: Int32(min(100, (due - now) / 1_000_000 + 1))) { slot, response, _ in
                fail("unexpected response \(response.status) on connection \(slot) between writes")
            }
        }
        lastSent = nowNanos()
        sendAll(writer, putRequest(key: key, value: "\(round + 1)"))
        var eventsThisRound = 0, written = false
        let roundEnd = deadline(60)
        while eventsThisRound < watchers || !written {
            guard nowNanos() < roundEnd else { fail("round \(round): \(watchers - eventsThisRound) of \(watchers) events missing after 60 s") }
            var rearming: [(fd: Int32, index: UInt64)] = []
            connections.pollOnce(milliseconds: 100) { slot, response, at in
                guard response.status == 200, let index = firstNumber(named: "modifiedIndex", in: response.body) else {
                    fail("\(slot == 0 ? "PUT" : "watch") answered \(response.status): \(String(decoding: response.body, as: UTF8.self))")
                }
                if slot == 0 {
                    sentAtByIndex[index] = lastSent
                    written = true
                } else {
                    rearming.append((fds[slot], index + 1))
                    events.append((index, at, round))
                    eventsThisRound += 1
                }
            }
            // Re-armed once this poll's events are read and timed: the sends would otherwise delay reading the rest.
            for (fd, index) in rearming { sendAll(fd, watchRequest(from: index)) }
        }
    }
    for fd in fds { close(fd) }
    let measured = rounds > 1 ? events.filter { $0.round > 0 } : events
    return measured.map { event in
        guard let sentAt = sentAtByIndex[event.index] else { fail("an event at index \(event.index), which no PUT of this run wrote") }
        return Double(event.at - sentAt) / 1e6
    }
}
