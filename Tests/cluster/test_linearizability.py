"""Unit tests of the linearizability checker (no server needed)."""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(__file__))

from linearizability import CAS, INF, READ, WRITE, Op, brute_force, check, check_key  # noqa: E402


def W(c, v, call, ret, key="k"):
    return Op(c, key, WRITE, v, None, call, ret)


def R(c, out, call, ret, key="k"):
    return Op(c, key, READ, None, out, call, ret)


def C(c, old, new, ok, call, ret, key="k"):
    return Op(c, key, CAS, (old, new), ok, call, ret)


def IW(c, v, call, key="k"):
    return Op(c, key, WRITE, v, None, call, INF, indeterminate=True)


def IC(c, old, new, call, key="k"):
    return Op(c, key, CAS, (old, new), None, call, INF, indeterminate=True)


def status(ops, initial=None):
    return check(ops, initial).status


# -- known histories


def test_empty_and_sequential():
    assert status([]) == "ok"
    assert status([R(0, None, 0, 1), W(0, "a", 2, 3), R(0, "a", 4, 5), C(0, "a", "b", True, 6, 7),
                   C(0, "a", "c", False, 8, 9), R(0, "b", 10, 11)]) == "ok"


def test_concurrent_read_may_see_either():
    # a write concurrent with two reads: one sees the old value, one the new, in either real-time order
    # consistent with a single switch point.
    assert status([W(0, "a", 0, 1), W(1, "b", 2, 10), R(2, "a", 3, 4), R(3, "b", 5, 6)]) == "ok"
    assert status([W(0, "a", 0, 1), W(1, "b", 2, 10), R(2, "b", 3, 4), R(3, "b", 5, 6)]) == "ok"


def test_stale_read_after_acknowledged_write():
    assert status([W(0, "a", 0, 1), W(0, "b", 2, 3), R(1, "a", 4, 5)]) == "illegal"
    # a read that flips back: b then a again, with the write of b concurrent with both
    assert status([W(0, "a", 0, 1), W(1, "b", 2, 10), R(2, "b", 3, 4), R(3, "a", 5, 6)]) == "illegal"


def test_read_of_missing_after_write():
    assert status([W(0, "a", 0, 1), R(1, None, 2, 3)]) == "illegal"
    assert status([W(0, "a", 0, 5), R(1, None, 2, 3)]) == "ok"


def test_lost_write():
    # an acknowledged write is overwritten by nothing, yet a later read sees the previous value
    assert status([W(0, "x", 0, 1), W(1, "y", 2, 3), R(2, "y", 4, 5), R(2, "x", 6, 7)]) == "illegal"
    # a write that was acknowledged but never seen: the key reads as missing afterwards
    assert status([W(0, "x", 0, 1), R(1, None, 2, 3)]) == "illegal"


def test_both_cas_succeeding():
    assert status([W(0, "a", 0, 1), C(1, "a", "b", True, 2, 5), C(2, "a", "c", True, 2, 5)]) == "illegal"
    # one succeeds, the other fails: fine in either order
    assert status([W(0, "a", 0, 1), C(1, "a", "b", True, 2, 5), C(2, "a", "c", False, 2, 5)]) == "ok"
    # both succeeding is fine when they chain (a->b, then b->c)
    assert status([W(0, "a", 0, 1), C(1, "a", "b", True, 2, 5), C(2, "b", "c", True, 2, 5), R(0, "c", 6, 7)]) == "ok"


def test_cas_failure_that_must_have_succeeded():
    assert status([W(0, "a", 0, 1), C(1, "a", "b", False, 2, 3)]) == "illegal"
    assert status([C(1, "a", "b", False, 2, 3)]) == "ok"  # missing key: a failed compare


def test_indeterminate_write_may_or_may_not_apply():
    base = [W(0, "a", 0, 1), IW(1, "b", 2)]
    assert status(base + [R(2, "a", 3, 4)]) == "ok"
    assert status(base + [R(2, "b", 3, 4)]) == "ok"
    # ...and may take effect long after it was sent, but once seen it stays
    assert status(base + [R(2, "a", 3, 4), R(2, "b", 100, 101)]) == "ok"
    assert status(base + [R(2, "b", 3, 4), R(2, "a", 100, 101)]) == "illegal"
    # it cannot take effect before it was invoked
    assert status([W(0, "a", 0, 1), R(2, "b", 3, 4), IW(1, "b", 5)]) == "illegal"


