// The initial membership from etcd's bootstrap flags, validated, with member and cluster IDs derived as etcd
// derives them (so the same flags give the same IDs as etcd, and two clusters never share an ID by accident).
import CairnBase
import CairnReplica

package struct InitialMember: Sendable, Equatable {
    package var id: UInt64
    package var name: String
    package var peerURLs: [String]
}

package struct ClusterBootstrap: Sendable, Equatable {
    package var members: [InitialMember]
    package var localID: UInt64
    package var clusterID: UInt64

    /// Parses `--initial-cluster` (`name=url,name=url,...`; a name may repeat to give a member several URLs) and
    /// checks it against this member's name and advertised peer URLs, as etcd does before it touches the disk.
    package init(initialCluster: String, name: String, advertisedPeerURLs: [String], token: String) throws(ConfigurationError) {
        var urlsByName: [(name: String, urls: [String])] = []
        var owners: [String: String] = [:]
        for item in initialCluster.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw ConfigurationError("--initial-cluster: \"\(item)\" is not name=URL")
            }
            let memberName = String(parts[0].trimmingASCIIWhitespace())
            let url = String(parts[1].trimmingASCIIWhitespace())
            _ = try URLList.parse(url, flag: "initial-cluster")
            if let owner = owners[url] {
                throw ConfigurationError("--initial-cluster: duplicate URL \(url) (members \(owner) and \(memberName))")
            }
            owners[url] = memberName
            if let index = urlsByName.firstIndex(where: { $0.name == memberName }) {
                urlsByName[index].urls.append(url)
            } else {
                urlsByName.append((memberName, [url]))
            }
        }
        guard let local = urlsByName.first(where: { $0.name == name }) else {
            throw ConfigurationError("--initial-cluster: no member named \"\(name)\" (the value of --name) in \(initialCluster)")
        }
        guard local.urls.sorted() == advertisedPeerURLs.sorted() else {
            throw ConfigurationError(
                "--initial-cluster has \(name)=\(local.urls.joined(separator: ",")) but --initial-advertise-peer-urls is \(advertisedPeerURLs.joined(separator: ","))")
        }
        members = urlsByName.map { InitialMember(id: Self.memberID(peerURLs: $0.urls, token: token), name: $0.name, peerURLs: $0.urls) }
        var seenIDs = Set<UInt64>()
        for member in members where !seenIDs.insert(member.id).inserted {
            throw ConfigurationError("--initial-cluster: two members derive the same ID \(String(member.id, radix: 16))")
        }
        localID = Self.memberID(peerURLs: local.urls, token: token)
        clusterID = Self.clusterID(memberIDs: members.map(\.id))
    }

    /// etcd's member ID: the first 8 bytes (big-endian) of SHA-1 over the sorted peer URLs and the cluster token.
    package static func memberID(peerURLs: [String], token: String) -> UInt64 {
        firstEightBytes(SHA1.digest(Array((peerURLs.sorted().joined() + token).utf8)))
    }

    /// etcd's cluster ID: the first 8 bytes of SHA-1 over the sorted member IDs, each 8 bytes big-endian.
    package static func clusterID(memberIDs: [UInt64]) -> UInt64 {
        let bytes = memberIDs.sorted().flatMap { id in (0..<8).map { UInt8(truncatingIfNeeded: id >> UInt64(56 - 8 * $0)) } }
        return firstEightBytes(SHA1.digest(bytes))
    }

    private static func firstEightBytes(_ digest: [UInt8]) -> UInt64 {
        digest.prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}

extension MemberRecord {
    /// A member named in `--initial-cluster`: client URLs are not there, each member publishes its own.
    init(_ initial: InitialMember) {
        self.init(id: initial.id, name: initial.name, peerURLs: initial.peerURLs, clientURLs: [])
    }
}
