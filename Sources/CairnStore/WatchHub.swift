// Watches: recent history, bounded by bytes rather than etcd's 1,000 events, and waiting watchers indexed by
// path, so a write wakes only the watchers on its key and its ancestors (never a scan over every watcher).
import DequeModule

package final class WatchHub {
    package typealias WatcherID = Int

    private final class Watcher {
        let id: WatcherID
        let path: StoreKey
        let recursive: Bool
        let stream: Bool
        let sinceIndex: UInt64
        let deliver: (StoreEvent) -> Void

        init(id: WatcherID, path: StoreKey, recursive: Bool, stream: Bool, sinceIndex: UInt64, deliver: @escaping (StoreEvent) -> Void) {
            self.id = id
            self.path = path
            self.recursive = recursive
            self.stream = stream
            self.sinceIndex = sinceIndex
            self.deliver = deliver
        }
    }

    package let historyBytesMax: Int
    private var history = Deque<(event: StoreEvent, bytes: Int)>()
    private var historyBytes = 0
    /// The lowest index a watch may still ask for; below it, history is gone (etcd's error 401).
    private var oldestAnswerableIndex: UInt64 = 1
    private var watchersByPath: [StoreKey: [WatcherID: Watcher]] = [:]
    private var pathOfWatcher: [WatcherID: StoreKey] = [:]
    /// How many watched paths have each depth: a write looks for watchers only at depths someone watches, so a key
    /// of n components costs a write O(n), not the O(n²) of hashing each of its ancestors' paths.
    private var watchedPathsByDepth: [Int: Int] = [:]
    private var nextID = 0

    package init(historyBytesMax: Int = 64 * 1024 * 1024) {
        self.historyBytesMax = historyBytesMax
    }

    package var watcherCount: Int { pathOfWatcher.count }

    /// Registers a watch as etcd's `GET ?wait=true` does. Events already in history from `sinceIndex` (0: the next
    /// index) are delivered at once: a one-shot watch then ends; a stream gets all of them, then continues live.
    /// Returns the watcher's ID while it stays registered, nil when it already completed.
    package func watch(path: StoreKey, recursive: Bool, stream: Bool, sinceIndex: UInt64, currentIndex: UInt64,
                       deliver: @escaping (StoreEvent) -> Void) -> Result<WatcherID?, StoreError> {
        let key = path.cleaned()
        let since = sinceIndex == 0 ? currentIndex + 1 : sinceIndex
        if since < oldestAnswerableIndex {
            return .failure(StoreError(.eventIndexCleared, "the requested history has been cleared [\(oldestAnswerableIndex)/\(since)]",
                                       index: currentIndex))
        }
        var nextSince = since
        // History is in index order: the search skips what the watch does not ask for (all of it, for the usual
        // watch of the next index), where a scan would cost every watch the whole history.
        var first = history.startIndex, end = history.endIndex
        while first < end {
            let middle = (first + end) / 2
            if history[middle].event.etcdIndex < since { first = middle + 1 } else { end = middle }
        }
        for position in first..<history.endIndex {
            let event = history[position].event
            guard !event.isRefresh, historyMatches(event, key: key, recursive: recursive) else { continue }
            deliver(event)
            if !stream { return .success(nil) }
            nextSince = event.etcdIndex + 1
        }
        nextID += 1
        let watcher = Watcher(id: nextID, path: key, recursive: recursive, stream: stream, sinceIndex: nextSince, deliver: deliver)
        if watchersByPath[key] == nil { watchedPathsByDepth[key.depth, default: 0] += 1 }
        watchersByPath[key, default: [:]][watcher.id] = watcher
        pathOfWatcher[watcher.id] = key
        return .success(watcher.id)
    }

    /// Frees a watcher (its client went away, or its stream ended).
    package func remove(_ id: WatcherID) {
        guard let path = pathOfWatcher.removeValue(forKey: id) else { return }
        watchersByPath[path]?[id] = nil
        if watchersByPath[path]?.isEmpty == true {
            watchersByPath[path] = nil
            pathUnwatched(path)
        }
    }

    private func pathUnwatched(_ path: StoreKey) {
        let depth = path.depth
        watchedPathsByDepth[depth] = watchedPathsByDepth[depth].flatMap { $0 > 1 ? $0 - 1 : nil }
    }

    /// Records an event and wakes the watchers it concerns: those on the removed paths (a deleted directory's
    /// descendants), then those on the key and each of its ancestors. Refresh events are kept but wake no one.
    package func notify(_ event: StoreEvent, removedPaths: RemovedNodes) {
        record(event)
        guard !event.isRefresh, !watchersByPath.isEmpty else { return }
        var notified = Set<WatcherID>()
        removedPaths.forEachPath(atDepthsIn: watchedPathsByDepth) { path in
            wake(event, at: path, originalPath: path == event.node.key, deleted: true, notified: &notified)
        }
        var path = StoreKey.root
        if watchedPathsByDepth[0] != nil {
            wake(event, at: path, originalPath: event.node.key.isRoot, deleted: false, notified: &notified)
        }
        for (index, component) in event.node.key.components.enumerated() {
            path.append(component)
            guard watchedPathsByDepth[index + 1] != nil else { continue }
            wake(event, at: path, originalPath: path == event.node.key, deleted: false, notified: &notified)
        }
    }

    /// Wakes the watchers on `path` in the order they registered. The one-shot ones leave together: the path's
    /// table is taken out, changed in place and put back (a thousand watchers re-arming on a key, every write).
    private func wake(_ event: StoreEvent, at path: StoreKey, originalPath: Bool, deleted: Bool, notified: inout Set<WatcherID>) {
        guard watchersByPath[path] != nil, originalPath || !isHidden(watchPath: path, keyPath: event.node.key),
              var watchers = watchersByPath.removeValue(forKey: path) else { return }
        let woken = watchers.values.filter { watcher in
            (watcher.recursive || originalPath || deleted) && event.etcdIndex >= watcher.sinceIndex && !notified.contains(watcher.id)
        }.sorted { $0.id < $1.id }
        for watcher in woken {
            notified.insert(watcher.id)
            guard !watcher.stream else { continue }
            watchers[watcher.id] = nil
            pathOfWatcher[watcher.id] = nil
        }
        if watchers.isEmpty { pathUnwatched(path) } else { watchersByPath[path] = watchers }
        for watcher in woken { watcher.deliver(event) }
    }

    private func record(_ event: StoreEvent) {
        let bytes = 128 + event.node.key.bytes.count + (event.node.value?.utf8.count ?? 0)
            + (event.prevNode.map { $0.key.bytes.count + ($0.value?.utf8.count ?? 0) } ?? 0)
        history.append((event, bytes))
        historyBytes += bytes
        while historyBytes > historyBytesMax, history.count > 1, let oldest = history.popFirst() {
            historyBytes -= oldest.bytes
            oldestAnswerableIndex = oldest.event.etcdIndex + 1
        }
    }

    /// etcd's history match: the key itself, a key below it for recursive watches, or a deleted or expired directory
    /// that contained it.
    private func historyMatches(_ event: StoreEvent, key: StoreKey, recursive: Bool) -> Bool {
        if event.node.key == key { return true }
        if recursive {
            let prefix = key.bytes.last == StoreKey.slash ? key : StoreKey(bytes: key.bytes + [StoreKey.slash])
            if event.node.key.hasPrefix(prefix) { return true }
        }
        if event.action == .delete || event.action == .expire, let prev = event.prevNode, prev.isDirectory, key.hasPrefix(prev.key) {
            return true
        }
        return false
    }

    private func isHidden(watchPath: StoreKey, keyPath: StoreKey) -> Bool {
        guard watchPath.bytes.count <= keyPath.bytes.count else { return false }
        let after = StoreKey(bytes: [StoreKey.slash] + keyPath.bytes.dropFirst(watchPath.bytes.count)).cleaned()
        return after.components.contains { $0.first == UInt8(ascii: "_") }
    }
}
