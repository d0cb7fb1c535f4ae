// The binary forms of auth commands (inside a v3 log command) and of the auth state (a section of the v3 snapshot).
// Decoding checks every length, count and name: bytes from a peer or a file are refused, never trusted.
import CairnBase

extension AuthCommand {
    func encode(into writer: inout ByteWriter) {
        switch self {
        case .enable: writer.u8(1)
        case .disable: writer.u8(2)
        case .userAdd(let name, let hash, let noPassword):
            writer.u8(3)
            writer.string(name)
            writer.string(hash)
            writer.u8(noPassword ? 1 : 0)
        case .userDelete(let name):
            writer.u8(4)
            writer.string(name)
        case .userChangePassword(let name, let hash):
            writer.u8(5)
            writer.string(name)
            writer.string(hash)
        case .userGrantRole(let user, let role):
            writer.u8(6)
            writer.string(user)
            writer.string(role)
        case .userRevokeRole(let user, let role):
            writer.u8(7)
            writer.string(user)
            writer.string(role)
        case .roleAdd(let name):
            writer.u8(8)
            writer.string(name)
        case .roleDelete(let name):
            writer.u8(9)
            writer.string(name)
        case .roleGrantPermission(let role, let permission):
            writer.u8(10)
            writer.string(role)
            permission.encode(into: &writer)
        case .roleRevokePermission(let role, let key, let rangeEnd):
            writer.u8(11)
            writer.string(role)
            writer.lengthPrefixed(key)
            writer.lengthPrefixed(rangeEnd)
        case .authenticate(let user, let token, let issued):
            writer.u8(12)
            writer.string(user)
            writer.string(token)
            writer.u64(UInt64(bitPattern: issued))
        case .v2(let change):
            writer.u8(13)
            change.encode(into: &writer)
        }
    }

    static func decode(_ reader: inout ByteReader) throws -> AuthCommand {
        switch try reader.u8() {
        case 1: return .enable
        case 2: return .disable
        case 3:
            let name = try reader.string(), hash = try reader.string()
            return .userAdd(name: name, passwordHash: hash, noPassword: try reader.flag())
        case 4: return .userDelete(name: try reader.string())
        case 5: return .userChangePassword(name: try reader.string(), passwordHash: try reader.string())
        case 6: return .userGrantRole(user: try reader.string(), role: try reader.string())
        case 7: return .userRevokeRole(user: try reader.string(), role: try reader.string())
        case 8: return .roleAdd(name: try reader.string())
        case 9: return .roleDelete(name: try reader.string())
        case 10: return .roleGrantPermission(role: try reader.string(), try AuthPermission.decode(&reader))
        case 11: return .roleRevokePermission(role: try reader.string(), key: try reader.lengthPrefixed(), rangeEnd: try reader.lengthPrefixed())
        case 12: return .authenticate(user: try reader.string(), token: try reader.string(), issuedNanos: Int64(bitPattern: try reader.u64()))
        case 13: return .v2(try V2AuthCommand.decode(&reader))
        case let kind: throw MVCCCommandError.malformed("auth command kind \(kind)")
        }
    }
}

extension AuthPermission {
    func encode(into writer: inout ByteWriter) {
        writer.u8(kind.rawValue)
        writer.lengthPrefixed(key)
        writer.lengthPrefixed(rangeEnd)
    }

    static func decode(_ reader: inout ByteReader) throws -> AuthPermission {
        let raw = try reader.u8()
        guard let kind = Kind(rawValue: raw) else { throw MVCCCommandError.malformed("permission type \(raw)") }
        return AuthPermission(kind: kind, key: try reader.lengthPrefixed(), rangeEnd: try reader.lengthPrefixed())
    }
}

