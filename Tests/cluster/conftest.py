"""Fixtures for the cluster tests: a cluster factory that always kills what it started and prints the
members' logs when a test fails, a per-test watchdog, and a summary of the measurements at the end."""
import os
import shutil
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import cluster as harness  # noqa: E402

METRICS = []
WATCHDOG_S = int(os.environ.get("CLUSTER_TEST_TIMEOUT_S", "90"))


def _terminated(signum, frame):
    # SIGTERM (e.g. `timeout`, CI stopping the run) becomes an exception, so fixtures' teardown and the
    # harness's atexit hook still kill every member.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _terminated)
signal.signal(signal.SIGHUP, _terminated)


def record(line: str):
    """A measurement worth showing: printed now (visible with -s) and again in pytest's summary."""
    print(line, flush=True)
    METRICS.append(line)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


class _Watchdog(Exception):
    pass


@pytest.fixture(autouse=True)
def watchdog(request):
    """Every test ends within WATCHDOG_S seconds: the alarm raises in the test's thread, and the cluster
    fixture's teardown still kills every member."""
    if request.node.get_closest_marker("no_watchdog"):
        yield
        return

    def fire(signum, frame):
        raise _Watchdog(f"test exceeded {WATCHDOG_S}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(WATCHDOG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def make_cluster(request):
    made = []

    def make(n=3, **kw):
        c = harness.Cluster(n, **kw)
        made.append(c)
        return c

    yield make
    failed = any(getattr(request.node, "rep_" + w, None) is not None and getattr(request.node, "rep_" + w).failed
                 for w in ("setup", "call"))
    for c in made:
        c.stop()
        if failed:
            print(f"\n===== {request.node.name}: member logs in {c.dir} =====")
            c.dump_logs()
        else:
            shutil.rmtree(c.dir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    if METRICS:
        terminalreporter.section("cluster measurements")
        for line in METRICS:
            terminalreporter.write_line(line)
