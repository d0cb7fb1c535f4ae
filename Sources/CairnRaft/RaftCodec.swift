// Compact little-endian binary encodings of the core's value types: peer messages, config-change payloads and
// the snapshot header's metadata. Decoding checks every length against the bytes left and against fixed limits.
//
// Message layout: kind u8, flags u8 (bit 0 reject, 1 leadershipTransfer, 2 snapshotDone), from, to, term, logTerm,
// index, commit, hintTerm, hintIndex, readSequence, sentTick, snapshotOffset (u64 each), data (u32 length +
// bytes), entry count u32, then per entry: term u64, index u64, clusterTimeNanos u64, kind u8, data (u32 + bytes).
// Membership: voter count u32 + u64 IDs, learner count u32 + u64 IDs. A buffer shorter or longer than what its
// lengths announce is an error, so a torn or padded frame is never half-read.
import CairnBase

package enum RaftCodecError: Error, Equatable {
    case truncated
    case trailingBytes(Int)
    case unknownKind(UInt8)
    case limitExceeded(String)
    case invalidMembership
}

package enum RaftCodecLimits {
    package static let entriesPerMessageMax = 1 << 16
    package static let dataBytesMax = 64 << 20
    package static let membersMax = 1 << 10
}

extension ByteWriter {
    fileprivate mutating func membership(_ m: Membership) {
        u32(UInt32(m.voters.count))
        for id in m.voters { u64(id.value) }
        u32(UInt32(m.learners.count))
        for id in m.learners { u64(id.value) }
    }
}

/// CairnBase's checked reader, with the codec's typed errors and limits.
private struct RaftReader {
    var base: ByteReader

    init(bytes: [UInt8]) { base = ByteReader(bytes) }

    var remaining: Int { base.remaining }

    mutating func u8() throws(RaftCodecError) -> UInt8 {
        do { return try base.u8() } catch { throw .truncated }
    }

    mutating func u32() throws(RaftCodecError) -> UInt32 {
        do { return try base.u32() } catch { throw .truncated }
    }

    mutating func u64() throws(RaftCodecError) -> UInt64 {
        do { return try base.u64() } catch { throw .truncated }
    }

    mutating func blob() throws(RaftCodecError) -> [UInt8] {
        let count = Int(try u32())
        guard count <= RaftCodecLimits.dataBytesMax else { throw .limitExceeded("data of \(count) bytes") }
        do { return Array(try base.take(count)) } catch { throw .truncated }
    }

    mutating func ids() throws(RaftCodecError) -> [MemberID] {
        let count = Int(try u32())
        guard count <= RaftCodecLimits.membersMax else { throw .limitExceeded("\(count) members") }
        guard remaining >= count * 8 else { throw .truncated }
        var result: [MemberID] = []
        result.reserveCapacity(count)
        for _ in 0..<count { result.append(MemberID(try u64())) }
        return result
    }

    mutating func membership() throws(RaftCodecError) -> Membership {
        let voters = try ids()
        let learners = try ids()
        let m = Membership(voters: voters, learners: learners)
        // Canonical form only (sorted, no duplicates, disjoint), so one membership has one encoding.
        guard m.voters == voters, m.learners == learners else { throw .invalidMembership }
        return m
    }

    func finish() throws(RaftCodecError) {
        if remaining != 0 { throw .trailingBytes(remaining) }
    }
}

/// Fixed part of an encoded entry: term, index, cluster time, kind, data length.
private let entryHeaderBytes = 8 * 3 + 1 + 4

