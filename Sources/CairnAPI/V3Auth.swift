// etcd's v3 auth calls as the JSON gateway carries them (`/v3/auth/...`): the requests decoded from their proto
// field names, and the answers written as etcd 3.4 writes them (user and role lists, a role's permissions, a token).
import CairnBase
import CairnMVCC

package enum V3AuthRequest: Sendable, Equatable {
    case enable, disable
    case authenticate(name: String, password: String)
    case userAdd(name: String, password: String, noPassword: Bool)
    case userGet(name: String)
    case userList
    case userDelete(name: String)
    case userChangePassword(name: String, password: String)
    case userGrantRole(user: String, role: String)
    case userRevokeRole(name: String, role: String)
    case roleAdd(name: String)
    case roleGet(role: String)
    case roleList
    case roleDelete(role: String)
    case roleGrantPermission(name: String, AuthPermission)
    case roleRevokePermission(role: String, key: [UInt8], rangeEnd: [UInt8])

    /// The request at a gateway path under `auth/`, nil for a path that is not one.
    package init?(path: Substring, _ fields: V3Fields) throws(V3Error) {
        switch path {
        case "enable": self = .enable
        case "disable": self = .disable
        case "authenticate": self = .authenticate(name: try fields.string("name"), password: try fields.string("password"))
        case "user/add":
            let noPassword = try fields.object("options")?.bool("no_password") ?? false
            self = .userAdd(name: try fields.string("name"), password: try fields.string("password"), noPassword: noPassword)
        case "user/get": self = .userGet(name: try fields.string("name"))
        case "user/list": self = .userList
        case "user/delete": self = .userDelete(name: try fields.string("name"))
        case "user/changepw": self = .userChangePassword(name: try fields.string("name"), password: try fields.string("password"))
        case "user/grant": self = .userGrantRole(user: try fields.string("user"), role: try fields.string("role"))
        case "user/revoke": self = .userRevokeRole(name: try fields.string("name"), role: try fields.string("role"))
        case "role/add": self = .roleAdd(name: try fields.string("name"))
        case "role/get": self = .roleGet(role: try fields.string("role"))
        case "role/list": self = .roleList
        case "role/delete": self = .roleDelete(role: try fields.string("role"))
        case "role/grant":
            let perm = try fields.object("perm")
            let kind = try perm?.enumeration("permType", [("READ", AuthPermission.Kind.read), ("WRITE", .write), ("READWRITE", .readWrite)])
            let permission = AuthPermission(kind: kind ?? .read, key: try perm?.bytes("key") ?? [], rangeEnd: try perm?.bytes("range_end") ?? [])
            self = .roleGrantPermission(name: try fields.string("name"), permission)
        case "role/revoke":
            self = .roleRevokePermission(role: try fields.string("role"), key: try fields.bytes("key"), rangeEnd: try fields.bytes("range_end"))
        default: return nil
        }
    }

    /// Calls any authenticated user may make about itself: its own user, a role it holds.
    package func isSelfService(user: String, in store: AuthStore) -> Bool {
        switch self {
        case .userGet(let name): name == user
        case .roleGet(let role): store.users[user]?.roles.contains(role) ?? false
        default: false
        }
    }
}

extension V3Fields {
    /// A string field ("" when absent).
    package func string(_ name: String) throws(V3Error) -> String {
        guard let value = field(name) else { return "" }
        guard case .string(let text) = value else { throw Self.typeError("string", value) }
        return text
    }
}

extension V3JSON {
    package static func authToken(_ header: V3Header, _ token: String) -> [UInt8] {
        var json = GoJSON()
        var object = V3Object(taking: &json)
        Self.header(&object, header)
        object.nameField("token")
        object.json.string(token)
        object.finish(into: &json)
        return json.take()
    }

    /// `{"header":...,"users":[...]}` and the like: a repeated string, left out when empty.
    package static func strings(_ header: V3Header, _ field: StaticString, _ values: [String]) -> [UInt8] {
        var json = GoJSON()
        var object = V3Object(taking: &json)
        Self.header(&object, header)
        object.array(field, values) { json, value in json.string(value) }
        object.finish(into: &json)
        return json.take()
    }

    package static func rolePermissions(_ header: V3Header, _ permissions: [AuthPermission]) -> [UInt8] {
        var json = GoJSON()
        var object = V3Object(taking: &json)
        Self.header(&object, header)
        object.array("perm", permissions) { json, permission in
            var p = V3Object(taking: &json)
            switch permission.kind {
            case .read: break
            case .write: p.enumName("permType", "WRITE")
            case .readWrite: p.enumName("permType", "READWRITE")
            }
            p.bytes("key", permission.key)
            p.bytes("range_end", permission.rangeEnd)
            p.finish(into: &json)
        }
        object.finish(into: &json)
        return json.take()
    }
}
