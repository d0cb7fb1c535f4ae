// The key space as a state machine: etcd's semantics, determinism across replicas, TTL expiry by cluster time,
// point-in-time roots, and watches (history resume, cleared history, hidden keys, only matching watchers woken).
import CairnBase
import Testing
@testable import CairnStore

func put(_ path: String, _ value: String, prevExist: Bool? = nil, prevValue: String = "", prevIndex: UInt64 = 0,
         dir: Bool = false, expiration: Int64 = 0) -> StoreCommand {
    var command = StoreCommand(method: .put, path: path)
    command.value = value
    command.prevExist = prevExist
    command.prevValue = prevValue
    command.prevIndex = prevIndex
    command.dir = dir
    command.expiration = expiration
    return command
}

func delete(_ path: String, recursive: Bool = false, dir: Bool = false, prevValue: String = "") -> StoreCommand {
    var command = StoreCommand(method: .delete, path: path)
    command.recursive = recursive
    command.dir = dir
    command.prevValue = prevValue
    return command
}

@Suite struct KeySpaceTests {
    @Test func setGetAndOverwriteFollowEtcd() throws {
        var space = KeySpace(initialIndex: 3)
        let first = try space.apply(put("/a/b", "1"), now: 0).get().event
        #expect(first.action == .set && first.isCreation && first.etcdIndex == 4)
        let second = try space.apply(put("/a/b", "2"), now: 0).get().event
        #expect(!second.isCreation && second.prevNode?.value == "1" && second.node.createdIndex == 5)
        #expect(try space.lookup("/a").get().isDirectory)
        #expect(try space.lookup("/a").get().createdIndex == 4, "intermediate directories take the creating index")
        #expect(space.lookup("/a/b/c").map(\.value) == .failure(StoreError(.notDir, "/a/b", index: 5)))
        #expect(space.lookup("/nope").map(\.value) == .failure(StoreError(.keyNotFound, "/nope", index: 5)))
        #expect(space.apply(put("/a", "x"), now: 0).map(\.event) == .failure(StoreError(.notFile, "/a", index: 5)))
        #expect(space.apply(put("/", "x"), now: 0).map(\.event) == .failure(StoreError(.rootReadOnly, "/", index: 5)))
    }

