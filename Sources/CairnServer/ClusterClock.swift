// Cluster time for a member: read from the wall clock once at start, then advanced by the monotonic clock, so a
// wall-clock jump while running moves no TTL. (In a cluster the leader stamps entries with it; see DESIGN.md.)
import Glibc

package struct ClusterClock: Sendable {
    private let originUnixNanoseconds: Int64
    private let originMonotonicNanoseconds: Int64

    package init() {
        originUnixNanoseconds = Self.read(CLOCK_REALTIME)
        originMonotonicNanoseconds = Self.read(CLOCK_MONOTONIC)
    }

    /// Nanoseconds since the Unix epoch, never going backwards within this process.
    package func now() -> Int64 {
        originUnixNanoseconds + (Self.read(CLOCK_MONOTONIC) - originMonotonicNanoseconds)
    }

    private static func read(_ clock: clockid_t) -> Int64 {
        var time = timespec()
        clock_gettime(clock, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
}
