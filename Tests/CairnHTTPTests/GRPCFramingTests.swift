// gRPC's message framing on hostile input: messages split anywhere, oversize prefixes, garbage flags, a compressed
// flag without an encoding, gzip bombs, and a seeded mutation fuzz: every input ends in messages or a status, never a trap.
import CairnBase
import Testing
@testable import CairnHTTP

/// Feeds `bytes` to a reader in pieces of `pieceBytes`, collecting messages until a status or the end.
private func readAll(_ bytes: [UInt8], pieceBytes: Int, bytesMax: Int = 1024, encoding: GRPCEncoding = .identity)
    -> (messages: [[UInt8]], status: GRPCStatus?, pending: Int)
{
    var reader = GRPCMessageReader(messageBytesMax: bytesMax, encoding: encoding)
    var messages: [[UInt8]] = []
    var offset = 0
    while offset < bytes.count {
        let end = min(bytes.count, offset + max(1, pieceBytes))
        reader.append(Array(bytes[offset..<end]))
        offset = end
        do throws(GRPCStatus) {
            while let message = try reader.next() { messages.append(message) }
        } catch {
            return (messages, error, reader.pendingBytes)
        }
    }
    return (messages, nil, reader.pendingBytes)
}

@Suite struct GRPCFramingTests {
    let messages: [[UInt8]] = [[], Array("hello".utf8), [UInt8](repeating: 7, count: 700), [0, 0, 0, 0, 5]]

    @Test func messagesSplitAtEveryPieceSizeComeOutWhole() {
        let stream = messages.flatMap { GRPCFraming.frame($0) }
        for pieceBytes in 1...stream.count {
            let (got, status, pending) = readAll(stream, pieceBytes: pieceBytes)
            #expect(status == nil && pending == 0 && got == messages, "piece size \(pieceBytes)")
        }
    }

    @Test func gzipMessagesRoundTripAndAreSplitToo() {
        let stream = messages.flatMap { GRPCFraming.frame($0, encoding: .gzip) }
        #expect(stream[0] == 1)
        for pieceBytes in [1, 3, 17, stream.count] {
            let (got, status, _) = readAll(stream, pieceBytes: pieceBytes, encoding: .gzip)
            #expect(status == nil && got == messages)
        }
    }

    @Test func aPrefixAnnouncingMoreThanTheBoundIsRefusedBeforeItsBodyArrives() {
        // Only the 5-byte prefix is sent: the refusal must not wait for (or buffer) the announced gigabyte.
        let (_, status, _) = readAll([0, 0x40, 0, 0, 0], pieceBytes: 5)
        #expect(status == GRPCStatus(8, "grpc: received message larger than max (1073741824 vs. 1024)"))
        let (_, atBound, _) = readAll(GRPCFraming.frame([UInt8](repeating: 1, count: 1024)), pieceBytes: 100)
        #expect(atBound == nil)
    }

    @Test func aFlagOtherThanZeroOrOneIsInternal() {
        let (_, status, _) = readAll([2, 0, 0, 0, 0], pieceBytes: 5)
        #expect(status?.code == GRPCStatus.internalCode)
    }

    @Test func theCompressedFlagWithoutAnEncodingIsInternal() {
        let (_, status, _) = readAll(GRPCFraming.frame([1, 2, 3], encoding: .gzip), pieceBytes: 64)
        #expect(status == GRPCStatus(13, "grpc: compressed flag set with identity or empty encoding"))
    }

    @Test func compressedGarbageAndABombAreRefused() {
        var garbage: [UInt8] = [1, 0, 0, 0, 4]
        garbage += [9, 9, 9, 9]
        #expect(readAll(garbage, pieceBytes: 9, encoding: .gzip).status?.code == GRPCStatus.internalCode)
        // 1 MiB of zeros compresses to about 1 KiB: inflating it must stop at the bound.
        let bomb = GRPCFraming.frame([UInt8](repeating: 0, count: 1 << 20), encoding: .gzip)
        let (_, status, _) = readAll(bomb, pieceBytes: 4096, bytesMax: 64 * 1024, encoding: .gzip)
        #expect(status?.code == GRPCStatus.resourceExhaustedCode)
        // A truncated gzip stream inside a whole message.
        var cut = GRPCFraming.frame(Array("hello hello hello".utf8), encoding: .gzip)
        cut.removeLast(4)
        let length = cut.count - 5
        cut[1...4] = [0, 0, UInt8(length >> 8), UInt8(length & 0xFF)]
        #expect(readAll(cut, pieceBytes: 64, encoding: .gzip).status?.code == GRPCStatus.internalCode)
    }

    @Test func aBodyCutInsideAMessageLeavesBytesPending() {
        let framed = GRPCFraming.frame(Array("abcdef".utf8))
        let (got, status, pending) = readAll(Array(framed.dropLast(2)), pieceBytes: 3)
        #expect(got.isEmpty && status == nil && pending == framed.count - 2)
    }

    @Test func seededMutationsOfValidStreamsEndInMessagesOrAStatus() {
        var random = SeededRandom(seed: 0x6772_7063)
        let valid = messages.flatMap { GRPCFraming.frame($0) } + messages.flatMap { GRPCFraming.frame($0, encoding: .gzip) }
        for _ in 0..<2_000 {
            var bytes = valid
            for _ in 0..<Int.random(in: 1...8, using: &random) {
                let index = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<4, using: &random) {
                case 0: bytes[index] = UInt8.random(in: 0...255, using: &random)
                case 1: bytes.remove(at: index)
                case 2: bytes.insert(UInt8.random(in: 0...255, using: &random), at: index)
                default: bytes[index] ^= 0x80
                }
                if bytes.isEmpty { bytes = [0] }
            }
            let encoding: GRPCEncoding = Bool.random(using: &random) ? .gzip : .identity
            let (got, _, pending) = readAll(bytes, pieceBytes: Int.random(in: 1...64, using: &random), encoding: encoding)
            // Whatever came out is bounded by the reader's limit, and what is held is at most one message and a piece.
            #expect(got.allSatisfy { $0.count <= 1024 } && pending <= bytes.count)
        }
    }

    @Test func timeoutsParseAsTheSpecSaysAndMalformedOnesAreRefused() {
        #expect(GRPCFraming.timeoutNanoseconds("1S") == 1_000_000_000)
        #expect(GRPCFraming.timeoutNanoseconds("250m") == 250_000_000)
        #expect(GRPCFraming.timeoutNanoseconds("99999999H") == Int64.max)
        #expect(GRPCFraming.timeoutNanoseconds("7n") == 7)
        for bad in ["", "S", "1", "123456789S", "1s", "-1S", "1.5S", "１S"] {
            #expect(GRPCFraming.timeoutNanoseconds(bad) == nil, "\(bad)")
        }
    }

    @Test func messagesArePercentEncodedOutsidePrintableASCII() {
        #expect(GRPCFraming.percentEncoded("etcdserver: mvcc: required revision has been compacted")
            == "etcdserver: mvcc: required revision has been compacted")
        #expect(GRPCFraming.percentEncoded("50% café\n") == "50%25 caf%C3%A9%0A")
    }

    @Test func onlyGRPCContentTypesAreGRPC() {
        for type in ["application/grpc", "application/grpc+proto", "Application/GRPC; charset=x"] {
            #expect(GRPCFraming.isGRPC(contentType: type))
        }
        for type in [nil, "application/json", "application/grpc-web", "application/grpcx"] {
            #expect(!GRPCFraming.isGRPC(contentType: type))
        }
    }
}
