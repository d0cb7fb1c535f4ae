// etcd's v3 authentication state as part of the replicated key space: users with password hashes and roles, roles
// with key-range permissions, the enabled flag and the simple tokens handed out, changed only by logged commands.
// Password hashes are made before proposing (the log carries the hash), so applying is deterministic.

package struct AuthPermission: Sendable, Equatable {
    package enum Kind: UInt8, Sendable { case read = 0, write = 1, readWrite = 2 }
    package var kind: Kind
    package var key: [UInt8]
    /// Empty: the single key; [0]: every key from `key` on; otherwise the exclusive end.
    package var rangeEnd: [UInt8]

    package init(kind: Kind, key: [UInt8], rangeEnd: [UInt8]) {
        self.kind = kind
        self.key = key
        self.rangeEnd = rangeEnd
    }

    var allowsRead: Bool { kind != .write }
    var allowsWrite: Bool { kind != .read }
}

package struct AuthUser: Sendable, Equatable {
    package var name: String
    /// A bcrypt hash (`$2b$...`); empty for a user made with `no_password`, who cannot authenticate by password.
    package var passwordHash: String
    package var noPassword: Bool
    /// Sorted, as etcd lists them.
    package var roles: [String]
}

package struct AuthRole: Sendable, Equatable {
    package var name: String
    package var permissions: [AuthPermission]
}

/// A simple token: who it names and when it was handed out (cluster time), for expiry.
package struct AuthToken: Sendable, Equatable {
    package var user: String
    package var issuedNanos: Int64
}

package enum AuthError: Error, Equatable, Sendable, CustomStringConvertible {
    case rootUserMissing, rootRoleMissing, userExists, userEmpty, roleEmpty, userNotFound, roleExists, roleNotFound
    case roleNotGranted, permissionNotGranted, invalidManagement, authFailed, noPasswordUser, permissionDenied
    case invalidToken, notEnabled, tooMany(String)
    case v2(V2AuthError)

    package var description: String {
        switch self {
        case .rootUserMissing: "etcdserver: root user does not exist"
        case .rootRoleMissing: "etcdserver: root user does not have root role"
        case .userExists: "etcdserver: user name already exists"
        case .userEmpty: "etcdserver: user name is empty"
        case .userNotFound: "etcdserver: user name not found"
        case .roleEmpty: "etcdserver: role name is empty"
        case .roleExists: "etcdserver: role name already exists"
        case .roleNotFound: "etcdserver: role name not found"
        case .roleNotGranted: "etcdserver: role is not granted to the user"
        case .permissionNotGranted: "etcdserver: permission is not granted to the role"
        case .invalidManagement: "etcdserver: invalid auth management"
        case .authFailed: "etcdserver: authentication failed, invalid user ID or password"
        case .noPasswordUser: "auth: authentication failed, password was given for no password user"
        case .permissionDenied: "etcdserver: permission denied"
        case .invalidToken: "etcdserver: invalid auth token"
        case .notEnabled: "etcdserver: authentication is not enabled"
        case .tooMany(let what): "etcdserver: too many \(what)"
        case .v2(let error): error.message
        }
    }
}

/// What the log carries for auth: one management operation, or a token handed out by `authenticate`.
package enum AuthCommand: Sendable, Equatable {
    case enable, disable
    case userAdd(name: String, passwordHash: String, noPassword: Bool)
    case userDelete(name: String)
    case userChangePassword(name: String, passwordHash: String)
    case userGrantRole(user: String, role: String)
    case userRevokeRole(user: String, role: String)
    case roleAdd(name: String)
    case roleDelete(name: String)
    case roleGrantPermission(role: String, AuthPermission)
    case roleRevokePermission(role: String, key: [UInt8], rangeEnd: [UInt8])
    /// Checked against the password before proposing; applied, it makes `token` valid on every member.
    case authenticate(user: String, token: String, issuedNanos: Int64)
    /// A change to the v2 API's users, roles or enabled flag (separate from v3's, as in etcd).
    case v2(V2AuthCommand)
}

