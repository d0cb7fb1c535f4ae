// A member whose storage fails (a failed fsync, a full disk, no descriptor) refuses writes with a clear error, reports itself
// unhealthy, and takes writes again by itself once the disk allows, with nothing acknowledged lost.
import CairnReplica
import CairnStorage
import CairnStore
import CairnTestSupport
import Dispatch
import Synchronization
import Testing
@testable import CairnServer

/// A lone voter on a simulated disk that a test can break and mend.
final class LoneMember {
    let fs = SimulatedFileSystem()
    let storage: Storage
    let node: KeySpaceNode

    init(segmentBytesMax: UInt64 = 1 << 20) throws {
        storage = try Storage(fs: fs, directory: "/member", options: StorageOptions(wal: WALOptions(segmentBytesMax: segmentBytesMax)),
                              logger: { _ in })
        var options = KeySpaceNode.Options(id: 1, voters: [1])
        options.members = [MemberRecord(id: 1, name: "m1", peerURLs: ["http://127.0.0.1:1"], clientURLs: [])]
        options.heartbeatIntervalMilliseconds = 10
        options.electionTimeoutMilliseconds = 100
        options.requestTimeoutMilliseconds = 2000
        node = try KeySpaceNode(clock: ClusterClock(), initialIndex: 3, storage: storage, options: options)
        node.start()
    }

    deinit {
        node.stop()
        storage.close()
    }

    func write(_ path: String, _ value: String) -> Result<StoreEvent, StoreError> {
        var command = StoreCommand(method: .put, path: path)
        command.value = value
        let outcome = Mutex<Result<StoreEvent, StoreError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        node.propose(command) { result, _ in
            outcome.withLock { $0 = result }
            done.signal()
        }
        done.wait()
        return outcome.withLock { $0! }
    }

    func value(_ path: String) -> String? {
        let view = node.view()
        return try? KeySpace.lookup(StoreKey(path), in: view.root, currentIndex: view.etcdIndex).get().value
    }

    var failingGauge: Double? { node.metricGauges.first { $0.0 == "cairn_storage_failing" }?.2 }
}

@Suite(.serialized) struct StorageFailureTests {
    /// Writes until one fails; returns the failure and the values acknowledged before it. The refused write is, as a
    /// timed-out one, indeterminate (its entry may be persisted by the retry): its key is left out.
    private func writeUntilRefused(_ member: LoneMember) -> (StoreError?, [String: String]) {
        var acknowledged: [String: String] = [:]
        for n in 0..<2000 {
            switch member.write("/k\(n % 50)", "v\(n)") {
            case .success: acknowledged["/k\(n % 50)"] = "v\(n)"
            case .failure(let error):
                acknowledged["/k\(n % 50)"] = nil
                return (error, acknowledged)
            }
        }
        return (nil, acknowledged)
    }

    private func expectRecovery(_ member: LoneMember, acknowledged: [String: String]) {
        #expect(eventually(seconds: 10) { (try? member.write("/after", "recovered").get()) != nil }, "writes resume without a restart")
        #expect(member.node.raftStatus.storageFailure == nil)
        #expect(member.failingGauge == 0)
        #expect(member.value("/after") == "recovered")
        for (key, value) in acknowledged where member.value(key) != value {
            Issue.record("acknowledged \(key)=\(value) reads \(member.value(key) ?? "nothing")")
        }
    }

    @Test func aFailedFsyncRefusesWritesUntilTheDiskWorksAgain() throws {
        let member = try LoneMember()
        #expect(eventually { member.node.raftStatus.isLeader })
        _ = try member.write("/before", "1").get()
        member.fs.failSyncs(errno: 5)  // EIO
        let (refusal, acknowledged) = writeUntilRefused(member)
        let error = try #require(refusal)
        #expect(error.code == .raftInternal)
        #expect(error.cause.hasPrefix("etcdserver: storage unavailable: "), "\(error.cause)")
        #expect(member.node.raftStatus.storageFailure != nil)
        #expect(member.failingGauge == 1)
        #expect(throws: StoreError.self, "refused at once while failing") { try member.write("/during", "x").get() }
        member.fs.failSyncs(errno: nil)
        expectRecovery(member, acknowledged: acknowledged.merging(["/before": "1"]) { $1 })
    }

    @Test func aFullDiskRefusesWritesUntilSpaceIsFreed() throws {
        let member = try LoneMember(segmentBytesMax: 8192)
        #expect(eventually { member.node.raftStatus.isLeader })
        member.fs.limitSpace(bytes: 1)  // the open segment's preallocated space still takes records; no new segment can be made
        let (refusal, acknowledged) = writeUntilRefused(member)
        let error = try #require(refusal)
        #expect(error.cause.contains("No space left on device"), "\(error.cause)")
        #expect(member.node.raftStatus.storageFailure != nil)
        member.fs.limitSpace(bytes: nil)
        expectRecovery(member, acknowledged: acknowledged)
    }

    @Test func noDescriptorLeftRefusesWritesUntilOneIsFree() throws {
        let member = try LoneMember(segmentBytesMax: 8192)
        #expect(eventually { member.node.raftStatus.isLeader })
        member.fs.failOpens(errno: 24)  // EMFILE: the next segment cannot be opened
        let (refusal, acknowledged) = writeUntilRefused(member)
        let error = try #require(refusal)
        #expect(error.cause.contains("Too many open files"), "\(error.cause)")
        member.fs.failOpens(errno: nil)
        expectRecovery(member, acknowledged: acknowledged)
    }
}
