// This member's clock: read from the wall clock once at start, then advanced by the monotonic clock, so a wall-clock
// jump while running moves nothing. The leader stamps entries with it; cluster time continues from the last entry's
// time when leadership moves, so only the first leader of a new cluster's wall clock ever matters.
import Glibc

package struct ClusterClock: Sendable {
    private let originUnixNanoseconds: Int64
    private let originMonotonicNanoseconds: Int64

    /// - Parameter wallOffsetNanoseconds: added to the wall clock read at start (tests give members skewed clocks).
    package init(wallOffsetNanoseconds: Int64 = 0) {
        originUnixNanoseconds = Self.read(CLOCK_REALTIME) + wallOffsetNanoseconds
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
