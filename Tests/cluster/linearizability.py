"""A linearizability checker for etcd v2 registers: Wing & Gong's search with Lowe's memoization, as in
Knossos and porcupine.

Model: one register per key (P-compositionality: a history is linearizable iff each key's sub-history is, so
each key is checked on its own). The register's state is a value or None (the key is missing). Operations:

- read:  output is the value read, or None for "key not found";
- write: a plain set; no output;
- cas:   compare-and-swap, value is (old, new) (etcd's `PUT ?prevValue=old` with value=new); output True if it
         swapped, False if it failed (errorCode 101 "Compare failed", or 100 "Key not found", which is also a
         failed comparison: the state None differs from any old value).

Each operation has an invocation and a completion time (any monotonic clock shared by all clients). An
operation whose outcome is unknown (timed out, connection reset after sending, a 5xx) is *indeterminate*: it
may or may not have taken effect, at any time after its invocation. It is modelled as completing at +infinity
with any output: a search that has linearized every determinate operation is done, so an indeterminate
operation may be linearized anywhere after its invocation, or never. An indeterminate read tells nothing and
is dropped by `History`.

The search is bounded: `max_steps` per key; past it a key's result is "unknown", never "ok".

Use:
    h = History()
    op = h.invoke(client_id, key, "write", "v1")     # before sending the request
    h.ok(op)  /  h.ok(op, value_read)  /  h.ok(op, True|False)  /  h.indeterminate(op)  /  h.failed(op)
    result = check(h.ops())          # result.status in {"ok", "illegal", "unknown"}

`h.failed(op)` is for a request that certainly was not applied (the connection could not be opened): the
operation is dropped.
"""
from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field

INF = math.inf

READ, WRITE, CAS = "read", "write", "cas"


@dataclass
class Op:
    client: int
    key: str
    kind: str                 # read | write | cas
    value: object = None      # write: the value; cas: (old, new); read: unused
    output: object = None     # read: value or None; cas: bool
    call: float = 0.0
    ret: float = INF
    indeterminate: bool = False
    id: int = field(default=-1, compare=False)

    def __repr__(self):
        r = "inf" if self.ret == INF else f"{self.ret:.6f}"
        out = "?" if self.indeterminate else repr(self.output)
        return f"Op(c{self.client} {self.key} {self.kind} {self.value!r} -> {out} [{self.call:.6f}, {r}])"


def step(state, op: Op):
    """The register model: (legal, next state) for applying op in state."""
    if op.kind == READ:
        return op.output == state, state
    if op.kind == WRITE:
        return True, op.value
    if op.kind == CAS:
        old, new = op.value
        if op.indeterminate:
            return True, (new if state == old else state)
        if op.output:
            return state == old, new
        return state != old, state
    raise ValueError(op.kind)


@dataclass
class KeyResult:
    key: str
    status: str          # ok | illegal | unknown
    ops: int
    indeterminate: int
    steps: int
    detail: str = ""


@dataclass
class Result:
    status: str
    keys: "dict[str, KeyResult]"
    ops: int
    indeterminate: int

    @property
    def ok(self):
        return self.status == "ok"

    def __str__(self):
        lines = [f"{self.status}: {self.ops} operations ({self.indeterminate} indeterminate) on {len(self.keys)} keys"]
        for k, r in sorted(self.keys.items()):
            lines.append(f"  {k}: {r.status}, {r.ops} ops, {r.indeterminate} indeterminate, {r.steps} steps"
                         + (f"\n    {r.detail}" if r.detail else ""))
        return "\n".join(lines)


