// v3 auth as a state machine: etcd's rules for users, roles and enabling, permissions over key ranges, tokens and
// their bound, the log encoding and the snapshot section (damaged bytes refused, never trapped on).
import CairnBase
import Testing
@testable import CairnMVCC

@Suite struct AuthTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    static func sample() throws -> AuthStore {
        var store = AuthStore()
        for command: AuthCommand in [
            .userAdd(name: "root", passwordHash: "$2b$10$x", noPassword: false),
            .userGrantRole(user: "root", role: "root"),
            .roleAdd(name: "r1"),
            .roleGrantPermission(role: "r1", AuthPermission(kind: .readWrite, key: bytes("a"), rangeEnd: bytes("c"))),
            .roleGrantPermission(role: "r1", AuthPermission(kind: .read, key: bytes("k"), rangeEnd: [])),
            .roleAdd(name: "r2"),
            .roleGrantPermission(role: "r2", AuthPermission(kind: .write, key: bytes("c"), rangeEnd: bytes("e"))),
            .roleGrantPermission(role: "r2", AuthPermission(kind: .read, key: bytes("z"), rangeEnd: [0])),
            .userAdd(name: "u1", passwordHash: "$2b$10$y", noPassword: false),
            .userGrantRole(user: "u1", role: "r2"),
            .userGrantRole(user: "u1", role: "r1"),
            .enable,
            .authenticate(user: "u1", token: "tok.1", issuedNanos: 5),
        ] {
            try store.apply(command)
        }
        return store
    }

    @Test func enablingNeedsRootWithTheRootRole() throws {
        var store = AuthStore()
        #expect(throws: AuthError.rootUserMissing) { try store.apply(.enable) }
        try store.apply(.userAdd(name: "root", passwordHash: "h", noPassword: false))
        #expect(throws: AuthError.rootRoleMissing) { try store.apply(.enable) }
        try store.apply(.userGrantRole(user: "root", role: "root"))
        try store.apply(.enable)
        #expect(store.enabled)
        #expect(throws: AuthError.invalidManagement) { try store.apply(.userDelete(name: "root")) }
        #expect(throws: AuthError.invalidManagement) { try store.apply(.userRevokeRole(user: "root", role: "root")) }
        #expect(throws: AuthError.userExists) { try store.apply(.userAdd(name: "root", passwordHash: "h", noPassword: false)) }
        #expect(throws: AuthError.userEmpty) { try store.apply(.userAdd(name: "", passwordHash: "h", noPassword: false)) }
        #expect(throws: AuthError.roleEmpty) { try store.apply(.roleAdd(name: "")) }
        #expect(throws: AuthError.roleNotFound) { try store.apply(.userGrantRole(user: "root", role: "nope")) }
    }

    @Test func permissionsCoverRangesAsTheirUnion() throws {
        let store = try Self.sample()
        func can(_ write: Bool, _ key: String, _ end: String? = nil) -> Bool {
            store.permits("u1", write: write, KeyRange(key: Self.bytes(key), rangeEnd: end.map(Self.bytes) ?? []))
        }
        #expect(can(false, "a") && can(true, "b") && can(false, "a", "c"))
        // [a, c) read-write and [c, e) write-only: writes cover [a, e) together, reads stop at c.
        #expect(can(true, "a", "e") && !can(false, "a", "d"))
        #expect(can(false, "k") && !can(true, "k") && !can(false, "k", "l") && !can(false, "k0"))
        #expect(can(false, "z", "\u{0}") && !can(false, "y", "\u{0}")) // an end of "\0" is the open end
        #expect(store.permits("u1", write: false, KeyRange(key: Self.bytes("zz"), rangeEnd: [0])))
        #expect(!store.permits("u1", write: true, KeyRange(key: Self.bytes("zz"), rangeEnd: [0])))
        #expect(!store.permits("nobody", write: false, .single(Self.bytes("a"))))
        #expect(store.permits("root", write: true, KeyRange(key: [0], rangeEnd: [0])))
        let txn = TxnRequest(compare: [Compare(.single(Self.bytes("k")), .version(0), .equal)],
                             success: [.put(PutRequest(key: Self.bytes("d"), value: []))], failure: [])
        #expect(store.permits("u1", .txn(txn)))
        var prevPut = PutRequest(key: Self.bytes("d"), value: [])
        prevPut.prevKV = true
        #expect(!store.permits("u1", .put(prevPut)))
    }

    @Test func tokensAreForgottenWithTheirUserAndBounded() throws {
        var store = try Self.sample()
        #expect(store.user(forToken: "tok.1") == "u1")
        try store.apply(.userChangePassword(name: "u1", passwordHash: "$2b$10$z"))
        #expect(store.user(forToken: "tok.1") == nil)
        for n in 0..<(AuthStore.tokensMax + 3) {
            try store.apply(.authenticate(user: "u1", token: "t\(n)", issuedNanos: Int64(n)))
        }
        #expect(store.tokens.count == AuthStore.tokensMax)
        #expect(store.user(forToken: "t0") == nil && store.user(forToken: "t\(AuthStore.tokensMax + 2)") == "u1")
        try store.apply(.roleDelete(name: "r1"))
        #expect(store.users["u1"]?.roles == ["r2"])
    }

    @Test func commandsRoundTripThroughTheLogEncoding() throws {
        let commands: [AuthCommand] = [
            .enable, .disable, .userAdd(name: "ü", passwordHash: "$2b$", noPassword: true), .userDelete(name: "a"),
            .userChangePassword(name: "a", passwordHash: "h"), .userGrantRole(user: "a", role: "b"),
            .userRevokeRole(user: "a", role: "b"), .roleAdd(name: "r"), .roleDelete(name: "r"),
            .roleGrantPermission(role: "r", AuthPermission(kind: .write, key: [0, 255], rangeEnd: [0])),
            .roleRevokePermission(role: "r", key: [1], rangeEnd: []), .authenticate(user: "u", token: "t.9", issuedNanos: -1),
        ]
        for command in commands {
            #expect(try MVCCCommand(decoding: MVCCCommand.auth(command).encoded()) == .auth(command))
        }
    }

    @Test func damagedCommandsAreRefusedNeverTrapped() throws {
        let encoded = MVCCCommand.auth(.roleGrantPermission(role: "role", AuthPermission(kind: .read, key: [1, 2], rangeEnd: [3]))).encoded()
        var random = SeededRandom(seed: 19)
        for _ in 0..<2000 {
            var damaged = encoded
            let at = Int(random.next() % UInt64(damaged.count))
            damaged[at] = UInt8(truncatingIfNeeded: random.next())
            if random.next() % 3 == 0 { damaged.removeLast(Int(random.next() % UInt64(damaged.count))) }
            _ = try? MVCCCommand(decoding: damaged)
        }
        #expect(throws: MVCCCommandError.self) { try MVCCCommand(decoding: [1, 9, 99]) }
        #expect(throws: MVCCCommandError.self) { try MVCCCommand(decoding: [1, 9, 3, 2, 0, 0, 0, 0xC3, 0x28]) }
    }

    @Test func theAuthStateTravelsInTheSnapshot() throws {
        var space = try MVCCSnapshotTests.sample()
        space.auth = try Self.sample()
        let loaded = try MVCCSnapshotTests.roundTrip(space)
        #expect(loaded.auth == space.auth)
        #expect(loaded.auth.user(forToken: "tok.1") == "u1" && loaded.auth.enabled)
        // A damaged auth section is refused.
        var stream: [UInt8] = []
        try space.writeSnapshot { stream += $0 }
        var random = SeededRandom(seed: 7)
        for _ in 0..<300 {
            var damaged = stream
            let at = damaged.count - 1 - Int(random.next() % 200)
            damaged[at] ^= UInt8(truncatingIfNeeded: random.next() | 1)
            var reader = ByteReader(damaged)
            _ = try? MVCCKeySpace.readSnapshot { Array(try reader.take($0)) }
        }
    }
}

