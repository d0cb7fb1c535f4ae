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
    ],
    targets: [
        .target(name: "CairnBase"),
        .target(name: "CairnRaft", dependencies: ["CairnBase"]),
        .target(name: "CairnSim", dependencies: ["CairnRaft", "CairnBase"]),
        .executableTarget(name: "cairn-sim", dependencies: ["CairnSim", "CairnBase"]),
        .executableTarget(name: "raft-bench", dependencies: ["CairnRaft", "CairnBase"], path: "bench/raft", exclude: ["RESULTS.md"]),
        .target(name: "CairnStore", dependencies: ["CairnBase"]),
        .target(name: "CairnAPI", dependencies: ["CairnStore", "CairnBase"]),
        .systemLibrary(
            name: "CNGHTTP2", pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]),
        .systemLibrary(
            name: "CZlib", pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]),
        .target(name: "CairnHTTP", dependencies: ["CNGHTTP2", "CZlib"]),
        .target(name: "CairnServer", dependencies: ["CairnHTTP", "CairnAPI", "CairnStore", "CairnRaft", "CairnBase"]),
        .executableTarget(
            name: "cairn",
            dependencies: [
                "CairnServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "CairnBaseTests", dependencies: ["CairnBase"]),
        .testTarget(name: "CairnRaftTests", dependencies: ["CairnRaft", "CairnBase"]),
        .testTarget(name: "CairnSimTests", dependencies: ["CairnSim", "CairnRaft", "CairnBase"]),
        .testTarget(name: "CairnStoreTests", dependencies: ["CairnStore", "CairnBase"]),
        .testTarget(name: "CairnAPITests", dependencies: ["CairnAPI", "CairnStore", "CairnBase"]),
        .testTarget(name: "CairnHTTPTests", dependencies: ["CairnHTTP"]),
    ],
    swiftLanguageModes: [.v6]
)
