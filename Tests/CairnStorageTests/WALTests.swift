// WAL behaviour on a healthy disk: append, read, term lookup, segment rolling, suffix truncation, compaction.
// Each test reopens the log to check that what it did survives recovery.

import Testing
@testable import CairnStorage

@Suite struct WALTests {
    @Test func appendReadAcrossSegmentsAndReopen() throws {
        let fs = freshFS()
        let wal = try openWAL(fs, segmentBytesMax: 512)
        try wal.append(entries(1...40))
        try wal.sync()
        #expect(wal.firstIndex == 1 && wal.lastIndex == 40)
        #expect(try wal.entries(5..<33) == entries(5...32))
        #expect(wal.term(at: 40) == 1 && wal.term(at: 41) == nil && wal.term(at: 0) == nil)
        let segments = try fs.list(dataDir).filter { $0.hasPrefix("wal-") }
        #expect(segments.count > 4)
        // Closed segments were cut to their data; none is longer than the limit.
        for name in segments.dropLast() {
            let f = try fs.open(dataDir + "/" + name, create: false)
            #expect(try fs.size(f) <= 512)
            fs.close(f)
        }
        wal.close()
        let again = try openWAL(fs, segmentBytesMax: 512)
        #expect(again.lastIndex == 40)
        #expect(try again.entries(1..<41) == entries(1...40))
        try again.append([entry(41)])
        #expect(throws: StorageError.badIndex(expected: 42, got: 43)) { try again.append([entry(43)]) }
        #expect(throws: StorageError.self) { try again.entries(40..<43) }
    }

    @Test func truncateConflictingSuffixThenAppendNewTerm() throws {
        let fs = freshFS()
        let wal = try openWAL(fs, segmentBytesMax: 512)
        try wal.append(entries(1...30))
        try wal.sync()
        try wal.truncateSuffix(after: 12)
        #expect(wal.lastIndex == 12)
        try wal.append(entries(13...20, term: 2))
        try wal.sync()
        wal.close()
        let again = try openWAL(fs, segmentBytesMax: 512)
        #expect(again.lastIndex == 20)
        #expect(try again.entries(1..<21) == entries(1...12) + entries(13...20, term: 2))
        // Truncating at a segment boundary and to an empty log both work.
        try again.truncateSuffix(after: 0)
        #expect(again.lastIndex == 0 && again.firstIndex == 1)
        try again.append(entries(1...3, term: 3))
        again.close()
        #expect(try openWAL(fs, segmentBytesMax: 512).entries(1..<4) == entries(1...3, term: 3))
    }

    @Test func compactPrefixDeletesWholeSegmentsOnly() throws {
        let fs = freshFS()
        let wal = try openWAL(fs, segmentBytesMax: 512)
        try wal.append(entries(1...50))
        try wal.sync()
        try wal.compactPrefix(through: 25)
        #expect(wal.firstIndex > 1 && wal.firstIndex <= 26)
        #expect(try wal.entries(26..<51) == entries(26...50))
        let first = wal.firstIndex
        wal.close()
        let again = try openWAL(fs, segmentBytesMax: 512)
        #expect(again.firstIndex == first && again.lastIndex == 50)
        try again.reset(nextIndex: 100)
        #expect(again.lastIndex == 99)
        try again.append([entry(100)])
        again.close()
        #expect(try openWAL(fs, segmentBytesMax: 512).entries(100..<101) == [entry(100)])
    }

    /// A restart walks the log in reads bounded by bytes: each chunk holds whole records that fit (at least one), they
    /// continue each other across segments, and terms and kinds come from memory, as recovery found them.
    @Test func boundedReadsTermsAndKindsAcrossSegmentsAfterReopen() throws {
        let fs = freshFS()
        let wal = try openWAL(fs, segmentBytesMax: 512)
        try wal.append(entries(1...40))
        try wal.sync()
        wal.close()
        let again = try openWAL(fs, segmentBytesMax: 512)
        var read: [LogEntryRecord] = []
        while read.count < 40 {
            let chunk = try again.entries(UInt64(read.count + 1)..<41, bytesMax: 3 * recordBytes + 10)
            #expect(chunk.count >= 1 && chunk.count <= 3)
            read += chunk
        }
        #expect(read == entries(1...40))
        #expect(try again.entries(5..<41, bytesMax: 1).count == 1)
        #expect(try again.entries(5..<41, bytesMax: 0) == [entry(5)])
        #expect(try again.entries(1..<41, bytesMax: 100 * recordBytes) == entries(1...40))
        #expect(again.terms(from: 38) == [1, 1, 1] && again.terms(from: 41) == [])
        #expect(again.indexes(ofKind: 2, from: 30) == Array(stride(from: 32, through: 40, by: 3)))
    }
}
