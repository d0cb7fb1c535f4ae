// etcd's v3 key space as a deterministic state machine: every change gets a revision, every version of a key is
// kept until compacted, and a read at any kept revision sees exactly what etcd would. Immutable maps underneath,
// so a copy of the key space is a point-in-time view that readers on other threads use while writes go on.
//
// Three maps, all persistent:
// - `latest`: each key's newest version (a tombstone once deleted), for reads at the current revision;
// - `history`: every version by (key, revision), for reads at older revisions and a watcher's previous value;
// - `changes`: which key changed at each (revision, sub), for watchers that replay from a revision.
// Compaction at C drops every version a read at C or later cannot see, and the changes before C.

package struct MVCCKeySpace: Sendable {
    package struct HistoryKey: Comparable, Sendable {
        var key: ByteKey
        var revision: Int64

        package static func < (a: HistoryKey, b: HistoryKey) -> Bool {
            a.key == b.key ? a.revision < b.revision : a.key < b.key
        }
    }

    /// The revision of the last change (etcd's header revision); 1 in a new key space, as in etcd.
    package private(set) var revision: Int64 = 1
    /// Reads and watches before this revision are refused.
    package internal(set) var compactedRevision: Int64 = 0
    /// Key and value bytes of every kept version, for `--quota-backend-bytes`.
    package internal(set) var historyBytes = 0
    var latest = PersistentSortedMap<ByteKey, KeyValue>()
    var history = PersistentSortedMap<HistoryKey, KeyValue>()
    var changes = PersistentSortedMap<Revision, ByteKey>()
    package internal(set) var leases = LeaseTable()
    /// Members whose NOSPACE alarm is raised (etcd's alarm store, NOSPACE only).
    package internal(set) var noSpaceAlarms: Set<UInt64> = []
    /// Users, roles, permissions and tokens (etcd keeps them in the same backend as the keys).
    package internal(set) var auth = AuthStore()

    package init() {}

    // MARK: - Reads

    /// etcd's Range: the keys of `request.range` as of `request.revision` (0: now), filtered, sorted and limited;
    /// `count` is every key in the range at that revision, before the revision filters and the limit.
    package func range(_ request: RangeRequest) throws(MVCCError) -> RangeResponse {
        let at = request.revision <= 0 ? revision : request.revision
        if at > revision { throw .futureRevision }
        if at < compactedRevision { throw .compacted }
        // etcd sorts ascending when a target other than the key comes without an order; keys arrive in key order.
        let order = request.sortOrder == .none && request.sortTarget != .key ? .ascend : request.sortOrder
        let sorted = order != .none && !(request.sortTarget == .key && order == .ascend)
        let filtered = request.minModRevision != 0 || request.maxModRevision != 0 || request.minCreateRevision != 0
            || request.maxCreateRevision != 0
        // Without sorting or filtering, one more than the limit tells whether there are more.
        // A limit near Int64.max (a client may send one) must not overflow the + 1.
        let collectMax = (sorted || filtered || request.limit <= 0 || request.limit >= Int64(Int.max)) ? Int.max : Int(request.limit) + 1
        var kvs: [KeyValue] = []
        var count: Int64 = 0
        visit(request.range, at: at) { kv in
            count += 1
            if !request.countOnly && kvs.count < collectMax { kvs.append(kv) }
        }
        var response = RangeResponse(count: count, revision: revision)
        if request.countOnly { return response }
        if filtered {
            kvs.removeAll { kv in
                (request.minModRevision != 0 && kv.modRevision < request.minModRevision)
                    || (request.maxModRevision != 0 && kv.modRevision > request.maxModRevision)
                    || (request.minCreateRevision != 0 && kv.createRevision < request.minCreateRevision)
                    || (request.maxCreateRevision != 0 && kv.createRevision > request.maxCreateRevision)
            }
        }
        if sorted { Self.sort(&kvs, request.sortTarget, descending: order == .descend) }
        if request.limit > 0 && kvs.count > Int(request.limit) {
            kvs.removeLast(kvs.count - Int(request.limit))
            response.more = true
        }
        if request.keysOnly {
            for i in kvs.indices { kvs[i].value = [] }
        }
        response.kvs = kvs
        return response
    }

    /// Calls `body` with each live key of `range` as of revision `at`, in key order.
    func visit(_ range: KeyRange, at: Int64, _ body: (KeyValue) -> Void) {
        let start = ByteKey(range.start)
        if at == revision {
            latest.forEach(from: start) { key, kv in
                guard range.continues(past: key) else { return false }
                if !kv.isTombstone { body(kv) }
                return range.end != nil
            }
            return
        }
        var pending: KeyValue?
        history.forEach(from: HistoryKey(key: start, revision: 0)) { entry, kv in
            if let last = pending, last.key != entry.key.bytes {
                if !last.isTombstone { body(last) }
                pending = nil
            }
            guard range.continues(past: entry.key) else { return false }
            if entry.revision <= at { pending = kv }
            return true
        }
        if let last = pending, !last.isTombstone { body(last) }
    }

    /// The version of `key` a read at revision `at` sees (nil when missing or deleted).
    package func get(_ key: [UInt8], at: Int64? = nil) -> KeyValue? {
        let at = at ?? revision
        if at == revision { return latest[ByteKey(key)].flatMap { $0.isTombstone ? nil : $0 } }
        var found: KeyValue?
        history.forEachReversed(before: HistoryKey(key: ByteKey(key), revision: at + 1)) { entry, kv in
            if entry.key.bytes == key { found = kv }
            return false
        }
        return found.flatMap { $0.isTombstone ? nil : $0 }
    }

    private static func sort(_ kvs: inout [KeyValue], _ target: RangeRequest.SortTarget, descending: Bool) {
        func less(_ a: KeyValue, _ b: KeyValue) -> Bool {
            switch target {
            case .key: ByteKey(a.key) < ByteKey(b.key)
            case .version: a.version < b.version
            case .create: a.createRevision < b.createRevision
            case .mod: a.modRevision < b.modRevision
            case .value: ByteKey(a.value) < ByteKey(b.value)
            }
        }
        // Stable, as Go's sort.Sort is not but etcd's inputs arrive in key order: ties stay in key order.
        let indexed = kvs.enumerated().map { ($0.offset, $0.element) }
        kvs = indexed.sorted { x, y in
            if less(x.1, y.1) { return !descending }
            if less(y.1, x.1) { return descending }
            return x.0 < y.0
        }.map(\.1)
    }

    // MARK: - Changes (used by a write transaction; see MVCCWrite)

    /// Records `kv` as the newest version of its key at revision (`kv.modRevision`, `sub`).
    mutating func record(_ kv: KeyValue, sub: Int64) {
        let key = ByteKey(kv.key)
        latest.set(key, kv)
        history.set(HistoryKey(key: key, revision: kv.modRevision), kv)
        changes.set(Revision(main: kv.modRevision, sub: sub), key)
        historyBytes += kv.accountedBytes
    }

    mutating func advance(to newRevision: Int64) { revision = newRevision }

    // MARK: - Watch feed

    /// The changes from revision `from` on (every one of them, in revision order), with each change's previous
    /// version when `prevKV` is asked for, until `body` returns false. Refused below the compacted revision.
    package func events(from: Int64, prevKV: Bool = false, _ body: (Revision, Event) -> Bool) throws(MVCCError) {
        if from < compactedRevision { throw .compacted }
        changes.forEach(from: Revision(main: max(from, 1))) { at, key in
            guard let kv = history[HistoryKey(key: key, revision: at.main)] else { return true }
            let previous = prevKV ? get(key.bytes, at: at.main - 1) : nil
            return body(at, Event(type: kv.isTombstone ? .delete : .put, kv: kv, prevKV: previous))
        }
    }

    // MARK: - Compaction

    /// etcd's Compact: keeps, for every key, the versions at or after `target` and the newest one before it unless
    /// that one is a deletion; forgets the changes before `target`. Linear in the kept history: each map is rebuilt.
    package mutating func compact(_ target: Int64) throws(MVCCError) {
        if target <= compactedRevision { throw .compacted }
        if target > revision { throw .futureRevision }
        var kept: [(HistoryKey, KeyValue)] = []
        kept.reserveCapacity(history.count)
        var bytes = 0
        var before: (HistoryKey, KeyValue)?
        func flushBefore() {
            if let entry = before, !entry.1.isTombstone {
                kept.append(entry)
                bytes += entry.1.accountedBytes
            }
            before = nil
        }
        history.forEach { entry, kv in
            if let last = before, last.0.key != entry.key { flushBefore() }
            if entry.revision < target {
                before = (entry, kv)
            } else {
                // The newest version before the target is needed only when none is at the target itself.
                if let last = before, last.0.key == entry.key {
                    if entry.revision > target { flushBefore() } else { before = nil }
                }
                kept.append((entry, kv))
                bytes += kv.accountedBytes
            }
            return true
        }
        flushBefore()
        history = PersistentSortedMap(sorted: kept)
        historyBytes = bytes
        var live: [(ByteKey, KeyValue)] = []
        latest.forEach { key, kv in
            if !kv.isTombstone || kv.modRevision >= target { live.append((key, kv)) }
            return true
        }
        latest = PersistentSortedMap(sorted: live)
        var recent: [(Revision, ByteKey)] = []
        changes.forEach(from: Revision(main: target)) { at, key in
            recent.append((at, key))
            return true
        }
        changes = PersistentSortedMap(sorted: recent)
        compactedRevision = target
    }
}
