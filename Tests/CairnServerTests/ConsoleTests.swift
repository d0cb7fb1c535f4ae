// The web console as a browser fetches it from a running member: types, ETag revalidation, gzip, CORS on the
// member's own status, 404 and 405; and the files built into the binary match ui/ (run ui/embed if not).
import CairnBase
import Foundation
import Testing
@testable import CairnServer

@Suite struct ConsoleTests {
    @Test func builtInFilesMatchTheUIFolder() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../ui")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".html") || $0.hasSuffix(".css") || $0.hasSuffix(".js") }
        #expect(Set(names) == Set(ConsoleFiles.byName.keys))
        for name in names {
            let bytes = Array(try Data(contentsOf: folder.appendingPathComponent(name)))
            let file = try #require(ConsoleFiles.byName[name])
            #expect(file.body == bytes, "\(name) differs from ui/\(name): run ui/embed")
            let digest = SHA1.digest(bytes).map { String(format: "%02x", $0) }.joined()
            #expect(file.etag == "\"" + digest.prefix(16) + "\"")
        }
    }

    @Test func servesThePageWithTypesValidatorsAndGzip() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        let page = try curl(["-i", cairn.baseURL + "/ui/"])
        #expect(page.contains("HTTP/1.1 200"), "\(page.prefix(300))")
        #expect(page.lowercased().contains("content-type: text/html; charset=utf-8"))
        #expect(page.contains("<title>Cairn console</title>"))
        let etag = try #require(ConsoleFiles.byName["index.html"]?.etag)
        #expect(page.lowercased().contains("etag: \(etag)"))

        let revalidated = try curl(["-i", "-H", "If-None-Match: \(etag)", cairn.baseURL + "/ui/"])
        #expect(revalidated.hasPrefix("HTTP/1.1 304"), "\(revalidated)")

        let script = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code} %{content_type}", cairn.baseURL + "/ui/console.js"])
        #expect(script == "200 text/javascript; charset=utf-8")
        let gzipped = try curl(["-s", "-D", "-", "-o", "/dev/null", "-H", "Accept-Encoding: gzip", cairn.baseURL + "/ui/console.js"])
        #expect(gzipped.lowercased().contains("content-encoding: gzip"), "\(gzipped)")

        let bare = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", cairn.baseURL + "/ui"])
        #expect(bare == "301 \(cairn.baseURL)/ui/")
        let missing = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", cairn.baseURL + "/ui/nothing.js"])
        #expect(missing == "404")
        let posted = try curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", cairn.baseURL + "/ui/"])
        #expect(posted == "405")
    }

    @Test func memberStatusIsReadableFromAnyOrigin() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        let answer = try curl(["-i", "-H", "Origin: http://127.0.0.1:1", cairn.baseURL + "/ui/api/member"])
        #expect(answer.lowercased().contains("access-control-allow-origin: *"), "\(answer)")
        let body = try #require(answer.split(separator: "\r\n\r\n").last)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        #expect(json["name"] as? String == "default")
        #expect(json["term"] is Int)
        #expect(json["applied"] is Int)
    }
}
