// A `/v2/keys` request, parsed and validated exactly as etcd 3.4's v2 HTTP handler does (parseKeyRequest):
// the same parameters, the same precedence (form body before query), the same errors with the same causes.
import CairnStore

package enum KeysRequest: Sendable, Equatable {
    case read(path: StoreKey, recursive: Bool, sorted: Bool, quorum: Bool)
    case watch(path: StoreKey, recursive: Bool, stream: Bool, sinceIndex: UInt64)
    case write(StoreCommand, noValueOnSuccess: Bool)

    /// - Parameters:
    ///   - method: GET, HEAD, PUT, POST or DELETE (others are refused earlier with 405).
    ///   - keyPath: the percent-decoded path after `/v2/keys` ("" or "/..."), its bytes as the client sent them.
    ///   - parameters: the decoded form body's pairs followed by the query's (Go's `r.Form` order).
    ///   - formError: Go's text for a malformed form, if any (etcd answers "Invalid POST form" with it).
    /// A TTL stays relative (`StoreCommand.ttlNanos`): the member applying the logged command turns it into an
    /// expiration with the entry's cluster time, so no member's clock decides when a key expires.
    package static func parse(method: String, keyPath: StoreKey, parameters: [(name: String, value: String)],
                              formError: String?) -> Result<KeysRequest, StoreError> {
        func fail(_ code: StoreErrorCode, _ cause: String) -> Result<KeysRequest, StoreError> {
            .failure(StoreError(code, cause, index: 0))
        }
        if let formError { return fail(.invalidForm, formError) }
        func first(_ name: String) -> String? { parameters.first { $0.name == name }?.value }
        func uint(_ name: String) -> UInt64?? {
            guard let text = first(name) else { return .some(nil) }
            guard let value = parseGoUInt64(text) else { return nil }
            return .some(value)
        }
        func bool(_ name: String) -> Bool?? {
            guard let text = first(name) else { return .some(nil) }
            guard let value = parseGoBool(text) else { return nil }
            return .some(value)
        }
        guard let prevIndex = uint("prevIndex") else { return fail(.indexNaN, #"invalid value for "prevIndex""#) }
        guard let waitIndex = uint("waitIndex") else { return fail(.indexNaN, #"invalid value for "waitIndex""#) }
        var flags: [String: Bool] = [:]
        for name in ["recursive", "sorted", "wait", "dir", "quorum", "stream"] {
            guard let value = bool(name) else { return fail(.invalidField, "invalid value for \"\(name)\"") }
            flags[name] = value ?? false
        }
        let wait = flags["wait"]!
        if wait && method != "GET" { return fail(.invalidField, #""wait" can only be used with GET requests"#) }
        let prevValue = first("prevValue") ?? ""
        if first("prevValue") != nil && prevValue.isEmpty { return fail(.prevValueRequired, #""prevValue" cannot be empty"#) }
        guard let noValueOnSuccess = bool("noValueOnSuccess") else { return fail(.invalidField, #"invalid value for "noValueOnSuccess""#) }
        var ttl: UInt64?
        if let text = first("ttl"), !text.isEmpty {
            guard let value = parseGoUInt64(text) else { return fail(.ttlNaN, #"invalid value for "ttl""#) }
            ttl = value
        }
        var prevExist: Bool?
        if first("prevExist") != nil {
            guard let value = bool("prevExist"), let value else { return fail(.invalidField, "invalid value for prevExist") }
            prevExist = value
        }
        var refresh = false
        if first("refresh") != nil {
            guard let value = bool("refresh"), let value else { return fail(.invalidField, "invalid value for refresh") }
            refresh = value
            if refresh {
                if let value = first("value"), !value.isEmpty { return fail(.refreshValue, "A value was provided on a refresh") }
                if ttl == nil { return fail(.refreshTTLRequired, "No TTL value set") }
            }
        }
        let path = keyPath.cleaned()
        guard path.bytes.count <= KeySpace.keyBytesMax else { return fail(.invalidField, KeySpace.keyTooLongCause) }
        switch method {
        case "GET" where wait:
            return .success(.watch(path: path, recursive: flags["recursive"]!, stream: flags["stream"]!, sinceIndex: waitIndex ?? 0))
        case "GET", "HEAD":
            return .success(.read(path: path, recursive: flags["recursive"]!, sorted: flags["sorted"]!, quorum: flags["quorum"]!))
        default:
            var command = StoreCommand(method: StoreCommand.Method(rawValue: method) ?? .put, path: path)
            command.value = first("value") ?? ""
            command.dir = flags["dir"]!
            command.prevValue = prevValue
            command.prevIndex = prevIndex ?? 0
            command.prevExist = prevExist
            command.recursive = flags["recursive"]!
            command.refresh = refresh
            if let ttl {
                // A TTL beyond what nanoseconds can hold is as good as forever; saturate rather than trap.
                let (product, overflow) = Int64(clamping: ttl).multipliedReportingOverflow(by: 1_000_000_000)
                command.ttlNanos = overflow ? .max : product
            }
            return .success(.write(command, noValueOnSuccess: noValueOnSuccess ?? false))
        }
    }
}

/// Go's `strconv.ParseBool`.
package func parseGoBool(_ text: String) -> Bool? {
    switch text {
    case "1", "t", "T", "TRUE", "true", "True": true
    case "0", "f", "F", "FALSE", "false", "False": false
    default: nil
    }
}

/// Go's `strconv.ParseUint(text, 10, 64)`: decimal digits only, no sign, no overflow.
package func parseGoUInt64(_ text: String) -> UInt64? {
    guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
    return UInt64(text)
}
