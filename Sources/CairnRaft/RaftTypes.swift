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
    case normal
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