def check_key(ops: "list[Op]", initial=None, max_steps: int = 2_000_000, key: str = "") -> KeyResult:
    """Wing-Gong-Lowe search over one key's operations."""
    n = len(ops)
    n_ind = sum(1 for o in ops if o.indeterminate)
    if n == 0:
        return KeyResult(key, "ok", 0, 0, 0)
    ops, prev_in_class = _reduce(ops)
    # Entries: a call and a return per op, sorted by time; at equal times calls first (concurrent: lenient).
    events = []
    for k, op in enumerate(ops):
        ret = INF if op.indeterminate else op.ret
        if ret < op.call:
            raise ValueError(f"{op}: completes before it is invoked")
        events.append((op.call, 0, k))
        events.append((ret, 1, k))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    size = 2 * n + 1
    HEAD = 0
    nxt = [-1] * size
    prv = [-1] * size
    is_call = [False] * size
    opi = [0] * size
    ret_node = [0] * size
    call_node = [0] * n
    for pos, (_, kind, k) in enumerate(events, start=1):
        is_call[pos] = kind == 0
        opi[pos] = k
        if kind == 0:
            call_node[k] = pos
        else:
            ret_node[call_node[k]] = pos
        prv[pos] = pos - 1
        nxt[pos - 1] = pos
    nxt[size - 1] = -1
    is_inf_ret = [False] * size
    for pos in range(1, size):
        if not is_call[pos] and ops[opi[pos]].indeterminate:
            is_inf_ret[pos] = True

    def lift(c):
        r = ret_node[c]
        nxt[prv[c]] = nxt[c]
        if nxt[c] != -1:
            prv[nxt[c]] = prv[c]
        nxt[prv[r]] = nxt[r]
        if nxt[r] != -1:
            prv[nxt[r]] = prv[r]

    def unlift(c):
        r = ret_node[c]
        nxt[prv[r]] = r
        if nxt[r] != -1:
            prv[nxt[r]] = r
        nxt[prv[c]] = c
        if nxt[c] != -1:
            prv[nxt[c]] = c

    state = initial
    linearized = 0
    stack: "list[tuple[int, object]]" = []
    cache = set()
    steps = 0
    deepest = (0, None)
    entry = nxt[HEAD]
    while entry != -1:
        steps += 1
        if steps > max_steps:
            return KeyResult(key, "unknown", n, n_ind, steps,
                             f"search bound of {max_steps} steps exceeded after linearizing at most {deepest[0]} ops")
        if is_call[entry]:
            k = opi[entry]
            pc = prev_in_class[k]
            if pc >= 0 and not (linearized >> pc) & 1:
                entry = nxt[entry]  # interchangeable with an earlier one not yet linearized: that one first
                continue
            legal, new_state = step(state, ops[k])
            if legal and new_state == state and ops[k].indeterminate:
                # An indeterminate op that changes nothing here: leaving it out is the same linearization
                # (it need never appear), so only its state-changing placements are explored.
                legal = False
            if legal:
                nl = linearized | (1 << k)
                memo = (nl, new_state)
                if memo not in cache:
                    cache.add(memo)
                    stack.append((entry, state))
                    state = new_state
                    linearized = nl
                    lift(entry)
                    entry = nxt[HEAD]
                    continue
            entry = nxt[entry]
        else:
            if is_inf_ret[entry]:
                # Every return still in the list is at +infinity: every determinate op is linearized.
                return KeyResult(key, "ok", n, n_ind, steps)
            if len(stack) >= deepest[0]:
                deepest = (len(stack), ops[opi[entry]], state)
            if not stack:
                return KeyResult(key, "illegal", n, n_ind, steps, _explain(deepest))
            entry, state = stack.pop()
            linearized &= ~(1 << opi[entry])
            unlift(entry)
            entry = nxt[entry]
    return KeyResult(key, "ok", n, n_ind, steps)


class _Unobserved:
    """The one state that stands for every value that no read returns and no CAS compares against."""

    def __repr__(self):
        return "<unobserved value>"


UNOBSERVED = _Unobserved()


def _reduce(ops: "list[Op]"):
    """Two reductions that keep the verdict exact, and make refuting a history with many indeterminate
    operations linear in their number instead of exponential:

    1. A value that no read returns and no CAS (determinate or not) compares against cannot be told from
       any other such value by the model, so all of them become one state, UNOBSERVED (better memoization).
    2. Indeterminate operations that write an unobserved value, grouped as plain writes or as CASes with
       the same expected value, are interchangeable: none has a return deadline and all have the same
       effect. If a linearization uses k of a group, the k invoked earliest serve as well (the i-th earliest
       was invoked no later than the i-th used one was, so it can take that one's place). So the search
       linearizes a group's members only in invocation order: prev_in_class[k] is the member that must
       be linearized before op k (or -1).
    """
    observed = set()
    for o in ops:
        if o.kind == READ:
            observed.add(o.output)
        elif o.kind == CAS:
            observed.add(o.value[0])
    out = []
    for o in ops:
        if o.kind == WRITE and o.value not in observed:
            o = Op(o.client, o.key, o.kind, UNOBSERVED, o.output, o.call, o.ret, o.indeterminate, o.id)
        elif o.kind == CAS and o.value[1] not in observed:
            o = Op(o.client, o.key, o.kind, (o.value[0], UNOBSERVED), o.output, o.call, o.ret, o.indeterminate, o.id)
        out.append(o)
    prev_in_class = [-1] * len(out)
    last = {}
    for k in sorted(range(len(out)), key=lambda k: (out[k].call, k)):
        o = out[k]
        if not o.indeterminate:
            continue
        if o.kind == WRITE and o.value is UNOBSERVED:
            cls = ("w",)
        elif o.kind == CAS and o.value[1] is UNOBSERVED:
            cls = ("c", o.value[0])
        else:
            continue
        prev_in_class[k] = last.get(cls, -1)
        last[cls] = k
    return out, prev_in_class