extension AuthStore {
    /// Layout: enabled u8 | revision u64 | user count u64, then per user name, hash, no-password u8, role count u64
    /// and names | role count u64, then per role name, permission count u64 and permissions | token count u64, then per
    /// token the token, user and issue time u64 | the v2 state (`V2AuthState.encode`). Users, roles and tokens in name order, so equal states encode equally.
    func encode(into writer: inout ByteWriter) {
        writer.u8(enabled ? 1 : 0)
        writer.u64(revision)
        writer.u64(UInt64(users.count))
        for user in users.values.sorted(by: { $0.name < $1.name }) {
            writer.string(user.name)
            writer.string(user.passwordHash)
            writer.u8(user.noPassword ? 1 : 0)
            writer.u64(UInt64(user.roles.count))
            for role in user.roles { writer.string(role) }
        }
        writer.u64(UInt64(roles.count))
        for role in roles.values.sorted(by: { $0.name < $1.name }) {
            writer.string(role.name)
            writer.u64(UInt64(role.permissions.count))
            for permission in role.permissions { permission.encode(into: &writer) }
        }
        writer.u64(UInt64(tokens.count))
        for (token, entry) in tokens.sorted(by: { $0.key < $1.key }) {
            writer.string(token)
            writer.string(entry.user)
            writer.u64(UInt64(bitPattern: entry.issuedNanos))
        }
        v2.encode(into: &writer)
    }

    static func decode(_ reader: inout ByteReader) throws -> AuthStore {
        func count(_ max: Int) throws -> Int {
            let n = try reader.u64()
            guard n <= UInt64(max) else { throw MVCCSnapshotError.malformed("auth: a count of \(n)") }
            return Int(n)
        }
        var store = AuthStore()
        store.enabled = try reader.flag()
        store.revision = try reader.u64()
        for _ in 0..<(try count(usersMax)) {
            let name = try reader.string(), hash = try reader.string(), noPassword = try reader.flag()
            var roles: [String] = []
            for _ in 0..<(try count(rolesMax + 1)) { roles.append(try reader.string()) }
            store.users[name] = AuthUser(name: name, passwordHash: hash, noPassword: noPassword, roles: roles.sorted())
        }
        for _ in 0..<(try count(rolesMax)) {
            let name = try reader.string()
            var permissions: [AuthPermission] = []
            for _ in 0..<(try count(permissionsPerRoleMax)) { permissions.append(try AuthPermission.decode(&reader)) }
            store.roles[name] = AuthRole(name: name, permissions: permissions)
        }
        for _ in 0..<(try count(tokensMax)) {
            let token = try reader.string(), user = try reader.string()
            store.tokens[token] = AuthToken(user: user, issuedNanos: Int64(bitPattern: try reader.u64()))
        }
        store.v2 = try V2AuthState.decode(&reader)
        return store
    }
}

extension V2AuthCommand {
    func encode(into writer: inout ByteWriter) {
        switch self {
        case .enable: writer.u8(1)
        case .disable: writer.u8(2)
        case .createUser(let user):
            writer.u8(3)
            user.encode(into: &writer)
        case .updateUser(let name, let hash, let grant, let revoke):
            writer.u8(4)
            writer.string(name)
            writer.optionalStrings(hash.map { [$0] })
            writer.optionalStrings(grant)
            writer.optionalStrings(revoke)
        case .deleteUser(let name):
            writer.u8(5)
            writer.string(name)
        case .createRole(let role):
            writer.u8(6)
            role.encode(into: &writer)
        case .updateRole(let name, let grant, let revoke):
            writer.u8(7)
            writer.string(name)
            grant.encode(into: &writer)
            revoke.encode(into: &writer)
        case .deleteRole(let name):
            writer.u8(8)
            writer.string(name)
        }
    }

