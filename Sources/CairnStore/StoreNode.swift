// The v2 key space's tree: nodes whose children live in a persistent hash trie, so a write copies only the path it
// touches (and only the shared part of it) and any root handed out is a consistent point-in-time view other threads read.
import HashTreeCollections
import Synchronization

package final class StoreNode: Sendable {
    /// The node's own name, the bytes of the last component of its path (empty for the root). A node does not hold
    /// its path: the path is the names on the way down, so a key of n components costs memory linear in n.
    package let name: [UInt8]
    /// The value of a key; nil for a directory.
    package let value: String?
    /// Changed only while no other reference to the node exists: by a write through `uniqueChild`/`setChild` (on a
    /// node only the key space holds, which no view or other thread can see), and by `deinit`, for the graveyard.
    package nonisolated(unsafe) private(set) var children: TreeDictionary<[UInt8], StoreNode>
    package let createdIndex: UInt64
    package let modifiedIndex: UInt64
    /// When the node expires, in cluster-time nanoseconds since the Unix epoch; nil for permanent nodes.
    package let expiration: Int64?

    package init(name: [UInt8], value: String?, children: TreeDictionary<[UInt8], StoreNode> = [:], createdIndex: UInt64,
                 modifiedIndex: UInt64, expiration: Int64?) {
        self.name = name
        self.value = value
        self.children = children
        self.createdIndex = createdIndex
        self.modifiedIndex = modifiedIndex
        self.expiration = expiration
    }

    deinit {
        // A node without children releases nothing further and takes no lock.
        if !children.isEmpty { NodeGraveyard.bury(&children) }
    }

    package var isDirectory: Bool { value == nil }

    /// Hidden nodes (a name starting with `_`) are left out of directory listings, as etcd does.
    package var isHidden: Bool { name.first == UInt8(ascii: "_") }

    /// The child directory `name`, made one that only this node references so a write may change it in place:
    /// created with `createIndex` when missing, copied when anything else holds it. Call only on a node no one else
    /// references (`KeySpace` checks with `isKnownUniquelyReferenced`).
    func uniqueChild(_ name: [UInt8], createIndex: UInt64) -> StoreNode {
        Self.makeUnique(&children[name], name: name, createIndex: createIndex)
    }

    /// The slot is yielded by the trie in place (its value moved out), so the count of references is the node's own.
    private static func makeUnique(_ slot: inout StoreNode?, name: [UInt8], createIndex: UInt64) -> StoreNode {
        if slot == nil {
            slot = StoreNode(name: name, value: nil, createdIndex: createIndex, modifiedIndex: createIndex, expiration: nil)
        } else if !isKnownUniquelyReferenced(&slot!) {
            slot = slot!.with(children: slot!.children)
        }
        return slot!
    }

    /// Sets (nil: removes) the child `name` in place; only on a node no one else references, as `uniqueChild`.
    func setChild(_ name: [UInt8], _ node: StoreNode?) {
        children[name] = node
    }

    func with(children: TreeDictionary<[UInt8], StoreNode>) -> StoreNode {
        StoreNode(name: name, value: value, children: children, createdIndex: createdIndex, modifiedIndex: modifiedIndex,
                  expiration: expiration)
    }

    /// The visible children, sorted by name (etcd lists in map order; a stable order is a valid one and diffable).
    package func visibleChildren() -> [StoreNode] {
        children.values.filter { !$0.isHidden }.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }

    /// Seconds left before expiry, rounded up as etcd does (0 when permanent or already due).
    package func ttlSeconds(now: Int64) -> Int64 {
        guard let expiration else { return 0 }
        // Saturating: an expiration read from a log or snapshot is not trusted to sit near `now`.
        let (left, overflow) = expiration.subtractingReportingOverflow(now)
        if overflow { return expiration > now ? Int64.max / 1_000_000_000 : 0 }
        guard left > 0 else { return 0 }
        return left / 1_000_000_000 + (left % 1_000_000_000 == 0 ? 0 : 1)
    }
}

