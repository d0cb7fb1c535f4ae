// etcd 3.4's v2 auth (`/v2/auth`) as replicated state, kept beside the v3 auth state (etcd keeps it in its v2 store;
// clients cannot tell where): users with bcrypt hashes and roles, roles with glob key patterns, the built-in `root`
// role and the `guest` role unauthenticated requests get. Its rules and messages are etcd's `v2auth` package's.

package struct V2AuthRole: Sendable, Equatable {
    package var name: String
    /// Patterns: a key, or a prefix ending in `*`. nil is JSON's null (as the client sent it), not an empty list.
    package var read: [String]?
    package var write: [String]?

    package init(name: String, read: [String]?, write: [String]?) {
        self.name = name
        self.read = read
        self.write = write
    }

    static let root = V2AuthRole(name: V2AuthState.rootName, read: ["/*"], write: ["/*"])
    static let guest = V2AuthRole(name: V2AuthState.guestName, read: ["/*"], write: ["/*"])

    /// Whether a pattern covers `key`: a prefix pattern (`/a/*`) every key it starts; otherwise the key itself. A
    /// recursive request needs a prefix pattern.
    package func allows(_ key: String, write: Bool, recursive: Bool) -> Bool {
        if name == V2AuthState.rootName { return true }
        for pattern in (write ? self.write : read) ?? [] {
            if pattern.hasSuffix("*") {
                if key.hasPrefix(pattern.dropLast()) { return true }
            } else if !recursive && key == pattern {
                return true
            }
        }
        return false
    }
}

package struct V2AuthUser: Sendable, Equatable {
    package var name: String
    package var passwordHash: String
    /// As given at creation (nil: none given); sorted after any grant or revoke.
    package var roles: [String]?

    package init(name: String, passwordHash: String, roles: [String]?) {
        self.name = name
        self.passwordHash = passwordHash
        self.roles = roles
    }
}

/// etcd's `auth.Error`: an HTTP status and a message.
package struct V2AuthError: Error, Equatable, Sendable {
    package var status: Int
    package var message: String

    init(_ status: Int, _ message: String) {
        self.status = status
        self.message = "auth: " + message
    }
}

package enum V2AuthCommand: Sendable, Equatable {
    case enable, disable
    case createUser(V2AuthUser)
    /// A new password's hash (nil: unchanged), roles to grant and to revoke.
    case updateUser(name: String, passwordHash: String?, grant: [String], revoke: [String])
    case deleteUser(name: String)
    case createRole(V2AuthRole)
    case updateRole(name: String, grant: V2AuthRole, revoke: V2AuthRole)
    case deleteRole(name: String)
}

