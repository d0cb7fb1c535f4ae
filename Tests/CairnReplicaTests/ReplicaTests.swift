// The Replica driven with plain data, as the runner and the simulator drive it: what it does with a forwarded
// proposal when it does not lead, how a member that joined empty votes, and that it stays pure.
import CairnBase
import CairnRaft
import CairnReplica
import CairnStore
import Foundation
import Testing

@Suite struct ReplicaTests {
    static func replica(id: UInt64, voters: [UInt64]) -> Replica<MemoryLogStorage> {
        var options = ReplicaOptions(id: id, voters: voters)
        options.members = voters.map { MemberRecord(id: $0, name: "m\($0)", peerURLs: ["sim://\($0)"], clientURLs: []) }
        options.name = "m\(id)"
        let recovery = ReplicaRecovery(log: MemoryLogStorage(), hardState: HardState(), snapshot: nil, loggedMembers: nil,
                                       incarnation: 1, randomSeed: id)
        var replica = Replica(options: options, storeInitialIndex: 3, recovery: recovery)
        replica.start(now: 1)
        return replica
    }

    /// Hands a Raft message to the replica as a peer frame, then drives it through any persist; returns every action.
    static func deliver(_ message: Message, to replica: inout Replica<MemoryLogStorage>) throws -> [ReplicaAction] {
        let (type, payload) = PeerMessage.raft(message).frame
        var actions = try replica.receive(from: message.from.value, type: type, payload: payload, now: 2)
        var next = replica.drive(now: 3)
        for _ in 0..<8 where !next.isEmpty {
            actions += next
            next = next.contains { if case .persist = $0 { true } else { false } } ? replica.persisted(now: 4) : []
        }
        return actions
    }

    static func raftSends(_ actions: [ReplicaAction]) -> [Message] {
        actions.compactMap { if case .send(_, .raft(let message)) = $0 { message } else { nil } }
    }

    static func heartbeat(from leader: UInt64, to id: UInt64, term: UInt64, commit: UInt64) -> Message {
        var m = Message(kind: .heartbeat, from: MemberID(leader), to: MemberID(id), term: Term(term))
        m.commit = LogIndex(commit)
        return m
    }

    /// A follower's proposal that reaches a member no longer leading is dropped there: passed on, it would reach the
    /// new leader in this member's name and be refused with its link (before: forwarded to the leader it knew).
    @Test func aForwardedProposalIsNotPassedOnByAFollower() throws {
        var follower = Self.replica(id: 2, voters: [1, 2, 3])
        _ = try Self.deliver(Self.heartbeat(from: 1, to: 2, term: 1, commit: 0), to: &follower)
        #expect(follower.raft.leader == MemberID(1))
        let proposal = Proposal(origin: Requester(member: 3, incarnation: 7), sequence: 1,
                                body: .command(StoreCommand(method: .put, path: "/a").encoded()))
        let (type, payload) = PeerMessage.proposal(proposal.encoded()).frame
        let actions = try follower.receive(from: 3, type: type, payload: payload, now: 5)
        #expect(!actions.contains { if case .send(_, .proposal) = $0 { true } else { false } })
        #expect(actions.contains { if case .count("cairn_forwarded_proposals_dropped_total") = $0 { true } else { false } })
    }

    /// A member that joined empty votes, before it has applied its floor, for a candidate whose log holds the floor
    /// (before: it withheld every vote, and a two-voter cluster whose leader restarted could never elect).
    @Test func aJoinedMemberVotesForACandidateHoldingItsFloor() throws {
        var joiner = Self.replica(id: 4, voters: [])
        _ = try Self.deliver(Self.heartbeat(from: 1, to: 4, term: 2, commit: 5), to: &joiner)
        var behind = Message(kind: .vote, from: MemberID(3), to: MemberID(4), term: Term(3))
        behind.logTerm = Term(1)
        behind.index = LogIndex(40)
        #expect(Self.raftSends(try Self.deliver(behind, to: &joiner)).isEmpty, "a candidate from before the floor's term gets no vote")
        var holding = Message(kind: .vote, from: MemberID(1), to: MemberID(4), term: Term(3))
        holding.logTerm = Term(2)
        holding.index = LogIndex(5)
        let answers = Self.raftSends(try Self.deliver(holding, to: &joiner)).filter { $0.kind == .voteResponse }
        #expect(answers.count == 1 && answers.first?.reject == false)
    }

    /// A lone voter elects itself in the batch that raises its term: nothing it sends (an append to its learner) may
    /// leave before that term is durable, or a crash could let its next run lead the same term with other entries
    /// (before: the append went out ahead of the persist).
    @Test func aLoneVoterSendsNothingBeforeItsNewTermIsDurable() throws {
        var log = MemoryLogStorage()
        let learner = ConfigChangeEntry(change: ConfigChange(.addLearner, MemberID(2)),
                                        membership: Membership(voters: [MemberID(1)], learners: [MemberID(2)]))
        log.append([Entry(term: Term(1), index: LogIndex(1), clusterTimeNanos: 1, kind: .configChange, data: learner.encoded())])
        log.setHardState(HardState(term: Term(1), vote: MemberID(1), commit: LogIndex(1)))
        let recovery = ReplicaRecovery(log: log, hardState: log.hardState, snapshot: nil, loggedMembers: nil, incarnation: 1, randomSeed: 1)
        var replica = Replica(options: ReplicaOptions(id: 1, voters: [1]), storeInitialIndex: 3, recovery: recovery)
        replica.start(now: 1)
        #expect(replica.raft.role == .leader && replica.raft.term == Term(2))
        let actions = replica.drive(now: 2)
        let persist = try #require(actions.firstIndex { if case .persist = $0 { true } else { false } })
        #expect(!actions[..<persist].contains { if case .send = $0 { true } else { false } })
        let after = replica.persisted(now: 3)
        #expect(after.contains { if case .send(2, .raft(let m)) = $0 { m.kind == .append } else { false } }, "the append goes once durable")
    }

    /// CairnReplica decides without I/O: none of its files imports a module that reaches threads, clocks or files.
    @Test func replicaImportsOnlyPureModules() throws {
        let allowed: Set<String> = ["CairnBase", "CairnRaft", "CairnStore", "CairnMVCC", "DequeModule"]
        let tests = try #require(#filePath.range(of: "/Tests/"))
        let directory = String(#filePath[..<tests.lowerBound]) + "/Sources/CairnReplica"
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".swift") }
        #expect(files.count >= 8)
        for name in files {
            let text = try String(contentsOfFile: "\(directory)/\(name)", encoding: .utf8)
            for line in text.split(separator: "\n") where line.hasPrefix("import ") {
                let module = String(line.dropFirst("import ".count))
                #expect(allowed.contains(module), "\(name) imports \(module)")
            }
        }
    }
}
