// The etcd v2 key space as a deterministic state machine: the same commands at the same indexes and cluster
// times give the same tree, events and errors on every replica. Semantics follow etcd 3.4's v2 store exactly.
import HashTreeCollections
import HeapModule

package struct KeySpace: Sendable {
    /// The longest key path accepted, in bytes (as over HTTP/1.1, whose request line is at most 64 KiB): a bound on
    /// the work one key can cause, far above any key etcd's users write.
    package static let keyBytesMax = 64 * 1024
    package static let keyTooLongCause = "key is longer than \(keyBytesMax) bytes"

    package private(set) var root: StoreNode
    package private(set) var currentIndex: UInt64
    private var expiries = Heap<Expiry>()

    private struct Expiry: Comparable, Sendable {
        var time: Int64
        var key: StoreKey
        static func < (a: Expiry, b: Expiry) -> Bool { (a.time, a.key) < (b.time, b.key) }
    }

    /// A fresh key space whose index starts where etcd's does after its own bootstrap writes.
    package init(initialIndex: UInt64 = 0) {
        root = StoreNode(name: [], value: nil, createdIndex: 0, modifiedIndex: 0, expiration: nil)
        currentIndex = initialIndex
    }

    /// Restores a key space from a snapshot's tree.
    package init(root: StoreNode, currentIndex: UInt64) {
        self.root = root
        self.currentIndex = currentIndex
        var walk = SubtreeWalk(root, path: .root, sorted: false)
        while let (node, _, path) = walk.next() {
            if let expiration = node.expiration { expiries.insert(Expiry(time: expiration, key: StoreKey(bytes: Array(path)))) }
        }
    }

    /// The earliest expiration of any node, so the leader knows when to propose an expire command.
    package var nextExpiration: Int64? {
        mutating get {
            while let first = expiries.min {
                if case .success(let node) = lookup(first.key), node.expiration == first.time { return first.time }
                expiries.removeMin()
            }
            return nil
        }
    }

    // MARK: - Reads

    /// The node at `path` with etcd's errors: a file on the way is "Not a directory", a missing node "Key not found".
    package func lookup(_ path: StoreKey) -> Result<StoreNode, StoreError> {
        Self.lookup(path, in: root, currentIndex: currentIndex)
    }

    /// The same lookup in any published root (reads run on any thread against an immutable root).
    package static func lookup(_ path: StoreKey, in root: StoreNode, currentIndex: UInt64) -> Result<StoreNode, StoreError> {
        var node = root
        let components = path.cleaned().components
        for (depth, name) in components.enumerated() {
            guard node.isDirectory else { return .failure(StoreError(.notDir, StoreKey.path(components[..<depth]), index: currentIndex)) }
            guard let child = node.children[name] else {
                return .failure(StoreError(.keyNotFound, StoreKey.path(components[...depth]), index: currentIndex))
            }
            node = child
        }
        return .success(node)
    }

    // MARK: - Writes

    /// Applies one command at the next index. Successful writes return their event and the nodes they removed
    /// (watchers on their paths are told, as etcd tells them, even when not recursive).
    package mutating func apply(_ command: StoreCommand, now: Int64) -> Result<(event: StoreEvent, removed: RemovedNodes), StoreError> {
        guard command.path.bytes.count <= Self.keyBytesMax else {
            return .failure(StoreError(.invalidField, Self.keyTooLongCause, index: currentIndex))
        }
        let expiration: Int64? = command.expiration == 0 ? nil : command.expiration
        switch command.method {
        case .put:
            switch command.prevExist {
            case true?:
                if command.prevIndex == 0 && command.prevValue.isEmpty {
                    return update(command.path, value: command.value, expiration: expiration, refresh: command.refresh, now: now)
                }
                return compareAndSwap(command, expiration: expiration, now: now)
            case false?:
                return create(command.path, dir: command.dir, value: command.value, unique: false, expiration: expiration, now: now)
            case nil:
                if command.prevIndex > 0 || !command.prevValue.isEmpty { return compareAndSwap(command, expiration: expiration, now: now) }
                return set(command.path, dir: command.dir, value: command.value, expiration: expiration, refresh: command.refresh, now: now)
            }
        case .post:
            return create(command.path, dir: command.dir, value: command.value, unique: true, expiration: expiration, now: now)
        case .delete:
            if command.prevIndex > 0 || !command.prevValue.isEmpty { return compareAndDelete(command, now: now) }
            return delete(command.path, dir: command.dir || command.recursive, recursive: command.recursive, now: now)
        case .expire:
            return .failure(StoreError(.invalidField, "expire is applied with expire(upTo:)", index: currentIndex))
        }
    }

    /// Removes every node due at or before `time`, one event (and index) each, in expiry order.
    package mutating func expire(upTo time: Int64) -> [(event: StoreEvent, removed: RemovedNodes)] {
        var results: [(StoreEvent, RemovedNodes)] = []
        while let first = expiries.min, first.time <= time {
            expiries.removeMin()
            guard case .success(let node) = lookup(first.key), node.expiration == first.time else { continue }
            currentIndex += 1
            var view = NodeView(key: first.key, value: nil, isDirectory: node.isDirectory, createdIndex: node.createdIndex,
                                modifiedIndex: currentIndex)
            view.isDirectory = node.isDirectory
            replaceNode(first.key, createIndex: currentIndex) { _ in nil }
            results.append((StoreEvent(action: .expire, node: view, prevNode: NodeView(node, key: first.key, now: time), etcdIndex: currentIndex),
                            RemovedNodes(node, path: first.key)))
        }
        return results
    }

    private mutating func set(_ path: StoreKey, dir: Bool, value: String, expiration: Int64?, refresh: Bool, now: Int64)
        -> Result<(event: StoreEvent, removed: RemovedNodes), StoreError>
    {
        // Without refresh, the create's own walk finds what a lookup here would (a file on the way: "Not a directory").
        var value = value
        if refresh {
            switch lookup(path) {
            case .failure(let error): return .failure(error)
            case .success(let node): value = node.value ?? ""
            }
        }
        return internalCreate(path, dir: dir, value: value, unique: false, replace: true, expiration: expiration, action: .set, now: now)
            .map { result in
                var event = result.event
                if refresh { event.isRefresh = true }
                return (event, result.removed)
            }
    }

    private mutating func create(_ path: StoreKey, dir: Bool, value: String, unique: Bool, expiration: Int64?, now: Int64)
        -> Result<(event: StoreEvent, removed: RemovedNodes), StoreError>
    {
        internalCreate(path, dir: dir, value: value, unique: unique, replace: false, expiration: expiration, action: .create, now: now)
    }

    private mutating func internalCreate(_ path: StoreKey, dir: Bool, value: String, unique: Bool, replace: Bool,
                                         expiration: Int64?, action: StoreAction, now: Int64)
        -> Result<(event: StoreEvent, removed: RemovedNodes), StoreError>
    {
        let nextIndex = currentIndex + 1
        var nodePath = path
        if unique { nodePath.bytes += [StoreKey.slash] + Array(zeroPadded(nextIndex).utf8) }
        nodePath = nodePath.cleaned()
        guard !nodePath.isRoot else { return .failure(StoreError(.rootReadOnly, "/", index: currentIndex)) }
        let components = nodePath.components
        let found: StoreNode?
        switch existingNode(components) {
        case .failure(let error): return .failure(error)
        case .success(let node): found = node
        }
        var prevNode: NodeView?
        var removed = RemovedNodes.none
        if let existing = found {
            guard replace else { return .failure(StoreError(.nodeExist, nodePath, index: currentIndex)) }
            guard !existing.isDirectory else { return .failure(StoreError(.notFile, nodePath, index: currentIndex)) }
            prevNode = NodeView(existing, key: nodePath, now: now)
            removed = RemovedNodes(existing, path: nodePath)
        }
        let node = StoreNode(name: components.last!, value: dir ? nil : value, createdIndex: nextIndex, modifiedIndex: nextIndex,
                             expiration: expiration)
        replaceNode(components, createIndex: nextIndex) { _ in node }
        if let expiration { expiries.insert(Expiry(time: expiration, key: nodePath)) }
        currentIndex = nextIndex
        let event = StoreEvent(action: action, node: NodeView(node, key: nodePath, now: now), prevNode: prevNode, etcdIndex: currentIndex)
        return .success((event, removed))
    }

    private mutating func update(_ path: StoreKey, value: String, expiration: Int64?, refresh: Bool, now: Int64)
        -> Result<(event: StoreEvent, removed: RemovedNodes), StoreError>
    {
        let nodePath: StoreKey, node: StoreNode
        switch writableNode(path) {
        case .failure(let error): return .failure(error)
        case .success(let found): (nodePath, node) = found
        }
        if node.isDirectory && !value.isEmpty { return .failure(StoreError(.notFile, nodePath, index: currentIndex)) }
        let nextIndex = currentIndex + 1
        // etcd writes no value into a directory, so its modifiedIndex stays; the event still shows the new index.
        let updated = StoreNode(name: node.name, value: node.isDirectory ? nil : (refresh ? node.value : value), children: node.children,
                                createdIndex: node.createdIndex, modifiedIndex: node.isDirectory ? node.modifiedIndex : nextIndex,
                                expiration: expiration)
        replaceNode(nodePath, createIndex: nextIndex) { _ in updated }
        if let expiration { expiries.insert(Expiry(time: expiration, key: nodePath)) }
        currentIndex = nextIndex
        var shown = NodeView(updated, key: nodePath, now: now)
        shown.modifiedIndex = nextIndex
        var event = StoreEvent(action: .update, node: shown, prevNode: NodeView(node, key: nodePath, now: now), etcdIndex: currentIndex)
        event.isRefresh = refresh
        return .success((event, .none))
    }

    private mutating func compareAndSwap(_ command: StoreCommand, expiration: Int64?, now: Int64)
        -> Result<(event: StoreEvent, removed: RemovedNodes), StoreError>
    {
        let nodePath: StoreKey, node: StoreNode
        switch writableNode(command.path).flatMap({ found in comparedFile(found.path, command).map { (found.path, $0) } }) {
        case .failure(let error): return .failure(error)
        case .success(let found): (nodePath, node) = found
        }
        currentIndex += 1
        let updated = StoreNode(name: node.name, value: command.refresh ? node.value : command.value, createdIndex: node.createdIndex,
                                modifiedIndex: currentIndex, expiration: expiration)
        replaceNode(nodePath, createIndex: currentIndex) { _ in updated }
        if let expiration { expiries.insert(Expiry(time: expiration, key: nodePath)) }
        var event = StoreEvent(action: .compareAndSwap, node: NodeView(updated, key: nodePath, now: now),
                               prevNode: NodeView(node, key: nodePath, now: now), etcdIndex: currentIndex)
        event.isRefresh = command.refresh
        return .success((event, .none))
    }

    private mutating func delete(_ path: StoreKey, dir: Bool, recursive: Bool, now: Int64)
        -> Result<(event: StoreEvent, removed: RemovedNodes), StoreError>
    {
        let nodePath: StoreKey, node: StoreNode
        switch writableNode(path) {
        case .failure(let error): return .failure(error)
        case .success(let found): (nodePath, node) = found
        }
        if node.isDirectory {
            guard dir else { return .failure(StoreError(.notFile, nodePath, index: currentIndex)) }
            guard node.children.isEmpty || recursive else { return .failure(StoreError(.dirNotEmpty, nodePath, index: currentIndex)) }
        }
        currentIndex += 1
        replaceNode(nodePath, createIndex: currentIndex) { _ in nil }
        let view = NodeView(key: nodePath, value: nil, isDirectory: node.isDirectory, createdIndex: node.createdIndex, modifiedIndex: currentIndex)
        return .success((StoreEvent(action: .delete, node: view, prevNode: NodeView(node, key: nodePath, now: now), etcdIndex: currentIndex),
                         RemovedNodes(node, path: nodePath)))
    }

    private mutating func compareAndDelete(_ command: StoreCommand, now: Int64) -> Result<(event: StoreEvent, removed: RemovedNodes), StoreError> {
        let nodePath = command.path.cleaned()
        let node: StoreNode
        switch comparedFile(nodePath, command) {
        case .failure(let error): return .failure(error)
        case .success(let found): node = found
        }
        currentIndex += 1
        replaceNode(nodePath, createIndex: currentIndex) { _ in nil }
        let view = NodeView(key: nodePath, value: nil, isDirectory: false, createdIndex: node.createdIndex, modifiedIndex: currentIndex)
        return .success((StoreEvent(action: .compareAndDelete, node: view, prevNode: NodeView(node, key: nodePath, now: now), etcdIndex: currentIndex),
                         RemovedNodes(node, path: nodePath)))
    }

    // MARK: - Helpers

    /// The node a create would replace (nil: none), after checking that everything on the way to it is a directory
    /// (missing ones are created with its index). A function of its own so no reference to a directory on the way
    /// outlives the walk: the write then changes them in place.
    private func existingNode(_ components: [[UInt8]]) -> Result<StoreNode?, StoreError> {
        var walker = root
        for (depth, name) in components.dropLast().enumerated() {
            guard let child = walker.children[name] else { return .success(nil) }
            guard child.isDirectory else { return .failure(StoreError(.notDir, StoreKey.path(components[...depth]), index: currentIndex)) }
            walker = child
        }
        return .success(components.last.flatMap { walker.children[$0] })
    }

    /// The existing node a write changes in place, with its clean path; the root is read-only.
    private func writableNode(_ path: StoreKey) -> Result<(path: StoreKey, node: StoreNode), StoreError> {
        let nodePath = path.cleaned()
        guard !nodePath.isRoot else { return .failure(StoreError(.rootReadOnly, "/", index: currentIndex)) }
        return lookup(nodePath).map { (nodePath, $0) }
    }

    /// The file a compare-and-swap or compare-and-delete acts on, once its prevValue and prevIndex match.
    /// (The root has no user-visible path, so etcd names no cause for it.)
    private func comparedFile(_ nodePath: StoreKey, _ command: StoreCommand) -> Result<StoreNode, StoreError> {
        lookup(nodePath).flatMap { node in
            guard !node.isDirectory else { return .failure(StoreError(.notFile, nodePath.isRoot ? StoreKey(bytes: []) : nodePath, index: currentIndex)) }
            if let cause = compareFailure(node, prevValue: command.prevValue, prevIndex: command.prevIndex) {
                return .failure(StoreError(.testFailed, cause, index: currentIndex))
            }
            return .success(node)
        }
    }

    /// etcd's compare: an empty prevValue or a zero prevIndex always matches; the cause names what did not.
    private func compareFailure(_ node: StoreNode, prevValue: String, prevIndex: UInt64) -> String? {
        let indexMatch = prevIndex == 0 || node.modifiedIndex == prevIndex
        // Byte for byte, as Go compares strings (Swift's == would match é with e + ◌́).
        let valueMatch = prevValue.isEmpty || node.value.map { $0.utf8.elementsEqual(prevValue.utf8) } == true
        switch (valueMatch, indexMatch) {
        case (true, true): return nil
        case (true, false): return "[\(prevIndex) != \(node.modifiedIndex)]"
        case (false, true): return "[\(prevValue) != \(node.value ?? "")]"
        case (false, false): return "[\(prevValue) != \(node.value ?? "")] [\(prevIndex) != \(node.modifiedIndex)]"
        }
    }

    /// Replaces the node at `path` with `change(old)` (nil removes it); missing directories on the way are created
    /// with `createIndex`, as etcd's walk creates them. A loop down the path: no recursion, however deep the key.
    /// Nodes only this key space references are changed in place; one anything else holds (a published root, a
    /// snapshot's, a reader's node) is copied first, so every root handed out stays as it was. A batch of writes
    /// thus copies a path once, not once per write.
    private mutating func replaceNode(_ path: StoreKey, createIndex: UInt64, _ change: (StoreNode?) -> StoreNode?) {
        replaceNode(path.components, createIndex: createIndex, change)
    }

    private mutating func replaceNode(_ components: [[UInt8]], createIndex: UInt64, _ change: (StoreNode?) -> StoreNode?) {
        guard let last = components.last else { return }
        if !isKnownUniquelyReferenced(&root) { root = root.with(children: root.children) }
        var directory = root
        for name in components.dropLast() { directory = directory.uniqueChild(name, createIndex: createIndex) }
        directory.setChild(last, change(directory.children[last]))
    }
}

/// In-order keys are the index, zero-padded to 20 digits (etcd's `%020s`).
func zeroPadded(_ index: UInt64) -> String {
    let digits = String(index)
    return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
}
