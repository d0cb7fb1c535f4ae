// The only way storage reaches files: a small protocol with a POSIX implementation and a simulated one.
// Every decision about what to write and when to sync is made above this line, so tests can crash the disk.

/// An open file; `path` travels with it so every error can name the file.
package struct OpenFile: Sendable, Hashable {
    package let id: Int32
    package let path: String
}

package protocol FileSystem: AnyObject, Sendable {
    /// Opens read-write, creating the file (empty) if `create` and it is missing.
    func open(_ path: String, create: Bool) throws -> OpenFile
    func close(_ file: OpenFile)
    func size(_ file: OpenFile) throws -> UInt64
    /// Returns exactly `count` bytes or throws `StorageError.shortRead`.
    func read(_ file: OpenFile, at offset: UInt64, count: Int) throws -> [UInt8]
    /// Writes all of `bytes` at `offset` or throws.
    func write(_ file: OpenFile, at offset: UInt64, _ bytes: [UInt8]) throws
    /// Reserves blocks up to `bytes` so appends do not allocate (and ENOSPC shows up early).
    func preallocate(_ file: OpenFile, bytes: UInt64) throws
    func truncate(_ file: OpenFile, to bytes: UInt64) throws
    /// fdatasync: data and the size, not timestamps.
    func sync(_ file: OpenFile) throws
    /// fsync: data and all metadata; used where a file shrinks (closing or truncating a segment), so no
    /// reading of fdatasync's rules decides whether a smaller size is durable.
    func syncWithMetadata(_ file: OpenFile) throws
    func rename(_ from: String, to: String) throws
    func remove(_ path: String) throws
    /// Makes creations, renames and removals in `path` durable.
    func syncDirectory(_ path: String) throws
    func list(_ directory: String) throws -> [String]
    func makeDirectory(_ path: String) throws
    /// Exclusive non-blocking flock on `path`; throws `StorageError.locked` when another holder has it.
    /// Closing the returned file releases the lock.
    func lock(_ path: String) throws -> OpenFile
    /// Number of `sync` calls so far: the group-commit tests and the benchmark count these.
    var syncCount: Int { get }
}
