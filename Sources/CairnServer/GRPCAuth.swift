// Auth over gRPC as etcd 3.4 serves it: which calls look at the `token` metadata, which need `root`, and the Auth
// service's calls, each decoded into the same `V3AuthRequest` the JSON gateway makes and run by `V3Service.runAuth`.
import CairnAPI
import CairnHTTP
import CairnMVCC
import CairnProto
import Foundation
import SwiftProtobuf

extension GRPCHandler {
    /// Whether a method looks at the caller's token, as etcd 3.4's servers do.
    static func tokenUse(_ method: String) -> V3AuthGate.TokenUse {
        switch method {
        case "/etcdserverpb.Lease/LeaseKeepAlive", "/etcdserverpb.Lease/LeaseTimeToLive", "/etcdserverpb.Lease/LeaseLeases",
             "/etcdserverpb.Maintenance/Status", "/etcdserverpb.Cluster/MemberList", "/grpc.health.v1.Health/Check":
            .never
        case "/etcdserverpb.KV/Compact", "/etcdserverpb.Lease/LeaseGrant", "/etcdserverpb.Lease/LeaseRevoke",
             "/etcdserverpb.Maintenance/Alarm", "/etcdserverpb.Auth/Authenticate":
            .optional
        default: .required
        }
    }

    /// Calls for `root` only: member changes, and the maintenance calls that hand out or reshape the key space.
    static let adminMethods: Set<String> = [
        "/etcdserverpb.Cluster/MemberAdd", "/etcdserverpb.Cluster/MemberRemove", "/etcdserverpb.Cluster/MemberUpdate",
        "/etcdserverpb.Cluster/MemberPromote", "/etcdserverpb.Maintenance/Defragment", "/etcdserverpb.Maintenance/Hash",
        "/etcdserverpb.Maintenance/HashKV", "/etcdserverpb.Maintenance/Snapshot", "/etcdserverpb.Maintenance/MoveLeader",
    ]

    func authCall(_ call: GRPCCall, user: String?) {
        switch call.method {
        case "/etcdserverpb.Auth/AuthEnable":
            run(call, user) { (_: Etcdserverpb_AuthEnableRequest) in .enable }
        case "/etcdserverpb.Auth/AuthDisable":
            run(call, user) { (_: Etcdserverpb_AuthDisableRequest) in .disable }
        case "/etcdserverpb.Auth/Authenticate":
            run(call, nil) { (m: Etcdserverpb_AuthenticateRequest) in .authenticate(name: m.name, password: m.password) }
        case "/etcdserverpb.Auth/UserAdd":
            run(call, user) { (m: Etcdserverpb_AuthUserAddRequest) in
                .userAdd(name: m.name, password: m.password, noPassword: m.options.noPassword)
            }
        case "/etcdserverpb.Auth/UserGet":
            run(call, user) { (m: Etcdserverpb_AuthUserGetRequest) in .userGet(name: m.name) }
        case "/etcdserverpb.Auth/UserList":
            run(call, user) { (_: Etcdserverpb_AuthUserListRequest) in .userList }
        case "/etcdserverpb.Auth/UserDelete":
            run(call, user) { (m: Etcdserverpb_AuthUserDeleteRequest) in .userDelete(name: m.name) }
        case "/etcdserverpb.Auth/UserChangePassword":
            run(call, user) { (m: Etcdserverpb_AuthUserChangePasswordRequest) in .userChangePassword(name: m.name, password: m.password) }
        case "/etcdserverpb.Auth/UserGrantRole":
            run(call, user) { (m: Etcdserverpb_AuthUserGrantRoleRequest) in .userGrantRole(user: m.user, role: m.role) }
        case "/etcdserverpb.Auth/UserRevokeRole":
            run(call, user) { (m: Etcdserverpb_AuthUserRevokeRoleRequest) in .userRevokeRole(name: m.name, role: m.role) }
        case "/etcdserverpb.Auth/RoleAdd":
            run(call, user) { (m: Etcdserverpb_AuthRoleAddRequest) in .roleAdd(name: m.name) }
        case "/etcdserverpb.Auth/RoleGet":
            run(call, user) { (m: Etcdserverpb_AuthRoleGetRequest) in .roleGet(role: m.role) }
        case "/etcdserverpb.Auth/RoleList":
            run(call, user) { (_: Etcdserverpb_AuthRoleListRequest) in .roleList }
        case "/etcdserverpb.Auth/RoleDelete":
            run(call, user) { (m: Etcdserverpb_AuthRoleDeleteRequest) in .roleDelete(role: m.role) }
        case "/etcdserverpb.Auth/RoleGrantPermission":
            run(call, user) { (m: Etcdserverpb_AuthRoleGrantPermissionRequest) in
                .roleGrantPermission(name: m.name, AuthPermission(m.perm))
            }
        case "/etcdserverpb.Auth/RoleRevokePermission":
            run(call, user) { (m: Etcdserverpb_AuthRoleRevokePermissionRequest) in
                .roleRevokePermission(role: m.role, key: [UInt8](m.key), rangeEnd: [UInt8](m.rangeEnd))
            }
        default:
            call.finish(Self.unimplemented(call.method))
        }
    }

    /// One Auth call: the request decoded into `V3AuthRequest`, run, and its answer as the call's response message.
    private func run<Request: SwiftProtobuf.Message>(_ call: GRPCCall, _ user: String?,
                                                    _ decode: @escaping @Sendable (Request) -> V3AuthRequest) {
        let method = call.method
        unary(call) { (m: Request, reply) in
            service.runAuth(decode(m), user: user) { result in
                reply(result.map { Self.message(for: method, $0) })
            }
        }
    }

    /// etcd's response message for an Auth method's answer.
    private static func message(for method: String, _ answer: V3AuthAnswer) -> any SwiftProtobuf.Message {
        switch answer {
        case .token(let header, let token):
            var m = Etcdserverpb_AuthenticateResponse()
            m.header = GRPCAnswer.header(header)
            m.token = token
            return m
        case .users(let header, let users):
            var m = Etcdserverpb_AuthUserListResponse()
            m.header = GRPCAnswer.header(header)
            m.users = users
            return m
        case .roles(let header, let roles) where method.hasSuffix("/UserGet"):
            var m = Etcdserverpb_AuthUserGetResponse()
            m.header = GRPCAnswer.header(header)
            m.roles = roles
            return m
        case .roles(let header, let roles):
            var m = Etcdserverpb_AuthRoleListResponse()
            m.header = GRPCAnswer.header(header)
            m.roles = roles
            return m
        case .permissions(let header, let permissions):
            var m = Etcdserverpb_AuthRoleGetResponse()
            m.header = GRPCAnswer.header(header)
            m.perm = permissions.map { permission in
                var p = Authpb_Permission()
                p.permType = Authpb_Permission.TypeEnum(rawValue: Int(permission.kind.rawValue)) ?? .read
                p.key = Data(permission.key)
                p.rangeEnd = Data(permission.rangeEnd)
                return p
            }
            return m
        case .header(let header):
            // Every other Auth response is a bare header, and all encode alike (field 1), so one type serves.
            var m = Etcdserverpb_AuthEnableResponse()
            m.header = GRPCAnswer.header(header)
            return m
        }
    }
}

extension AuthPermission {
    init(_ m: Authpb_Permission) {
        let kind: Kind = switch m.permType {
        case .write: .write
        case .readwrite: .readWrite
        default: .read
        }
        self.init(kind: kind, key: [UInt8](m.key), rangeEnd: [UInt8](m.rangeEnd))
    }
}
