// The cairn executable as a user meets it: etcd's flags, clear refusals, the first endpoints, and SIGTERM.
// Runs the built binary on an ephemeral loopback port and talks to it with curl.
import Foundation
import Synchronization
import Testing
@testable import CairnServer

/// The `cairn` binary built beside the tests.
let cairnBinary: URL = {
    var directory = URL(fileURLWithPath: #filePath)
    while directory.path != "/" && !FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
        directory.deleteLastPathComponent()
    }
    return directory.appendingPathComponent(".build/debug/cairn")
}()

/// A file for a child's output. Pipes would be inherited by children that concurrent tests spawn, and a read
/// to end of file would then wait for those unrelated processes to exit.
func outputFile() -> URL {
    let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cairn-test-\(UUID().uuidString)")
    FileManager.default.createFile(atPath: url.path, contents: nil)
    return url
}

/// Runs a child to completion and returns its status and its standard output and error, together.
func runToExit(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let file = outputFile()
    defer { try? FileManager.default.removeItem(at: file) }
    let handle = try FileHandle(forWritingTo: file)
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    process.waitUntilExit()
    try handle.close()
    return (process.terminationStatus, String(decoding: try Data(contentsOf: file), as: UTF8.self))
}

/// A running `cairn` whose client URL is learned from its start-up line.
final class RunningCairn {
    let process = Process()
    private let log = outputFile()
    private(set) var baseURL = ""

    /// Without `--data-dir`, each member gets a fresh temporary one (a data directory is locked by its member).
    /// `descriptorsMax` runs it under that RLIMIT_NOFILE (through prlimit, which then becomes cairn).
    init(_ arguments: [String], descriptorsMax: Int? = nil) throws {
        let arguments = arguments.contains("--data-dir") ? arguments : arguments + ["--data-dir", temporaryDataDirectory()]
        if let descriptorsMax {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments = ["--nofile=\(descriptorsMax):\(descriptorsMax)", cairnBinary.path] + arguments
        } else {
            process.executableURL = cairnBinary
            process.arguments = arguments
        }
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, process.isRunning {
            let text = String(decoding: (try? Data(contentsOf: log)) ?? Data(), as: UTF8.self)
            if let line = text.split(separator: "\n").first(where: { $0.contains("serving client requests on ") }) {
                let words = line.split(separator: " ")
                let urls = words[words.firstIndex(of: "on")! + 1]
                baseURL = String(urls.split(separator: ",")[0])
                return
            }
            usleep(20_000)
        }
        process.terminate()
        throw CocoaError(.fileReadUnknown, userInfo: [NSLocalizedDescriptionKey: "cairn did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")"])
    }

    /// Kills the member without warning (SIGKILL): nothing after the last acknowledged write may be relied on.
    func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: log)
    }

    /// SIGTERM, and the exit status once the member has shut down; -1 if it still runs after 30 s (it is then killed).
    func stop() -> Int32 {
        process.terminate()
        let exited = exitsWithin(process, seconds: 30)
        try? FileManager.default.removeItem(at: log)
        return exited ? process.terminationStatus : -1
    }
}

/// Whether `process` exits within `seconds`; if not, it is killed (SIGKILL), so no test waits on it for ever.
func exitsWithin(_ process: Process, seconds: Double) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while process.isRunning, Date() < deadline { usleep(10_000) }
    guard process.isRunning else { return true }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    return false
}

/// Every data directory the tests made (a member preallocates a 64 MiB log segment in each), removed when the test
/// process exits so runs do not fill the disk.
private let madeDataDirectories = Mutex<[String]>([])
private let removeDataDirectoriesAtExit: Void = {
    atexit {
        for directory in madeDataDirectories.withLock({ $0 }) {
            for path in [directory, directory + ".snapshot"] { try? FileManager.default.removeItem(atPath: path) }
        }
    }
}()

func temporaryDataDirectory() -> String {
    _ = removeDataDirectoriesAtExit
    let directory = NSTemporaryDirectory() + "cairn-data-\(UUID().uuidString)"
    madeDataDirectories.withLock { $0.append(directory) }
    return directory
}

func curl(_ arguments: [String]) throws -> String {
    try runToExit(URL(fileURLWithPath: "/usr/bin/curl"), ["-sS"] + arguments).output
}

/// Runs cairn to completion (it must refuse to start) and returns its status and its output.
func runCairnExpectingExit(_ arguments: [String]) throws -> (status: Int32, errors: String) {
    let result = try runToExit(cairnBinary, arguments.contains("--data-dir") ? arguments : arguments + ["--data-dir", temporaryDataDirectory()])
    return (result.status, result.output)
}

