// What members say to each other beyond the transport's handshake: Raft messages, proposals forwarded to the
// leader, and ReadIndex requests a follower asks the leader to confirm. Every decode checks every length.
import CairnBase
import CairnRaft
import CairnStore

/// Peer frame types owned by the node (the transport keeps 240 and above).
enum NodeFrame {
    static let raft: UInt8 = 1
    /// A follower's proposal for the leader to append: a `Proposal` payload.
    static let propose: UInt8 = 2
    /// A follower's read, for the leader to confirm with ReadIndex: a `ReadRequest`.
    static let readIndex: UInt8 = 3
    /// The leader's answer: a `ReadRequest` | read index u64.
    static let readIndexReady: UInt8 = 4
    /// Sent to every peer once per election timeout: incarnation u64 of the sender's run, so a leader notices a
    /// member that restarted (perhaps without its disk) and replicates to it from scratch.
    static let alive: UInt8 = 5
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
struct Requester: Equatable, Hashable {
    var member: UInt64
    var incarnation: UInt64
}

/// A read a follower asks the leader to confirm: who asks and under which context number.
struct ReadRequest: Equatable {
    var requester: Requester
    var context: UInt64

    func encoded(index: UInt64? = nil) -> [UInt8] {
        var writer = ByteWriter(capacity: 32)
        writer.u64(requester.member)
        writer.u64(requester.incarnation)
        writer.u64(context)
        if let index { writer.u64(index) }
        return writer.bytes
    }

    /// Decodes a request, and the read index when the frame is an answer.
    static func decode(_ bytes: [UInt8], withIndex: Bool) throws(ByteReaderError) -> (ReadRequest, UInt64?) {
        var reader = ByteReader(bytes)
        let request = ReadRequest(requester: Requester(member: try reader.u64(), incarnation: try reader.u64()), context: try reader.u64())
        return (request, withIndex ? try reader.u64() : nil)
    }
}

/// A log entry's payload: which run of which member proposed it and under which sequence number (so that run can
/// answer its client when the entry is applied), the client's session if it named one, then what it changes: the
/// key space (a command) or the member table.
struct Proposal: Equatable {
    enum Body: Equatable {
        case command([UInt8])
        case member(MemberChange)
    }

    var origin: Requester
    var sequence: UInt64
    var session: SessionRequest?
    var body: Body

    func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 48)
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
        }
        return writer.bytes
    }

    init(origin: Requester, sequence: UInt64, session: SessionRequest? = nil, body: Body) {
        self.origin = origin
        self.sequence = sequence
        self.session = session
        self.body = body
    }

    init(decoding bytes: [UInt8]) throws {
        var reader = ByteReader(bytes)
        origin = Requester(member: try reader.u64(), incarnation: try reader.u64())
        sequence = try reader.u64()
        if try reader.u8() == 1 {
            let client = String(decoding: try reader.lengthPrefixed(), as: UTF8.self)
            session = SessionRequest(client: client, request: try reader.u64())
        }
        switch try reader.u8() {
        case 0: body = .command(reader.rest())
        case 1: body = .member(try MemberChange(decoding: reader.rest()))
        case let kind: throw TreeSnapshotError.malformed("proposal body kind \(kind)")
        }
    }
}

/// A log entry as one readable line, for `cairn storage dump`.
package func describeLogEntry(kind: UInt8, payload: [UInt8]) -> String {
    guard let entryKind = EntryKind(rawValue: kind) else { return "unknown kind, \(payload.count) bytes" }
    guard entryKind == .normal else { return "\(entryKind)" }
    guard let proposal = try? Proposal(decoding: payload) else { return "\(payload.count) bytes (undecodable)" }
    var text = "from \(hex(proposal.origin.member))/\(hex(proposal.origin.incarnation))#\(proposal.sequence) "
    if let session = proposal.session { text += "session \(session.client.debugDescription)#\(session.request) " }
    guard case .command(let bytes) = proposal.body, let command = try? StoreCommand(decoding: bytes) else {
        if case .member(let change) = proposal.body { return text + "MEMBER \(change)" }
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
