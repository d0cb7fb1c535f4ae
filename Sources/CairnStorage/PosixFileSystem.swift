// The real file system through Glibc: pread/pwrite loops that check every length, fdatasync, directory fsync, and a
// reserve of descriptors so the log can still make its next segment when client connections took all the others.
// No Foundation here: this is the write path of every acknowledged entry.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

package final class PosixFileSystem: FileSystem {
    private let syncs = Atomic<Int>(0)
    /// Descriptors (of /dev/null) held back from the process's limit: when an open fails with EMFILE, one is closed
    /// and the open tried again, so a segment rollover (the new segment, then its directory's fsync) still succeeds
    /// while idle connections hold every other descriptor. Taken again as soon as descriptors are free.
    package static let reservedDescriptors = 2
    private let reserve = Mutex<[Int32]>([])

    package init() {
        replenishReserve()
    }

    deinit {
        reserve.withLock { for fd in $0 { _ = Glibc.close(fd) } }
    }

    private func replenishReserve() {
        reserve.withLock { fds in
            while fds.count < Self.reservedDescriptors {
                let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
                if fd < 0 { return }
                fds.append(fd)
            }
        }
    }

    /// Runs `call` (which returns a descriptor or -1 with errno set); on EMFILE it spends reserved descriptors one at a
    /// time, retrying after each. A failure leaves errno as the last call set it.
    private func withDescriptorReserve(_ call: () -> Int32) -> Int32 {
        var fd = call()
        while fd < 0 && errno == EMFILE {
            guard let spare = reserve.withLock({ $0.popLast() }) else {
                errno = EMFILE
                return fd
            }
            _ = Glibc.close(spare)
            fd = call()
        }
        if fd >= 0 && reserve.withLock({ $0.count }) < Self.reservedDescriptors {
            // Retake what was spent once descriptors are free again, so the next shortage finds the reserve full.
            let taken = fd
            replenishReserve()
            return taken
        }
        return fd
    }

    package var syncCount: Int { syncs.load(ordering: .relaxed) }

    private func fail(_ op: String, _ path: String) -> StorageError {
        .io(operation: op, path: path, errno: errno)
    }

    package func open(_ path: String, create: Bool) throws -> OpenFile {
        let flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0)
        let fd = withDescriptorReserve { Glibc.open(path, flags, 0o644) }
        if fd < 0 { throw fail("open", path) }
        return OpenFile(id: fd, path: path)
    }

    package func close(_ file: OpenFile) { _ = Glibc.close(file.id) }

    package func size(_ file: OpenFile) throws -> UInt64 {
        var st = stat()
        if fstat(file.id, &st) != 0 { throw fail("fstat", file.path) }
        return UInt64(st.st_size)
    }

    package func read(_ file: OpenFile, at offset: UInt64, count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        try buffer.withUnsafeMutableBytes { raw in
            while done < count {
                let n = pread(file.id, raw.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw fail("pread", file.path)
                }
                if n == 0 { break }
                done += n
            }
        }
        if done != count {
            throw StorageError.shortRead(path: file.path, offset: offset, expectedBytes: count, gotBytes: done)
        }
        return buffer
    }

    package func write(_ file: OpenFile, at offset: UInt64, _ bytes: [UInt8]) throws {
        var done = 0
        try bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let n = pwrite(file.id, raw.baseAddress! + done, raw.count - done, off_t(offset) + off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw fail("pwrite", file.path)
                }
                done += n
            }
        }
    }

    package func preallocate(_ file: OpenFile, bytes: UInt64) throws {
        let rc = posix_fallocate(file.id, 0, off_t(bytes))
        if rc != 0 { throw StorageError.io(operation: "fallocate", path: file.path, errno: rc) }
    }

    package func truncate(_ file: OpenFile, to bytes: UInt64) throws {
        if ftruncate(file.id, off_t(bytes)) != 0 { throw fail("ftruncate", file.path) }
    }

    package func sync(_ file: OpenFile) throws {
        syncs.add(1, ordering: .relaxed)
        if fdatasync(file.id) != 0 { throw fail("fdatasync", file.path) }
        if reserve.withLock({ $0.count }) < Self.reservedDescriptors { replenishReserve() }
    }

    package func syncWithMetadata(_ file: OpenFile) throws {
        syncs.add(1, ordering: .relaxed)
        if fsync(file.id) != 0 { throw fail("fsync", file.path) }
    }

    package func rename(_ from: String, to: String) throws {
        if Glibc.rename(from, to) != 0 { throw fail("rename", from) }
    }

    package func remove(_ path: String) throws {
        if unlink(path) != 0 { throw fail("unlink", path) }
    }

    package func syncDirectory(_ path: String) throws {
        let fd = withDescriptorReserve { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        if fd < 0 { throw fail("open directory", path) }
        defer { _ = Glibc.close(fd) }
        syncs.add(1, ordering: .relaxed)
        if fsync(fd) != 0 { throw fail("fsync directory", path) }
    }

    package func list(_ directory: String) throws -> [String] {
        let fd = withDescriptorReserve { Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw fail("opendir", directory) }
        guard let dir = fdopendir(fd) else {
            let failure = fail("opendir", directory)
            _ = Glibc.close(fd)
            throw failure
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Creates missing parents too, as etcd does for `--data-dir`.
    package func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o700) == 0 || errno == EEXIST { return }
        guard errno == ENOENT, let slash = path.lastIndex(of: "/"), slash != path.startIndex else { throw fail("mkdir", path) }
        try makeDirectory(String(path[..<slash]))
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw fail("mkdir", path) }
    }

    package func lock(_ path: String) throws -> OpenFile {
        let file = try open(path, create: true)
        if flock(file.id, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            close(file)
            if code == EWOULDBLOCK { throw StorageError.locked(path: path) }
            throw StorageError.io(operation: "flock", path: path, errno: code)
        }
        return file
    }
}
