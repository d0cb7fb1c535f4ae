// Value types shared by the Raft core, its storage and its callers: identifiers, entries, messages, hard state.
// Distinct wrappers keep a log index from being passed where a term is expected.

package struct Term: Comparable, Hashable, Sendable, CustomStringConvertible {
    package var value: UInt64
    package init(_ value: UInt64) { self.value = value }
    package static let zero = Term(0)
    package static func < (a: Term, b: Term) -> Bool { a.value < b.value }
    package var description: String { "t\(value)" }
}

package struct LogIndex: Comparable, Hashable, Sendable, CustomStringConvertible {
    package var value: UInt64
    package init(_ value: UInt64) { self.value = value }
    package static let zero = LogIndex(0)
    package static func < (a: LogIndex, b: LogIndex) -> Bool { a.value < b.value }
    package static func + (a: LogIndex, b: UInt64) -> LogIndex { LogIndex(a.value + b) }
    package static func - (a: LogIndex, b: UInt64) -> LogIndex { LogIndex(a.value - b) }
    package var description: String { "i\(value)" }
}

package struct MemberID: Comparable, Hashable, Sendable, CustomStringConvertible {
    package var value: UInt64
    package init(_ value: UInt64) { self.value = value }
    package static func < (a: MemberID, b: MemberID) -> Bool { a.value < b.value }
    package var description: String { "m\(value)" }
}

package enum EntryKind: UInt8, Sendable {
    /// Appended by every new leader so it can commit entries of earlier terms (it only counts its own term).
    case noop
    /// An application entry written before payloads began with a format version byte; still read from old logs.
    case unversioned = 1
    /// A membership change; `data` is a `ConfigChangeEntry` encoding. It takes effect when appended (see RaftNode).
    case configChange = 2
    /// An application entry (`RaftNode.propose`); its payload's first byte is the application's format version.
    case normal = 3
}

package struct Entry: Equatable, Sendable {
    package var term: Term
    package var index: LogIndex
    /// The leader's cluster time when the entry was created; never decreases along the log.
    package var clusterTimeNanos: UInt64
    package var kind: EntryKind
    package var data: [UInt8]

    package init(term: Term, index: LogIndex, clusterTimeNanos: UInt64, kind: EntryKind, data: [UInt8]) {
        self.term = term
        self.index = index
        self.clusterTimeNanos = clusterTimeNanos
        self.kind = kind
        self.data = data
    }

    /// Approximate encoded size, used for the per-message byte bound.
    package var sizeBytes: Int { data.count + 32 }
}

