// Streaming gzip through zlib: response bodies compressed piece by piece, gzip request bodies inflated likewise.
// Neither side ever holds a whole body; the inflater also bounds the decoded size (a small bomb stays small).
private import CZlib

/// Compresses a stream into gzip format. Each `compress` flushes, so a streamed watch event reaches the client at once.
final class GzipCompressor {
    private let stream: UnsafeMutablePointer<z_stream>
    private let gauges: HTTPServerGauges?

    /// `gauges` counts the stream while it lives (those that outlive one call: a streamed response's).
    init(gauges: HTTPServerGauges? = nil) {
        self.gauges = gauges
        gauges?.gzipStreamsChanged(by: 1)
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // windowBits 15 + 16 selects the gzip wrapper; level 1 because latency matters more than ratio here.
        let status = deflateInit2_(stream, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        precondition(status == Z_OK, "deflateInit2 failed: \(status)")
    }

    deinit {
        deflateEnd(stream)
        stream.deallocate()
        gauges?.gzipStreamsChanged(by: -1)
    }

    /// Compresses `input`; with `finish` the gzip trailer follows.
    func compress(_ input: [UInt8], finish: Bool) -> [UInt8] {
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: max(1024, input.count / 2 + 64))
        input.withUnsafeBufferPointer { inputBuffer in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: inputBuffer.baseAddress)
            stream.pointee.avail_in = UInt32(inputBuffer.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { out in
                    stream.pointee.next_out = out.baseAddress
                    stream.pointee.avail_out = UInt32(out.count)
                    _ = deflate(stream, finish ? Z_FINISH : Z_SYNC_FLUSH)
                    output.append(contentsOf: out[0..<(out.count - Int(stream.pointee.avail_out))])
                }
            } while stream.pointee.avail_out == 0
            stream.pointee.next_in = nil
        }
        return output
    }
}

/// Inflates a gzip (or zlib) stream piece by piece, refusing output beyond `outputBytesMax`.
final class GzipDecompressor {
    enum Failure: Error { case corrupt, tooLarge }

    private let stream: UnsafeMutablePointer<z_stream>
    private let outputBytesMax: Int
    private var outputBytes = 0
    private(set) var isFinished = false

    init(outputBytesMax: Int) {
        self.outputBytesMax = outputBytesMax
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        // windowBits 15 + 32: detect gzip or zlib from the header.
        let status = inflateInit2_(stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        precondition(status == Z_OK, "inflateInit2 failed: \(status)")
    }

    deinit {
        inflateEnd(stream)
        stream.deallocate()
    }

    func decompress(_ input: ArraySlice<UInt8>) throws(Failure) -> [UInt8] {
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        var failure: Failure?
        input.withUnsafeBufferPointer { inputBuffer in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: inputBuffer.baseAddress)
            stream.pointee.avail_in = UInt32(inputBuffer.count)
            while !isFinished, failure == nil {
                let produced: Int = chunk.withUnsafeMutableBufferPointer { out in
                    stream.pointee.next_out = out.baseAddress
                    stream.pointee.avail_out = UInt32(out.count)
                    let status = inflate(stream, Z_NO_FLUSH)
                    if status == Z_STREAM_END { isFinished = true } else if status != Z_OK && status != Z_BUF_ERROR { failure = .corrupt }
                    let n = out.count - Int(stream.pointee.avail_out)
                    output.append(contentsOf: out[0..<n])
                    return n
                }
                outputBytes += produced
                if outputBytes > outputBytesMax { failure = .tooLarge }
                if stream.pointee.avail_in == 0 && stream.pointee.avail_out != 0 { break }
            }
            stream.pointee.next_in = nil
        }
        if let failure { throw failure }
        return output
    }
}
