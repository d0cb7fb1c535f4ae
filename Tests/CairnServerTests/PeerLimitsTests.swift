// The peer transport's frame bound against what members send: the largest append (one entry of the WAL's largest
// record) and a snapshot chunk must fit in one frame, or a legitimate member's link would be closed as corrupt.
import CairnHTTP
import CairnPeer
import CairnRaft
import CairnStorage
import Testing
@testable import CairnServer

@Suite struct PeerLimitsTests {
    @Test func theLargestAppendAndSnapshotChunkFitInAFrame() {
        let frameBytesMax = PeerTransportConfiguration(clusterID: 1, localID: 1, listenAddresses: []).frameBytesMax
        var append = Message(kind: .append, from: MemberID(1), to: MemberID(2), term: Term(1))
        append.entries = [Entry(term: Term(1), index: LogIndex(1), clusterTimeNanos: 0, kind: .normal,
                                data: [UInt8](repeating: 0, count: WALOptions().recordBytesMax))]
        #expect(append.encoded().count <= frameBytesMax)
        var chunk = Message(kind: .snapshot, from: MemberID(1), to: MemberID(2), term: Term(1))
        chunk.data = [UInt8](repeating: 0, count: KeySpaceNode.snapshotChunkBytes)
        #expect(chunk.encoded().count <= frameBytesMax)
    }
}
