// Group commit, failure handling (EIO stops, ENOSPC fails and resumes), hard state, snapshots, retention,
// the directory lock and the dump/verify tool, mostly on the simulated disk.

import CairnBase
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Testing
@testable import CairnStorage

@Suite struct WriterAndFilesTests {
    func openStorage(_ fs: FileSystem, segmentBytesMax: UInt64 = 4096, snapshotsKept: Int = 2, log: LogLines = LogLines()) throws -> Storage {
        try Storage(fs: fs, directory: dataDir,
                    options: StorageOptions(wal: WALOptions(segmentBytesMax: segmentBytesMax), snapshotsKept: snapshotsKept),
                    logger: log.sink)
    }

    /// `appenders` threads each append `each` single entries; submission order is serialized, waiting is not.
    func concurrentAppends(_ storage: Storage, appenders: Int, each: Int) -> Int {
        let next = Mutex<UInt64>(1)
        let failures = Mutex(0)
        onThreads(appenders) { _ in
            for _ in 0..<each {
                let done = DispatchSemaphore(value: 0)
                next.withLock { n in
                    storage.writer.submit([entry(n)]) { result in
                        if case .failure = result { failures.withLock { $0 += 1 } }
                        done.signal()
                    }
                    n += 1
                }
                done.wait()
            }
        }
        return failures.withLock { $0 }
    }

    @Test func concurrentAppendersShareSyncs() throws {
        let fs = freshFS()
        fs.delaySyncs(micros: 2000)
        let storage = try openStorage(fs, segmentBytesMax: 1 << 20)
        let before = fs.syncCount
        let total = 64 * 10
        #expect(concurrentAppends(storage, appenders: 64, each: 10) == 0)
        let syncs = fs.syncCount - before
        #expect(syncs * 4 < total, "\(syncs) syncs for \(total) appends")
        #expect(try storage.writer.withLog { $0.lastIndex } == UInt64(total))
        #expect(try storage.writer.withLog { try $0.entries(1..<UInt64(total) + 1) } == entries(1...UInt64(total)))
        storage.close()
    }

