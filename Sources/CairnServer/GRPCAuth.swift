// Auth on gRPC calls while v3 auth is on: the `token` metadata resolved as the gateway resolves its Authorization
// header. Per-key permissions are checked by the gateway only so far, so gRPC lets only `root` through where one is needed.
import CairnAPI
import CairnHTTP
import CairnMVCC

extension GRPCHandler {
    /// The gateway endpoint whose token rules a gRPC method follows (nil: one that always needs a token).
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

    /// nil when the call may go on; else the refusal. With auth off, or for gRPC's health check, every call goes on.
    func authRefusal(_ call: GRPCCall) -> GRPCStatus? {
        let space = service.node.view().mvcc
        guard space.auth.enabled, call.method != "/grpc.health.v1.Health/Check" else { return nil }
        // clientv3 sends its token as `token` metadata; the gate reads the gateway's Authorization header.
        var request = call.exchange.request
        request.headers.remove("authorization")
        if let token = request.headers["token"] { request.headers.add("authorization", token) }
        let endpoint = Self.authEndpoint(call.method)
        // Authenticate needs no token (a bad one is refused, as etcd's does); the password is its check.
        let authenticating = call.method == "/etcdserverpb.Auth/Authenticate"
        do throws(V3Error) {
            let user = try service.auth.user(for: authenticating ? nil : endpoint ?? .put, authenticating: authenticating,
                                             request, space.auth, now: service.node.now)
            if authenticating { return nil }
            // Calls that need a user need root here: gRPC does not check key permissions yet (the gateway does).
            guard endpoint == nil, let user else { return nil }
            if space.auth.users[user]?.roles.contains(AuthStore.rootName) == true { return nil }
            return Self.status(V3Error(AuthError.permissionDenied))
        } catch {
            return Self.status(error)
        }
    }
}
