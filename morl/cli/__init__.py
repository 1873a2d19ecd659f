"""The `morl` command line: envs, train, runs, eval, plot, leaderboard, suite, bench, report.

Run `morl --help` or `morl COMMAND --help`. Modules named in ``MORL_IMPORT`` (comma-separated) or ``--import MODULE``
are imported first, so third-party packages can register agents and envs.

One module per concern: `options` (argparse options from config dataclasses), `train`, `inspect` (envs, runs, eval,
plot), `boards` (leaderboard, suite, bench), `report` (the HTML report), `process` (setup, Ctrl-C, error lines) and
`common` (consoles, tables, errors). ``import morl.cli`` stays light (no JAX, no numpy): the command installs its
Ctrl-C handling before anything slow loads, so heavy modules are imported inside the command functions that need them.
"""

from __future__ import annotations

import argparse
import sys

from morl.cli import bandit, boards, inspect, process, report, train
from morl.cli.common import EXIT_INTERRUPTED, CLIError, Parser

__all__ = ["CLIError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command but `train` (which parses its own arguments: they depend on the agent)."""
    parser = Parser(prog="morl", description="Multi-objective RL in JAX.", allow_abbrev=False)
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="MODULE",
        help="import MODULE first (registers third-party agents/envs); also $MORL_IMPORT",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    inspect.add_envs_parser(sub)
    train.add_parser(sub)
    inspect.add_run_parsers(sub)
    boards.add_parsers(sub)
    report.add_parser(sub)
    bandit.add_parser(sub)
    __import__("morl.cli.tune").cli.tune.add_parsers(sub)  # `morl tune`, `morl pbt`
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `morl` command; returns its exit status (0; 1: training failed; 2: a user error; 130: Ctrl-C)."""
    if argv is not None:  # in-process callers (tests, notebooks) keep Python's own Ctrl-C
        return _run(argv)
    process.install_sigint()  # the command line itself
    code = _run(argv)
    if code == EXIT_INTERRUPTED:  # the line is out and the runs are checkpointed: leave before Python's shutdown,
        process.exit_now(code)  # where a further Ctrl-C would find the default handler and kill the process
    return code


def _run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    process.INTERRUPT_HINT["text"] = ""
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        argv = process.setup(argv)
        command = next((a for a in argv if not a.startswith("-")), None)
        if argv and argv[0] == "train":
            return train.cmd_train(argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return process.fail("interrupted (Ctrl-C)", EXIT_INTERRUPTED)
    except Exception as exc:
        code = process.report(exc, command)
        if code is None:
            raise
        return code
    except SystemExit as exc:  # --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
