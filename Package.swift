// swift-tools-version:6.0
// Cairn: a replicated key-value store that speaks etcd's HTTP/JSON API.
// Module map and allowed imports: ../shared/DESIGN.md ("Modules").
import PackageDescription

let package = Package(
    name: "cairn",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cairn", targets: ["cairn"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        // The runtime only: the generated code in CairnProto is committed (scripts/generate-protos).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        .target(name: "CairnBase"),
        .target(name: "CairnRaft", dependencies: ["CairnBase"]),
        .target(name: "CairnSim", dependencies: ["CairnMemberStorage", "CairnStorage", "CairnReplica", "CairnStore", "CairnRaft", "CairnBase"]),
        .executableTarget(name: "cairn-sim", dependencies: ["CairnSim", "CairnBase"]),
        .executableTarget(name: "raft-bench", dependencies: ["CairnRaft", "CairnBase"], path: "bench/raft", exclude: ["RESULTS.md"]),
        .executableTarget(name: "watch-bench", path: "bench/watch", exclude: ["run", "RESULTS.md"]),
        .target(
            name: "CairnStore",
            dependencies: [
                "CairnBase",
                .product(name: "HashTreeCollections", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]),
        .target(
            name: "CairnMVCC",
            dependencies: ["CairnBase", .product(name: "HashTreeCollections", package: "swift-collections")]),
        .target(name: "CairnAPI", dependencies: ["CairnStore", "CairnMVCC", "CairnBase"]),
        .target(name: "CairnStorage", dependencies: ["CairnBase"]),
        // A member's durable state on CairnStorage: the server's and the simulator's one recovery and persist.
        .target(name: "CairnMemberStorage", dependencies: ["CairnReplica", "CairnStorage", "CairnRaft", "CairnStore", "CairnBase"]),
        // etcd's v3 gRPC messages, generated from proto/ by scripts/generate-protos.
        .target(name: "CairnProto", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(
            name: "CairnReplica",
            dependencies: ["CairnRaft", "CairnStore", "CairnMVCC", "CairnBase", .product(name: "DequeModule", package: "swift-collections")]),
        .systemLibrary(
            name: "CNGHTTP2", pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(
            name: "CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(
            name: "COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),
        // libxcrypt's bcrypt for v3 auth's password hashes (part of libc6-dev's dependencies on Debian).
        .systemLibrary(name: "CCrypt"),
        .target(name: "CairnHTTP", dependencies: ["CNGHTTP2", "CZlib", "COpenSSL"]),
        .target(name: "CairnPeer", dependencies: ["CairnHTTP", "CairnBase"]),
        .target(
            name: "CairnServer",
            dependencies: [
                "CairnHTTP", "CairnPeer", "CairnAPI", "CairnReplica", "CairnMemberStorage", "CairnStore", "CairnMVCC", "CairnStorage", "CairnRaft", "CairnBase", "CCrypt", "COpenSSL",
                "CairnProto", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ]),
        .executableTarget(
            name: "cairn",
            dependencies: [
                "CairnServer", "CairnReplica",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // On demand: swift run -c release cairn-storage-bench (see bench/storage/RESULTS.md).
        .executableTarget(name: "cairn-storage-bench", dependencies: ["CairnStorage"], path: "bench/storage", exclude: ["RESULTS.md"]),
        .testTarget(name: "CairnBaseTests", dependencies: ["CairnBase"]),
        .testTarget(name: "CairnRaftTests", dependencies: ["CairnRaft", "CairnBase"]),
        .testTarget(name: "CairnReplicaTests", dependencies: ["CairnReplica", "CairnRaft", "CairnStore", "CairnBase"]),
        .testTarget(name: "CairnSimTests", dependencies: ["CairnSim", "CairnMemberStorage", "CairnStorage", "CairnReplica", "CairnStore", "CairnRaft", "CairnBase"]),
        .testTarget(name: "CairnStoreTests", dependencies: ["CairnStore", "CairnBase", "CairnTestSupport"]),
        .testTarget(name: "CairnMVCCTests", dependencies: ["CairnMVCC", "CairnBase"]),
        .testTarget(name: "CairnAPITests", dependencies: ["CairnAPI", "CairnStore", "CairnMVCC", "CairnBase", "CairnTestSupport"]),
        .systemLibrary(name: "CMalloc", path: "Tests/CMalloc"),
        .target(name: "CairnTestSupport", dependencies: ["CMalloc"], path: "Tests/CairnTestSupport"),
        .testTarget(name: "CairnHTTPTests", dependencies: ["CairnHTTP", "CairnBase", "CairnTestSupport"]),
        .testTarget(name: "CairnPeerTests", dependencies: ["CairnPeer", "CairnHTTP", "CairnBase", "CairnTestSupport"]),
        .testTarget(name: "CairnServerTests", dependencies: ["CairnServer", "CairnReplica", "CairnHTTP", "CairnStorage", "CairnStore", "CairnMVCC", "CairnRaft", "CairnPeer", "CairnBase", "CairnTestSupport"]),
        .testTarget(name: "CairnStorageTests", dependencies: ["CairnStorage", "CairnBase"]),
    ],
    swiftLanguageModes: [.v6]
)
