// A member's restart on disk: the committed log is applied at init, and a clean stop leaves a snapshot of everything
// applied, so the next start replays nothing.
import CairnReplica
import CairnStorage
import CairnStore
import CairnTestSupport
import Dispatch
import Foundation
import Testing
@testable import CairnServer

@Suite(.serialized) struct RestartTests {
    static func node(_ storage: Storage) throws -> KeySpaceNode {
        var options = KeySpaceNode.Options(id: 7, voters: [7])
        options.name = "m7"
        options.members = [MemberRecord(id: 7, name: "m7", peerURLs: ["http://127.0.0.1:1"], clientURLs: [])]
        options.heartbeatIntervalMilliseconds = 10
        options.electionTimeoutMilliseconds = 100
        return try KeySpaceNode(clock: ClusterClock(), initialIndex: 3, storage: storage, options: options)
    }

    static func write(_ node: KeySpaceNode, _ key: String, _ value: String) {
        let written = DispatchSemaphore(value: 0)
        var command = StoreCommand(method: .put, path: StoreKey(key))
        command.value = value
        node.propose(command) { result, _ in
            #expect((try? result.get())?.node.value == value, "\(result)")
            written.signal()
        }
        #expect(written.wait(timeout: .now() + 10) == .success)
    }

    @Test func aCleanStopLeavesASnapshotAndKillingReplaysTheLog() throws {
        let directory = NSTemporaryDirectory() + "cairn-restart-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // Killed (no stop): the next start applies the committed log at init, before it runs.
        do {
            let storage = try Storage(fs: PosixFileSystem(), directory: directory, logger: { _ in })
            let node = try Self.node(storage)
            node.start()
            node.awaitRecovery()
            for i in 0..<5 { Self.write(node, "/k\(i)", "v\(i)") }
            node.stop()
            storage.close()
        }
        let storage = try Storage(fs: PosixFileSystem(), directory: directory, logger: { _ in })
        let node = try Self.node(storage)
        #expect(try storage.snapshots().isEmpty)
        #expect(try KeySpace.lookup("/k4", in: node.view().root, currentIndex: 0).get().value == "v4")
        node.start()
        node.awaitRecovery()
        Self.write(node, "/k5", "v5")
        let applied = node.view().raftIndex
        node.stopWithSnapshot()
        #expect(try storage.snapshots().last?.lastIndex == applied)
        storage.close()
        // Stopped cleanly: the snapshot holds everything.
        let again = try Storage(fs: PosixFileSystem(), directory: directory, logger: { _ in })
        defer { again.close() }
        let restarted = try Self.node(again)
        defer { restarted.stop() }
        #expect(restarted.view().raftIndex == applied)
        #expect(try KeySpace.lookup("/k5", in: restarted.view().root, currentIndex: 0).get().value == "v5")
    }
}
