// Raft's safety properties as executable checks: local ones run inside the core behind `debugChecks`,
// cluster-wide ones are fed by tests and the simulator after every step. Off on the production hot path.

package enum RaftInvariants {
    /// Cheap per-member checks; a violation traps, since continuing would corrupt state.
    package static func checkLocal<S>(_ node: RaftNode<S>) {
        precondition(node.applied <= node.commit, "applied \(node.applied) beyond commit \(node.commit)")
        precondition(node.commit <= node.lastIndex, "commit \(node.commit) beyond last index \(node.lastIndex)")
        precondition(node.lastTerm <= node.term, "last entry term \(node.lastTerm) above current term \(node.term)")
    }
}

/// Accumulates what members report and checks the cluster-wide properties; each `observe` is incremental,
/// so cost grows with the new entries, not with the whole log.
package struct ClusterChecker {
    package struct Violation: Error, CustomStringConvertible {
        package var description: String
    }

    private var leaderOfTerm: [Term: MemberID] = [:]
    /// Leader Append-Only: the leader's log length per (member, term) may only grow while it leads.
    private var leaderLastIndex: [MemberID: (term: Term, last: LogIndex)] = [:]
    /// Every entry any member has applied, by index: State Machine Safety compares against it.
    private var appliedEntries: [Entry] = []
    /// The highest term any member held when each entry was first seen applied: its commit happened no later.
    private var appliedAtTerm: [Term] = []
    /// Highest index known committed anywhere when each read was requested.
    private var readFloor: [UInt64: LogIndex] = [:]

    package init() {}

    package var committedCount: Int { appliedEntries.count }

    /// Election Safety, Leader Append-Only and Leader Completeness for one member's current view.
    package mutating func observe<S>(_ node: RaftNode<S>) throws {
        let id = node.config.id
        guard node.role == .leader else { leaderLastIndex[id] = nil; return }
        if let other = leaderOfTerm[node.term], other != id {
            throw Violation(description: "election safety: \(other) and \(id) both lead \(node.term)")
        }
        leaderOfTerm[node.term] = id
        if let previous = leaderLastIndex[id], previous.term == node.term, node.lastIndex < previous.last {
            throw Violation(description: "leader append-only: \(id) shrank from \(previous.last) to \(node.lastIndex) in \(node.term)")
        }
        leaderLastIndex[id] = (node.term, node.lastIndex)
        // Leader Completeness: every applied entry (so committed) is in the leader's log. Checked on the most
        // recent entries, which are the ones a wrong election would lose.
        let start = max(0, appliedEntries.count - 64)
        for (e, seenAt) in zip(appliedEntries[start...], appliedAtTerm[start...])
        where seenAt < node.term && node.term(at: e.index) != e.term {
            throw Violation(description: "leader completeness: \(id) in \(node.term) lacks committed \(e.index)@\(e.term)")
        }
    }

    /// State Machine Safety: every member applies the same entry at each index.
    /// `highestTerm` is the highest term any member holds now.
    package mutating func observeApplied(_ entries: [Entry], by id: MemberID, highestTerm: Term) throws {
        for e in entries {
            let i = Int(e.index.value) - 1
            if i < appliedEntries.count {
                if appliedEntries[i] != e {
                    throw Violation(description: "state machine safety: \(id) applied \(e.index)@\(e.term), another applied \(appliedEntries[i].term)")
                }
            } else if i == appliedEntries.count {
                appliedEntries.append(e)
                appliedAtTerm.append(highestTerm)
            } else {
                throw Violation(description: "apply gap: \(id) applied \(e.index) before \(appliedEntries.count + 1)")
            }
        }
    }

    /// Log Matching between two members, checked at the higher of their common indexes and its predecessor chain
    /// back to the first agreeing term boundary (bounded walk).
    package static func checkLogMatching<A, B>(_ a: RaftNode<A>, _ b: RaftNode<B>) throws {
        var i = min(a.lastIndex, b.lastIndex)
        var steps = 0
        while i.value > 0 && steps < 64 {
            if let ta = a.term(at: i), let tb = b.term(at: i), ta == tb {
                // Same index and term: the entries up to here must match, spot-checked backwards.
                var j = i
                while j.value > 0 && steps < 64 {
                    if a.term(at: j) != b.term(at: j) {
                        throw Violation(description: "log matching: \(a.config.id) and \(b.config.id) agree at \(i) but differ at \(j)")
                    }
                    j = j - 1
                    steps += 1
                }
                return
            }
            i = i - 1
            steps += 1
        }
    }

    /// Records the read floor for a read request with `context`: the highest index applied anywhere now.
    package mutating func readRequested(context: UInt64) {
        readFloor[context] = LogIndex(UInt64(appliedEntries.count))
    }

    /// ReadIndex never stale: a read's index covers everything committed before it was requested.
    package mutating func readReady(_ r: ReadState) throws {
        guard let floor = readFloor.removeValue(forKey: r.context) else { return }
        if r.index < floor {
            throw Violation(description: "stale read: context \(r.context) at \(r.index) below committed \(floor)")
        }
    }
}
