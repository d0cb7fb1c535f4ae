// One peer TCP connection carrying frames, plain or over TLS, on a serial queue: non-blocking reads and writes, a
// bounded send buffer, and a single close path. Dialled and accepted connections are the same object once connected.
import CairnHTTP
import Dispatch
import Glibc

final class FramedSocket: @unchecked Sendable {
    let queue: DispatchQueue
    private let scratch: ReadScratch
    private let stream: SocketStream
    private var fd: Int32 { stream.fd }
    /// Frames longer than this close the connection; reads take at most this much (and 64 KiB) at a time, so a
    /// connection limited to a small frame (before its hello) never buffers more than about twice that.
    var frameBytesMax: Int
    private let sendBytesMax: Int
    private var readSource: (any DispatchSourceRead)?
    private var writeSource: (any DispatchSourceWrite)?
    private var openSources = 0
    private var writeResumed = false
    private var readSuspended = false
    private var input: [UInt8] = []
    private var inputStart = 0
    private var output: [UInt8] = []
    private var outputStart = 0
    private var connecting: Bool
    private(set) var isClosed = false
    /// Closed because the TLS handshake failed (an untrusted certificate, garbage): no frame was read.
    private(set) var failedHandshake = false
    /// A read is queued for input OpenSSL decrypted ahead, which the read source will not announce.
    private var bufferedReadScheduled = false

    /// Called on `queue` for each frame received, in order. Returning false stops reading (the connection is closing).
    var onFrame: (PeerFrame) -> Bool = { _ in true }
    /// Called once on `queue` when the socket has connected (dialled sockets only).
    var onConnected: () -> Void = {}
    /// Called once on `queue` when the connection is gone, with the reason.
    var onClose: (String) -> Void = { _ in }
    /// Called on `queue` after queued bytes went out, so a paced sender can queue more.
    var onSent: () -> Void = {}

    /// `scratch` is shared only by sockets on `queue`.
    init(stream: SocketStream, queue: DispatchQueue, scratch: ReadScratch, connecting: Bool, frameBytesMax: Int, sendBytesMax: Int) {
        self.stream = stream
        self.queue = queue
        self.scratch = scratch
        self.connecting = connecting
        self.frameBytesMax = frameBytesMax
        self.sendBytesMax = sendBytesMax
    }

    /// Starts I/O; call on `queue`.
    func start() {
        let read = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        let write = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        let closeWhenBothCancelled: @Sendable () -> Void = { [self] in
            openSources -= 1
            if openSources == 0 { Glibc.close(fd) }
        }
        openSources = 2
        read.setEventHandler { [unowned self] in onReadable() }
        read.setCancelHandler(handler: closeWhenBothCancelled)
        write.setEventHandler { [unowned self] in onWritable() }
        write.setCancelHandler(handler: closeWhenBothCancelled)
        readSource = read
        writeSource = write
        if connecting {
            // The connect finishes when the socket first becomes writable; reading waits until then.
            readSuspended = true
            write.resume()
            writeResumed = true
        } else {
            read.resume()
        }
    }

    /// A TLS session the next connection to the same member may resume; whether this one resumed one.
    var resumableSession: TLSSession? { stream.tls?.resumableSession() }
    var resumedSession: Bool { stream.tls?.resumedSession ?? false }

    /// Connecting, or still in its TLS handshake: no frame has gone out yet.
    var isHandshaking: Bool { connecting || stream.isHandshaking }

    /// Bytes queued and not yet written.
    var pendingBytes: Int { output.count - outputStart }

    /// Queues a frame; false (and nothing queued) when the send buffer is full or the socket closed. With `flushNow`
    /// false it waits for the next `flush`, so frames sent together leave in one write.
    @discardableResult
    func send(_ frame: PeerFrame, flushNow: Bool = true) -> Bool {
        guard !isClosed, pendingBytes + PeerFrame.headerBytes + frame.payload.count <= sendBytesMax else { return false }
        if outputStart == output.count {
            output.removeAll(keepingCapacity: output.capacity <= 1024 * 1024)
            outputStart = 0
        } else if outputStart > 1024 * 1024 {
            // A link that never drains completely (a snapshot stream) must not keep every byte it ever sent.
            output.removeFirst(outputStart)
            outputStart = 0
        }
        output.append(contentsOf: frame.encoded())
        if flushNow, !connecting { flush() }
        return true
    }

