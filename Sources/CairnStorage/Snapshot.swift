// Snapshot files: written through a sink as the state machine streams them, read back through a source in chunks.
// The body is never held whole in memory; a running CRC32C covers it and is checked when the source reaches the end.
//
// FORMAT of `snapshot-<last index, 20 digits>.snap`:
//   magic "CAIRNSNP" | version u32 (1) | header length u32 | header | CRC32C u32 of everything before it
//   header = last index u64 | last term u64 | cluster time (ns) u64 | membership length u32 | membership bytes
//   body (the state machine's stream, opaque here)
//   trailer = body length u64 | body CRC32C u32 | magic "CAIRNEND"          (20 bytes)
// Written as `<name>.tmp`, fsynced, renamed, directory fsynced: a `.snap` name always means a complete file,
// so a damaged `.snap` is refused (never used), and a leftover `.tmp` is an abandoned write, removed at open.

import CairnBase

package struct SnapshotHeader: Equatable, Sendable {
    package var lastIndex: UInt64
    package var lastTerm: UInt64
    package var clusterTimeNanos: UInt64
    package var membership: [UInt8]

    package init(lastIndex: UInt64, lastTerm: UInt64, clusterTimeNanos: UInt64, membership: [UInt8]) {
        self.lastIndex = lastIndex
        self.lastTerm = lastTerm
        self.clusterTimeNanos = clusterTimeNanos
        self.membership = membership
    }
}

enum SnapshotFormat {
    static let magic: [UInt8] = Array("CAIRNSNP".utf8)
    static let endMagic: [UInt8] = Array("CAIRNEND".utf8)
    static let trailerBytes = 20
    static let headerBytesMax = 1 << 20

    static func name(_ lastIndex: UInt64) -> String { "snapshot-" + paddedDecimal(lastIndex) + ".snap" }

    static func lastIndex(ofName name: String) -> UInt64? {
        guard name.hasPrefix("snapshot-"), name.hasSuffix(".snap"), name.count == 34 else { return nil }
        return UInt64(name.dropFirst(9).dropLast(5))
    }

    static func encodeHeader(_ h: SnapshotHeader) -> [UInt8] {
        var header: [UInt8] = []
        header.appendLE(h.lastIndex)
        header.appendLE(h.lastTerm)
        header.appendLE(h.clusterTimeNanos)
        header.appendLE(UInt32(h.membership.count))
        header += h.membership
        var bytes = magic
        bytes.appendLE(UInt32(1))
        bytes.appendLE(UInt32(header.count))
        bytes += header
        bytes.appendLE(CRC32C.checksum(bytes))
        return bytes
    }
}

