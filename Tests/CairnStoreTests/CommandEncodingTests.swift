// The log's encoding of commands: every field round-trips (a relative TTL stays relative), and no truncation or
// unknown version decodes.
import Testing
@testable import CairnStore

@Suite struct CommandEncodingTests {
    @Test func everyFieldRoundTrips() throws {
        var command = StoreCommand(method: .put, path: "/a/ünï")
        command.value = "v\u{0}x"
        command.dir = true
        command.prevValue = "old"
        command.prevIndex = 42
        command.prevExist = false
        command.recursive = true
        command.refresh = true
        command.ttlNanos = 30_000_000_000
        #expect(try StoreCommand(decoding: command.encoded()) == command)
        var expire = StoreCommand(method: .expire)
        expire.expiration = 1_700_000_000_000_000_000
        #expect(try StoreCommand(decoding: expire.encoded()) == expire)
        #expect(command.resolvingTTL(at: 5).expiration == 30_000_000_005 && command.resolvingTTL(at: 5).ttlNanos == nil)
        command.ttlNanos = .max
        #expect(command.resolvingTTL(at: 5).expiration == .max, "saturates")
    }

    @Test func truncationsAndUnknownVersionsAreRefused() {
        var command = StoreCommand(method: .post, path: "/q")
        command.value = "job"
        let bytes = command.encoded()
        for length in 0..<bytes.count {
            #expect(throws: CommandDecodingError.self) { try StoreCommand(decoding: Array(bytes[0..<length])) }
        }
        #expect(throws: CommandDecodingError.truncated) { try StoreCommand(decoding: bytes + [0]) }
        #expect(throws: CommandDecodingError.unknownVersion(9)) { try StoreCommand(decoding: [9] + bytes.dropFirst()) }
    }
}
