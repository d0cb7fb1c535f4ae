// Keys are the bytes the client sent: keys that differ only in invalid UTF-8, or in Unicode that Swift's String
// calls equal, are different keys in the tree, in watches, in the log's commands, in snapshots and in sessions.
import Testing
@testable import CairnStore

@Suite struct KeyBytesTests {
    static let ff = StoreKey(bytes: Array("/u".utf8) + [0xFF])
    static let fe = StoreKey(bytes: Array("/u".utf8) + [0xFE])
    /// "café" precomposed (U+00E9) and decomposed (e + U+0301): one String to Swift, two keys to etcd.
    static let composed = StoreKey("/caf\u{E9}")
    static let decomposed = StoreKey("/cafe\u{301}")

    func put(_ key: StoreKey, _ value: String) -> StoreCommand {
        var command = StoreCommand(method: .put, path: key)
        command.value = value
        return command
    }

    @Test func keysDifferingInInvalidOrEquivalentBytesStayApart() throws {
        var space = KeySpace()
        for (key, value) in [(Self.ff, "1"), (Self.fe, "2"), (Self.composed, "3"), (Self.decomposed, "4")] {
            let event = try space.apply(put(key, value), now: 0).get().event
            #expect(event.isCreation && event.node.key == key, "\(key) is a new key")
        }
        #expect(try space.lookup(Self.ff).get().value == "1")
        #expect(try space.lookup(Self.fe).get().value == "2")
        #expect(try space.lookup(Self.composed).get().value == "3")
        #expect(try space.lookup(Self.decomposed).get().value == "4")
        #expect(space.root.visibleChildren().count == 4)
        #expect(space.lookup(StoreKey(bytes: Self.ff.bytes + Array("/x".utf8))).map(\.value)
            == .failure(StoreError(.notDir, Self.ff, index: 4)))
        #expect(StoreError(.notDir, Self.ff, index: 4) != StoreError(.notDir, Self.fe, index: 4))
    }

    @Test func commandsSnapshotsAndSessionsKeepTheBytes() throws {
        let command = put(Self.ff, "v")
        #expect(try StoreCommand(decoding: command.encoded()).path == Self.ff)

        var space = KeySpace()
        _ = try space.apply(put(Self.ff, "1"), now: 0).get()
        _ = try space.apply(put(Self.fe, "2"), now: 0).get()
        var sink = PieceSink()
        try TreeSnapshot.write(root: space.root, currentIndex: space.currentIndex, to: &sink)
        var source = BytesSource(bytes: sink.bytes)
        let (root, index) = try TreeSnapshot.read(from: &source)
        #expect(try KeySpace.lookup(Self.ff, in: root, currentIndex: index).get().value == "1")
        #expect(try KeySpace.lookup(Self.fe, in: root, currentIndex: index).get().value == "2")

        var sessions = ClientSessions()
        let answer = space.apply(put(Self.ff, "3"), now: 0).map(\.event)
        sessions.record(client: "c", request: 1, result: answer, at: 0)
        let missing = StoreError(.keyNotFound, Self.fe, index: 3)
        sessions.record(client: "c", request: 2, result: .failure(missing), at: 0)
        #expect(sessions.lookup(client: "c", request: 1) == .answered(answer))
        #expect(sessions.lookup(client: "c", request: 2) == .answered(.failure(missing)))
    }

    @Test func watchersSeeOnlyTheirOwnBytes() throws {
        var space = KeySpace()
        let hub = WatchHub()
        final class Inbox: @unchecked Sendable { var keys: [StoreKey] = [] }
        let onFF = Inbox(), onComposed = Inbox()
        _ = hub.watch(path: Self.ff, recursive: false, stream: true, sinceIndex: 0, currentIndex: 0) { onFF.keys.append($0.node.key) }
        _ = hub.watch(path: Self.composed, recursive: true, stream: true, sinceIndex: 0, currentIndex: 0) { onComposed.keys.append($0.node.key) }
        for key in [Self.fe, Self.decomposed, Self.ff, Self.composed] {
            if case .success(let (event, removed)) = space.apply(put(key, "v"), now: 0) { hub.notify(event, removedPaths: removed) }
        }
        #expect(onFF.keys == [Self.ff])
        #expect(onComposed.keys == [Self.composed])
        let fromHistory = Inbox()
        _ = hub.watch(path: Self.fe, recursive: false, stream: false, sinceIndex: 1, currentIndex: space.currentIndex) { fromHistory.keys.append($0.node.key) }
        #expect(fromHistory.keys == [Self.fe])
    }

    @Test func compareAndSwapComparesValuesByteForByte() throws {
        var space = KeySpace()
        _ = try space.apply(put("/k", "caf\u{E9}"), now: 0).get()
        var swap = put("/k", "x")
        swap.prevValue = "cafe\u{301}"
        #expect(space.apply(swap, now: 0).map(\.event) == .failure(StoreError(.testFailed, "[cafe\u{301} != caf\u{E9}]", index: 1)),
                "etcd compares bytes: a canonically equivalent value does not match")
        swap.prevValue = "caf\u{E9}"
        #expect(try space.apply(swap, now: 0).get().event.action == .compareAndSwap)
    }

    /// Go's `path.Clean(path.Join("/", p))`, written plainly: what `cleaned` must give, fast path or not.
    static func goClean(_ bytes: [UInt8]) -> [UInt8] {
        var kept: [[UInt8]] = []
        for name in bytes.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: true) {
            if name == [UInt8(ascii: ".")] { continue }
            if name == [UInt8(ascii: "."), UInt8(ascii: ".")] { if !kept.isEmpty { kept.removeLast() }; continue }
            kept.append(Array(name))
        }
        return kept.isEmpty ? [UInt8(ascii: "/")] : kept.flatMap { [UInt8(ascii: "/")] + $0 }
    }

    @Test func everyShortPathCleansAsGoCleansIt() {
        let alphabet: [UInt8] = Array("/.a".utf8)
        var paths: [[UInt8]] = [[]]
        var checked = 0
        for _ in 0..<7 {
            paths = paths.flatMap { path in alphabet.map { path + [$0] } }
            for path in paths {
                #expect(StoreKey(bytes: path).cleaned().bytes == Self.goClean(path), "\(String(decoding: path, as: UTF8.self))")
                checked += 1
            }
        }
        #expect(checked == 3 + 9 + 27 + 81 + 243 + 729 + 2187)
    }
}
