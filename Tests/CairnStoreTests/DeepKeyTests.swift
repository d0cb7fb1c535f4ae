// Keys with tens of thousands of components, as etcd stores them: writing, overwriting, reading, deleting, a snapshot
// round trip and releasing the tree run on a member-sized stack without recursion, in memory linear in the key.
import CairnTestSupport
import Testing
@testable import CairnStore

/// "/a/a/.../a" with `components` components (2 bytes each).
func deepKey(components: Int) -> String {
    String(repeating: "/a", count: components)
}

@Suite struct DeepKeyTests {
    @Test func aThirtyThousandComponentKeyIsWrittenReadSnapshottedAndDeleted() throws {
        let key = deepKey(components: 30_000)
        nonisolated(unsafe) var failures: [String] = []
        onThread {
            var space = KeySpace()
            func check(_ condition: Bool, _ what: String) { if !condition { failures.append(what) } }
            let created = space.apply(put(key, "1"), now: 0)
            check((try? created.get().event.isCreation) == true, "created")
            check((try? created.get().event.node.key) == StoreKey(key), "the event names the key")
            let overwritten = space.apply(put(key, "2"), now: 0)
            check((try? overwritten.get().event.prevNode?.value) == "1", "overwritten")
            check((try? space.lookup(StoreKey(key)).get().value) == "2", "read back")
            check(space.lookup(StoreKey(key + "/b")).map(\.value) == .failure(StoreError(.notDir, StoreKey(key), index: 2)), "a file on the way")
            var sink = PieceSink()
            check((try? TreeSnapshot.write(root: space.root, currentIndex: space.currentIndex, to: &sink)) != nil, "snapshot written")
            check(sink.bytes.count < 1 << 20, "a snapshot linear in the key (\(sink.bytes.count) bytes)")
            var source = BytesSource(bytes: sink.bytes)
            if let (root, index) = try? TreeSnapshot.read(from: &source) {
                check((try? KeySpace.lookup(StoreKey(key), in: root, currentIndex: index).get().value) == "2", "the snapshot holds the key")
            } else {
                check(false, "snapshot read")
            }
            let deleted = space.apply(delete("/a", recursive: true), now: 0)
            check((try? deleted.get().event.action) == .delete, "deleted")
            check(space.root.children.isEmpty, "nothing left")
            _ = space.apply(put(key, "3"), now: 0)
            space = KeySpace()  // releases the whole chain at once
        }
        #expect(failures.isEmpty, "\(failures)")
    }

    @Test func aFortyKilobyteKeyCostsMemoryLinearInItsLength() throws {
        let key = deepKey(components: 20_000)
        // The smallest of three tries: another test allocating meanwhile can only add to a try, never take away.
        var treeBytes = Int.max
        for _ in 0..<3 {
            nonisolated(unsafe) var grown = 0
            onThread {
                var space = KeySpace()
                let before = mallocBytesInUse()
                _ = space.apply(put(key, "v"), now: 0)
                grown = mallocBytesInUse() - before
                withExtendedLifetime(space) {}
            }
            treeBytes = min(treeBytes, grown)
        }
        // About 20,000 nodes of a few hundred bytes each; storing every node's full path took 405 MB.
        #expect(treeBytes < 16 << 20, "\(treeBytes) bytes for one 40 KB key")
    }

    @Test func watchersAboveInAndBelowADeepKeyHearItsChanges() throws {
        let key = deepKey(components: 30_000)
        final class Inbox: @unchecked Sendable { var actions: [StoreAction] = [] }
        let onKey = Inbox(), onAncestor = Inbox(), onOther = Inbox(), onTop = Inbox()
        onThread {
            var space = KeySpace()
            let hub = WatchHub()
            func applied(_ command: StoreCommand) {
                if case .success(let (event, removed)) = space.apply(command, now: 0) { hub.notify(event, removedPaths: removed) }
            }
            _ = hub.watch(path: StoreKey(key), recursive: false, stream: true, sinceIndex: 0, currentIndex: 0) { onKey.actions.append($0.action) }
            _ = hub.watch(path: StoreKey(deepKey(components: 10)), recursive: true, stream: true, sinceIndex: 0, currentIndex: 0) {
                onAncestor.actions.append($0.action)
            }
            _ = hub.watch(path: "/b", recursive: true, stream: true, sinceIndex: 0, currentIndex: 0) { onOther.actions.append($0.action) }
            _ = hub.watch(path: "/a", recursive: false, stream: true, sinceIndex: 0, currentIndex: 0) { onTop.actions.append($0.action) }
            applied(put(key, "1"))
            applied(put(key, "2"))
            applied(delete("/a", recursive: true))
        }
        #expect(onKey.actions == [.set, .set, .delete], "the deleted directory's descendant is told")
        #expect(onAncestor.actions == [.set, .set, .delete])
        #expect(onTop.actions == [.delete], "a non-recursive watch on a directory hears only its own deletion")
        #expect(onOther.actions.isEmpty)
    }
}
