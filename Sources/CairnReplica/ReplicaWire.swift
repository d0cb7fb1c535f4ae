// What members say to each other beyond the transport's handshake (Raft messages, proposals forwarded to the leader,
// ReadIndex requests) and what a log entry's payload holds. Every decode checks every length.
import CairnBase
import CairnMVCC
import CairnRaft
import CairnStore

/// Peer frame types owned by the node (the transport keeps 240 and above).
package enum NodeFrame {
    package static let raft: UInt8 = 1
    /// A follower's proposal for the leader to append: a `Proposal` payload.
    package static let propose: UInt8 = 2
    /// A follower's read, for the leader to confirm with ReadIndex: a `ReadRequest`.
    package static let readIndex: UInt8 = 3
    /// The leader's answer: a `ReadRequest` | read index u64.
    package static let readIndexReady: UInt8 = 4
    /// Sent to every peer once per election timeout: incarnation u64 of the sender's run, so a leader notices a
    /// member that restarted (perhaps without its disk) and replicates to it from scratch.
    package static let alive: UInt8 = 5
}

/// A client's name for itself and its number for this request (`X-Cairn-Client`, `X-Cairn-Request`).
package struct SessionRequest: Equatable, Sendable {
    package var client: String
    package var request: UInt64

    package init(client: String, request: UInt64) {
        self.client = client
        self.request = request
    }
}

/// Which run of which member asked: a member's sequence numbers start again when it restarts, so an entry or a read
/// answer from before the restart must not be taken for one of the new run's (the run is a random 64-bit nonce).
package struct Requester: Equatable, Hashable, Sendable {
    package var member: UInt64
    package var incarnation: UInt64

    package init(member: UInt64, incarnation: UInt64) {
        self.member = member
        self.incarnation = incarnation
    }
}

/// A read a follower asks the leader to confirm: who asks and under which context number.
package struct ReadRequest: Equatable, Sendable {
    package var requester: Requester
    package var context: UInt64

    package init(requester: Requester, context: UInt64) {
        self.requester = requester
        self.context = context
    }

    package func encoded(index: UInt64? = nil) -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.u64(requester.member)
        writer.u64(requester.incarnation)
        writer.u64(context)
        if let index { writer.u64(index) }
        return writer.bytes
    }

    /// Decodes a request, and the read index when the frame is an answer.
    package static func decode(_ bytes: [UInt8], withIndex: Bool) throws(ByteReaderError) -> (ReadRequest, UInt64?) {
        var reader = ByteReader(bytes)
        let request = ReadRequest(requester: Requester(member: try reader.u64(), incarnation: try reader.u64()), context: try reader.u64())
        return (request, withIndex ? try reader.u64() : nil)
    }
}

