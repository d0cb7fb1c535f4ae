// A key as etcd keeps it: the bytes the client sent, compared, hashed and ordered as bytes. Keys that differ only in
// invalid UTF-8, or in Unicode that Swift's String would call equal (é and e + ◌́), stay different keys.

package struct StoreKey: Hashable, Comparable, Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// The path's bytes: "/" for the root, "/a/b" below it once clean.
    package var bytes: [UInt8]

    package init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    package init(_ text: String) {
        bytes = Array(text.utf8)
    }

    package init(stringLiteral text: String) {
        self.init(text)
    }

    package static let root = StoreKey(bytes: [slash])
    package static let slash = UInt8(ascii: "/")

    /// Byte order, as Go compares strings.
    package static func < (a: StoreKey, b: StoreKey) -> Bool {
        a.bytes.lexicographicallyPrecedes(b.bytes)
    }

    /// For logs and messages; bytes that are not UTF-8 show as U+FFFD.
    package var description: String { String(decoding: bytes, as: UTF8.self) }

    package var isRoot: Bool { bytes == [Self.slash] }

    /// etcd's `path.Clean(path.Join("/", p))` on bytes: absolute, no empty, `.` or `..` components.
    package func cleaned() -> StoreKey {
        // Nearly every key arrives clean: one scan, no new arrays.
        if bytes.withUnsafeBufferPointer(Self.isClean) { return self }
        var components: [ArraySlice<UInt8>] = []
        for component in bytes.split(separator: Self.slash, omittingEmptySubsequences: true) {
            switch component.count {
            case 1 where component.first == UInt8(ascii: "."): continue
            case 2 where component.allSatisfy({ $0 == UInt8(ascii: ".") }): if !components.isEmpty { components.removeLast() }
            default: components.append(component)
            }
        }
        return Self.path(components)
    }

    /// Whether `cleaned` would return `path` as it is: "/", or "/"-separated components, none empty, "." or "..".
    package static func isClean(_ path: UnsafeBufferPointer<UInt8>) -> Bool {
        guard path.first == slash else { return false }
        guard path.count > 1 else { return true }
        var start = 1
        for end in 1...path.count where end == path.count || path[end] == slash {
            let length = end - start
            if length == 0 { return false }
            if length <= 2, path[start] == UInt8(ascii: "."), length == 1 || path[start + 1] == UInt8(ascii: ".") { return false }
            start = end + 1
        }
        return true
    }

    /// The names of a clean path's components, outermost first (none for the root).
    package var components: [[UInt8]] {
        bytes.split(separator: Self.slash).map(Array.init)
    }

    /// The path of the given components ("/" for none).
    static func path<C: Collection<UInt8>>(_ components: some Collection<C>) -> StoreKey {
        guard !components.isEmpty else { return root }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(components.reduce(0) { $0 + $1.count + 1 })
        for name in components {
            bytes.append(slash)
            bytes.append(contentsOf: name)
        }
        return StoreKey(bytes: bytes)
    }

    /// The path of a child named `name`.
    package func appending(_ name: some Collection<UInt8>) -> StoreKey {
        var child = self
        child.append(name)
        return child
    }

    /// Becomes the path of its child named `name` (in place: walking down a deep key this way costs its length).
    package mutating func append(_ name: some Collection<UInt8>) {
        if isRoot { bytes.removeAll(keepingCapacity: true) }
        bytes.append(Self.slash)
        bytes.append(contentsOf: name)
    }

    /// The number of components of a clean path (0 for the root).
    package var depth: Int {
        isRoot ? 0 : bytes.reduce(0) { $0 + ($1 == Self.slash ? 1 : 0) }
    }

    package func hasPrefix(_ prefix: StoreKey) -> Bool {
        bytes.starts(with: prefix.bytes)
    }
}

/// etcd's path cleaning for text (routing); keys use `StoreKey.cleaned()`.
package func cleanKeyPath(_ path: String) -> String {
    StoreKey(path).cleaned().description
}
