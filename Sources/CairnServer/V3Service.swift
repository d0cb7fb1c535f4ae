// etcd's v3 calls on the member, whatever carries them: etcd's checks before proposing (empty key, request size,
// quota, transaction bounds), writes through the log, linearizable ranges, leases, status and alarms, with etcd's errors.
import CairnAPI
import CairnMVCC
import CairnStore

/// The JSON gateway (`V3Handler`) and gRPC (`GRPCHandler`) both call these; each only decodes and encodes.
package struct V3Service: Sendable {
    let node: KeySpaceNode
    let member: MemberInfo
    /// Added members get IDs derived from their peer URLs and this token, as `/v2/members` gives them.
    let token: String
    /// etcd's `--max-request-bytes`: a request whose encoding is longer is refused with "request is too large".
    let requestBytesMax: Int
    /// etcd's `--quota-backend-bytes`, measured on the key space's kept keys and values (nil: no quota).
    let quotaBytes: Int?
    /// Tokens and permissions once auth is enabled.
    let auth: V3AuthGate

    /// The version Status reports. Kubernetes' API server asks Status and sends watch progress requests (consistent
    /// lists from its cache) only to etcd 3.4.31+ or 3.5.13+, whose progress answers wait for the stream's watchers to
    /// catch up, as Cairn's do. `/version` stays 3.4.23, the release Cairn's recorded answers come from.
    package static let etcdVersion = "3.4.31"

    typealias View = KeySpaceNode.View
    typealias Done<T> = @Sendable (Result<T, V3Error>) -> Void

    func header(_ view: View, revision: Int64) -> V3Header {
        V3Header(clusterID: node.clusterID, memberID: member.id, revision: revision, raftTerm: view.raftTerm)
    }

    // MARK: - KV

    /// A range, linearizable (ReadIndex) unless `serializable`.
    func range(_ request: RangeRequest, _ done: @escaping Done<(V3Header, RangeResponse)>) {
        do throws(V3Error) {
            if request.range.start.isEmpty { throw V3Error(MVCCError.emptyKey) }
            try checkSize(MVCCCommand.txn(TxnRequest(success: [.range(request)])))
        } catch {
            return done(.failure(error))
        }
        guard !request.serializable else { return done(rangeResult(request, node.view())) }
        node.linearizableRead { [self] result in
            switch result {
            case .success(let view): done(rangeResult(request, view))
            case .failure(let error): done(.failure(V3Error(.unavailable, String(decoding: error.causeBytes, as: UTF8.self))))
            }
        }
    }

    private func rangeResult(_ request: RangeRequest, _ view: View) -> Result<(V3Header, RangeResponse), V3Error> {
        do throws(MVCCError) {
            let response = try view.mvcc.range(request)
            return .success((header(view, revision: response.revision), response))
        } catch {
            return .failure(V3Error(error))
        }
    }

    /// The request's own checks, then the write; etcd refuses before proposing.
    func put(_ request: PutRequest, _ done: @escaping Done<(MVCCResult, View)>) {
        run(done) { () throws(V3Error) in
            try Self.mvcc { () throws(MVCCError) in try request.validate() }
            write(.put(request), done)
        }
    }

    func deleteRange(_ request: DeleteRangeRequest, _ done: @escaping Done<(MVCCResult, View)>) {
        run(done) { () throws(V3Error) in
            if request.range.start.isEmpty { throw V3Error(MVCCError.emptyKey) }
            write(.deleteRange(request), done)
        }
    }

    func txn(_ request: TxnRequest, _ done: @escaping Done<(MVCCResult, View)>) {
        run(done) { () throws(V3Error) in
            try Self.mvcc { () throws(MVCCError) in try request.validate() }
            write(.txn(request), done)
        }
    }

    func compact(revision: Int64, _ done: @escaping Done<(MVCCResult, View)>) {
        write(.compact(revision: revision), done)
    }

    // MARK: - Leases

    func leaseGrant(ttl: Int64, id: Int64, _ done: @escaping Done<(MVCCResult, View)>) {
        run(done) { () throws(V3Error) in
            if ttl > LeaseTable.ttlSecondsMax { throw V3Error(MVCCError.leaseTTLTooLarge) }
            var id = id
            // etcd draws a positive 63-bit ID when none is asked for.
            while id == 0 { id = Int64.random(in: 1...Int64.max) }
            write(.grantLease(id: id, ttl: ttl), done)
        }
    }

    func leaseRevoke(id: Int64, _ done: @escaping Done<(MVCCResult, View)>) {
        write(.revokeLease(id: id), done)
    }

    /// One keep-alive through the log: the header and the lease's TTL, 0 for a lease that is not there (etcd answers
    /// an unknown lease so on the stream, not with an error).
    func leaseKeepAlive(id: Int64, _ done: @escaping Done<(V3Header, Int64)>) {
        node.proposeV3(.keepAliveLease(id: id)) { [self] result, view in
            switch result {
            case .success(.leaseKeptAlive(let lease, let revision)): done(.success((header(view, revision: revision), lease.ttl)))
            case .failure(let error) where error == V3Error(MVCCError.leaseNotFound):
                done(.success((header(view, revision: view.mvcc.revision), 0)))
            case .failure(let error): done(.failure(error))
            case .success: done(.failure(V3Error(.internalError, "etcdserver: unexpected answer to a keep-alive")))
            }
        }
    }

    /// A lease's remaining seconds as this member's clock has them (-1 for a lease it does not know) and the lease.
    func leaseTimeToLive(id: Int64, _ done: @escaping @Sendable (V3Header, Int64, Lease?) -> Void) {
        node.leaseTimeToLive(id) { [self] ttl, lease, view in
            done(header(view, revision: view.mvcc.revision), ttl, lease)
        }
    }

    func leases() -> (V3Header, [Int64]) {
        let view = node.view()
        return (header(view, revision: view.mvcc.revision), view.mvcc.leases.all.map(\.id))
    }

    // MARK: - Maintenance

    func status() -> (V3Header, V3Status) {
        let view = node.view(), raft = node.raftStatus
        let size = Int64(view.mvcc.historyBytes)
        let status = V3Status(version: Self.etcdVersion, dbSize: size, leader: raft.leader ?? 0, raftIndex: raft.commit,
                              raftTerm: raft.term, raftAppliedIndex: raft.applied, errors: raft.storageFailure.map { [$0] } ?? [],
                              dbSizeInUse: size, isLearner: raft.learners.contains(node.id))
        return (header(view, revision: view.mvcc.revision), status)
    }

    /// etcd's alarm call: GET (action 0) lists the raised alarms; ACTIVATE (1) and DEACTIVATE (2) of NOSPACE (alarm 1)
    /// go through the log and answer with the alarms they changed; other alarm types are not kept here.
    func alarm(action: Int, alarm: Int, memberID: UInt64, _ done: @escaping Done<[UInt64]>) {
        guard action != 0 else { return done(.success(node.view().mvcc.noSpaceAlarms.sorted())) }
        guard alarm == 1, action == 1 || action == 2 else { return done(.success([])) }
        write(.alarm(activate: action == 1, member: memberID)) { result in
            switch result {
            case .success((.alarms(let members), _)): done(.success(members))
            case .success: done(.success([]))
            case .failure(let error): done(.failure(error))
            }
        }
    }

    // MARK: - Writes

    /// etcd refuses a request whose encoding passes `--max-request-bytes` before proposing it.
    private func checkSize(_ command: MVCCCommand) throws(V3Error) {
        if command.encoded().count > requestBytesMax { throw V3Error(.invalidArgument, "etcdserver: request is too large") }
    }

    /// etcd's quota check before a write that adds data: past the quota, this member raises its NOSPACE alarm (through
    /// the log, so every member then refuses such writes until it is cleared) and the write is refused.
    private func checkQuota(_ command: MVCCCommand) throws(V3Error) {
        guard let quotaBytes, command.addsData else { return }
        let space = node.view().mvcc
        guard space.historyBytes + command.encoded().count >= quotaBytes else { return }
        if !space.noSpaceAlarms.contains(member.id) { node.proposeV3(.alarm(activate: true, member: member.id)) { _, _ in } }
        throw V3Error(MVCCError.noSpace)
    }

    private func write(_ command: MVCCCommand, _ done: @escaping Done<(MVCCResult, View)>) {
        run(done) { () throws(V3Error) in
            try checkSize(command)
            try checkQuota(command)
            node.proposeV3(command) { result, view in
                switch result {
                case .failure(let error): done(.failure(error))
                case .success(let answer): done(.success((answer, view)))
                }
            }
        }
    }

    /// Runs `body`, its refusal going to `done`.
    private func run<T>(_ done: Done<T>, _ body: () throws(V3Error) -> Void) {
        do throws(V3Error) { try body() } catch { done(.failure(error)) }
    }

    /// The key space's check, its error as etcd's.
    static func mvcc(_ check: () throws(MVCCError) -> Void) throws(V3Error) {
        do throws(MVCCError) { try check() } catch { throw V3Error(error) }
    }
}
