// A member whose descriptors run out under idle client connections: it must not spin accepting, and must serve
// again by itself once they go. Runs the cairn executable under a low RLIMIT_NOFILE.
import Foundation
import Glibc
import CairnTestSupport
import Testing

/// CPU time (user + system) a process has used so far, in seconds.
private func cpuSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return 0 }
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    let ticks = (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
    return ticks / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Out of descriptors with connections waiting in the backlog, a member that does not spin uses next to no CPU.
private func expectIdleWhileOutOfDescriptors(_ cairn: RunningCairn) {
    usleep(300_000)
    let pid = cairn.process.processIdentifier
    let before = cpuSeconds(pid)
    usleep(2_000_000)
    let spent = cpuSeconds(pid) - before
    #expect(spent < 0.3, "\(spent) s of CPU in 2 s while out of descriptors")
}

@Suite struct DescriptorExhaustionTests {
    @Test func acceptBacksOffWhenDescriptorsRunOutAndResumes() throws {
        // A member uses about 17 descriptors; 48 leave room for about 30 connections.
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"], descriptorsMax: 48)
        defer { _ = cairn.stop() }
        let port = try #require(UInt16(cairn.baseURL.split(separator: ":").last ?? ""))
        // More idle connections than descriptors: the rest wait in the listen backlog, readable forever.
        var idle = try (0..<60).map { _ in try WatchClient(port: port) }
        expectIdleWhileOutOfDescriptors(cairn)
        idle.removeAll()
        #expect(eventually(seconds: 10) { (try? curl(["-m", "2", cairn.baseURL + "/health"])) == #"{"health":"true"}"# },
                "serves again once the connections are gone")
    }

    /// The same on the peer port: silent connections that never say hello, past the descriptor limit. (A member
    /// listens for peers only when the cluster has others; the second one named here never starts.)
    @Test func peerAcceptBacksOffWhenDescriptorsRunOutAndResumes() throws {
        let peerPort = try unusedLoopbackPort()
        let peerURL = "http://127.0.0.1:\(peerPort)"
        let absentURL = "http://127.0.0.1:\(try unusedLoopbackPort())"
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0", "--listen-peer-urls", peerURL,
                                      "--initial-advertise-peer-urls", peerURL,
                                      "--initial-cluster", "default=\(peerURL),absent=\(absentURL)"],
                                     descriptorsMax: 48)
        defer { _ = cairn.stop() }
        var idle = try (0..<60).map { _ in try WatchClient(port: peerPort) }
        expectIdleWhileOutOfDescriptors(cairn)
        idle.removeAll()
        // Accepted again once descriptors are free: a new silent connection is closed at its hello deadline (5 s),
        // where one left in the backlog would only time out on this side (10 s).
        let probe = try WatchClient(port: peerPort)
        #expect(probe.readUntilClosed(), "a new peer connection is accepted, then closed for want of a hello")
    }
}

/// A loopback TCP port nothing listens on now (the kernel's choice for a socket bound to port 0, then closed).
private func unusedLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let status = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
            bind(fd, pointer, length) == 0 ? getsockname(fd, pointer, &length) : -1
        }
    }
    try #require(status == 0)
    return UInt16(bigEndian: address.sin_port)
}
