// Damage that used to trap the storage code: a snapshot trailer whose body length is near 2^64, and a log whose
// reset failed part-way (no segment left). Each now gives a clear error.
import CairnBase
import Testing
@testable import CairnStorage

@Suite struct DamagedLengthTests {
    @Test func aSnapshotTrailerWithAHugeBodyLengthIsCorruptNotATrap() throws {
        let fs = freshFS()
        let writer = try SnapshotWriter(fs: fs, directory: dataDir,
                                        header: SnapshotHeader(lastIndex: 9, lastTerm: 2, clusterTimeNanos: 0, membership: []))
        try writer.write(Array(repeating: 5, count: 100))
        let path = try writer.finish()
        var bytes = fs.contents(path)!
        for bodyBytes in [UInt64.max, UInt64.max - 50, 1 << 63] {
            withUnsafeBytes(of: bodyBytes.littleEndian) { bytes.replaceSubrange((bytes.count - 20)..<(bytes.count - 12), with: $0) }
            fs.setContents(path, bytes)
            #expect(throws: StorageError.self) { _ = try SnapshotReader(fs: fs, path: path) }
        }
    }

    @Test func aLogWhoseResetFailedRefusesWritesAndStillAnswersItsBounds() throws {
        let fs = freshFS()
        let wal = try WAL.open(fs: fs, directory: dataDir, logger: { _ in })
        try wal.append(entries(1...3))
        try wal.sync()
        fs.failSyncs(errno: 5)
        #expect(throws: StorageError.self) { try wal.reset(nextIndex: 100) }
        #expect(wal.lastIndex == 99 && wal.firstIndex == 100)
        #expect(throws: StorageError.self) { try wal.append([entry(100)]) }
        #expect(throws: StorageError.self) { try wal.truncateSuffix(after: 50) }
        wal.close()
    }
}
