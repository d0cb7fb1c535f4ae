// Shared helpers for the storage tests: deterministic entries, simulated directories, captured log lines.
// Every test that uses randomness takes its seed from SeededRandom and names it in its failure messages.

import CairnBase
import Dispatch
import Foundation
import Synchronization
@testable import CairnStorage

let dataDir = "/data"
/// Record size for `entry(_:)` entries (9 frame + 25 fixed + 20 payload), so tests can compute offsets.
let recordBytes = 54

func entry(_ index: UInt64, term: UInt64 = 1, size: Int = 20) -> LogEntryRecord {
    LogEntryRecord(index: index, term: term, kind: UInt8(index % 3), clusterTimeNanos: index * 1000,
                   payload: (0..<size).map { UInt8(truncatingIfNeeded: Int(index) &* 31 &+ $0) })
}

func entries(_ range: ClosedRange<UInt64>, term: UInt64 = 1) -> [LogEntryRecord] { range.map { entry($0, term: term) } }

func segmentPath(_ first: UInt64) -> String { dataDir + "/" + WALFormat.segmentName(first) }

func recordOffset(_ index: UInt64, segmentFirst: UInt64 = 1) -> Int {
    WALFormat.segmentHeaderBytes + Int(index - segmentFirst) * recordBytes
}

func freshFS() -> SimulatedFileSystem {
    let fs = SimulatedFileSystem()
    try! fs.makeDirectory(dataDir)
    return fs
}

/// A simulated directory holding exactly these files, all durable.
func fsWith(_ files: [String: [UInt8]]) -> SimulatedFileSystem {
    let fs = freshFS()
    for (path, bytes) in files {
        let f = try! fs.open(path, create: true)
        try! fs.write(f, at: 0, bytes)
        try! fs.sync(f)
        fs.close(f)
    }
    try! fs.syncDirectory(dataDir)
    return fs
}

final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    var sink: @Sendable (String) -> Void { { line in self.lines.withLock { $0.append(line) } } }
}

func openWAL(_ fs: FileSystem, segmentBytesMax: UInt64 = 4096, log: LogLines = LogLines()) throws -> WAL {
    try WAL.open(fs: fs, directory: dataDir, options: WALOptions(segmentBytesMax: segmentBytesMax), logger: log.sink)
}

func corruptError(_ body: () throws -> Void) -> (path: String, offset: UInt64, index: UInt64?, reason: String)? {
    do {
        try body()
        return nil
    } catch let StorageError.corrupt(path, offset, index, reason) {
        return (path, offset, index, reason)
    } catch {
        return ("unexpected \(error)", 0, nil, "")
    }
}

/// Runs `body(i)` for i in 0..<count, each on its own thread (Dispatch's pools are as wide as the 2 cores,
/// which would serialize the appenders a group-commit test needs in flight together).
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for i in 0..<count {
        group.enter()
        let thread = Thread {
            body(i)
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
}