def test_indeterminate_cas():
    base = [W(0, "a", 0, 1), IC(1, "a", "b", 2)]
    assert status(base + [R(2, "a", 3, 4)]) == "ok"
    assert status(base + [R(2, "b", 3, 4)]) == "ok"
    assert status(base + [R(2, "c", 3, 4)]) == "illegal"
    # an indeterminate CAS whose compare cannot succeed never changes the value
    assert status([W(0, "z", 0, 1), IC(1, "a", "b", 2), R(2, "b", 3, 4)]) == "illegal"


def test_indeterminate_op_needed_only_to_explain_a_failed_cas():
    # The failed CAS is legal only if an indeterminate op changed the value in its window; the reductions
    # must keep each of these (classes by kind and expected value, invocation order, no-op placements).
    assert status([W(0, "b", 0, 1), IC(1, "a", "u1", 2), IC(2, "b", "u2", 3), C(3, "b", "c", False, 4, 5)]) == "ok"
    assert status([W(0, "b", 0, 1), IC(1, "x", "u1", 2), IW(2, "u2", 3), C(3, "b", "c", False, 4, 5)]) == "ok"
    assert status([W(0, "b", 0, 1), IW(1, "u1", 2), IW(2, "u2", 3), C(3, "b", "c", False, 4, 5),
                   W(0, "d", 6, 7), C(3, "d", "e", False, 8, 9)]) == "ok"
    # ...but each indeterminate op changes the value at most once
    assert status([W(0, "b", 0, 1), IW(1, "u1", 2), C(3, "b", "c", False, 4, 5),
                   W(0, "d", 6, 7), C(3, "d", "e", False, 8, 9)]) == "illegal"
    # ...and only after it was invoked
    assert status([W(0, "b", 0, 1), C(3, "b", "c", False, 2, 3), IW(1, "u1", 4)]) == "illegal"


def test_a_value_compared_by_cas_is_not_merged_with_unobserved_ones():
    # "u" is never read, but a failed CAS compares against it: state u must stay distinct.
    assert status([W(0, "u", 0, 1), C(1, "u", "z", False, 2, 3)]) == "illegal"
    assert status([IW(0, "u", 0), C(1, "u", "z", True, 2, 3), R(2, "z", 4, 5)]) == "ok"
    assert status([W(0, "u", 0, 1), IW(1, "q", 2), C(1, "u", "z", False, 3, 4)]) == "ok"


def test_keys_are_independent():
    ops = [W(0, "a", 0, 1, key="x"), W(0, "a", 0, 1, key="y"), W(0, "b", 2, 3, key="y"), R(1, "a", 4, 5, key="x"),
           R(1, "a", 4, 5, key="y")]
    r = check(ops)
    assert r.status == "illegal"
    assert r.keys["x"].status == "ok" and r.keys["y"].status == "illegal"


def test_step_bound_reports_unknown_not_ok():
    # Many concurrent writes of distinct values followed by a read of a value never written: illegal,
    # but with a tiny bound the search must say unknown.
    ops = [W(i, f"v{i}", 0, 10) for i in range(12)] + [R(99, "never", 20, 21)]
    assert check_key(ops, max_steps=50).status == "unknown"
    assert check(ops, max_steps=50).status == "unknown"
    assert check(ops).status == "illegal"


def test_initial_state():
    assert status([R(0, "a", 0, 1)], initial="a") == "ok"
    assert check([R(0, "a", 0, 1, key="k")], initial={"k": "a"}).status == "ok"
    assert status([R(0, "a", 0, 1)]) == "illegal"


# -- random histories from a sequential run with randomized timing