    static func decode(_ reader: inout ByteReader) throws -> V2AuthCommand {
        switch try reader.u8() {
        case 1: return .enable
        case 2: return .disable
        case 3: return .createUser(try V2AuthUser.decode(&reader))
        case 4:
            let name = try reader.string(), hash = try reader.optionalStrings()
            guard (hash?.count ?? 1) == 1 else { throw MVCCCommandError.malformed("v2 auth: a password hash list") }
            return .updateUser(name: name, passwordHash: hash?.first, grant: try reader.optionalStrings() ?? [],
                               revoke: try reader.optionalStrings() ?? [])
        case 5: return .deleteUser(name: try reader.string())
        case 6: return .createRole(try V2AuthRole.decode(&reader))
        case 7: return .updateRole(name: try reader.string(), grant: try V2AuthRole.decode(&reader), revoke: try V2AuthRole.decode(&reader))
        case 8: return .deleteRole(name: try reader.string())
        case let kind: throw MVCCCommandError.malformed("v2 auth command kind \(kind)")
        }
    }
}

extension V2AuthUser {
    func encode(into writer: inout ByteWriter) {
        writer.string(name)
        writer.string(passwordHash)
        writer.optionalStrings(roles)
    }

    static func decode(_ reader: inout ByteReader) throws -> V2AuthUser {
        V2AuthUser(name: try reader.string(), passwordHash: try reader.string(), roles: try reader.optionalStrings())
    }
}

extension V2AuthRole {
    func encode(into writer: inout ByteWriter) {
        writer.string(name)
        writer.optionalStrings(read)
        writer.optionalStrings(write)
    }

    static func decode(_ reader: inout ByteReader) throws -> V2AuthRole {
        V2AuthRole(name: try reader.string(), read: try reader.optionalStrings(), write: try reader.optionalStrings())
    }
}

extension V2AuthState {
    /// enabled u8 | user count u64 and users | role count u64 and roles, each in name order.
    func encode(into writer: inout ByteWriter) {
        writer.u8(enabled ? 1 : 0)
        writer.u64(UInt64(users.count))
        for user in users.values.sorted(by: { $0.name < $1.name }) { user.encode(into: &writer) }
        writer.u64(UInt64(roles.count))
        for role in roles.values.sorted(by: { $0.name < $1.name }) { role.encode(into: &writer) }
    }

    static func decode(_ reader: inout ByteReader) throws -> V2AuthState {
        var state = V2AuthState()
        state.enabled = try reader.flag()
        for _ in 0..<(try reader.count(AuthStore.usersMax)) {
            let user = try V2AuthUser.decode(&reader)
            state.users[user.name] = user
        }
        for _ in 0..<(try reader.count(AuthStore.rolesMax)) {
            let role = try V2AuthRole.decode(&reader)
            state.roles[role.name] = role
        }
        return state
    }
}

extension ByteWriter {
    fileprivate mutating func string(_ value: String) { lengthPrefixed(Array(value.utf8)) }

    /// A list that may be absent: 0, or 1 then the count u32 and the strings.
    fileprivate mutating func optionalStrings(_ values: [String]?) {
        guard let values else { return u8(0) }
        u8(1)
        u32(UInt32(truncatingIfNeeded: values.count))
        for value in values { string(value) }
    }
}

extension ByteReader {
    fileprivate mutating func string() throws -> String {
        let bytes = try lengthPrefixed()
        guard bytes.count <= AuthStore.nameBytesMax * 2, let value = String(validating: bytes, as: UTF8.self) else {
            throw MVCCCommandError.malformed("an auth name of \(bytes.count) bytes that is not short UTF-8")
        }
        return value
    }

    fileprivate mutating func count(_ max: Int) throws -> Int {
        let n = try u64()
        guard n <= UInt64(max) else { throw MVCCCommandError.malformed("auth: a count of \(n)") }
        return Int(n)
    }

    fileprivate mutating func optionalStrings() throws -> [String]? {
        guard try flag() else { return nil }
        let n = Int(try u32())
        guard n <= AuthStore.permissionsPerRoleMax else { throw MVCCCommandError.malformed("auth: a list of \(n)") }
        var values: [String] = []
        for _ in 0..<n { values.append(try string()) }
        return values
    }

    fileprivate mutating func flag() throws -> Bool {
        let value = try u8()
        guard value < 2 else { throw MVCCCommandError.malformed("flag \(value)") }
        return value == 1
    }
}
