"""The files of a run folder: their names, atomic writes, and the CSV/JSON-lines readers and writers.

Every file is written atomically (temporary file + ``os.replace``) except ``metrics.jsonl``, which is
appended line by line and repaired on resume (rows after the restored checkpoint, and a torn last line,
are dropped). So a killed process leaves a folder that is either resumable or reported as corrupt,
never one that crashes a listing.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from morl.store import clean_json

RUN_FORMAT = 1
CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
FRONT_CSV = "front.csv"
RETURNS_CSV = "returns.csv"
CKPT_DIR = "checkpoints"
LOCK_FILE = "train.lock"
ERROR_FILE = "error.txt"
EVALS_DIR = "evals"

RUNS_DIR_ENV = "MORL_RUNS_DIR"


class RunError(RuntimeError):
    """A problem with a run folder or a request about one; the message says what to do."""


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "runs"))


def _umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a torn one.

    The file gets the mode a plain ``open(path, "w")`` would give (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(clean_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ""
        s = str(v)
        return f'"{s}"' if ("," in s or '"' in s) else s

    lines = [",".join(header)] + [",".join(cell(v) for v in r) for r in rows]
    return "\n".join(lines) + "\n"


def _parse_front_csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().strip().splitlines()  # UnicodeDecodeError is a ValueError
    if not lines:
        raise ValueError("the file is empty")
    header = lines[0].split(",")
    rows = [[float(x) for x in ln.split(",")] for ln in lines[1:]]
    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"rows do not have the {len(header)} columns of its header")
    return header, np.array(rows, np.float64).reshape(-1, len(header))


def read_front_csv(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Objective names and points of a ``front.csv``; a damaged file raises `RunError` saying how to rewrite it."""
    path = Path(path)
    try:
        return _parse_front_csv(path)
    except ValueError as exc:
        raise RunError(
            f"{path} is damaged ({exc}); `morl eval {path.parent.name}` re-evaluates the run's last "
            "checkpoint and rewrites it"
        ) from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (a killed writer) is skipped."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def write_front_files(path: Path, env, front) -> None:
    """``front.csv`` (the non-dominated points) and ``returns.csv`` (every evaluated candidate) of ``front``."""
    m = front.returns.shape[1]
    names = (
        [str(n) for n in (env.reward_names or ())]
        if len(env.reward_names or ()) == m
        else [f"objective_{i}" for i in range(m)]
    )
    names = [n.replace(",", ";") for n in names]
    atomic_write_text(path / FRONT_CSV, _csv_text(names, front.front.tolist()))
    from morl.pareto import non_dominated

    mask = non_dominated(front.returns, return_mask=True, keep_duplicates=True)
    mask = mask[1] if isinstance(mask, tuple) else mask
    w = front.weights if front.weights is not None else np.full_like(front.returns, np.nan)
    header = (
        ["candidate"] + [f"w_{n}" for n in names] + names + [f"undiscounted_{n}" for n in names] + ["non_dominated"]
    )
    rows = [
        [i, *w[i].tolist(), *front.returns[i].tolist(), *front.undiscounted_returns[i].tolist(), int(bool(mask[i]))]
        for i in range(front.returns.shape[0])
    ]
    atomic_write_text(path / RETURNS_CSV, _csv_text(header, rows))


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    atomic_write_text(path, _csv_text(cols, ([r.get(c) for c in cols] for r in rows)))


def front_files_problem(path: Path, result: dict[str, Any] | None = None) -> str | None:
    """What is wrong with a finished run's ``front.csv``/``returns.csv`` (None if they agree with each other and
    with ``result.json``): catches files that were truncated but still parse."""
    try:
        names, front = _parse_front_csv(path / FRONT_CSV)
    except (OSError, ValueError) as exc:
        return f"{FRONT_CSV}: {exc}"
    try:
        arr = np.loadtxt(path / RETURNS_CSV, delimiter=",", skiprows=1, ndmin=2)
    except (OSError, ValueError) as exc:
        return f"{RETURNS_CSV}: {exc}"
    m = len(names)
    expected = (result or {}).get("front_size")
    if isinstance(expected, int) and expected != front.shape[0]:
        return f"{FRONT_CSV} has {front.shape[0]} point(s), result.json says {expected}"
    if arr.size and arr.shape[1] < 1 + 2 * m:
        return f"{RETURNS_CSV} has {arr.shape[1]} columns, expected at least {1 + 2 * m}"
    expected = (result or {}).get("candidates")
    if isinstance(expected, int) and expected != arr.shape[0]:
        return f"{RETURNS_CSV} has {arr.shape[0]} row(s), result.json says {expected}"
    cands = arr[:, 1 + m : 1 + 2 * m] if arr.size else arr
    if cands.size and front.size and not all((cands == p).all(axis=1).any() for p in front):
        return f"the points of {FRONT_CSV} are not among the evaluated candidates of {RETURNS_CSV}"
    return None
