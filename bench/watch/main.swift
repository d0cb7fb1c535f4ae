// Watch notification latency against a v2 endpoint, in two modes (OneShot.swift, Rearm.swift). One thread and
// poll(2) over non-blocking sockets, so the generator reads 1,000 events in about a millisecond and is not what
// gets measured (a Python asyncio client took tens of milliseconds for the same).
//
//   watch-bench URL WATCHERS ROUNDS                          N new long-polls per round, one PUT each round
//   watch-bench URL WATCHERS ROUNDS --rearm [--interval-ms 300]  N watchers re-arming on keep-alive connections
//
// Prints the median and the p99 in ms, over all watchers' events of all rounds (in --rearm, all but the first).
import Glibc

let arguments = CommandLine.arguments
let usage = "usage: watch-bench http://HOST:PORT WATCHERS ROUNDS [--rearm [--interval-ms MS]]"
guard arguments.count >= 4, let watchers = Int(arguments[2]), let rounds = Int(arguments[3]), watchers > 0, rounds > 0 else { fail(usage) }
var rearm = false, intervalMilliseconds = 300
var options = arguments.dropFirst(4).makeIterator()
while let option = options.next() {
    switch option {
    case "--rearm": rearm = true
    case "--interval-ms":
        guard let value = options.next().flatMap({ Int($0) }), value >= 0 else { fail(usage) }
        intervalMilliseconds = value
    default: fail(usage)
    }
}
let hostPort = arguments[1].hasPrefix("http://") ? String(arguments[1].dropFirst(7)).split(separator: "/").first.map(String.init) ?? "" : ""
guard let colon = hostPort.lastIndex(of: ":"), let port = UInt16(hostPort[hostPort.index(after: colon)...]) else {
    fail("not an http://HOST:PORT URL: \(arguments[1])")
}
var address = sockaddr_in()
address.sin_family = sa_family_t(AF_INET)
address.sin_port = port.bigEndian
guard inet_pton(AF_INET, String(hostPort[..<colon]), &address.sin_addr) == 1 else { fail("the host must be an IPv4 address") }

let latencies = rearm
    ? rearmLatencies(address, watchers: watchers, rounds: rounds, intervalMilliseconds: intervalMilliseconds)
    : oneShotLatencies(address, watchers: watchers, rounds: rounds)
print(medianAndP99(latencies))
