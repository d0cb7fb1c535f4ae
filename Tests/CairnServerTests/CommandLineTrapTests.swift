// Arguments that used to trap `cairn` before it parsed its flags: `--` alone (it named no flag to split).
import Foundation
import Testing

@Suite struct CommandLineTrapTests {
    @Test func aDoubleDashIsAnArgumentNotACrash() throws {
        let (status, output) = try runToExit(cairnBinary, ["--", "extra"])
        #expect(status == 64, "\(output)")
        #expect(output.contains("Unexpected argument 'extra'"), "\(output)")
    }
}