/// A log entry's payload: which run of which member proposed it and under which sequence number (so that run can
/// answer its client when the entry is applied), the client's session if it named one, then what it changes: the
/// v2 key space (a command), the v3 key space (an `MVCCCommand`) or the member table. Encoded behind a format version byte (`formatVersion`); entries of
/// kind `.unversioned`, from logs written before the byte existed, hold the same layout without it.
package struct Proposal: Equatable, Sendable {
    package enum Body: Equatable, Sendable {
        case command([UInt8])
        case member(MemberChange)
        /// An `MVCCCommand` encoding. A member older than this kind applies the entry as a no-op (kind unknown).
        case mvcc([UInt8])
    }

    /// The first byte of every `.normal` entry's payload and of every forwarded proposal. A member meeting a
    /// version it does not know (a newer binary's entry) applies the entry as a no-op rather than guess.
    package static let formatVersion: UInt8 = 1

    package var origin: Requester
    package var sequence: UInt64
    package var session: SessionRequest?
    package var body: Body

    package func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 48)
        writer.u8(Self.formatVersion)
        writer.u64(origin.member)
        writer.u64(origin.incarnation)
        writer.u64(sequence)
        if let session {
            writer.u8(1)
            writer.lengthPrefixed(Array(session.client.utf8))
            writer.u64(session.request)
        } else {
            writer.u8(0)
        }
        switch body {
        case .command(let command):
            writer.u8(0)
            writer.raw(command)
        case .member(let change):
            writer.u8(1)
            writer.raw(change.encoded())
        case .mvcc(let command):
            writer.u8(2)
            writer.raw(command)
        }
        return writer.bytes
    }

    package init(origin: Requester, sequence: UInt64, session: SessionRequest? = nil, body: Body) {
        self.origin = origin
        self.sequence = sequence
        self.session = session
        self.body = body
    }

    /// Decodes a versioned proposal (a forwarded one, or a `.normal` entry's payload).
    package init(decoding bytes: [UInt8]) throws {
        try self.init(decoding: bytes, versioned: true)
    }

    /// Decodes a log entry's payload; throws for kinds that hold no proposal.
    package init(decoding bytes: [UInt8], kind: EntryKind) throws {
        guard kind == .normal || kind == .unversioned else { throw TreeSnapshotError.malformed("a \(kind) entry holds no proposal") }
        try self.init(decoding: bytes, versioned: kind == .normal)
    }

    private init(decoding bytes: [UInt8], versioned: Bool) throws {
        var reader = ByteReader(bytes)
        if versioned {
            let version = try reader.u8()
            guard version == Self.formatVersion else { throw TreeSnapshotError.malformed("proposal format version \(version)") }
        }
        origin = Requester(member: try reader.u64(), incarnation: try reader.u64())
        sequence = try reader.u64()
        switch try reader.u8() {
        case 0: break
        case 1:
            let client = try reader.lengthPrefixed()
            guard !client.isEmpty, client.count <= ClientSessions.clientNameBytesMax else {
                throw TreeSnapshotError.malformed("session client name of \(client.count) bytes")
            }
            session = SessionRequest(client: String(decoding: client, as: UTF8.self), request: try reader.u64())
        case let flag: throw TreeSnapshotError.malformed("proposal session flag \(flag)")
        }
        switch try reader.u8() {
        case 0: body = .command(reader.rest())
        case 1: body = .member(try MemberChange(decoding: reader.rest()))
        case 2: body = .mvcc(reader.rest())
        case let kind: throw TreeSnapshotError.malformed("proposal body kind \(kind)")
        }
    }

    /// Whether applying this proposal could get past decoding: the envelope and the command inside it both decode
    /// and the command is one a member's HTTP edge could have made (`isApplicable(_:)`). What every member checks
    /// before a proposal reaches Raft and before an entry from a peer is logged.
    package static func isApplicable(_ bytes: [UInt8], kind: EntryKind) -> Bool {
        guard let proposal = try? Proposal(decoding: bytes, kind: kind) else { return false }
        switch proposal.body {
        case .command(let command):
            guard let decoded = try? StoreCommand(decoding: command) else { return false }
            return isApplicable(decoded)
        case .mvcc(let command):
            return (try? MVCCCommand(decoding: command)) != nil
        case .member:
            return true
        }
    }

    /// A write never carries a negative TTL or expiration (the HTTP edge makes TTLs of 0 or more and leaves the
    /// expiration to apply): one that does would make times before 1970 that the key space cannot subtract from.
    package static func isApplicable(_ command: StoreCommand) -> Bool {
        command.method == .expire || (command.expiration >= 0 && (command.ttlNanos ?? 0) >= 0)
    }
}

/// A log entry as one readable line, for `cairn storage dump`.
package func describeLogEntry(kind: UInt8, payload: [UInt8]) -> String {
    guard let entryKind = EntryKind(rawValue: kind) else { return "unknown kind, \(payload.count) bytes" }
    guard entryKind == .normal || entryKind == .unversioned else { return "\(entryKind)" }
    guard let proposal = try? Proposal(decoding: payload, kind: entryKind) else { return "\(payload.count) bytes (undecodable)" }
    var text = "from \(hex(proposal.origin.member))/\(hex(proposal.origin.incarnation))#\(proposal.sequence) "
    if let session = proposal.session { text += "session \(session.client.debugDescription)#\(session.request) " }
    guard case .command(let bytes) = proposal.body, let command = try? StoreCommand(decoding: bytes) else {
        if case .member(let change) = proposal.body { return text + "MEMBER \(change)" }
        if case .mvcc(let bytes) = proposal.body {
            guard let command = try? MVCCCommand(decoding: bytes) else { return text + "v3 command of \(bytes.count) bytes (undecodable)" }
            return text + "V3 \(command)"
        }
        return text + "command of \(payload.count) bytes (undecodable)"
    }
    if command.method == .expire { return text + "EXPIRE up to \(command.expiration)" }
    text += "\(command.method.rawValue) \(command.path)"
    if !command.value.isEmpty { text += " value=\(command.value.debugDescription)" }
    if command.dir { text += " dir" }
    if command.recursive { text += " recursive" }
    if command.refresh { text += " refresh" }
    if let prevExist = command.prevExist { text += " prevExist=\(prevExist)" }
    if !command.prevValue.isEmpty { text += " prevValue=\(command.prevValue.debugDescription)" }
    if command.prevIndex != 0 { text += " prevIndex=\(command.prevIndex)" }
    if command.expiration != 0 { text += " expiration=\(command.expiration)" }
    if let ttl = command.ttlNanos { text += " ttl=\(ttl / 1_000_000_000)s" }
    return text
}