def simulate(rng, clients=4, ops_per_client=12, keys=("k",), values=None, p_ind=0.0, p_cas=0.3, p_read=0.4):
    """Each client runs ops one after another; each op takes effect atomically at a random point between its
    invocation and its completion; the register is applied in that order. Linearizable by construction.
    With probability p_ind an op is indeterminate (its effect applied or not, completion unknown)."""
    counter = [0]
    events = []  # (linearization time, op, applies)
    for c in range(clients):
        t = rng.uniform(0, 3)
        for _ in range(ops_per_client):
            call = t
            dur = rng.expovariate(1.0)
            lin = call + rng.uniform(0, dur)
            ret = call + dur
            t = ret + rng.expovariate(3.0)
            key = rng.choice(keys)
            x = rng.random()
            if x < p_read:
                op = Op(c, key, READ, None, None, call, ret)
            elif x < p_read + p_cas:
                counter[0] += 1
                old = rng.choice(values) if values else f"v{rng.randint(0, counter[0])}"
                op = Op(c, key, CAS, (old, f"v{counter[0]}"), None, call, ret)
            else:
                counter[0] += 1
                op = Op(c, key, WRITE, values and rng.choice(values) or f"v{counter[0]}", None, call, ret)
            applies = True
            if op.kind != READ and rng.random() < p_ind:
                op.indeterminate = True
                op.ret = INF
                applies = rng.random() < 0.5
                t = call + rng.uniform(0, 2)  # the client gave up and moved on
            events.append((lin, op, applies))
    state = {}
    for lin, op, applies in sorted(events, key=lambda e: e[0]):
        cur = state.get(op.key)
        if op.kind == READ:
            op.output = cur
        elif op.kind == WRITE:
            if applies:
                state[op.key] = op.value
        else:
            old, new = op.value
            if not op.indeterminate:
                op.output = cur == old
            if applies and cur == old:
                state[op.key] = new
    return [e[1] for e in events]


def test_random_sequential_runs_are_linearizable():
    rng = random.Random(1)
    for trial in range(300):
        ops = simulate(rng, clients=rng.randint(1, 6), ops_per_client=rng.randint(1, 25),
                       keys=("a", "b", "c")[:rng.randint(1, 3)], p_ind=rng.choice([0, 0, 0.1, 0.3]))
        r = check(ops)
        assert r.status == "ok", (trial, str(r), ops)


def test_random_runs_with_few_values_are_linearizable():
    # repeated values make the memoization and the search work harder
    rng = random.Random(2)
    for trial in range(200):
        ops = simulate(rng, clients=rng.randint(2, 5), ops_per_client=rng.randint(5, 20),
                       values=["a", "b", "c"], p_ind=rng.choice([0, 0.2]))
        r = check(ops)
        assert r.status == "ok", (trial, str(r), ops)


def test_large_history_is_fast():
    rng = random.Random(3)
    ops = simulate(rng, clients=8, ops_per_client=400, keys=("a", "b", "c"), p_ind=0.02)
    r = check(ops)
    assert r.status == "ok", str(r)
    assert r.ops == 3200


def _stale_read_mutation(rng, ops):
    """Make a determinate read return the value of a write w1 that was overwritten by a determinate write w2
    with w1.ret < w2.call and w2.ret < read.call (values unique): certainly not linearizable."""
    by_key = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
    cands = []
    for key, kops in by_key.items():
        writes = [o for o in kops if not o.indeterminate and
                  (o.kind == WRITE or (o.kind == CAS and o.output))]
        reads = [o for o in kops if o.kind == READ]
        for r in reads:
            for w2 in writes:
                if w2.ret < r.call:
                    for w1 in writes:
                        if w1.ret < w2.call:
                            v1 = w1.value if w1.kind == WRITE else w1.value[1]
                            if v1 != r.output:
                                cands.append((r, v1))
    if not cands:
        return None
    r, v1 = rng.choice(cands)
    r.output = v1
    return r


def test_mutated_histories_fail():
    rng = random.Random(4)
    mutated = 0
    for trial in range(400):
        ops = simulate(rng, clients=rng.randint(2, 6), ops_per_client=rng.randint(4, 25),
                       keys=("a", "b")[:rng.randint(1, 2)], p_ind=rng.choice([0, 0.1]))
        kind = trial % 3
        if kind == 0:
            if _stale_read_mutation(rng, ops) is None:
                continue
        elif kind == 1:
            reads = [o for o in ops if o.kind == READ]
            if not reads:
                continue
            rng.choice(reads).output = "never-written"
        else:
            # a determinate CAS whose old value was never written anywhere, reported as succeeded
            cases = [o for o in ops if o.kind == CAS and not o.indeterminate]
            if not cases:
                continue
            o = rng.choice(cases)
            o.value = ("never-written", o.value[1])
            o.output = True
        mutated += 1
        r = check(ops)
        assert r.status == "illegal", (trial, kind, str(r), ops)
    assert mutated > 300


