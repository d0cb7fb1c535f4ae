// etcd's v3 gRPC services on the client port: each method decodes its request (CairnProto), calls the same
// `V3Service` the JSON gateway calls, and answers with etcd's message or etcd's status code and message.
import CairnAPI
import CairnHTTP
import CairnMVCC
import CairnProto
import Foundation
import SwiftProtobuf

struct GRPCHandler: Sendable {
    let service: V3Service
    /// `GET /cairn/snapshot` and Snapshot calls share these slots: one backup at a time.
    let backups: BackupSlots

    /// etcd's gRPC server takes `--max-request-bytes` plus this in one message.
    var messageBytesMax: Int { service.requestBytesMax + V3Handler.grpcOverheadBytes }

    func handle(_ exchange: HTTPExchange) {
        guard let call = GRPCCall.start(exchange, messageBytesMax: messageBytesMax) else { return }
        let user: String?
        switch caller(call) {
        case .failure(let refusal): return call.finish(refusal)
        case .success(let caller): user = caller
        }
        switch call.method {
        case "/etcdserverpb.KV/Range":
            unary(call) { (m: Etcdserverpb_RangeRequest, reply) throws(V3Error) in
                try permit(user, .range(RangeRequest(m)))
                service.range(RangeRequest(m)) { reply($0.map { GRPCAnswer.range(GRPCAnswer.header($0.0), $0.1) }) }
            }
        case "/etcdserverpb.KV/Put":
            unary(call) { (m: Etcdserverpb_PutRequest, reply) throws(V3Error) in
                try permit(user, .put(PutRequest(m)))
                service.put(PutRequest(m), written(reply))
            }
        case "/etcdserverpb.KV/DeleteRange":
            unary(call) { (m: Etcdserverpb_DeleteRangeRequest, reply) throws(V3Error) in
                try permit(user, .deleteRange(DeleteRangeRequest(m)))
                service.deleteRange(DeleteRangeRequest(m), written(reply))
            }
        case "/etcdserverpb.KV/Txn":
            unary(call) { (m: Etcdserverpb_TxnRequest, reply) throws(V3Error) in
                let request = try TxnRequest(m)
                try permit(user, .txn(request))
                service.txn(request, written(reply))
            }
        case "/etcdserverpb.KV/Compact":
            unary(call) { (m: Etcdserverpb_CompactionRequest, reply) in service.compact(revision: m.revision, written(reply)) }
        case "/etcdserverpb.Lease/LeaseGrant":
            unary(call) { (m: Etcdserverpb_LeaseGrantRequest, reply) in service.leaseGrant(ttl: m.ttl, id: m.id, written(reply)) }
        case "/etcdserverpb.Lease/LeaseRevoke":
            unary(call) { (m: Etcdserverpb_LeaseRevokeRequest, reply) throws(V3Error) in
                try permitRevoke(user, lease: m.id)
                service.leaseRevoke(id: m.id, written(reply))
            }
        case "/etcdserverpb.Lease/LeaseTimeToLive":
            unary(call) { (m: Etcdserverpb_LeaseTimeToLiveRequest, reply) in
                service.leaseTimeToLive(id: m.id) { header, ttl, lease in
                    var answer = Etcdserverpb_LeaseTimeToLiveResponse()
                    answer.header = GRPCAnswer.header(header)
                    answer.id = m.id
                    answer.ttl = ttl
                    if let lease {
                        answer.grantedTtl = lease.ttl
                        if m.keys { answer.keys = lease.keys.sorted().map { Data($0.bytes) } }
                    }
                    reply(.success(answer))
                }
            }
        case "/etcdserverpb.Lease/LeaseLeases":
            unary(call) { (_: Etcdserverpb_LeaseLeasesRequest, reply) in
                let (header, ids) = service.leases()
                var answer = Etcdserverpb_LeaseLeasesResponse()
                answer.header = GRPCAnswer.header(header)
                answer.leases = ids.map { id in
                    var status = Etcdserverpb_LeaseStatus()
                    status.id = id
                    return status
                }
                reply(.success(answer))
            }
        case "/etcdserverpb.Lease/LeaseKeepAlive":
            keepAlive(call)
        case "/etcdserverpb.Watch/Watch":
            GRPCWatchStream(call: call, service: service, user: user).start()
        default:
            clusterOrMaintenance(call)
        }
    }

