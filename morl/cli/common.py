"""What every `morl` command shares: the consoles and their tables, one-line user errors, the argument parser
that raises them, and the arguments naming run folders and seeds."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

#: console width when output is not a terminal (a pipe, a file, CI logs): wide enough that no table is cut
PIPE_WIDTH = 1000


def _tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# tables sized to the terminal; complete (never cut) when piped. Commands read them as `common.console`
# (not imported by name), so a test can swap them.
console = Console(width=None if _tty(sys.stdout) else PIPE_WIDTH)
err_console = Console(stderr=True, width=None if _tty(sys.stderr) else PIPE_WIDTH)

SHORT_METRICS = (
    ("hypervolume", "hv"),
    ("expected_utility", "eu"),
    ("sparsity", "sp"),
    ("cardinality", "card"),
    ("igd", "igd"),
    ("maximum_utility_loss", "mul"),
)


class CLIError(Exception):
    """A user error: printed as one clear line, exit status 2."""

    code = 2


class TrainingFailed(CLIError):
    """Training raised: the message names the run and its error.txt; exit status 1."""

    code = 1


#: exit status after Ctrl-C (128 + SIGINT, the shell's convention)
EXIT_INTERRUPTED = 130


@dataclasses.dataclass
class Col:
    """A column of a `fit_table`: ``kind`` "id" (folded to fit, never cut), "text" (wrapped) or "num" (never
    wrapped or cut); ``drop``: 0 = always shown, higher = hidden first when the terminal is too narrow."""

    name: str
    kind: str = "text"
    drop: int = 0
    justify: str = "left"


def fit_table(title: str, cols: list[Col], rows: list[list[str]], width: int | None = None) -> tuple[Table, list[str]]:
    """A rich table that fits ``width`` columns (default: the console's): numbers are never cut; ids and text
    wrap; low-value columns (``drop`` > 0, highest first) are left out when even that does not fit. Returns the
    table and the names of the columns left out."""
    width = console.width if width is None else width
    plain = [[Text.from_markup(c).cell_len for c in r] for r in rows]
    natural = [max([len(c.name)] + [r[i] for r in plain]) for i, c in enumerate(cols)]
    floor = {"num": None, "id": 20, "text": 8}

    def least(i: int) -> int:  # the narrowest a column may get
        c = cols[i]
        return (
            natural[i] if c.kind == "num" else min(natural[i], max(floor[c.kind], len(c.name) if c.kind != "id" else 0))
        )

    shown = list(range(len(cols)))

    def need(idx: list[int], widths) -> int:  # content + 2 padding per column + n + 1 border lines
        return sum(widths[i] for i in idx) + 3 * len(idx) + 1

    while need(shown, [least(i) for i in range(len(cols))]) > width:
        droppable = [i for i in shown if cols[i].drop > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (cols[i].drop, i)))
    widths = list(natural)
    excess = need(shown, widths) - width
    while excess > 0:  # fold the ids first, then narrow the widest text column, one cell at a time
        cand = [i for i in shown if cols[i].kind == "id" and widths[i] > least(i)] or [
            i for i in shown if widths[i] > least(i)
        ]
        if not cand:
            break
        i = max(cand, key=lambda j: widths[j] - least(j))
        widths[i] -= 1
        excess -= 1
    table = Table(title=title)
    for i in shown:
        c = cols[i]
        if c.kind == "num":
            table.add_column(c.name, justify=c.justify, no_wrap=True, min_width=natural[i])
        else:
            table.add_column(
                c.name,
                justify=c.justify,
                overflow="fold",
                width=widths[i] if widths[i] < natural[i] else None,
                min_width=None if widths[i] < natural[i] else natural[i],
            )
    for r in rows:
        table.add_row(*[r[i] for i in shown])
    return table, [cols[i].name for i in range(len(cols)) if i not in shown]


def print_table(title: str, cols: list[Col], rows: list[list[str]]) -> None:
    """Print a `fit_table`, saying which columns were left out."""
    table, hidden = fit_table(title, cols, rows)
    console.print(table)
    if hidden:
        console.print(
            f"(terminal too narrow: column(s) {', '.join(hidden)} left out; widen it or pipe the output)",
            style="dim",
            markup=False,
            highlight=False,
        )


class Parser(argparse.ArgumentParser):
    """argparse, with one-line errors that say where to look (the usage of `train` is pages long)."""

    def error(self, message: str):  # type: ignore[override]
        raise CLIError(f"{self.prog}: {message}. Run `{self.prog} --help` for the options.")


def parse_seeds(spec: str) -> list[int]:
    """``"0-4"`` -> [0..4]; ``"0,2,5"``; ``"0-2,7"``."""
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise CLIError(f"invalid --seeds {spec!r}: use a range '0-4', a list '0,2,5', or both '0-2,7'") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise CLIError(f"invalid --seeds {spec!r}: seeds must be distinct non-negative integers")
    return seeds


def runs_dir(args: argparse.Namespace) -> Path:
    """``--runs-dir``, else $MORL_RUNS_DIR, else ./runs."""
    from morl.runs import default_runs_dir

    return Path(args.runs_dir) if getattr(args, "runs_dir", None) else default_runs_dir()


def find_run(args: argparse.Namespace):
    """The run named by ``args.run`` (an id, a unique prefix or a folder) under `runs_dir`."""
    from morl import runs as R

    try:
        return R.find_run(runs_dir(args), args.run)
    except R.RunError as exc:
        raise CLIError(str(exc)) from None
