// `/v2/auth` as etcd 3.4 serves it (enable, users, roles), and the v2 API's credentials: HTTP basic auth checked
// against the replicated v2 users, `root` for management and member changes, roles' key patterns (or the `guest`
// role without credentials) for `/v2/keys`. Changes are tried on a copy of the state first, for etcd's exact
// error, then logged.
import CairnAPI
import CairnBase
import CairnHTTP
import CairnMVCC
import Dispatch
import Synchronization

/// Basic credentials to a v2 user. A bcrypt check takes tens of milliseconds, so a pair that passed is remembered
/// (as a salted digest, keyed by the hash it passed against, so a password change forgets it).
package final class V2Credentials: Sendable {
    static let rememberedMax = 1024
    let bcryptCost: Int
    private let salt: [UInt8] = (0..<16).map { _ in UInt8.random(in: 0...255) }
    private let remembered = Mutex<[String: [UInt8]]>([:])

    package init(bcryptCost: Int = PasswordHash.costDefault) { self.bcryptCost = bcryptCost }

    enum Caller { case anonymous, refused, user(V2AuthUser) }

    /// Who the request's `Authorization` header names: no header is anonymous; anything but a valid pair is refused.
    func caller(_ request: HTTPRequestHead, _ state: V2AuthState) -> Caller {
        guard let header = request.headers["authorization"], !header.isEmpty else { return .anonymous }
        guard header.count > 6, header.prefix(6).lowercased() == "basic ",
              let decoded = try? Base64.decode(Array(header.dropFirst(6).utf8)),
              let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return .refused }
        let name = String(decoding: decoded[..<colon], as: UTF8.self)
        let password = String(decoding: decoded[(colon + 1)...], as: UTF8.self)
        guard let user = state.user(name) else { return .refused }
        let digest = SHA1.digest(salt + Array(user.passwordHash.utf8) + [0] + Array(password.utf8))
        if remembered.withLock({ $0[name] == digest }) { return .user(user) }
        guard PasswordHash.verify(password, against: user.passwordHash) else { return .refused }
        remembered.withLock {
            if $0.count >= Self.rememberedMax { $0.removeAll() }
            $0[name] = digest
        }
        return .user(user)
    }

    /// etcd's `hasRootAccess`: anyone while auth is off, otherwise a user holding the root role.
    func hasRootAccess(_ request: HTTPRequestHead, _ state: V2AuthState) -> Bool {
        guard state.enabled else { return true }
        guard case .user(let user) = caller(request, state) else { return false }
        return (user.roles ?? []).contains(V2AuthState.rootName)
    }

    /// etcd's `hasKeyPrefixAccess` for a `/v2/keys` request on `key`.
    func allowsKey(_ request: HTTPRequestHead, _ state: V2AuthState, key: String, recursive: Bool) -> Bool {
        guard state.enabled else { return true }
        let write = request.method != "GET" && request.method != "HEAD"
        switch caller(request, state) {
        case .anonymous: return state.allows(nil, key: key, write: write, recursive: recursive)
        case .refused: return false
        case .user(let user): return state.allows(user, key: key, write: write, recursive: recursive)
        }
    }

    /// etcd's `writeNoAuth`.
    static func refuse(_ exchange: HTTPExchange) {
        exchange.respond(status: 401, headers: ClientHandler.corsHeaders(contentType: "application/json"),
                         body: V2AuthJSON.message("Insufficient credentials"))
    }
}

struct V2AuthHandler: Sendable {
    let node: KeySpaceNode
    let credentials: V2Credentials
    static let bodyBytesMax = 64 * 1024

    /// Whether `path` is one of etcd's `/v2/auth` routes.
    static func handles(_ path: String) -> Bool {
        path == "/v2/auth/enable" || ["/v2/auth/users", "/v2/auth/roles"].contains { path == $0 || path.hasPrefix($0 + "/") }
    }

