// Helpers every test target shares: polling for a condition with a bounded wait (tests never sleep and hope).
import Foundation

/// Polls `condition` every 10 ms until it holds or `seconds` pass; returns its last value.
package func eventually(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