    /// OpenSSL may hold decrypted input past what one read took; no read event will announce it.
    private func readBufferedInput() {
        guard !isClosed, !readSuspended, !bufferedReadScheduled, stream.hasBufferedInput else { return }
        bufferedReadScheduled = true
        queue.async { [self] in
            bufferedReadScheduled = false
            onReadable()
        }
    }

    private func onWritable() {
        if connecting {
            let error = Socket.pendingError(fd)
            guard error == 0 else { return close(reason: "connect: \(String(cString: strerror(error)))") }
            connecting = false
            readSuspended = false
            readSource?.resume()
            onConnected()
        }
        // A TLS handshake or read that had to write goes on now.
        if stream.waitsForWritable { onReadable() }
        flush()
    }

    func flush() {
        guard !isClosed, !connecting else { return }
        let before = outputStart
        // A dialled TLS socket starts its handshake here, with the hello waiting behind it.
        while outputStart < output.count || stream.isHandshaking {
            let written = output.withUnsafeBytes { stream.write(UnsafeRawBufferPointer(rebasing: $0[outputStart...])) }
            guard case .wrote(let n) = written, n > 0 else {
                if case .failed(let reason) = written { return fail(reason) }
                break
            }
            outputStart += n
        }
        let wantsWrite = outputStart < output.count || stream.waitsForWritable
        if wantsWrite, !writeResumed {
            writeSource?.resume()
            writeResumed = true
        } else if !wantsWrite, writeResumed {
            writeSource?.suspend()
            writeResumed = false
        }
        if outputStart > before { onSent() }
    }

    private func onReadable() {
        guard !isClosed else { return }
        let buffer = UnsafeMutableRawBufferPointer(rebasing: scratch.bytes[..<min(scratch.bytes.count, PeerFrame.headerBytes + frameBytesMax)])
        let n: Int
        switch stream.read(into: buffer) {
        case .bytes(let count): n = count
        case .wouldBlock:
            // The handshake may have written or finished: queued output (the hello) can go now.
            if !connecting { flush() }
            return
        case .ended: return close(reason: stream.isHandshaking ? "closed by peer during the TLS handshake" : "closed by peer")
        case .failed(let reason): return fail(reason)
        }
        if inputStart == input.count {
            input.removeAll(keepingCapacity: input.capacity <= 1024 * 1024)
            inputStart = 0
        } else if inputStart > 1024 * 1024 {
            input.removeFirst(inputStart)
            inputStart = 0
        }
        input.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[..<n]))
        processInput()
        readBufferedInput()
    }

    /// A read or write failed: during the handshake that is a refused TLS peer.
    private func fail(_ reason: String) {
        failedHandshake = stream.isHandshaking
        close(reason: reason)
    }

    private func processInput() {
        while !isClosed, !readSuspended {
            let decoder = PeerFrameDecoder(frameBytesMax: frameBytesMax)
            let decoded = input.withUnsafeBytes { buffer in
                Result { () throws(PeerFrameError) in try decoder.next(UnsafeRawBufferPointer(rebasing: buffer[inputStart...])) }
            }
            guard case .success(let next) = decoded else {
                if case .failure(let error) = decoded { close(reason: error.description) }
                return
            }
            guard let (frame, consumed) = next else { return }
            inputStart += consumed
            if !onFrame(frame), !isClosed {
                readSuspended = true
                readSource?.suspend()
            }
        }
    }

    func close(reason: String) {
        guard !isClosed else { return }
        isClosed = true
        stream.closeNotify()
        if readSuspended { readSource?.resume() }
        if !writeResumed { writeSource?.resume() }
        readSource?.cancel()
        writeSource?.cancel()
        onClose(reason)
        onFrame = { _ in false }
        onClose = { _ in }
        onConnected = {}
    }
}
