"""`morl bandit`: multi-objective bandit experiments judged by Pareto regret (docs/bandits.md).

``run ALGO --instance ID --horizon T --runs R`` simulates R independent runs as one vmapped program, chunk by
chunk under a progress bar, and writes a run folder plus a row in the bandit results store; ``board`` prints the
leaderboard of regret at T (and writes it as markdown); ``plot`` draws regret curves with a log-x axis.
JAX loads inside the command functions, so ``import morl.cli`` stays light.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from morl.cli import common
from morl.cli.common import CLIError, Col, print_table


def add_parser(sub) -> None:
    p = sub.add_parser("bandit", help="multi-objective bandits: run algorithms, leaderboard, regret plots")
    bsub = p.add_subparsers(dest="bandit_command", required=True, parser_class=common.Parser)

    r = bsub.add_parser("run", help="simulate R runs of ALGO on a bandit instance")
    r.add_argument("algo", help="algorithm (see `morl bandit list`)")
    r.add_argument("--instance", required=True, help="bandit id (a `morl envs` id starting with 'bandit-')")
    r.add_argument("--horizon", type=int, default=10_000, help="pulls per run (default 10000)")
    r.add_argument("--runs", type=int, default=100, help="independent runs, vmapped (default 100)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--points", type=int, default=40, help="log-spaced checkpoints of the curves (default 40)")
    r.add_argument("--runs-dir", default=None, help="default: $MORL_BANDIT_RUNS_DIR or ./bandit-runs")
    r.add_argument("--no-record", action="store_true", help="print the result, write no run folder")
    r.set_defaults(func=cmd_run)

    b = bsub.add_parser("board", help="leaderboard of Pareto regret at T (printed; markdown written)")
    b.add_argument("--instance", nargs="+", default=None)
    b.add_argument("--runs-dir", default=None)
    b.add_argument("--out", default=None, help="markdown path (default: RUNS_DIR/leaderboard.md)")
    b.set_defaults(func=cmd_board)

    pl = bsub.add_parser("plot", help="regret curves (log-x, confidence bands) of bandit runs")
    pl.add_argument("runs", nargs="*", help="run ids (or unique prefixes); default: the latest run of each algorithm")
    pl.add_argument("--instance", default=None, help="plot the latest run of each algorithm on this instance")
    pl.add_argument(
        "--metric", default="pareto_regret", choices=("pareto_regret", "unfairness", "scalarized_regret", "front_error")
    )
    pl.add_argument("--runs-dir", default=None)
    pl.add_argument("--out", default=None, help="PNG path (default: RUNS_DIR/<instance>_<metric>.png)")
    pl.set_defaults(func=cmd_plot)

    ls = bsub.add_parser("list", help="bandit algorithms and instances")
    ls.set_defaults(func=cmd_list)


def _dir(args: argparse.Namespace) -> Path:
    from morl import bandits

    return Path(args.runs_dir) if args.runs_dir else bandits.default_runs_dir()


def cmd_list(args: argparse.Namespace) -> int:
    """`morl bandit list`: the algorithms and the registered instances."""
    from morl import bandits

    rows = [[name, doc] for name, doc in bandits.algorithm_docs().items()]
    print_table("bandit algorithms", [Col("algo", "id"), Col("what")], rows)
    rows = []
    for iid in bandits.instance_ids():
        inst = bandits.instance(iid)
        rows.append([iid, inst.kind, str(inst.num_arms), str(inst.num_objectives), str(int(inst.pareto.sum()))])
    print_table(
        "bandit instances",
        [
            Col("id", "id"),
            Col("rewards"),
            Col("arms", "num", justify="right"),
            Col("objectives", "num", justify="right"),
            Col("Pareto arms", "num", justify="right"),
        ],
        rows,
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """`morl bandit run`: R vmapped runs, a progress bar over the horizon, a run folder and a store row."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from morl import bandits

    if args.horizon < 1 or args.runs < 1 or args.points < 2:
        raise CLIError("--horizon and --runs must be >= 1 and --points >= 2")
    try:
        inst = bandits.instance(args.instance)
        bandits.check_algorithm(args.algo)
    except (KeyError, ValueError) as exc:
        raise CLIError(str(exc.args[0] if exc.args else exc)) from None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} pulls"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=common.err_console, transient=True) as bar:
        task = bar.add_task(f"{args.algo} x {args.runs} runs", total=args.horizon)
        result = bandits.run_experiment(
            args.algo,
            args.instance,
            args.horizon,
            args.runs,
            seed=args.seed,
            points=args.points,
            progress=lambda t: bar.update(task, completed=t),
        )
    path = None
    if not args.no_record:
        path = bandits.record(result, _dir(args))
    s = result.summary
    common.console.print(
        f"{args.algo} on {args.instance} ({inst.num_arms} arms), T={args.horizon:,}, {args.runs} runs: "
        f"Pareto regret {s['pareto_regret']:.4g} ± {s['pareto_regret_ci']:.2g}, unfairness {s['unfairness']:.3g}, "
        f"front error {s['front_error']:.3g}; {s['pulls_per_s']:,.0f} pulls/s "
        f"(compile {s['compile_s']:.1f} s)",
        markup=False,
        highlight=False,
    )
    if path is not None:
        common.console.print(f"wrote {path}", markup=False, highlight=False)
    return 0


def cmd_board(args: argparse.Namespace) -> int:
    """`morl bandit board`: one table per (instance, horizon), one row per algorithm, regret at T."""
    from morl import bandits

    root = _dir(args)
    tables = bandits.leaderboard(root, instances=args.instance)
    if not tables:
        raise CLIError(f"no finished bandit runs in {root}; `morl bandit run ALGO --instance ID` makes one")
    for title, cols, rows in tables:
        print_table(
            title,
            [Col(c, "id" if i == 0 else "num", justify="left" if i == 0 else "right") for i, c in enumerate(cols)],
            rows,
        )
    out = Path(args.out) if args.out else root / "leaderboard.md"
    bandits.write_leaderboard_md(tables, out)
    common.console.print(f"wrote {out}", markup=False, highlight=False)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """`morl bandit plot`: the chosen runs' curves on one log-x figure, mean and 95% band over runs."""
    from morl import bandits

    root = _dir(args)
    try:
        folders = bandits.select_runs(root, args.runs, instance_id=args.instance)
    except (KeyError, ValueError) as exc:
        raise CLIError(str(exc.args[0] if exc.args else exc)) from None
    out = bandits.plot_runs(folders, args.metric, Path(args.out) if args.out else None)
    common.console.print(f"wrote {out}", markup=False, highlight=False)
    return 0
