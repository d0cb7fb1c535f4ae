// The one check every Raft message from a peer passes before it is stepped: numbers in range, sizes bounded,
// fields consistent with the kind, every entry payload decodable. A message that fails is dropped whole.
import CairnBase

/// Bounds on the numbers Raft takes from peers and disks. Far above anything a real cluster reaches (a term per
/// nanosecond would take 146 years to pass 2^62), and far enough below 2^64 that `+ 1` and `+ count` never trap.
package enum RaftLimits {
    /// The largest term accepted from a peer or a disk; a member never campaigns past it.
    package static let termMax: UInt64 = (1 << 62) - 1
    /// How far above its own term a member follows a message. Terms grow by one per election, so a real cluster
    /// never jumps this far (2^32 elections); a forged message that tries to push every member to `termMax`, where
    /// no member could campaign again, would need 2^30 of them.
    package static let termJumpMax: UInt64 = 1 << 32
    /// The largest log index (and commit index) accepted from a peer or a disk.
    package static let indexMax: UInt64 = (1 << 62) - 1
    /// The largest heartbeat tick stamp and read sequence accepted from a peer (both count up by one).
    package static let counterMax: UInt64 = (1 << 62) - 1
    /// The latest cluster time an entry may carry: the application reads it as a signed count of nanoseconds.
    package static let clusterTimeNanosMax = UInt64(Int64.max)
    /// The largest snapshot file offset a chunk may name.
    package static let snapshotOffsetMax: UInt64 = (1 << 62) - 1
}

/// Why a peer's message was refused; its text goes to the log line of the dropped link.
package struct InvalidMessage: Error, Equatable, CustomStringConvertible {
    package var reason: String
    package init(_ reason: String) { self.reason = reason }
    package var description: String { reason }
}

extension Message {
    /// Checks what the decoder cannot: ranges, consistency between fields, and entry payloads. `isValidPayload`
    /// judges a `.normal` (or `.unversioned`) entry's bytes, which belong to the application; config changes are
    /// decoded here. Entries the leader says are committed are taken as they are: they are decided, and refusing
    /// them would only cut this member off (each member applies one it cannot decode as a no-op). Throws the first
    /// problem found.
    package func validate(isValidPayload: ([UInt8], EntryKind) -> Bool) throws(InvalidMessage) {
        try validateRanges()
        for (offset, entry) in entries.enumerated() where entry.index > commit {
            switch entry.kind {
            case .noop:
                guard entry.data.isEmpty else { throw InvalidMessage("noop entry \(entry.index) carries \(entry.data.count) bytes") }
            case .configChange:
                guard (try? ConfigChangeEntry(decoding: entry.data)) != nil else {
                    throw InvalidMessage("config-change entry \(entry.index) cannot be decoded")
                }
            case .normal, .unversioned:
                guard isValidPayload(entry.data, entry.kind) else {
                    throw InvalidMessage("entry \(entry.index) (\(offset + 1) of \(entries.count)) cannot be decoded")
                }
            }
        }
    }

    /// The checks that need nothing from the application; `RaftNode.step` repeats them, so the core never traps
    /// whoever calls it.
    package func validateRanges() throws(InvalidMessage) {
        guard from != to else { throw InvalidMessage("message from \(from) to itself") }
        for (name, value) in [("term", term), ("log term", logTerm), ("hint term", hintTerm)] where value.value > RaftLimits.termMax {
            throw InvalidMessage("\(name) \(value.value) is beyond \(RaftLimits.termMax)")
        }
        for (name, value) in [("index", index), ("commit", commit), ("hint index", hintIndex)] where value.value > RaftLimits.indexMax {
            throw InvalidMessage("\(name) \(value.value) is beyond \(RaftLimits.indexMax)")
        }
        guard readSequence <= RaftLimits.counterMax, sentTick <= RaftLimits.counterMax else {
            throw InvalidMessage("read sequence \(readSequence) or tick \(sentTick) is beyond \(RaftLimits.counterMax)")
        }
        guard snapshotOffset <= RaftLimits.snapshotOffsetMax, data.count <= RaftCodecLimits.dataBytesMax else {
            throw InvalidMessage("snapshot chunk at \(snapshotOffset) of \(data.count) bytes is out of range")
        }
        guard kind == .snapshot || (data.isEmpty && snapshotOffset == 0 && !snapshotDone) else {
            throw InvalidMessage("\(kind) message carries snapshot fields")
        }
        guard kind == .append || entries.isEmpty else { throw InvalidMessage("\(kind) message carries entries") }
        guard entries.count <= RaftCodecLimits.entriesPerMessageMax,
              index.value <= RaftLimits.indexMax - UInt64(entries.count) else {
            throw InvalidMessage("\(entries.count) entries after index \(index.value) pass the index bound")
        }
        guard logTerm <= term || kind == .preVoteResponse || kind == .voteResponse || kind == .appendResponse || kind == .heartbeatResponse else {
            throw InvalidMessage("\(kind) has log term \(logTerm.value) after its term \(term.value)")
        }
        var previousTerm = logTerm
        for (offset, entry) in entries.enumerated() {
            // Entries follow `index` one by one, with terms that never decrease and never pass the leader's.
            guard entry.index.value == index.value + UInt64(offset) + 1 else {
                throw InvalidMessage("entry \(offset) has index \(entry.index.value), expected \(index.value + UInt64(offset) + 1)")
            }
            guard entry.clusterTimeNanos <= RaftLimits.clusterTimeNanosMax else {
                throw InvalidMessage("entry \(entry.index.value) has cluster time \(entry.clusterTimeNanos)")
            }
            guard entry.term >= previousTerm, entry.term <= term else {
                throw InvalidMessage("entry \(entry.index.value) has term \(entry.term.value) outside \(previousTerm.value)...\(term.value)")
            }
            previousTerm = entry.term
        }
    }
}