package struct HardState: Equatable, Sendable {
    package var term: Term
    package var vote: MemberID?
    package var commit: LogIndex

    package init(term: Term = .zero, vote: MemberID? = nil, commit: LogIndex = .zero) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

package enum MessageKind: UInt8, Sendable {
    case preVote, preVoteResponse
    case vote, voteResponse
    case append, appendResponse
    case heartbeat, heartbeatResponse
    /// Sent by a leader handing over leadership: the receiver campaigns at once, skipping pre-vote.
    case timeoutNow
    /// One chunk of a snapshot file, built and streamed by the leader's caller (the core never reads files).
    case snapshot
}

package struct Message: Equatable, Sendable {
    package var kind: MessageKind
    package var from: MemberID
    package var to: MemberID
    /// For a pre-vote request: the term the candidate would campaign in (its own term is not raised).
    package var term: Term
    /// append: term of the entry at `index` (the one before `entries`); vote: term of the last entry.
    package var logTerm: Term = .zero
    /// append: index before `entries`; vote: last index; appendResponse: last matching index (or the rejected index).
    package var index: LogIndex = .zero
    package var entries: [Entry] = []
    package var commit: LogIndex = .zero
    package var reject: Bool = false
    /// On a rejected append: the follower's conflicting term and the first index it holds with that term,
    /// so the leader skips a whole term per round trip instead of one entry.
    package var hintTerm: Term = .zero
    package var hintIndex: LogIndex = .zero
    /// Heartbeats carry the leader's latest read-request sequence; responses echo it back.
    package var readSequence: UInt64 = 0
    /// Set on vote requests of a campaign started by TimeoutNow, so members do not ignore them as disruptive.
    package var leadershipTransfer = false
    /// Heartbeat: the leader's tick count when it was sent; the response echoes it, so a lease counts from when
    /// the leader asked, not from when a (possibly delayed) answer arrived.
    package var sentTick: UInt64 = 0
    /// Snapshot chunk: `index`/`logTerm` name the snapshot, `snapshotOffset` is where `data` starts in its file,
    /// `snapshotDone` marks the last chunk.
    package var snapshotOffset: UInt64 = 0
    package var snapshotDone = false
    package var data: [UInt8] = []

    package init(kind: MessageKind, from: MemberID, to: MemberID, term: Term) {
        self.kind = kind
        self.from = from
        self.to = to
        self.term = term
    }
}

/// A ReadIndex request that is ready: reading the state machine once `index` is applied is linearizable.
package struct ReadState: Equatable, Sendable {
    package var context: UInt64
    package var index: LogIndex

    package init(context: UInt64, index: LogIndex) {
        self.context = context
        self.index = index
    }
}

/// Who votes and who only replicates. Both lists are sorted and disjoint.
package struct Membership: Equatable, Hashable, Sendable {
    package private(set) var voters: [MemberID]
    package private(set) var learners: [MemberID]

    package init(voters: [MemberID], learners: [MemberID] = []) {
        self.voters = Array(Set(voters)).sorted()
        self.learners = Array(Set(learners).subtracting(voters)).sorted()
    }

    package func contains(_ id: MemberID) -> Bool { voters.contains(id) || learners.contains(id) }
    package var members: [MemberID] { voters + learners }

    /// The membership after `change`, or nil when the change is not a valid single-server step
    /// (adding a present member, promoting a voter, removing an absent member or the last voter).
    package func applying(_ change: ConfigChange) -> Membership? {
        switch change.kind {
        case .addLearner:
            guard !contains(change.member) else { return nil }
            return Membership(voters: voters, learners: learners + [change.member])
        case .addVoter:
            guard !voters.contains(change.member) else { return nil }
            return Membership(voters: voters + [change.member], learners: learners.filter { $0 != change.member })
        case .remove:
            guard contains(change.member), voters != [change.member] else { return nil }
            return Membership(voters: voters.filter { $0 != change.member }, learners: learners.filter { $0 != change.member })
        }
    }
}

/// One server at a time: the only changes a proposal may make (Raft dissertation §4.1).
package struct ConfigChange: Equatable, Sendable {
    package enum Kind: UInt8, Sendable {
        case addLearner
        /// Adds a voter, or promotes a learner that has caught up.
        case addVoter
        case remove
    }

    package var kind: Kind
    package var member: MemberID

    package init(_ kind: Kind, _ member: MemberID) {
        self.kind = kind
        self.member = member
    }
}

/// A config-change entry's payload: the change and the membership it produces, so any member that holds the
/// entry knows the configuration without replaying earlier ones (a joining member starts with none).
package struct ConfigChangeEntry: Equatable, Sendable {
    package var change: ConfigChange
    package var membership: Membership

    package init(change: ConfigChange, membership: Membership) {
        self.change = change
        self.membership = membership
    }
}

/// What a snapshot stands for: the log through `index` (of `term`), the cluster time of that entry and the
/// membership in effect there. Stored in the snapshot file header and by storage for the compacted prefix.
package struct SnapshotMetadata: Equatable, Sendable {
    package var index: LogIndex
    package var term: Term
    package var clusterTimeNanos: UInt64
    package var membership: Membership

    package init(index: LogIndex, term: Term, clusterTimeNanos: UInt64, membership: Membership) {
        self.index = index
        self.term = term
        self.clusterTimeNanos = clusterTimeNanos
        self.membership = membership
    }

    /// The empty log's: nothing compacted.
    package static let none = SnapshotMetadata(index: .zero, term: .zero, clusterTimeNanos: 0, membership: Membership(voters: []))
}

/// A leader's request to its caller: stream the snapshot `metadata` describes to `to` as `.snapshot` chunks,
/// then call `reportSnapshot(to:success:)`.
package struct SnapshotRequest: Equatable, Sendable {
    package var to: MemberID
    /// The leader's term: every chunk carries it, so a follower refuses a deposed leader's stream.
    package var term: Term
    package var metadata: SnapshotMetadata
}

extension SnapshotRequest {
    /// The message carrying `data`, the bytes at `offset` of the snapshot file this request names (`isLast` on the
    /// final chunk), as the leader's caller streams it.
    package func chunk(from leader: MemberID, offset: UInt64, data: [UInt8], isLast: Bool) -> Message {
        var m = Message(kind: .snapshot, from: leader, to: to, term: term)
        m.index = metadata.index
        m.logTerm = metadata.term
        m.snapshotOffset = offset
        m.data = data
        m.snapshotDone = isLast
        return m
    }
}