extension Message {
    package func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 128 + data.count + entries.reduce(0) { $0 + entryHeaderBytes + $1.data.count })
        w.u8(kind.rawValue)
        w.u8((reject ? 1 : 0) | (leadershipTransfer ? 2 : 0) | (snapshotDone ? 4 : 0))
        for v in [from.value, to.value, term.value, logTerm.value, index.value, commit.value, hintTerm.value,
                  hintIndex.value, readSequence, sentTick, snapshotOffset] { w.u64(v) }
        w.lengthPrefixed(data)
        w.u32(UInt32(entries.count))
        for e in entries {
            w.u64(e.term.value)
            w.u64(e.index.value)
            w.u64(e.clusterTimeNanos)
            w.u8(e.kind.rawValue)
            w.lengthPrefixed(e.data)
        }
        return w.bytes
    }

    package init(decoding bytes: [UInt8]) throws(RaftCodecError) {
        var r = RaftReader(bytes: bytes)
        let rawKind = try r.u8()
        guard let kind = MessageKind(rawValue: rawKind) else { throw .unknownKind(rawKind) }
        let flags = try r.u8()
        guard flags & ~7 == 0 else { throw .unknownKind(flags) }
        let from = MemberID(try r.u64()), to = MemberID(try r.u64()), term = Term(try r.u64())
        self.init(kind: kind, from: from, to: to, term: term)
        reject = flags & 1 != 0
        leadershipTransfer = flags & 2 != 0
        snapshotDone = flags & 4 != 0
        logTerm = Term(try r.u64())
        index = LogIndex(try r.u64())
        commit = LogIndex(try r.u64())
        hintTerm = Term(try r.u64())
        hintIndex = LogIndex(try r.u64())
        readSequence = try r.u64()
        sentTick = try r.u64()
        snapshotOffset = try r.u64()
        data = try r.blob()
        let count = Int(try r.u32())
        guard count <= RaftCodecLimits.entriesPerMessageMax else { throw .limitExceeded("\(count) entries") }
        guard r.remaining >= count * entryHeaderBytes else { throw .truncated }
        entries.reserveCapacity(count)
        for _ in 0..<count {
            let t = Term(try r.u64()), i = LogIndex(try r.u64()), time = try r.u64()
            let rawEntryKind = try r.u8()
            guard let k = EntryKind(rawValue: rawEntryKind) else { throw .unknownKind(rawEntryKind) }
            entries.append(Entry(term: t, index: i, clusterTimeNanos: time, kind: k, data: try r.blob()))
        }
        try r.finish()
    }
}

extension Membership {
    package func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 8 + 8 * (voters.count + learners.count))
        w.membership(self)
        return w.bytes
    }

    package init(decoding bytes: [UInt8]) throws(RaftCodecError) {
        var r = RaftReader(bytes: bytes)
        self = try r.membership()
        try r.finish()
    }
}

extension ConfigChangeEntry {
    /// kind u8, member u64, then the resulting membership.
    package func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 17 + 8 * (membership.voters.count + membership.learners.count))
        w.u8(change.kind.rawValue)
        w.u64(change.member.value)
        w.membership(membership)
        return w.bytes
    }

    package init(decoding bytes: [UInt8]) throws(RaftCodecError) {
        var r = RaftReader(bytes: bytes)
        let rawKind = try r.u8()
        guard let kind = ConfigChange.Kind(rawValue: rawKind) else { throw .unknownKind(rawKind) }
        let member = MemberID(try r.u64())
        self.init(change: ConfigChange(kind, member), membership: try r.membership())
        try r.finish()
    }
}

extension SnapshotMetadata {
    /// index u64, term u64, clusterTimeNanos u64, then the membership: the snapshot file header's Raft part.
    package func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 32 + 8 * (membership.voters.count + membership.learners.count))
        w.u64(index.value)
        w.u64(term.value)
        w.u64(clusterTimeNanos)
        w.membership(membership)
        return w.bytes
    }

    package init(decoding bytes: [UInt8]) throws(RaftCodecError) {
        var r = RaftReader(bytes: bytes)
        let index = LogIndex(try r.u64()), term = Term(try r.u64()), time = try r.u64()
        self.init(index: index, term: term, clusterTimeNanos: time, membership: try r.membership())
        try r.finish()
    }
}
