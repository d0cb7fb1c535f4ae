// A connected non-blocking socket's bytes, in the clear or through TLS: one read and one write that never block,
// so the HTTP connection and the peer transport drive either the same way from their Dispatch sources.
import Glibc

package final class SocketStream {
    package let fd: Int32
    /// Nil for a plain socket.
    package let tls: TLSStream?

    package init(fd: Int32, tls: TLSStream?) {
        self.fd = fd
        self.tls = tls
    }

    /// Still exchanging TLS handshake messages: no application byte has moved yet.
    package var isHandshaking: Bool { tls?.isHandshaking ?? false }
    /// The last read or write stopped until the socket is writable, whatever output the owner has queued.
    package var waitsForWritable: Bool { tls?.waitsForWritable ?? false }
    /// Decrypted input is waiting that no read event will announce.
    package var hasBufferedInput: Bool { tls?.hasBufferedInput ?? false }

    package func read(into buffer: UnsafeMutableRawBufferPointer) -> TLSStream.ReadResult {
        if let tls { return tls.read(into: buffer) }
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .ended }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let code: return .failed(String(cString: strerror(code)))
            }
        }
    }

    package func write(_ buffer: UnsafeRawBufferPointer) -> TLSStream.WriteResult {
        if let tls { return tls.write(buffer) }
        while true {
            let n = Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return .wrote(n) }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK: return .wouldBlock
            case let code: return .failed(String(cString: strerror(code)))
            }
        }
    }

    /// Ends a TLS session politely if the socket has room; nothing for a plain socket.
    package func closeNotify() { tls?.closeNotify() }

    /// Bytes discarded at most, already received, before closing a connection refused in its TLS handshake.
    package static let refusalDrainBytesMax = 64 * 1024

    /// Reads and drops what the peer already sent (up to `refusalDrainBytesMax`), so the close sends a FIN, not a
    /// reset that could destroy the alert on its way: a plain HTTP request on a TLS port gets an empty reply, as
    /// from etcd.
    package func discardReceived() {
        var scratch = [UInt8](repeating: 0, count: 16 * 1024)
        var discarded = 0
        while discarded < Self.refusalDrainBytesMax {
            let n = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard n > 0 else { return }
            discarded += n
        }
    }
}
