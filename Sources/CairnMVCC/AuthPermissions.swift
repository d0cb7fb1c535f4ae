// What a user may do, as etcd decides it: the `root` role may do anything; anyone else needs, for every key or range a
// request reads or writes, permissions of its roles whose ranges together cover it (a single-key permission covers
// that key; an end of "\0" runs to the end of the key space).

extension AuthStore {
    /// The user a simple token names, nil when the token is unknown (never issued, expired or forgotten).
    package func user(forToken token: String) -> String? { tokens[token].map(\.user) }

    /// Whether the user holds the `root` role (etcd's admin: auth and member management).
    package func isAdmin(_ user: String) -> Bool { users[user]?.roles.contains(Self.rootName) ?? false }

    /// Whether `user` may read (or write) every key of `range`.
    package func permits(_ user: String, write: Bool, _ range: KeyRange) -> Bool {
        guard let account = users[user] else { return false }
        if account.roles.contains(Self.rootName) { return true }
        var granted: [(start: [UInt8], end: [UInt8]?)] = []
        for name in account.roles {
            for permission in roles[name]?.permissions ?? [] where write ? permission.allowsWrite : permission.allowsRead {
                granted.append((permission.key, Self.end(of: KeyRange(key: permission.key, rangeEnd: permission.rangeEnd))))
            }
        }
        return Self.covers(granted, start: range.start, end: Self.end(of: range))
    }

    /// Whether `user` may run the request: reads need read permission, writes write permission (and read for the
    /// previous values they return), a transaction every range its compares and branches touch.
    package func permits(_ user: String, _ op: RequestOp) -> Bool {
        switch op {
        case .range(let request): return permits(user, write: false, request.range)
        case .put(let request):
            let key = KeyRange.single(request.key)
            return permits(user, write: true, key) && (!request.prevKV || permits(user, write: false, key))
        case .deleteRange(let request):
            return permits(user, write: true, request.range) && (!request.prevKV || permits(user, write: false, request.range))
        case .txn(let request):
            // Nesting is bounded by the operation budget checked before this.
            return request.compare.allSatisfy { permits(user, write: false, $0.range) }
                && (request.success + request.failure).allSatisfy { permits(user, $0) }
        }
    }

    /// The exclusive end of a range as an interval: a single key ends just after itself; nil is no end.
    private static func end(of range: KeyRange) -> [UInt8]? {
        switch range.end {
        case nil: range.start + [0]
        case let end? where end.isEmpty: nil
        case let end?: end
        }
    }

    /// Whether the union of `intervals` contains [start, end).
    private static func covers(_ intervals: [(start: [UInt8], end: [UInt8]?)], start: [UInt8], end: [UInt8]?) -> Bool {
        if let end, !start.lexicographicallyPrecedes(end) { return true }
        var reached = start
        for interval in intervals.sorted(by: { $0.start.lexicographicallyPrecedes($1.start) }) {
            if reached.lexicographicallyPrecedes(interval.start) { return false }
            guard let intervalEnd = interval.end else { return true }
            if reached.lexicographicallyPrecedes(intervalEnd) { reached = intervalEnd }
            if let end, !reached.lexicographicallyPrecedes(end) { return true }
        }
        return false
    }
}
