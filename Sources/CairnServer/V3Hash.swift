// Maintenance Hash and HashKV: a CRC32C of the key space's history, for comparing members (etcd hashes its bolt
// file's key bucket, so the values differ from etcd's; members holding the same history give the same hash).
import CairnAPI
import CairnBase
import CairnMVCC
import Dispatch

extension V3Service {
    /// HashKV at `revision` (0: the current one): every kept change from the compacted revision up to it, each as
    /// revision, type, key, value and lease, and the compacted revision. Refused below it or above the current one.
    /// Linear in the history, so it runs on a global queue, not a connection's.
    func hashKV(revision: Int64, _ done: @escaping Done<(V3Header, UInt32, Int64)>) {
        let view = node.view()
        DispatchQueue.global().async { [self] in
            let space = view.mvcc
            let target = revision == 0 ? space.revision : revision
            guard target <= space.revision else { return done(.failure(V3Error(MVCCError.futureRevision))) }
            guard target >= space.compactedRevision else { return done(.failure(V3Error(MVCCError.compacted))) }
            var crc = CRC32C()
            func add(_ value: Int64) {
                withUnsafeBytes(of: value.littleEndian) { crc.update($0) }
            }
            do throws(MVCCError) {
                try space.events(from: space.compactedRevision) { at, event in
                    guard at.main <= target else { return false }
                    add(at.main)
                    add(at.sub)
                    add(event.type == .delete ? 1 : 0)
                    add(Int64(event.kv.key.count))
                    crc.update(event.kv.key)
                    add(Int64(event.kv.value.count))
                    crc.update(event.kv.value)
                    add(event.kv.lease)
                    return true
                }
            } catch {
                return done(.failure(V3Error(error)))
            }
            done(.success((header(view, revision: space.revision), crc.value, space.compactedRevision)))
        }
    }
}
