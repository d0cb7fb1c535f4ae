// One peer TCP connection carrying frames, on a serial queue: non-blocking reads and writes, a bounded send
// buffer, and a single close path. Dialled and accepted connections are the same object once connected.
import CairnHTTP
import Dispatch
import Glibc

final class FramedSocket: @unchecked Sendable {
    let queue: DispatchQueue
    private let fd: Int32
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

    /// Called on `queue` for each frame received, in order. Returning false pauses reading until `resumeReading`.
    var onFrame: (PeerFrame) -> Bool = { _ in true }
    /// Called once on `queue` when the socket has connected (dialled sockets only).
    var onConnected: () -> Void = {}
    /// Called once on `queue` when the connection is gone, with the reason.
    var onClose: (String) -> Void = { _ in }
    /// Called on `queue` after queued bytes went out, so a paced sender can queue more.
    var onSent: () -> Void = {}

    init(fd: Int32, queue: DispatchQueue, connecting: Bool, frameBytesMax: Int, sendBytesMax: Int) {
        self.fd = fd
        self.queue = queue
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

    /// Bytes queued and not yet written.
    var pendingBytes: Int { output.count - outputStart }

    /// Queues a frame; false (and nothing queued) when the send buffer is full or the socket closed.
    @discardableResult
    func send(_ frame: PeerFrame) -> Bool {
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
        if !connecting { flush() }
        return true
    }

    func resumeReading() {
        guard !isClosed, readSuspended, !connecting else { return }
        readSuspended = false
        readSource?.resume()
        processInput()
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
        flush()
    }

    private func flush() {
        guard !isClosed, !connecting else { return }
        let before = outputStart
        while outputStart < output.count {
            let n = output.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + outputStart, output.count - outputStart, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                outputStart += n
            } else if n < 0, errno == EINTR {
                continue
            } else if n < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                break
            } else {
                return close(reason: "send: \(String(cString: strerror(errno)))")
            }
        }
        let wantsWrite = outputStart < output.count
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
        var buffer = [UInt8](repeating: 0, count: min(64 * 1024, PeerFrame.headerBytes + frameBytesMax))
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n == 0 { return close(reason: "closed by peer") }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return }
            return close(reason: "read: \(String(cString: strerror(errno)))")
        }
        if inputStart == input.count {
            input.removeAll(keepingCapacity: input.capacity <= 1024 * 1024)
            inputStart = 0
        } else if inputStart > 1024 * 1024 {
            input.removeFirst(inputStart)
            inputStart = 0
        }
        input.append(contentsOf: buffer[0..<n])
        processInput()
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