    @Test func compareAndSwapAndDeleteCauses() throws {
        var space = KeySpace()
        _ = try space.apply(put("/k", "v"), now: 0).get()
        #expect(space.apply(put("/k", "x", prevValue: "w"), now: 0).map(\.event) == .failure(StoreError(.testFailed, "[w != v]", index: 1)))
        #expect(space.apply(put("/k", "x", prevIndex: 9), now: 0).map(\.event) == .failure(StoreError(.testFailed, "[9 != 1]", index: 1)))
        #expect(space.apply(put("/k", "x", prevValue: "w", prevIndex: 9), now: 0).map(\.event)
            == .failure(StoreError(.testFailed, "[w != v] [9 != 1]", index: 1)))
        let swapped = try space.apply(put("/k", "x", prevValue: "v", prevIndex: 1), now: 0).get().event
        #expect(swapped.action == .compareAndSwap && swapped.node.createdIndex == 1 && swapped.node.modifiedIndex == 2)
        #expect(try space.apply(delete("/k", prevValue: "x"), now: 0).get().event.action == .compareAndDelete)
        #expect(space.currentIndex == 3)
    }

    @Test func directoriesNeedDirOrRecursive() throws {
        var space = KeySpace()
        _ = try space.apply(put("/d/x", "1"), now: 0).get()
        #expect(space.apply(delete("/d"), now: 0).map(\.event) == .failure(StoreError(.notFile, "/d", index: 1)))
        #expect(space.apply(delete("/d", dir: true), now: 0).map(\.event) == .failure(StoreError(.dirNotEmpty, "/d", index: 1)))
        let removed = try space.apply(delete("/d", recursive: true), now: 0).get()
        var paths: Set<StoreKey> = []
        removed.removed.forEachPath(atDepthsIn: [1: 1, 2: 1]) { paths.insert($0) }
        #expect(removed.event.node.isDirectory && paths == ["/d", "/d/x"])
    }

    @Test func inOrderKeysAreZeroPaddedIndexes() throws {
        var space = KeySpace(initialIndex: 6)
        var command = StoreCommand(method: .post, path: "/queue")
        command.value = "job"
        #expect(try space.apply(command, now: 0).get().event.node.key == "/queue/00000000000000000007")
    }

    /// An expiration from a damaged log or a forged entry may sit anywhere: the TTL shown saturates, never traps.
    @Test func ttlOfAnExpirationFarFromNowSaturates() {
        func node(expiring expiration: Int64) -> StoreNode {
            StoreNode(name: [], value: "v", createdIndex: 1, modifiedIndex: 1, expiration: expiration)
        }
        #expect(node(expiring: .min).ttlSeconds(now: .max) == 0)
        #expect(node(expiring: .max).ttlSeconds(now: .min) == Int64.max / 1_000_000_000)
        #expect(node(expiring: .max).ttlSeconds(now: 0) == Int64.max / 1_000_000_000 + 1)
        #expect(node(expiring: 1_000_000_000).ttlSeconds(now: 0) == 1)
    }

    @Test func ttlExpiresByClusterTimeOnly() throws {
        var space = KeySpace()
        _ = try space.apply(put("/t", "v", expiration: 5_000_000_000), now: 1_000_000_000).get()
        #expect(try space.lookup("/t").get().ttlSeconds(now: 1_000_000_001) == 4)
        #expect(space.expire(upTo: 4_999_999_999).isEmpty)
        let expired = space.expire(upTo: 5_000_000_000)
        #expect(expired.map(\.event.action) == [.expire])
        #expect(expired[0].event.prevNode?.value == "v")
        #expect(space.lookup("/t").map(\.value) == .failure(StoreError(.keyNotFound, "/t", index: 2)))
    }

    @Test func oldRootsStayAsTheyWere() throws {
        var space = KeySpace()
        _ = try space.apply(put("/a", "1"), now: 0).get()
        let before = space.root
        _ = try space.apply(put("/a", "2"), now: 0).get()
        _ = try space.apply(put("/b", "3"), now: 0).get()
        #expect(try KeySpace.lookup("/a", in: before, currentIndex: 1).get().value == "1")
        #expect(before.children.count == 1)
    }

    /// Writes change in place what only the key space holds (a batch copies a path once), and copy whatever anything
    /// else holds: a root, a directory a reader kept, a key space copied for a snapshot all stay as they were.
    @Test func writesChangeInPlaceOnlyWhatNothingElseHolds() throws {
        var space = KeySpace()
        _ = try space.apply(put("/d/e/a", "1"), now: 0).get()
        let root = ObjectIdentifier(space.root), directory = ObjectIdentifier(try space.lookup("/d/e").get())
        _ = try space.apply(put("/d/e/a", "2"), now: 0).get()
        _ = try space.apply(put("/d/e/b", "3"), now: 0).get()
        #expect(try ObjectIdentifier(space.root) == root && ObjectIdentifier(space.lookup("/d/e").get()) == directory)

        let heldRoot = space.root, heldDirectory = try space.lookup("/d/e").get(), copied = space
        _ = try space.apply(put("/d/e/a", "4"), now: 0).get()
        _ = try space.apply(delete("/d/e/b"), now: 0).get()
        _ = try space.apply(put("/d/f", "5"), now: 0).get()
        #expect(try KeySpace.lookup("/d/e/a", in: heldRoot, currentIndex: 3).get().value == "2")
        #expect(heldDirectory.children.count == 2 && heldDirectory.children[Array("a".utf8)]?.value == "2")
        #expect(try copied.lookup("/d/e/b").get().value == "3" && copied.lookup("/d/f").map(\.value) == .failure(StoreError(.keyNotFound, "/d/f", index: 3)))
        #expect(try space.lookup("/d/e/a").get().value == "4" && space.lookup("/d/e/b").map(\.value) == .failure(StoreError(.keyNotFound, "/d/e/b", index: 6)))
        #expect(try space.lookup("/d/f").get().value == "5" && space.currentIndex == 6)
    }

    @Test func replicasApplyingTheSameCommandsAgree() throws {
        var rng = SeededRandom(seed: 31)
        var a = KeySpace(initialIndex: 3), b = KeySpace(initialIndex: 3)
        let keys = ["/a", "/a/b", "/c", "/c/d/e", "/_h", "/q"]
        for step in 0..<2000 {
            let key = keys.randomElement(using: &rng)!
            let command: StoreCommand
            switch Int.random(in: 0..<5, using: &rng) {
            case 0: command = put(key, "v\(step)", expiration: Bool.random(using: &rng) ? Int64(step + 50) : 0)
            case 1: command = put(key, "v\(step)", prevExist: Bool.random(using: &rng))
            case 2: command = put(key, "w", prevIndex: UInt64.random(in: 0...UInt64(step + 4), using: &rng))
            case 3: command = delete(key, recursive: Bool.random(using: &rng))
            default: command = StoreCommand(method: .post, path: key)
            }
            let resultA = a.apply(command, now: Int64(step)).map(\.event)
            let resultB = b.apply(command, now: Int64(step)).map(\.event)
            #expect(resultA == resultB)
            #expect(a.expire(upTo: Int64(step)).map(\.event) == b.expire(upTo: Int64(step)).map(\.event))
        }
        #expect(a.currentIndex == b.currentIndex)
    }
}