    private func clusterOrMaintenance(_ call: GRPCCall) {
        switch call.method {
        case "/etcdserverpb.Cluster/MemberList":
            unary(call) { (_: Etcdserverpb_MemberListRequest, reply) in
                let answer = service.memberList()
                var m = Etcdserverpb_MemberListResponse()
                m.header = GRPCAnswer.header(answer.header)
                m.members = answer.members.map(GRPCAnswer.member)
                reply(.success(m))
            }
        case "/etcdserverpb.Cluster/MemberAdd":
            unary(call) { (m: Etcdserverpb_MemberAddRequest, reply) in
                service.memberAdd(peerURLs: m.peerUrls, isLearner: m.isLearner) { result in
                    reply(result.map { answer in
                        var r = Etcdserverpb_MemberAddResponse()
                        r.header = GRPCAnswer.header(answer.header)
                        if let added = answer.added { r.member = GRPCAnswer.member(added) }
                        r.members = answer.members.map(GRPCAnswer.member)
                        return r
                    })
                }
            }
        case "/etcdserverpb.Cluster/MemberRemove":
            unary(call) { (m: Etcdserverpb_MemberRemoveRequest, reply) in
                service.memberRemove(id: m.id) { result in
                    reply(result.map { answer in
                        var r = Etcdserverpb_MemberRemoveResponse()
                        r.header = GRPCAnswer.header(answer.header)
                        r.members = answer.members.map(GRPCAnswer.member)
                        return r
                    })
                }
            }
        case "/etcdserverpb.Cluster/MemberUpdate":
            unary(call) { (m: Etcdserverpb_MemberUpdateRequest, reply) in
                service.memberUpdate(id: m.id, peerURLs: m.peerUrls) { result in
                    reply(result.map { answer in
                        var r = Etcdserverpb_MemberUpdateResponse()
                        r.header = GRPCAnswer.header(answer.header)
                        r.members = answer.members.map(GRPCAnswer.member)
                        return r
                    })
                }
            }
        case "/etcdserverpb.Cluster/MemberPromote":
            unary(call) { (m: Etcdserverpb_MemberPromoteRequest, _) throws(V3Error) in throw service.memberPromote(id: m.id) }
        case "/etcdserverpb.Maintenance/Status":
            unary(call) { (_: Etcdserverpb_StatusRequest, reply) in
                let (header, status) = service.status()
                reply(.success(GRPCAnswer.status(header, status)))
            }
        case "/etcdserverpb.Maintenance/Alarm":
            unary(call) { (m: Etcdserverpb_AlarmRequest, reply) in
                service.alarm(action: m.action.rawValue, alarm: m.alarm.rawValue, memberID: m.memberID) { result in
                    // etcd 3.4 answers alarm calls without a header.
                    reply(result.map { GRPCAnswer.alarms($0) })
                }
            }
        case "/etcdserverpb.Maintenance/Defragment":
            // Cairn's key space lives in memory and its snapshots are written whole: there is nothing to defragment.
            // etcd 3.4 answers without a header.
            unary(call) { (_: Etcdserverpb_DefragmentRequest, reply) in reply(.success(Etcdserverpb_DefragmentResponse())) }
        case "/etcdserverpb.Maintenance/MoveLeader":
            unary(call) { (m: Etcdserverpb_MoveLeaderRequest, reply) in
                // etcd answers a done transfer without a header.
                service.node.moveLeader(to: m.targetID) { error in
                    reply(error.map { .failure($0) } ?? .success(Etcdserverpb_MoveLeaderResponse()))
                }
            }
        case "/etcdserverpb.Maintenance/HashKV":
            unary(call) { (m: Etcdserverpb_HashKVRequest, reply) in
                service.hashKV(revision: m.revision) { result in
                    reply(result.map { header, hash, compacted in
                        var r = Etcdserverpb_HashKVResponse()
                        r.header = GRPCAnswer.header(header)
                        r.hash = hash
                        r.compactRevision = compacted
                        return r
                    })
                }
            }
        case "/etcdserverpb.Maintenance/Hash":
            // Cairn has no backend file: Hash is HashKV at the current revision.
            unary(call) { (_: Etcdserverpb_HashRequest, reply) in
                service.hashKV(revision: 0) { result in
                    reply(result.map { header, hash, _ in
                        var r = Etcdserverpb_HashResponse()
                        r.header = GRPCAnswer.header(header)
                        r.hash = hash
                        return r
                    })
                }
            }
        case "/etcdserverpb.Maintenance/Snapshot":
            GRPCSnapshot(call: call, service: service, backups: backups).start()
        case "/etcdserverpb.Auth/Authenticate":
            // The other Auth calls are the gateway's only (`auth/...`).
            unary(call) { (m: Etcdserverpb_AuthenticateRequest, reply) in
                service.authenticate(name: m.name, password: m.password) { result in
                    reply(result.map { header, token in
                        var r = Etcdserverpb_AuthenticateResponse()
                        r.header = GRPCAnswer.header(header)
                        r.token = token
                        return r
                    })
                }
            }
        case "/grpc.health.v1.Health/Check":
            unary(call) { (m: Grpc_Health_V1_HealthCheckRequest, reply) throws(V3Error) in
                // etcd registers the server's overall health ("") only.
                guard m.service.isEmpty else { throw V3Error(.notFound, "unknown service") }
                var r = Grpc_Health_V1_HealthCheckResponse()
                r.status = .serving
                reply(.success(r))
            }
        default:
            call.finish(Self.unimplemented(call.method))
        }
    }

