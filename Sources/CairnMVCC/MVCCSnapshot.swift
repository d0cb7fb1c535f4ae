// The v3 key space as a snapshot stream: every kept version, the change order watchers replay, the leases and the
// revisions, written piece by piece from an immutable copy and read back with every length and order checked.
import CairnBase

package enum MVCCSnapshotError: Error, Equatable, CustomStringConvertible {
    case version(UInt8)
    case malformed(String)

    package var description: String {
        switch self {
        case .version(let v): "v3 snapshot format \(v) is newer than this member understands"
        case .malformed(let why): "malformed v3 snapshot: \(why)"
        }
    }
}

extension MVCCKeySpace {
    /// 3 adds the auth state at the end, 2 the raised alarms; 1 and 2 are still read.
    static let snapshotFormatVersion: UInt8 = 3
    /// The auth section's bound: far above what the auth store's own bounds let it reach in practice.
    static let authSectionBytesMax = 256 << 20
    /// A key or value longer than this in a snapshot is damage (etcd's own request bound is far below it).
    package static let snapshotFieldBytesMax = 64 << 20
    /// A revision at or past this in a snapshot is damage (a million writes a second would take 146,000 years).
    static let revisionMax: Int64 = 1 << 62

    /// Layout (little-endian): version u8 | revision u64 | compacted revision u64 | lease count u64, then per lease
    /// id u64, ttl u64 | version count u64, then per kept version (in key, revision order) key, value (u32 length
    /// each), create, mod revision, version, lease (u64 each) | change count u64, then per change (in revision order)
    /// main, sub u64 and key | alarm count u64, then each member ID u64 with a NOSPACE alarm raised | auth section length
    /// u64 and the auth state (AuthEncoding.swift). A lease's keys
    /// and each key's newest version are rebuilt from the versions.
    package func writeSnapshot(pieceBytes: Int = 64 * 1024, _ emit: ([UInt8]) throws -> Void) throws {
        var writer = ByteWriter(capacity: pieceBytes + 1024)
        writer.u8(Self.snapshotFormatVersion)
        writer.u64(UInt64(bitPattern: revision))
        writer.u64(UInt64(bitPattern: compactedRevision))
        writer.u64(UInt64(leases.count))
        for lease in leases.all {
            writer.u64(UInt64(bitPattern: lease.id))
            writer.u64(UInt64(bitPattern: lease.ttl))
        }
        func flushIfFull() throws {
            guard writer.bytes.count >= pieceBytes else { return }
            try emit(writer.bytes)
            writer = ByteWriter(capacity: pieceBytes + 1024)
        }
        writer.u64(UInt64(history.count))
        try history.forEach { _, kv in
            writer.lengthPrefixed(kv.key)
            writer.lengthPrefixed(kv.value)
            for number in [kv.createRevision, kv.modRevision, kv.version, kv.lease] { writer.u64(UInt64(bitPattern: number)) }
            try flushIfFull()
            return true
        }
        writer.u64(UInt64(changes.count))
        try changes.forEach { at, key in
            writer.u64(UInt64(bitPattern: at.main))
            writer.u64(UInt64(bitPattern: at.sub))
            writer.lengthPrefixed(key.bytes)
            try flushIfFull()
            return true
        }
        writer.u64(UInt64(noSpaceAlarms.count))
        for member in noSpaceAlarms.sorted() { writer.u64(member) }
        var authSection = ByteWriter()
        auth.encode(into: &authSection)
        writer.u64(UInt64(authSection.bytes.count))
        writer.raw(authSection.bytes)
        try emit(writer.bytes)
    }

    /// Reads what `writeSnapshot` wrote through `read`, which returns exactly the bytes asked for or throws.
    package static func readSnapshot(_ read: (Int) throws -> [UInt8]) throws -> MVCCKeySpace {
        func u64() throws -> Int64 {
            Int64(bitPattern: try read(8).reversed().reduce(0) { $0 << 8 | UInt64($1) })
        }
        func field() throws -> [UInt8] {
            let length = Int(try read(4).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            guard length <= snapshotFieldBytesMax else { throw MVCCSnapshotError.malformed("a field of \(length) bytes") }
            return try read(length)
        }
        func count() throws -> Int64 {
            let n = try u64()
            guard n >= 0 else { throw MVCCSnapshotError.malformed("a count of \(n)") }
            return n
        }
        let version = try read(1)[0]
        guard version >= 1 && version <= snapshotFormatVersion else { throw MVCCSnapshotError.version(version) }
        var space = MVCCKeySpace()
        let revision = try u64(), compacted = try u64()
        // Far below Int64.max, so the next write's + 1 (and a key's version's) never overflows whatever the file says.
        guard revision >= 1, revision < revisionMax, compacted >= 0, compacted <= revision else {
            throw MVCCSnapshotError.malformed("revision \(revision), compacted \(compacted)")
        }
        space.advance(to: revision)
        space.compactedRevision = compacted
        var previousLease: Int64 = 0
        for _ in 0..<(try count()) {
            let id = try u64(), ttl = try u64()
            guard id > previousLease, ttl >= 0, ttl <= LeaseTable.ttlSecondsMax else { throw MVCCSnapshotError.malformed("lease \(id) ttl \(ttl)") }
            previousLease = id
            space.leases.insert(Lease(id: id, ttl: ttl))
        }
        var versions: [(HistoryKey, KeyValue)] = []
        var newest: [(ByteKey, KeyValue)] = []
        var bytes = 0
        for _ in 0..<(try count()) {
            let key = try field(), value = try field()
            let kv = KeyValue(key: key, createRevision: try u64(), modRevision: try u64(), version: try u64(), value: value, lease: try u64())
            let entry = HistoryKey(key: ByteKey(key), revision: kv.modRevision)
            guard kv.modRevision >= 1, kv.modRevision <= revision, kv.createRevision >= 0, kv.createRevision <= kv.modRevision,
                  kv.version >= 0, kv.version <= kv.modRevision, versions.last.map({ $0.0 < entry }) ?? true else {
                throw MVCCSnapshotError.malformed("version of \(ByteKey(key)) at \(kv.modRevision) out of order")
            }
            if let last = newest.last, last.0 == entry.key { newest.removeLast() }
            newest.append((entry.key, kv))
            versions.append((entry, kv))
            bytes += kv.accountedBytes
        }
        var changed: [(Revision, ByteKey)] = []
        for _ in 0..<(try count()) {
            let at = Revision(main: try u64(), sub: try u64())
            let key = ByteKey(try field())
            guard at.main <= revision, changed.last.map({ $0.0 < at }) ?? true else {
                throw MVCCSnapshotError.malformed("change at \(at.main).\(at.sub) out of order")
            }
            changed.append((at, key))
        }
        if version >= 2 {
            for _ in 0..<(try count()) { space.noSpaceAlarms.insert(UInt64(bitPattern: try u64())) }
        }
        if version >= 3 {
            let length = try count()
            guard length <= authSectionBytesMax else { throw MVCCSnapshotError.malformed("an auth section of \(length) bytes") }
            var reader = ByteReader(try read(Int(length)))
            space.auth = try AuthStore.decode(&reader)
            guard reader.isAtEnd else { throw MVCCSnapshotError.malformed("bytes after the auth section") }
        }
        space.history = PersistentSortedMap(sorted: versions)
        space.latest = PersistentSortedMap(sorted: newest)
        space.changes = PersistentSortedMap(sorted: changed)
        space.historyBytes = bytes
        for (key, kv) in newest where !kv.isTombstone && kv.lease != 0 { space.leases.attach(key, to: kv.lease) }
        return space
    }
}