/// Releasing a node releases its children, then theirs: a recursion as deep as the tree, which a key of 30,000
/// components turns into a stack overflow. A dying node hands its children here instead; one thread at a time
/// releases them in a loop, and nodes dying meanwhile (on that thread or another) only add theirs to the list.
enum NodeGraveyard {
    private struct State {
        var buried: [TreeDictionary<[UInt8], StoreNode>] = []
        var draining = false
    }

    private static let state = Mutex(State())

    /// Takes `children` (leaving it empty), so the list holds the only reference: its release, in the drain, is the
    /// one that frees the nodes.
    static func bury(_ children: inout TreeDictionary<[UInt8], StoreNode>) {
        let drains = state.withLock { state in
            state.buried.append(children)
            children = [:]
            guard !state.draining else { return false }
            state.draining = true
            return true
        }
        guard drains else { return }
        // Each dictionary is released at the end of its iteration, outside the lock (its nodes' deinits bury).
        while let next = state.withLock({ state in
            if let last = state.buried.popLast() { return last }
            state.draining = false
            return nil
        }) {
            _ = next
        }
    }
}

/// Every node of a subtree with its path, in pre-order, without recursion. The paths are built in one shared buffer
/// and handed out one at a time, so walking a deep chain costs memory linear in its depth.
struct SubtreeWalk {
    /// The nodes still to visit, each with its depth below the top and the length of its parent's path in `path`.
    private var pending: [(node: StoreNode, depth: Int, parentPathBytes: Int)]
    private var path: [UInt8]
    private let sorted: Bool

    /// `topPath` is the top node's path ("/" for the root); with `sorted`, children come in name order.
    init(_ top: StoreNode, path topPath: StoreKey, sorted: Bool) {
        self.sorted = sorted
        let parent = top.name.isEmpty ? [] : Array(topPath.bytes.dropLast(top.name.count + 1))
        path = parent
        pending = [(top, 0, parent.count)]
    }

    /// The next node, its depth below the top, and its path's bytes (empty for the root). Use the path before the
    /// next call: keeping it would make the walk copy the buffer.
    mutating func next() -> (node: StoreNode, depth: Int, path: ArraySlice<UInt8>)? {
        guard let (node, depth, parentPathBytes) = pending.popLast() else { return nil }
        path.removeSubrange(parentPathBytes...)
        if !node.name.isEmpty {
            path.append(UInt8(ascii: "/"))
            path.append(contentsOf: node.name)
        }
        let children = sorted ? node.children.values.sorted { $1.name.lexicographicallyPrecedes($0.name) } : Array(node.children.values)
        for child in children { pending.append((child, depth + 1, path.count)) }
        return (node, depth, path[...])
    }
}

/// The nodes a write removed — a replaced or deleted key, or a directory and all below it — for the watchers on
/// their paths. Paths are made only when asked for, at the depths asked for: all of a deep directory's paths at
/// once would be quadratic in its depth.
package struct RemovedNodes: Sendable {
    private let top: (node: StoreNode, path: StoreKey)?

    package static let none = RemovedNodes(top: nil)

    private init(top: (node: StoreNode, path: StoreKey)?) {
        self.top = top
    }

    init(_ node: StoreNode, path: StoreKey) {
        top = (node, path)
    }

    /// Calls `body` with the path of each removed node whose depth is a key of `depths` (the depths at which
    /// someone watches): the walk is linear in the subtree, and only those paths are made.
    package func forEachPath(atDepthsIn depths: [Int: Int], _ body: (StoreKey) -> Void) {
        guard let top, !depths.isEmpty else { return }
        let topDepth = top.path.depth
        var walk = SubtreeWalk(top.node, path: top.path, sorted: false)
        while let (_, depth, path) = walk.next() {
            guard depths[topDepth + depth] != nil else { continue }
            body(path.isEmpty ? .root : StoreKey(bytes: Array(path)))
        }
    }
}
