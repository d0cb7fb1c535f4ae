// The same storage on the real disk through PosixFileSystem: round trip across segments, the flock-based
// directory lock, and a torn tail made by truncating a real file. Directories live under /tmp and are removed.

import Glibc
import Testing
@testable import CairnStorage

@Suite struct PosixFileSystemTests {
    func withTemporaryDirectory(_ body: (String) throws -> Void) throws {
        var template = Array("/tmp/cairn-storage-test-XXXXXX".utf8CString)
        let path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer {
            let fs = PosixFileSystem()
            for name in (try? fs.list(path)) ?? [] { try? fs.remove(path + "/" + name) }
            rmdir(path)
        }
        try body(path)
    }

    @Test func roundTripLockAndTornTailOnRealDisk() throws {
        try withTemporaryDirectory { dir in
            let fs = PosixFileSystem()
            let options = StorageOptions(wal: WALOptions(segmentBytesMax: 1024))
            let storage = try Storage(fs: fs, directory: dir, options: options, logger: { _ in })
            #expect(throws: StorageError.locked(path: dir + "/LOCK")) {
                _ = try Storage(fs: fs, directory: dir, options: options, logger: { _ in })
            }
            try storage.writer.append(entries(1...100))
            try storage.saveHardState(HardState(term: 1, vote: 3, commit: 99))
            storage.close()

            // Tear the last record of the open segment (the file is preallocated past its data).
            let newest = try fs.list(dir).filter { $0.hasPrefix("wal-") }.last!
            let first = WALFormat.firstIndex(ofSegmentName: newest)!
            let file = try fs.open(dir + "/" + newest, create: false)
            try fs.truncate(file, to: UInt64(recordOffset(101, segmentFirst: first) - 5))
            fs.close(file)

            let log = LogLines()
            let again = try Storage(fs: fs, directory: dir, options: options, logger: log.sink)
            #expect(try again.writer.withLog { $0.lastIndex } == 99)
            #expect(try again.writer.withLog { try $0.entries(1..<100) } == entries(1...99))
            #expect(again.recoveredHardState == HardState(term: 1, vote: 3, commit: 99))
            #expect(log.all.contains { $0.contains("cut torn tail of \(dir)/\(newest)") })
            again.close()
        }
    }
}
