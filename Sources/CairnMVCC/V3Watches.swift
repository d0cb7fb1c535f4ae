// v3 watchers as etcd's watchable store keeps them: a watcher starting at an old revision first catches up from
// the key space's history in bounded batches (one answer for the batch), then gets one answer per revision as
// changes are applied. A start below the compacted revision is cancelled with `compact_revision`. Pure: the
// runner calls `applied` after each batch and `catchUp` until it reports nothing left, and renders the deliveries.

package struct V3WatchRequest: Sendable, Equatable {
    package var range: KeyRange
    /// 0: from the next change on.
    package var startRevision: Int64 = 0
    package var noPut = false
    package var noDelete = false
    package var prevKV = false
    package var progressNotify = false

    package init(range: KeyRange) { self.range = range }
}

/// One answer for one watcher: events (possibly none, for a progress notification) or its cancellation.
package struct V3WatchDelivery: Sendable, Equatable {
    package var watchID: Int64
    /// The header revision: the key space's revision when the answer was made.
    package var revision: Int64
    package var events: [Event] = []
    package var canceled = false
    package var compactRevision: Int64 = 0

    package init(watchID: Int64, revision: Int64, events: [Event] = [], canceled: Bool = false, compactRevision: Int64 = 0) {
        self.watchID = watchID
        self.revision = revision
        self.events = events
        self.canceled = canceled
        self.compactRevision = compactRevision
    }
}

package struct V3Watches: Sendable {
    struct Watcher: Sendable {
        var request: V3WatchRequest
        /// The first revision this watcher has not been sent yet.
        var nextRevision: Int64
    }

    /// Revisions replayed for one watcher per catch-up call (etcd's watchBatchMaxRevs).
    package static let catchUpRevisionsMax: Int64 = 1_000
    /// Watchers on one member (each costs a table entry and a match per change of its keys).
    package static let watchersMax = 100_000

    private var watchers: [Int64: Watcher] = [:]
    /// Synced watchers of a single key, by key: a change finds them without looking at any other watcher.
    private var byKey: [ByteKey: Set<Int64>] = [:]
    /// Synced watchers of a range, looked at for every change.
    private var ranged: Set<Int64> = []
    /// Watchers still replaying history.
    package private(set) var unsynced: Set<Int64> = []

    package init() {}

    package var count: Int { watchers.count }

    package enum CreateError: Error, Equatable { case tooManyWatchers, duplicateID }

    /// Registers watcher `id` against `space`. A watcher whose start is already compacted is answered at once with
    /// its cancellation (after the caller's "created" answer, as etcd does) and not kept.
    package mutating func create(_ id: Int64, _ request: V3WatchRequest, in space: MVCCKeySpace) throws(CreateError) -> V3WatchDelivery? {
        guard watchers[id] == nil else { throw .duplicateID }
        guard watchers.count < Self.watchersMax else { throw .tooManyWatchers }
        if request.startRevision > 0 && request.startRevision < space.compactedRevision {
            return V3WatchDelivery(watchID: id, revision: 0, canceled: true, compactRevision: space.compactedRevision)
        }
        let next = request.startRevision > 0 ? request.startRevision : space.revision + 1
        watchers[id] = Watcher(request: request, nextRevision: next)
        if next <= space.revision { unsynced.insert(id) } else { sync(id) }
        return nil
    }

    package mutating func cancel(_ id: Int64) {
        guard let watcher = watchers.removeValue(forKey: id) else { return }
        unsynced.remove(id)
        if watcher.request.range.end == nil {
            let key = ByteKey(watcher.request.range.start)
            byKey[key]?.remove(id)
            if byKey[key]?.isEmpty == true { byKey[key] = nil }
        } else {
            ranged.remove(id)
        }
    }

    private mutating func sync(_ id: Int64) {
        guard let watcher = watchers[id] else { return }
        unsynced.remove(id)
        if watcher.request.range.end == nil {
            byKey[ByteKey(watcher.request.range.start), default: []].insert(id)
        } else {
            ranged.insert(id)
        }
    }

    /// After the key space moved from `previousRevision` to its current revision: one delivery per synced watcher
    /// and changed revision it watches, in revision order.
    package mutating func applied(since previousRevision: Int64, in space: MVCCKeySpace) -> [V3WatchDelivery] {
        guard !watchers.isEmpty, space.revision > previousRevision else { return [] }
        var deliveries: [V3WatchDelivery] = []
        var open: [Int64: Int] = [:]  // watcher -> its delivery for the revision being read
        var revision: Int64 = 0
        // A compaction racing a watcher is impossible here: the changes since the last batch are always kept.
        try? space.events(from: previousRevision + 1, prevKV: true) { at, event in
            if at.main != revision {
                revision = at.main
                open = [:]
            }
            for id in matching(ByteKey(event.kv.key)) {
                // A watcher synced by a catch-up that already covered this revision is not sent it twice.
                guard let watcher = watchers[id], watcher.nextRevision <= at.main, wants(watcher.request, event) else { continue }
                var delivered = event
                if !watcher.request.prevKV { delivered.prevKV = nil }
                if let index = open[id] {
                    deliveries[index].events.append(delivered)
                } else {
                    open[id] = deliveries.count
                    deliveries.append(V3WatchDelivery(watchID: id, revision: at.main, events: [delivered]))
                }
            }
            return true
        }
        return deliveries
    }

    private func matching(_ key: ByteKey) -> [Int64] {
        var ids = Array(byKey[key] ?? [])
        for id in ranged where watchers[id]?.request.range.contains(key) == true { ids.append(id) }
        return ids.sorted()
    }

    private func wants(_ request: V3WatchRequest, _ event: Event) -> Bool {
        switch event.type {
        case .put: !request.noPut
        case .delete: !request.noDelete
        }
    }

    /// One batch of history for each unsynced watcher (at most `catchUpRevisionsMax` revisions each): a delivery
    /// when the batch held matching events. A watcher whose history was compacted meanwhile is cancelled.
    package mutating func catchUp(in space: MVCCKeySpace) -> [V3WatchDelivery] {
        var deliveries: [V3WatchDelivery] = []
        for id in unsynced.sorted() {
            guard var watcher = watchers[id] else { continue }
            let end = min(space.revision, watcher.nextRevision + Self.catchUpRevisionsMax - 1)
            var events: [Event] = []
            do {
                try space.events(from: watcher.nextRevision, prevKV: watcher.request.prevKV) { at, event in
                    guard at.main <= end else { return false }
                    if watcher.request.range.contains(ByteKey(event.kv.key)) && wants(watcher.request, event) { events.append(event) }
                    return true
                }
            } catch {
                cancel(id)
                deliveries.append(V3WatchDelivery(watchID: id, revision: 0, canceled: true, compactRevision: space.compactedRevision))
                continue
            }
            watcher.nextRevision = end + 1
            watchers[id] = watcher
            if !events.isEmpty { deliveries.append(V3WatchDelivery(watchID: id, revision: space.revision, events: events)) }
            if end == space.revision { sync(id) }
        }
        return deliveries
    }

    /// etcd's progress notification: an empty answer at the current revision for each synced watcher that asked.
    package func progress(in space: MVCCKeySpace) -> [V3WatchDelivery] {
        watchers.filter { !unsynced.contains($0.key) && $0.value.request.progressNotify }.keys.sorted()
            .map { V3WatchDelivery(watchID: $0, revision: space.revision) }
    }
}
