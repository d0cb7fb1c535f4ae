// Storage micro-benchmark: appends/s and fsyncs/s through the group-commit writer on the real disk, with 1, 16
// and 64 concurrent appenders of 256-byte entries, beside the disk's raw fdatasync rate (the physical limit).

import CairnStorage
import Dispatch
import Foundation
import Glibc
import Synchronization

let secondsPerRun = Double(ProcessInfo.processInfo.environment["BENCH_SECONDS"] ?? "2") ?? 2
let runs = 3
let root = ProcessInfo.processInfo.environment["BENCH_DIR"] ?? "/tmp"

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

func temporaryDirectory() -> String {
    var template = Array("\(root)/cairn-storage-bench-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
}

func removeDirectory(_ path: String) {
    let fs = PosixFileSystem()
    for name in (try? fs.list(path)) ?? [] { try? fs.remove(path + "/" + name) }
    rmdir(path)
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

/// The physical limit: one 256-byte pwrite + fdatasync after another on a preallocated file.
func rawSyncsPerSecond() throws -> Double {
    let dir = temporaryDirectory()
    defer { removeDirectory(dir) }
    let fs = PosixFileSystem()
    let file = try fs.open(dir + "/raw", create: true)
    defer { fs.close(file) }
    try fs.preallocate(file, bytes: 64 << 20)
    try fs.sync(file)
    let bytes = [UInt8](repeating: 7, count: 256)
    var offset: UInt64 = 0
    var count = 0
    let start = now()
    while now() - start < secondsPerRun {
        try fs.write(file, at: offset, bytes)
        try fs.sync(file)
        offset += 256
        count += 1
    }
    return Double(count) / (now() - start)
}

func appendRun(appenders: Int) throws -> (appends: Double, syncs: Double) {
    let dir = temporaryDirectory()
    defer { removeDirectory(dir) }
    let fs = PosixFileSystem()
    let storage = try Storage(fs: fs, directory: dir, logger: { print($0) })
    defer { storage.close() }
    let payload = [UInt8](repeating: 0xAB, count: 256)
    let next = Mutex<UInt64>(1)
    let appended = Atomic<Int>(0)
    let syncsBefore = fs.syncCount
    let start = now()
    let deadline = start + secondsPerRun
    let group = DispatchGroup()
    for _ in 0..<appenders {
        group.enter()
        Thread {
            while now() < deadline {
                let done = DispatchSemaphore(value: 0)
                next.withLock { n in
                    storage.writer.submit([LogEntryRecord(index: n, term: 1, kind: 0, clusterTimeNanos: 0, payload: payload)]) { result in
                        if case .failure(let error) = result { fatalError("append failed: \(error)") }
                        done.signal()
                    }
                    n += 1
                }
                done.wait()
                appended.add(1, ordering: .relaxed)
            }
            group.leave()
        }.start()
    }
    group.wait()
    let elapsed = now() - start
    return (Double(appended.load(ordering: .relaxed)) / elapsed, Double(fs.syncCount - syncsBefore) / elapsed)
}

/// Recovery time: write `count` 256-byte entries in batches, close, and time `Storage` opening the directory.
func recoverySeconds(count: Int) throws -> Double {
    let dir = temporaryDirectory()
    defer { removeDirectory(dir) }
    let fs = PosixFileSystem()
    let payload = [UInt8](repeating: 0xCD, count: 256)
    let storage = try Storage(fs: fs, directory: dir, logger: { print($0) })
    var index: UInt64 = 1
    while index <= UInt64(count) {
        let batch = (index..<min(index + 4096, UInt64(count) + 1)).map {
            LogEntryRecord(index: $0, term: 1, kind: 0, clusterTimeNanos: 0, payload: payload)
        }
        try storage.writer.append(batch)
        index += UInt64(batch.count)
    }
    storage.close()
    let start = now()
    let again = try Storage(fs: fs, directory: dir, logger: { print($0) })
    let elapsed = now() - start
    let recovered = try again.writer.withLog { $0.lastIndex }
    precondition(recovered == UInt64(count), "recovered \(recovered) of \(count) entries")
    again.close()
    return elapsed
}

print("storage bench: \(runs) runs of \(secondsPerRun)s each, 256-byte entries, directory \(root)")
let raw = try (0..<runs).map { _ in try rawSyncsPerSecond() }
print(String(format: "raw pwrite+fdatasync: median %.0f/s  (runs: %@)", median(raw), raw.map { String(format: "%.0f", $0) }.joined(separator: ", ")))
for appenders in [1, 16, 64] {
    let results = try (0..<runs).map { _ in try appendRun(appenders: appenders) }
    let a = results.map(\.appends), s = results.map(\.syncs)
    print(String(format: "%2d appenders: median %.0f appends/s, %.0f fsyncs/s, %.1f entries per fsync  (appends/s runs: %@)",
                 appenders, median(a), median(s), median(a) / median(s), a.map { String(format: "%.0f", $0) }.joined(separator: ", ")))
}
let recoveryEntries = Int(ProcessInfo.processInfo.environment["BENCH_RECOVERY_ENTRIES"] ?? "1000000") ?? 1_000_000
print(String(format: "recovery of %d entries of 256 bytes: %.2f s (one run; page cache warm)", recoveryEntries, try recoverySeconds(count: recoveryEntries)))
