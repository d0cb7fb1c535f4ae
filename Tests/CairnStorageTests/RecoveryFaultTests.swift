// Recovery under damage: torn tails are cut to exactly the fully written prefix and logged; anything else
// (bit flips before the tail, index gaps or repeats, truncated closed segments) refuses with file, offset, index.

import CairnBase
import Testing
@testable import CairnStorage

@Suite struct RecoveryFaultTests {
    /// A durable single-segment log of entries 1...count, as the bytes of its segment file.
    func segmentBytes(count: UInt64, segmentBytesMax: UInt64 = 4096) throws -> [UInt8] {
        let fs = freshFS()
        let wal = try openWAL(fs, segmentBytesMax: segmentBytesMax)
        try wal.append(entries(1...count))
        try wal.sync()
        wal.close()
        return fs.contents(segmentPath(1))!
    }

    @Test func tornTailAtEveryOffsetKeepsExactlyTheWrittenPrefix() throws {
        let full = try segmentBytes(count: 10)
        let dataEnd = recordOffset(11)
        for cut in recordOffset(8)..<dataEnd {
            let complete = UInt64((cut - WALFormat.segmentHeaderBytes) / recordBytes)
            // The file cut short (no preallocation left), and cut with the preallocated zeros still there.
            for tail in [[UInt8](), [UInt8](repeating: 0, count: full.count - cut)] {
                let log = LogLines()
                let fs = fsWith([segmentPath(1): Array(full[0..<cut]) + tail])
                let wal = try openWAL(fs, log: log)
                #expect(wal.lastIndex == complete, "cut at byte \(cut)")
                #expect(try wal.entries(1..<complete + 1) == entries(1...complete))
                let atBoundary = (cut - WALFormat.segmentHeaderBytes) % recordBytes == 0
                // A cut mid-record leaves a partial frame: logged. Tail zeros alone are the clean end.
                #expect(log.all.contains { $0.contains("cut torn tail") } == !atBoundary, "cut at \(cut)")
                // The next entry is appended after the kept prefix and survives another recovery.
                try wal.append([entry(complete + 1)])
                try wal.sync()
                wal.close()
                #expect(try openWAL(fs).lastIndex == complete + 1)
            }
        }
    }

    @Test func bitFlipBeforeTheTailRefusesAndNamesThePlace() throws {
        let full = try segmentBytes(count: 10)
        for byte in recordOffset(5)..<recordOffset(6) {
            for bit in [0, 7] {
                var damaged = full
                damaged[byte] ^= 1 << bit
                let fs = fsWith([segmentPath(1): damaged])
                let found = corruptError { _ = try openWAL(fs) }
                #expect(found?.path == segmentPath(1), "flip at \(byte)")
                #expect(found?.offset == UInt64(recordOffset(5)), "flip at \(byte)")
                #expect(found?.index == 5, "flip at \(byte)")
            }
        }
    }

    @Test func damageInAClosedSegmentRefuses() throws {
        let fs = freshFS()
        let wal = try openWAL(fs, segmentBytesMax: 512)  // 9 records per segment
        try wal.append(entries(1...30))
        try wal.sync()
        wal.close()
        let first = fs.contents(segmentPath(1))!
        #expect(first.count == recordOffset(10))
        // Truncated mid-record: short record in a closed segment.
        let cut = fsWithCopy(fs, replacing: segmentPath(1), with: Array(first.dropLast(3)))
        let short = corruptError { _ = try openWAL(cut, segmentBytesMax: 512) }
        #expect(short?.path == segmentPath(1) && short?.offset == UInt64(recordOffset(9)) && short?.index == 9)
        // Truncated exactly at a record boundary: the next segment's first index exposes the gap.
        let boundary = fsWithCopy(fs, replacing: segmentPath(1), with: Array(first.dropLast(recordBytes)))
        let gap = corruptError { _ = try openWAL(boundary, segmentBytesMax: 512) }
        #expect(gap?.path == segmentPath(10) && gap?.offset == 0 && gap?.index == 10)
        // A flipped bit in the last record of a closed segment: no torn-tail allowance there.
        var flipped = first
        flipped[flipped.count - 1] ^= 0x10
        let bad = corruptError { _ = try openWAL(fsWithCopy(fs, replacing: segmentPath(1), with: flipped), segmentBytesMax: 512) }
        #expect(bad?.path == segmentPath(1) && bad?.index == 9)
    }

