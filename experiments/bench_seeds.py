"""Benchmark: N seeds in one `morl train --seeds` call against N one-seed `morl train` calls.

    python experiments/bench_seeds.py --agent c-morl --env deep-sea-treasure-v0 --seeds 16
    python experiments/bench_seeds.py --agent envelope --env deep-sea-treasure-v0 --seeds 8 -- --steps 5000

Both sides run as a user would, each in fresh processes with the persistent compilation cache on, in a folder of
its own that starts empty: the one-seed calls run one after another (the first fills the cache, the others reuse
it); the many-seed call compiles once (on a GPU/TPU a vmappable agent trains every seed in one program; otherwise the
seeds in lanes, one thread per core on a CPU, sharing compiled programs). Wall times include process start, compiles,
the final evaluation and the writes. Each seed's final front must be the same on both sides (printed).
Arguments after ``--`` go to every `morl train` call.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train(args: list[str], cache: str) -> float:
    env = dict(os.environ, MORL_COMPILATION_CACHE=cache)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "morl.cli", "train", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def fronts(runs_dir: Path) -> dict[int, list[tuple[float, ...]]]:
    """Each run's final front (front.csv rows, sorted), by seed."""
    import json

    out = {}
    for run in sorted(p for p in runs_dir.iterdir() if (p / "front.csv").exists()):
        seed = int(json.loads((run / "config.json").read_text())["seed"])
        with open(run / "front.csv") as f:
            rows = list(csv.reader(f))
        out[seed] = sorted(tuple(round(float(v), 4) for v in r) for r in rows[1:])
    return out


def compare(agent: str, env: str, n: int, extra: list[str] = ()) -> dict:
    """Wall seconds of ``n`` one-seed calls and of one ``--seeds 0-(n-1)`` call, and the seeds whose fronts agree."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        common = [agent, "--env", env, "--eval-every", "0", *extra]
        one = [
            train([*common, "--seed", str(s), "--runs-dir", str(tmp / "one")], str(tmp / "cache-one")) for s in range(n)
        ]
        many = train([*common, "--seeds", f"0-{n - 1}", "--runs-dir", str(tmp / "many")], str(tmp / "cache-many"))
        f_one, f_many = fronts(tmp / "one"), fronts(tmp / "many")
    same = [s for s in range(n) if f_one.get(s) == f_many.get(s)]
    return dict(one=one, many=many, ratio=many / sum(one), per_one_seed=many / min(one), same=same)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agent", default="c-morl")
    p.add_argument("--env", default="deep-sea-treasure-v0")
    p.add_argument("--seeds", type=int, default=16, help="seeds 0..N-1")
    p.add_argument("extra", nargs="*", help="after --: arguments for every `morl train` call")
    a = p.parse_args()
    n = a.seeds
    r = compare(a.agent, a.env, n, a.extra)
    one, many, same = r["one"], r["many"], r["same"]
    load = os.getloadavg()[0]
    print(f"{a.agent} on {a.env}, {n} seeds; load average {load:.1f}; {os.cpu_count()} cores")
    print(
        f"  {n} one-seed calls: {sum(one):.1f} s (first {one[0]:.1f} s, "
        f"then {min(one[1:] or one):.1f}-{max(one[1:] or one):.1f} s)"
    )
    print(f"  one call with --seeds 0-{n - 1}: {many:.1f} s")
    print(f"  ratio: {r['ratio']:.2f}x the wall of the one-seed calls ({r['per_one_seed']:.2f}x the fastest one)")
    print(
        f"  same final front as its one-seed run: {len(same)} of {n} seeds"
        + ("" if len(same) == n else f" (differ: {sorted(set(range(n)) - set(same))})")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
