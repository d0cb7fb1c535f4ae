// The commit index recorded without an fsync: the newest valid record wins, damage only makes it older, the file
// stays bounded, an old directory with only a hard-state file still opens, and the index never passes the log's end.

import CairnBase
import Testing
@testable import CairnStorage

@Suite struct CommitRecordsTests {
    private func open(_ fs: SimulatedFileSystem) throws -> Storage {
        try Storage(fs: fs, directory: dataDir, options: StorageOptions(wal: WALOptions(segmentBytesMax: 4096)), logger: { _ in })
    }

    @Test func theNewestRecordedCommitIsRecoveredWithoutAnyFsyncPerRecord() throws {
        let fs = freshFS()
        let storage = try open(fs)
        try storage.writer.append(entries(1...10))
        let syncsBefore = fs.syncCount
        for commit in 1...10 { storage.recordCommit(UInt64(commit)) }
        #expect(fs.syncCount == syncsBefore, "recording costs no sync")
        storage.recordCommit(4)  // never backwards
        storage.close()
        let reopened = try open(fs)
        #expect(reopened.recoveredHardState.commit == 10)
        reopened.close()
    }

    @Test func aTornOrLostRecordOnlyMakesTheCommitOlder() throws {
        let fs = freshFS()
        let storage = try open(fs)
        try storage.writer.append(entries(1...10))
        storage.recordCommit(7)
        storage.recordCommit(9)
        storage.close()
        var bytes = try #require(fs.contents(dataDir + "/commit"))
        bytes[2 * CommitRecords.recordBytes + 6] ^= 0xFF  // the record of 9
        fs.setContents(dataDir + "/commit", bytes)
        let reopened = try open(fs)
        #expect(reopened.recoveredHardState.commit == 7)
        reopened.close()
    }

    @Test func theFileIsReplacedAfterCommitRecordsMaxRecords() throws {
        let fs = freshFS()
        let storage = try open(fs)
        let last = UInt64(CommitRecords.commitRecordsMax + 5)
        try storage.writer.append(entries(1...last))
        for commit in 1...last { storage.recordCommit(commit) }
        #expect(fs.contents(dataDir + "/commit")?.count == CommitRecords.commitRecordsMax * CommitRecords.recordBytes)
        storage.close()
        let reopened = try open(fs)
        #expect(reopened.recoveredHardState.commit == last)
        reopened.close()
    }

    @Test func anOldDirectoryWithOnlyAHardStateFileOpensAndTheCommitStaysInsideTheLog() throws {
        let fs = freshFS()
        let storage = try open(fs)
        try storage.writer.append(entries(1...5))
        storage.close()
        try fs.remove(dataDir + "/commit")
        try HardStateFile.save(HardState(term: 3, vote: 1, commit: 4), fs: fs, directory: dataDir)
        let reopened = try open(fs)
        #expect(reopened.recoveredHardState == HardState(term: 3, vote: 1, commit: 4))
        reopened.close()
        try HardStateFile.save(HardState(term: 3, vote: 1, commit: 99), fs: fs, directory: dataDir)
        let clamped = try open(fs)
        #expect(clamped.recoveredHardState.commit == 5, "never past the log's last entry")
        clamped.close()
    }
}