package struct V2AuthState: Sendable, Equatable {
    package static let rootName = "root", guestName = "guest"

    package internal(set) var enabled = false
    package internal(set) var users: [String: V2AuthUser] = [:]
    /// Every role but `root`, which is built in.
    package internal(set) var roles: [String: V2AuthRole] = [:]

    package init() {}

    /// A user as etcd reads it: `root` always holds the root role.
    package func user(_ name: String) -> V2AuthUser? {
        guard var user = users[name] else { return nil }
        if name == Self.rootName, !(user.roles ?? []).contains(Self.rootName) { user.roles = (user.roles ?? []) + [Self.rootName] }
        return user
    }

    package func role(_ name: String) -> V2AuthRole? { name == Self.rootName ? .root : roles[name] }

    /// Every role's name, `root` included, sorted.
    package var roleNames: [String] { (roles.keys + [Self.rootName]).sorted() }

    package mutating func apply(_ command: V2AuthCommand) throws(V2AuthError) {
        switch command {
        case .enable:
            if enabled { throw V2AuthError(409, "already enabled") }
            guard users[Self.rootName] != nil else { throw V2AuthError(409, "No root user available, please create one") }
            if roles[Self.guestName] == nil { roles[Self.guestName] = .guest }
            enabled = true
        case .disable:
            if !enabled { throw V2AuthError(409, "already disabled") }
            enabled = false
        case .createUser(var user):
            guard users[user.name] == nil else { throw V2AuthError(409, "User \(user.name) already exists.") }
            guard users.count < AuthStore.usersMax else { throw V2AuthError(409, "too many users") }
            if user.name == Self.rootName, !(user.roles ?? []).contains(Self.rootName) { user.roles = (user.roles ?? []) + [Self.rootName] }
            users[user.name] = user
        case .updateUser(let name, let hash, let grant, let revoke):
            guard let old = user(name) else { throw V2AuthError(404, "User \(name) does not exist.") }
            var roles = Set(old.roles ?? [])
            for role in grant {
                if roles.contains(role) { throw V2AuthError(409, "Granting duplicate role \(role) for user \(name)") }
                roles.insert(role)
            }
            for role in revoke {
                if !roles.contains(role) { throw V2AuthError(409, "Revoking ungranted role \(role) for user \(name)") }
                roles.remove(role)
            }
            let updated = V2AuthUser(name: name, passwordHash: hash ?? old.passwordHash, roles: roles.sorted())
            if updated == old { throw V2AuthError(400, "User not updated. Use grant/revoke/password to update the user.") }
            users[name] = updated
        case .deleteUser(let name):
            if enabled && name == Self.rootName { throw V2AuthError(403, "Cannot delete root user while auth is enabled.") }
            guard users[name] != nil else { throw V2AuthError(404, "User \(name) does not exist") }
            users[name] = nil
        case .createRole(let role):
            if role.name == Self.rootName { throw V2AuthError(403, "Cannot modify role root: is root role.") }
            guard roles[role.name] == nil else { throw V2AuthError(409, "Role \(role.name) already exists.") }
            guard roles.count < AuthStore.rolesMax else { throw V2AuthError(409, "too many roles") }
            roles[role.name] = role
        case .updateRole(let name, let grant, let revoke):
            if name == Self.rootName { throw V2AuthError(403, "Cannot modify role root: is root role.") }
            guard let old = roles[name] else { throw V2AuthError(404, "Role \(name) does not exist.") }
            var read = Set(old.read ?? []), write = Set(old.write ?? [])
            for pattern in grant.read ?? [] {
                if read.contains(pattern) { throw V2AuthError(409, "Granting duplicate read permission \(pattern)") }
                read.insert(pattern)
            }
            for pattern in grant.write ?? [] {
                if write.contains(pattern) { throw V2AuthError(409, "Granting duplicate write permission \(pattern)") }
                write.insert(pattern)
            }
            // Revoking what was never granted is not an error in etcd.
            for pattern in revoke.read ?? [] { read.remove(pattern) }
            for pattern in revoke.write ?? [] { write.remove(pattern) }
            let updated = V2AuthRole(name: name, read: read.sorted(), write: write.sorted())
            if updated == old { throw V2AuthError(400, "Role not updated. Use grant/revoke to update the role.") }
            guard read.count + write.count <= AuthStore.permissionsPerRoleMax else { throw V2AuthError(409, "too many permissions") }
            roles[name] = updated
        case .deleteRole(let name):
            if name == Self.rootName { throw V2AuthError(403, "Cannot modify role root: is root role.") }
            guard roles[name] != nil else { throw V2AuthError(404, "Role \(name) doesn't exist.") }
            roles[name] = nil
        }
    }

    /// etcd's `hasKeyPrefixAccess` once the caller is known: nil is a request without credentials (the guest role).
    package func allows(_ user: V2AuthUser?, key: String, write: Bool, recursive: Bool) -> Bool {
        guard enabled else { return true }
        guard let user else { return role(Self.guestName)?.allows(key, write: write, recursive: false) ?? false }
        return (user.roles ?? []).contains { role($0)?.allows(key, write: write, recursive: recursive) ?? false }
    }
}