    func fsWithCopy(_ fs: SimulatedFileSystem, replacing path: String, with bytes: [UInt8]) -> SimulatedFileSystem {
        var files: [String: [UInt8]] = [:]
        for name in try! fs.list(dataDir) { files[dataDir + "/" + name] = fs.contents(dataDir + "/" + name)! }
        files[path] = bytes
        return fsWith(files)
    }

    @Test func indexGapOrRepeatRefuses() throws {
        for indexes: [UInt64] in [[1, 2, 3, 5, 6], [1, 2, 3, 3, 4]] {
            var bytes = WALFormat.segmentHeader(1)
            for i in indexes { WALFormat.encode(entry(i), into: &bytes) }
            let found = corruptError { _ = try openWAL(fsWith([segmentPath(1): bytes])) }
            #expect(found?.path == segmentPath(1))
            #expect(found?.offset == UInt64(recordOffset(4)))
            #expect(found?.index == indexes[3])
        }
        // Between segments: 1...3 then a segment named 5.
        var a = WALFormat.segmentHeader(1)
        for i: UInt64 in 1...3 { WALFormat.encode(entry(i), into: &a) }
        var b = WALFormat.segmentHeader(5)
        for i: UInt64 in 5...6 { WALFormat.encode(entry(i), into: &b) }
        let found = corruptError { _ = try openWAL(fsWith([segmentPath(1): a, segmentPath(5): b])) }
        #expect(found?.path == segmentPath(5) && found?.offset == 0 && found?.index == 5)
    }

    @Test func leftoverTemporarySegmentIsRemovedAndLogged() throws {
        let full = try segmentBytes(count: 3)
        let log = LogLines()
        let fs = fsWith([segmentPath(1): full, segmentPath(4) + ".tmp": [1, 2, 3]])
        let wal = try openWAL(fs, log: log)
        #expect(wal.lastIndex == 3)
        #expect(log.all.contains { $0.contains("unfinished segment") })
        #expect(!(try fs.list(dataDir)).contains { $0.hasSuffix(".tmp") })
    }

    /// Crash at random points of a run with rolls and truncations: every synced entry survives, and what
    /// survives is a prefix of what was written.
    @Test(arguments: 1...40 as ClosedRange<UInt64>)
    func crashKeepsEverySyncedEntry(seed: UInt64) throws {
        var random = SeededRandom(seed: seed)
        let fs = freshFS()
        var wal = try openWAL(fs, segmentBytesMax: 600)
        var written: [LogEntryRecord] = []  // the log as the writer last left it
        var synced = 0                       // written[0..<synced] are acknowledged
        var term: UInt64 = 1
        for _ in 0..<Int.random(in: 1...6, using: &random) {
            for _ in 0..<Int.random(in: 1...8, using: &random) {
                if random.chance(1, in: 6) && written.count > 2 {
                    let keep = max(synced, Int.random(in: 1..<written.count, using: &random))
                    try wal.truncateSuffix(after: UInt64(keep))
                    written.removeSubrange(keep...)
                    term += 1
                }
                let n = Int.random(in: 1...5, using: &random)
                let batch = (0..<n).map { entry(UInt64(written.count + 1 + $0), term: term, size: Int.random(in: 0...80, using: &random)) }
                try wal.append(batch)
                written += batch
                if random.chance(2, in: 3) {
                    try wal.sync()
                    synced = written.count
                }
            }
            fs.crash(random: &random)
            wal = try openWAL(fs, segmentBytesMax: 600)
            let kept = Int(wal.lastIndex)
            #expect(kept >= synced, "seed \(seed): synced \(synced), recovered \(kept)")
            #expect(kept <= written.count, "seed \(seed)")
            #expect(try wal.entries(1..<UInt64(kept) + 1) == Array(written[0..<kept]), "seed \(seed)")
            written.removeSubrange(kept...)
            synced = kept
        }
    }
}
