// etcd's snapshot tail: etcdctl's `snapshot save` refuses a stream whose length is not 32 past a multiple of 512 (a
// bolt file and its SHA-256), so gRPC's Snapshot ends Cairn's file with zero padding and that digest; backups read it.
import CairnHTTP
import CairnStorage

enum EtcdSnapshotTail {
    static let digestBytes = 32
    static let sectorBytes = 512
    static let cairnEndMagic = Array("CAIRNEND".utf8)

    /// Zero bytes that bring `length` to a multiple of 512.
    static func paddingBytes(after length: UInt64) -> Int {
        Int((UInt64(sectorBytes) - length % UInt64(sectorBytes)) % UInt64(sectorBytes))
    }

    /// `fs` as the snapshot reader should see `path`: an etcdctl copy (length 32 past a multiple of 512, the digest of
    /// all before it last, zero padding after Cairn's end magic) shows only the Cairn file inside; any other file as is.
    static func view(_ fs: FileSystem, _ path: String) throws -> FileSystem {
        let file = try fs.open(path, create: false)
        defer { fs.close(file) }
        let size = try fs.size(file)
        let digestStart = size &- UInt64(digestBytes)
        guard size % UInt64(sectorBytes) == UInt64(digestBytes), size >= UInt64(sectorBytes) + UInt64(digestBytes) else { return fs }
        // The padding is under 512 bytes: look for Cairn's end magic just before it.
        let windowBytes = UInt64(sectorBytes + cairnEndMagic.count)
        let windowStart = digestStart >= windowBytes ? digestStart - windowBytes : 0
        let window = try fs.read(file, at: windowStart, count: Int(digestStart - windowStart))
        var end = window.count
        while end > 0, window[end - 1] == 0 { end -= 1 }
        guard end >= cairnEndMagic.count, Array(window[(end - cairnEndMagic.count)..<end]) == cairnEndMagic,
              window.count - end < sectorBytes else { return fs }
        let digest = SHA256Stream()
        var offset: UInt64 = 0
        while offset < digestStart {
            let piece = try fs.read(file, at: offset, count: Int(min(UInt64(1 << 20), digestStart - offset)))
            digest.update(piece)
            offset += UInt64(piece.count)
        }
        guard try fs.read(file, at: digestStart, count: digestBytes) == digest.finish() else { return fs }
        return TruncatedFileSystem(base: fs, path: path, length: windowStart + UInt64(end))
    }
}

/// A file system that shows one file shorter than it is (read-only use: the snapshot reader's).
private final class TruncatedFileSystem: FileSystem {
    let base: FileSystem
    let path: String
    let length: UInt64

    init(base: FileSystem, path: String, length: UInt64) {
        self.base = base
        self.path = path
        self.length = length
    }

    func open(_ path: String, create: Bool) throws -> OpenFile { try base.open(path, create: create) }
    func close(_ file: OpenFile) { base.close(file) }
    func size(_ file: OpenFile) throws -> UInt64 { file.path == path ? length : try base.size(file) }
    func read(_ file: OpenFile, at offset: UInt64, count: Int) throws -> [UInt8] {
        guard file.path == path else { return try base.read(file, at: offset, count: count) }
        guard offset < length else { return [] }
        return try base.read(file, at: offset, count: Int(min(UInt64(count), length - offset)))
    }
    func write(_ file: OpenFile, at offset: UInt64, _ bytes: [UInt8]) throws { try base.write(file, at: offset, bytes) }
    func preallocate(_ file: OpenFile, bytes: UInt64) throws { try base.preallocate(file, bytes: bytes) }
    func truncate(_ file: OpenFile, to bytes: UInt64) throws { try base.truncate(file, to: bytes) }
    func sync(_ file: OpenFile) throws { try base.sync(file) }
    func syncWithMetadata(_ file: OpenFile) throws { try base.syncWithMetadata(file) }
    func rename(_ from: String, to: String) throws { try base.rename(from, to: to) }
    func remove(_ path: String) throws { try base.remove(path) }
    func syncDirectory(_ path: String) throws { try base.syncDirectory(path) }
    func list(_ directory: String) throws -> [String] { try base.list(directory) }
    func makeDirectory(_ path: String) throws { try base.makeDirectory(path) }
    func lock(_ path: String) throws -> OpenFile { try base.lock(path) }
    var syncCount: Int { base.syncCount }
}
