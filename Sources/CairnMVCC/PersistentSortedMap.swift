// An immutable sorted map (a B-tree with path copying): an insert copies only the nodes on one root-to-leaf path,
// so every older map stays valid and can be read from any thread while the owner goes on writing.
// Height is logarithmic in the entry count (at most ~8 for a billion entries), so its recursion is bounded by design.

package struct PersistentSortedMap<Key: Comparable & Sendable, Value: Sendable>: Sendable {
    /// Keys per node at most; a node splits when an insert passes it.
    static var nodeKeysMax: Int { 32 }

    final class Node: Sendable {
        let keys: [Key]
        let values: [Value]
        /// Empty for a leaf; otherwise `keys.count + 1` subtrees, `children[i]` holding the keys before `keys[i]`.
        let children: [Node]

        init(keys: [Key], values: [Value], children: [Node] = []) {
            self.keys = keys
            self.values = values
            self.children = children
        }

        var isLeaf: Bool { children.isEmpty }

        /// The first position whose key is not less than `key`.
        func lowerBound(_ key: Key) -> Int {
            var low = 0
            var high = keys.count
            while low < high {
                let mid = (low + high) / 2
                if keys[mid] < key { low = mid + 1 } else { high = mid }
            }
            return low
        }
    }

    private var root: Node?
    package private(set) var count: Int

    package init() {
        root = nil
        count = 0
    }

    package var isEmpty: Bool { count == 0 }

    package subscript(key: Key) -> Value? {
        var node = root
        while let current = node {
            let index = current.lowerBound(key)
            if index < current.keys.count && current.keys[index] == key { return current.values[index] }
            node = current.isLeaf ? nil : current.children[index]
        }
        return nil
    }

    /// Sets `key` to `value`, returning the value it replaces.
    @discardableResult
    package mutating func set(_ key: Key, _ value: Value) -> Value? {
        guard let root else {
            self.root = Node(keys: [key], values: [value])
            count = 1
            return nil
        }
        let (result, replaced) = Self.insert(key, value, into: root)
        switch result {
        case .one(let node): self.root = node
        case .split(let left, let separatorKey, let separatorValue, let right):
            self.root = Node(keys: [separatorKey], values: [separatorValue], children: [left, right])
        }
        if replaced == nil { count += 1 }
        return replaced
    }

    private enum Inserted {
        case one(Node)
        case split(Node, Key, Value, Node)
    }

    private static func insert(_ key: Key, _ value: Value, into node: Node) -> (Inserted, Value?) {
        let index = node.lowerBound(key)
        var keys = node.keys
        var values = node.values
        if index < keys.count && keys[index] == key {
            let old = values[index]
            values[index] = value
            return (.one(Node(keys: keys, values: values, children: node.children)), old)
        }
        var children = node.children
        var replaced: Value?
        if node.isLeaf {
            keys.insert(key, at: index)
            values.insert(value, at: index)
        } else {
            let (child, old) = insert(key, value, into: children[index])
            replaced = old
            switch child {
            case .one(let updated): children[index] = updated
            case .split(let left, let separatorKey, let separatorValue, let right):
                keys.insert(separatorKey, at: index)
                values.insert(separatorValue, at: index)
                children[index] = left
                children.insert(right, at: index + 1)
            }
        }
        guard keys.count > nodeKeysMax else { return (.one(Node(keys: keys, values: values, children: children)), replaced) }
        let mid = keys.count / 2
        let left = Node(keys: Array(keys[..<mid]), values: Array(values[..<mid]),
                        children: children.isEmpty ? [] : Array(children[...mid]))
        let right = Node(keys: Array(keys[(mid + 1)...]), values: Array(values[(mid + 1)...]),
                         children: children.isEmpty ? [] : Array(children[(mid + 1)...]))
        return (.split(left, keys[mid], values[mid], right), replaced)
    }

    /// Visits entries in key order from the first key not less than `start` (from the first entry when nil) until
    /// `body` returns false. Iterative: a stack of (node, position) as deep as the tree.
    package func forEach(from start: Key? = nil, _ body: (Key, Value) throws -> Bool) rethrows {
        guard let root else { return }
        var stack: [(node: Node, index: Int)] = []
        var node = root
        while true {
            let index = start.map { node.lowerBound($0) } ?? 0
            stack.append((node, index))
            if node.isLeaf { break }
            node = node.children[index]
        }
        while let top = stack.popLast() {
            let (node, index) = top
            guard index < node.keys.count else { continue }
            if try !body(node.keys[index], node.values[index]) { return }
            stack.append((node, index + 1))
            if !node.isLeaf {
                var child = node.children[index + 1]
                while true {
                    stack.append((child, 0))
                    if child.isLeaf { break }
                    child = child.children[0]
                }
            }
        }
    }

    /// Visits entries in descending key order from the last key less than `end` (from the last entry when nil).
    package func forEachReversed(before end: Key? = nil, _ body: (Key, Value) throws -> Bool) rethrows {
        guard let root else { return }
        // (node, count): the entries of `node` still to visit are those before `count`.
        var stack: [(node: Node, count: Int)] = []
        var node = root
        while true {
            let count = end.map { node.lowerBound($0) } ?? node.keys.count
            stack.append((node, count))
            if node.isLeaf { break }
            node = node.children[count]
        }
        while let top = stack.popLast() {
            let (node, count) = top
            guard count > 0 else { continue }
            if try !body(node.keys[count - 1], node.values[count - 1]) { return }
            stack.append((node, count - 1))
            if !node.isLeaf {
                var child = node.children[count - 1]
                while true {
                    stack.append((child, child.keys.count))
                    if child.isLeaf { break }
                    child = child.children[child.keys.count]
                }
            }
        }
    }

    /// A map of `entries`, which must be sorted by key without repeats, built level by level in linear time
    /// (compaction rebuilds a whole history this way rather than by one insert per entry).
    package init(sorted entries: [(Key, Value)]) {
        count = entries.count
        guard !entries.isEmpty else {
            root = nil
            return
        }
        let fanout = Self.nodeKeysMax
        // Leaves: groups of entries with one entry between neighbouring groups, which moves up as a separator.
        var level: [Node] = []
        var separators: [(Key, Value)] = []
        let leafCount = (entries.count + fanout + 1) / (fanout + 1)
        let perLeaf = (entries.count - (leafCount - 1)) / leafCount
        var extra = (entries.count - (leafCount - 1)) % leafCount
        var position = 0
        for leaf in 0..<leafCount {
            let size = perLeaf + (extra > 0 ? 1 : 0)
            if extra > 0 { extra -= 1 }
            let slice = entries[position..<(position + size)]
            level.append(Node(keys: slice.map(\.0), values: slice.map(\.1)))
            position += size
            if leaf < leafCount - 1 {
                separators.append(entries[position])
                position += 1
            }
        }
        // Upper levels: groups of up to fanout + 1 nodes, with the separators between them inside the parent.
        while level.count > 1 {
            let parentCount = (level.count + fanout) / (fanout + 1)
            let perParent = level.count / parentCount
            var extraChildren = level.count % parentCount
            var parents: [Node] = []
            var upper: [(Key, Value)] = []
            var child = 0
            for parent in 0..<parentCount {
                let size = perParent + (extraChildren > 0 ? 1 : 0)
                if extraChildren > 0 { extraChildren -= 1 }
                let inner = separators[child..<(child + size - 1)]
                parents.append(Node(keys: inner.map(\.0), values: inner.map(\.1), children: Array(level[child..<(child + size)])))
                child += size
                if parent < parentCount - 1 { upper.append(separators[child - 1]) }
            }
            level = parents
            separators = upper
        }
        root = level[0]
    }
}
