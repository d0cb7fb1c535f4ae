// Maintenance/Snapshot: a fresh snapshot file of this member streamed 1 MiB per message, as `/cairn/snapshot` streams
// it, then etcd's tail (zero padding to 32 bytes past a multiple of 512, then the SHA-256 of all before it).
import CairnHTTP
import CairnProto
import Foundation

struct GRPCSnapshot {
    let call: GRPCCall
    let service: V3Service
    let backups: BackupSlots

    func start() {
        call.receiveOne { [self] received in
            guard case .success = received else { return }
            guard let release = backups.take() else {
                return call.finish(GRPCStatus(GRPCStatus.resourceExhaustedCode,
                                              "etcdserver: a backup of this member is already running; retry once it ends"))
            }
            service.node.backup { [self] result in
                switch result {
                case .failure(let error):
                    release()
                    call.finish(GRPCStatus(GRPCStatus.unavailableCode, "etcdserver: snapshot failed: \(error)"))
                case .success(let file):
                    stream(file, ended: release)
                }
            }
        }
    }

    private func stream(_ file: BackupFile, ended: @escaping @Sendable () -> Void) {
        let digest = SHA256Stream()
        let padding = [UInt8](repeating: 0, count: EtcdSnapshotTail.paddingBytes(after: file.size))
        let tailBytes = UInt64(padding.count + EtcdSnapshotTail.digestBytes)
        let call = self.call
        @Sendable func message(_ blob: [UInt8], remaining: UInt64) -> Etcdserverpb_SnapshotResponse {
            var m = Etcdserverpb_SnapshotResponse()
            m.remainingBytes = remaining
            m.blob = Data(blob)
            return m
        }
        call.sendHeaders()
        file.stream(to: BackupSink(
            onClose: { call.onEnd($0) },
            write: { piece, remaining, ready in
                digest.update(piece)
                GRPCHandler.send(call, message(piece, remaining: remaining + tailBytes), whenReady: ready)
            },
            finish: { whole in
                guard whole else {
                    return call.finish(GRPCStatus(GRPCStatus.unavailableCode, "etcdserver: snapshot stream stalled or failed"))
                }
                digest.update(padding)
                GRPCHandler.send(call, message(padding + digest.finish(), remaining: 0), andFinish: true)
            }), ended: ended)
    }
}
