// Certificates for the TLS tests, made once per test process by Tests/tls/make-certs (openssl) in a temporary
// directory: a CA, server, clients (good, expired, revoked, another CN), a CRL, and an untrusted CA's client.
import Foundation

package enum TestCertificates {
    /// The directory holding them; made on first use.
    package static let directory: String = {
        let directory = NSTemporaryDirectory() + "cairn-tls-\(getpid())-\(UUID().uuidString.prefix(8))"
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("tls/make-certs").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [script, directory]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { fatalError("cannot run \(script): \(error)") }
        process.waitUntilExit()
        precondition(process.terminationStatus == 0, "\(script) failed")
        return directory
    }()

    /// The path of `name` (`ca.crt`, `server.key`, ...).
    package static func path(_ name: String) -> String { directory + "/" + name }
}
