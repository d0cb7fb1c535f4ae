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

@Suite struct DescriptorExhaustionTests {
    @Test func acceptBacksOffWhenDescriptorsRunOutAndResumes() throws {
        // A member uses about 17 descriptors; 48 leave room for about 30 connections.
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"], descriptorsMax: 48)
        defer { _ = cairn.stop() }
        let port = try #require(UInt16(cairn.baseURL.split(separator: ":").last ?? ""))
        // More idle connections than descriptors: the rest wait in the listen backlog, readable forever.
        var idle = try (0..<60).map { _ in try WatchClient(port: port) }
        usleep(300_000)
        let pid = cairn.process.processIdentifier
        let before = cpuSeconds(pid)
        usleep(2_000_000)
        let spent = cpuSeconds(pid) - before
        #expect(spent < 0.3, "\(spent) s of CPU in 2 s while out of descriptors")
        idle.removeAll()
        #expect(eventually(seconds: 10) { (try? curl(["-m", "2", cairn.baseURL + "/health"])) == #"{"health":"true"}"# },
                "serves again once the connections are gone")
    }
}