@Suite struct ExecutableTests {
    @Test func servesVersionHealthAndEtcdsErrors() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        #expect(try curl([cairn.baseURL + "/version"]) == #"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#)
        #expect(try curl([cairn.baseURL + "/health"]) == #"{"health":"true"}"#)
        #expect(try curl(["-X", "POST", "-w", "%{http_code}", cairn.baseURL + "/version"]) == "Method Not Allowed\n405")
        #expect(try curl(["-w", "%{http_code}", cairn.baseURL + "/nothing"]) == "404 page not found\n404")
        #expect(try curl(["--http2-prior-knowledge", cairn.baseURL + "/health"]) == #"{"health":"true"}"#)
        let headers = try curl(["-D", "-", "-o", "/dev/null", cairn.baseURL + "/version"])
        #expect(headers.contains("Access-Control-Allow-Origin: *"))
        #expect(headers.contains("Content-Type: application/json"))
        // A CORS preflight gets etcd's 200 on any path, with no body and no content type.
        for path in ["/v2/keys/a", "/v2/members", "/nothing"] {
            let preflight = try curl(["-X", "OPTIONS", "-D", "-", "-o", "/dev/null", "-w", "%{http_code}", cairn.baseURL + path])
            #expect(preflight.hasPrefix("HTTP/1.1 200") && preflight.contains("Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE")
                    && !preflight.contains("Content-Type") && preflight.hasSuffix("200"), "\(preflight)")
        }
    }

    @Test func singleDashFlagsWorkAsInEtcd() throws {
        let cairn = try RunningCairn(["-name", "n1", "-listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        #expect(try curl([cairn.baseURL + "/health"]) == #"{"health":"true"}"#)
    }

    @Test func sigtermShutsDownCleanly() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        #expect(cairn.stop() == 0)
    }

    /// A SIGTERM that comes while the member starts, before it listens for signals, waits for it: the member still
    /// shuts down cleanly (it was killed by the signal when it came before, or lost it when it came just after the
    /// member first answered, and then never stopped).
    @Test func sigtermDuringStartUpShutsDownCleanly() throws {
        let directory = temporaryDataDirectory()
        let process = Process()
        process.executableURL = cairnBinary
        process.arguments = ["--listen-client-urls", "http://127.0.0.1:0", "--data-dir", directory]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The member locks its data directory early in its start, long before it serves.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, process.isRunning, !FileManager.default.fileExists(atPath: directory + "/LOCK") { usleep(500) }
        process.terminate()
        #expect(exitsWithin(process, seconds: 30))
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
    }

    @Test(arguments: [
        (["--no-such-flag"], "no-such-flag"),
        (["--listen-client-urls", "127.0.0.1:2379"], "--listen-client-urls: invalid URL"),
        (["--listen-client-urls", "http://127.0.0.1"], "missing port"),
        (["--listen-client-urls", "http://127.0.0.1:99999"], "port must be a number"),
        (["--listen-client-urls", "https://127.0.0.1:2379"],
         "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"),
        (["--listen-client-urls", "https://127.0.0.1:0", "--auto-tls", "--cipher-suites", "FOO"], "unexpected TLS cipher suite \"FOO\""),
        (["--tls-min-version", "TLS1.1"], "--tls-min-version must be TLS1.2 or TLS1.3"),
        (["--client-cert-auth=maybe"], "invalid boolean value \"maybe\" for -client-cert-auth"),
        (["--cert-file", "/nonexistent/cert.pem", "--key-file", "/nonexistent/key.pem"], "cannot load the certificate /nonexistent/cert.pem"),
        (["--advertise-client-urls", "http://[::1:2379"], "--advertise-client-urls"),
        (["--initial-cluster-state", "sideways"], "--initial-cluster-state"),
        (["--election-timeout", "100", "--heartbeat-interval", "100"], "--election-timeout"),
        (["--name", "n2", "--initial-cluster", "n1=http://127.0.0.1:2380"], "no member named \"n2\""),
        (["--initial-cluster", "default=http://127.0.0.1:2380,other=http://127.0.0.1:2380"], "duplicate URL"),
    ])
    func badFlagsAreRefusedWithTheirName(arguments: [String], message: String) throws {
        let result = try runCairnExpectingExit(arguments)
        #expect(result.status != 0)
        #expect(result.errors.contains(message), "\(result.errors)")
    }

    @Test func anAddressInUseIsReported() throws {
        let first = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = first.stop() }
        let result = try runCairnExpectingExit(["--listen-client-urls", first.baseURL])
        #expect(result.status != 0)
        #expect(result.errors.contains("Address already in use"), "\(result.errors)")
    }
}

