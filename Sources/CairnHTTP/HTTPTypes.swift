// The values that cross the HTTP module's boundary: a request head, headers, statuses and errors.
// Both HTTP/1.1 and HTTP/2 produce the same values, so a handler never knows which protocol carried it.

/// Header fields in arrival order. Names are stored lowercased (HTTP/2 requires it; HTTP/1.1 is case-insensitive).
package struct HTTPHeaders: Sendable, Sequence {
    package private(set) var fields: [(name: String, value: String)] = []

    package init() {}

    package init(_ fields: [(String, String)]) {
        for (name, value) in fields { add(name, value) }
    }

    package mutating func add(_ name: String, _ value: String) {
        fields.append((name.lowercased(), value))
    }

    package mutating func remove(_ name: String) {
        let lower = name.lowercased()
        fields.removeAll { $0.name == lower }
    }

    /// The first value of `name`, or nil.
    package subscript(_ name: String) -> String? {
        let lower = name.lowercased()
        return fields.first { $0.name == lower }?.value
    }

    package func values(_ name: String) -> [String] {
        let lower = name.lowercased()
        return fields.filter { $0.name == lower }.map(\.value)
    }

    package func contains(_ name: String) -> Bool { self[name] != nil }

    /// Whether a comma-separated header (Connection, Accept-Encoding, ...) lists `token`, ignoring case and parameters.
    package func listContains(_ name: String, token: String) -> Bool {
        for value in values(name) {
            for item in value.split(separator: ",") {
                let bare = item.split(separator: ";", maxSplits: 1).first ?? item[...]
                if bare.trimmingASCIIWhitespace().lowercased() == token { return true }
            }
        }
        return false
    }

    package func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}

package enum HTTPVersion: Sendable, Equatable {
    case http1_0, http1_1, http2
}

package struct HTTPRequestHead: Sendable {
    package var method: String
    /// The request target as sent (origin form: path and query, still percent-encoded).
    package var target: String
    package var version: HTTPVersion
    package var headers: HTTPHeaders
    /// The common name of the client certificate the TLS handshake verified (`--client-cert-auth`), nil without one.
    package var clientCertificateName: String?

    package init(method: String, target: String, version: HTTPVersion, headers: HTTPHeaders) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
    }

    /// The path part of the target, still percent-encoded.
    package var rawPath: Substring {
        let pathAndQuery = target.hasPrefix("/") ? target[...] : originForm
        return pathAndQuery.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    }

    /// The query part of the target (after `?`), still percent-encoded; empty when there is none.
    package var rawQuery: Substring {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count == 2 ? parts[1] : ""
    }

    /// An absolute-form target (`http://host/path`) reduced to its origin form.
    private var originForm: Substring {
        let afterScheme = target.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard afterScheme.count == 3, afterScheme[0].hasSuffix(":"), afterScheme[1].isEmpty else { return target[...] }
        let afterAuthority = afterScheme[2]
        guard let slash = afterAuthority.firstIndex(of: "/") else { return "/" }
        return afterAuthority[slash...]
    }
}

/// A failure the HTTP layer answers itself, before or instead of the handler.
package struct HTTPError: Error, Sendable, Equatable {
    package var status: Int
    package var reason: String

    package init(_ status: Int, _ reason: String) {
        self.status = status
        self.reason = reason
    }
}

package enum HTTPStatus {
    package static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 101: "Switching Protocols"
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 301: "Moved Permanently"
        case 304: "Not Modified"
        case 307: "Temporary Redirect"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 411: "Length Required"
        case 412: "Precondition Failed"
        case 413: "Request Entity Too Large"
        case 414: "Request URI Too Long"
        case 415: "Unsupported Media Type"
        case 417: "Expectation Failed"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Status \(status)"
        }
    }
}

extension StringProtocol {
    package func trimmingASCIIWhitespace() -> Substring {
        var s = self[...]
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return Substring(s)
    }
}

/// The value of one ASCII hexadecimal digit, or nil.
func hexDigitValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case 0x30...0x39: byte - 0x30
    case 0x41...0x46: byte - 0x41 + 10
    case 0x61...0x66: byte - 0x61 + 10
    default: nil
    }
}
