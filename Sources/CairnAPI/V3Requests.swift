// etcd's v3 JSON gateway, the request side: JSON bodies into the key space's requests, read the way etcd 3.4's
// grpc-gateway reads them (jsonpb): proto or camelCase field names, 64-bit integers as numbers or strings, bytes in
// base64, enums by name or number, unknown fields ignored. Errors carry the gRPC code the gateway would answer with.
import CairnBase
import CairnMVCC

/// A v3 error as the gateway shows it: `{"error":…,"message":…,"code":…}` with an HTTP status from the code.
package struct V3Error: Error, Equatable, Sendable {
    package enum Code: Int, Sendable {
        case canceled = 1, unknown = 2, invalidArgument = 3, deadlineExceeded = 4, notFound = 5, alreadyExists = 6
        case permissionDenied = 7, resourceExhausted = 8, failedPrecondition = 9, aborted = 10, outOfRange = 11
        case unimplemented = 12, internalError = 13, unavailable = 14, dataLoss = 15, unauthenticated = 16
    }

    package var code: Code
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// grpc-gateway's HTTPStatusFromCode (v1, as etcd 3.4 links it).
    package var httpStatus: Int {
        switch code {
        case .canceled: 408
        case .unknown, .internalError, .dataLoss: 500
        case .invalidArgument, .outOfRange: 400
        case .deadlineExceeded: 504
        case .notFound: 404
        case .alreadyExists, .aborted: 409
        case .permissionDenied: 403
        case .unauthenticated: 401
        case .resourceExhausted: 429
        case .failedPrecondition: 412
        case .unimplemented: 501
        case .unavailable: 503
        }
    }

    /// The key space's errors with etcd's codes and messages (etcdserver prefixes the mvcc ones).
    package init(_ error: MVCCError) {
        switch error {
        case .compacted: self.init(.outOfRange, "etcdserver: " + error.description)
        case .futureRevision: self.init(.outOfRange, "etcdserver: " + error.description)
        case .leaseNotFound: self.init(.notFound, error.description)
        case .leaseExists: self.init(.failedPrecondition, error.description)
        case .noSpace: self.init(.resourceExhausted, error.description)
        case .leaseTTLTooLarge: self.init(.outOfRange, error.description)
        case .keyNotFound, .emptyKey, .valueProvided, .leaseProvided, .tooManyOps, .duplicateKey:
            self.init(.invalidArgument, error.description)
        case .auth(let error): self.init(error)
        }
    }

    /// Auth errors with etcd's codes (rpctypes).
    package init(_ error: AuthError) {
        let code: Code
        switch error {
        case .userEmpty, .roleEmpty, .invalidManagement, .authFailed: code = .invalidArgument
        case .noPasswordUser: code = .unknown
        case .permissionDenied: code = .permissionDenied
        case .invalidToken: code = .unauthenticated
        case .tooMany: code = .resourceExhausted
        case .rootUserMissing, .rootRoleMissing, .userExists, .userNotFound, .roleExists, .roleNotFound, .roleNotGranted,
             .permissionNotGranted, .notEnabled, .v2:
            code = .failedPrecondition
        }
        self.init(code, error.description)
    }
}

