// etcd 3.4's `/v2/auth` bodies: the user and role objects PUT takes (decoded as Go's encoding/json does: names
// matched ignoring case, null lists kept apart from empty ones) and the answers it writes (json.Encoder: a newline
// after each, null for a list never set).
import CairnMVCC

package struct V2AuthUserBody: Sendable, Equatable {
    package var user = ""
    package var password = ""
    package var roles: [String]?
    package var grant: [String] = []
    package var revoke: [String] = []
}

package struct V2AuthRoleBody: Sendable, Equatable {
    package var role = ""
    package var permissions: V2AuthRole?
    package var grant: V2AuthRole?
    package var revoke: V2AuthRole?
}

package enum V2AuthJSON {
    /// etcd's answer to a body that does not decode.
    package static let invalidBody = "Invalid JSON in request body."

    package static func userBody(_ bytes: [UInt8]) -> V2AuthUserBody? {
        guard case .object(let members)? = try? JSONReader.parse(bytes) else { return nil }
        var body = V2AuthUserBody()
        do {
            body.user = try string(members, "user") ?? ""
            body.password = try string(members, "password") ?? ""
            body.roles = try strings(members, "roles")
            body.grant = try strings(members, "grant") ?? []
            body.revoke = try strings(members, "revoke") ?? []
        } catch {
            return nil
        }
        return body
    }

    package static func roleBody(_ bytes: [UInt8]) -> V2AuthRoleBody? {
        guard case .object(let members)? = try? JSONReader.parse(bytes) else { return nil }
        var body = V2AuthRoleBody()
        do {
            body.role = try string(members, "role") ?? ""
            body.permissions = try permissions(members, "permissions", role: body.role)
            body.grant = try permissions(members, "grant", role: body.role)
            body.revoke = try permissions(members, "revoke", role: body.role)
        } catch {
            return nil
        }
        return body
    }

    // MARK: - Answers

    package static func enabled(_ enabled: Bool) -> [UInt8] { Array((enabled ? "{\"enabled\":true}\n" : "{\"enabled\":false}\n").utf8) }

    /// A user as PUT answers it: its name and role names.
    package static func user(_ name: String, roles: [String]?) -> [UInt8] {
        var json = GoJSON()
        json.raw("{\"user\":")
        json.string(name)
        json.raw(",\"roles\":")
        stringList(roles, &json)
        json.raw("}\n")
        return json.take()
    }

    /// A user as GET answers it: its roles in full, left out when it has none.
    package static func userWithRoles(_ name: String, _ roles: [V2AuthRole]) -> [UInt8] {
        var json = GoJSON()
        userWithRoles(name, roles, &json)
        json.raw("\n")
        return json.take()
    }

    package static func users(_ users: [(String, [V2AuthRole])]) -> [UInt8] {
        var json = GoJSON()
        json.raw("{\"users\":")
        if users.isEmpty { json.raw("null") } else {
            json.raw("[")
            for (index, (name, roles)) in users.enumerated() {
                if index > 0 { json.raw(",") }
                userWithRoles(name, roles, &json)
            }
            json.raw("]")
        }
        json.raw("}\n")
        return json.take()
    }

    package static func role(_ role: V2AuthRole) -> [UInt8] {
        var json = GoJSON()
        roleObject(role, &json)
        json.raw("\n")
        return json.take()
    }

    package static func roles(_ roles: [V2AuthRole]) -> [UInt8] {
        var json = GoJSON()
        json.raw("{\"roles\":[")
        for (index, role) in roles.enumerated() {
            if index > 0 { json.raw(",") }
            roleObject(role, &json)
        }
        json.raw("]}\n")
        return json.take()
    }

    /// etcd's `HTTPError`: `{"message":...}`, no newline.
    package static func message(_ text: String) -> [UInt8] {
        var json = GoJSON()
        json.raw("{\"message\":")
        json.string(text)
        json.raw("}")
        return json.take()
    }

    private static func userWithRoles(_ name: String, _ roles: [V2AuthRole], _ json: inout GoJSON) {
        json.raw("{\"user\":")
        json.string(name)
        if !roles.isEmpty {
            json.raw(",\"roles\":[")
            for (index, role) in roles.enumerated() {
                if index > 0 { json.raw(",") }
                roleObject(role, &json)
            }
            json.raw("]")
        }
        json.raw("}")
    }

    private static func roleObject(_ role: V2AuthRole, _ json: inout GoJSON) {
        json.raw("{\"role\":")
        json.string(role.name)
        json.raw(",\"permissions\":{\"kv\":{\"read\":")
        stringList(role.read, &json)
        json.raw(",\"write\":")
        stringList(role.write, &json)
        json.raw("}}}")
    }

    private static func stringList(_ values: [String]?, _ json: inout GoJSON) {
        guard let values else { return json.raw("null") }
        json.raw("[")
        for (index, value) in values.enumerated() {
            if index > 0 { json.raw(",") }
            json.string(value)
        }
        json.raw("]")
    }

    // MARK: - Decoding as Go does

    private struct TypeMismatch: Error {}

    /// Go matches a JSON name to a field exactly first, then ignoring case; a repeated name keeps its last value.
    private static func member(_ members: [(String, JSONValue)], _ name: String) -> JSONValue? {
        members.last { $0.0 == name }?.1 ?? members.last { $0.0.lowercased() == name }?.1
    }

    private static func string(_ members: [(String, JSONValue)], _ name: String) throws -> String? {
        switch member(members, name) {
        case nil, .null?: return nil
        case .string(let text)?: return text
        default: throw TypeMismatch()
        }
    }

    private static func strings(_ members: [(String, JSONValue)], _ name: String) throws -> [String]? {
        switch member(members, name) {
        case nil, .null?: return nil
        case .array(let elements)?:
            return try elements.map { element in
                switch element {
                case .string(let text): return text
                case .null: return ""
                default: throw TypeMismatch()
                }
            }
        default: throw TypeMismatch()
        }
    }

    /// `{"kv":{"read":[...],"write":[...]}}` as a role named `role`; nil when absent or null.
    private static func permissions(_ members: [(String, JSONValue)], _ name: String, role: String) throws -> V2AuthRole? {
        switch member(members, name) {
        case nil, .null?: return nil
        case .object(let fields)?:
            var result = V2AuthRole(name: role, read: nil, write: nil)
            switch member(fields, "kv") {
            case nil, .null?: break
            case .object(let kv)?:
                result.read = try strings(kv, "read")
                result.write = try strings(kv, "write")
            default: throw TypeMismatch()
            }
            return result
        default: throw TypeMismatch()
        }
    }
}

extension V2AuthRole {
    /// etcd's `Permissions.IsEmpty`: nothing to read or write.
    package var isEmpty: Bool { (read ?? []).isEmpty && (write ?? []).isEmpty }
}