/// What members send each other, both ways. A peer's frame is decoded and checked whole (`init(type:payload:from:localID:)`)
/// before anything acts on it: the one place where what a peer sends is judged. A frame that fails is refused (the
/// caller counts it and closes the link); nothing in it reaches Raft.
package enum PeerMessage: Sendable {
    case raft(Message)
    /// A follower's proposal for the leader to append, already known to decode (its bytes, as logged).
    case proposal([UInt8])
    case readIndex(ReadRequest)
    case readIndexReady(ReadRequest, index: UInt64)
    case alive(incarnation: UInt64)

    package init(type: UInt8, payload: [UInt8], from peer: UInt64, localID: UInt64) throws(InvalidMessage) {
        switch type {
        case NodeFrame.raft:
            let message: Message
            do { message = try Message(decoding: payload) } catch { throw InvalidMessage("Raft message: \(error)") }
            guard message.from.value == peer, message.to.value == localID else {
                throw InvalidMessage("Raft message from \(message.from) to \(message.to) on the link from \(hex(peer))")
            }
            try message.validate(isValidPayload: Proposal.isApplicable)
            self = .raft(message)
        case NodeFrame.propose:
            guard let proposal = try? Proposal(decoding: payload), Proposal.isApplicable(payload, kind: .normal) else {
                throw InvalidMessage("forwarded proposal of \(payload.count) bytes cannot be decoded")
            }
            guard proposal.origin.member == peer else {
                throw InvalidMessage("proposal of member \(hex(proposal.origin.member)) forwarded by \(hex(peer))")
            }
            self = .proposal(payload)
        case NodeFrame.readIndex, NodeFrame.readIndexReady:
            let withIndex = type == NodeFrame.readIndexReady
            guard payload.count == (withIndex ? 32 : 24),
                  let (request, index) = try? ReadRequest.decode(payload, withIndex: withIndex) else {
                throw InvalidMessage("read request of \(payload.count) bytes")
            }
            if let index {
                guard index <= RaftLimits.indexMax else { throw InvalidMessage("read index \(index) is beyond \(RaftLimits.indexMax)") }
                self = .readIndexReady(request, index: index)
            } else {
                guard request.requester.member == peer else {
                    throw InvalidMessage("read of member \(hex(request.requester.member)) forwarded by \(hex(peer))")
                }
                self = .readIndex(request)
            }
        case NodeFrame.alive:
            var reader = ByteReader(payload)
            guard payload.count == 8, let incarnation = try? reader.u64() else {
                throw InvalidMessage("alive frame of \(payload.count) bytes")
            }
            self = .alive(incarnation: incarnation)
        default:
            throw InvalidMessage("unknown peer frame type \(type)")
        }
    }

    /// The frame type and payload this message goes out as.
    package var frame: (type: UInt8, payload: [UInt8]) {
        switch self {
        case .raft(let message): return (NodeFrame.raft, message.encoded())
        case .proposal(let bytes): return (NodeFrame.propose, bytes)
        case .readIndex(let request): return (NodeFrame.readIndex, request.encoded())
        case .readIndexReady(let request, let index): return (NodeFrame.readIndexReady, request.encoded(index: index))
        case .alive(let incarnation):
            var writer = ByteWriter(capacity: 8)
            writer.u64(incarnation)
            return (NodeFrame.alive, writer.bytes)
        }
    }

    /// Whether it goes on the bulk channel (appends with entries, proposals) rather than the control one, so a
    /// heartbeat never queues behind a megabyte of entries.
    package var isBulk: Bool {
        switch self {
        case .raft(let message): return message.kind == .append && !message.entries.isEmpty
        case .proposal: return true
        default: return false
        }
    }
}
