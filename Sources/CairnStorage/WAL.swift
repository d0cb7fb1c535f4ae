// The segmented write-ahead log of Raft entries: on-disk format, append, read, suffix truncation, prefix
// compaction and recovery. This file owns the format; the prose below is its specification.
//
// FORMAT
// A log is the files `wal-<first index, 20 digits>.log` in one directory, in name order.
// Each segment starts with a 24-byte header: magic "CAIRNWAL", version u32 (1), first index u64, CRC32C u32
// of the previous 20 bytes. Records follow back to back, each framed as
//     length u32 (payload bytes) | type u8 (1 = entry) | CRC32C u32 over length, type and payload | payload
// and an entry payload is index u64 | term u64 | kind u8 | cluster time (ns) u64 | data. Integers are
// little-endian. Indexes run consecutively through a segment and on into the next one, whose name must be
// the previous segment's last index + 1.
// The newest segment is the open one: it is created under a temporary name with its header, preallocated to
// `segmentBytesMax` with zeros, fsynced, renamed and its directory fsynced, so a segment name never points
// at a half-made file. Appends are pwrites at the end of the data, followed by one fdatasync per batch.
// When the next record would pass `segmentBytesMax` the segment is closed: truncated to the end of its data
// and fsynced. A closed segment is never appended to again; only suffix truncation may shorten it.
// At every start the recovered open segment is closed the same way and a fresh one is made, so the "open
// segment may hold a torn tail" case is confined to the last file.
//
// CRASH CASES
// - Torn final record in the last segment (crash mid-write; never acknowledged, since acknowledgment follows
//   the sync): recovery finds a record whose length runs past the file, whose CRC fails, or non-zero bytes
//   after the data. If no well-formed record (plausible length, type 1, good CRC) starts anywhere after that
//   point, the damage is the torn tail: it is cut off, the cut is logged, and the file is fsynced.
// - Zeros after the last record of the last segment: the unused preallocated space; the clean end.
// - A bad record with a well-formed record somewhere after it in the last segment: acknowledged data may
//   follow the damage, so recovery refuses (StorageError.corrupt with file, offset, index). This also
//   refuses the rare crash where the disk kept later sectors of the last batch but not earlier ones: a
//   false refusal is repairable by an operator with `cairn storage verify`; a silent cut is not.
// - Any damage in a closed (not last) segment — bad CRC, short record, zeros, a truncated file — refuses.
// - A record with a good CRC but the wrong index (a gap or repeat), in any segment or between segments:
//   refuses; the checksum says the disk returned what was written, so the writer or an operator erred.
// - Leftover `*.tmp` segment files (crash while creating a segment): never named, never acknowledged;
//   removed and logged.
// - Suffix truncation removes segments newest first, fsyncing the directory after each, then truncates
//   the segment holding the cut; a crash part-way leaves a prefix of the old log, which is the state before
//   the truncation began (no entry after the cut was acknowledged yet).
// - Prefix compaction removes whole closed segments oldest first; a crash part-way leaves a suffix that
//   still covers everything after the snapshot.

import CairnBase
import Glibc

package struct LogEntryRecord: Equatable, Sendable {
    package var index: UInt64
    package var term: UInt64
    package var kind: UInt8
    package var clusterTimeNanos: UInt64
    package var payload: [UInt8]

    package init(index: UInt64, term: UInt64, kind: UInt8, clusterTimeNanos: UInt64, payload: [UInt8]) {
        self.index = index
        self.term = term
        self.kind = kind
        self.clusterTimeNanos = clusterTimeNanos
        self.payload = payload
    }
}

package struct WALOptions: Sendable {
    /// A segment is closed when the next record would make it longer than this.
    package var segmentBytesMax: UInt64 = 64 << 20
    /// Larger records are refused on append and treated as damage on read.
    package var recordBytesMax: Int = 16 << 20

    package init(segmentBytesMax: UInt64 = 64 << 20, recordBytesMax: Int = 16 << 20) {
        self.segmentBytesMax = segmentBytesMax
        self.recordBytesMax = recordBytesMax
    }
}

