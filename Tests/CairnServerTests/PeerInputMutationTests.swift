// A seeded mutation test of everything a peer can send: valid frames of every kind are damaged (bits flipped, bytes
// inserted, cut, numbers replaced by extremes), re-framed with a correct checksum, then decoded and validated.
// Each must come out as a valid input or an error, and every valid one is stepped into live Raft cores: no trap.
import CairnReplica
import CairnAPI
import CairnBase
import CairnPeer
import CairnRaft
import CairnStore
import Testing
@testable import CairnServer

@Suite struct PeerInputMutationTests {
    static let local: UInt64 = 1, peer: UInt64 = 2
    static let mutations = 20_000

    /// Valid frames of every type the node reads, as a member would send them to member 1.
    static func validFrames() -> [PeerFrame] {
        let from = MemberID(peer), to = MemberID(local)
        var put = StoreCommand(method: .put, path: "/a/b")
        put.value = "v"
        put.ttlNanos = 5_000_000_000
        let proposals = [
            Proposal(origin: Requester(member: peer, incarnation: 9), sequence: 3, body: .command(put.encoded())),
            Proposal(origin: Requester(member: peer, incarnation: 9), sequence: 4, session: SessionRequest(client: "svc", request: 8),
                     body: .command(StoreCommand(method: .delete, path: "/a").encoded())),
            Proposal(origin: Requester(member: peer, incarnation: 9), sequence: 5, body: .member(.add(id: 7, peerURLs: ["http://127.0.0.1:7"]))),
        ]
        var messages: [Message] = []
        var append = Message(kind: .append, from: from, to: to, term: Term(3))
        append.index = LogIndex(0)
        append.logTerm = Term(0)
        append.commit = LogIndex(2)
        append.entries = [Entry(term: Term(1), index: LogIndex(1), clusterTimeNanos: 10, kind: .noop, data: [])]
            + proposals.enumerated().map { Entry(term: Term(3), index: LogIndex(UInt64($0.offset) + 2), clusterTimeNanos: 20, kind: .normal, data: $0.element.encoded()) }
        append.entries.append(Entry(term: Term(3), index: LogIndex(5), clusterTimeNanos: 30, kind: .configChange,
                                    data: ConfigChangeEntry(change: ConfigChange(.addLearner, MemberID(4)),
                                                            membership: Membership(voters: [MemberID(1), MemberID(2), MemberID(3)], learners: [MemberID(4)])).encoded()))
        messages.append(append)
        var heartbeat = Message(kind: .heartbeat, from: from, to: to, term: Term(3))
        heartbeat.commit = LogIndex(2)
        heartbeat.readSequence = 4
        heartbeat.sentTick = 17
        messages.append(heartbeat)
        for kind in [MessageKind.vote, .preVote] {
            var vote = Message(kind: kind, from: from, to: to, term: Term(4))
            vote.index = LogIndex(5)
            vote.logTerm = Term(3)
            messages.append(vote)
        }
        for kind in [MessageKind.appendResponse, .heartbeatResponse, .voteResponse, .preVoteResponse] {
            var answer = Message(kind: kind, from: from, to: to, term: Term(3))
            answer.index = LogIndex(4)
            answer.reject = kind == .appendResponse
            answer.hintIndex = LogIndex(3)
            answer.hintTerm = Term(2)
            answer.sentTick = 2
            messages.append(answer)
        }
        var chunk = Message(kind: .snapshot, from: from, to: to, term: Term(3))
        chunk.index = LogIndex(40)
        chunk.logTerm = Term(3)
        chunk.snapshotOffset = 0
        chunk.data = Array(repeating: 0xAB, count: 64)
        chunk.snapshotDone = true
        messages.append(chunk)
        messages.append(Message(kind: .timeoutNow, from: from, to: to, term: Term(3)))
        let read = ReadRequest(requester: Requester(member: peer, incarnation: 9), context: 12)
        var alive = ByteWriter()
        alive.u64(99)
        return messages.map { PeerFrame(type: NodeFrame.raft, payload: $0.encoded()) }
            + proposals.map { PeerFrame(type: NodeFrame.propose, payload: $0.encoded()) }
            + [PeerFrame(type: NodeFrame.readIndex, payload: read.encoded()),
               PeerFrame(type: NodeFrame.readIndexReady, payload: ReadRequest(requester: Requester(member: local, incarnation: 1), context: 3).encoded(index: 40)),
               PeerFrame(type: NodeFrame.alive, payload: alive.bytes)]
    }

