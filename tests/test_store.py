"""The SQLite results store and the leaderboard built from it (no JAX needed: fast)."""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from morl.leaderboard import bootstrap_ci, build_leaderboard, render, resolve_metric
from morl.store import SCHEMA_VERSION, Store, StoreError, protocol_hash

PROTO = {
    "gamma": 0.99,
    "episodes": 5,
    "front_weights": 100,
    "eu_weights": 50,
    "max_steps": None,
    "ref_point": [0.0, -25.0],
}


def row(run_id, agent="a", env="deep-sea-treasure-v0", seed=0, hv=1.0, protocol=PROTO, budget=1000, **extra):
    return {
        "run_id": run_id,
        "agent": agent,
        "env": env,
        "seed": seed,
        "config": {"lr": 0.1, "hidden": [64, 64]},
        "budget": budget,
        "env_steps": budget,
        "wall_time": 1.5,
        "machine": "test",
        "version": "0",
        "protocol": protocol,
        "metrics": {"hypervolume": hv, "igd": 0.5 * hv, "expected_utility": float("nan")},
        "created": f"2026-01-01T00:00:{seed:02d}",
        "finished": f"2026-01-01T00:01:{seed:02d}",
        **extra,
    }


def test_schema_wal_and_roundtrip(tmp_path):
    st = Store(tmp_path / "results.sqlite")
    assert st.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(st.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"schema_version", "runs", "evaluations"} <= tables
    st.record_run(row("r1", seed=3, hv=7.5))
    (r,) = st.runs()
    assert r["run_id"] == "r1" and r["seed"] == 3 and r["config"] == {"lr": 0.1, "hidden": [64, 64]}
    assert r["metrics"]["hypervolume"] == 7.5 and r["metrics"]["expected_utility"] is None  # NaN -> null
    assert r["protocol_hash"] == protocol_hash(PROTO)
    (e,) = st.evaluations()
    assert e["run_id"] == "r1" and e["protocol"] == PROTO
    # a re-evaluation under another protocol is a second evaluation row, not a replacement
    other = dict(PROTO, gamma=1.0)
    h = st.record_evaluation("r1", other, {"hypervolume": 9.0})
    assert h != protocol_hash(PROTO) and len(st.evaluations()) == 2
    st.record_run(row("r1", seed=3, hv=8.0))  # re-recording a run replaces its row (idempotent)
    assert st.count() == 1 and st.get("r1")["metrics"]["hypervolume"] == 8.0


def test_bad_writes_are_refused_and_leave_nothing(tmp_path):
    st = Store(tmp_path / "results.sqlite")
    with pytest.raises(StoreError, match="needs"):
        st.record_run({"run_id": "x"})
    with pytest.raises(StoreError, match="unknown run column"):
        st.record_run(row("x", colour="blue"))
    with pytest.raises(StoreError, match="not in"):
        st.record_evaluation("ghost", PROTO, {"hypervolume": 1.0})
    with pytest.raises((TypeError, ValueError)):  # not JSON-able: the transaction never starts
        st.record_run(row("y", metrics={"hypervolume": object()}))
    assert st.count() == 0 and st.evaluations() == []


def test_newer_schema_is_refused(tmp_path):
    st = Store(tmp_path / "results.sqlite")
    st.record_run(row("r1"))
    with sqlite3.connect(st.path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this morl"):
        Store(st.path).runs()


# The writers load morl/store.py by path (it needs only the standard library), so they start in a blink
# instead of importing JAX through the `morl` package, and they wait for a "go" file so their writes overlap.
WRITER = textwrap.dedent("""
    import importlib.util, os, sys, time
    spec = importlib.util.spec_from_file_location("store", sys.argv[3])
    store = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(store)
    st = store.Store(sys.argv[1], timeout_s=120)
    proc = int(sys.argv[2])
    while not os.path.exists(sys.argv[4]):
        time.sleep(0.001)
    for i in range(50):
        st.record_run({"run_id": f"p{proc}-{i}", "agent": f"agent{proc}", "env": "e-v0", "seed": i,
                       "config": {"i": i}, "protocol": {"gamma": 0.99}, "metrics": {"hypervolume": float(i)},
                       "created": "t", "finished": "t"})
""")


def run_writers(db: Path, n: int, go: Path) -> None:
    import morl.store

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(p), morl.store.__file__, str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(n)
    ]
    time.sleep(0.2)
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err


