// What a server leaves behind when its owner lets go of it: its listeners must go with it, or connections would queue
// on a socket that nobody accepts from (and a level-triggered source would fire forever).
import CairnTestSupport
import Dispatch
import Glibc
import Testing
@testable import CairnHTTP

@Suite struct ServerLifetimeTests {
    @Test func aServerDroppedWithoutShutdownStopsListening() throws {
        var configuration = HTTPServerConfiguration(addresses: [ListenAddress(host: "127.0.0.1", port: 0)])
        configuration.eventLoopCount = 2
        var server: HTTPServer? = HTTPServer(configuration: configuration, handler: TestHandler(seen: Observations()))
        try server?.start()
        let port = try #require(server?.boundAddresses.first?.port)
        let served = try RawClient(port: port)
        served.send("GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(served.readResponse()?.body == Array("GET /x".utf8))
        server = nil
        // The listening descriptor closes once Dispatch has cancelled its source, a moment after the last reference.
        #expect(eventually(seconds: 5) { (try? RawClient(port: port)) == nil }, "connection refused once the server is gone")
    }
}
