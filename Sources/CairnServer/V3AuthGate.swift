// Who is asking, and may they: the v3 `Authorization` header's simple token resolved to a user through the replicated
// auth state, expired `--auth-token-ttl` after its last use on this member (as etcd's simple tokens are), and each
// gateway call checked against the user's permissions with etcd 3.4's rules.
import CairnAPI
import CairnHTTP
import CairnMVCC
import Synchronization

package final class V3AuthGate: Sendable {
    /// etcd's `--auth-token-ttl` default: 300 s.
    package static let tokenTTLSecondsDefault = 300

    let bcryptCost: Int
    let tokenTTLNanos: Int64
    /// `--auth-token jwt,...`: signed tokens instead of logged simple ones.
    let jwt: JWTTokens?
    /// When each token was last used on this member (cluster time); a token's issue counts as a use.
    private let lastUse = Mutex<[String: Int64]>([:])

    package init(bcryptCost: Int = PasswordHash.costDefault, tokenTTLSeconds: Int = tokenTTLSecondsDefault, jwt: JWTTokens? = nil) {
        self.bcryptCost = bcryptCost
        self.jwt = jwt
        tokenTTLNanos = Int64(tokenTTLSeconds) * 1_000_000_000
    }

    /// Whether a call looks at the caller's token: `never` (etcd 3.4 answers it for anyone), `optional` (a token is
    /// checked if given) or `required`.
    enum TokenUse { case never, optional, required }

    /// The JSON gateway's calls as etcd 3.4 treats them; `endpoint` nil is an auth call.
    static func tokenUse(_ endpoint: V3Handler.Endpoint?, authenticating: Bool) -> TokenUse {
        switch endpoint {
        case .leaseKeepAlive?, .leaseTimeToLive?, .leaseTimeToLiveAlias?, .leaseLeases?, .leaseLeasesAlias?, .status?, .memberList?:
            .never
        // Logged requests etcd checks no permission for (a revoke checks its keys').
        case .compaction?, .leaseGrant?, .leaseRevoke?, .leaseRevokeAlias?, .alarm?: .optional
        case nil: authenticating ? .optional : .required
        default: .required
        }
    }

    /// The user the request's `Authorization` header names (see `user(token:...)`).
    func user(for endpoint: V3Handler.Endpoint?, authenticating: Bool = false, _ request: HTTPRequestHead, _ store: AuthStore,
              now: Int64) throws(V3Error) -> String? {
        do {
            return try user(token: request.headers["authorization"], Self.tokenUse(endpoint, authenticating: authenticating), store, now: now,
                            certificateName: request.clientCertificateName)
        } catch where endpoint == .alarm && error == V3Error(AuthError.invalidToken) {
            // etcd's maintenance server words this one differently.
            throw V3Error(.unknown, "auth: invalid auth token")
        }
    }

    /// The user `token` names; nil when auth is off (a token is then ignored, as etcd ignores it), when the call never
    /// looks at tokens, or when it may go without one and has none. Without a token, a verified client certificate
    /// whose common name is a user names that user (etcd's `--client-cert-auth`).
    func user(token: String?, _ use: TokenUse, _ store: AuthStore, now: Int64, certificateName: String? = nil) throws(V3Error) -> String? {
        guard store.enabled, use != .never else { return nil }
        guard let token, !token.isEmpty else {
            if let certificateName, store.users[certificateName] != nil { return certificateName }
            if use == .required { throw V3Error(AuthError.userEmpty) }
            return nil
        }
        if let jwt {
            // etcd refuses a JWT made before the last change of users or roles; its holder authenticates again.
            guard let claims = jwt.claims(token, nowNanos: now), store.users[claims.user] != nil else { throw V3Error(AuthError.invalidToken) }
            if claims.revision < store.revision { throw V3Error(.invalidArgument, "etcdserver: revision of auth store is old") }
            return claims.user
        }
        guard let user = resolve(token, store, now: now) else { throw V3Error(AuthError.invalidToken) }
        return user
    }

    /// A known token's user, its last use moved to `now`; nil for an unknown or expired token.
    func resolve(_ token: String, _ store: AuthStore, now: Int64) -> String? {
        guard let entry = store.tokens[token] else { return nil }
        let valid = lastUse.withLock { uses -> Bool in
            let last = max(entry.issuedNanos, uses[token] ?? 0)
            guard now - last < tokenTTLNanos else { return false }
            // Forget tokens the replicated state no longer holds before this table outgrows it.
            if uses.count >= 2 * AuthStore.tokensMax { uses = uses.filter { store.tokens[$0.key] != nil } }
            uses[token] = now
            return true
        }
        return valid ? entry.user : nil
    }

    /// What a call reads or writes, for etcd 3.4's permission check.
    enum Access {
        case request(RequestOp)
        /// Revoking deletes the lease's keys, so it needs write permission on each (etcd's checkLeasePuts).
        case leaseRevoke(Int64)
        /// Member changes and the maintenance calls that give the whole key space away: `root` only.
        case admin
        case anyone
    }

    /// etcd 3.4's check of `access` by `user` (nil: a call that may go without a token, made without one).
    func check(_ access: Access, user: String?, _ space: MVCCKeySpace) throws(V3Error) {
        let store = space.auth
        guard store.enabled else { return }
        let permitted: Bool
        switch access {
        case .anyone: return
        case .leaseRevoke(let id):
            let keys = space.leases[id]?.keys ?? []
            if keys.isEmpty { return }
            guard let user else { throw V3Error(AuthError.userEmpty) }
            permitted = keys.allSatisfy { store.permits(user, write: true, .single($0.bytes)) }
        case .admin:
            guard let user else { throw V3Error(AuthError.userEmpty) }
            permitted = store.isAdmin(user)
        case .request(let op):
            guard let user else { return }
            permitted = store.permits(user, op)
        }
        if !permitted { throw V3Error(AuthError.permissionDenied) }
    }

    /// The gateway's call as an `Access`, its request decoded from the JSON fields.
    static func access(_ endpoint: V3Handler.Endpoint, _ fields: V3Fields) throws(V3Error) -> Access {
        switch endpoint {
        case .range: .request(.range(try fields.rangeRequest()))
        case .put: .request(.put(try fields.putRequest()))
        case .deleteRange: .request(.deleteRange(try fields.deleteRangeRequest()))
        case .txn: .request(.txn(try fields.txnRequest()))
        case .leaseRevoke, .leaseRevokeAlias: .leaseRevoke(try fields.int64("ID"))
        case .memberAdd, .memberRemove, .memberUpdate, .memberPromote: .admin
        case .watch, .compaction, .leaseGrant, .leaseKeepAlive, .leaseTimeToLive, .leaseTimeToLiveAlias, .leaseLeases,
             .leaseLeasesAlias, .status, .alarm, .memberList:
            .anyone
        }
    }
}