def test_against_brute_force_on_small_random_histories():
    """Random small histories (not generated to be linearizable) judged by exhaustive search too."""
    rng = random.Random(5)
    seen = {True: 0, False: 0}
    for trial in range(1500):
        n = rng.randint(1, 6)
        ops = []
        for i in range(n):
            call = rng.randint(0, 8)
            ret = call + rng.randint(0, 4)
            kind = rng.choice([READ, READ, WRITE, CAS])
            if kind == READ:
                o = Op(i, "k", READ, None, rng.choice([None, "a", "b"]), call, ret)
            elif kind == WRITE:
                o = Op(i, "k", WRITE, rng.choice(["a", "b"]), None, call, ret)
            else:
                o = Op(i, "k", CAS, (rng.choice(["a", "b"]), rng.choice(["a", "b"])), rng.random() < 0.5, call, ret)
            if kind != READ and rng.random() < 0.2:
                o.indeterminate, o.ret, o.output = True, INF, None
            ops.append(o)
        expect = brute_force(ops)
        got = check(ops).status
        assert got == ("ok" if expect else "illegal"), (trial, ops)
        seen[expect] += 1
    assert seen[True] > 200 and seen[False] > 200, seen


def test_against_brute_force_with_unique_values_and_many_indeterminate():
    """The reductions (unobserved values merged, interchangeable indeterminate ops in invocation order,
    no-op indeterminate placements skipped) must not change a verdict: unique written values, reads and
    CAS expectations drawn from them, many indeterminate ops."""
    rng = random.Random(6)
    seen = {True: 0, False: 0}
    for trial in range(1500):
        n = rng.randint(2, 6)
        ops = []
        written = []
        for i in range(n):
            call = rng.randint(0, 10)
            ret = call + rng.randint(0, 5)
            kind = rng.choice([READ, WRITE, WRITE, CAS, CAS])
            if kind == READ:
                o = Op(i, "k", READ, None, rng.choice([None] + written + ["w-never"]), call, ret)
            elif kind == WRITE:
                written.append(f"w{i}")
                o = Op(i, "k", WRITE, f"w{i}", None, call, ret)
            else:
                old = rng.choice(written + ["w-never"]) if written else "w-never"
                written.append(f"w{i}")
                o = Op(i, "k", CAS, (old, f"w{i}"), rng.random() < 0.4, call, ret)
            if kind != READ and rng.random() < 0.45:
                o.indeterminate, o.ret, o.output = True, INF, None
            ops.append(o)
        # a second pass so reads can also return values written by later-listed ops
        for o in ops:
            if o.kind == READ and rng.random() < 0.5:
                o.output = rng.choice([None] + written)
        expect = brute_force(ops)
        got = check(ops).status
        assert got == ("ok" if expect else "illegal"), (trial, ops)
        seen[expect] += 1
    assert seen[True] > 150 and seen[False] > 150, seen


def test_late_violation_with_many_indeterminate_ops_is_refuted_within_the_bound():
    """Refuting needs every order of the indeterminate ops pending at the bad read; the reductions keep that
    small. A stale read at the very end of a 4,200-op history with ~1% indeterminate ops."""
    rng = random.Random(11)
    for _ in range(2):
        ops = simulate(rng, clients=6, ops_per_client=700, keys=("a", "b", "c"), p_ind=0.01)
    writes = sorted((o for o in ops if o.kind == WRITE and not o.indeterminate), key=lambda o: o.call)
    for r in sorted((o for o in ops if o.kind == READ), key=lambda o: -o.call):
        kw = [w for w in writes if w.key == r.key and w.ret < r.call]
        older = [w for w2 in kw[-1:] for w in kw if w.ret < w2.call and w.value != r.output]
        if older:
            r.output = older[-1].value
            break
    else:
        raise AssertionError("no candidate read")
    res = check(ops, max_steps=1_000_000)
    assert res.status == "illegal", str(res)
