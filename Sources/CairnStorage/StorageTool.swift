// Library side of `cairn storage dump` and `cairn storage verify`: read-only views of a data directory.
// Both take the directory lock first, so they refuse while a live node owns it, and neither repairs anything.

package enum StorageTool {
    /// One problem found by `verify`.
    package struct Damage: Equatable, Sendable, CustomStringConvertible {
        package var path: String
        package var offset: UInt64
        package var index: UInt64?
        package var reason: String
        package var description: String {
            "\(path) at byte \(offset)\(index.map { " (index \($0))" } ?? ""): \(reason)"
        }
    }

    private static func withLock<R>(_ fs: FileSystem, _ directory: String, _ body: () throws -> R) throws -> R {
        let lock = try DataDirectoryLock(fs: fs, directory: directory)
        defer { lock.release() }
        return try body()
    }

    private static func segments(_ fs: FileSystem, _ directory: String) throws -> [(UInt64, String)] {
        try fs.list(directory).compactMap { name in WALFormat.firstIndex(ofSegmentName: name).map { ($0, joinPath(directory, name)) } }
            .sorted { $0.0 < $1.0 }
    }

    /// Readable lines, handed to `emit` one at a time so a large log is never held as text: hard state,
    /// snapshot headers, then one line per entry. `describe(kind, payload)` decodes payloads (the caller
    /// passes the command decoder); returning "" prints the size only. Stops at the first damage (use verify).
    package static func dump(fs: FileSystem, directory: String, options: WALOptions = WALOptions(),
                             describe: (UInt8, [UInt8]) -> String, emit: (String) -> Void) throws {
        try withLock(fs, directory) {
            if let hs = try HardStateFile.load(fs: fs, directory: directory) {
                emit("hard state: term \(hs.term) vote \(hs.vote) commit \(hs.commit)")
            } else {
                emit("hard state: none saved")
            }
            emit("commit recorded: \(try CommitRecords.load(fs: fs, directory: directory))")
            for s in try SnapshotFiles.list(fs: fs, directory: directory) {
                let reader = try SnapshotReader(fs: fs, path: s.path)
                let h = reader.header
                emit("snapshot \(s.path): last index \(h.lastIndex) term \(h.lastTerm) cluster time \(h.clusterTimeNanos)ns membership \(h.membership.count) bytes body \(reader.bodyBytes) bytes")
                reader.close()
            }
            let all = try segments(fs, directory)
            for (i, (first, path)) in all.enumerated() {
                let file = try fs.open(path, create: false)
                defer { fs.close(file) }
                let scan = try WALFormat.scan(fs: fs, file: file, firstIndex: first, isLast: i == all.count - 1,
                                              options: options, keepEntries: true)
                emit("segment \(path): \(scan.decoded.count) entries, data ends at byte \(scan.dataEndOffset)")
                for e in scan.decoded {
                    let text = describe(e.kind, e.payload)
                    emit("  index \(e.index) term \(e.term) kind \(e.kind) time \(e.clusterTimeNanos)ns size \(e.payload.count)\(text.isEmpty ? "" : " " + text)")
                }
                if let torn = scan.tornTail { emit("  torn tail at byte \(torn.offset): \(torn.reason)") }
            }
        }
    }

    /// Every damage found (an empty list means the directory is sound). A torn tail is reported too: it is
    /// what recovery would cut.
    package static func verify(fs: FileSystem, directory: String, options: WALOptions = WALOptions()) throws -> [Damage] {
        try withLock(fs, directory) {
            var damage: [Damage] = []
            func note(_ error: Error, _ path: String) {
                if case let StorageError.corrupt(p, offset, index, reason) = error {
                    damage.append(Damage(path: p, offset: offset, index: index, reason: reason))
                } else {
                    damage.append(Damage(path: path, offset: 0, index: nil, reason: "\(error)"))
                }
            }
            do { _ = try HardStateFile.load(fs: fs, directory: directory) } catch { note(error, joinPath(directory, HardStateFile.name)) }
            for s in try SnapshotFiles.list(fs: fs, directory: directory) {
                do { _ = try SnapshotFiles.verify(fs: fs, path: s.path) } catch { note(error, s.path) }
            }
            let all = try segments(fs, directory)
            var expectedNext: UInt64? = nil
            for (i, (first, path)) in all.enumerated() {
                if let next = expectedNext, next != first {
                    damage.append(Damage(path: path, offset: 0, index: first, reason: "segment starts at \(first), expected \(next)"))
                }
                do {
                    let file = try fs.open(path, create: false)
                    defer { fs.close(file) }
                    let scan = try WALFormat.scan(fs: fs, file: file, firstIndex: first, isLast: i == all.count - 1, options: options)
                    if let torn = scan.tornTail {
                        damage.append(Damage(path: path, offset: torn.offset, index: first + UInt64(scan.entries.count),
                                             reason: "torn tail (recovery would cut it): \(torn.reason)"))
                    }
                    expectedNext = first + UInt64(scan.entries.count)
                } catch {
                    note(error, path)
                    expectedNext = nil
                }
            }
            return damage
        }
    }
}
