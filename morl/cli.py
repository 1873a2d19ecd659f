"""The `morl` command line: `morl envs`, `morl bench rollout`, ...

Run `morl --help` or `morl COMMAND --help`.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

# wide tables when piped (CI logs, closing notes); the terminal's width otherwise
console = Console(width=None if sys.stdout.isatty() else 140)


def _fmt_point(p) -> str:
    return "-" if p is None else "[" + ", ".join(f"{x:g}" for x in p) + "]"


def cmd_envs(args: argparse.Namespace) -> int:
    import morl

    table = Table(title="registered environments")
    for col in ("id", "objectives", "observation", "action", "max steps", "known front", "ref point"):
        table.add_column(col)
    for env_id in morl.list_envs():
        try:
            env, params = morl.make(env_id)
        except Exception as exc:  # an env whose optional dependency is missing still gets listed
            table.add_row(env_id, f"[red]unavailable: {exc}[/red]", "", "", "", "", "")
            continue
        names = ", ".join(env.reward_names) if env.reward_names else str(env.reward_dim)
        table.add_row(env_id, f"{env.reward_dim}: {names}", env.observation_space.describe(),
                      env.action_space.describe(), str(int(params.max_steps)),
                      "yes" if env.has_known_front else "no", _fmt_point(env.ref_point))
    console.print(table)
    console.print("Any gymnasium / MO-Gymnasium id also works as 'gym:<id>' (host path).")
    return 0


def cmd_bench_rollout(args: argparse.Namespace) -> int:
    from morl.bench import bench_rollout, machine

    env_ids = args.env
    summary = Table(title=f"env steps/s, random policy ({machine()})")
    for col in ("env", "engine (num_envs)", "MO-Gym single", "MO-Gym MOSyncVectorEnv(64)", "ratio vs MOSync(64)"):
        summary.add_column(col, justify="right")
    for env_id in env_ids:
        with console.status(f"benchmarking {env_id} ..."):
            rows = bench_rollout(env_id, args.num_envs, args.num_steps, args.seconds, reference=not args.no_reference)
        detail = Table(title=env_id)
        for col in ("what", "num envs", "steps", "seconds", "steps/s"):
            detail.add_column(col, justify="right")
        for r in rows:
            detail.add_row(r.what, str(r.num_envs), f"{r.steps:,}", f"{r.seconds:.2f}", f"{r.steps_per_s:,.0f}")
        console.print(detail)
        engine = next((r for r in rows if r.what.startswith("morl")), None)
        single = next((r for r in rows if "single" in r.what), None)
        vector = next((r for r in rows if "MOSyncVectorEnv" in r.what), None)
        ratio = (f"{engine.steps_per_s / vector.steps_per_s:,.0f}x" if engine and vector else "-")
        summary.add_row(env_id, f"{engine.steps_per_s:,.0f} ({engine.num_envs})" if engine else "-",
                        f"{single.steps_per_s:,.0f}" if single else "-", f"{vector.steps_per_s:,.0f}" if vector else "-",
                        ratio)
    console.print(summary)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="morl", description="Multi-objective RL in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("envs", help="list registered environments")
    p.set_defaults(func=cmd_envs)

    bench = sub.add_parser("bench", help="benchmarks beside the reference stack").add_subparsers(dest="bench", required=True)
    p = bench.add_parser("rollout", help="env steps/s of the engine vs MO-Gymnasium")
    p.add_argument("--env", nargs="+", default=["deep-sea-treasure-v0"], help="env id(s)")
    p.add_argument("--num-envs", type=int, default=4096)
    p.add_argument("--num-steps", type=int, default=1000, help="steps per jitted call")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per measurement")
    p.add_argument("--no-reference", action="store_true", help="skip the MO-Gymnasium measurements")
    p.set_defaults(func=cmd_bench_rollout)
    return parser


def use_all_cpu_cores() -> None:
    """Expose every CPU core as a JAX device (before JAX starts) so the engine shards envs across them.

    XLA runs one jitted scan on one thread; with N CPU devices the env axis is partitioned N ways. Has no
    effect on accelerators (their devices come first) and respects a user-set XLA_FLAGS.
    """
    import os

    if "XLA_FLAGS" not in os.environ and "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"


def main(argv: list[str] | None = None) -> int:
    use_all_cpu_cores()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
