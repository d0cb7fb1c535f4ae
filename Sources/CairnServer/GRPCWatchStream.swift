// etcd's Watch call: one bidirectional stream carrying many watchers. Create, cancel and progress requests are read
// one at a time; every watcher's answers share one bounded output (`WatchOutput`), and all go when the stream does.
import CairnAPI
import CairnHTTP
import CairnMVCC
import CairnProto
import Foundation
import SwiftProtobuf

final class GRPCWatchStream: @unchecked Sendable {
    private let call: GRPCCall
    private let service: V3Service
    private let output: WatchOutput
    /// Watchers open on this stream at most; a further create is answered canceled (etcd's own bound is per member).
    static let watchersPerStreamMax = 10_000

    // State below is touched on the call's queue only.
    /// The stream's watch IDs (etcd numbers them per stream, from 0, or takes the client's) to the member's.
    private var watchers: [Int64: Int64] = [:]
    private var nextID: Int64 = 0
    private var ended = false
    /// A progress request waits for the stream's watchers to catch up; more requests meanwhile share its answer (etcd
    /// 3.4.31 coalesces them likewise), so a client cannot pile up waiting requests.
    private var progressPending = false

    /// Who opened the stream while auth is on (nil when it is off).
    private let user: String?

    init(call: GRPCCall, service: V3Service, user: String?) {
        self.call = call
        self.service = service
        self.user = user
        output = WatchOutput(exchange: call.exchange, isStream: true, delivery: service.node.watchDelivery)
    }

    func start() {
        call.sendHeaders()
        call.onEnd { [self] in
            ended = true
            output.stop()
            for id in watchers.values { service.node.cancelWatchV3(id) }
            watchers.removeAll()
        }
        next()
    }

    private func next() {
        call.receive { [self] received in
            switch received {
            case .failure: return
            // The client's end of sending does not end the watchers: they go on until the stream is closed (etcd).
            case .success(nil): return
            case .success(let bytes?):
                let request: Etcdserverpb_WatchRequest
                do { request = try Etcdserverpb_WatchRequest(serializedBytes: bytes) } catch {
                    return call.finish(GRPCStatus(GRPCStatus.internalCode, "grpc: error unmarshalling request: \(error)"))
                }
                switch request.requestUnion {
                case .createRequest(let create)?: self.create(create)
                case .cancelRequest(let cancel)?: self.cancel(cancel.watchID)
                case .progressRequest?: progress()
                case nil: break
                }
                next()
            }
        }
    }

    private func header(revision: Int64) -> Etcdserverpb_ResponseHeader {
        GRPCAnswer.header(service.header(service.node.view(), revision: revision))
    }

    private func enqueue(_ response: Etcdserverpb_WatchResponse) {
        guard let bytes: [UInt8] = try? response.serializedBytes() else { return }
        output.enqueue(EncodedWatchEvent(call.framed(bytes)))
    }

