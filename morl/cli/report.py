"""`morl report`: the leaderboards, fronts and learning curves of a runs folder as a static HTML site."""

from __future__ import annotations

import argparse
from pathlib import Path

from morl.cli import common
from morl.cli.common import CLIError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="a static HTML site: leaderboards, fronts, learning curves, run pages",
        description="Write a folder of HTML pages that opens from disk (no server, no network): "
        "the leaderboards (sortable, mean and 95% bootstrap CI over seeds), every agent's "
        "front per env with the true front, learning curves of HV and EU over env steps "
        "and wall time, and one page per run.",
    )
    p.add_argument("--suite", default=None, help="only the runs of this suite (and its metrics, when its file exists)")
    p.add_argument(
        "--runs-dir", default=None, help="where run folders and results.sqlite live (default: $MORL_RUNS_DIR or ./runs)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="the report folder, replaced as a whole (default: ./morl-report, or ./morl-report-SUITE)",
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """`morl report`: collect the leaderboards and their runs, write the site atomically."""
    from morl.report import build_report

    runs_dir = common.runs_dir(args)
    out = Path(args.out) if args.out else Path(f"morl-report-{args.suite}" if args.suite else "morl-report")
    try:
        with common.console.status(f"writing the report of {runs_dir} ..."):
            path = build_report(runs_dir, out, suite=args.suite)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    common.console.print(f"wrote {path}/index.html (open it in a browser; the folder works offline)")
    return 0