@Suite struct DurabilityTests {
    @Test func acknowledgedWritesSurviveRestartAndKill() throws {
        let directory = temporaryDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var cairn = try RunningCairn(["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0", "--snapshot-count", "7"])
        for i in 0..<20 {
            _ = try curl(["-X", "PUT", cairn.baseURL + "/v2/keys/dir/k\(i)", "-d", "value=v\(i)"])
        }
        _ = try curl(["-X", "DELETE", cairn.baseURL + "/v2/keys/dir/k3"])
        #expect(cairn.stop() == 0)
        cairn = try RunningCairn(["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0", "--snapshot-count", "7"])
        #expect(try curl([cairn.baseURL + "/v2/keys/dir/k19"]).contains(#""value":"v19","modifiedIndex":23"#))
        #expect(try curl(["-w", "%{http_code}", "-o", "/dev/null", cairn.baseURL + "/v2/keys/dir/k3"]) == "404")
        let created = try curl(["-X", "PUT", cairn.baseURL + "/v2/keys/after", "-d", "value=restart"])
        #expect(created.contains(#""modifiedIndex":25"#), "the store index continues where it was: \(created)")
        cairn.crash()
        cairn = try RunningCairn(["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        #expect(try curl([cairn.baseURL + "/v2/keys/after"]).contains(#""value":"restart""#))
        let listing = try curl([cairn.baseURL + "/v2/keys/dir?recursive=true"])
        #expect(listing.components(separatedBy: #""key":"/dir/k"#).count == 20)
        let snapshots = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".snap") }
        #expect(!snapshots.isEmpty && snapshots.count <= 2, "snapshots taken every 7 entries, two kept: \(snapshots)")
    }

    @Test func aRetriedNumberedWriteIsAppliedOnceEvenAfterARestart() throws {
        let directory = temporaryDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let flags = ["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0", "--snapshot-count", "3"]
        var cairn = try RunningCairn(flags)
        func post(_ request: Int) throws -> String {
            try curl(["-X", "POST", cairn.baseURL + "/v2/keys/jobs", "-H", "X-Cairn-Client: worker-1", "-H", "X-Cairn-Request: \(request)",
                      "-d", "value=job\(request)"])
        }
        let first = try post(1)
        #expect(first.contains(#""action":"create""#))
        #expect(try post(1) == first, "a retry gets the first answer")
        for request in 2...6 { _ = try post(request) }
        #expect(cairn.stop() == 0)
        cairn = try RunningCairn(flags)
        defer { _ = cairn.stop() }
        #expect(try post(1) == first, "the answer survives a restart (snapshots every 3 entries carry the sessions)")
        let listing = try curl([cairn.baseURL + "/v2/keys/jobs?recursive=true"])
        #expect(listing.components(separatedBy: #""value":"job"#).count == 7, "six jobs, each once: \(listing)")
        let unpaired = try curl(["-X", "PUT", cairn.baseURL + "/v2/keys/x", "-H", "X-Cairn-Request: 1", "-d", "value=1"])
        #expect(unpaired.contains(#""errorCode":209"#) && unpaired.contains("go together"), "\(unpaired)")
    }

