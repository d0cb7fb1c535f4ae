// `cairn snapshot save|restore|status`: etcdctl's backup commands, for Cairn's snapshot files.
import ArgumentParser
import CairnHTTP
import CairnServer
import CairnStorage

struct SnapshotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Back up a live member, or build new members' data directories from a backup.",
        subcommands: [Save.self, Restore.self, Status.self])

    struct Save: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stream a consistent snapshot from a live member into FILE (every write acknowledged before it is in it).")

        @Argument(help: "Where to write the backup.")
        var file: String

        @Option(help: "Client URLs of members to ask, tried in order (comma-separated).")
        var endpoints = "http://127.0.0.1:2379"

        @Option(help: "For https:// endpoints: the CA bundle to verify the member's certificate with (etcdctl's --cacert; default: the system's).")
        var cacert: String?

        @Option(help: "For https:// endpoints: the client certificate to show (etcdctl's --cert).")
        var cert: String?

        @Option(help: "For https:// endpoints: the client certificate's key (etcdctl's --key).")
        var key: String?

        @Option(help: "With auth on: a root user as NAME:PASSWORD (etcdctl's --user).")
        var user: String?

        func run() throws {
            guard (cert == nil) == (key == nil) else { throw ValidationError("--cert and --key must be given together") }
            var tls = TLSConfiguration(certificateFile: cert, keyFile: key)
            tls.trustedCAFile = cacert
            tls.trustsSystemCAs = true
            var failures: [String] = []
            for endpoint in endpoints.split(separator: ",") {
                do {
                    let token = try user.map { try BackupDownload.authenticate(String(endpoint), user: $0, tls: tls) }
                    let saved = try BackupDownload.save(from: String(endpoint), to: file, fs: PosixFileSystem(), tls: tls, authorization: token)
                    print("Snapshot saved at \(file) (index \(saved.header.lastIndex), term \(saved.header.lastTerm), \(saved.bytes) bytes)")
                    return
                } catch {
                    failures.append("\(error)")
                }
            }
            throw ValidationError("no backup saved: " + failures.joined(separator: "; "))
        }    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build a new member's data directory (empty or absent) from a backup; run it once per member of the new cluster.")

        @Argument(help: "The backup, as `cairn snapshot save` wrote it.")
        var file: String

        @OptionGroup var member: MemberFlags

        func run() throws {
            let bootstrap: ClusterBootstrap
            do { bootstrap = try member.bootstrap() } catch { throw ValidationError(error.description) }
            let directory = member.dataDirectory
            do {
                let fs = PosixFileSystem()
                let backup = try BackupContents(fs: fs, path: file)
                try CairnServer.Restore.restore(backup, into: directory, bootstrap: bootstrap, fs: fs)
                print("Restored \(file) (index \(backup.header.lastIndex), etcd index \(backup.keySpace.currentIndex)) into \(directory) "
                      + "as member \(String(bootstrap.localID, radix: 16)) of cluster \(String(bootstrap.clusterID, radix: 16))")
            } catch {
                throw ValidationError("cannot restore: \(error)")
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a backup's checksums and print what it holds.")

        @Argument(help: "The backup file.")
        var file: String

        func run() throws {
            let backup: BackupContents
            do { backup = try BackupContents(fs: PosixFileSystem(), path: file) } catch { throw ValidationError("\(error)") }
            print("index: \(backup.header.lastIndex)")
            print("term: \(backup.header.lastTerm)")
            print("etcd index: \(backup.keySpace.currentIndex)")
            print("members: " + backup.members.sorted.map { "\($0.name)=\($0.peerURLs.joined(separator: ","))" }.joined(separator: ","))
            print("bytes: \(backup.bytes)")
        }
    }
}
