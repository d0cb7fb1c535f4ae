// A writer that failed (a failed fsync, a full disk) goes on once the disk allows: the log is cut back to what was
// durable and reopened, so nothing acknowledged is lost, nothing unacknowledged survives, and order is kept.

import CairnBase
import Testing
@testable import CairnStorage

@Suite struct StorageRecoveryTests {
    private func open(_ fs: SimulatedFileSystem, segmentBytesMax: UInt64 = 4096) throws -> Storage {
        try Storage(fs: fs, directory: dataDir, options: StorageOptions(wal: WALOptions(segmentBytesMax: segmentBytesMax)), logger: { _ in })
    }

    @Test func afterAFailedFsyncTheUnsyncedBatchIsCutAndWritesResume() throws {
        let fs = freshFS()
        let storage = try open(fs)
        try storage.writer.append(entries(1...3))
        fs.failSyncs(errno: 5)  // EIO
        #expect(throws: StorageError.self) { try storage.writer.append([entry(4)]) }
        #expect(throws: StorageError.self) { try storage.recover() }  // the disk still fails: stays failed
        #expect(throws: StorageError.self) { try storage.writer.append([entry(4)]) }
        fs.failSyncs(errno: nil)
        try storage.recover()
        #expect(try storage.writer.withLog { $0.lastIndex } == 3, "the batch whose fsync failed is not trusted")
        let replacement = entry(4, term: 2)
        try storage.writer.append([replacement, entry(5, term: 2)])
        var random = SeededRandom(seed: 19)
        fs.crash(random: &random)
        let again = try open(fs)
        #expect(try again.writer.withLog { try $0.entries(1..<6) } == entries(1...3) + [replacement, entry(5, term: 2)])
        again.close()
    }

    @Test func afterTheDiskFillsAndSpaceIsFreedWritesResumeWithNothingLost() throws {
        let fs = freshFS()
        let storage = try open(fs, segmentBytesMax: 512)
        try storage.writer.append(entries(1...5))
        fs.limitSpace(bytes: 1)
        var next: UInt64 = 6
        while (try? storage.writer.append([entry(next)])) != nil { next += 1 }
        #expect(next < 20, "the next segment cannot be made")
        #expect(throws: StorageError.self) { try storage.recover() }
        fs.limitSpace(bytes: nil)
        try storage.recover()
        #expect(try storage.writer.withLog { $0.lastIndex } == next - 1)
        try storage.writer.append(entries(next...next + 20))
        storage.close()
        let again = try open(fs, segmentBytesMax: 512)
        #expect(try again.writer.withLog { try $0.entries(1..<next + 21) } == entries(1...next + 20))
        again.close()
    }

    @Test func aFailedRecordWriteIsCutAndWritesResume() throws {
        let fs = freshFS()
        let storage = try open(fs, segmentBytesMax: 1 << 20)
        // The first record of a segment may pass its preallocated size: writing it needs space the disk lacks.
        fs.limitSpace(bytes: 1)
        let large = LogEntryRecord(index: 1, term: 1, kind: 0, clusterTimeNanos: 0, payload: [UInt8](repeating: 7, count: 2 << 20))
        #expect(throws: StorageError.self) { try storage.writer.append([large]) }
        fs.limitSpace(bytes: nil)
        #expect(throws: StorageError.self, "bytes of the failed write may lie past the data: refused until recovered") {
            try storage.writer.append([entry(1)])
        }
        try storage.recover()
        #expect(try storage.writer.withLog { $0.lastIndex } == 0)
        try storage.writer.append(entries(1...3))
        storage.close()
        let again = try open(fs, segmentBytesMax: 1 << 20)
        #expect(try again.writer.withLog { try $0.entries(1..<4) } == entries(1...3))
        again.close()
    }
}