    /// grpc-go's answer to a method it does not serve.
    static func unimplemented(_ path: String) -> GRPCStatus {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        let known = ["etcdserverpb.KV", "etcdserverpb.Watch", "etcdserverpb.Lease", "etcdserverpb.Cluster",
                     "etcdserverpb.Maintenance", "etcdserverpb.Auth", "grpc.health.v1.Health"]
        guard parts.count == 3, parts[0].isEmpty, known.contains(String(parts[1])) else {
            let service = parts.count == 3 ? String(parts[1]) : path
            return GRPCStatus(GRPCStatus.unimplementedCode, "unknown service \(service)")
        }
        return GRPCStatus(GRPCStatus.unimplementedCode, "unknown method \(parts[2]) for service \(parts[1])")
    }

    // MARK: - Unary calls

    typealias Reply = @Sendable (Result<any SwiftProtobuf.Message, V3Error>) -> Void

    /// One request, one answer: the request decoded, `body` run, its answer (or etcd's error) sent with the status.
    private func unary<Request: SwiftProtobuf.Message>(
        _ call: GRPCCall, _ body: @escaping @Sendable (Request, @escaping Reply) throws(V3Error) -> Void
    ) {
        call.receiveOne { received in
            guard case .success(let bytes) = received else { return }
            let request: Request
            do { request = try Request(serializedBytes: bytes) } catch {
                return call.finish(GRPCStatus(GRPCStatus.internalCode, "grpc: error unmarshalling request: \(error)"))
            }
            let reply: Reply = { result in
                switch result {
                case .success(let message): Self.send(call, message, andFinish: true)
                case .failure(let error): call.finish(Self.status(error))
                }
            }
            do throws(V3Error) { try body(request, reply) } catch { reply(.failure(error)) }
        }
    }

