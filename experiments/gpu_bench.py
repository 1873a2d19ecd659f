"""The accelerator checks of one machine in one run: one table and one JSON file.

    bash experiments/gpu_bench.sh [--out DIR] [--only engine mjx cmorl-dst cmorl-hopper compile]

Rows (sizes by device: a GPU/TPU gets the issue's sizes, a CPU smaller ones so the script runs anywhere):
- engine: `morl.bench.bench_engine` on deep-sea-treasure and minecart, compile time apart.
- mjx: mo-hopper-v5 on the MJX backend, ``physics="exact"`` and ``"fast"``, at two batch sizes.
- cmorl-dst: C-MORL on deep-sea-treasure, wall time to 100% of the true HV for seeds 0-2, each seed once
  cold (an empty compilation cache, compile included) and once warm (the cache the cold runs filled).
- cmorl-hopper: C-MORL on mo-hopper-2obj-v5 for a fixed wall time: training transitions/s after the first
  update, and the policy buffer's HV when the time is up.
- seeds: C-MORL on deep-sea-treasure, one `morl train --seeds 0-(n-1)` call against n one-seed calls
  (`bench_seeds.py`; n = 8 on a GPU/TPU, 2 on a CPU): the wall ratio to the n calls and to one seed's call.
- compile: first-compile time of every agent on classic envs (cache off): JAX's compile events (tracing,
  lowering, XLA) during init + the first update.
Every measurement runs in its own process, so compile caches and JAX's in-memory caches never leak
between rows. It installs nothing: `morl` (with its mujoco extra) must be importable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the sibling benchmarks (bench_c_morl, bench_seeds) the parts call
PARTS = ("engine", "mjx", "cmorl-dst", "cmorl-hopper", "seeds", "compile")
#: (agent, env) pairs whose first compile is measured: every agent on deep-sea-treasure (discrete actions) or
#: mo-mountaincarcontinuous (continuous), and every discrete agent but the tabular ones on minecart-v0 too (the
#: classic env with the largest step: float64 physics); EUPG on fishwood, its paper's env
COMPILE_PAIRS = tuple(
    [
        (a, "deep-sea-treasure-v0")
        for a in ("c-morl", "pgmorl", "envelope", "pd-morl-discrete", "morld", "pcn", "gpi-ls", "gpi-pd")
        + ("hyper-ppo", "pql", "mo-q", "ols")
    ]
    + [(a, "minecart-v0") for a in ("c-morl", "envelope", "pd-morl-discrete", "morld", "pcn", "gpi-ls")]
    + [("pgmorl", "minecart-v0")]  # with a budget that covers its 21 tasks' warm-up (`COMPILE_OVERRIDES`)
    + [(a, "minecart-v0") for a in ("gpi-pd", "hyper-ppo")]
    + [("eupg", "fishwood-v0")]
    + [(a, "mo-mountaincarcontinuous-v0") for a in ("c-morl", "pgmorl", "pd-morl", "morld", "capql", "hyper-ppo")]
)


#: settings a pair needs to build at all (the budget does not change the programs)
#: and shorter first rounds where the default one takes minutes to run (the same programs, shorter loops)
COMPILE_OVERRIDES = {
    ("pgmorl", "minecart-v0"): {"total_timesteps": 17_203_200},
    ("morld", "minecart-v0"): {"exchange_every": 2_000},
    ("morld", "mo-mountaincarcontinuous-v0"): {"exchange_every": 2_000},
}


def sizes(accelerator: bool) -> dict:
    if accelerator:
        return dict(engine_envs=65_536, mjx_envs=(4_096, 65_536), hopper_seconds=120.0, hopper_envs=1_024, seeds=8)
    return dict(engine_envs=4_096, mjx_envs=(64, 256), hopper_seconds=60.0, hopper_envs=None, seeds=2)


# ------------------------------------------------------------------------------------ one measurement each
def part_engine(accelerator: bool) -> list[dict]:
    from morl.bench import bench_engine

    rows = []
    for env_id in ("deep-sea-treasure-v0", "minecart-v0"):
        r = bench_engine(env_id, sizes(accelerator)["engine_envs"], 1000, 2.0)
        rows.append(
            dict(
                row="engine",
                what=env_id,
                num_envs=r.num_envs,
                steps_per_s=r.steps_per_s,
                compile_s=r.compile_seconds,
                note=r.what,
            )
        )
    return rows


def part_mjx(accelerator: bool, physics: str, num_envs: int) -> list[dict]:
    import morl
    from morl.bench import bench_engine

    try:
        morl.make("mo-hopper-v5", backend="mjx", physics=physics)
    except TypeError as exc:  # an MJX port without the preset
        return [dict(row="mjx", what=f"mo-hopper-v5 physics={physics}", num_envs=num_envs, note=f"n/a: {exc}")]
    r = bench_engine("mo-hopper-v5", num_envs, 1000, 2.0, env_kwargs=dict(backend="mjx", physics=physics))
    return [
        dict(
            row="mjx",
            what=f"mo-hopper-v5 physics={physics}",
            num_envs=r.num_envs,
            steps_per_s=r.steps_per_s,
            compile_s=r.compile_seconds,
            note=r.what,
        )
    ]


def part_cmorl_dst(seed: int, cache: str) -> list[dict]:
    from bench_c_morl import bench_c_morl

    r = bench_c_morl("deep-sea-treasure-v0", seed, stop_at_full=True)
    return [
        dict(
            row="cmorl-dst",
            what=f"seed {seed} ({cache})",
            seconds_to_100=r["t100_s"],
            first_update_s=r["first_update_s"],
            hv_pct=100 * r["final_buffer_hv"] / r["true_hv"],
            steps_per_s=r["steps_per_s_after_first_update"],
        )
    ]


def part_cmorl_hopper(accelerator: bool) -> list[dict]:
    import jax

    import morl
    from morl.agent import make_trainer

    size = sizes(accelerator)
    backend = "mjx" if accelerator else "mujoco"
    env, params = morl.make("mo-hopper-2obj-v5", backend=backend, max_steps=500)
    overrides = {"total_steps": 10**9, "init_steps": 10**9 // 2}
    if size["hopper_envs"]:
        overrides["num_envs"] = size["hopper_envs"]
    t0 = time.perf_counter()
    trainer = make_trainer("c-morl", env, params, **overrides)
    state = trainer.init(jax.random.PRNGKey(0))
    first = None
    hv = 0.0
    while time.perf_counter() - t0 < size["hopper_seconds"]:
        state, logs = trainer.update(state)
        hv = float(logs.get("buffer_hv", hv))
        if first is None:
            first = (time.perf_counter() - t0, trainer.env_steps(state))
    wall = time.perf_counter() - t0
    steps = trainer.env_steps(state)
    rate = (steps - first[1]) / max(wall - first[0], 1e-9) if steps > first[1] else None
    return [
        dict(
            row="cmorl-hopper",
            what=f"mo-hopper-2obj-v5 backend={backend}, {trainer.config.num_envs} envs/policy",
            seconds=wall,
            first_update_s=first[0],
            steps=steps,
            steps_per_s=rate,
            hv=hv,
        )
    ]


def part_seeds(accelerator: bool) -> list[dict]:
    from bench_seeds import compare

    n = sizes(accelerator)["seeds"]
    r = compare("c-morl", "deep-sea-treasure-v0", n)
    return [
        dict(
            row="seeds",
            what=f"c-morl DST --seeds 0-{n - 1} vs {n} one-seed calls",
            seconds=r["many"],
            ratio=r["ratio"],
            per_one_seed=r["per_one_seed"],
            note=f"{len(r['same'])} of {n} fronts equal; one-seed calls {min(r['one']):.1f}-{max(r['one']):.1f} s",
        )
    ]


def part_compile(agent: str, env_id: str) -> list[dict]:
    """Compile seconds of ``init`` + the first ``update`` (cache off): JAX's own compile events (tracing, lowering,
    XLA compilation) summed, so a long first update does not blur the figure."""
    import jax
    from jax import monitoring

    import morl
    from morl.agent import make_trainer

    spent = {"trace": 0.0, "lower": 0.0, "xla": 0.0}
    names = {
        "/jax/core/compile/jaxpr_trace_duration": "trace",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
        "/jax/core/compile/backend_compile_duration": "xla",
    }

    def listen(event: str, seconds: float, **_) -> None:
        if event in names:
            spent[names[event]] += seconds

    monitoring.register_event_duration_secs_listener(listen)
    env, params = morl.make(env_id)
    t0 = time.perf_counter()
    trainer = make_trainer(agent, env, params, **COMPILE_OVERRIDES.get((agent, env_id), {}))
    state = trainer.init(jax.random.PRNGKey(0))
    state, _ = trainer.update(state)
    jax.block_until_ready(state)
    t1 = time.perf_counter()
    return [
        dict(
            row="compile",
            what=f"{agent} on {env_id}",
            first_update_s=t1 - t0,
            compile_s=sum(spent.values()),
            xla_s=spent["xla"],
        )
    ]


# ------------------------------------------------------------------------------------------------ driver
def run_part(args: list[str], cache: str | None, timeout: float) -> list[dict]:
    """One measurement in a fresh process; its rows are printed as they arrive (a killed run keeps them)."""
    env = dict(os.environ, MORL_COMPILATION_CACHE=cache or "off")
    cmd = [sys.executable, "-P", str(Path(__file__).resolve()), "--part", *args]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            tail = (out.stderr.strip().splitlines() or ["?"])[-1]
            rows = [dict(row=args[0], what=" ".join(args[1:]), note=f"failed: {tail}")]
        else:
            rows = json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        rows = [dict(row=args[0], what=" ".join(args[1:]), note=f"timed out after {timeout:.0f} s")]
    for r in rows:
        print("  " + ", ".join(f"{k}={fmt(v)}" for k, v in r.items()), flush=True)
    return rows


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.2f}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_bench.json")
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.part:  # a child process: one measurement, JSON on the last line
        import jax

        accelerator = jax.default_backend() in ("gpu", "tpu")
        name, rest = args.part[0], args.part[1:]
        rows = {
            "engine": lambda: part_engine(accelerator),
            "mjx": lambda: part_mjx(accelerator, rest[0], int(rest[1]) if len(rest) > 1 else 0),
            "cmorl-dst": lambda: part_cmorl_dst(int(rest[0]), rest[1]),
            "cmorl-hopper": lambda: part_cmorl_hopper(accelerator),
            "seeds": lambda: part_seeds(accelerator),
            "compile": lambda: part_compile(rest[0], rest[1]),
        }[name]()
        print(json.dumps(rows))
        return 0

    import jax

    from morl.bench import machine

    accelerator = jax.default_backend() in ("gpu", "tpu")
    size = sizes(accelerator)
    start = time.perf_counter()
    print(f"# accelerator checks on {machine()}", flush=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        if "engine" in args.only:
            rows += run_part(["engine"], None, 300)
        if "mjx" in args.only:
            for physics in ("exact", "fast"):
                for n in size["mjx_envs"]:
                    rows += run_part(["mjx", physics, str(n)], None, 300)
        if "cmorl-dst" in args.only:
            warm = os.path.join(tmp, "warm")
            for seed in (0, 1, 2):  # cold: each seed with its own empty cache; the first one fills `warm`
                rows += run_part(
                    ["cmorl-dst", str(seed), "cold"], warm if seed == 0 else os.path.join(tmp, f"c{seed}"), 300
                )
            for seed in (0, 1, 2):
                rows += run_part(["cmorl-dst", str(seed), "warm"], warm, 300)
        if "cmorl-hopper" in args.only:
            rows += run_part(["cmorl-hopper"], None, size["hopper_seconds"] + 300)
        if "seeds" in args.only:
            rows += run_part(["seeds"], None, 600)
        if "compile" in args.only:
            for agent, env_id in COMPILE_PAIRS:
                rows += run_part(["compile", agent, env_id], None, 300)
    report = dict(machine=machine(), accelerator=accelerator, seconds=time.perf_counter() - start, rows=rows)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / "gpu_bench.json"
    tmp_path = path.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(report, indent=1))
    os.replace(tmp_path, path)

    cols = (
        "row",
        "what",
        "num_envs",
        "steps_per_s",
        "compile_s",
        "xla_s",
        "first_update_s",
        "seconds",
        "seconds_to_100",
        "hv_pct",
        "hv",
        "ratio",
        "per_one_seed",
        "note",
    )
    used = [c for c in cols if any(c in r for r in rows)]
    print(f"# accelerator checks: {report['machine']}; {report['seconds']:.0f} s in all")
    print("| " + " | ".join(used) + " |")
    print("|" + "|".join("---" for _ in used) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(r.get(c)) for c in used) + " |")
    print(f"(JSON: {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
