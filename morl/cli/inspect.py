"""Looking at what exists: `morl envs`, `morl runs`, `morl eval` (re-evaluate a run) and `morl plot`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

import morl
from morl.cli import common, options, process
from morl.cli.common import SHORT_METRICS, CLIError, Col, print_table
from morl.store import StoreError, protocol_hash


def add_envs_parser(sub) -> None:
    p = sub.add_parser("envs", help="list registered environments")
    p.set_defaults(func=cmd_envs)


def add_run_parsers(sub) -> None:
    """`morl runs`, `morl eval` and `morl plot`."""
    from morl.evaluate import EvalProtocol

    p = sub.add_parser("runs", help="list run folders (and report corrupt ones)")
    p.add_argument("--runs-dir", default=None, help="default: $MORL_RUNS_DIR or ./runs")
    p.add_argument("--agent", nargs="+")
    p.add_argument("--env", nargs="+")
    p.add_argument("--status", nargs="+", choices=("done", "running", "interrupted", "failed"))
    p.add_argument("--reindex", action="store_true", help="rebuild results.sqlite rows from finished run folders")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "eval",
        help="re-evaluate a run's last checkpoint under stated settings",
        description="Re-evaluate a run. Settings default to the run's own protocol; the ones you "
        "give are changed. Same protocol and no --eval-seed: reproduces the final metrics.",
    )
    p.add_argument("run", help="run id (or unique prefix, or folder)")
    p.add_argument("--runs-dir", default=None)
    options.add_dataclass_options(p.add_argument_group("protocol"), EvalProtocol, dest_prefix="proto__")
    p.add_argument("--eval-seed", type=int, default=None, help="evaluation key seed (default: the run's final one)")
    p.add_argument("--no-record", action="store_true", help="do not store the result")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="PNG of a run's front (true front overlaid when known) and learning curve")
    p.add_argument("run")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--out", default=None, help="PNG path (default: RUN/front.png)")
    p.add_argument("--no-true-front", action="store_true")
    p.set_defaults(func=cmd_plot)


def _fmt_point(p) -> str:
    return "-" if p is None else "[" + ", ".join(f"{x:g}" for x in p) + "]"


def cmd_envs(args: argparse.Namespace) -> int:
    """`morl envs`: every registered env with its objectives, spaces, time limit and reference point."""
    rows = []
    for env_id in morl.list_envs():
        try:
            env, params = morl.make(env_id)
        except Exception as exc:  # an env whose optional dependency is missing still gets listed
            rows.append([env_id, f"[red]unavailable: {escape(str(exc))}[/red]", "", "", "", "", ""])
            continue
        names = ", ".join(env.reward_names) if env.reward_names else str(env.reward_dim)
        max_steps = getattr(params, "max_steps", None)
        if max_steps is None:  # host envs may have no params; their time limit lives on the env
            max_steps = getattr(env, "max_episode_steps", None) or getattr(env, "time_limit", None)
        rows.append(
            [
                env_id,
                escape(f"{env.reward_dim}: {names}"),
                escape(env.observation_space.describe()),
                escape(env.action_space.describe()),
                "-" if max_steps is None else str(int(max_steps)),
                "yes" if env.has_known_front else "no",
                escape(_fmt_point(env.ref_point)),
            ]
        )
    print_table(
        "registered environments",
        [
            Col("id", "id"),
            Col("objectives"),
            Col("observation", drop=5),
            Col("action", drop=3),
            Col("max steps", "num", drop=4, justify="right"),
            Col("known front", drop=1),
            Col("ref point", drop=2),
        ],
        rows,
    )
    common.console.print("Any gymnasium / MO-Gymnasium id also works as 'gym:<id>' (host path).")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """`morl runs`: the run folders with their status and latest metrics; corrupt folders are reported, not fatal."""
    from morl import runs as R
    from morl.leaderboard import fmt_num

    runs_dir = common.runs_dir(args)
    if args.reindex:
        moved: list[Path] = []
        n, bad = R.reindex(runs_dir, moved=moved)
        for m in moved:
            common.console.print(
                f"[yellow]the results store was damaged: kept it as {m}, rebuilt it from the run folders[/]"
            )
        common.console.print(f"indexed {n} finished run(s) into {runs_dir / 'results.sqlite'}")
    good, bad = R.list_runs(runs_dir)
    good = [
        r
        for r in good
        if (not args.agent or r.agent in args.agent)
        and (not args.env or r.env in args.env)
        and (not args.status or r.status in args.status)
    ]
    rows = []
    colors = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red"}
    for r in good:
        if r.result:
            steps, wall, m = r.result.get("env_steps"), r.result.get("wall_time"), r.result.get("metrics", {})
        else:
            rows = R.read_jsonl(r.path / R.METRICS_JSONL)
            last = rows[-1] if rows else {}
            steps, wall, m = last.get("env_steps"), last.get("wall_time"), {}
            evals = [x for x in rows if "eval/hypervolume" in x]
            if evals:
                m = {
                    "hypervolume": evals[-1]["eval/hypervolume"],
                    "expected_utility": evals[-1].get("eval/expected_utility"),
                }
        rows.append(
            [
                escape(r.id),
                escape(r.agent),
                escape(r.env),
                str(r.seed),
                f"[{colors.get(r.status, 'white')}]{r.status}[/]",
                f"{steps:,}" if isinstance(steps, int) else "-",
                f"{wall:.1f}" if isinstance(wall, (int, float)) else "-",
                fmt_num(m.get("hypervolume")),
                fmt_num(m.get("expected_utility")),
                escape(str(r.meta.get("created", ""))[:19]),
            ]
        )
    print_table(
        f"runs in {escape(str(runs_dir))}",
        # agent, env, seed and date are also spelled in the id: they go first when the terminal is narrow
        [
            Col("id", "id"),
            Col("agent", drop=3),
            Col("env", drop=2),
            Col("seed", "num", drop=5, justify="right"),
            Col("status"),
            Col("env steps", "num", justify="right"),
            Col("wall s", "num", drop=4, justify="right"),
            Col("hv", "num", justify="right"),
            Col("eu", "num", drop=1, justify="right"),
            Col("created", drop=6),
        ],
        rows,
    )
    if not good:
        common.console.print(f"no runs in {runs_dir}; start one with `morl train AGENT --env ID`")
    stale = [r for r in good if r.status in ("interrupted", "failed")]
    if stale:
        common.console.print(f"[yellow]{len(stale)} unfinished run(s): `morl train --resume ID` continues them[/]")
    if bad:
        common.console.print(f"[yellow]skipped {len(bad)} corrupt or half-written run folder(s):[/]")
        for r in bad:
            common.console.print(f"  {r.path}: {r.problem}", markup=False, highlight=False)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """`morl eval RUN`: re-evaluate a run's last checkpoint under its own protocol, or the settings given."""
    import jax

    from morl import runs as R
    from morl.leaderboard import fmt_num

    info = common.find_run(args)
    if info.status == "corrupt":
        raise CLIError(f"run folder {info.path} is corrupt ({info.problem}); it cannot be evaluated")
    try:
        base = R.protocol_from_dict(info.meta.get("protocol") or {})
        protocol = dataclasses.replace(base, **options.collect(args, "proto__", base))
        protocol.check_env(R.build(info.meta)[1])
    except (TypeError, ValueError) as exc:
        raise CLIError(
            f"invalid evaluation protocol: {exc}; fix it with the option of the same name (`morl eval --help`)"
        ) from None
    key = None if args.eval_seed is None else jax.random.PRNGKey(args.eval_seed)
    try:
        with common.console.status(f"evaluating {info.id} ..."):
            front, notes = R.reevaluate(info, protocol, key=key, record=not args.no_record)
    except R.RunError as exc:
        raise CLIError(str(exc)) from None
    except (OSError, StoreError) as exc:
        if args.no_record:
            raise
        if isinstance(exc, OSError):
            raise CLIError(process.os_error_message(exc, "eval")) from None
        raise CLIError(f"{exc} (`morl eval {info.id} --no-record` evaluates without writing anything)") from None
    h = protocol_hash(front.protocol)
    table = Table(title=f"{info.id}: evaluation under protocol {h}")
    table.add_column("metric")
    table.add_column("this evaluation", justify="right")
    stored = (info.result or {}).get("metrics", {}) if info.result else {}
    same = info.result is not None and info.result.get("protocol_hash") == h
    table.add_column("final (training)" + (" same protocol" if same else " other protocol"), justify="right")
    for k, short in SHORT_METRICS:
        if k in front.metrics or k in stored:
            table.add_row(f"{k} ({short})", fmt_num(front.metrics.get(k)), fmt_num(stored.get(k)))
    common.console.print(table)
    common.console.print("protocol: " + ", ".join(f"{k}={v}" for k, v in front.protocol.items()), markup=False)
    common.console.print(f"front: {front.front.shape[0]} point(s) from {front.returns.shape[0]} candidate(s)")
    for n in notes:
        common.console.print(n, style="yellow", markup=False)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """`morl plot RUN`: PNGs of the run's front (the true front overlaid when known) and of its learning curve."""
    import numpy as np

    from morl import runs as R
    from morl.plots import plot_curves, plot_front

    folder = Path(args.run)
    if (folder / "curves.csv").is_file() and json.loads((folder / "config.json").read_text()).get("kind") == "bandit":
        from morl.bandits import plot_runs  # a bandit run folder: its regret curve (log-x)

        out = plot_runs([folder], "pareto_regret", Path(args.out) if args.out else None)
        common.console.print(f"wrote {out}")
        return 0
    info = common.find_run(args)
    if info.status == "corrupt":
        raise CLIError(f"run folder {info.path} is corrupt ({info.problem}); nothing to plot")
    if not (info.path / R.FRONT_CSV).exists():
        raise CLIError(
            f"run {info.id} has no final front yet (status {info.status}); "
            f"resume it (`morl train --resume {info.id}`) or evaluate a checkpoint with `morl eval`"
        )
    problem = R.front_files_problem(info.path, info.result) if info.status == "done" else None
    if problem is not None:
        raise CLIError(
            f"the front files of run {info.id} are damaged ({problem}); `morl eval {info.id}` re-evaluates "
            "the run's last checkpoint and rewrites them"
        )
    names, front = R.read_front_csv(info.path / R.FRONT_CSV)
    candidates = None
    if (info.path / R.RETURNS_CSV).exists():
        m = len(names)
        arr = np.loadtxt(info.path / R.RETURNS_CSV, delimiter=",", skiprows=1, ndmin=2)
        candidates = arr[:, 1 + m : 1 + 2 * m]
    proto = (info.result or {}).get("protocol") or info.meta.get("protocol") or {}
    known = None
    if not args.no_true_front:
        try:
            env, _ = morl.make(info.env, **(info.meta.get("env_kwargs") or {}))
            if env.has_known_front:
                known = env.pareto_front(proto.get("gamma", 0.99))
        except Exception as exc:  # plotting never fails for want of the true front
            common.console.print(f"no true front overlaid: {exc}", style="yellow", markup=False)
    out = Path(args.out) if args.out else info.path / "front.png"
    hv = (info.result or {}).get("metrics", {}).get("hypervolume")
    title = f"{info.agent} on {info.env}, seed {info.seed}" + (f"  (HV {hv:.4g})" if hv is not None else "")
    plot_front(
        front, out, names=names, known_front=known, candidates=candidates, title=title, ref_point=proto.get("ref_point")
    )
    common.console.print(f"wrote {out}" + (" (true front overlaid)" if known is not None else ""))
    rows = R.read_jsonl(info.path / R.METRICS_JSONL)
    if info.result:  # the curve ends at the final evaluation (same protocol as the periodic ones)
        rows.append(
            {
                "env_steps": info.result["env_steps"],
                **{f"eval/{k}": v for k, v in info.result.get("metrics", {}).items()},
            }
        )
    curve = plot_curves(rows, out.with_name(out.stem + "_curve.png"), title=title)
    if curve is not None:
        common.console.print(f"wrote {curve}")
    return 0
