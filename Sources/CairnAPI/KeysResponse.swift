// etcd's v2 answers as bytes: events, errors and listings, byte for byte as etcd 3.4 writes them
// (field order, omitted empty fields, trailing newline). Listings stream: a large directory is written piece by piece.
import CairnStore

package enum KeysResponse {
    /// The body of a successful write or a watch event (Go's `json.Encoder.Encode`, so it ends with a newline).
    package static func event(_ event: StoreEvent, noValueOnSuccess: Bool = false) -> [UInt8] {
        var json = GoJSON()
        json.raw("{\"action\":")
        json.string(event.action.rawValue)
        let hideNodes = noValueOnSuccess && [.set, .compareAndSwap, .create, .update].contains(event.action)
        if !hideNodes {
            json.raw(",\"node\":")
            render(event.node, into: &json)
            if let prev = event.prevNode {
                json.raw(",\"prevNode\":")
                render(prev, into: &json)
            }
        }
        json.raw("}\n")
        return json.take()
    }

    /// etcd's error body: `{"errorCode":...,"message":...,"cause":...,"index":...}` and a newline.
    package static func error(_ error: StoreError) -> [UInt8] {
        var json = GoJSON()
        json.raw("{\"errorCode\":")
        json.number(error.code.rawValue)
        json.raw(",\"message\":")
        json.string(error.code.message)
        if !error.causeBytes.isEmpty {
            json.raw(",\"cause\":")
            json.string(utf8: error.causeBytes)
        }
        json.raw(",\"index\":")
        json.number(error.index)
        json.raw("}\n")
        return json.take()
    }

    static func render(_ node: NodeView, into json: inout GoJSON) {
        renderOpening(key: node.key.bytes, value: node.isDirectory ? nil : node.value, isDirectory: node.isDirectory,
                      expiration: node.expiration, ttl: node.ttl, into: &json)
        renderIndexes(modified: node.modifiedIndex, created: node.createdIndex, into: &json)
    }

    /// A node's fields up to its children, in Go's field order. Empty fields are left out, as Go's `omitempty` does
    /// (an event for a deleted file has neither value nor dir).
    static func renderOpening(key: some Collection<UInt8>, value: String?, isDirectory: Bool, expiration: Int64?, ttl: Int64,
                              into json: inout GoJSON) {
        let hasKey = !key.elementsEqual([StoreKey.slash]) && !key.isEmpty
        json.raw("{")
        if hasKey {
            json.raw("\"key\":")
            json.string(utf8: key)
        }
        if let value {
            json.raw(hasKey ? ",\"value\":" : "\"value\":")
            json.string(value)
        }
        if isDirectory {
            json.raw(hasKey ? ",\"dir\":true" : "\"dir\":true")
        }
        if let expiration {
            json.raw(",\"expiration\":")
            json.time(unixNanoseconds: expiration)
            if ttl != 0 {
                json.raw(",\"ttl\":")
                json.number(ttl)
            }
        }
    }

    static func renderIndexes(modified: UInt64, created: UInt64, into json: inout GoJSON) {
        if modified != 0 {
            json.raw(",\"modifiedIndex\":")
            json.number(modified)
        }
        if created != 0 {
            json.raw(",\"createdIndex\":")
            json.number(created)
        }
        json.raw("}")
    }
}

/// The body of a GET, produced in pieces from an immutable tree: `next(maxBytes:)` writes roughly that much and
/// stops, so a directory with a million keys never becomes one buffer. The walk is a loop over an explicit stack,
/// and every node's key is written from one shared path buffer, so a deep key costs neither stack nor memory.
package struct ListingProducer: Sendable {
    private enum Step: Sendable {
        /// A node to write, with the length of its parent's path in `path`.
        case open(StoreNode, parentPathBytes: Int, recursive: Bool, first: Bool)
        /// The children of a directory whose path is `pathBytes` long in `path`.
        case children([StoreNode], next: Int, pathBytes: Int, recursive: Bool)
        case close(StoreNode)
        case text(String)
    }

    private var steps: [Step]
    /// The path of the node written last: "" for the root, "/a/b" below it.
    private var path: [UInt8]
    private let now: Int64
    /// The top node always lists its children; this decides whether their children are listed too, and so on.
    private let topRecursive: Bool

    /// `path` is the node's clean path. Children are always listed sorted by key: etcd's unsorted order is Go's
    /// random map order, which a stable order satisfies, so `sorted=true` needs no separate path.
    package init(node: StoreNode, path nodePath: StoreKey, recursive: Bool, now: Int64) {
        self.now = now
        topRecursive = recursive
        path = node.name.isEmpty ? [] : Array(nodePath.bytes.dropLast(node.name.count + 1))
        steps = [.text("}\n"), .open(node, parentPathBytes: path.count, recursive: true, first: true), .text("{\"action\":\"get\",\"node\":")]
    }

    /// The next piece of the body, or nil when it is complete.
    package mutating func next(maxBytes: Int) -> [UInt8]? {
        guard !steps.isEmpty else { return nil }
        var json = GoJSON(capacity: min(maxBytes, 1 << 20) + 1024)
        while json.bytes.count < maxBytes, let step = steps.popLast() {
            switch step {
            case .text(let text):
                json.literal(text)
            case .open(let node, let parentPathBytes, let recursive, let isTop):
                path.removeSubrange(parentPathBytes...)
                if !node.name.isEmpty {
                    path.append(UInt8(ascii: "/"))
                    path.append(contentsOf: node.name)
                }
                KeysResponse.renderOpening(key: path, value: node.value,
                                           isDirectory: node.isDirectory, expiration: node.expiration, ttl: node.ttlSeconds(now: now),
                                           into: &json)
                let listChildren = node.isDirectory && (isTop || recursive)
                if listChildren {
                    let children = node.visibleChildren()
                    steps.append(.close(node))
                    if !children.isEmpty {
                        json.raw(",\"nodes\":[")
                        steps.append(.text("]"))
                        steps.append(.children(children, next: 0, pathBytes: path.count, recursive: isTop ? topRecursive : recursive))
                    }
                } else {
                    closeNode(node, into: &json)
                }
            case .children(let children, let index, let pathBytes, let recursive):
                if index > 0 { json.raw(",") }
                if index + 1 < children.count {
                    steps.append(.children(children, next: index + 1, pathBytes: pathBytes, recursive: recursive))
                }
                steps.append(.open(children[index], parentPathBytes: pathBytes, recursive: recursive, first: false))
            case .close(let node):
                closeNode(node, into: &json)
            }
        }
        return json.take()
    }

    private func closeNode(_ node: StoreNode, into json: inout GoJSON) {
        KeysResponse.renderIndexes(modified: node.modifiedIndex, created: node.createdIndex, into: &json)
    }
}
