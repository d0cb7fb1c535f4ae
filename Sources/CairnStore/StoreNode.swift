// The v2 key space's tree: immutable nodes whose children live in a persistent hash trie, so a write copies
// only the path it touches and any root is a consistent point-in-time view that other threads may read.
import HashTreeCollections

package final class StoreNode: Sendable {
    /// The user-visible path: "/" for the root, "/a/b" below it.
    package let key: String
    /// The value of a key; nil for a directory.
    package let value: String?
    package let children: TreeDictionary<String, StoreNode>
    package let createdIndex: UInt64
    package let modifiedIndex: UInt64
    /// When the node expires, in cluster-time nanoseconds since the Unix epoch; nil for permanent nodes.
    package let expiration: Int64?

    package init(key: String, value: String?, children: TreeDictionary<String, StoreNode> = [:], createdIndex: UInt64,
                 modifiedIndex: UInt64, expiration: Int64?) {
        self.key = key
        self.value = value
        self.children = children
        self.createdIndex = createdIndex
        self.modifiedIndex = modifiedIndex
        self.expiration = expiration
    }

    package var isDirectory: Bool { value == nil }

    /// Hidden nodes (a name starting with `_`) are left out of directory listings, as etcd does.
    package var isHidden: Bool { name.hasPrefix("_") }

    package var name: Substring { key.split(separator: "/").last ?? "" }

    func with(children: TreeDictionary<String, StoreNode>) -> StoreNode {
        StoreNode(key: key, value: value, children: children, createdIndex: createdIndex, modifiedIndex: modifiedIndex,
                  expiration: expiration)
    }

    /// The visible children, sorted by key (etcd lists in map order; a stable order is a valid one and diffable).
    package func visibleChildren() -> [StoreNode] {
        children.values.filter { !$0.isHidden }.sorted { $0.key < $1.key }
    }

    /// Seconds left before expiry, rounded up as etcd does (0 when permanent or already due).
    package func ttlSeconds(now: Int64) -> Int64 {
        guard let expiration else { return 0 }
        let left = expiration - now
        guard left > 0 else { return 0 }
        return (left + 999_999_999) / 1_000_000_000
    }
}

/// etcd's `path.Clean(path.Join("/", p))`: absolute, no empty, `.` or `..` components.
package func cleanKeyPath(_ path: String) -> String {
    var components: [Substring] = []
    for component in path.split(separator: "/", omittingEmptySubsequences: true) {
        switch component {
        case ".": continue
        case "..": if !components.isEmpty { components.removeLast() }
        default: components.append(component)
        }
    }
    return "/" + components.joined(separator: "/")
}

func keyComponents(_ cleanPath: String) -> [String] {
    cleanPath.split(separator: "/").map(String.init)
}
