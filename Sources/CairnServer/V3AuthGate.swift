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

    /// The user the request's token names; nil when auth is off (a token is then ignored, as etcd ignores it), when
    /// the call never looks at tokens, or when it may go without one. `endpoint` nil is an auth call; `authenticate`
    /// takes no token but refuses an invalid one, as etcd's does.
    func user(for endpoint: V3Handler.Endpoint?, authenticating: Bool = false, _ request: HTTPRequestHead, _ store: AuthStore,
              now: Int64) throws(V3Error) -> String? {
        guard store.enabled else { return nil }
        let required: Bool
        switch endpoint {
        // Answered without looking at the caller in etcd 3.4.
        case .leaseKeepAlive?, .leaseTimeToLive?, .leaseTimeToLiveAlias?, .leaseLeases?, .leaseLeasesAlias?, .status?, .memberList?:
            return nil
        // Logged requests etcd checks no permission for (a revoke checks its keys'): a token is optional, but checked.
        case .compaction?, .leaseGrant?, .leaseRevoke?, .leaseRevokeAlias?, .alarm?: required = false
        case nil: required = !authenticating
        default: required = true
        }
        guard let token = request.headers["authorization"], !token.isEmpty else {
            if required { throw V3Error(AuthError.userEmpty) }
            return nil
        }
        if let jwt {
            // etcd refuses a JWT made before the last change of users or roles; its holder authenticates again.
            guard let claims = jwt.claims(token, nowNanos: now), store.users[claims.user] != nil else { throw V3Error(AuthError.invalidToken) }
            if claims.revision < store.revision { throw V3Error(.invalidArgument, "etcdserver: revision of auth store is old") }
            return claims.user
        }
        guard let user = resolve(token, store, now: now) else {
            // etcd's maintenance server words this one differently.
            throw endpoint == .alarm ? V3Error(.unknown, "auth: invalid auth token") : V3Error(AuthError.invalidToken)
        }
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

    /// etcd 3.4's checks for a gateway call by `user` (nil: a call that may go without a token, made without one): key
    /// reads and writes by permission, member changes for `root` only, the rest (status, member list, leases,
    /// compaction) for anyone.
    func authorize(_ endpoint: V3Handler.Endpoint, _ fields: V3Fields, user: String?, _ space: MVCCKeySpace) throws(V3Error) {
        let store = space.auth
        guard store.enabled else { return }
        if endpoint == .leaseRevoke || endpoint == .leaseRevokeAlias {
            // Revoking deletes the lease's keys, so it needs write permission on each (etcd's checkLeasePuts).
            let keys = space.leases[try fields.int64("ID")]?.keys ?? []
            if keys.isEmpty { return }
            guard let user else { throw V3Error(AuthError.userEmpty) }
            if !keys.allSatisfy({ store.permits(user, write: true, .single($0.bytes)) }) { throw V3Error(AuthError.permissionDenied) }
            return
        }
        guard let user else { return }
        if !(try permits(endpoint, fields, user: user, store)) { throw V3Error(AuthError.permissionDenied) }
    }

    private func permits(_ endpoint: V3Handler.Endpoint, _ fields: V3Fields, user: String, _ store: AuthStore) throws(V3Error) -> Bool {
        let permitted: Bool
        switch endpoint {
        case .range: permitted = store.permits(user, .range(try fields.rangeRequest()))
        case .put: permitted = store.permits(user, .put(try fields.putRequest()))
        case .deleteRange: permitted = store.permits(user, .deleteRange(try fields.deleteRangeRequest()))
        case .txn: permitted = store.permits(user, .txn(try fields.txnRequest()))
        case .memberAdd, .memberRemove, .memberUpdate, .memberPromote: permitted = store.isAdmin(user)
        case .watch, .compaction, .leaseGrant, .leaseRevoke, .leaseRevokeAlias, .leaseKeepAlive, .leaseTimeToLive,
             .leaseTimeToLiveAlias, .leaseLeases, .leaseLeasesAlias, .status, .alarm, .memberList:
            permitted = true
        }
        return permitted
    }
}