    /// A message sent on `call`; one that cannot be encoded (it cannot happen with generated messages) ends the call.
    static func send(_ call: GRPCCall, _ message: any SwiftProtobuf.Message, andFinish: Bool = false,
                     whenReady: (@Sendable () -> Void)? = nil) {
        let bytes: [UInt8]
        do { bytes = try message.serializedBytes() } catch {
            return call.finish(GRPCStatus(GRPCStatus.internalCode, "grpc: error while marshaling: \(error)"))
        }
        call.send(bytes, whenReady: whenReady)
        if andFinish { call.finish(.ok) }
    }

    static func status(_ error: V3Error) -> GRPCStatus { GRPCStatus(error.code.rawValue, error.message) }

    /// A write's answer as etcd's message for it.
    private func written(_ reply: @escaping Reply) -> @Sendable (Result<(MVCCResult, KeySpaceNode.View), V3Error>) -> Void {
        { [service] result in
            // Auth changes are answered by the JSON gateway only (gRPC's Auth service is not served yet).
            if case .success((.auth, _)) = result { return reply(.failure(V3Error(.unimplemented, "unknown service etcdserverpb.Auth"))) }
            reply(result.map { answer, view -> any SwiftProtobuf.Message in
                func header(_ revision: Int64) -> Etcdserverpb_ResponseHeader {
                    GRPCAnswer.header(service.header(view, revision: revision))
                }
                switch answer {
                case .put(let r): return GRPCAnswer.put(header(r.revision), r)
                case .deleteRange(let r): return GRPCAnswer.deleteRange(header(r.revision), r)
                case .txn(let r): return GRPCAnswer.txn(header(r.revision), r)
                case .compacted(let revision):
                    var m = Etcdserverpb_CompactionResponse()
                    m.header = header(revision)
                    return m
                case .leaseRevoked(let revision):
                    var m = Etcdserverpb_LeaseRevokeResponse()
                    m.header = header(revision)
                    return m
                case .leaseGranted(let lease, let revision):
                    var m = Etcdserverpb_LeaseGrantResponse()
                    m.header = header(revision)
                    m.id = lease.id
                    m.ttl = lease.ttl
                    return m
                case .leaseKeptAlive(let lease, let revision):
                    var m = Etcdserverpb_LeaseKeepAliveResponse()
                    m.header = header(revision)
                    m.id = lease.id
                    m.ttl = lease.ttl
                    return m
                case .alarms(let members): return GRPCAnswer.alarms(members)
                case .auth: return Etcdserverpb_ResponseHeader()  // filtered out above
                }
            })
        }
    }

    // MARK: - Lease keep-alive stream

    /// Each request renews its lease through the log and is answered in order; the next is read once it is.
    private func keepAlive(_ call: GRPCCall) {
        call.sendHeaders()
        @Sendable func next() {
            call.receive { received in
                switch received {
                case .failure: return
                // etcd's server returns once the client ends its side.
                case .success(nil): call.finish(.ok)
                case .success(let bytes?):
                    let request: Etcdserverpb_LeaseKeepAliveRequest
                    do { request = try Etcdserverpb_LeaseKeepAliveRequest(serializedBytes: bytes) } catch {
                        return call.finish(GRPCStatus(GRPCStatus.internalCode, "grpc: error unmarshalling request: \(error)"))
                    }
                    service.leaseKeepAlive(id: request.id) { result in
                        switch result {
                        case .success(let (header, ttl)):
                            var answer = Etcdserverpb_LeaseKeepAliveResponse()
                            answer.header = GRPCAnswer.header(header)
                            answer.id = request.id
                            answer.ttl = ttl
                            Self.send(call, answer, whenReady: { next() })
                        case .failure(let error): call.finish(Self.status(error))
                        }
                    }
                }
            }
        }
        next()
    }
}
