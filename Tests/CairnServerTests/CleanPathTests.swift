// Go's ServeMux redirects an unclean path to its clean form, keeping a trailing slash; the fast check for clean
// paths must agree with the full cleaning on every path.
import CairnStore
import Testing
@testable import CairnServer

@Suite struct CleanPathTests {
    /// The cleaning written plainly: what `goCleanPath` answered before it had a fast path.
    static func reference(_ path: String) -> String? {
        let clean = cleanKeyPath(path)
        let redirect = path.hasSuffix("/") && clean != "/" ? clean + "/" : clean
        return redirect == path ? nil : redirect
    }

    @Test func everyShortPathRedirectsAsGoWould() {
        var paths = [""]
        var checked = 0
        for _ in 0..<7 {
            paths = paths.flatMap { path in ["/", ".", "a"].map { path + $0 } }
            for path in paths {
                #expect(goCleanPath(Substring(path)) == Self.reference(path), "\(path)")
                checked += 1
            }
        }
        #expect(checked == 3 + 9 + 27 + 81 + 243 + 729 + 2187)
        #expect(goCleanPath("/v2/keys/a/") == nil)
        #expect(goCleanPath("/v2//keys") == "/v2/keys")
    }
}