/// One decoded JSON object with jsonpb's field rules.
package struct V3Fields {
    let value: JSONValue

    package init(json bytes: [UInt8]) throws(V3Error) {
        do {
            value = try JSONReader.parse(bytes)
        } catch {
            throw V3Error(.invalidArgument, error.description)
        }
        // The gateway reads the body into a map first (Go's words for the type are kept).
        guard case .object = value else { throw Self.typeError("map[string]json.RawMessage", value) }
    }

    init(_ value: JSONValue) throws(V3Error) {
        guard case .object = value else { throw Self.typeError("object", value) }
        self.value = value
    }

    /// A field by its proto name or its lowerCamelCase JSON name; null counts as absent.
    func field(_ protoName: String) -> JSONValue? {
        let found = value[protoName] ?? value[Self.camelCase(protoName)]
        if case .null? = found { return nil }
        return found
    }

    static func camelCase(_ name: String) -> String {
        var result = ""
        var upper = false
        for character in name {
            if character == "_" {
                upper = true
            } else {
                result.append(upper ? Character(character.uppercased()) : character)
                upper = false
            }
        }
        return result
    }

    static func typeError(_ wanted: String, _ value: JSONValue) -> V3Error {
        V3Error(.invalidArgument, "json: cannot unmarshal \(kind(value)) into Go value of type \(wanted)")
    }

    private static func kind(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "bool"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    package func bytes(_ name: String) throws(V3Error) -> [UInt8] {
        guard let value = field(name) else { return [] }
        guard case .string(let text) = value else { throw Self.typeError("[]uint8", value) }
        do {
            return try Base64.decode(Array(text.utf8))
        } catch {
            throw V3Error(.invalidArgument, error.description)
        }
    }

    package func int64(_ name: String) throws(V3Error) -> Int64 {
        guard let value = field(name) else { return 0 }
        let text: String
        switch value {
        case .number(let number): text = number
        case .string(let string): text = string
        default: throw Self.typeError("int64", value)
        }
        guard let number = Int64(text) else {
            // jsonpb reads a quoted int64 as the JSON number inside the quotes.
            guard let first = text.first else { throw V3Error(.invalidArgument, "unexpected end of JSON input") }
            if first != "-" && !("0"..."9").contains(first) {
                throw V3Error(.invalidArgument, "invalid character '\(first)' looking for beginning of value")
            }
            throw V3Error(.invalidArgument, "json: invalid use of ,string struct tag, trying to unmarshal \"\(text)\" into int64")
        }
        return number
    }

    /// A uint64 (member IDs), as a number or a string.
    package func uint64(_ name: String) throws(V3Error) -> UInt64 {
        guard let value = field(name) else { return 0 }
        let text: String
        switch value {
        case .number(let number): text = number
        case .string(let string): text = string
        default: throw Self.typeError("uint64", value)
        }
        guard let number = UInt64(text) else { throw V3Error(.invalidArgument, "json: cannot unmarshal \(text) into Go value of type uint64") }
        return number
    }

    /// A repeated string.
    package func strings(_ name: String) throws(V3Error) -> [String] {
        guard let value = field(name) else { return [] }
        guard case .array(let elements) = value else { throw Self.typeError("[]string", value) }
        var result: [String] = []
        for element in elements {
            guard case .string(let text) = element else { throw Self.typeError("string", element) }
            result.append(text)
        }
        return result
    }

    package func bool(_ name: String) throws(V3Error) -> Bool {
        guard let value = field(name) else { return false }
        guard case .bool(let flag) = value else { throw Self.typeError("bool", value) }
        return flag
    }

    /// An enum by its name or its number.
    package func enumeration<T>(_ name: String, _ cases: [(String, T)]) throws(V3Error) -> T? {
        guard let value = field(name) else { return nil }
        switch value {
        case .string(let text):
            if let match = cases.first(where: { $0.0 == text }) { return match.1 }
            throw V3Error(.invalidArgument, "unknown value \"\(text)\" for enum \(name)")
        case .number(let text):
            if let index = Int(text), cases.indices.contains(index) { return cases[index].1 }
            throw V3Error(.invalidArgument, "unknown value \(text) for enum \(name)")
        default: throw Self.typeError("enum", value)
        }
    }

    /// A repeated enum, each by name or number.
    func enumerations<T>(_ name: String, _ cases: [(String, T)]) throws(V3Error) -> [T] {
        guard let value = field(name) else { return [] }
        guard case .array(let elements) = value else { throw Self.typeError("[]enum", value) }
        var result: [T] = []
        for element in elements {
            let one = try V3Fields(.object([("v", element)])).enumeration("v", cases)
            if let one { result.append(one) }
        }
        return result
    }

    func objects(_ name: String) throws(V3Error) -> [V3Fields] {
        guard let value = field(name) else { return [] }
        guard case .array(let elements) = value else { throw Self.typeError("[]", value) }
        var result: [V3Fields] = []
        for element in elements { result.append(try V3Fields(element)) }
        return result
    }

    func object(_ name: String) throws(V3Error) -> V3Fields? {
        guard let value = field(name) else { return nil }
        return try V3Fields(value)
    }
}

// MARK: - The kv requests

extension V3Fields {
    func keyRange() throws(V3Error) -> KeyRange {
        KeyRange(key: try bytes("key"), rangeEnd: try bytes("range_end"))
    }

    package func rangeRequest() throws(V3Error) -> RangeRequest {
        var request = RangeRequest(range: try keyRange())
        request.limit = try int64("limit")
        request.revision = try int64("revision")
        request.sortOrder = try enumeration("sort_order", [("NONE", .none), ("ASCEND", .ascend), ("DESCEND", .descend)]) ?? .none
        request.sortTarget = try enumeration("sort_target", [("KEY", .key), ("VERSION", .version), ("CREATE", .create),
                                                             ("MOD", .mod), ("VALUE", .value)]) ?? .key
        request.serializable = try bool("serializable")
        request.keysOnly = try bool("keys_only")
        request.countOnly = try bool("count_only")
        request.minModRevision = try int64("min_mod_revision")
        request.maxModRevision = try int64("max_mod_revision")
        request.minCreateRevision = try int64("min_create_revision")
        request.maxCreateRevision = try int64("max_create_revision")
        return request
    }

    package func putRequest() throws(V3Error) -> PutRequest {
        var request = PutRequest(key: try bytes("key"), value: try bytes("value"))
        request.lease = try int64("lease")
        request.prevKV = try bool("prev_kv")
        request.ignoreValue = try bool("ignore_value")
        request.ignoreLease = try bool("ignore_lease")
        return request
    }

    package func deleteRangeRequest() throws(V3Error) -> DeleteRangeRequest {
        var request = DeleteRangeRequest(range: try keyRange())
        request.prevKV = try bool("prev_kv")
        return request
    }

    /// A transaction, nested ones included: nesting is bounded by etcd's operation budget, checked level by level
    /// here before going deeper, so the recursion stays within `TxnRequest.opsMaxDefault` levels.
    package func txnRequest(opsBudget: Int = TxnRequest.opsMaxDefault) throws(V3Error) -> TxnRequest {
        let compares = try objects("compare")
        let success = try objects("success")
        let failure = try objects("failure")
        let ops = max(compares.count, success.count, failure.count)
        guard ops <= opsBudget else { throw V3Error(MVCCError.tooManyOps) }
        var request = TxnRequest()
        for c in compares {
            let result = try c.enumeration("result", [("EQUAL", Compare.Result.equal), ("GREATER", .greater), ("LESS", .less),
                                                       ("NOT_EQUAL", .notEqual)]) ?? .equal
            let target: Compare.Target
            switch try c.enumeration("target", [("VERSION", 0), ("CREATE", 1), ("MOD", 2), ("VALUE", 3), ("LEASE", 4)]) ?? 0 {
            case 1: target = .createRevision(try c.int64("create_revision"))
            case 2: target = .modRevision(try c.int64("mod_revision"))
            case 3: target = .value(try c.bytes("value"))
            case 4: target = .lease(try c.int64("lease"))
            default: target = .version(try c.int64("version"))
            }
            request.compare.append(Compare(try c.keyRange(), target, result))
        }
        request.success = try Self.ops(success, opsBudget: opsBudget - ops)
        request.failure = try Self.ops(failure, opsBudget: opsBudget - ops)
        return request
    }

    private static func ops(_ objects: [V3Fields], opsBudget: Int) throws(V3Error) -> [RequestOp] {
        var result: [RequestOp] = []
        for op in objects {
            if let range = try op.object("request_range") {
                result.append(.range(try range.rangeRequest()))
            } else if let put = try op.object("request_put") {
                result.append(.put(try put.putRequest()))
            } else if let delete = try op.object("request_delete_range") {
                result.append(.deleteRange(try delete.deleteRangeRequest()))
            } else if let txn = try op.object("request_txn") {
                result.append(.txn(try txn.txnRequest(opsBudget: opsBudget)))
            } else {
                // etcd's checkRequestOp: an empty union.
                throw V3Error(.invalidArgument, MVCCError.keyNotFound.description)
            }
        }
        return result
    }
}

// MARK: - Watch

extension V3Fields {
    /// The `create_request` of a watch stream's request (nil when the body holds none): key and range as a range
    /// request has them, a start revision, NOPUT/NODELETE filters, prev_kv and progress_notify.
    package func watchCreateRequest() throws(V3Error) -> V3WatchRequest? {
        guard let create = try object("create_request") else { return nil }
        var request = V3WatchRequest(range: try create.keyRange())
        request.startRevision = try create.int64("start_revision")
        request.prevKV = try create.bool("prev_kv")
        request.progressNotify = try create.bool("progress_notify")
        for filter in try create.enumerations("filters", [("NOPUT", 0), ("NODELETE", 1)]) {
            if filter == 0 { request.noPut = true } else { request.noDelete = true }
        }
        return request
    }
}