    private func create(_ create: Etcdserverpb_WatchCreateRequest) {
        var chosen = create.watchID
        if chosen == 0 {
            while watchers[nextID] != nil { nextID += 1 }
            chosen = nextID
            nextID += 1
        }
        let id = chosen
        guard watchers[id] == nil, id >= 0, watchers.count < Self.watchersPerStreamMax else {
            // etcd answers a refused create with watch ID -1, created and canceled, and the reason.
            var refused = Etcdserverpb_WatchResponse()
            refused.header = header(revision: service.node.view().mvcc.revision)
            refused.watchID = -1
            refused.created = true
            refused.canceled = true
            refused.cancelReason = watchers[id] != nil ? "mvcc: duplicate watch ID provided on the WatchStream"
                : "etcdserver: too many watchers on one stream (\(Self.watchersPerStreamMax))"
            return enqueue(refused)
        }
        let request = V3WatchRequest(create)
        if let user, !service.node.view().mvcc.auth.permits(user, write: false, request.range) {
            // etcd answers a watch the user may not read as created and canceled, with gRPC's wording of the error.
            var refused = Etcdserverpb_WatchResponse()
            refused.header = header(revision: service.node.view().mvcc.revision)
            refused.watchID = -1
            refused.created = true
            refused.canceled = true
            refused.cancelReason = "rpc error: code = PermissionDenied desc = " + AuthError.permissionDenied.description
            return enqueue(refused)
        }
        watchers[id] = -1  // taken; the member's ID once created
        let fragment = create.fragment, fragmentBytesMax = service.requestBytesMax
        service.node.watchV3(request, deliver: { [self] delivery in
            for response in Self.responses(delivery, streamID: id, header: header(revision: delivery.revision),
                                           fragment: fragment, fragmentBytesMax: fragmentBytesMax) {
                enqueue(response)
            }
        }, created: { [self] result, revision in
            call.run { [self] in
                switch result {
                case .success(let memberID):
                    guard !ended, watchers[id] != nil else { return service.node.cancelWatchV3(memberID) }
                    watchers[id] = memberID
                case .failure(let error):
                    watchers[id] = nil
                    var refused = Etcdserverpb_WatchResponse()
                    refused.header = header(revision: revision)
                    refused.watchID = -1
                    refused.created = true
                    refused.canceled = true
                    refused.cancelReason = error.message
                    return enqueue(refused)
                }
            }
            // The created answer goes out before any event: both are queued on the node's queue in this order.
            if case .success = result {
                var created = Etcdserverpb_WatchResponse()
                created.header = header(revision: revision)
                created.watchID = id
                created.created = true
                enqueue(created)
            }
        })
    }

    private func cancel(_ id: Int64) {
        // An ID this stream does not have is ignored, as etcd does.
        guard let memberID = watchers.removeValue(forKey: id) else { return }
        if memberID >= 0 { service.node.cancelWatchV3(memberID) }
        service.node.afterWatchChanges { [self] revision in
            var canceled = Etcdserverpb_WatchResponse()
            canceled.header = header(revision: revision)
            canceled.watchID = id
            canceled.canceled = true
            enqueue(canceled)
        }
    }

    /// etcd's progress request (as fixed in 3.4.31): one answer with watch ID -1 at the member's revision, sent once
    /// every watcher of the stream has caught up, so no event at or below that revision can follow it.
    private func progress() {
        guard !progressPending else { return }
        progressPending = true
        let ids = watchers.values.filter { $0 >= 0 }
        service.node.whenWatchersSynced(Array(ids)) { [self] revision in
            var response = Etcdserverpb_WatchResponse()
            response.header = header(revision: revision)
            response.watchID = -1
            enqueue(response)
            call.run { [self] in progressPending = false }
        }
    }

    /// One delivery as etcd's answers: events split over several answers (`fragment` set on all but the last) when
    /// the watcher asked for fragments and they pass the request bound.
    static func responses(_ delivery: V3WatchDelivery, streamID: Int64, header: Etcdserverpb_ResponseHeader,
                          fragment: Bool, fragmentBytesMax: Int) -> [Etcdserverpb_WatchResponse] {
        var base = Etcdserverpb_WatchResponse()
        base.header = header
        base.watchID = streamID
        base.canceled = delivery.canceled
        base.compactRevision = delivery.compactRevision
        let events = delivery.events.map(GRPCAnswer.event)
        guard fragment else {
            base.events = events
            return [base]
        }
        var pieces: [Etcdserverpb_WatchResponse] = []
        var current = base, currentBytes = 0
        for event in events {
            let size = (try? event.serializedBytes() as [UInt8])?.count ?? 0
            if !current.events.isEmpty, currentBytes + size > fragmentBytesMax {
                current.fragment = true
                pieces.append(current)
                current = base
                currentBytes = 0
            }
            current.events.append(event)
            currentBytes += size
        }
        pieces.append(current)
        return pieces
    }
}
