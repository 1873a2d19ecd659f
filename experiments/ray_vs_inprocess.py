"""The classic suite on a local Ray instance vs in process, on one machine: Ray's cost per task, and the wall
time to expect on N nodes from the measured task durations; outside CI (docs/cluster.md has the figures).

    python experiments/ray_vs_inprocess.py --deadline 23:50          # the measured subset; no Ray path past 23:50 UTC
    python experiments/ray_vs_inprocess.py --envs all --agents all --steps-scale 0.123   # the whole suite (hours)

Trains a suite (``--suite``, default ``classic``) with one seed, twice, each into a fresh runs folder and each in a
fresh Python process timed end to end from outside (interpreter, imports, Ray's start and stop included):

1. in process: ``morl.suites.run_suite`` exactly as ``morl suite run`` calls it (``XLA_FLAGS`` as the CLI sets it:
   one XLA CPU device per core);
2. on Ray: the same call with a ``morl.cluster.TrainOptions`` (``morl suite run --ray``: a local instance started by
   the process); the time ``ray.init`` takes is measured on its own.

The default is a subset that fits an hour for both paths on the shared 2-core CPU: deep-sea-treasure and
minecart-deterministic with every agent but GPI-LS (its 5 gradient steps per env step make one run at x0.123 about
20 minutes here, longer than the rest of the subset), at x0.075, the smallest scale this subset accepts (MORL/D's
minecart exchange round is 75,000 steps; the whole suite needs x0.123, below which C-MORL's fruit-tree
initialisation is less than one update). ``--envs``/``--agents`` pick another subset (``all``: the suite's), written
as a suite file of its own beside the runs with the suite's settings for them unchanged.

Tasks are one run each (one seed). ``--task-cpus`` defaults to the machine's cores, so the Ray path runs one task at
a time, as in process, with the same XLA device count; the difference of the two walls is then Ray's cost, not two
trainings sharing the same cores (``--task-cpus 1`` measures that instead). Each path gets an empty JAX compilation
cache of its own (``MORL_COMPILATION_CACHE``), so neither reuses the other's programs; the cache folders' file counts
are printed to show that the Ray workers used theirs.

Then it checks that the two leaderboards' tables and every run's ``front.csv`` are equal, reads each run's wall
time from its ``result.json`` (from the trainer's init to the end of its final evaluation: compiles
included, process start, imports and trainer construction not), and prints one table: the two end-to-end walls,
Ray's start-up, the sums of the task walls, Ray's overhead per task (Ray's wall minus its start-up minus the sum of
its task walls, over the tasks; the in-process path's own overhead outside its runs is printed beside it), the
longest task, and the wall expected on N = 1, 2, 4, 8 nodes of ``--node-cores`` cores: longest-processing-time-
first scheduling of the measured Ray task walls plus the overhead per task onto N x (cores / task-cpus) slots,
plus the start-up. The load average (1/5/15 min) is printed before and after each path.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ENVS = ["deep-sea-treasure-v0", "minecart-deterministic-v0"]
DEFAULT_AGENTS = ["c-morl", "morld", "pgmorl", "envelope", "pd-morl-discrete", "pcn", "hyper-ppo"]  # no gpi-ls


# ====================================================================== one path, in its own process
def child(args: argparse.Namespace) -> None:
    """Train the suite once (in process or on a local Ray instance) and write the timings as JSON."""
    t0 = time.perf_counter()
    from morl.suites import run_suite

    timings: dict = {"import_s": time.perf_counter() - t0}
    cluster, failures = None, []
    if args.child == "ray":
        from morl.cluster import Resources, TrainOptions, connect

        t = time.perf_counter()
        connect(None)
        timings["ray_start_s"] = time.perf_counter() - t
        cluster = TrainOptions(resources=Resources(cpus=args.task_cpus))
    t = time.perf_counter()
    run_suite(
        args.suite,
        args.runs_dir,
        seeds=[args.seed],
        steps_scale=args.steps_scale,
        out=args.board,
        log=lambda s: print(s, flush=True),
        cluster=cluster,
        failures=failures,
    )
    timings["suite_s"] = time.perf_counter() - t
    timings["failures"] = [f"{f.runs[0].agent} on {f.runs[0].env}: {f.error}" for f in failures]
    if args.child == "ray":
        import ray

        t = time.perf_counter()
        ray.shutdown()
        timings["ray_stop_s"] = time.perf_counter() - t
    Path(args.timings).write_text(json.dumps(timings, indent=1))


# ====================================================================== the driver
def subset_suite(suite: str, envs: list[str] | None, agents: list[str] | None, out: Path) -> Path:
    """A copy of the suite file with only ``envs`` and ``agents`` (the suite's own settings for them, unchanged)."""
    from morl.suites import load_suite

    s = load_suite(suite)
    text = s.path.read_text()
    if envs is None and agents is None:
        return s.path
    unknown = sorted(set(envs or []) - {e.id for e in s.envs}) + sorted(set(agents or []) - set(s.agents))
    if unknown:
        raise SystemExit(f"not in suite {s.name}: {unknown}; its envs: {[e.id for e in s.envs]}, agents: {s.agents}")
    head, *blocks = re.split(r"(?m)^(?=\[\[envs\]\])", text)
    keep = [b for b in blocks if re.search(r'(?m)^id = "([^"]+)"', b).group(1) in (envs or [e.id for e in s.envs])]
    if agents is not None:
        head, n = re.subn(r"(?m)^agents = \[.*\]$", "agents = " + json.dumps(agents), head)
        assert n == 1, "the suite file's `agents = [...]` line was not found"
    head = re.sub(r'(?m)^name = "([^"]+)"$', r'name = "\1-subset"', head)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(head + "".join(keep))
    return out


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run_path(mode: str, args: argparse.Namespace, suite: Path, out: Path) -> dict:
    runs, cache = out / f"runs-{mode}", out / f"cache-{mode}"
    env = dict(os.environ, MORL_COMPILATION_CACHE=str(cache), XLA_FLAGS=args.xla_flags)
    env.pop("MORL_TASK_XLA_FLAGS", None)  # Ray's CPU tasks: one XLA device per reserved core, as `--task-cpus` says
    cmd = [sys.executable, __file__, "--child", mode, "--suite", str(suite), "--runs-dir", str(runs)]
    cmd += ["--steps-scale", str(args.steps_scale), "--seed", str(args.seed), "--task-cpus", str(args.task_cpus)]
    cmd += ["--board", str(out / f"{mode}.md"), "--timings", str(out / f"timings-{mode}.json")]
    before = load()
    print(f"[{time.strftime('%H:%M:%S')}] {mode}: load {before}: {' '.join(cmd)}", flush=True)
    t = time.perf_counter()
    with open(out / f"{mode}.log", "w") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t
    after = load()
    print(f"[{time.strftime('%H:%M:%S')}] {mode}: {wall:.1f} s, exit {rc}, load {after}", flush=True)
    if rc != 0:
        raise SystemExit(f"the {mode} path failed (exit {rc}); see {out / f'{mode}.log'}")
    timings = json.loads((out / f"timings-{mode}.json").read_text())
    files = sum(1 for p in cache.rglob("*") if p.is_file()) if cache.exists() else 0
    return {**timings, "wall_s": wall, "load_before": before, "load_after": after, "runs": runs, "cache_files": files}


def lpt(durations: list[float], slots: int) -> float:
    """Makespan of longest-processing-time-first list scheduling of ``durations`` onto ``slots`` equal slots."""
    ends = [0.0] * max(1, slots)
    for d in sorted(durations, reverse=True):
        heapq.heapreplace(ends, ends[0] + d)
    return max(ends)


def runs_of(runs_dir: Path) -> dict[tuple, object]:
    from morl import runs as R

    return {(r.agent, r.env, r.seed): r for r in R.list_runs(runs_dir)[0]}


def tables(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.startswith("|")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="classic", help="suite name or .toml path")
    p.add_argument("--envs", nargs="+", default=DEFAULT_ENVS, help="env ids of the suite to train, or 'all'")
    p.add_argument("--agents", nargs="+", default=DEFAULT_AGENTS, help="agents of the suite to train, or 'all'")
    p.add_argument("--steps-scale", type=float, default=0.075, help="every budget x this (whole suite: >= 0.123)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task-cpus", type=float, default=float(os.cpu_count() or 1), help="Ray: cores per task")
    p.add_argument("--node-cores", type=int, default=os.cpu_count() or 1, help="cores of a node in the N-node estimate")
    p.add_argument("--out", default=None, help="a fresh folder for both runs folders (default /tmp/ray-vs-inprocess-*)")
    p.add_argument("--deadline", default=None, help="HH:MM (UTC): skip the Ray path if it would end after this")
    p.add_argument("--child", choices=["inprocess", "ray"], help=argparse.SUPPRESS)
    p.add_argument("--runs-dir", help=argparse.SUPPRESS)
    p.add_argument("--board", help=argparse.SUPPRESS)
    p.add_argument("--timings", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)

    out = Path(args.out or f"/tmp/ray-vs-inprocess-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; give a fresh --out")
    out.mkdir(parents=True, exist_ok=True)
    envs = None if args.envs == ["all"] else args.envs
    agents = None if args.agents == ["all"] else args.agents
    suite = subset_suite(args.suite, envs, agents, out / "suite.toml")
    args.xla_flags = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"  # what `morl` sets by default
    print(f"suite file {suite}; scale {args.steps_scale}; seed {args.seed}; task cpus {args.task_cpus}", flush=True)

    res = {"inprocess": run_path("inprocess", args, suite, out)}
    if args.deadline:
        hh, mm = (int(x) for x in args.deadline.split(":"))
        now = time.gmtime()
        left = (hh * 60 + mm) * 60 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec)
        if 1.2 * res["inprocess"]["wall_s"] + 60 > left:
            raise SystemExit(
                f"the Ray path would not end by {args.deadline} UTC ({left:.0f} s left, the in-process path took "
                f"{res['inprocess']['wall_s']:.0f} s); rerun with a smaller subset"
            )
    res["ray"] = run_path("ray", args, suite, out)

    # ---------------------------------------------------------------- equal results?
    local, remote = runs_of(res["inprocess"]["runs"]), runs_of(res["ray"]["runs"])
    from morl import runs as R

    def front(r) -> str | None:
        f = r.path / R.FRONT_CSV
        return f.read_text() if r.status == "done" and f.exists() else None

    differ = sorted(
        k
        for k in set(local) | set(remote)
        if k not in local or k not in remote or front(local[k]) is None or front(local[k]) != front(remote[k])
    )
    same_boards = tables(out / "inprocess.md") == tables(out / "ray.md") and len(tables(out / "inprocess.md")) > 0
    failures = res["inprocess"].get("failures", []) + res["ray"].get("failures", [])

    # ---------------------------------------------------------------- durations
    print(f"\n{'agent':18} {'env':28} {'in-process s':>12} {'Ray s':>8}  front")
    for k in sorted(local):
        w_l = float(local[k].result["wall_time"]) if local[k].result else float("nan")
        w_r = float(remote[k].result["wall_time"]) if k in remote and remote[k].result else float("nan")
        print(f"{k[0]:18} {k[1]:28} {w_l:12.1f} {w_r:8.1f}  {'same' if k not in differ else 'DIFFERENT'}")
    wl = {f"{k[0]} on {k[1]}": float(r.result["wall_time"]) for k, r in local.items() if r.result}
    wr = {f"{k[0]} on {k[1]}": float(r.result["wall_time"]) for k, r in remote.items() if r.result}
    walls_l, walls_r = list(wl.values()), list(wr.values())
    longest = max(wr, key=wr.get)
    n = len(walls_r)
    ip, ry = res["inprocess"], res["ray"]
    start = ry["ray_start_s"]
    overhead = (ry["wall_s"] - start - sum(walls_r)) / max(1, n)
    slots_per_node = max(1, int(args.node_cores // args.task_cpus))
    one_at_a_time = int((os.cpu_count() or 1) // args.task_cpus) <= 1
    rows = [
        ("tasks (runs, one seed each)", f"{n}"),
        ("total wall in process (end to end)", f"{ip['wall_s']:.1f} s"),
        ("total wall on Ray (end to end)", f"{ry['wall_s']:.1f} s"),
        ("  Ray start-up (ray.init) / shutdown", f"{start:.1f} s / {ry.get('ray_stop_s', 0):.1f} s"),
        ("  imports before the suite (in process / Ray driver)", f"{ip['import_s']:.1f} s / {ry['import_s']:.1f} s"),
        ("sum of task walls in process", f"{sum(walls_l):.1f} s"),
        ("sum of task walls on Ray", f"{sum(walls_r):.1f} s"),
        ("in process: wall outside the runs, per task", f"{(ip['wall_s'] - sum(walls_l)) / max(1, n):.1f} s"),
        (
            "Ray overhead per task (wall - start-up - sum of task walls) / tasks"
            + ("" if one_at_a_time else " [tasks ran concurrently: not meaningful]"),
            f"{overhead:.1f} s",
        ),
        ("longest task (Ray)", f"{wr[longest]:.1f} s ({longest})"),
    ]
    for nodes in (1, 2, 4, 8):
        slots = nodes * slots_per_node
        est = start + lpt([w + max(0.0, overhead) for w in walls_r], slots)
        rows.append((f"expected wall on {nodes} node(s) x {args.node_cores} cores ({slots} slot(s))", f"{est:.0f} s"))
    rows += [
        ("load average before/after in process (1/5/15 min)", f"{ip['load_before']} -> {ip['load_after']}"),
        ("load average before/after Ray (1/5/15 min)", f"{ry['load_before']} -> {ry['load_after']}"),
        ("compilation cache files written (in process / Ray workers)", f"{ip['cache_files']} / {ry['cache_files']}"),
        ("fronts equal (every run's front.csv)", "yes" if not differ else f"NO: {differ}"),
        ("leaderboard tables equal", "yes" if same_boards else "NO"),
        ("failed tasks", "; ".join(failures) or "none"),
    ]
    print()
    print("| measure | value |\n|---|---:|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    summary = {k: v for k, v in rows}
    summary["walls_inprocess"], summary["walls_ray"] = wl, wr
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nrun folders, logs and summary.json in {out}")
    if differ or not same_boards or failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
