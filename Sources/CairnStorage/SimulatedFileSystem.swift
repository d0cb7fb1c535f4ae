// An in-memory FileSystem that models crashes: unsynced data may be lost, the last unsynced write may be torn,
// and directory changes not made durable by syncDirectory are undone. Also injects EIO, ENOSPC and EMFILE.

import CairnBase
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

package final class SimulatedFileSystem: FileSystem {
    private enum Change {
        case write(offset: Int, bytes: [UInt8])
        case resize(bytes: Int)
    }

    private struct Inode {
        var current: [UInt8] = []
        var durable: [UInt8] = []
        /// Changes since the last sync, in order; a crash keeps a prefix of them, the last one possibly torn.
        var unsynced: [Change] = []
    }

    private struct State {
        var inodes: [Int: Inode] = [:]
        var nextInode = 1
        var names: [String: Int] = [:]
        var durableNames: [String: Int] = [:]
        var directories: Set<String> = ["/"]
        var open: [Int32: Int] = [:]
        var nextFD: Int32 = 3
        var lockHolders: [Int: Int32] = [:]
        var syncs = 0
        var syncFailure: Int32? = nil
        var openFailure: Int32? = nil
        var spaceBytesMax: Int? = nil
        var syncDelayMicros: UInt32 = 0
    }

    private let state = Mutex(State())

    package init() {}

    package var syncCount: Int { state.withLock { $0.syncs } }

    // MARK: fault injection and inspection (tests)

    /// Every later sync fails with `errno` until cleared with nil.
    package func failSyncs(errno: Int32?) { state.withLock { $0.syncFailure = errno } }

    /// Every later open (of a file or, for its sync, a directory) fails with `errno` until cleared with nil: EMFILE
    /// as when client connections hold every descriptor.
    package func failOpens(errno: Int32?) { state.withLock { $0.openFailure = errno } }

    /// Each sync sleeps this long (outside the lock), as a disk would, so group-commit tests see batching.
    package func delaySyncs(micros: UInt32) { state.withLock { $0.syncDelayMicros = micros } }

    /// Writes that would make the total file bytes exceed this fail with ENOSPC; nil removes the limit.
    package func limitSpace(bytes: Int?) { state.withLock { $0.spaceBytesMax = bytes } }

    /// Power loss: keep only what was synced, plus a seeded prefix of the unsynced changes (the last one torn).
    package func crash(random: inout SeededRandom) {
        state.withLock { s in
            for (id, var inode) in s.inodes {
                var bytes = inode.durable
                let kept = Int.random(in: 0...inode.unsynced.count, using: &random)
                for (i, change) in inode.unsynced.enumerated() where i <= kept {
                    switch change {
                    case .write(let offset, let data):
                        if i < kept {
                            Self.apply(write: data, at: offset, to: &bytes)
                        } else {
                            let torn = Int.random(in: 0...data.count, using: &random)
                            Self.apply(write: Array(data[0..<torn]), at: offset, to: &bytes)
                        }
                    case .resize(let size):
                        if i < kept { Self.resize(&bytes, to: size) }
                    }
                }
                inode.current = bytes
                inode.durable = bytes
                inode.unsynced = []
                s.inodes[id] = inode
            }
            s.names = s.durableNames
            s.open = [:]
            s.lockHolders = [:]
        }
    }

    /// The current bytes of a file, for tests that damage it.
    package func contents(_ path: String) -> [UInt8]? {
        state.withLock { s in s.names[path].map { s.inodes[$0]!.current } }
    }

    /// Replaces a file's bytes durably, as an outside agent (bit rot, an operator) would.
    package func setContents(_ path: String, _ bytes: [UInt8]) {
        state.withLock { s in
            guard let id = s.names[path] else { return }
            s.inodes[id]!.current = bytes
            s.inodes[id]!.durable = bytes
            s.inodes[id]!.unsynced = []
        }
    }

    // MARK: FileSystem

    private static func apply(write data: [UInt8], at offset: Int, to bytes: inout [UInt8]) {
        if bytes.count < offset + data.count { bytes += [UInt8](repeating: 0, count: offset + data.count - bytes.count) }
        bytes.replaceSubrange(offset..<offset + data.count, with: data)
    }

    private static func resize(_ bytes: inout [UInt8], to size: Int) {
        if bytes.count > size { bytes.removeLast(bytes.count - size) } else { bytes += [UInt8](repeating: 0, count: size - bytes.count) }
    }

    private static func parent(_ path: String) -> String {
        // By bytes: the simulator lists and syncs directories on every snapshot and restart.
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        let p = String(path[..<slash])
        return p.isEmpty ? "/" : p
    }

    private func inode(_ s: State, _ file: OpenFile) throws -> Int {
        guard let id = s.open[file.id] else { throw StorageError.io(operation: "use", path: file.path, errno: 9) }  // EBADF
        return id
    }

    private static func usedBytes(_ s: State) -> Int { s.inodes.values.reduce(0) { $0 + $1.current.count } }

    package func open(_ path: String, create: Bool) throws -> OpenFile {
        try state.withLock { s in
            if let code = s.openFailure { throw StorageError.io(operation: "open", path: path, errno: code) }
            guard s.directories.contains(Self.parent(path)) else { throw StorageError.io(operation: "open", path: path, errno: 2) }
            let id: Int
            if let existing = s.names[path] {
                id = existing
            } else {
                guard create else { throw StorageError.io(operation: "open", path: path, errno: 2) }  // ENOENT
                id = s.nextInode
                s.nextInode += 1
                s.inodes[id] = Inode()
                s.names[path] = id
            }
            let fd = s.nextFD
            s.nextFD += 1
            s.open[fd] = id
            return OpenFile(id: fd, path: path)
        }
    }

    package func close(_ file: OpenFile) {
        state.withLock { s in
            if let id = s.open.removeValue(forKey: file.id), s.lockHolders[id] == file.id { s.lockHolders[id] = nil }
        }
    }

    package func size(_ file: OpenFile) throws -> UInt64 {
        try state.withLock { s in UInt64(s.inodes[try inode(s, file)]!.current.count) }
    }

    package func read(_ file: OpenFile, at offset: UInt64, count: Int) throws -> [UInt8] {
        try state.withLock { s in
            let bytes = s.inodes[try inode(s, file)]!.current
            let start = min(Int(offset), bytes.count)
            let end = min(start + count, bytes.count)
            if end - start != count {
                throw StorageError.shortRead(path: file.path, offset: offset, expectedBytes: count, gotBytes: end - start)
            }
            return Array(bytes[start..<end])
        }
    }

    package func write(_ file: OpenFile, at offset: UInt64, _ bytes: [UInt8]) throws {
        try state.withLock { s in
            let id = try inode(s, file)
            let grow = max(0, Int(offset) + bytes.count - s.inodes[id]!.current.count)
            if let limit = s.spaceBytesMax, grow > 0, Self.usedBytes(s) + grow > limit {  // preallocated space needs none
                throw StorageError.io(operation: "pwrite", path: file.path, errno: 28)  // ENOSPC
            }
            Self.apply(write: bytes, at: Int(offset), to: &s.inodes[id]!.current)
            s.inodes[id]!.unsynced.append(.write(offset: Int(offset), bytes: bytes))
        }
    }

    package func preallocate(_ file: OpenFile, bytes: UInt64) throws {
        try state.withLock { s in
            let id = try inode(s, file)
            let size = s.inodes[id]!.current.count
            guard Int(bytes) > size else { return }
            if let limit = s.spaceBytesMax, Self.usedBytes(s) + Int(bytes) - size > limit {
                throw StorageError.io(operation: "fallocate", path: file.path, errno: 28)
            }
            Self.resize(&s.inodes[id]!.current, to: Int(bytes))
            s.inodes[id]!.unsynced.append(.resize(bytes: Int(bytes)))
        }
    }

    package func truncate(_ file: OpenFile, to bytes: UInt64) throws {
        try state.withLock { s in
            let id = try inode(s, file)
            Self.resize(&s.inodes[id]!.current, to: Int(bytes))
            s.inodes[id]!.unsynced.append(.resize(bytes: Int(bytes)))
        }
    }

    package func sync(_ file: OpenFile) throws {
        let delay = state.withLock { $0.syncDelayMicros }
        if delay > 0 { usleep(delay) }
        try state.withLock { s in
            let id = try inode(s, file)
            s.syncs += 1
            if let code = s.syncFailure { throw StorageError.io(operation: "fdatasync", path: file.path, errno: code) }
            s.inodes[id]!.durable = s.inodes[id]!.current
            s.inodes[id]!.unsynced = []
        }
    }

    package func syncWithMetadata(_ file: OpenFile) throws { try sync(file) }

    package func rename(_ from: String, to: String) throws {
        try state.withLock { s in
            guard let id = s.names.removeValue(forKey: from) else { throw StorageError.io(operation: "rename", path: from, errno: 2) }
            s.names[to] = id
        }
    }

    package func remove(_ path: String) throws {
        try state.withLock { s in
            guard s.names.removeValue(forKey: path) != nil else { throw StorageError.io(operation: "unlink", path: path, errno: 2) }
        }
    }

    package func syncDirectory(_ path: String) throws {
        try state.withLock { s in
            if let code = s.openFailure { throw StorageError.io(operation: "open directory", path: path, errno: code) }
            s.syncs += 1
            if let code = s.syncFailure { throw StorageError.io(operation: "fsync directory", path: path, errno: code) }
            s.durableNames = s.durableNames.filter { Self.parent($0.key) != path }
            for (name, id) in s.names where Self.parent(name) == path { s.durableNames[name] = id }
        }
    }

    package func list(_ directory: String) throws -> [String] {
        try state.withLock { s in
            guard s.directories.contains(directory) else { throw StorageError.io(operation: "opendir", path: directory, errno: 2) }
            return s.names.keys.filter { Self.parent($0) == directory }
                .map { String($0[$0.utf8.index(after: $0.utf8.lastIndex(of: UInt8(ascii: "/"))!)...]) }.sorted()
        }
    }

    package func makeDirectory(_ path: String) throws {
        state.withLock { s in _ = s.directories.insert(path) }
    }

    package func lock(_ path: String) throws -> OpenFile {
        let file = try open(path, create: true)
        let held = state.withLock { s -> Bool in
            let id = s.open[file.id]!
            if s.lockHolders[id] != nil { return true }
            s.lockHolders[id] = file.id
            return false
        }
        if held {
            close(file)
            throw StorageError.locked(path: path)
        }
        return file
    }
}
