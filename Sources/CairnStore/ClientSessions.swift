// Exactly-once writes: a client that names itself and numbers its requests gets, for a retried number, the answer
// the first attempt got, without the write being applied again — on any member, after any leader change.
// Part of the replicated state: applied from the log in order and carried in snapshots, so every member agrees.
// Sessions are forgotten after an hour of *cluster* time without a request (never by a member's wall clock), and the
// table is bounded (answers in bytes per client and in all, clients in number), forgetting by cluster time then name.
import CairnBase
import HeapModule

package struct ClientSessions: Sendable {
    /// Answers kept per client; a client may have this many requests outstanding and still retry any of them.
    package static let answersPerClientMax = 256
    /// A client silent this long (cluster time) is forgotten; a retry after that is treated as a new request.
    package static let idleNanosMax: Int64 = 3_600 * 1_000_000_000
    package static let clientNameBytesMax = 256

    /// How much the table holds. Every replica must use the same values: they decide what is forgotten.
    package struct Limits: Sendable, Equatable {
        /// Encoded answers kept for one client; past it, that client's oldest answers are forgotten.
        package var answerBytesPerClientMax = 8 << 20
        /// Encoded answers kept for all clients; past it, the least recently seen client's oldest answers go.
        package var answerBytesMax = 64 << 20
        /// Clients remembered; past it, the least recently seen client is forgotten whole, as if idle.
        package var clientsMax = 100_000

        package init() {}
    }

    struct Session: Sendable, Equatable {
        var lastSeenNanos: Int64
        /// Encoded `Result<StoreEvent, StoreError>` by request number.
        var answers: [UInt64: [UInt8]] = [:]
        var answerBytes = 0
        /// Requests below this number had their answers dropped: a retry of one cannot be answered truthfully.
        var forgottenBelow: UInt64 = 0

        /// Drops the lowest-numbered answer; a retry of it, or of any lower number, is then refused.
        mutating func forgetOldestAnswer() -> Int {
            guard let oldest = answers.keys.min(), let answer = answers.removeValue(forKey: oldest) else { return 0 }
            forgottenBelow = max(forgottenBelow, oldest + 1)
            answerBytes -= answer.count
            return answer.count
        }
    }

    /// A session's place in the order of forgetting: least recently seen first (cluster time, the same on every
    /// replica), then by name's bytes.
    struct Age: Comparable, Sendable {
        var lastSeenNanos: Int64
        var client: String

        static func < (a: Age, b: Age) -> Bool {
            a.lastSeenNanos != b.lastSeenNanos
                ? a.lastSeenNanos < b.lastSeenNanos : a.client.utf8.lexicographicallyPrecedes(b.client.utf8)
        }
    }

    package enum Lookup: Equatable {
        case new
        case answered(Result<StoreEvent, StoreError>)
        /// The request is older than the answers kept: refuse rather than risk applying it twice.
        case forgotten
    }

    package let limits: Limits
    private(set) var sessions: [String: Session] = [:]
    /// The sum of every session's `answerBytes`.
    package private(set) var answerBytes = 0
    /// Every session's age, and that of sessions holding answers; an entry whose session has since been seen again
    /// (or forgotten) is stale and skipped when it comes up. Rebuilt when stale entries outnumber live ones.
    private var byAge = Heap<Age>()
    private var answeredByAge = Heap<Age>()

    package init(limits: Limits = Limits()) {
        self.limits = limits
    }

    package var count: Int { sessions.count }

    package func lookup(client: String, request: UInt64) -> Lookup {
        guard let session = sessions[client] else { return .new }
        if let answer = session.answers[request], let result = try? StoreResultEncoding.decode(answer) { return .answered(result) }
        return request < session.forgottenBelow ? .forgotten : .new
    }

    package mutating func record(client: String, request: UInt64, result: Result<StoreEvent, StoreError>, at time: Int64) {
        // A new client makes room first, so the client being answered is never the one forgotten whole.
        if sessions[client] == nil { forgetClients(keeping: limits.clientsMax - 1) }
        var session = sessions[client] ?? Session(lastSeenNanos: time)
        session.lastSeenNanos = max(session.lastSeenNanos, time)
        let answer = StoreResultEncoding.encode(result)
        if let replaced = session.answers.updateValue(answer, forKey: request) { session.answerBytes -= replaced.count; answerBytes -= replaced.count }
        session.answerBytes += answer.count
        answerBytes += answer.count
        while session.answers.count > Self.answersPerClientMax || session.answerBytes > limits.answerBytesPerClientMax {
            answerBytes -= session.forgetOldestAnswer()
        }
        sessions[client] = session
        let age = Age(lastSeenNanos: session.lastSeenNanos, client: client)
        byAge.insert(age)
        if !session.answers.isEmpty { answeredByAge.insert(age) }
        enforceLimits()
    }

    /// Drops sessions idle for `idleNanosMax` as of cluster time `time`.
    package mutating func expire(at time: Int64) {
        sessions = sessions.filter { time - $0.value.lastSeenNanos < Self.idleNanosMax }
        answerBytes = sessions.values.reduce(0) { $0 + $1.answerBytes }
        rebuildAges()
    }

    /// Forgets whole clients, least recently seen first, until at most `count` remain.
    private mutating func forgetClients(keeping count: Int) {
        while sessions.count > max(0, count), let age = byAge.popMin() {
            guard let session = sessions[age.client], session.lastSeenNanos == age.lastSeenNanos else { continue }
            answerBytes -= session.answerBytes
            sessions[age.client] = nil
        }
    }

    /// Forgets, least recently seen first, whole clients past `clientsMax`, then answers past `answerBytesMax`.
    private mutating func enforceLimits() {
        forgetClients(keeping: limits.clientsMax)
        while answerBytes > limits.answerBytesMax, let age = answeredByAge.popMin() {
            guard var session = sessions[age.client], session.lastSeenNanos == age.lastSeenNanos, !session.answers.isEmpty else { continue }
            while answerBytes > limits.answerBytesMax, !session.answers.isEmpty { answerBytes -= session.forgetOldestAnswer() }
            sessions[age.client] = session
            if !session.answers.isEmpty { answeredByAge.insert(age) }
        }
        if byAge.count > 2 * sessions.count + 1024 || answeredByAge.count > 2 * sessions.count + 1024 { rebuildAges() }
    }

    private mutating func rebuildAges() {
        let ages = sessions.map { Age(lastSeenNanos: $0.value.lastSeenNanos, client: $0.key) }
        byAge = Heap(ages)
        answeredByAge = Heap(ages.filter { sessions[$0.client]?.answers.isEmpty == false })
    }

    // MARK: Snapshot stream

    /// Layout: "CAIRNSS1" | count u32 | per client (in name order): name | lastSeen i64 | forgottenBelow u64
    /// | answers u32 | per answer (in request order): request u64 | answer bytes. Lengths are u32 prefixes.
    package func write(to sink: inout some SnapshotSink) throws {
        var w = ByteWriter()
        w.raw(Self.magic)
        w.u32(UInt32(sessions.count))
        for (name, session) in sessions.sorted(by: { $0.key < $1.key }) {
            w.lengthPrefixed(Array(name.utf8))
            w.u64(UInt64(bitPattern: session.lastSeenNanos))
            w.u64(session.forgottenBelow)
            w.u32(UInt32(session.answers.count))
            for (request, answer) in session.answers.sorted(by: { $0.key < $1.key }) {
                w.u64(request)
                w.lengthPrefixed(answer)
            }
            if w.bytes.count >= TreeSnapshot.pieceBytes {
                try sink.write(w.bytes)
                w = ByteWriter()
            }
        }
        try sink.write(w.bytes)
    }

    static let magic = Array("CAIRNSS1".utf8)

    /// Reads a table, holding it to `limits` (a table written under larger limits is cut as they decide).
    package static func read(from source: inout some SnapshotSource, limits: Limits = Limits()) throws -> ClientSessions {
        guard try source.read(exactly: magic.count) == magic else { throw TreeSnapshotError.badMagic }
        var result = ClientSessions(limits: limits)
        for _ in 0..<(try source.readInteger(4)) {
            let name = String(decoding: try source.readLengthPrefixed(bytesMax: clientNameBytesMax), as: UTF8.self)
            guard result.sessions[name] == nil else { throw TreeSnapshotError.malformed("client \(name) twice") }
            var session = Session(lastSeenNanos: Int64(bitPattern: try source.readInteger(8)))
            session.forgottenBelow = try source.readInteger(8)
            let answers = try source.readInteger(4)
            guard answers <= UInt64(answersPerClientMax) else { throw TreeSnapshotError.malformed("\(answers) answers for one client") }
            for _ in 0..<answers {
                let request = try source.readInteger(8)
                let answer = try source.readLengthPrefixed(bytesMax: 1 << 24)
                session.answerBytes += answer.count - (session.answers.updateValue(answer, forKey: request)?.count ?? 0)
            }
            while session.answerBytes > limits.answerBytesPerClientMax { _ = session.forgetOldestAnswer() }
            result.sessions[name] = session
            result.answerBytes += session.answerBytes
        }
        result.rebuildAges()
        result.enforceLimits()
        return result
    }
}

