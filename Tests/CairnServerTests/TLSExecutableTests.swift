// The cairn executable with etcd's client TLS flags: https:// client URLs with given or generated certificates,
// client-certificate auth, and the member list showing the URLs as given.
import CairnTestSupport
import Foundation
import Testing

@Suite struct TLSExecutableTests {
    static func path(_ name: String) -> String { TestCertificates.path(name) }

    @Test func servesHTTPSWithGivenCertificateAndAdvertisesHTTPS() throws {
        let cairn = try RunningCairn([
            "--listen-client-urls", "https://127.0.0.1:0", "--advertise-client-urls", "https://127.0.0.1:2379",
            "--initial-advertise-peer-urls", "https://127.0.0.1:2380", "--initial-cluster", "default=https://127.0.0.1:2380",
            "--cert-file", Self.path("server.crt"), "--key-file", Self.path("server.key"),
        ])
        defer { _ = cairn.stop() }
        #expect(cairn.baseURL.hasPrefix("https://127.0.0.1:"))
        let ca = ["--cacert", Self.path("ca.crt")]
        #expect(try curl(ca + ["-X", "PUT", cairn.baseURL + "/v2/keys/a", "-d", "value=1"]).contains(#""value":"1""#))
        #expect(try curl(ca + ["--http2", cairn.baseURL + "/v2/keys/a"]).contains(#""value":"1""#))
        let members = try curl(ca + [cairn.baseURL + "/v2/members"])
        #expect(members.contains(#""peerURLs":["https://127.0.0.1:2380"],"clientURLs":["https://127.0.0.1:2379"]"#), "\(members)")
        // Plain HTTP on the TLS port gets no answer, as from etcd (curl: "Empty reply from server").
        #expect(try curl([cairn.baseURL.replacingOccurrences(of: "https://", with: "http://") + "/health"]).hasPrefix("curl: (52)"))
    }

    @Test func clientCertificateAuthRefusesClientsWithoutOne() throws {
        let cairn = try RunningCairn([
            "--listen-client-urls", "https://127.0.0.1:0", "--cert-file", Self.path("server.crt"), "--key-file", Self.path("server.key"),
            "--client-cert-auth", "--trusted-ca-file", Self.path("ca.crt"), "--client-crl-file", Self.path("ca.crl"),
        ])
        defer { _ = cairn.stop() }
        let ca = ["--cacert", Self.path("ca.crt")]
        let client = ["--cert", Self.path("client.crt"), "--key", Self.path("client.key")]
        // A lone member serves before its first election ends: healthy within a bounded wait.
        var health = ""
        for _ in 0..<100 where health != #"{"health":"true"}"# {
            health = try curl(ca + client + [cairn.baseURL + "/health"])
            if health != #"{"health":"true"}"# { usleep(100_000) }
        }
        #expect(health == #"{"health":"true"}"#)
        // Refused in the handshake with an alert, as etcd does; curl reports it and gets no answer.
        // (Which error curl prints depends on whether it reads the alert before the close.)
        #expect(try curl(ca + [cairn.baseURL + "/health"]).hasPrefix("curl: ("))
        #expect(try curl(ca + ["--cert", Self.path("revoked.crt"), "--key", Self.path("revoked.key"), cairn.baseURL + "/health"]).hasPrefix("curl: ("))
    }

    @Test func snapshotSaveOverTLSWithAClientCertificate() throws {
        let cairn = try RunningCairn([
            "--listen-client-urls", "https://127.0.0.1:0", "--cert-file", Self.path("server.crt"), "--key-file", Self.path("server.key"),
            "--client-cert-auth", "--trusted-ca-file", Self.path("ca.crt"),
        ])
        defer { _ = cairn.stop() }
        let file = temporaryDataDirectory() + ".snapshot"
        defer { try? FileManager.default.removeItem(atPath: file) }
        func save(_ options: [String]) throws -> (status: Int32, output: String) {
            try runToExit(cairnBinary, ["snapshot", "save", file, "--endpoints", cairn.baseURL] + options)
        }
        let client = ["--cert", Self.path("client.crt"), "--key", Self.path("client.key")]
        let saved = try save(["--cacert", Self.path("ca.crt")] + client)
        #expect(saved.status == 0 && saved.output.hasPrefix("Snapshot saved at \(file)"), "\(saved)")
        // Without the CA the member's certificate is checked against the system's CAs, and refused.
        let untrusted = try save(client)
        #expect(untrusted.status != 0 && untrusted.output.contains("certificate verify failed"), "\(untrusted)")
        let anonymous = try save(["--cacert", Self.path("ca.crt")])
        #expect(anonymous.status != 0 && anonymous.output.contains("no backup saved"), "\(anonymous)")
    }

    @Test func autoTLSMakesAndReusesASelfSignedCertificate() throws {
        let directory = temporaryDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let arguments = ["--listen-client-urls", "https://127.0.0.1:0", "--auto-tls", "--data-dir", directory]
        var cairn = try RunningCairn(arguments)
        // Trusted as its own CA, it names the listen host: curl checks 127.0.0.1 against it.
        let generated = directory + "/fixtures/client/cert.pem"
        #expect(try curl(["--cacert", generated, cairn.baseURL + "/health"]) == #"{"health":"true"}"#)
        let certificate = try Data(contentsOf: URL(fileURLWithPath: generated))
        let keyMode = try FileManager.default.attributesOfItem(atPath: directory + "/fixtures/client/key.pem")[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
        #expect(cairn.stop() == 0)
        cairn = try RunningCairn(arguments)
        defer { _ = cairn.stop() }
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory + "/fixtures/client/cert.pem")) == certificate)
        #expect(try curl(["-k", cairn.baseURL + "/health"]) == #"{"health":"true"}"#)
    }
}
