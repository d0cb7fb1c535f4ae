// Thin wrappers over the POSIX socket calls the server needs: listen, accept, non-blocking I/O.
// Errors carry errno's text so a bad --listen-client-urls is reported plainly.
import Glibc

package struct SocketError: Error, CustomStringConvertible {
    package var operation: String
    package var errno: Int32
    package var description: String { "\(operation): \(String(cString: strerror(errno)))" }
}

/// A host and port to listen on; the host is a literal address or a name ("localhost").
package struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    package var host: String
    package var port: UInt16
    /// An `https://` URL: connections on it speak TLS.
    package var usesTLS: Bool

    package init(host: String, port: UInt16, usesTLS: Bool = false) {
        self.host = host
        self.port = port
        self.usesTLS = usesTLS
    }

    /// The address as a URL, as the flags give it.
    package var url: String { (usesTLS ? "https://" : "http://") + description }

    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

package enum Socket {
    /// The addresses `address` resolves to (free with `freeaddrinfo`); a name that does not resolve is an error.
    private static func resolve(_ address: ListenAddress, flags: Int32) throws -> UnsafeMutablePointer<addrinfo> {
        var hints = addrinfo()
        hints.ai_flags = flags | AI_NUMERICSERV
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &list)
        guard status == 0, let list else {
            throw SocketError(operation: "resolve \(address.host): \(String(cString: gai_strerror(status)))", errno: 0)
        }
        return list
    }

    /// Opens non-blocking listening sockets for every address `host` resolves to; returns each fd with its bound port.
    package static func listen(_ address: ListenAddress, backlog: Int32) throws -> [(fd: Int32, port: UInt16)] {
        let list = try resolve(address, flags: AI_PASSIVE)
        defer { freeaddrinfo(list) }
        let first = list
        var sockets: [(Int32, UInt16)] = []
        var seen = Set<[UInt8]>()
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let info = next {
            next = info.pointee.ai_next
            let key = Array(UnsafeRawBufferPointer(start: info.pointee.ai_addr, count: Int(info.pointee.ai_addrlen)))
            guard seen.insert(key).inserted else { continue }
            let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw SocketError(operation: "socket", errno: errno) }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if info.pointee.ai_family == AF_INET6 {
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
                let error = SocketError(operation: "bind \(address)", errno: errno)
                close(fd)
                for (open, _) in sockets { close(open) }
                throw error
            }
            guard Glibc.listen(fd, backlog) == 0 else {
                let error = SocketError(operation: "listen \(address)", errno: errno)
                close(fd)
                for (open, _) in sockets { close(open) }
                throw error
            }
            sockets.append((fd, boundPort(fd)))
        }
        return sockets
    }

    package static func boundPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(fd, $0, &length) }
        }
        let family = storage.ss_family
        return withUnsafePointer(to: &storage) {
            if family == sa_family_t(AF_INET6) {
                return $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
    }


    package enum AcceptResult {
        case accepted(Int32)
        /// No descriptor is left (EMFILE, ENFILE) or no memory for one: the connection stays queued, and accepting
        /// again at once would fail again (a level-triggered listener would spin).
        case exhausted
        /// Nothing is waiting, or the one that was went away first.
        case none
    }

    /// Accepts one pending connection as a non-blocking socket with Nagle off.
    package static func tryAccept(_ listener: Int32) -> AcceptResult {
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else {
            switch errno {
            case EMFILE, ENFILE, ENOBUFS, ENOMEM: return .exhausted
            default: return .none
            }
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return .accepted(fd)
    }

    /// Starts a non-blocking connection to the first address `address` resolves to. The socket becomes writable
    /// when the attempt ends; `pendingError` then tells whether it succeeded.
    package static func connect(_ address: ListenAddress) throws -> Int32 {
        let list = try resolve(address, flags: 0)
        defer { freeaddrinfo(list) }
        let info = list
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(operation: "socket", errno: errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) != 0, errno != EINPROGRESS {
            let error = SocketError(operation: "connect \(address)", errno: errno)
            close(fd)
            throw error
        }
        return fd
    }

    /// The address at the other end of a connected socket, as "host:port" ("unknown" if the socket has none).
    package static func peerAddress(_ fd: Int32) -> String {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var port = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let status = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address -> Int32 in
                guard getpeername(fd, address, &length) == 0 else { return -1 }
                return getnameinfo(address, length, &host, socklen_t(host.count), &port, socklen_t(port.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard status == 0 else { return "unknown" }
        let name = String(cString: host), service = String(cString: port)
        return name.contains(":") ? "[\(name)]:\(service)" : "\(name):\(service)"
    }

    /// The error a finished non-blocking connect left on the socket (0 when it connected).
    package static func pendingError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        return error
    }
}
