// etcd's v3 member calls (list, add, remove, update, promote) with etcd 3.4's answers and errors, for the JSON gateway
// and gRPC alike. Changes go through the log as member-table entries, as `/v2/members` changes do; Raft's follows.
import CairnAPI
import CairnReplica
import CairnStore

/// A member call's answer: the header (no revision, as etcd's), the members, and for an add the member added.
struct V3MembersAnswer: Sendable {
    var header: V3Header
    var members: [V3Member]
    var added: V3Member?
}

extension V3Service {
    func memberAdd(peerURLs: [String], isLearner: Bool, _ done: @escaping Done<V3MembersAnswer>) {
        do throws(V3Error) {
            let table = node.memberTable
            let urls = try Self.checkedPeerURLs(peerURLs)
            // Cairn adds every member as a learner and promotes it itself once it has caught up.
            if isLearner {
                throw V3Error(.unimplemented, "etcdserver: Cairn promotes new members itself once they catch up; add the member without isLearner")
            }
            // A URL already in use can never be added, so that is said first.
            if urls.contains(where: { table.owner(ofPeerURL: $0) != nil }) { throw Self.peerURLsExist }
            let started = table.members.values.filter(\.isStarted).count, count = table.members.count + 1
            // etcd's strict reconfiguration check: the started members must be a quorum of the cluster with the new one
            // (a second member for a single started one excepted, etcd's documented way to restore a cluster).
            guard (started == 1 && count == 2) || started >= count / 2 + 1 else { throw Self.notEnoughStartedMembers }
            let id = ClusterBootstrap.memberID(peerURLs: urls, token: token)
            guard table.members[id] == nil else { throw V3Error(.failedPrecondition, "etcdserver: member ID already exist") }
            let added = V3Member(id: id, name: "", peerURLs: urls, clientURLs: [], isLearner: false)
            change(.add(id: id, peerURLs: urls), added: added, done)
        } catch {
            done(.failure(error))
        }
    }

    func memberRemove(id: UInt64, _ done: @escaping Done<V3MembersAnswer>) {
        let table = node.memberTable
        let others = table.members.values.filter { $0.id != id }
        // etcd's strict check comes first, for an unknown ID too (etcd 3.4 answers so).
        if others.filter(\.isStarted).count < others.count / 2 + 1 { return done(.failure(Self.notEnoughStartedMembers)) }
        guard table.members[id] != nil else { return done(.failure(Self.memberNotFound)) }
        change(.remove(id: id), done)
    }

    func memberUpdate(id: UInt64, peerURLs: [String], _ done: @escaping Done<V3MembersAnswer>) {
        do throws(V3Error) {
            let table = node.memberTable
            guard table.members[id] != nil else { throw Self.memberNotFound }
            let urls = try Self.checkedPeerURLs(peerURLs)
            if urls.contains(where: { url in table.owner(ofPeerURL: url).map { $0 != id } ?? false }) { throw Self.peerURLsExist }
            change(.updatePeerURLs(id: id, peerURLs: urls), done)
        } catch {
            done(.failure(error))
        }
    }

    /// A learner here is one Cairn is still catching up; it promotes it itself once it is in sync.
    func memberPromote(id: UInt64) -> V3Error {
        guard node.memberTable.members[id] != nil else { return Self.memberNotFound }
        guard node.raftStatus.learners.contains(id) else {
            return V3Error(.failedPrecondition, "etcdserver: can only promote a learner member")
        }
        return V3Error(.failedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
    }

    func memberList() -> V3MembersAnswer {
        V3MembersAnswer(header: memberHeader(), members: listed(node.memberTable))
    }

    static let notEnoughStartedMembers = V3Error(.unknown, "etcdserver: re-configuration failed due to not enough started members")
    static let peerURLsExist = V3Error(.failedPrecondition, "etcdserver: Peer URLs already exists")
    static let memberNotFound = V3Error(.notFound, "etcdserver: member not found")

    /// Peer URLs, each checked as etcd parses member URLs; none, or one that does not parse, is etcd's error.
    private static func checkedPeerURLs(_ urls: [String]) throws(V3Error) -> [String] {
        let invalid = V3Error(.invalidArgument, "etcdserver: given member URLs are invalid")
        guard !urls.isEmpty else { throw invalid }
        var parsed: [String] = []
        for url in urls {
            guard case .success(let checked) = MemberRequest.etcdURL(url[...]) else { throw invalid }
            parsed.append(checked)
        }
        return parsed
    }

    private func change(_ change: MemberChange, added: V3Member? = nil, _ done: @escaping Done<V3MembersAnswer>) {
        // Changes before the initial members are logged would be ignored (see `MemberTable.apply`).
        guard node.memberTable.isLogged else { return done(.failure(V3Error(.unavailable, "etcdserver: the cluster is still starting; retry"))) }
        node.proposeMemberChange(change) { [self] result in
            switch result {
            case .success(let table): done(.success(V3MembersAnswer(header: memberHeader(), members: listed(table), added: added)))
            case .failure(let error): done(.failure(V3Error(.unavailable, String(decoding: error.causeBytes, as: UTF8.self))))
            }
        }
    }

    /// etcd's member answers carry no revision in their header.
    private func memberHeader() -> V3Header { header(node.view(), revision: 0) }

    private func listed(_ table: MemberTable) -> [V3Member] {
        let learners = Set(node.raftStatus.learners)
        return table.sorted.map {
            V3Member(id: $0.id, name: $0.name, peerURLs: $0.peerURLs, clientURLs: $0.clientURLs, isLearner: learners.contains($0.id))
        }
    }
}
