// What the log carries for the v3 key space: each write request as a compact binary command, versioned by its
// first byte, and the one function that applies a command, so every member turns the same entry into the same change.
// Decoding checks every length and bounds nesting: bytes from a peer or a file can be refused, never trap.
import CairnBase

package enum MVCCCommand: Sendable, Equatable {
    case put(PutRequest)
    case deleteRange(DeleteRangeRequest)
    case txn(TxnRequest)
    case compact(revision: Int64)
    case grantLease(id: Int64, ttl: Int64)
    case revokeLease(id: Int64)
    /// A keep-alive goes through the log so it reaches the leader from any member; applying it changes nothing.
    case keepAliveLease(id: Int64)
    /// etcd's NOSPACE alarm raised (or cleared) for a member: while any is raised, writes that add data are refused.
    case alarm(activate: Bool, member: UInt64)
    /// A user, role or token change, or auth turned on or off; the key space's revision does not move.
    case auth(AuthCommand)
}

/// What applying a command gives back, for the API layer to answer with.
package enum MVCCResult: Sendable, Equatable {
    case put(PutResponse)
    case deleteRange(DeleteRangeResponse)
    case txn(TxnResponse)
    case compacted(revision: Int64)
    case leaseGranted(Lease, revision: Int64)
    case leaseRevoked(revision: Int64)
    case leaseKeptAlive(Lease, revision: Int64)
    /// The members whose NOSPACE alarm the command raised or cleared.
    case alarms([UInt64])
    /// The auth store's revision after the change.
    case auth(revision: UInt64)
}

extension MVCCKeySpace {
    /// Applies one logged command. `minimumLeaseTTL` is etcd's minimum, from the election timeout.
    package mutating func apply(_ command: MVCCCommand, minimumLeaseTTL: Int64) -> Result<MVCCResult, MVCCError> {
        do throws(MVCCError) {
            switch command {
            case .auth(let change):
                do throws(AuthError) { try auth.apply(change) } catch { throw .auth(error) }
                return .success(.auth(revision: auth.revision))
            case .alarm(let activate, let member):
                let changed = activate ? (noSpaceAlarms.contains(member) ? [] : [member]) : (noSpaceAlarms.contains(member) ? [member] : [])
                if activate { noSpaceAlarms.insert(member) } else { noSpaceAlarms.remove(member) }
                return .success(.alarms(changed))
            default:
                break
            }
            // etcd's capped applier: while an alarm is raised only reads, deletes and lease upkeep get through.
            if !noSpaceAlarms.isEmpty && command.addsData { throw MVCCError.noSpace }
            switch command {
            case .alarm, .auth: return .success(.alarms([]))
            case .put(let request): return .success(.put(try put(request)))
            case .deleteRange(let request): return .success(.deleteRange(try deleteRange(request)))
            case .txn(let request): return .success(.txn(try txn(request)))
            case .compact(let target):
                try compact(target)
                return .success(.compacted(revision: revision))
            case .grantLease(let id, let ttl):
                return .success(.leaseGranted(try grantLease(id: id, ttl: ttl, minimumTTL: minimumLeaseTTL), revision: revision))
            case .revokeLease(let id): return .success(.leaseRevoked(revision: try revokeLease(id: id)))
            case .keepAliveLease(let id):
                guard let lease = leases[id] else { throw MVCCError.leaseNotFound }
                return .success(.leaseKeptAlive(lease, revision: revision))
            }
        } catch {
            return .failure(error)
        }
    }
}

extension MVCCCommand {
    /// Whether etcd's capped applier refuses it under a NOSPACE alarm: a put, a lease grant, a transaction that writes.
    package var addsData: Bool {
        switch self {
        case .put, .grantLease: true
        case .txn(let request): !request.isReadOnly
        default: false
        }
    }
}

extension TxnRequest {
    /// No put or delete in any branch, nested transactions included (etcd's isTxnReadonly).
    var isReadOnly: Bool {
        (success + failure).allSatisfy { op in
            switch op {
            case .range: true
            case .put, .deleteRange: false
            case .txn(let nested): nested.isReadOnly
            }
        }
    }
}

package enum MVCCCommandError: Error, Equatable, CustomStringConvertible {
    case version(UInt8)
    case malformed(String)
    case truncated(ByteReaderError)

    package var description: String {
        switch self {
        case .version(let v): "v3 command format \(v) is newer than this member understands"
        case .malformed(let why): "malformed v3 command: \(why)"
        case .truncated(let error): "truncated v3 command: \(error)"
        }
    }
}

extension MVCCCommand {
    static let formatVersion: UInt8 = 1
    /// Deeper nesting can never pass etcd's operation budget (each level spends at least one of 128), so a deeper
    /// encoding is damage; the bound also bounds the decoder's recursion.
    static let txnDepthMax = TxnRequest.opsMaxDefault

