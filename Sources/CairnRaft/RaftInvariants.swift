// Raft's safety properties as executable checks: local ones run inside the core behind `debugChecks`,
// cluster-wide ones are fed by tests and the simulator after every step. Off on the production hot path.

package enum RaftInvariants {
    /// Cheap per-member checks; a violation traps, since continuing would corrupt state.
    package static func checkLocal<S>(_ node: RaftNode<S>) {
        precondition(node.applied <= node.commit, "applied \(node.applied) beyond commit \(node.commit)")
        precondition(node.commit <= node.lastIndex, "commit \(node.commit) beyond last index \(node.lastIndex)")
        precondition(node.lastTerm <= node.term, "last entry term \(node.lastTerm) above current term \(node.term)")
        precondition(node.snapshot.index <= node.applied, "snapshot \(node.snapshot.index) beyond applied \(node.applied)")
        precondition(node.firstIndex == node.snapshot.index + 1, "first index \(node.firstIndex) not after snapshot \(node.snapshot.index)")
    }
}

/// Accumulates what members report and checks the cluster-wide properties; each `observe` is incremental,
/// so cost grows with the new entries, not with the whole log.
package struct ClusterChecker {
    package struct Violation: Error, CustomStringConvertible {
        package var description: String
        package init(description: String) { self.description = description }
    }

    private var leaderOfTerm: [Term: MemberID] = [:]
    /// Leader Append-Only: the leader's log length per (member, term) may only grow while it leads.
    private var leaderLastIndex: [MemberID: (term: Term, last: LogIndex)] = [:]
    /// Every entry any member has applied, by index: State Machine Safety compares against it.
    private var appliedEntries: [Entry] = []
    /// The highest term any member held when each entry was first seen applied: its commit happened no later.
    private var appliedAtTerm: [Term] = []
    /// The state machine's digest after each applied index: a restored snapshot must carry the same one.
    private var appliedDigests: [UInt64] = []
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
        where seenAt < node.term && e.index >= node.snapshot.index && node.term(at: e.index) != e.term {
            throw Violation(description: "leader completeness: \(id) in \(node.term) lacks committed \(e.index)@\(e.term)")
        }
    }

    /// A member stopped (crashed): whatever it led ends, and what it had not persisted is gone with it.
    package mutating func memberStopped(_ id: MemberID) {
        leaderLastIndex[id] = nil
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
                appliedDigests.append(Self.digest(appliedDigests.last ?? Self.digestSeed, e))
            } else {
                throw Violation(description: "apply gap: \(id) applied \(e.index) before \(appliedEntries.count + 1)")
            }
        }
    }

    /// The digest a state machine starts from, before index 1.
    package static let digestSeed: UInt64 = 0xCBF2_9CE4_8422_2325

    /// A state machine that only remembers what it applied: FNV-1a over each entry, chained. Equal digests at an
    /// index mean equal applied histories (up to hash collisions), which is what a snapshot must preserve.
    package static func digest(_ previous: UInt64, _ e: Entry) -> UInt64 {
        var h = previous
        func mix(_ byte: UInt8) { h = (h ^ UInt64(byte)) &* 0x100_0000_01B3 }
        for shift in stride(from: 0, to: 64, by: 8) { mix(UInt8(truncatingIfNeeded: e.index.value >> UInt64(shift))) }
        for shift in stride(from: 0, to: 64, by: 8) { mix(UInt8(truncatingIfNeeded: e.term.value >> UInt64(shift))) }
        mix(e.kind.rawValue)
        for b in e.data { mix(b) }
        return h
    }

    /// State Machine Safety across snapshots: a member that restored a snapshot through `index` holds the state
    /// every member had after applying that index.
    package func observeRestored(index: LogIndex, digest: UInt64, by id: MemberID) throws {
        guard index.value > 0 else { return }
        let i = Int(index.value) - 1
        guard i < appliedDigests.count else {
            throw Violation(description: "snapshot ahead of apply: \(id) restored \(index), applied anywhere \(appliedDigests.count)")
        }
        if appliedDigests[i] != digest {
            throw Violation(description: "state machine safety: \(id) restored a snapshot at \(index) with a different state")
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
                    // Only entries both still hold are compared: compaction drops prefixes.
                    guard let x = a.term(at: j), let y = b.term(at: j) else { return }
                    if x != y {
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