package struct AuthStore: Sendable, Equatable {
    package static let rootName = "root"
    /// Users, roles, and permissions per role, each: a bound on what the state (and every snapshot) can hold.
    package static let usersMax = 10_000, rolesMax = 10_000, permissionsPerRoleMax = 10_000
    /// Tokens kept; past it the oldest is forgotten (its holder re-authenticates, as after expiry).
    package static let tokensMax = 16_384
    /// User and role names longer than this are refused, as a key is (the log and snapshots stay bounded).
    package static let nameBytesMax = 4096

    package internal(set) var enabled = false
    package internal(set) var users: [String: AuthUser] = [:]
    package internal(set) var roles: [String: AuthRole] = [:]
    package internal(set) var tokens: [String: AuthToken] = [:]
    /// etcd's auth revision: 0 in a new cluster, one more after each change of users, roles or the enabled flag.
    package internal(set) var revision: UInt64 = 0
    /// The v2 API's auth state.
    package internal(set) var v2 = V2AuthState()

    package init() {}

    package mutating func apply(_ command: AuthCommand) throws(AuthError) {
        switch command {
        case .enable:
            guard let root = users[Self.rootName] else { throw .rootUserMissing }
            guard root.roles.contains(Self.rootName) else { throw .rootRoleMissing }
            enabled = true
        case .disable:
            enabled = false
        case .userAdd(let name, let hash, let noPassword):
            try Self.check(name)
            guard users[name] == nil else { throw .userExists }
            guard users.count < Self.usersMax else { throw .tooMany("users") }
            users[name] = AuthUser(name: name, passwordHash: noPassword ? "" : hash, noPassword: noPassword, roles: [])
        case .userDelete(let name):
            guard users[name] != nil else { throw .userNotFound }
            if enabled && name == Self.rootName { throw .invalidManagement }
            users[name] = nil
            forgetTokens(of: name)
        case .userChangePassword(let name, let hash):
            guard users[name] != nil else { throw .userNotFound }
            users[name]?.passwordHash = hash
            users[name]?.noPassword = false
            forgetTokens(of: name)
        case .userGrantRole(let name, let role):
            guard var user = users[name] else { throw .userNotFound }
            guard role == Self.rootName || roles[role] != nil else { throw .roleNotFound }
            if !user.roles.contains(role) {
                user.roles.append(role)
                user.roles.sort()
                users[name] = user
            }
        case .userRevokeRole(let name, let role):
            guard var user = users[name] else { throw .userNotFound }
            if enabled && name == Self.rootName && role == Self.rootName { throw .invalidManagement }
            guard let at = user.roles.firstIndex(of: role) else { throw .roleNotGranted }
            user.roles.remove(at: at)
            users[name] = user
        case .roleAdd(let name):
            try Self.check(name, role: true)
            guard roles[name] == nil else { throw .roleExists }
            guard roles.count < Self.rolesMax else { throw .tooMany("roles") }
            roles[name] = AuthRole(name: name, permissions: [])
        case .roleDelete(let name):
            if enabled && name == Self.rootName { throw .invalidManagement }
            guard roles[name] != nil else { throw .roleNotFound }
            roles[name] = nil
            for (userName, var user) in users where user.roles.contains(name) {
                user.roles.removeAll { $0 == name }
                users[userName] = user
            }
        case .roleGrantPermission(let name, let permission):
            guard var role = roles[name] else { throw .roleNotFound }
            if let at = role.permissions.firstIndex(where: { $0.key == permission.key && $0.rangeEnd == permission.rangeEnd }) {
                role.permissions[at].kind = permission.kind
            } else {
                guard role.permissions.count < Self.permissionsPerRoleMax else { throw .tooMany("permissions") }
                role.permissions.append(permission)
                role.permissions.sort { $0.key == $1.key ? $0.rangeEnd.lexicographicallyPrecedes($1.rangeEnd) : $0.key.lexicographicallyPrecedes($1.key) }
            }
            roles[name] = role
        case .roleRevokePermission(let name, let key, let rangeEnd):
            guard var role = roles[name] else { throw .roleNotFound }
            guard let at = role.permissions.firstIndex(where: { $0.key == key && $0.rangeEnd == rangeEnd }) else {
                throw .permissionNotGranted
            }
            role.permissions.remove(at: at)
            roles[name] = role
        case .v2(let change):
            do throws(V2AuthError) { try v2.apply(change) } catch { throw .v2(error) }
            return
        case .authenticate(let user, let token, let issued):
            // The password was checked when proposed; the user may have gone since.
            guard users[user] != nil else { throw .authFailed }
            if tokens.count >= Self.tokensMax, let oldest = tokens.min(by: { ($0.value.issuedNanos, $0.key) < ($1.value.issuedNanos, $1.key) }) {
                tokens[oldest.key] = nil
            }
            tokens[token] = AuthToken(user: user, issuedNanos: issued)
            return
        }
        revision &+= 1
    }

    private mutating func forgetTokens(of user: String) {
        tokens = tokens.filter { $0.value.user != user }
    }

    private static func check(_ name: String, role: Bool = false) throws(AuthError) {
        if name.isEmpty { throw role ? .roleEmpty : .userEmpty }
        if name.utf8.count > nameBytesMax { throw .invalidManagement }
    }
}
