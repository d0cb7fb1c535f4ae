// cairn-sim: runs many seeded schedules of a cluster of real Replicas, or replays one with --seed S.
// Prints each seed before it runs (so a crash names its seed); exits 1 on a safety violation, 2 on a liveness failure.
import CairnBase
import CairnSim
#if canImport(Glibc)
import Glibc
#endif

var arguments = CommandLine.arguments.dropFirst()
var seeds: [UInt64] = []
var firstSeed = UInt64.random(in: 0..<(1 << 32))
var count = 100
while let flag = arguments.popFirst() {
    switch flag {
    case "--seed": seeds = [UInt64(arguments.popFirst() ?? "") ?? 0]
    case "--seeds": count = Int(arguments.popFirst() ?? "") ?? count
    case "--first": firstSeed = UInt64(arguments.popFirst() ?? "") ?? firstSeed
    default:
        print("usage: cairn-sim [--seed S | --seeds N [--first S]]")
        exit(64)
    }
}
if seeds.isEmpty { seeds = (0..<UInt64(count)).map { firstSeed + $0 } }
print("first seed \(seeds[0]), \(seeds.count) seeds")
for seed in seeds {
    // Flushed before the run: a trap in the product's code must still leave the seed that caused it on the screen.
    print("seed \(seed)")
    fflush(nil)
    // A replay shows what the seed chose.
    if seeds.count == 1 { print(SimOptions.forSeed(seed)) }
    do {
        var cluster = try SimCluster(seed: seed, options: SimOptions.forSeed(seed))
        try cluster.run()
    } catch {
        print("FAIL seed \(seed): \(error)")
        print("replay: swift run -c release cairn-sim --seed \(seed)")
        switch error {
        case .safety: exit(1)
        case .liveness: exit(2)
        }
    }
}
print("ok: \(seeds.count) seeds")