    @Test func acknowledgedAppendsSurviveACrashDuringLoad() throws {
        for seed: UInt64 in 1...5 {
            let fs = freshFS()
            fs.delaySyncs(micros: 300)
            let storage = try openStorage(fs, segmentBytesMax: 8192)
            let acked = Mutex<UInt64>(0)
            let next = Mutex<UInt64>(1)
            let finished = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                onThreads(8) { _ in
                    for _ in 0..<40 {
                        let done = DispatchSemaphore(value: 0)
                        let ok = Mutex(false)
                        let index = next.withLock { n in
                            storage.writer.submit([entry(n)]) { result in
                                if case .success = result { ok.withLock { $0 = true } }
                                done.signal()
                            }
                            n += 1
                            return n - 1
                        }
                        done.wait()
                        guard ok.withLock({ $0 }) else { return }
                        acked.withLock { $0 = max($0, index) }
                    }
                }
                finished.signal()
            }
            // Crash once a seeded number of appends has been acknowledged, while the rest are in flight.
            var random = SeededRandom(seed: seed)
            let target = UInt64.random(in: 20...250, using: &random)
            while acked.withLock({ $0 }) < target { usleep(100) }
            let ackedAtCrash = acked.withLock { $0 }
            fs.crash(random: &random)
            finished.wait()
            let again = try openStorage(fs, segmentBytesMax: 8192)
            let last = try again.writer.withLog { $0.lastIndex }
            #expect(last >= ackedAtCrash, "seed \(seed): acknowledged \(ackedAtCrash), recovered \(last)")
            #expect(try again.writer.withLog { try $0.entries(1..<last + 1) } == entries(1...max(1, last)).prefix(Int(last)).map { $0 }, "seed \(seed)")
            again.close()
        }
    }

    @Test func failedSyncStopsTheWriter() throws {
        let fs = freshFS()
        let storage = try openStorage(fs)
        try storage.writer.append([entry(1)])
        fs.failSyncs(errno: 5)  // EIO
        #expect(throws: StorageError.io(operation: "fdatasync", path: segmentPath(1), errno: 5)) { try storage.writer.append([entry(2)]) }
        fs.failSyncs(errno: nil)
        // Even after the disk "recovers", the writer refuses: the pages that failed may be gone.
        #expect { try storage.writer.append([entry(3)]) } throws: { error in
            if case StorageError.failed = error { return true } else { return false }
        }
        storage.close()
    }

    @Test func noSpaceFailsWritesKeepsReadsAndResumes() throws {
        let fs = freshFS()
        let storage = try openStorage(fs, segmentBytesMax: 512)
        try storage.writer.append(entries(1...5))
        fs.limitSpace(bytes: 1)  // everything on disk already exceeds this
        var sawNoSpace = false
        for i: UInt64 in 6...12 {
            do { try storage.writer.append([entry(i)]) } catch let e as StorageError {
                #expect(e.isNoSpace, "\(e)")
                sawNoSpace = true
                break
            }
        }
        #expect(sawNoSpace)
        let last = try storage.writer.withLog { $0.lastIndex }
        #expect(try storage.writer.withLog { try $0.entries(1..<last + 1) } == entries(1...last))
        fs.limitSpace(bytes: nil)
        try storage.writer.append([entry(last + 1)])
        storage.close()
        let again = try openStorage(fs, segmentBytesMax: 512)
        #expect(try again.writer.withLog { $0.lastIndex } == last + 1)
        again.close()
    }

    @Test func hardStateIsReplacedAtomically() throws {
        let fs = freshFS()
        #expect(try HardStateFile.load(fs: fs, directory: dataDir) == nil)
        try HardStateFile.save(HardState(term: 3, vote: 2, commit: 10), fs: fs, directory: dataDir)
        var random = SeededRandom(seed: 9)
        fs.crash(random: &random)
        #expect(try HardStateFile.load(fs: fs, directory: dataDir) == HardState(term: 3, vote: 2, commit: 10))
        try HardStateFile.save(HardState(term: 4, vote: 0, commit: 11), fs: fs, directory: dataDir)
        var bytes = fs.contents(dataDir + "/hardstate")!
        bytes[9] ^= 1
        fs.setContents(dataDir + "/hardstate", bytes)
        let found = corruptError { _ = try HardStateFile.load(fs: fs, directory: dataDir) }
        #expect(found?.path == dataDir + "/hardstate")
    }

    @Test func aDirectoryServesOnlyTheMemberThatClaimedIt() throws {
        let fs = freshFS()
        let me = MemberIdentity(clusterID: 0xC1, memberID: 0xA1)
        try me.claim(fs: fs, directory: dataDir)
        var random = SeededRandom(seed: 3)
        fs.crash(random: &random)
        try me.claim(fs: fs, directory: dataDir)
        for stranger in [MemberIdentity(clusterID: 0xC1, memberID: 0xA2), MemberIdentity(clusterID: 0xC2, memberID: 0xA1)] {
            #expect(throws: StorageError.foreign(path: dataDir, stored: me, expected: stranger)) {
                try stranger.claim(fs: fs, directory: dataDir)
            }
        }
        var bytes = fs.contents(dataDir + "/member")!
        bytes[12] ^= 1
        fs.setContents(dataDir + "/member", bytes)
        #expect(corruptError { try me.claim(fs: fs, directory: dataDir) }?.path == dataDir + "/member")
    }

    @Test func snapshotStreamsThroughSinkAndSourceAndChecksItsCRC() throws {
        let fs = freshFS()
        let header = SnapshotHeader(lastIndex: 77, lastTerm: 4, clusterTimeNanos: 123_456, membership: Array("n1,n2,n3".utf8))
        let writer = try SnapshotWriter(fs: fs, directory: dataDir, header: header, chunkBytesMax: 64 << 10)
        var random = SeededRandom(seed: 3)
        var expected = CRC32C()
        for _ in 0..<300 {
            let chunk = (0..<10_000).map { _ in UInt8.random(in: 0...255, using: &random) }
            expected.update(chunk)
            try writer.write(chunk)
        }
        let path = try writer.finish()
        #expect(path == dataDir + "/snapshot-00000000000000000077.snap")
        let reader = try SnapshotReader(fs: fs, path: path)
        #expect(reader.header == header && reader.bodyBytes == 3_000_000)
        var got = CRC32C()
        var chunks = 0
        while let chunk = try reader.next(chunkBytesMax: 256 << 10) {
            #expect(chunk.count <= 256 << 10)
            got.update(chunk)
            chunks += 1
        }
        #expect(got.value == expected.value && chunks == 12)
        reader.close()
        // One flipped body bit: the source fails at the end, naming the file.
        var bytes = fs.contents(path)!
        bytes[1_500_000] ^= 4
        fs.setContents(path, bytes)
        let found = corruptError { _ = try SnapshotFiles.verify(fs: fs, path: path) }
        #expect(found?.path == path && found?.index == 77)
        // A cut file is refused up front.
        fs.setContents(path, Array(bytes.dropLast(7)))
        #expect(corruptError { _ = try SnapshotReader(fs: fs, path: path) }?.path == path)
    }

    @Test func retentionKeepsNewestSnapshotsAndTheLogTheyNeed() throws {
        let fs = freshFS()
        let log = LogLines()
        let storage = try openStorage(fs, segmentBytesMax: 512, snapshotsKept: 2, log: log)
        try storage.writer.append(entries(1...60))
        for at: UInt64 in [10, 30, 50] {
            let w = try storage.beginSnapshot(SnapshotHeader(lastIndex: at, lastTerm: 1, clusterTimeNanos: 0, membership: []))
            try w.write(Array("state at \(at)".utf8))
            _ = try w.finish()
            try storage.retain()
        }
        #expect(try storage.snapshots().map(\.lastIndex) == [30, 50])
        let first = try storage.writer.withLog { $0.firstIndex }
        #expect(first > 10 && first <= 31)
        // An abandoned snapshot write is removed at the next open.
        let abandoned = try storage.beginSnapshot(SnapshotHeader(lastIndex: 60, lastTerm: 1, clusterTimeNanos: 0, membership: []))
        try abandoned.write([1, 2, 3])
        storage.close()
        let again = try openStorage(fs, segmentBytesMax: 512, log: log)
        #expect(log.all.contains { $0.contains("unfinished snapshot") })
        #expect(try again.writer.withLog { try $0.entries(31..<61) } == entries(31...60))
        again.close()
    }

    @Test func aReceivedSnapshotIsKeptOnlyWholeAndTheLogFollowsIt() throws {
        // The leader's file, as its member wrote it.
        let leaderFS = freshFS()
        let header = SnapshotHeader(lastIndex: 40, lastTerm: 3, clusterTimeNanos: 9, membership: [1, 2])
        let w = try SnapshotWriter(fs: leaderFS, directory: dataDir, header: header)
        try w.write((0..<200_000).map { UInt8($0 % 253) })
        let leaderFile = leaderFS.contents(try w.finish())!
        // A follower whose log (1...20, term 1) is behind the snapshot.
        let fs = freshFS()
        let log = LogLines()
        var storage = try openStorage(fs, segmentBytesMax: 1024, log: log)
        try storage.writer.append(entries(1...20))
        func receive(_ bytes: [UInt8]) throws -> (path: String, header: SnapshotHeader) {
            let file = try storage.receiveSnapshot()
            for start in stride(from: 0, to: bytes.count, by: 7_000) { try file.append(Array(bytes[start..<min(bytes.count, start + 7_000)])) }
            return try file.finish()
        }
        var damaged = leaderFile
        damaged[100_000] ^= 1
        #expect(corruptError { _ = try receive(damaged) } != nil)
        #expect(try storage.snapshots().isEmpty, "a damaged transfer leaves no snapshot behind")
        let received = try receive(leaderFile)
        #expect(received.header == header && fs.contents(received.path) == leaderFile)
        // A crash before the log is aligned: the next open aligns it, since the snapshot wins.
        storage.close()
        storage = try openStorage(fs, segmentBytesMax: 1024, log: log)
        #expect(try storage.writer.withLog { ($0.firstIndex, $0.lastIndex) } == (41, 40))
        #expect(log.all.contains { $0.contains("does not continue snapshot 40") })
        try storage.writer.append(entries(41...45, term: 3))
        storage.close()
        // A log that holds the snapshot's last entry with its term is kept.
        storage = try openStorage(fs, segmentBytesMax: 1024, log: log)
        #expect(try storage.writer.withLog { $0.lastIndex } == 45)
        storage.close()
    }

    @Test func logStartingPastItsSnapshotsIsRefused() throws {
        let fs = freshFS()
        let storage = try openStorage(fs, segmentBytesMax: 512)
        try storage.writer.append(entries(1...30))
        let w = try storage.beginSnapshot(SnapshotHeader(lastIndex: 5, lastTerm: 1, clusterTimeNanos: 0, membership: []))
        _ = try w.finish()
        storage.close()
        // Losing the segments that hold 6... (here: every segment before the one starting at 19).
        for name in try fs.list(dataDir) where name.hasPrefix("wal-") && name < WALFormat.segmentName(19) {
            try fs.remove(dataDir + "/" + name)
        }
        let found = corruptError { _ = try openStorage(fs, segmentBytesMax: 512) }
        #expect(found?.path == segmentPath(19) && found?.index == 19, "\(String(describing: found))")
    }

    @Test func lockRefusesASecondOwnerAndTheTool() throws {
        let fs = freshFS()
        let storage = try openStorage(fs)
        #expect(throws: StorageError.locked(path: dataDir + "/LOCK")) { _ = try openStorage(fs) }
        #expect(throws: StorageError.locked(path: dataDir + "/LOCK")) {
            try StorageTool.dump(fs: fs, directory: dataDir, describe: { _, _ in "" }, emit: { _ in })
        }
        #expect(throws: StorageError.locked(path: dataDir + "/LOCK")) { _ = try StorageTool.verify(fs: fs, directory: dataDir) }
        storage.close()
        try openStorage(fs).close()
    }

    @Test func dumpAndVerifyDescribeTheDirectory() throws {
        let fs = freshFS()
        let storage = try openStorage(fs, segmentBytesMax: 512)
        try storage.writer.append(entries(1...20))
        try storage.saveHardState(HardState(term: 1, vote: 1, commit: 20))
        let w = try storage.beginSnapshot(SnapshotHeader(lastIndex: 5, lastTerm: 1, clusterTimeNanos: 9, membership: [1]))
        _ = try w.finish()
        storage.close()
        var text = ""
        try StorageTool.dump(fs: fs, directory: dataDir, options: WALOptions(segmentBytesMax: 512),
                             describe: { kind, payload in "kind\(kind):\(payload.count)" }, emit: { text += $0 + "\n" })
        #expect(text.contains("hard state: term 1 vote 1 commit 20"))
        #expect(text.contains("snapshot /data/snapshot-00000000000000000005.snap: last index 5 term 1"))
        #expect(text.contains("index 17 term 1 kind 2 time 17000ns size 20 kind2:20"))
        #expect(try StorageTool.verify(fs: fs, directory: dataDir, options: WALOptions(segmentBytesMax: 512)) == [])
        var bytes = fs.contents(segmentPath(1))!
        bytes[recordOffset(3) + 20] ^= 1
        fs.setContents(segmentPath(1), bytes)
        let damage = try StorageTool.verify(fs: fs, directory: dataDir, options: WALOptions(segmentBytesMax: 512))
        #expect(damage.count == 1, "\(damage)")
        #expect(damage.first == StorageTool.Damage(path: segmentPath(1), offset: UInt64(recordOffset(3)), index: 3, reason: "record checksum mismatch"))
        #expect(corruptError { _ = try openStorage(fs, segmentBytesMax: 512) }?.offset == UInt64(recordOffset(3)))
    }
}
