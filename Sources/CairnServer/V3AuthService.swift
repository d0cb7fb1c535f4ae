// etcd's v3 auth calls on the member, whatever carries them (the JSON gateway's `/v3/auth/...` or gRPC's Auth
// service): users, roles and permissions changed through the log, read after a ReadIndex round, and `authenticate`
// checking the password here and then logging the token (or signing a JWT) so every member knows it. Password
// hashing (bcrypt) runs on a global queue: it takes tens of milliseconds by design.
import CairnAPI
import CairnHTTP
import CairnMVCC
import Dispatch

/// What an auth call answers, for each transport to encode.
enum V3AuthAnswer: Sendable {
    case header(V3Header)
    case token(V3Header, String)
    case roles(V3Header, [String])
    case users(V3Header, [String])
    case permissions(V3Header, [AuthPermission])
}

extension V3Service {
    /// Runs an auth call for `user` (nil while auth is off, or for authenticate): management needs `root`, except a
    /// user reading itself or a role it holds.
    func runAuth(_ request: V3AuthRequest, user: String?, _ done: @escaping Done<V3AuthAnswer>) {
        let store = node.view().mvcc.auth
        if let user, !store.isAdmin(user), !request.isSelfService(user: user, in: store) {
            return done(.failure(V3Error(AuthError.permissionDenied)))
        }
        switch request {
        case .authenticate(let name, let password): authenticate(name, password, done)
        case .userAdd(let name, let password, let noPassword):
            if name.isEmpty { return done(.failure(V3Error(AuthError.userEmpty))) }
            if noPassword { return change(.userAdd(name: name, passwordHash: "", noPassword: true), done) }
            hashThen(password, done) { hash in .userAdd(name: name, passwordHash: hash, noPassword: false) }
        case .userChangePassword(let name, let password):
            hashThen(password, done) { hash in .userChangePassword(name: name, passwordHash: hash) }
        case .enable: change(.enable, done)
        case .disable: change(.disable, done)
        case .userDelete(let name): change(.userDelete(name: name), done)
        case .userGrantRole(let user, let role): change(.userGrantRole(user: user, role: role), done)
        case .userRevokeRole(let name, let role): change(.userRevokeRole(user: name, role: role), done)
        case .roleAdd(let name): change(.roleAdd(name: name), done)
        case .roleDelete(let role): change(.roleDelete(name: role), done)
        case .roleGrantPermission(let name, let permission): change(.roleGrantPermission(role: name, permission), done)
        case .roleRevokePermission(let role, let key, let rangeEnd): change(.roleRevokePermission(role: role, key: key, rangeEnd: rangeEnd), done)
        case .userGet, .userList, .roleGet, .roleList:
            node.linearizableRead { [self] result in
                switch result {
                case .failure(let error): done(.failure(V3Error(.unavailable, String(decoding: error.causeBytes, as: UTF8.self))))
                case .success(let view): done(Self.read(request, view.mvcc.auth, header(view, revision: view.mvcc.revision)))
                }
            }
        }
    }

    private static func read(_ request: V3AuthRequest, _ store: AuthStore, _ header: V3Header) -> Result<V3AuthAnswer, V3Error> {
        switch request {
        case .userGet(let name):
            guard let user = store.users[name] else { return .failure(V3Error(AuthError.userNotFound)) }
            return .success(.roles(header, user.roles))
        case .userList: return .success(.users(header, store.users.keys.sorted()))
        case .roleGet(let name):
            guard let role = store.roles[name] else { return .failure(V3Error(AuthError.roleNotFound)) }
            return .success(.permissions(header, role.permissions))
        default: return .success(.roles(header, store.roles.keys.sorted()))
        }
    }

    /// Logs one auth change and answers with a bare header.
    private func change(_ command: AuthCommand, _ done: @escaping Done<V3AuthAnswer>) {
        node.proposeV3(.auth(command)) { [self] result, view in
            done(result.map { _ in .header(header(view, revision: view.mvcc.revision)) })
        }
    }

    private func hashThen(_ password: String, _ done: @escaping Done<V3AuthAnswer>, _ command: @escaping @Sendable (String) -> AuthCommand) {
        let cost = auth.bcryptCost
        DispatchQueue.global().async { [self] in
            guard let hash = PasswordHash.make(password, cost: cost) else {
                return done(.failure(V3Error(.internalError, "etcdserver: cannot hash the password")))
            }
            change(command(hash), done)
        }
    }

    /// etcd's Authenticate: after a ReadIndex round (so a user or an enable just logged elsewhere is seen), the
    /// password checked on this member, then a token logged for the user (or a JWT signed here).
    private func authenticate(_ name: String, _ password: String, _ done: @escaping Done<V3AuthAnswer>) {
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
                    return done(.success(.token(header(view, revision: view.mvcc.revision), token)))
                }
                let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
                let token = String((0..<16).map { _ in letters[Int.random(in: 0..<letters.count)] }) + "." + String(store.revision)
                node.proposeV3(.auth(.authenticate(user: name, token: token, issuedNanos: node.now))) { [self] result, view in
                    done(result.map { _ in .token(header(view, revision: view.mvcc.revision), token) })
                }
            }
        }
    }
}

extension V3Handler {
    /// `/v3/auth/...` on the JSON gateway.
    func authCall(_ exchange: HTTPExchange, _ path: Substring, _ fields: V3Fields, user: String?) throws(V3Error) {
        guard let request = try V3AuthRequest(path: path, fields) else { return plain(exchange, status: 404, "Not Found\n") }
        service.runAuth(request, user: user) { [self] result in
            switch result {
            case .failure(let error): respond(exchange, error)
            case .success(.header(let header)): json(exchange, V3JSON.headerOnly(header))
            case .success(.token(let header, let token)): json(exchange, V3JSON.authToken(header, token))
            case .success(.roles(let header, let roles)): json(exchange, V3JSON.strings(header, "roles", roles))
            case .success(.users(let header, let users)): json(exchange, V3JSON.strings(header, "users", users))
            case .success(.permissions(let header, let permissions)): json(exchange, V3JSON.rolePermissions(header, permissions))
            }
        }
    }
}