@Suite struct V2AuthTests {
    static func sample() throws -> V2AuthState {
        var state = V2AuthState()
        for command: V2AuthCommand in [
            .createUser(V2AuthUser(name: "root", passwordHash: "$2b$r", roles: nil)),
            .createRole(V2AuthRole(name: "app", read: ["/app/*", "/one"], write: ["/app/*"])),
            .createUser(V2AuthUser(name: "alice", passwordHash: "$2b$a", roles: ["app"])),
            .enable,
        ] {
            try state.apply(command)
        }
        return state
    }

    @Test func etcdsRulesForUsersRolesAndEnabling() throws {
        var state = V2AuthState()
        #expect(throws: V2AuthError(409, "No root user available, please create one")) { try state.apply(.enable) }
        state = try Self.sample()
        #expect(state.user("root")?.roles == ["root"])
        #expect(state.role("guest") == V2AuthRole(name: "guest", read: ["/*"], write: ["/*"]))
        #expect(state.roleNames == ["app", "guest", "root"])
        #expect(throws: V2AuthError(409, "already enabled")) { try state.apply(.enable) }
        #expect(throws: V2AuthError(403, "Cannot delete root user while auth is enabled.")) { try state.apply(.deleteUser(name: "root")) }
        #expect(throws: V2AuthError(403, "Cannot modify role root: is root role.")) { try state.apply(.deleteRole(name: "root")) }
        #expect(throws: V2AuthError(409, "Granting duplicate role app for user alice")) {
            try state.apply(.updateUser(name: "alice", passwordHash: nil, grant: ["app"], revoke: []))
        }
        #expect(throws: V2AuthError(409, "Granting duplicate read permission /one")) {
            try state.apply(.updateRole(name: "app", grant: V2AuthRole(name: "app", read: ["/one"], write: nil),
                                        revoke: V2AuthRole(name: "app", read: nil, write: nil)))
        }
        // Revoking what was never granted is ignored; a change that changes nothing is refused.
        #expect(throws: V2AuthError(400, "Role not updated. Use grant/revoke to update the role.")) {
            try state.apply(.updateRole(name: "app", grant: V2AuthRole(name: "app", read: nil, write: nil),
                                        revoke: V2AuthRole(name: "app", read: ["/zzz"], write: nil)))
        }
        try state.apply(.deleteRole(name: "app"))
        #expect(!state.allows(state.user("alice"), key: "/app/x", write: false, recursive: false))
    }

    @Test func patternsGuestAndRecursion() throws {
        var state = try Self.sample()
        let alice = state.user("alice")
        #expect(state.allows(alice, key: "/app/x", write: true, recursive: false))
        #expect(state.allows(alice, key: "/one", write: false, recursive: false))
        #expect(!state.allows(alice, key: "/one", write: true, recursive: false))
        // A recursive request needs a prefix pattern.
        #expect(!state.allows(alice, key: "/one", write: false, recursive: true))
        #expect(state.allows(alice, key: "/app", write: false, recursive: true) == false)
        #expect(state.allows(alice, key: "/app/", write: false, recursive: true))
        #expect(state.allows(state.user("root"), key: "/anything", write: true, recursive: true))
        #expect(state.allows(nil, key: "/x", write: true, recursive: true))
        try state.apply(.updateRole(name: "guest", grant: V2AuthRole(name: "guest", read: nil, write: nil),
                                    revoke: V2AuthRole(name: "guest", read: ["/*"], write: ["/*"])))
        #expect(state.role("guest") == V2AuthRole(name: "guest", read: [], write: []))
        #expect(!state.allows(nil, key: "/x", write: false, recursive: false))
        try state.apply(.disable)
        #expect(state.allows(nil, key: "/x", write: true, recursive: true))
    }

    @Test func v2CommandsAndStateRoundTrip() throws {
        let commands: [V2AuthCommand] = [
            .enable, .disable, .createUser(V2AuthUser(name: "u", passwordHash: "h", roles: nil)),
            .createUser(V2AuthUser(name: "u", passwordHash: "h", roles: [])),
            .updateUser(name: "u", passwordHash: nil, grant: ["a"], revoke: []), .updateUser(name: "u", passwordHash: "x", grant: [], revoke: ["b"]),
            .deleteUser(name: "u"), .createRole(V2AuthRole(name: "r", read: nil, write: ["/*"])),
            .updateRole(name: "r", grant: V2AuthRole(name: "r", read: [], write: nil), revoke: V2AuthRole(name: "r", read: ["/a"], write: [])),
            .deleteRole(name: "r"),
        ]
        for command in commands {
            #expect(try MVCCCommand(decoding: MVCCCommand.auth(.v2(command)).encoded()) == .auth(.v2(command)))
        }
        var space = MVCCKeySpace()
        space.auth = try AuthTests.sample()
        space.auth.v2 = try Self.sample()
        #expect(try MVCCSnapshotTests.roundTrip(space).auth == space.auth)
    }
}
