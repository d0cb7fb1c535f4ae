// The persistent sorted map against a plain dictionary: the same contents, in order, from any lower bound, in
// both directions; old versions untouched by later inserts; a bulk-built map identical to an inserted one.
import CairnBase
import Testing
@testable import CairnMVCC

@Suite struct PersistentSortedMapTests {
    func entries(_ map: PersistentSortedMap<Int, Int>, from start: Int? = nil) -> [Int] {
        var keys: [Int] = []
        map.forEach(from: start) { key, _ in
            keys.append(key)
            return true
        }
        return keys
    }

    @Test(arguments: [0, 1, 31, 32, 33, 1_000, 20_000])
    func insertsMatchADictionaryInOrder(count: Int) {
        var random = SeededRandom(seed: UInt64(count))
        var map = PersistentSortedMap<Int, Int>()
        var reference: [Int: Int] = [:]
        for i in 0..<count {
            let key = Int(random.next() % UInt64(count * 2 + 1))
            #expect(map.set(key, i) == reference.updateValue(i, forKey: key))
        }
        #expect(map.count == reference.count)
        #expect(entries(map) == reference.keys.sorted())
        let sortedKeys = reference.keys.sorted()
        for key in stride(from: 0, through: count * 2, by: max(1, count / 25)) {
            #expect(map[key] == reference[key])
            #expect(entries(map, from: key) == sortedKeys.filter { $0 >= key })
            var reversed: [Int] = []
            map.forEachReversed(before: key) { key, _ in
                reversed.append(key)
                return true
            }
            #expect(reversed == sortedKeys.filter { $0 < key }.reversed())
        }
    }

    @Test func anOldVersionIsUntouchedByLaterInserts() {
        var map = PersistentSortedMap<Int, Int>()
        for i in 0..<500 { map.set(i * 2, i) }
        let before = map
        for i in 0..<500 { map.set(i * 2 + 1, -i) }
        map.set(0, 99)
        #expect(entries(before) == (0..<500).map { $0 * 2 })
        #expect(before[0] == 0)
        #expect(map[0] == 99 && map.count == 1_000)
    }

    @Test(arguments: [1, 2, 32, 33, 34, 65, 1_056, 1_057, 40_000])
    func aBulkBuiltMapHoldsEveryEntryAndTakesInserts(count: Int) {
        var map = PersistentSortedMap<Int, Int>(sorted: (0..<count).map { ($0 * 3, $0) })
        #expect(map.count == count)
        #expect(entries(map) == (0..<count).map { $0 * 3 })
        #expect(entries(map, from: count) == (0..<count).map { $0 * 3 }.filter { $0 >= count })
        for i in 0..<count where i % 97 == 0 { #expect(map[i * 3] == i && map[i * 3 + 1] == nil) }
        for i in 0..<count { map.set(i * 3 + 1, i) }
        #expect(entries(map) == (0..<count).flatMap { [$0 * 3, $0 * 3 + 1] })
    }

    @Test func anEarlyStopEndsTheVisit() {
        let map = PersistentSortedMap<Int, Int>(sorted: (0..<1_000).map { ($0, $0) })
        var seen = 0
        map.forEach(from: 500) { _, _ in
            seen += 1
            return seen < 10
        }
        #expect(seen == 10)
    }
}
