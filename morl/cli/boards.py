"""Comparing agents: `morl leaderboard`, `morl suite run|list` (benchmark suites) and `morl bench` (speed beside the
reference stack, measured by `morl.bench`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

from morl.cli import common
from morl.cli.common import CLIError, Parser, TrainingFailed, parse_seeds
from morl.cli.train import ProgressUI, add_cluster_options, cluster_options


def add_parsers(sub) -> None:
    """`morl leaderboard`, `morl suite` and `morl bench`."""
    from morl.leaderboard import FORMATS, METRICS

    p = sub.add_parser("leaderboard", help="agents x envs table: mean and 95%% bootstrap CI over seeds")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--env", nargs="+")
    p.add_argument("--agent", nargs="+")
    p.add_argument("--suite", default=None, help="only runs of this suite")
    p.add_argument("--protocol", default=None, help="only this protocol hash (prefix)")
    p.add_argument("--metric", default="hv", choices=list(METRICS) + [k for k, _, _ in METRICS.values()])
    p.add_argument("--format", default="md", choices=FORMATS)
    p.add_argument("--out", default=None, help="write to a file instead of stdout")
    p.set_defaults(func=cmd_leaderboard)

    suite = sub.add_parser("suite", help="benchmark suites (experiments/suites/*.toml)").add_subparsers(
        dest="suite_command", required=True, parser_class=Parser
    )
    p = suite.add_parser("run", help="train a suite's missing runs, write its leaderboard (see --out)")
    p.add_argument("name", help="suite name or .toml path")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--seeds", default=None, help="override the suite's seeds (e.g. 0-2)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="scale every budget (smoke tests)")
    p.add_argument(
        "--out",
        default=None,
        help="leaderboard path (default: MY.md beside a suite file MY.toml; "
        "experiments/leaderboards/NAME.md for a built-in suite in a source "
        "checkout, else ./NAME.md)",
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be trained")
    p.add_argument(
        "--no-train",
        action="store_true",
        help="train nothing: write the leaderboard of the runs already finished (its header lists the missing)",
    )
    p.add_argument("--quiet", action="store_true")
    add_cluster_options(p)
    p.set_defaults(func=cmd_suite_run)
    p = suite.add_parser("list", help="list suites")
    p.set_defaults(func=cmd_suite_list)

    bench = sub.add_parser("bench", help="benchmarks beside the reference stack").add_subparsers(
        dest="bench", required=True, parser_class=Parser
    )
    p = bench.add_parser("rollout", help="env steps/s of the engine vs MO-Gymnasium")
    p.add_argument("--env", nargs="+", default=["deep-sea-treasure-v0"], help="env id(s)")
    p.add_argument("--num-envs", type=int, default=4096)
    p.add_argument("--num-steps", type=int, default=1000, help="steps per jitted call")
    p.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per measurement")
    p.add_argument("--no-reference", action="store_true", help="skip the MO-Gymnasium measurements")
    p.set_defaults(func=cmd_bench_rollout)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    """`morl leaderboard`: agents x envs, mean and 95% bootstrap CI over seeds, from the results store."""
    from morl.leaderboard import leaderboard_from_store, render
    from morl.runs import atomic_write_text, synced_store

    runs_dir = common.runs_dir(args)
    try:
        lb = leaderboard_from_store(
            synced_store(runs_dir),
            args.metric,
            env=args.env,
            agent=args.agent,
            suite=args.suite,
            protocol=args.protocol,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    text = render(lb, args.format)
    if args.out:
        atomic_write_text(args.out, text)
        common.console.print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    if not lb.columns:
        common.err_console.print(f"no finished runs match in {runs_dir / 'results.sqlite'}")
    return 0


def suite_leaderboard_path(name: str) -> Path:
    """Where `morl suite run NAME` writes its leaderboard when no --out is given.

    The rule: a suite given as a ``.toml`` path of the user's writes ``<stem>.md`` beside that file; a built-in
    suite (a name, or a file in the suites folder) writes ``experiments/leaderboards/NAME.md`` when that folder
    belongs to a source checkout (the current folder's ``experiments/``, or a git checkout of morl), and
    ``./NAME.md`` in the current folder otherwise -- never into an installed package."""
    from morl.suites import leaderboards_dir, suites_dir

    p = Path(name)
    builtin = suites_dir().resolve()
    if p.suffix == ".toml" and p.exists() and p.resolve().parent != builtin:
        return p.with_suffix(".md")
    stem = p.stem if p.suffix == ".toml" else name
    board = leaderboards_dir()
    checkout = builtin.parent.parent
    in_checkout = (
        builtin == (Path.cwd() / "experiments" / "suites").resolve()
        or (checkout / ".git").exists()
        or (checkout / "pyproject.toml").exists()
    )
    return board / f"{stem}.md" if in_checkout else Path.cwd() / f"{stem}.md"


def cmd_suite_run(args: argparse.Namespace) -> int:
    """`morl suite run NAME`: train the suite's missing runs, then write its leaderboard."""
    from morl.suites import run_suite

    runs_dir = common.runs_dir(args)
    seeds = parse_seeds(args.seeds) if args.seeds else None
    out = args.out or suite_leaderboard_path(args.name)
    cluster = cluster_options(args)
    if cluster is not None and not args.no_train:
        return _suite_on_ray(args, runs_dir, seeds, out, cluster)
    with ProgressUI(args.quiet) as ui:
        try:
            path = run_suite(
                args.name,
                runs_dir,
                seeds=seeds,
                steps_scale=args.steps_scale,
                out=out,
                progress=ui,
                log=lambda s: common.console.print(s),
                dry_run=args.dry_run,
                train=not args.no_train,
            )
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    if path is not None:
        common.console.print(f"wrote {path}")
    return 0


def _suite_on_ray(args: argparse.Namespace, runs_dir: Path, seeds, out, cluster) -> int:
    """`morl suite run NAME --ray`: the missing runs as Ray tasks under one progress line; failed tasks are reported
    (exit status 1) after the leaderboard of the others is written."""
    from morl.cli import process
    from morl.cluster import ClusterError
    from morl.runs import ERROR_FILE
    from morl.suites import run_suite

    process.INTERRUPT_HINT["text"] = "; the same `morl suite run` command continues"
    failures: list = []
    try:
        path = run_suite(
            args.name,
            runs_dir,
            seeds=seeds,
            steps_scale=args.steps_scale,
            out=out,
            progress=not args.quiet,
            log=lambda s: common.console.print(s),
            dry_run=args.dry_run,
            cluster=cluster,
            failures=failures,
            console=common.console,
        )
    except KeyboardInterrupt:
        exc = CLIError(
            "interrupted (Ctrl-C); the tasks in flight are cancelled: the same `morl suite run` continues "
            "(finished runs are kept, interrupted ones resume from their checkpoints)"
        )
        exc.code = common.EXIT_INTERRUPTED
        raise exc from None
    except (ValueError, ClusterError) as exc:
        raise CLIError(str(exc)) from None
    if path is not None:
        common.console.print(f"wrote {path}")
    if failures:
        for f in failures:
            common.err_console.print(
                f"failed: {f.runs[0].agent} on {f.runs[0].env} seed(s) {[i.seed for i in f.runs]}: {f.error} "
                f"(traceback: {f.runs[0].path / ERROR_FILE})",
                markup=False,
                highlight=False,
            )
        raise TrainingFailed(
            f"{len(failures)} task(s) failed (above); the leaderboard holds the others; running the suite again "
            "retries the failed runs"
        )
    return 0


def cmd_suite_list(args: argparse.Namespace) -> int:
    """`morl suite list`: the built-in suites."""
    from morl.suites import list_suites, load_suite, suites_dir

    table = Table(title=f"suites in {suites_dir()}")
    for col in ("name", "agents", "envs", "seeds", "description"):
        table.add_column(col)
    for name in list_suites():
        try:
            s = load_suite(name)
        except ValueError as exc:
            table.add_row(name, f"[red]{exc}[/]", "", "", "")
            continue
        table.add_row(s.name, ", ".join(s.agents), ", ".join(e.id for e in s.envs), str(s.seeds), s.description)
    common.console.print(table)
    return 0


def cmd_bench_rollout(args: argparse.Namespace) -> int:
    """`morl bench rollout`: env steps/s of the engine beside MO-Gymnasium (single env and MOSyncVectorEnv)."""
    from morl.bench import bench_rollout, machine

    env_ids = args.env
    summary = Table(title=f"env steps/s, random policy ({machine()})")
    for col in (
        "env",
        "engine (num_envs)",
        "compile s",
        "MO-Gym single",
        "MO-Gym MOSyncVectorEnv(64)",
        "ratio vs MOSync(64)",
    ):
        summary.add_column(col, justify="right")
    for env_id in env_ids:
        with common.console.status(f"benchmarking {env_id} ..."):
            rows = bench_rollout(env_id, args.num_envs, args.num_steps, args.seconds, reference=not args.no_reference)
        detail = Table(title=env_id)
        for col in ("what", "num envs", "steps", "seconds", "steps/s", "compile s"):
            detail.add_column(col, justify="right")
        for r in rows:
            detail.add_row(
                r.what,
                str(r.num_envs),
                f"{r.steps:,}",
                f"{r.seconds:.2f}",
                f"{r.steps_per_s:,.0f}",
                "-" if r.compile_seconds is None else f"{r.compile_seconds:.1f}",
            )
        common.console.print(detail)
        single = next((r for r in rows if "single" in r.what), None)
        vector = next((r for r in rows if "MOSyncVectorEnv" in r.what), None)
        for engine in [r for r in rows if r.what.startswith("morl")]:  # one row per backend (MuJoCo: mjx, mujoco)
            ratio = engine.steps_per_s / vector.steps_per_s if vector else None
            summary.add_row(
                f"{env_id} ({engine.variant})" if engine.variant else env_id,
                f"{engine.steps_per_s:,.0f} ({engine.num_envs})",
                "-" if engine.compile_seconds is None else f"{engine.compile_seconds:.1f}",
                f"{single.steps_per_s:,.0f}" if single else "-",
                f"{vector.steps_per_s:,.0f}" if vector else "-",
                "-" if ratio is None else f"{ratio:,.1f}x" if ratio < 10 else f"{ratio:,.0f}x",
            )
    common.console.print(summary)
    return 0