enum WALFormat {
    static let magic: [UInt8] = Array("CAIRNWAL".utf8)
    static let version: UInt32 = 1
    static let segmentHeaderBytes = 24
    static let recordHeaderBytes = 9
    static let entryFixedBytes = 25
    static let typeEntry: UInt8 = 1

    static func segmentName(_ firstIndex: UInt64) -> String { "wal-" + paddedDecimal(firstIndex) + ".log" }

    static func firstIndex(ofSegmentName name: String) -> UInt64? {
        guard name.hasPrefix("wal-"), name.hasSuffix(".log"), name.count == 28 else { return nil }
        return UInt64(name.dropFirst(4).dropLast(4))
    }

    static func segmentHeader(_ firstIndex: UInt64) -> [UInt8] {
        var bytes = magic
        bytes.appendLE(version)
        bytes.appendLE(firstIndex)
        bytes.appendLE(CRC32C.checksum(bytes))
        return bytes
    }

    static func encode(_ entry: LogEntryRecord, into out: inout [UInt8]) {
        let start = out.count
        out.appendLE(UInt32(entryFixedBytes + entry.payload.count))
        out.append(typeEntry)
        out.appendLE(UInt32(0))  // CRC placeholder, filled below
        out.appendLE(entry.index)
        out.appendLE(entry.term)
        out.append(entry.kind)
        out.appendLE(entry.clusterTimeNanos)
        out.append(contentsOf: entry.payload)
        var crc = CRC32C()
        out.withUnsafeBytes { raw in
            crc.update(UnsafeRawBufferPointer(rebasing: raw[start..<start + 5]))
            crc.update(UnsafeRawBufferPointer(rebasing: raw[(start + recordHeaderBytes)...]))
        }
        let v = crc.value
        for i in 0..<4 { out[start + 5 + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }

    /// Checks the frame at `offset` in `bytes`; returns the record's total length, or why it is not one.
    static func checkFrame(_ bytes: [UInt8], at offset: Int, recordBytesMax: Int) -> Result<Int, FrameProblem> {
        guard bytes.count - offset >= recordHeaderBytes else { return .failure(.short) }
        let length = Int(bytes.readLE(UInt32.self, at: offset))
        let type = bytes[offset + 4]
        if length == 0 && type == 0 && bytes.readLE(UInt32.self, at: offset + 5) == 0 { return .failure(.zeros) }
        guard type == typeEntry, length >= entryFixedBytes, length <= recordBytesMax else { return .failure(.badHeader) }
        guard bytes.count - offset - recordHeaderBytes >= length else { return .failure(.short) }
        var crc = CRC32C()
        bytes.withUnsafeBytes { raw in
            crc.update(UnsafeRawBufferPointer(rebasing: raw[offset..<offset + 5]))
            crc.update(UnsafeRawBufferPointer(rebasing: raw[offset + recordHeaderBytes..<offset + recordHeaderBytes + length]))
        }
        guard crc.value == bytes.readLE(UInt32.self, at: offset + 5) else { return .failure(.badChecksum) }
        return .success(recordHeaderBytes + length)
    }

    /// Decodes a record already checked by `checkFrame`.
    static func decode(_ bytes: [UInt8], at offset: Int, totalBytes: Int) -> LogEntryRecord {
        let p = offset + recordHeaderBytes
        return LogEntryRecord(
            index: bytes.readLE(UInt64.self, at: p), term: bytes.readLE(UInt64.self, at: p + 8), kind: bytes[p + 16],
            clusterTimeNanos: bytes.readLE(UInt64.self, at: p + 17),
            payload: Array(bytes[p + entryFixedBytes..<offset + totalBytes]))
    }

    enum FrameProblem: String, Error {
        case short = "record runs past the end of the file"
        case zeros = "zero bytes where a record should be"
        case badHeader = "record header is not valid"
        case badChecksum = "record checksum mismatch"
    }
}

/// What a segment scan found; shared by recovery and `cairn storage verify`.
struct SegmentScan {
    var entries: [(offset: UInt64, index: UInt64, term: UInt64, kind: UInt8)] = []
    var dataEndOffset: UInt64 = 0
    /// Set when the last segment ended in a torn record that may be cut: (offset, reason).
    var tornTail: (offset: UInt64, reason: String)? = nil
    var decoded: [LogEntryRecord] = []
}

extension WALFormat {
    /// Scans a whole segment. `isLast` allows a torn tail; everything else that is wrong throws `.corrupt`.
    static func scan(fs: FileSystem, file: OpenFile, firstIndex: UInt64, isLast: Bool, options: WALOptions,
                     keepEntries: Bool = false) throws -> SegmentScan {
        let size = Int(try fs.size(file))
        guard size >= segmentHeaderBytes else {
            throw StorageError.corrupt(path: file.path, offset: 0, index: firstIndex, reason: "segment shorter than its header (\(size) bytes)")
        }
        let bytes = try fs.read(file, at: 0, count: size)
        let header = Array(bytes[0..<segmentHeaderBytes])
        guard header == segmentHeader(firstIndex) else {
            throw StorageError.corrupt(path: file.path, offset: 0, index: firstIndex, reason: "segment header is damaged or names another first index")
        }
        var result = SegmentScan()
        var offset = segmentHeaderBytes
        var expected = firstIndex
        while offset < size {
            switch checkFrame(bytes, at: offset, recordBytesMax: options.recordBytesMax) {
            case .success(let total):
                // Only the fixed fields: recovery keeps where each entry is, not its payload.
                let p = offset + recordHeaderBytes
                let index = bytes.readLE(UInt64.self, at: p)
                guard index == expected else {
                    throw StorageError.corrupt(path: file.path, offset: UInt64(offset), index: index,
                        reason: "index \(index) where \(expected) was expected (\(index < expected ? "repeat" : "gap"))")
                }
                result.entries.append((UInt64(offset), index, bytes.readLE(UInt64.self, at: p + 8), bytes[p + 16]))
                if keepEntries { result.decoded.append(decode(bytes, at: offset, totalBytes: total)) }
                expected += 1
                offset += total
            case .failure(let problem):
                guard isLast else {
                    throw StorageError.corrupt(path: file.path, offset: UInt64(offset), index: expected, reason: problem.rawValue)
                }
                if let later = firstWellFormedFrame(bytes, after: offset, options: options) {
                    throw StorageError.corrupt(path: file.path, offset: UInt64(offset), index: expected,
                        reason: "\(problem.rawValue), and a valid record follows at byte \(later)")
                }
                result.dataEndOffset = UInt64(offset)
                if !allZero(bytes, from: offset) {
                    result.tornTail = (UInt64(offset), problem.rawValue)
                }
                return result
            }
        }
        result.dataEndOffset = UInt64(offset)
        return result
    }

    /// Recovery runs this over the whole preallocated tail of the last segment, so candidates are found with memchr
    /// (a record's type byte) rather than byte by byte.
    private static func firstWellFormedFrame(_ bytes: [UInt8], after offset: Int, options: WALOptions) -> Int? {
        var p = offset + 1
        while p + recordHeaderBytes + entryFixedBytes <= bytes.count {
            let searched = bytes.count - recordHeaderBytes - entryFixedBytes - p + 1
            guard let typeAt = bytes.withUnsafeBytes({ raw -> Int? in
                memchr(raw.baseAddress! + p + 4, Int32(typeEntry), searched).map { UnsafeRawPointer($0) - (raw.baseAddress! + 4) }
            }) else { return nil }
            p = typeAt
            if case .success = checkFrame(bytes, at: p, recordBytesMax: options.recordBytesMax) { return p }
            p += 1
        }
        return nil
    }

    /// True when every byte from `offset` on is zero (memcmp of the range against itself shifted by one byte).
    private static func allZero(_ bytes: [UInt8], from offset: Int) -> Bool {
        guard offset < bytes.count else { return true }
        return bytes.withUnsafeBytes { raw in
            raw[offset] == 0 && memcmp(raw.baseAddress! + offset, raw.baseAddress! + offset + 1, raw.count - offset - 1) == 0
        }
    }
}

/// The log. Not thread-safe: one owner (the group-commit writer) serializes every call.
package final class WAL {
    private struct Segment {
        var firstIndex: UInt64
        var file: OpenFile
        var offsets: [UInt64] = []
        var terms: [UInt64] = []
        /// Each entry's kind byte, so the few entries of one kind are found without reading the log.
        var kinds: [UInt8] = []
        var endOffset: UInt64
        /// Bytes known to be on disk: as of the last successful sync (or recovery) of this segment.
        var durableEnd: UInt64
        var lastIndex: UInt64 { firstIndex + UInt64(offsets.count) - 1 }  // firstIndex - 1 when empty
    }

    private let fs: FileSystem
    private let directory: String
    private let options: WALOptions
    private let logger: @Sendable (String) -> Void
    private var segments: [Segment] = []  // the last one is open
    private var unsynced = false
    /// A record write failed part-way: bytes of entries the caller was told failed may sit past the data end,
    /// so the group-commit writer must stop rather than let a later, different batch land beside them.
    package private(set) var recordWriteFailed = false
    /// Where a log reopened with no segment left on disk starts (a reset or suffix truncation that failed part-way).
    private var nextIndexWhenEmpty: UInt64 = 1
    /// Where the log continues while it has no segment: only after a `reset` failed part-way (or `close`).
    private var nextIndexWithoutSegments: UInt64 = 1

    /// First index still in the log; `lastIndex + 1` when the log holds no entries.
    package var firstIndex: UInt64 {
        segments.first(where: { !$0.offsets.isEmpty })?.firstIndex ?? segments.last?.firstIndex ?? nextIndexWithoutSegments
    }
    package var lastIndex: UInt64 { segments.last?.lastIndex ?? nextIndexWithoutSegments - 1 }

    /// Writing needs an open segment; a failed `reset` can leave none, and then every write fails.
    private func requireOpenSegment() throws {
        guard segments.isEmpty else { return }
        throw StorageError.failed(underlying: "the log has no open segment after a failed reset")
    }

    private init(fs: FileSystem, directory: String, options: WALOptions, logger: @escaping @Sendable (String) -> Void) {
        self.fs = fs
        self.directory = directory
        self.options = options
        self.logger = logger
    }

    /// Recovers the log in `directory` (creating an empty one whose first index is `initialIndex`).
    /// Throws `StorageError.corrupt` naming file, offset and index for anything but a torn tail.
    package static func open(fs: FileSystem, directory: String, options: WALOptions = WALOptions(), initialIndex: UInt64 = 1,
                             logger: @escaping @Sendable (String) -> Void) throws -> WAL {
        let wal = WAL(fs: fs, directory: directory, options: options, logger: logger)
        try wal.recover(initialIndex: initialIndex)
        return wal
    }

    package func close() {
        nextIndexWithoutSegments = lastIndex + 1
        for s in segments { fs.close(s.file) }
        segments = []
    }

    private func recover(initialIndex: UInt64) throws {
        nextIndexWhenEmpty = initialIndex
        var names: [(UInt64, String)] = []
        for name in try fs.list(directory) {
            if name.hasPrefix("wal-") && name.hasSuffix(".tmp") {
                logger("storage: removing unfinished segment \(joinPath(directory, name)) left by a crash")
                try fs.remove(joinPath(directory, name))
            } else if let first = WALFormat.firstIndex(ofSegmentName: name) {
                names.append((first, name))
            }
        }
        names.sort { $0.0 < $1.0 }
        do {
            for (i, (first, name)) in names.enumerated() {
                let path = joinPath(directory, name)
                guard first >= 1 else { throw StorageError.corrupt(path: path, offset: 0, index: 0, reason: "segment named index 0") }
                if let previous = segments.last, previous.lastIndex + 1 != first {
                    throw StorageError.corrupt(path: path, offset: 0, index: first,
                        reason: "segment starts at \(first) but the previous one ends at \(previous.lastIndex)")
                }
                let file = try fs.open(path, create: false)
                let scan: SegmentScan
                do {
                    scan = try WALFormat.scan(fs: fs, file: file, firstIndex: first, isLast: i == names.count - 1, options: options)
                } catch {
                    fs.close(file)
                    throw error
                }
                if let torn = scan.tornTail {
                    logger("storage: cut torn tail of \(path) at byte \(torn.offset) after index \(first + UInt64(scan.entries.count) - 1): \(torn.reason)")
                }
                segments.append(Segment(firstIndex: first, file: file, offsets: scan.entries.map(\.offset), terms: scan.entries.map(\.term),
                                        kinds: scan.entries.map(\.kind), endOffset: scan.dataEndOffset, durableEnd: scan.dataEndOffset))
            }
        } catch {
            close()
            throw error
        }
        if segments.isEmpty {
            try startSegment(at: initialIndex)
            return
        }
        // Never append after a recovered tail: close it (cutting any torn bytes) and start a fresh segment.
        let next = lastIndex + 1
        try closeOpenSegment()
        if segments[segments.count - 1].offsets.isEmpty {
            let empty = segments.removeLast()
            fs.close(empty.file)  // the new segment's rename replaces this empty file
        }
        try startSegment(at: next)
    }

    /// Truncates the open segment to its data and syncs it; it is never appended to again.
    private func closeOpenSegment() throws {
        let s = segments[segments.count - 1]
        try fs.truncate(s.file, to: s.endOffset)
        try fs.syncWithMetadata(s.file)
        segments[segments.count - 1].durableEnd = s.endOffset
        unsynced = false
    }

    private func startSegment(at firstIndex: UInt64) throws {
        let finalPath = joinPath(directory, WALFormat.segmentName(firstIndex))
        let tmpPath = finalPath + ".tmp"
        let tmp = try fs.open(tmpPath, create: true)
        do {
            try fs.truncate(tmp, to: 0)
            try fs.write(tmp, at: 0, WALFormat.segmentHeader(firstIndex))
            try fs.preallocate(tmp, bytes: options.segmentBytesMax)
            try fs.sync(tmp)
            try fs.rename(tmpPath, to: finalPath)
            try fs.syncDirectory(directory)
        } catch {
            fs.close(tmp)
            try? fs.remove(tmpPath)
            throw error
        }
        segments.append(Segment(firstIndex: firstIndex, file: OpenFile(id: tmp.id, path: finalPath),
                                endOffset: UInt64(WALFormat.segmentHeaderBytes), durableEnd: UInt64(WALFormat.segmentHeaderBytes)))
    }

    /// Writes entries (which must continue the log) without syncing; `sync()` makes them durable.
    /// Entries are in memory only once their bytes are written; see `recordWriteFailed` for a failed write.
    package func append(_ entries: [LogEntryRecord]) throws {
        try requireOpenSegment()
        var next = lastIndex + 1
        for e in entries {
            guard e.index == next else { throw StorageError.badIndex(expected: next, got: e.index) }
            guard WALFormat.entryFixedBytes + e.payload.count <= options.recordBytesMax else {
                throw StorageError.corrupt(path: directory, offset: 0, index: e.index, reason: "entry larger than recordBytesMax")
            }
            next += 1
        }
        var buffer: [UInt8] = []
        var pendingOffsets: [UInt64] = []
        var pendingTerms: [UInt64] = []
        var pendingKinds: [UInt8] = []
        func flush() throws {
            guard !buffer.isEmpty else { return }
            let s = segments.count - 1
            do {
                try fs.write(segments[s].file, at: segments[s].endOffset, buffer)
            } catch {
                recordWriteFailed = true
                throw error
            }
            segments[s].endOffset += UInt64(buffer.count)
            segments[s].offsets += pendingOffsets
            segments[s].terms += pendingTerms
            segments[s].kinds += pendingKinds
            buffer = []
            pendingOffsets = []
            pendingTerms = []
            pendingKinds = []
            unsynced = true
        }
        for e in entries {
            let recordBytes = UInt64(WALFormat.recordHeaderBytes + WALFormat.entryFixedBytes + e.payload.count)
            let s = segments[segments.count - 1]
            let end = s.endOffset + UInt64(buffer.count)
            if end + recordBytes > options.segmentBytesMax && !(s.offsets.isEmpty && buffer.isEmpty) {
                try flush()
                try closeOpenSegment()
                try startSegment(at: lastIndex + 1)
            }
            pendingOffsets.append(segments[segments.count - 1].endOffset + UInt64(buffer.count))
            pendingTerms.append(e.term)
            pendingKinds.append(e.kind)
            WALFormat.encode(e, into: &buffer)
        }
        try flush()
    }

    /// One fdatasync covering every append since the last one.
    package func sync() throws {
        guard unsynced else { return }
        try requireOpenSegment()
        try fs.sync(segments[segments.count - 1].file)
        segments[segments.count - 1].durableEnd = segments[segments.count - 1].endOffset
        unsynced = false
    }

    /// The log as it is durable on disk, for going on after a failed write or sync (a full disk, an I/O error, no
    /// descriptor left). After such a failure the bytes written since a segment's last successful sync are in an
    /// unknown state: a failed fsync may have dropped the dirty pages while reads still return them from memory. So
    /// they are not trusted, not re-synced: each segment is cut back to its last durable byte and the cut is made
    /// durable, then this log is closed and the directory recovered exactly as at start (which also starts a fresh,
    /// preallocated segment: a write and an fsync that must succeed). Entries acknowledged were synced, so none is
    /// lost; nothing written after them survives, so nothing is reordered. Throws (and may be called again) while the
    /// disk still fails; this log must not be used after the call.
    package func reopenedAtDurableEnd() throws -> WAL {
        // The open segment is cut too: a record write that failed part-way left bytes past its data end.
        let openFirst = segments.last?.firstIndex
        for s in segments where s.endOffset != s.durableEnd || s.firstIndex == openFirst {
            try fs.truncate(s.file, to: s.durableEnd)
            try fs.syncWithMetadata(s.file)
        }
        close()
        return try WAL.open(fs: fs, directory: directory, options: options, initialIndex: nextIndexWhenEmpty, logger: logger)
    }

    private func segmentPosition(of index: UInt64) -> Int? {
        guard index >= firstIndex && index <= lastIndex else { return nil }
        var lo = 0, hi = segments.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if segments[mid].firstIndex <= index { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    package func term(at index: UInt64) -> UInt64? {
        guard let p = segmentPosition(of: index) else { return nil }
        return segments[p].terms[Int(index - segments[p].firstIndex)]
    }

    /// The terms of the entries from `index` (at least `firstIndex`) to the last, in index order.
    package func terms(from index: UInt64) -> [UInt64] {
        var result: [UInt64] = []
        var next = max(index, firstIndex)
        while let p = segmentPosition(of: next) {
            result += segments[p].terms[Int(next - segments[p].firstIndex)...]
            next = segments[p].lastIndex + 1
        }
        return result
    }

    /// The indexes from `index` on of the entries whose kind byte is `kind`, from memory (no read).
    package func indexes(ofKind kind: UInt8, from index: UInt64) -> [UInt64] {
        var result: [UInt64] = []
        for s in segments where s.lastIndex >= index && !s.kinds.isEmpty {
            let from = Int(max(index, s.firstIndex) - s.firstIndex)
            for i in from..<s.kinds.count where s.kinds[i] == kind { result.append(s.firstIndex + UInt64(i)) }
        }
        return result
    }

    /// Entries `range` (half-open), read from disk and checked again (length, CRC, index) after the read; with
    /// `bytesMax`, only as many from the start of `range` as fit in that many bytes of records (at least one), so a
    /// caller can walk a long range in large sequential reads of bounded size.
    package func entries(_ range: Range<UInt64>, bytesMax: Int = .max) throws -> [LogEntryRecord] {
        guard !range.isEmpty else { return [] }
        guard range.lowerBound >= firstIndex && range.upperBound - 1 <= lastIndex else {
            throw StorageError.outOfRange(index: range.lowerBound < firstIndex ? range.lowerBound : range.upperBound - 1,
                                          first: firstIndex, last: lastIndex)
        }
        var result: [LogEntryRecord] = []
        var bytesLeft = bytesMax
        var index = range.lowerBound
        while index < range.upperBound {
            let s = segments[segmentPosition(of: index)!]
            let from = Int(index - s.firstIndex)
            var to = min(Int(range.upperBound - s.firstIndex), s.offsets.count)
            if bytesLeft < Int.max {
                to = Self.recordsEnd(s, from: from, to: to, bytesMax: bytesLeft, atLeastOne: result.isEmpty)
                if to == from { break }
            }
            let start = s.offsets[from]
            let end = to < s.offsets.count ? s.offsets[to] : s.endOffset
            bytesLeft -= Int(end - start)
            let bytes = try fs.read(s.file, at: start, count: Int(end - start))
            var offset = 0
            for i in from..<to {
                switch WALFormat.checkFrame(bytes, at: offset, recordBytesMax: options.recordBytesMax) {
                case .success(let total):
                    let e = WALFormat.decode(bytes, at: offset, totalBytes: total)
                    guard e.index == s.firstIndex + UInt64(i) else {
                        throw StorageError.corrupt(path: s.file.path, offset: start + UInt64(offset), index: s.firstIndex + UInt64(i), reason: "index \(e.index) read back")
                    }
                    result.append(e)
                    offset += total
                case .failure(let problem):
                    throw StorageError.corrupt(path: s.file.path, offset: start + UInt64(offset), index: s.firstIndex + UInt64(i), reason: problem.rawValue)
                }
            }
            index = s.firstIndex + UInt64(to)
        }
        return result
    }

    /// The end (a position in `s`, at most `to`) of the records from position `from` that fit in `bytesMax` bytes,
    /// found by a binary search over the record offsets; `atLeastOne` takes the first record even when it does not fit.
    private static func recordsEnd(_ s: Segment, from: Int, to: Int, bytesMax: Int, atLeastOne: Bool) -> Int {
        let limit = s.offsets[from] + UInt64(max(0, bytesMax))
        func end(_ position: Int) -> UInt64 { position < s.offsets.count ? s.offsets[position] : s.endOffset }
        var lo = atLeastOne ? from + 1 : from, hi = to
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if end(mid) <= limit { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// Drops every entry after `index` (a conflicting suffix) durably, before any later append is written.
    package func truncateSuffix(after index: UInt64) throws {
        guard index < lastIndex else { return }
        try requireOpenSegment()
        guard index + 1 >= firstIndex else { throw StorageError.outOfRange(index: index, first: firstIndex, last: lastIndex) }
        nextIndexWhenEmpty = index + 1
        while segments.count > 1 && segments[segments.count - 1].firstIndex > index {
            let s = segments.removeLast()
            fs.close(s.file)
            try fs.remove(s.file.path)
            try fs.syncDirectory(directory)
        }
        var s = segments[segments.count - 1]
        let keep = Int(index + 1 - s.firstIndex)
        if keep < s.offsets.count {
            s.endOffset = s.offsets[keep]
            s.offsets.removeSubrange(keep...)
            s.terms.removeSubrange(keep...)
            s.kinds.removeSubrange(keep...)
        }
        segments[segments.count - 1] = s
        try closeOpenSegment()
        if s.offsets.isEmpty {
            // The segment now holds nothing: replace it rather than keep an empty closed file.
            segments.removeLast()
            fs.close(s.file)
            try fs.remove(s.file.path)
            try fs.syncDirectory(directory)
        }
        try startSegment(at: index + 1)
    }

    /// Deletes whole closed segments whose entries are all at or below `index` (covered by a snapshot).
    package func compactPrefix(through index: UInt64) throws {
        var removed = false
        while segments.count > 1 && segments[0].lastIndex <= index {
            let s = segments.removeFirst()
            fs.close(s.file)
            try fs.remove(s.file.path)
            removed = true
        }
        if removed { try fs.syncDirectory(directory) }
    }

    /// Discards the whole log so the next entry is `nextIndex` (after installing a snapshot past the log).
    package func reset(nextIndex: UInt64) throws {
        guard nextIndex >= 1 else { throw StorageError.outOfRange(index: 0, first: firstIndex, last: lastIndex) }
        nextIndexWhenEmpty = nextIndex
        nextIndexWithoutSegments = nextIndex
        while let s = segments.popLast() {
            fs.close(s.file)
            try fs.remove(s.file.path)
            try fs.syncDirectory(directory)
        }
        unsynced = false
        try startSegment(at: nextIndex)
    }
}