    package func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.u8(Self.formatVersion)
        switch self {
        case .put(let request):
            writer.u8(1)
            Self.encode(request, into: &writer)
        case .deleteRange(let request):
            writer.u8(2)
            Self.encode(request, into: &writer)
        case .txn(let request):
            writer.u8(3)
            Self.encode(request, into: &writer)
        case .compact(let revision):
            writer.u8(4)
            writer.u64(UInt64(bitPattern: revision))
        case .grantLease(let id, let ttl):
            writer.u8(5)
            writer.u64(UInt64(bitPattern: id))
            writer.u64(UInt64(bitPattern: ttl))
        case .revokeLease(let id):
            writer.u8(6)
            writer.u64(UInt64(bitPattern: id))
        case .keepAliveLease(let id):
            writer.u8(7)
            writer.u64(UInt64(bitPattern: id))
        case .alarm(let activate, let member):
            writer.u8(8)
            writer.u8(activate ? 1 : 0)
            writer.u64(member)
        case .auth(let change):
            writer.u8(9)
            change.encode(into: &writer)
        }
        return writer.bytes
    }

    package init(decoding bytes: [UInt8]) throws(MVCCCommandError) {
        var reader = ByteReader(bytes)
        do {
            let version = try reader.u8()
            guard version == Self.formatVersion else { throw MVCCCommandError.version(version) }
            switch try reader.u8() {
            case 1: self = .put(try Self.decodePut(&reader))
            case 2: self = .deleteRange(try Self.decodeDelete(&reader))
            case 3: self = .txn(try Self.decodeTxn(&reader, depth: 0))
            case 4: self = .compact(revision: Int64(bitPattern: try reader.u64()))
            case 5: self = .grantLease(id: Int64(bitPattern: try reader.u64()), ttl: Int64(bitPattern: try reader.u64()))
            case 6: self = .revokeLease(id: Int64(bitPattern: try reader.u64()))
            case 7: self = .keepAliveLease(id: Int64(bitPattern: try reader.u64()))
            case 8:
                let flag = try reader.u8()
                guard flag < 2 else { throw MVCCCommandError.malformed("alarm flag \(flag)") }
                self = .alarm(activate: flag == 1, member: try reader.u64())
            case 9: self = .auth(try AuthCommand.decode(&reader))
            case let kind: throw MVCCCommandError.malformed("command kind \(kind)")
            }
            guard reader.isAtEnd else { throw MVCCCommandError.malformed("\(reader.remaining) bytes after the command") }
        } catch let error as ByteReaderError {
            throw .truncated(error)
        } catch let error as MVCCCommandError {
            throw error
        } catch {
            throw .malformed("\(error)")
        }
    }

    // MARK: - Encoding

    private static func encode(_ range: KeyRange, into writer: inout ByteWriter) {
        writer.lengthPrefixed(range.start)
        switch range.end {
        case nil: writer.u8(0)
        case let end?:
            writer.u8(1)
            writer.lengthPrefixed(end)
        }
    }

    private static func encode(_ request: PutRequest, into writer: inout ByteWriter) {
        writer.lengthPrefixed(request.key)
        writer.lengthPrefixed(request.value)
        writer.u64(UInt64(bitPattern: request.lease))
        writer.u8((request.prevKV ? 1 : 0) | (request.ignoreValue ? 2 : 0) | (request.ignoreLease ? 4 : 0))
    }

    private static func encode(_ request: DeleteRangeRequest, into writer: inout ByteWriter) {
        encode(request.range, into: &writer)
        writer.u8(request.prevKV ? 1 : 0)
    }

    private static func encode(_ request: RangeRequest, into writer: inout ByteWriter) {
        encode(request.range, into: &writer)
        for value in [request.limit, request.revision, request.minModRevision, request.maxModRevision,
                      request.minCreateRevision, request.maxCreateRevision] {
            writer.u64(UInt64(bitPattern: value))
        }
        writer.u8(UInt8([RangeRequest.SortOrder.none, .ascend, .descend].firstIndex(of: request.sortOrder)!))
        writer.u8(UInt8([RangeRequest.SortTarget.key, .version, .create, .mod, .value].firstIndex(of: request.sortTarget)!))
        writer.u8((request.serializable ? 1 : 0) | (request.keysOnly ? 2 : 0) | (request.countOnly ? 4 : 0))
    }

    private static func encode(_ request: TxnRequest, into writer: inout ByteWriter) {
        writer.u32(UInt32(request.compare.count))
        for compare in request.compare {
            encode(compare.range, into: &writer)
            writer.u8(UInt8([Compare.Result.equal, .greater, .less, .notEqual].firstIndex(of: compare.result)!))
            switch compare.target {
            case .version(let v): writer.u8(0); writer.u64(UInt64(bitPattern: v))
            case .createRevision(let v): writer.u8(1); writer.u64(UInt64(bitPattern: v))
            case .modRevision(let v): writer.u8(2); writer.u64(UInt64(bitPattern: v))
            case .value(let v): writer.u8(3); writer.lengthPrefixed(v)
            case .lease(let v): writer.u8(4); writer.u64(UInt64(bitPattern: v))
            }
        }
        for branch in [request.success, request.failure] {
            writer.u32(UInt32(branch.count))
            for op in branch {
                switch op {
                case .range(let r): writer.u8(0); encode(r, into: &writer)
                case .put(let p): writer.u8(1); encode(p, into: &writer)
                case .deleteRange(let d): writer.u8(2); encode(d, into: &writer)
                case .txn(let t): writer.u8(3); encode(t, into: &writer)
                }
            }
        }
    }

    // MARK: - Decoding

    private static func decodeRange(_ reader: inout ByteReader) throws -> KeyRange {
        let start = try reader.lengthPrefixed()
        switch try reader.u8() {
        case 0: return KeyRange(key: start, rangeEnd: [])
        case 1:
            var range = KeyRange(key: start, rangeEnd: [])
            range.end = try reader.lengthPrefixed()
            return range
        case let flag: throw MVCCCommandError.malformed("range end flag \(flag)")
        }
    }

    private static func decodePut(_ reader: inout ByteReader) throws -> PutRequest {
        var request = PutRequest(key: try reader.lengthPrefixed(), value: try reader.lengthPrefixed())
        request.lease = Int64(bitPattern: try reader.u64())
        let flags = try reader.u8()
        guard flags < 8 else { throw MVCCCommandError.malformed("put flags \(flags)") }
        request.prevKV = flags & 1 != 0
        request.ignoreValue = flags & 2 != 0
        request.ignoreLease = flags & 4 != 0
        return request
    }

    private static func decodeDelete(_ reader: inout ByteReader) throws -> DeleteRangeRequest {
        var request = DeleteRangeRequest(range: try decodeRange(&reader))
        let flags = try reader.u8()
        guard flags < 2 else { throw MVCCCommandError.malformed("delete flags \(flags)") }
        request.prevKV = flags == 1
        return request
    }

    private static func decodeRangeRequest(_ reader: inout ByteReader) throws -> RangeRequest {
        var request = RangeRequest(range: try decodeRange(&reader))
        request.limit = Int64(bitPattern: try reader.u64())
        request.revision = Int64(bitPattern: try reader.u64())
        request.minModRevision = Int64(bitPattern: try reader.u64())
        request.maxModRevision = Int64(bitPattern: try reader.u64())
        request.minCreateRevision = Int64(bitPattern: try reader.u64())
        request.maxCreateRevision = Int64(bitPattern: try reader.u64())
        let orders: [RangeRequest.SortOrder] = [.none, .ascend, .descend]
        let targets: [RangeRequest.SortTarget] = [.key, .version, .create, .mod, .value]
        let order = Int(try reader.u8())
        let target = Int(try reader.u8())
        let flags = try reader.u8()
        guard order < orders.count, target < targets.count, flags < 8 else {
            throw MVCCCommandError.malformed("range sort \(order)/\(target), flags \(flags)")
        }
        request.sortOrder = orders[order]
        request.sortTarget = targets[target]
        request.serializable = flags & 1 != 0
        request.keysOnly = flags & 2 != 0
        request.countOnly = flags & 4 != 0
        return request
    }

    /// A count of items that each take at least one byte cannot pass the bytes left: checked before any allocation.
    private static func count(_ reader: inout ByteReader) throws -> Int {
        let count = Int(try reader.u32())
        guard count <= reader.remaining else { throw MVCCCommandError.malformed("\(count) items in \(reader.remaining) bytes") }
        return count
    }

    private static func decodeTxn(_ reader: inout ByteReader, depth: Int) throws -> TxnRequest {
        guard depth < txnDepthMax else { throw MVCCCommandError.malformed("transactions nested over \(txnDepthMax) deep") }
        var request = TxnRequest()
        for _ in 0..<(try count(&reader)) {
            let range = try decodeRange(&reader)
            let results: [Compare.Result] = [.equal, .greater, .less, .notEqual]
            let result = Int(try reader.u8())
            guard result < results.count else { throw MVCCCommandError.malformed("compare result \(result)") }
            let target: Compare.Target
            switch try reader.u8() {
            case 0: target = .version(Int64(bitPattern: try reader.u64()))
            case 1: target = .createRevision(Int64(bitPattern: try reader.u64()))
            case 2: target = .modRevision(Int64(bitPattern: try reader.u64()))
            case 3: target = .value(try reader.lengthPrefixed())
            case 4: target = .lease(Int64(bitPattern: try reader.u64()))
            case let kind: throw MVCCCommandError.malformed("compare target \(kind)")
            }
            request.compare.append(Compare(range, target, results[result]))
        }
        for branch in 0..<2 {
            var ops: [RequestOp] = []
            for _ in 0..<(try count(&reader)) {
                switch try reader.u8() {
                case 0: ops.append(.range(try decodeRangeRequest(&reader)))
                case 1: ops.append(.put(try decodePut(&reader)))
                case 2: ops.append(.deleteRange(try decodeDelete(&reader)))
                case 3: ops.append(.txn(try decodeTxn(&reader, depth: depth + 1)))
                case let kind: throw MVCCCommandError.malformed("request op \(kind)")
                }
            }
            if branch == 0 { request.success = ops } else { request.failure = ops }
        }
        return request
    }
}