/// A write's outcome as bytes, so a session can keep it compactly and a snapshot can carry it.
package enum StoreResultEncoding {
    static let actions: [StoreAction] = [.get, .set, .create, .update, .delete, .compareAndSwap, .compareAndDelete, .expire]

    package static func encode(_ result: Result<StoreEvent, StoreError>) -> [UInt8] {
        var w = ByteWriter()
        switch result {
        case .success(let event):
            w.u8(0)
            w.u8(UInt8(actions.firstIndex(of: event.action)!))
            w.u8(event.isRefresh ? 1 : 0)
            w.u64(event.etcdIndex)
            encode(event.node, into: &w)
            if let prev = event.prevNode {
                w.u8(1)
                encode(prev, into: &w)
            } else {
                w.u8(0)
            }
        case .failure(let error):
            w.u8(1)
            w.u32(UInt32(error.code.rawValue))
            w.lengthPrefixed(error.causeBytes)
            w.u64(error.index)
        }
        return w.bytes
    }

    private static func encode(_ node: NodeView, into w: inout ByteWriter) {
        w.u8((node.isDirectory ? 1 : 0) | (node.value != nil ? 2 : 0) | (node.expiration != nil ? 4 : 0))
        w.lengthPrefixed(node.key.bytes)
        if let value = node.value { w.lengthPrefixed(Array(value.utf8)) }
        if let expiration = node.expiration { w.u64(UInt64(bitPattern: expiration)) }
        w.u64(UInt64(bitPattern: node.ttl))
        w.u64(node.createdIndex)
        w.u64(node.modifiedIndex)
    }

    package static func decode(_ bytes: [UInt8]) throws -> Result<StoreEvent, StoreError> {
        var r = ByteReader(bytes)
        let result: Result<StoreEvent, StoreError>
        if try r.u8() == 0 {
            let actionCode = Int(try r.u8())
            guard actionCode < actions.count else { throw TreeSnapshotError.malformed("action \(actionCode)") }
            let isRefresh = try r.u8() == 1
            let etcdIndex = try r.u64()
            let node = try decodeNode(&r)
            let prevNode = try r.u8() == 1 ? try decodeNode(&r) : nil
            var event = StoreEvent(action: actions[actionCode], node: node, prevNode: prevNode, etcdIndex: etcdIndex)
            event.isRefresh = isRefresh
            result = .success(event)
        } else {
            let codeValue = Int(try r.u32())
            guard let code = StoreErrorCode(rawValue: codeValue) else { throw TreeSnapshotError.malformed("error code \(codeValue)") }
            let cause = try r.lengthPrefixed()
            result = .failure(StoreError(code, causeBytes: cause, index: try r.u64()))
        }
        guard r.isAtEnd else { throw TreeSnapshotError.malformed("\(r.remaining) bytes after an answer") }
        return result
    }

    private static func decodeNode(_ r: inout ByteReader) throws -> NodeView {
        let flags = try r.u8()
        let key = StoreKey(bytes: try r.lengthPrefixed())
        let value = flags & 2 != 0 ? String(decoding: try r.lengthPrefixed(), as: UTF8.self) : nil
        let expiration = flags & 4 != 0 ? Int64(bitPattern: try r.u64()) : nil
        let ttl = Int64(bitPattern: try r.u64())
        return NodeView(key: key, value: value, isDirectory: flags & 1 != 0, expiration: expiration, ttl: ttl,
                        createdIndex: try r.u64(), modifiedIndex: try r.u64())
    }
}

extension ClientSessions: Equatable {
    /// Equal tables hold the same sessions (the forgetting order is derived from them).
    package static func == (a: ClientSessions, b: ClientSessions) -> Bool {
        a.sessions == b.sessions && a.limits == b.limits
    }
}
