// raft-bench: proposals per second through a 3-member cluster with an instant in-process network.
// Release build only; measures the core (and the in-memory log), not I/O.
import CairnBase
import CairnRaft
#if canImport(Glibc)
import Glibc
#endif

func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

let totalEntries = 2_000_000
let proposalsPerBatch = 1000
let ids = (1...3).map { MemberID(UInt64($0)) }
var nodes: [RaftNode<MemoryLogStorage>] = ids.map { id in
    var config = RaftConfig(id: id, voters: ids, randomSeed: 1)
    config.maxInflightMessages = 64
    return RaftNode(config: config, storage: MemoryLogStorage(), hardState: HardState())
}

/// Runs every member's ready/advance cycle until no member has work, delivering messages instantly.
func drain(_ nodes: inout [RaftNode<MemoryLogStorage>]) -> Int {
    var applied = 0
    var busy = true
    while busy {
        busy = false
        for i in nodes.indices where nodes[i].hasReady {
            busy = true
            let ready = nodes[i].ready()
            nodes[i].storage.append(ready.entries)
            if let h = ready.hardState { nodes[i].storage.setHardState(h) }
            nodes[i].advance(ready)
            if i == 0 { applied += ready.committedEntries.count }
            for m in ready.messages + ready.messagesAfterPersist { nodes[Int(m.to.value) - 1].step(m) }
        }
    }
    return applied
}

nodes[0].campaign()
_ = drain(&nodes)
precondition(nodes[0].role == .leader, "member 1 did not become leader")
let payload = [UInt8](repeating: 7, count: 16)
var applied = 0
let start = nowNanos()
var proposed = 0
while proposed < totalEntries {
    for _ in 0..<proposalsPerBatch { nodes[0].propose(payload) }
    proposed += proposalsPerBatch
    applied += drain(&nodes)
}
let seconds = Double(nowNanos() - start) / 1e9
print("entries committed and applied on the leader: \(applied) in \(seconds) s = \(Int(Double(applied) / seconds)) entries/s")
