// `POST /v3/watch` as etcd's gateway serves it: one watcher per request, a chunked stream of newline-delimited
// `{"result":...}` objects (the created answer first), bounded by `WatchOutput` (a watcher that does not read is
// cut off), the watcher freed when the client goes.
import CairnAPI
import CairnHTTP
import CairnMVCC

struct V3WatchStream {
    let handler: V3Handler
    let exchange: HTTPExchange
    /// Who opened the stream while auth is on (nil when it is off).
    let user: String?

    func start(_ body: [UInt8]) {
        let request: V3WatchRequest
        do throws(V3Error) {
            // A stream's request that does not decode fails the stream: gRPC's Unknown (500), not InvalidArgument.
            let fields: V3Fields
            do throws(V3Error) { fields = try V3Fields(json: body) } catch { throw V3Error(.unknown, error.message) }
            // A body without a create request opens a stream that never says anything, as etcd's does.
            guard let create = try fields.watchCreateRequest() else {
                exchange.startResponse(status: 200, headers: V3Handler.jsonHeaders)
                return
            }
            request = create
        } catch {
            return handler.respond(exchange, error)
        }
        let node = handler.node, handler = self.handler, exchange = self.exchange
        // etcd answers a watch the user may not read with a created-and-canceled line, not an error.
        if let user, !node.view().mvcc.auth.permits(user, write: false, request.range) {
            exchange.startResponse(status: 200, headers: V3Handler.jsonHeaders)
            let header = handler.header(node.view(), revision: node.view().mvcc.revision)
            exchange.write(V3JSON.watchLine(header, created: true, canceled: true, cancelReason: "rpc error: code = PermissionDenied desc = " + AuthError.permissionDenied.description))
            return exchange.finish()
        }
        let output = WatchOutput(exchange: exchange, isStream: true, delivery: node.watchDelivery)
        node.watchV3(request, deliver: { delivery in
            // Every answer carries the member's term as it is now, as etcd's do.
            let header = handler.header(node.view(), revision: delivery.revision)
            output.enqueue(EncodedWatchEvent(V3JSON.watchLine(header, canceled: delivery.canceled,
                                                             compactRevision: delivery.compactRevision, events: delivery.events)))
        }, created: { result, revision in
            switch result {
            case .failure(let error): handler.respond(exchange, error)
            case .success(let id):
                exchange.startResponse(status: 200, headers: V3Handler.jsonHeaders)
                exchange.onClose {
                    output.stop()
                    node.cancelWatchV3(id)
                }
                output.enqueue(EncodedWatchEvent(V3JSON.watchLine(handler.header(node.view(), revision: revision), created: true)))
            }
        })
    }
}
