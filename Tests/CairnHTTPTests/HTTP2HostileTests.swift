// HTTP/2 frames built by hand against the server: HPACK bombs and header floods must be refused while holding
// no more header bytes than the advertised limits (measured by the server's own count, not by process memory).
import CairnTestSupport
import Glibc
import Testing
@testable import CairnHTTP

/// Raw HTTP/2 frames, as a hostile client writes them.
enum H2Frame {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)
    static let headersType: UInt8 = 1, rstStreamType: UInt8 = 3, continuationType: UInt8 = 9, dataType: UInt8 = 0
    static let endStream: UInt8 = 1, endHeaders: UInt8 = 4

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF), type, flags,
                UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    static let emptySettings = frame(type: 4, flags: 0, stream: 0, [])

    /// `GET path` with `:authority: x`, as literals and static table entries.
    static func request(path: String) -> [UInt8] { [0x82, 0x86, 0x41, 0x01, 0x78, 0x44, UInt8(path.utf8.count)] + Array(path.utf8) }

    /// A request, then a 4,000-byte field `x` added to the dynamic table: 4,033 counted bytes.
    static func bombStart(path: String) -> [UInt8] {
        var block = request(path: path)
        // Literal with incremental indexing, new name "x"; value length 4000 = 127 + 3873 in HPACK's 7-bit prefix form.
        block += [0x40, 0x01, 0x78, 0x7F, 0xA1, 0x1E] + [UInt8](repeating: 0x61, count: 4000)
        return block
    }

    /// One byte each that the server decodes into the 4,033-byte field again (dynamic table index 62).
    static func references(_ count: Int) -> [UInt8] { [UInt8](repeating: 0xBE, count: count) }

    /// Reads frames until one of `type` on `stream` arrives; nil when the connection ends first.
    static func read(_ client: RawClient, until type: UInt8, stream: UInt32) -> (flags: UInt8, payload: [UInt8])? {
        while let header = client.readExactly(9) {
            let length = Int(header[0]) << 16 | Int(header[1]) << 8 | Int(header[2])
            let id = UInt32(header[5] & 0x7F) << 24 | UInt32(header[6]) << 16 | UInt32(header[7]) << 8 | UInt32(header[8])
            guard let payload = client.readExactly(length) else { return nil }
            if header[3] == type, id == stream { return (header[4], payload) }
        }
        return nil
    }
}

@Suite(.serialized) struct HTTP2HostileInputTests {
    /// 12,000 one-byte references to a 4 KB field: 48 MB of headers from 16 KB sent, in one HEADERS frame and then
    /// over a full run of CONTINUATION frames. Each is answered 431 and no more than the limit is ever held.
    @Test(arguments: [false, true]) func hpackBombIsAnswered431AndNeverHeld(continuations: Bool) throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        var request = H2Frame.preface + H2Frame.emptySettings
        let start = H2Frame.bombStart(path: "/bomb")
        if continuations {
            request += H2Frame.frame(type: H2Frame.headersType, flags: H2Frame.endStream, stream: 1, start + H2Frame.references(12_000))
            for index in 0..<8 {
                let flags = index == 7 ? H2Frame.endHeaders : 0
                request += H2Frame.frame(type: H2Frame.continuationType, flags: flags, stream: 1, H2Frame.references(16_000))
            }
        } else {
            request += H2Frame.frame(type: H2Frame.headersType, flags: H2Frame.endStream | H2Frame.endHeaders, stream: 1,
                                     start + H2Frame.references(12_000))
        }
        client.send(request)
        let body = H2Frame.read(client, until: H2Frame.dataType, stream: 1)
        #expect(body.map { String(decoding: $0.payload, as: UTF8.self) }?.hasPrefix("431 ") == true)
        #expect(server.server.gauges.http2HeaderBytesHeld.peak <= server.server.configuration.http1.headerBytesMax)
        #expect(server.seen.answers.withLock { $0 }.isEmpty, "the handler never saw the request")
        // The connection still serves a well-formed request after the refusal.
        client.send(H2Frame.frame(type: H2Frame.headersType, flags: H2Frame.endStream | H2Frame.endHeaders, stream: 3,
                                  H2Frame.request(path: "/ok")))
        let answer = H2Frame.read(client, until: H2Frame.dataType, stream: 3)
        #expect(answer.map { String(decoding: $0.payload, as: UTF8.self) } == "GET /ok")
        client.send(H2Frame.frame(type: 7, flags: 0, stream: 0, [UInt8](repeating: 0, count: 8)))
        #expect(eventually { server.server.gauges.http2HeaderBytesHeld.held == 0 })
    }

    /// Streams that each stay under the per-stream limit but wait forever: past the connection's bound, new streams
    /// are refused (`REFUSED_STREAM`) instead of piling up header bytes.
    @Test func headerBytesOfOpenStreamsAreBoundedPerConnection() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try RawClient(port: server.port)
        client.send(H2Frame.preface + H2Frame.emptySettings)
        // 240 references and the field itself: about 0.93 MiB per stream, so the fifth passes 4 MiB.
        for stream in stride(from: UInt32(1), through: 11, by: 2) {
            client.send(H2Frame.frame(type: H2Frame.headersType, flags: H2Frame.endStream | H2Frame.endHeaders, stream: stream,
                                      H2Frame.bombStart(path: "/wait") + H2Frame.references(240)))
        }
        let refused = H2Frame.read(client, until: H2Frame.rstStreamType, stream: 9)
        #expect(refused?.payload == [0, 0, 0, 7], "REFUSED_STREAM")
        #expect(server.server.gauges.http2HeaderBytesHeld.peak <= server.server.configuration.http2HeaderBytesMax)
        #expect(server.server.gauges.http2HeaderBytesHeld.held > 0, "the first four streams wait, holding their headers")
        shutdown(client.fd, Int32(SHUT_RDWR))
        #expect(eventually { server.server.gauges.http2HeaderBytesHeld.held == 0 })
    }
}