@Suite struct WatchHubTests {
    final class Inbox { var events: [StoreEvent] = [] }

    func applied(_ space: inout KeySpace, _ hub: WatchHub, _ command: StoreCommand) {
        if case .success(let (event, removed)) = space.apply(command, now: 0) { hub.notify(event, removedPaths: removed) }
    }

    @Test func resumingFromAnIndexGetsExactlyTheMissedEvents() throws {
        var space = KeySpace(initialIndex: 3)
        let hub = WatchHub()
        for i in 0..<5 {
            applied(&space, hub, put("/watched", "\(i)"))
            applied(&space, hub, put("/other", "\(i)"))
        }
        let inbox = Inbox()
        var since: UInt64 = 1
        for _ in 0..<5 {
            let id = try hub.watch(path: "/watched", recursive: false, stream: false, sinceIndex: since, currentIndex: space.currentIndex) {
                inbox.events.append($0)
            }.get()
            #expect(id == nil, "history answers at once")
            since = inbox.events.last!.etcdIndex + 1
        }
        #expect(inbox.events.map(\.node.value) == ["0", "1", "2", "3", "4"])
    }

    @Test func clearedHistoryIs401ButOnlyWhenReallyGone() throws {
        var space = KeySpace()
        let hub = WatchHub(historyBytesMax: 2000)
        for i in 0..<100 { applied(&space, hub, put("/k", "\(i)")) }
        let old = hub.watch(path: "/k", recursive: false, stream: false, sinceIndex: 1, currentIndex: space.currentIndex) { _ in }
        guard case .failure(let error) = old else { Issue.record("expected 401"); return }
        #expect(error.code == .eventIndexCleared && error.code.httpStatus == 400 && error.index == 100)
        let inbox = Inbox()
        _ = hub.watch(path: "/k", recursive: false, stream: false, sinceIndex: 95, currentIndex: space.currentIndex) { inbox.events.append($0) }
        #expect(inbox.events.first?.etcdIndex == 95)
    }

    @Test func writesWakeOnlyMatchingWatchersAndHiddenKeysStayHidden() throws {
        var space = KeySpace()
        let hub = WatchHub()
        for i in 0..<10_000 { applied(&space, hub, put("/w/\(i)", "initial")) }
        let inboxes = (0..<10_000).map { _ in Inbox() }
        for (i, inbox) in inboxes.enumerated() {
            _ = hub.watch(path: "/w/\(i)", recursive: false, stream: false, sinceIndex: 0, currentIndex: space.currentIndex) {
                inbox.events.append($0)
            }
        }
        let recursive = Inbox()
        _ = hub.watch(path: "/", recursive: true, stream: true, sinceIndex: 0, currentIndex: space.currentIndex) { recursive.events.append($0) }
        #expect(hub.watcherCount == 10_001)
        applied(&space, hub, put("/w/42", "x"))
        applied(&space, hub, put("/w/_secret", "x"))
        #expect(inboxes.enumerated().allSatisfy { $0.element.events.count == ($0.offset == 42 ? 1 : 0) })
        #expect(recursive.events.map(\.node.key) == ["/w/42"])
        #expect(hub.watcherCount == 10_000, "a one-shot watcher leaves once answered")
        applied(&space, hub, delete("/w", recursive: true))
        #expect(hub.watcherCount == 1, "deleting the directory answers every watcher on a key below it")
        #expect(inboxes[7].events.first?.action == .delete)
    }

    @Test func cancelledWatchersHearNothing() throws {
        var space = KeySpace()
        let hub = WatchHub()
        let inbox = Inbox()
        let id = try #require(try hub.watch(path: "/k", recursive: false, stream: true, sinceIndex: 0, currentIndex: 0) { inbox.events.append($0) }.get())
        hub.remove(id)
        applied(&space, hub, put("/k", "v"))
        #expect(inbox.events.isEmpty && hub.watcherCount == 0)
    }
}
