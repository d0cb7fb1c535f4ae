// Applying committed entries: each proposal's body goes to the key space it names (the v2 tree with its client
// sessions, the v3 key space, the member table), in log order, identically on every member.
import CairnMVCC
import CairnRaft
import CairnStore

extension Replica {
    /// Applies committed entries in order (skipping those a snapshot already holds), then hands the batch to the
    /// runner: the view to publish, the events for watchers, the answers for this member's writers and readers.
    mutating func apply(_ entries: [Entry], into out: inout [ReplicaAction]) {
        guard !entries.isEmpty else { return }
        var batch = AppliedBatch(view: view, v3RevisionBefore: v3.space.revision, statistics: statistics)
        var internalAnswers: [(Waiter, WriteOutcome)] = []
        for entry in entries where entry.index.value > appliedIndex {
            appliedIndex = entry.index.value
            appliedClusterTime = Int64(bitPattern: entry.clusterTimeNanos)
            promoteLeasesIfLeading(entryTerm: entry.term.value)
            guard entry.kind == .normal || entry.kind == .unversioned else { continue }
            // An entry that cannot be decoded (a newer binary's, or damage that got past the checks) is a no-op on
            // every member alike: the same bytes fail the same way everywhere, so the replicas still agree.
            let proposal: Proposal
            do { proposal = try Proposal(decoding: entry.data, kind: entry.kind) } catch {
                undecodable(entry, error, into: &out)
                continue
            }
            let outcome: WriteOutcome
            switch proposal.body {
            case .member(let change):
                applyMember(change)
                outcome = .member(members)
            case .mvcc(let bytes):
                outcome = .v3(applyV3(bytes, entry: entry, into: &out))
            case .command(let bytes):
                let command: StoreCommand
                do {
                    command = try StoreCommand(decoding: bytes)
                    guard Proposal.isApplicable(command) else { throw TreeSnapshotError.malformed("a write with a negative TTL or expiration") }
                } catch {
                    undecodable(entry, error, into: &out)
                    continue
                }
                let (result, events) = applyV2(command, session: proposal.session)
                batch.events += events
                outcome = .v2(result)
            }
            guard proposal.origin == requester, let waiter = writers.removeValue(forKey: proposal.sequence) else { continue }
            if case .client(let token) = waiter { batch.writes.append((token, outcome)) } else { internalAnswers.append((waiter, outcome)) }
        }
        if let floor = voteFloor, floor != .max, appliedIndex >= floor { voteFloor = nil }
        if membersDirty {
            membersDirty = false
            out.append(.membersChanged(members))
        }
        appliedAt = now
        // A member-change answer carries the table after the whole batch.
        batch.writes = batch.writes.map { write in
            guard case .member = write.outcome else { return write }
            return (write.token, .member(members))
        }
        for (waiter, outcome) in internalAnswers { finishInternal(waiter, outcome: outcome) }
        if !readsAwaitingApply.isEmpty {
            var waiting: [(index: UInt64, context: UInt64)] = []
            for read in readsAwaitingApply {
                guard read.index <= appliedIndex else {
                    waiting.append(read)
                    continue
                }
                if let token = readers.removeValue(forKey: read.context) { batch.reads.append(token) }
            }
            readsAwaitingApply = waiting
        }
        batch.view = view
        batch.statistics = statistics
        out.append(.applied(batch))
    }

    mutating func undecodable(_ entry: Entry, _ error: any Error, into out: inout [ReplicaAction]) {
        out.append(.count(metric: "cairn_entries_undecodable_total"))
        out.append(.log(ReplicaLogLine(level: .error, message: "a committed entry cannot be decoded; applied as a no-op",
                                       metadata: ["index": "\(entry.index)", "error": "\(error)"])))
    }

    mutating func applyMember(_ change: MemberChange) {
        if case .bootstrap(let records) = change, !members.isLogged {
            // Nothing precedes this entry but noops, so the store is still empty: it starts where etcd's would
            // for this many members (a joiner learns it here).
            keySpace = KeySpace(initialIndex: Self.storeInitialIndex(memberCount: records.count))
        }
        members.apply(change)
        membersDirty = true
    }

    /// Applies a v2 command unless its session already has the answer; records the answer for a retry. An answer
    /// given again changed nothing: nothing to count or notify.
    mutating func applyV2(_ command: StoreCommand, session: SessionRequest?)
        -> (Result<[(event: StoreEvent, removed: RemovedNodes)], StoreError>, events: [(event: StoreEvent, removed: RemovedNodes)])
    {
        // Sessions idle for an hour of cluster time go, swept once per cluster-time minute (the same on every member).
        let minute: Int64 = 60_000_000_000
        if appliedClusterTime / minute != sessionsSweptMinute {
            sessionsSweptMinute = appliedClusterTime / minute
            sessions.expire(at: appliedClusterTime)
        }
        let result: Result<[(event: StoreEvent, removed: RemovedNodes)], StoreError>
        if let session, command.method != .expire {
            switch sessions.lookup(client: session.client, request: session.request) {
            case .answered(let answer):
                return (answer.map { [($0, .none)] }, [])
            case .forgotten:
                let cause = "session \(session.client): request \(session.request) is older than the answers kept"
                return (.failure(StoreError(.raftInternal, cause, index: keySpace.currentIndex)), [])
            case .new:
                result = Self.apply(command, to: &keySpace, at: appliedClusterTime)
                sessions.record(client: session.client, request: session.request, result: result.map { $0[0].event }, at: appliedClusterTime)
            }
        } else {
            result = Self.apply(command, to: &keySpace, at: appliedClusterTime)
        }
        if command.method == .expire {
            statistics.expireCount += (try? result.get().count) ?? 0
        } else {
            statistics.count(command, succeeded: (try? result.get()) != nil)
        }
        return (result, (try? result.get()) ?? [])
    }

    /// Applies one logged command: a write (one event), or the expiry of everything due by its cut-off (any number).
    static func apply(_ command: StoreCommand, to keySpace: inout KeySpace, at time: Int64)
        -> Result<[(event: StoreEvent, removed: RemovedNodes)], StoreError>
    {
        guard command.method == .expire else { return keySpace.apply(command.resolvingTTL(at: time), now: time).map { [$0] } }
        return .success(keySpace.expire(upTo: command.expiration))
    }

    /// Applies a committed v3 entry; nil (counted) for a command that cannot be decoded, a no-op on every member.
    mutating func applyV3(_ bytes: [UInt8], entry: Entry, into out: inout [ReplicaAction]) -> Result<MVCCResult, MVCCError>? {
        let command: MVCCCommand
        do { command = try MVCCCommand(decoding: bytes) } catch {
            undecodable(entry, error, into: &out)
            return nil
        }
        return v3.apply(command, at: appliedClusterTime)
    }

    /// A leader gives every lease its full TTL plus an election timeout once it has applied everything before its own
    /// term (its first entry of the term): from then on it may expire leases, never earlier than their holders expect.
    mutating func promoteLeasesIfLeading(entryTerm: UInt64) {
        let term = raft.term.value
        guard raft.role == .leader, entryTerm == term, v3.leasesPromotedTerm != term else { return }
        v3.leasesPromotedTerm = term
        v3.revokesPending = []
        v3.leaseClock.promote(v3.space.leases, now: appliedClusterTime, extraNanos: Int64(options.electionTimeoutMilliseconds) * 1_000_000)
    }
}