    /// One damage of `bytes`, chosen by `random`.
    static func mutate(_ bytes: [UInt8], _ random: inout SeededRandom) -> [UInt8] {
        var bytes = bytes
        let extremes: [UInt64] = [0, 1, UInt64.max, UInt64.max - 1, 1 << 63, 1 << 62, (1 << 62) - 1, UInt64(UInt32.max), 1 << 32]
        for _ in 0..<Int.random(in: 1...3, using: &random) {
            let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &random)
            switch Int.random(in: 0..<6, using: &random) {
            case 0 where !bytes.isEmpty: bytes[position] ^= 1 << UInt8.random(in: 0..<8, using: &random)
            case 1: bytes.insert(UInt8.random(in: 0...255, using: &random), at: position)
            case 2 where !bytes.isEmpty: bytes.remove(at: position)
            case 3: bytes = Array(bytes.prefix(position))
            case 4 where bytes.count >= 8:
                // A whole little-endian number replaced: where the terms, indexes and lengths live.
                let at = Int.random(in: 0...(bytes.count - 8), using: &random)
                let value = extremes.randomElement(using: &random)!
                withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(at..<(at + 8), with: $0) }
            case 5 where bytes.count >= 4:
                let at = Int.random(in: 0...(bytes.count - 4), using: &random)
                let value = UInt32(truncatingIfNeeded: extremes.randomElement(using: &random)!)
                withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(at..<(at + 4), with: $0) }
            default: bytes.append(UInt8.random(in: 0...255, using: &random))
            }
        }
        return bytes
    }

    /// Raft cores to step valid inputs into: a follower and a leader of members 1, 2, 3 (rebuilt if it loses office).
    struct Cores {
        var follower = RaftNode(config: RaftConfig(id: MemberID(local), voters: [1, 2, 3].map(MemberID.init), randomSeed: 1),
                                storage: MemoryLogStorage(), hardState: HardState())
        var leader = Cores.makeLeader()

        static func makeLeader() -> RaftNode<MemoryLogStorage> {
            var config = RaftConfig(id: MemberID(local), voters: [1, 2, 3].map(MemberID.init), randomSeed: 2)
            config.preVote = false
            config.leaseReads = true
            var node = RaftNode(config: config, storage: MemoryLogStorage(), hardState: HardState())
            node.campaign()
            var grant = Message(kind: .voteResponse, from: MemberID(peer), to: MemberID(local), term: node.term)
            grant.reject = false
            node.step(grant)
            return node
        }

        mutating func step(_ message: Message) {
            for which in 0..<2 {
                var node = which == 0 ? follower : leader
                node.step(message)
                node.tick(monotonicNanos: 0)
                _ = node.readIndex(context: 1)
                let ready = node.ready()
                if let snapshot = ready.snapshot { node.storage.applySnapshot(snapshot) }
                node.storage.append(ready.entries)
                node.advance(ready)
                if which == 0 { follower = node } else { leader = node.role == .leader ? node : Cores.makeLeader() }
            }
        }
    }

    /// Applies a proposal that passed the checks as every member would, and renders what it changed.
    static func apply(_ bytes: [UInt8], kind: EntryKind, to keySpace: inout KeySpace) {
        guard let proposal = try? Proposal(decoding: bytes, kind: kind) else {
            Issue.record("a checked proposal did not decode")
            return
        }
        guard case .command(let encoded) = proposal.body, let command = try? StoreCommand(decoding: encoded) else { return }
        let now: Int64 = 1_800_000_000_000_000_000
        if command.method == .expire {
            for (event, _) in keySpace.expire(upTo: command.expiration) { _ = KeysResponse.event(event) }
        } else if case .success(let (event, _)) = keySpace.apply(command.resolvingTTL(at: now), now: now) {
            _ = KeysResponse.event(event)
        }
    }

    @Test func damagedFramesDecodeToValidInputsOrErrorsAndNeverTrap() throws {
        let frames = Self.validFrames()
        var cores = Cores()
        for frame in frames {
            let input = try PeerMessage(type: frame.type, payload: frame.payload, from: Self.peer, localID: Self.local)
            if case .raft(let message) = input { cores.step(message) }
        }
        var random = SeededRandom(seed: 0xF022)
        var accepted = 0, refused = 0
        var keySpace = KeySpace(initialIndex: 7)
        let decoder = PeerFrameDecoder(frameBytesMax: 1 << 20)
        for n in 0..<Self.mutations {
            let original = frames[n % frames.count]
            // Damage the payload and re-frame it with a correct checksum; now and then the frame type too.
            var type = original.type
            if random.chance(1, in: 20) { type = UInt8.random(in: 0...255, using: &random) }
            let wire = PeerFrame(type: type, payload: Self.mutate(original.payload, &random)).encoded()
            guard let (frame, _) = try wire.withUnsafeBytes({ try decoder.next($0) }) else {
                Issue.record("mutation \(n): a whole frame did not decode")
                continue
            }
            do {
                let input = try PeerMessage(type: frame.type, payload: frame.payload, from: Self.peer, localID: Self.local)
                accepted += 1
                switch input {
                case .raft(let message):
                    // Entries past the commit index must decode; committed ones are taken as they are (and applied as
                    // no-ops when they do not).
                    for entry in message.entries where entry.kind == .normal {
                        let applicable = Proposal.isApplicable(entry.data, kind: .normal)
                        #expect(applicable || entry.index <= message.commit, "mutation \(n)")
                        if applicable { Self.apply(entry.data, kind: .normal, to: &keySpace) }
                    }
                    cores.step(message)
                case .proposal(let bytes):
                    #expect((try? Proposal(decoding: bytes)) != nil, "mutation \(n)")
                    Self.apply(bytes, kind: .normal, to: &keySpace)
                    _ = describeLogEntry(kind: EntryKind.normal.rawValue, payload: bytes)
                case .readIndex, .readIndexReady, .alive: break
                }
            } catch {
                refused += 1
            }
        }
        // Both outcomes occur often: the mutations reach past the decoders into the validator and the cores.
        #expect(accepted > Self.mutations / 20 && refused > Self.mutations / 2, "accepted \(accepted), refused \(refused)")
    }

    /// Entry payloads as apply meets them, damaged: decoding either succeeds or throws, for either entry kind.
    @Test func damagedProposalsDecodeOrFail() {
        var random = SeededRandom(seed: 0xA991)
        let payloads = Self.validFrames().filter { $0.type == NodeFrame.propose }.map(\.payload)
        for n in 0..<Self.mutations / 4 {
            let bytes = Self.mutate(payloads[n % payloads.count], &random)
            for kind in [EntryKind.normal, .unversioned, .noop] {
                if let proposal = try? Proposal(decoding: bytes, kind: kind), case .command(let command) = proposal.body {
                    _ = try? StoreCommand(decoding: command)
                }
                _ = describeLogEntry(kind: kind.rawValue, payload: bytes)
            }
        }
    }
}
