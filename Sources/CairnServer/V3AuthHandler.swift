// `/v3/auth/...` as etcd 3.4's gateway serves it: users, roles and permissions changed through the log, read after a
// ReadIndex round, and `authenticate` checking the password here and then logging the token so every member knows it.
// Password hashing (bcrypt) runs on a global queue: it takes tens of milliseconds by design.
import CairnAPI
import CairnHTTP
import CairnMVCC
import Dispatch

extension V3Handler {
    func authCall(_ exchange: HTTPExchange, _ path: Substring, _ fields: V3Fields, user: String?) throws(V3Error) {
        guard let request = try V3AuthRequest(path: path, fields) else { return plain(exchange, status: 404, "Not Found\n") }
        let store = node.view().mvcc.auth
        if let user, !store.isAdmin(user), !request.isSelfService(user: user, in: store) {
            throw V3Error(AuthError.permissionDenied)
        }
        switch request {
        case .authenticate(let name, let password): authenticate(exchange, name, password)
        case .userAdd(let name, let password, let noPassword):
            if name.isEmpty { throw V3Error(AuthError.userEmpty) }
            if noPassword { return try change(exchange, .userAdd(name: name, passwordHash: "", noPassword: true)) }
            hashThen(exchange, password) { hash in .userAdd(name: name, passwordHash: hash, noPassword: false) }
        case .userChangePassword(let name, let password):
            hashThen(exchange, password) { hash in .userChangePassword(name: name, passwordHash: hash) }
        case .enable: try change(exchange, .enable)
        case .disable: try change(exchange, .disable)
        case .userDelete(let name): try change(exchange, .userDelete(name: name))
        case .userGrantRole(let user, let role): try change(exchange, .userGrantRole(user: user, role: role))
        case .userRevokeRole(let name, let role): try change(exchange, .userRevokeRole(user: name, role: role))
        case .roleAdd(let name): try change(exchange, .roleAdd(name: name))
        case .roleDelete(let role): try change(exchange, .roleDelete(name: role))
        case .roleGrantPermission(let name, let permission): try change(exchange, .roleGrantPermission(role: name, permission))
        case .roleRevokePermission(let role, let key, let rangeEnd):
            try change(exchange, .roleRevokePermission(role: role, key: key, rangeEnd: rangeEnd))
        case .userGet, .userList, .roleGet, .roleList:
            node.linearizableRead { [self] result in
                switch result {
                case .failure(let error): respond(exchange, V3Error(.unavailable, String(decoding: error.causeBytes, as: UTF8.self)))
                case .success(let view):
                    do throws(V3Error) { json(exchange, try Self.read(request, view.mvcc.auth, header(view, revision: view.mvcc.revision))) } catch {
                        respond(exchange, error)
                    }
                }
            }
        }
    }

    private static func read(_ request: V3AuthRequest, _ store: AuthStore, _ header: V3Header) throws(V3Error) -> [UInt8] {
        switch request {
        case .userGet(let name):
            guard let user = store.users[name] else { throw V3Error(AuthError.userNotFound) }
            return V3JSON.strings(header, "roles", user.roles)
        case .userList: return V3JSON.strings(header, "users", store.users.keys.sorted())
        case .roleGet(let name):
            guard let role = store.roles[name] else { throw V3Error(AuthError.roleNotFound) }
            return V3JSON.rolePermissions(header, role.permissions)
        default: return V3JSON.strings(header, "roles", store.roles.keys.sorted())
        }
    }

    /// Logs one auth change and answers with a bare header.
    private func change(_ exchange: HTTPExchange, _ command: AuthCommand) throws(V3Error) {
        node.proposeV3(.auth(command)) { [self] result, view in
            switch result {
            case .failure(let error): respond(exchange, error)
            case .success: json(exchange, V3JSON.headerOnly(header(view, revision: view.mvcc.revision)))
            }
        }
    }

    private func hashThen(_ exchange: HTTPExchange, _ password: String, _ command: @escaping @Sendable (String) -> AuthCommand) {
        let cost = auth.bcryptCost
        DispatchQueue.global().async { [self] in
            guard let hash = PasswordHash.make(password, cost: cost) else {
                return respond(exchange, V3Error(.internalError, "etcdserver: cannot hash the password"))
            }
            do throws(V3Error) { try change(exchange, command(hash)) } catch { respond(exchange, error) }
        }
    }

    private func authenticate(_ exchange: HTTPExchange, _ name: String, _ password: String) {
        service.authenticate(name: name, password: password) { [self] result in
            switch result {
            case .success(let (header, token)): json(exchange, V3JSON.authToken(header, token))
            case .failure(let error): respond(exchange, error)
            }
        }
    }
}

extension V3Service {
    /// etcd's Authenticate, for the gateway and gRPC: after a ReadIndex round (so a user or an enable just logged
    /// elsewhere is seen), the password checked on this member, then a token logged for the user.
    func authenticate(name: String, password: String, _ done: @escaping Done<(V3Header, String)>) {
        let node = self.node
        node.linearizableRead { [self] result in
            guard case .success(let view) = result else { return done(.failure(V3Error(.unavailable, "etcdserver: request timed out"))) }
            let store = view.mvcc.auth
            DispatchQueue.global().async { [self] in
                guard store.enabled else { return done(.failure(V3Error(AuthError.notEnabled))) }
                guard let user = store.users[name] else { return done(.failure(V3Error(AuthError.authFailed))) }
                if user.noPassword { return done(.failure(V3Error(AuthError.noPasswordUser))) }
                guard PasswordHash.verify(password, against: user.passwordHash) else { return done(.failure(V3Error(AuthError.authFailed))) }
                if let jwt = auth.jwt {
                    guard let token = jwt.token(user: name, revision: store.revision, nowNanos: node.now) else {
                        return done(.failure(V3Error(.internalError, "etcdserver: this member has no JWT private key")))
                    }
                    return done(.success((header(view, revision: view.mvcc.revision), token)))
                }
                let token = String((0..<16).map { _ in Self.tokenLetters[Int.random(in: 0..<Self.tokenLetters.count)] }) + "." + String(store.revision)
                node.proposeV3(.auth(.authenticate(user: name, token: token, issuedNanos: node.now))) { [self] result, view in
                    switch result {
                    case .failure(let error): done(.failure(error))
                    case .success: done(.success((header(view, revision: view.mvcc.revision), token)))
                    }
                }
            }
        }
    }

    private static let tokenLetters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
}