    func handle(_ exchange: HTTPExchange, path: String) {
        if path == "/v2/auth/enable" { return enable(exchange) }
        // etcd cleans the path ("/users/" is "/users"), then wants at most one name after the collection.
        var rest = path.dropFirst("/v2/auth/".count)
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        let pieces = rest.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count <= 2 else {
            return exchange.respond(status: 400, headers: ClientHandler.corsHeaders(contentType: "application/json"),
                                    body: V2AuthJSON.message("Invalid path"))
        }
        let name = pieces.count == 2 ? String(pieces[1]) : nil
        switch (pieces[0], name) {
        case ("users", nil): checked(exchange, ["GET"]) { listUsers(exchange) }
        case ("users", let name?): checked(exchange, ["GET", "PUT", "DELETE"]) { user(exchange, name) }
        case (_, nil): checked(exchange, ["GET"]) { respond(exchange, 200, V2AuthJSON.roles(roles(state.roleNames))) }
        case (_, let name?): checked(exchange, ["GET", "PUT", "DELETE"]) { role(exchange, name) }
        }
    }

    private var state: V2AuthState { node.view().mvcc.auth.v2 }

    private func roles(_ names: [String]) -> [V2AuthRole] { names.compactMap { state.role($0) } }

    /// etcd's `allowMethod`, then root access.
    private func checked(_ exchange: HTTPExchange, _ methods: [String], _ body: () -> Void) {
        guard methods.contains(exchange.request.method) else { return ClientHandler.methodNotAllowed(exchange, methods) }
        guard credentials.hasRootAccess(exchange.request, state) else { return V2Credentials.refuse(exchange) }
        body()
    }

    private func enable(_ exchange: HTTPExchange) {
        let methods = ["GET", "PUT", "DELETE"], method = exchange.request.method
        guard methods.contains(method) else { return ClientHandler.methodNotAllowed(exchange, methods) }
        // etcd's hasWriteRootAccess: reading the flag needs nothing.
        guard method == "GET" || credentials.hasRootAccess(exchange.request, state) else { return V2Credentials.refuse(exchange) }
        switch method {
        case "GET": respond(exchange, 200, V2AuthJSON.enabled(state.enabled))
        case "PUT": change(exchange, .enable, status: 200) { _ in [] }
        default: change(exchange, .disable, status: 200) { _ in [] }
        }
    }

    private func listUsers(_ exchange: HTTPExchange) {
        let state = self.state
        let users = state.users.keys.sorted().compactMap { name in state.user(name).map { (name, roles($0.roles ?? [])) } }
        respond(exchange, 200, V2AuthJSON.users(users))
    }

    private func user(_ exchange: HTTPExchange, _ name: String) {
        switch exchange.request.method {
        case "GET":
            guard let user = state.user(name) else { return message(exchange, 404, "auth: User \(name) does not exist.") }
            for role in user.roles ?? [] where state.role(role) == nil { return message(exchange, 404, "auth: Role \(role) does not exist.") }
            respond(exchange, 200, V2AuthJSON.userWithRoles(name, roles(user.roles ?? [])))
        case "DELETE": change(exchange, .deleteUser(name: name), status: 200) { _ in [] }
        default:
            body(exchange, V2AuthJSON.userBody) { body in
                guard body.user == name else { return message(exchange, 400, "User JSON name does not match the name in the URL") }
                putUser(exchange, body)
            }
        }
    }

    /// etcd's PUT of a user: roles given create it (answered 200); no grant or revoke creates or changes the password
    /// (201 when created); otherwise grants and revokes roles.
    private func putUser(_ exchange: HTTPExchange, _ body: V2AuthUserBody) {
        let name = body.user
        if !body.grant.isEmpty || !body.revoke.isEmpty {
            if !(body.roles ?? []).isEmpty { return message(exchange, 400, "User JSON contains both roles and grant/revoke") }
            return hashed(exchange, body.password) { hash in
                .updateUser(name: name, passwordHash: hash, grant: body.grant, revoke: body.revoke)
            } answer: { created in V2AuthJSON.user(name, roles: created.user(name)?.roles) }
        }
        let creates = !(body.roles ?? []).isEmpty || state.users[name] == nil
        if creates {
            if body.password.isEmpty { return message(exchange, 400, "auth: Cannot create user \(name) with an empty password") }
            let status = (body.roles ?? []).isEmpty ? 201 : 200
            hashed(exchange, body.password, status: status) { hash in
                .createUser(V2AuthUser(name: name, passwordHash: hash ?? "", roles: body.roles))
            } answer: { created in V2AuthJSON.user(name, roles: created.user(name)?.roles) }
        } else {
            hashed(exchange, body.password) { hash in .updateUser(name: name, passwordHash: hash, grant: [], revoke: []) }
                answer: { updated in V2AuthJSON.user(name, roles: updated.user(name)?.roles) }
        }
    }