def test_concurrent_writers_lose_nothing(tmp_path):
    db = tmp_path / "results.sqlite"
    Store(db).schema_version()
    run_writers(db, 4, tmp_path / "go")
    st = Store(db)
    assert st.count() == 200
    assert len(st.evaluations()) == 200
    assert sorted(r["run_id"] for r in st.runs(agent="agent2")) == sorted(f"p2-{i}" for i in range(50))


def test_threads_sharing_one_store_lose_nothing(tmp_path):
    """Training lanes (threads) share one `Store`: each thread writes through its own connection (SQLite's are
    bound to their thread), however their calls interleave."""
    import threading

    st = Store(tmp_path / "results.sqlite")
    errors = []

    def write(t):
        try:
            for i in range(40):
                st.record_run(row(f"t{t}-{i}", agent=f"agent{t}", seed=i))
                st.runs(agent=f"agent{t}")
        except Exception as exc:  # collected: an exception in a thread would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert st.count() == 160 and len(st.runs(agent="agent3")) == 40


def test_concurrent_creators_of_a_new_database(tmp_path):
    db = tmp_path / "fresh" / "results.sqlite"
    run_writers(db, 3, tmp_path / "go")
    st = Store(db)
    assert st.count() == 150 and st.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


# ------------------------------------------------------------------------------------------ leaderboards
def test_bootstrap_ci():
    assert all(math.isnan(x) for x in bootstrap_ci([1.0]))
    assert bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    rng = np.random.default_rng(1)
    v = rng.normal(10.0, 1.0, size=30)
    lo, hi = bootstrap_ci(v)
    se = v.std(ddof=1) / np.sqrt(v.size)
    assert lo < v.mean() < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)  # normal approximation of the mean's CI
    assert bootstrap_ci(v) == (lo, hi)  # reproducible


def test_leaderboard_cells_protocols_best_and_ranks():
    other = dict(PROTO, gamma=1.0)
    rows = (
        [row(f"a{s}", "a", seed=s, hv=10.0 + s) for s in range(3)]
        + [row(f"b{s}", "b", seed=s, hv=20.0 + s) for s in range(3)]
        + [row("b-gamma1", "b", seed=0, hv=99.0, protocol=other)]  # another protocol
        + [row(f"c{s}", "c", env="fruit-tree-v0", seed=s, hv=5.0) for s in range(2)]
        + [row("a0-old", "a", seed=0, hv=1000.0, created="2025", finished="2025")]
    )  # superseded rerun
    for r in rows:
        r["protocol_hash"] = protocol_hash(r["protocol"])
    lb = build_leaderboard(rows, "hv")
    dst = [c for c in lb.columns if c.env == "deep-sea-treasure-v0"]
    assert len(dst) == 2 and {c.protocol_hash for c in dst} == {protocol_hash(PROTO), protocol_hash(other)}
    main = next(c for c in dst if c.protocol_hash == protocol_hash(PROTO))
    a, b = lb.cells[("a", main)], lb.cells[("b", main)]
    assert a.values == [10.0, 11.0, 12.0] and a.mean == 11.0  # the 2025 rerun of seed 0 is superseded
    assert b.mean == 21.0 and 99.0 not in b.values  # protocols never mixed
    assert lb.best[main] == {"b"}
    assert lb.ranks["a"] == 2.0 and lb.ranks["b"] == 1.0
    md = render(lb, "md")
    assert "**21 [20, 22] (n=3)**" in md and "11 [10, 12] (n=3)" in md and "99 (n=1)" in md
    assert protocol_hash(other) in md and "gamma=1.0" in md
    # lower is better: IGD = hv / 2 here, so a is best
    lb_igd = build_leaderboard(rows, "igd")
    main_igd = next(c for c in lb_igd.columns if c == main)
    assert lb_igd.best[main_igd] == {"a"} and not lb_igd.higher_is_better
    # a metric nobody has is reported, not silently empty
    lb_eu = build_leaderboard(rows, "eu")
    assert not lb_eu.columns and "without a finite expected_utility" in lb_eu.notes[0]
    csv = render(lb, "csv").splitlines()
    assert csv[0].startswith('"agent"') and csv[1].startswith("a,") and len(csv) == 4
    html = render(lb, "html")
    assert "<b>21 [20, 22] (n=3)</b>" in html


def test_metric_aliases():
    assert resolve_metric("hv")[1] == "hypervolume" and resolve_metric("maximum_utility_loss")[0] == "mul"
    with pytest.raises(ValueError, match="choose one of hv, eu, sp, card, igd, mul"):
        resolve_metric("speed")
