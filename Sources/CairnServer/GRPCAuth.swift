// Auth on gRPC calls while v3 auth is on: the `token` metadata resolved as the gateway resolves its Authorization
// header (`V3AuthGate`), then etcd 3.4's checks on the decoded request: key permissions, root for admin calls.
import CairnAPI
import CairnHTTP
import CairnMVCC

extension GRPCHandler {
    /// The gateway endpoint whose token rules a gRPC method follows (nil: one that needs a token).
    static func authEndpoint(_ method: String) -> V3Handler.Endpoint? {
        switch method {
        case "/etcdserverpb.Lease/LeaseKeepAlive": .leaseKeepAlive
        case "/etcdserverpb.Lease/LeaseTimeToLive": .leaseTimeToLive
        case "/etcdserverpb.Lease/LeaseLeases": .leaseLeases
        case "/etcdserverpb.Maintenance/Status": .status
        case "/etcdserverpb.Cluster/MemberList": .memberList
        case "/etcdserverpb.KV/Compact": .compaction
        case "/etcdserverpb.Lease/LeaseGrant": .leaseGrant
        case "/etcdserverpb.Lease/LeaseRevoke": .leaseRevoke
        case "/etcdserverpb.Maintenance/Alarm": .alarm
        default: nil
        }
    }

    /// Calls etcd's maintenance server lets through for `root` only (its authMaintenanceServer), and member changes.
    static let adminMethods: Set<String> = [
        "/etcdserverpb.Maintenance/Snapshot", "/etcdserverpb.Maintenance/Defragment", "/etcdserverpb.Maintenance/Hash",
        "/etcdserverpb.Maintenance/HashKV", "/etcdserverpb.Maintenance/MoveLeader", "/etcdserverpb.Cluster/MemberAdd",
        "/etcdserverpb.Cluster/MemberRemove", "/etcdserverpb.Cluster/MemberUpdate", "/etcdserverpb.Cluster/MemberPromote",
    ]

    /// The caller: nil with auth off, for calls that look at no token, or without one where it may be left out; the
    /// refusal for a missing or bad token, or an admin call by someone other than root.
    func caller(_ call: GRPCCall) -> Result<String?, GRPCStatus> {
        let space = service.node.view().mvcc
        guard space.auth.enabled, call.method != "/grpc.health.v1.Health/Check" else { return .success(nil) }
        // clientv3 sends its token as `token` metadata; the gate reads the gateway's Authorization header.
        var request = call.exchange.request
        request.headers.remove("authorization")
        if let token = request.headers["token"] { request.headers.add("authorization", token) }
        // Authenticate needs no token (a bad one is refused, as etcd's does); the password is its check.
        let authenticating = call.method == "/etcdserverpb.Auth/Authenticate"
        do throws(V3Error) {
            let user = try service.auth.user(for: authenticating ? nil : Self.authEndpoint(call.method) ?? .put,
                                             authenticating: authenticating, request, space.auth, now: service.node.now)
            if let user, Self.adminMethods.contains(call.method), !space.auth.isAdmin(user) {
                throw V3Error(AuthError.permissionDenied)
            }
            return .success(user)
        } catch {
            return .failure(Self.status(error))
        }
    }

    /// etcd's key permission check of a KV request by `user` (nil: nothing to check).
    func permit(_ user: String?, _ op: RequestOp) throws(V3Error) {
        guard let user else { return }
        let store = service.node.view().mvcc.auth
        if store.enabled, !store.permits(user, op) { throw V3Error(AuthError.permissionDenied) }
    }

    /// A lease revoke deletes the lease's keys, so it needs write permission on each (etcd's checkLeasePuts).
    func permitRevoke(_ user: String?, lease id: Int64) throws(V3Error) {
        let space = service.node.view().mvcc
        guard space.auth.enabled, let keys = space.leases[id]?.keys, !keys.isEmpty else { return }
        guard let user else { throw V3Error(AuthError.userEmpty) }
        if !keys.allSatisfy({ space.auth.permits(user, write: true, .single($0.bytes)) }) { throw V3Error(AuthError.permissionDenied) }
    }
}