    /// etcd 3.4's answers, recorded with curl: `/u%ff` and `/u%fe` are two keys, each shown as "/u\ufffd".
    @Test func keysKeepTheirBytesAsInEtcd() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        let keys = cairn.baseURL + "/v2/keys"
        #expect(try curl(["-X", "PUT", keys + "/u%ff", "-d", "value=1"]) == #"{"action":"set","node":{"key":"/u\ufffd","value":"1","modifiedIndex":4,"createdIndex":4}}"# + "\n")
        #expect(try curl([keys + "/u%fe"]) == #"{"errorCode":100,"message":"Key not found","cause":"/u\ufffd","index":4}"# + "\n")
        #expect(try curl(["-X", "PUT", keys + "/u%fe", "-d", "value=2"]) == #"{"action":"set","node":{"key":"/u\ufffd","value":"2","modifiedIndex":5,"createdIndex":5}}"# + "\n")
        #expect(try curl([keys + "/u%ff"]).contains(#""value":"1""#))
        #expect(try curl([keys + "/u%ff/nope"]) == #"{"errorCode":104,"message":"Not a directory","cause":"/u\ufffd","index":5}"# + "\n")
        #expect(try curl(["-X", "PUT", keys + "/caf%C3%A9", "-d", "value=3"]).contains(#""createdIndex":6"#))
        #expect(try curl(["-X", "PUT", keys + "/cafe%CC%81", "-d", "value=4"]).contains(#""createdIndex":7"#), "a second key, as in etcd")
        let listing = try curl([keys + "/?sorted=true"])
        #expect(listing.components(separatedBy: #""key":"/u\ufffd""#).count == 3 && listing.components(separatedBy: #""key":"/caf"#).count == 3,
                "\(listing)")
    }

    /// A key of 28,000 components (a 56 KB URL) once killed every member with a stack overflow.
    @Test func aDeepKeyIsStoredReadAndDeletedAndTheMemberLives() throws {
        let cairn = try RunningCairn(["--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        let key = String(repeating: "/a", count: 28_000)
        #expect(try curl(["-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}", cairn.baseURL + "/v2/keys" + key, "-d", "value=1"]) == "201")
        #expect(try curl(["-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}", cairn.baseURL + "/v2/keys" + key, "-d", "value=2"]) == "200")
        #expect(try curl([cairn.baseURL + "/v2/keys" + key]).hasSuffix(#""value":"2","modifiedIndex":5,"createdIndex":5}}"# + "\n"))
        #expect(try curl(["-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}", cairn.baseURL + "/v2/keys/a?recursive=true"]) == "200")
        #expect(try curl([cairn.baseURL + "/health"]) == #"{"health":"true"}"#)
    }

    @Test func killDuringAWriteLoadLosesNoAcknowledgedWrite() throws {
        let directory = temporaryDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var cairn = try RunningCairn(["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0", "--snapshot-count", "50"])
        let acknowledged = Mutex<[String]>([])
        let url = cairn.baseURL
        let writers = (0..<4).map { writer in
            Thread {
                // A key counts as acknowledged once its 201 has arrived; then it must survive the kill.
                for index in 0..<1000 {
                    let key = "w\(writer)-\(index)"
                    guard let status = try? curl(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                                                  url + "/v2/keys/load/" + key, "-d", "value=" + key]),
                        status == "201"
                    else { return }
                    acknowledged.withLock { $0.append(key) }
                }
            }
        }
        writers.forEach { $0.start() }
        usleep(1_500_000)
        cairn.crash()
        usleep(300_000)
        let written = acknowledged.withLock { $0 }
        #expect(written.count > 20, "the load wrote something before the kill")
        cairn = try RunningCairn(["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = cairn.stop() }
        let listing = try curl([cairn.baseURL + "/v2/keys/load"])
        let missing = written.filter { !listing.contains("\"/load/\($0)\"") }
        #expect(missing.isEmpty, "acknowledged but lost after kill -9: \(missing.prefix(10))")
    }

    @Test func storageToolDumpsVerifiesAndRefusesALiveMember() throws {
        let directory = temporaryDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cairn = try RunningCairn(["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0"])
        for i in 0..<5 { _ = try curl(["-X", "PUT", cairn.baseURL + "/v2/keys/k\(i)", "-d", "value=v\(i)"]) }
        let whileRunning = try runCairnExpectingExit(["storage", "verify", "--data-dir", directory])
        #expect(whileRunning.status != 0 && whileRunning.errors.contains("locked"), "\(whileRunning.errors)")
        #expect(cairn.stop() == 0)
        let dump = try runCairnExpectingExit(["storage", "dump", "--data-dir", directory])
        #expect(dump.status == 0 && dump.errors.contains(#"PUT /k4 value="v4""#), "\(dump.errors)")
        let clean = try runCairnExpectingExit(["storage", "verify", "--data-dir", directory])
        #expect(clean.status == 0 && clean.errors.contains("no damage found"))
        // Flip one byte inside the second record of the first segment: a bad record before the tail is damage.
        let segment = directory + "/wal-00000000000000000001.log"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
        let marker = Data("/k1".utf8)
        let at = try #require(bytes.range(of: marker)).lowerBound
        bytes[at + 1] ^= 0x20
        try bytes.write(to: URL(fileURLWithPath: segment))
        let damaged = try runCairnExpectingExit(["storage", "verify", "--data-dir", directory])
        #expect(damaged.status != 0 && damaged.errors.contains("wal-00000000000000000001.log"), "\(damaged.errors)")
        let refused = try runCairnExpectingExit(["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0"])
        #expect(refused.status != 0 && refused.errors.contains("wal-00000000000000000001.log"), "\(refused.errors)")
    }

    @Test func aSecondMemberOnTheSameDirectoryIsRefused() throws {
        let directory = temporaryDataDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try RunningCairn(["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0"])
        defer { _ = first.stop() }
        let second = try runCairnExpectingExit(["--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:0"])
        #expect(second.status != 0)
        #expect(second.errors.contains("data directory is locked"), "\(second.errors)")
    }
}

@Suite struct URLListTests {
    @Test func parsesEtcdStyleLists() throws {
        let addresses = try URLList.parse("http://127.0.0.1:2379, http://[::1]:2380,http://localhost:0/", flag: "x")
        #expect(addresses.map(\.host) == ["127.0.0.1", "::1", "localhost"])
        #expect(addresses.map(\.port) == [2379, 2380, 0])
    }
}