    private func role(_ exchange: HTTPExchange, _ name: String) {
        switch exchange.request.method {
        case "GET":
            guard let role = state.role(name) else { return message(exchange, 404, "auth: Role \(name) does not exist.") }
            respond(exchange, 200, V2AuthJSON.role(role))
        case "DELETE": change(exchange, .deleteRole(name: name), status: 200) { _ in [] }
        default:
            body(exchange, V2AuthJSON.roleBody) { body in
                guard body.role == name else { return message(exchange, 400, "Role JSON name does not match the name in the URL") }
                let noGrant = body.grant?.isEmpty ?? true, noRevoke = body.revoke?.isEmpty ?? true
                if noGrant && noRevoke {
                    let role = body.permissions ?? V2AuthRole(name: name, read: nil, write: nil)
                    return change(exchange, .createRole(role), status: 201) { _ in V2AuthJSON.role(role) }
                }
                if !(body.permissions?.isEmpty ?? true) {
                    return message(exchange, 400, "Role JSON contains both permissions and grant/revoke")
                }
                let none = V2AuthRole(name: name, read: nil, write: nil)
                change(exchange, .updateRole(name: name, grant: body.grant ?? none, revoke: body.revoke ?? none), status: 200) { state in
                    V2AuthJSON.role(state.role(name) ?? none)
                }
            }
        }
    }

    // MARK: - Plumbing

    private func body<Body: Sendable>(_ exchange: HTTPExchange, _ decode: @escaping @Sendable ([UInt8]) -> Body?,
                                      _ then: @escaping @Sendable (Body) -> Void) {
        exchange.collectBody(bytesMax: Self.bodyBytesMax) { result in
            guard case .success(let bytes) = result, let body = decode(bytes) else {
                return message(exchange, 400, V2AuthJSON.invalidBody)
            }
            then(body)
        }
    }

    /// Hashes `password` (none when empty) off the queues, then logs the command made with the hash.
    private func hashed(_ exchange: HTTPExchange, _ password: String, status: Int = 200,
                        _ command: @escaping @Sendable (String?) -> V2AuthCommand,
                        answer: @escaping @Sendable (V2AuthState) -> [UInt8]) {
        let cost = credentials.bcryptCost
        DispatchQueue.global().async {
            var hash: String?
            if !password.isEmpty {
                guard let made = PasswordHash.make(password, cost: cost) else { return message(exchange, 500, "cannot hash the password") }
                hash = made
            }
            change(exchange, command(hash), status: status, answer)
        }
    }

    /// Tries `command` on a copy of the state (etcd's error, if any, changes nothing), then logs it.
    private func change(_ exchange: HTTPExchange, _ command: V2AuthCommand, status: Int,
                        _ answer: @escaping @Sendable (V2AuthState) -> [UInt8]) {
        var trial = state
        do throws(V2AuthError) { try trial.apply(command) } catch { return message(exchange, error.status, error.message) }
        node.proposeV3(.auth(.v2(command))) { result, view in
            switch result {
            case .success: respond(exchange, status, answer(view.mvcc.auth.v2))
            // Changed by another request since the trial: etcd's conflict.
            case .failure(let error) where error.code == .failedPrecondition: message(exchange, 409, error.message)
            case .failure(let error): message(exchange, 500, error.message)
            }
        }
    }

    private func respond(_ exchange: HTTPExchange, _ status: Int, _ body: [UInt8]) {
        var headers = ClientHandler.corsHeaders(contentType: "application/json")
        headers.add("X-Etcd-Cluster-Id", hex(node.clusterID))
        exchange.respond(status: status, headers: headers, body: body)
    }

    private func message(_ exchange: HTTPExchange, _ status: Int, _ text: String) {
        respond(exchange, status, V2AuthJSON.message(text))
    }
}