def _explain(deepest) -> str:
    depth, op = deepest[0], deepest[1]
    if op is None:
        return ""
    return (f"at most {depth} ops linearize; then {op} must complete, but no order allows it "
            f"(state there: {deepest[2]!r})")


def check(ops: "list[Op]", initial=None, max_steps: int = 2_000_000) -> Result:
    """Check a whole history, key by key. `initial` is the state of every key at the start (None: missing),
    or a dict key -> state."""
    by_key: "dict[str, list[Op]]" = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    results = {}
    for key, kops in by_key.items():
        init = initial.get(key) if isinstance(initial, dict) else initial
        results[key] = check_key(kops, init, max_steps, key)
    statuses = {r.status for r in results.values()}
    status = "illegal" if "illegal" in statuses else "unknown" if "unknown" in statuses else "ok"
    return Result(status, results, len(ops), sum(1 for o in ops if o.indeterminate))


class History:
    """A thread-safe recorder of operations, with times from time.monotonic()."""

    def __init__(self, clock=time.monotonic):
        self._ops: "list[Op]" = []
        self._lock = threading.Lock()
        self._clock = clock
        self._ids = itertools.count()

    def invoke(self, client: int, key: str, kind: str, value=None) -> Op:
        op = Op(client, key, kind, value, call=self._clock(), id=next(self._ids))
        return op

    def ok(self, op: Op, output=None):
        op.ret = self._clock()
        op.output = output
        with self._lock:
            self._ops.append(op)

    def indeterminate(self, op: Op):
        if op.kind == READ:
            return  # a read that may or may not have happened tells nothing
        op.indeterminate = True
        op.ret = INF
        with self._lock:
            self._ops.append(op)

    def failed(self, op: Op):
        """Certainly not applied: dropped."""

    def ops(self) -> "list[Op]":
        with self._lock:
            return list(self._ops)


def load_history(path) -> "list[Op]":
    """Read a history saved as JSON lines (see test_cluster.save_history)."""
    import json
    ops = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            v = tuple(d["value"]) if d["kind"] == CAS else d["value"]
            ops.append(Op(d["client"], d["key"], d["kind"], v, d["output"], d["call"],
                          INF if d["ret"] is None else d["ret"], d["indeterminate"]))
    return ops


if __name__ == "__main__":  # python3 linearizability.py history.json
    import sys
    print(check(load_history(sys.argv[1]), max_steps=int(sys.argv[2]) if len(sys.argv) > 2 else 5_000_000))


# -------------------------------------------------------------------------------------------------------
# A brute-force oracle for small histories (used by the unit tests to cross-check the search).


def brute_force(ops: "list[Op]", initial=None) -> bool:
    """True iff some order of a subset of ops (all determinate ones, any of the indeterminate ones) respects
    real time and the model. Exponential: for a handful of ops only."""
    det = [o for o in ops if not o.indeterminate]
    ind = [o for o in ops if o.indeterminate]

    def ret(o):
        return INF if o.indeterminate else o.ret

    for r in range(len(ind) + 1):
        for chosen in itertools.combinations(ind, r):
            sel = det + list(chosen)
            for perm in itertools.permutations(sel):
                okay = True
                # real time: if a returns before b is invoked, a precedes b
                for x in range(len(perm)):
                    for y in range(x + 1, len(perm)):
                        if ret(perm[y]) < perm[x].call:
                            okay = False
                            break
                    if not okay:
                        break
                if not okay:
                    continue
                state = initial
                for o in perm:
                    legal, state = step(state, o)
                    if not legal:
                        okay = False
                        break
                if okay:
                    return True
    return False