/// The sink: `write` as the state machine produces bytes, then `finish` (or `abort`).
package final class SnapshotWriter {
    private let fs: FileSystem
    private let directory: String
    private let file: OpenFile
    private let finalPath: String
    private var offset: UInt64
    private var bodyBytes: UInt64 = 0
    private var crc = CRC32C()
    private var buffer: [UInt8] = []
    /// Buffered bytes are written once they reach this, so memory stays bounded whatever the snapshot size.
    package let chunkBytesMax: Int

    package init(fs: FileSystem, directory: String, header: SnapshotHeader, chunkBytesMax: Int = 1 << 20) throws {
        self.fs = fs
        self.directory = directory
        self.chunkBytesMax = chunkBytesMax
        finalPath = joinPath(directory, SnapshotFormat.name(header.lastIndex))
        file = try fs.open(finalPath + ".tmp", create: true)
        let bytes = SnapshotFormat.encodeHeader(header)
        do {
            try fs.truncate(file, to: 0)
            try fs.write(file, at: 0, bytes)
        } catch {
            fs.close(file)
            try? fs.remove(finalPath + ".tmp")
            throw error
        }
        offset = UInt64(bytes.count)
    }

    package func write(_ bytes: [UInt8]) throws {
        crc.update(bytes)
        bodyBytes += UInt64(bytes.count)
        buffer += bytes
        if buffer.count >= chunkBytesMax { try flush() }
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try fs.write(file, at: offset, buffer)
        offset += UInt64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Makes the snapshot durable under its final name and returns that path.
    package func finish() throws -> String {
        do {
            try flush()
            var trailer: [UInt8] = []
            trailer.appendLE(bodyBytes)
            trailer.appendLE(crc.value)
            trailer += SnapshotFormat.endMagic
            try fs.write(file, at: offset, trailer)
            try fs.sync(file)
            fs.close(file)
            try fs.rename(finalPath + ".tmp", to: finalPath)
            try fs.syncDirectory(directory)
            return finalPath
        } catch {
            abort()
            throw error
        }
    }

    package func abort() {
        fs.close(file)
        try? fs.remove(finalPath + ".tmp")
    }
}

/// The source: the header at once, then the body in chunks; the CRC is checked when the end is reached,
/// so a consumer must not make the state it builds visible before `next` has returned nil.
package final class SnapshotReader {
    private let fs: FileSystem
    private let file: OpenFile
    package let header: SnapshotHeader
    package let bodyBytes: UInt64
    private let bodyStart: UInt64
    private let expectedCRC: UInt32
    private var position: UInt64 = 0
    private var crc = CRC32C()

    package init(fs: FileSystem, path: String) throws {
        self.fs = fs
        file = try fs.open(path, create: false)
        do {
            let size = try fs.size(file)
            func damaged(_ offset: UInt64, _ reason: String) -> StorageError {
                .corrupt(path: path, offset: offset, index: SnapshotFormat.lastIndex(ofName: String(path.split(separator: "/").last ?? "")), reason: reason)
            }
            guard size >= 16 + UInt64(SnapshotFormat.trailerBytes) else { throw damaged(0, "file too short (\(size) bytes)") }
            let start = try fs.read(file, at: 0, count: 16)
            let headerLength = Int(start.readLE(UInt32.self, at: 12))
            guard Array(start[0..<8]) == SnapshotFormat.magic, start.readLE(UInt32.self, at: 8) == 1,
                  headerLength >= 28, headerLength <= SnapshotFormat.headerBytesMax,
                  UInt64(16 + headerLength + 4 + SnapshotFormat.trailerBytes) <= size
            else { throw damaged(0, "snapshot preamble is damaged") }
            let all = start + (try fs.read(file, at: 16, count: headerLength + 4))
            guard CRC32C.checksum(Array(all[0..<16 + headerLength])) == all.readLE(UInt32.self, at: 16 + headerLength) else {
                throw damaged(0, "snapshot header checksum mismatch")
            }
            let membershipBytes = Int(all.readLE(UInt32.self, at: 16 + 24))
            guard 28 + membershipBytes == headerLength else { throw damaged(16, "membership length disagrees with header length") }
            header = SnapshotHeader(lastIndex: all.readLE(UInt64.self, at: 16), lastTerm: all.readLE(UInt64.self, at: 24),
                                    clusterTimeNanos: all.readLE(UInt64.self, at: 32), membership: Array(all[44..<44 + membershipBytes]))
            bodyStart = UInt64(all.count)
            let trailerOffset = size - UInt64(SnapshotFormat.trailerBytes)
            let trailer = try fs.read(file, at: trailerOffset, count: SnapshotFormat.trailerBytes)
            bodyBytes = trailer.readLE(UInt64.self, at: 0)
            expectedCRC = trailer.readLE(UInt32.self, at: 8)
            // Compared by subtraction: a damaged length near 2^64 must not overflow the sum (trailerOffset >= bodyStart
            // by the size check above).
            guard Array(trailer[12..<20]) == SnapshotFormat.endMagic, bodyBytes == trailerOffset - bodyStart else {
                throw damaged(trailerOffset, "snapshot trailer is damaged or the body length disagrees with the file size")
            }
        } catch {
            fs.close(file)
            throw error
        }
    }

    /// The next chunk of at most `chunkBytesMax` bytes, or nil at the end once the body's CRC has matched.
    package func next(chunkBytesMax: Int = 1 << 20) throws -> [UInt8]? {
        if position == bodyBytes {
            guard crc.value == expectedCRC else {
                throw StorageError.corrupt(path: file.path, offset: bodyStart, index: header.lastIndex, reason: "snapshot body checksum mismatch")
            }
            return nil
        }
        let count = Int(min(UInt64(chunkBytesMax), bodyBytes - position))
        let chunk = try fs.read(file, at: bodyStart + position, count: count)
        crc.update(chunk)
        position += UInt64(count)
        return chunk
    }

    package func close() { fs.close(file) }
}

package enum SnapshotFiles {
    /// Complete snapshot files in `directory`, oldest first.
    package static func list(fs: FileSystem, directory: String) throws -> [(lastIndex: UInt64, path: String)] {
        try fs.list(directory).compactMap { name in
            SnapshotFormat.lastIndex(ofName: name).map { ($0, joinPath(directory, name)) }
        }.sorted { $0.lastIndex < $1.lastIndex }
    }

    /// Reads a whole snapshot body through the source, discarding it, to check its checksum.
    package static func verify(fs: FileSystem, path: String) throws -> SnapshotHeader {
        let reader = try SnapshotReader(fs: fs, path: path)
        defer { reader.close() }
        while try reader.next() != nil {}
        return reader.header
    }

    /// Removes abandoned temporary snapshot files (crash mid-write); they were never renamed, so never used.
    static func removeAbandoned(fs: FileSystem, directory: String, logger: @Sendable (String) -> Void) throws {
        for name in try fs.list(directory) where name.hasPrefix("snapshot-") && name.hasSuffix(".snap.tmp") {
            logger("storage: removing unfinished snapshot \(joinPath(directory, name))")
            try fs.remove(joinPath(directory, name))
        }
    }
}

/// A snapshot file arriving from the leader, byte for byte as the leader holds it: appended chunk by chunk to a
/// temporary file, then synced, checked whole (header and body checksums) and renamed to its final name. Nothing
/// partial or unverified ever carries a `.snap` name; a crash mid-transfer leaves a `.tmp` that `open` removes.
package final class ReceivedSnapshotFile: @unchecked Sendable {  // one owner at a time: receiving, then finishing
    private let fs: FileSystem
    private let directory: String
    private let file: OpenFile
    private let temporaryPath: String
    private(set) var receivedBytes: UInt64 = 0

    package init(fs: FileSystem, directory: String) throws {
        self.fs = fs
        self.directory = directory
        temporaryPath = joinPath(directory, "snapshot-receiving.snap.tmp")
        file = try fs.open(temporaryPath, create: true)
        do { try fs.truncate(file, to: 0) } catch {
            fs.close(file)
            throw error
        }
    }

    package func append(_ bytes: [UInt8]) throws {
        try fs.write(file, at: receivedBytes, bytes)
        receivedBytes += UInt64(bytes.count)
    }

    /// Makes the file durable under its final name once every checksum matches; returns its path and header.
    package func finish() throws -> (path: String, header: SnapshotHeader) {
        do {
            try fs.sync(file)
            fs.close(file)
            let header = try SnapshotFiles.verify(fs: fs, path: temporaryPath)
            let path = joinPath(directory, SnapshotFormat.name(header.lastIndex))
            try fs.rename(temporaryPath, to: path)
            try fs.syncDirectory(directory)
            return (path, header)
        } catch {
            try? fs.remove(temporaryPath)
            throw error
        }
    }

    package func abort() {
        fs.close(file)
        try? fs.remove(temporaryPath)
    }
}
