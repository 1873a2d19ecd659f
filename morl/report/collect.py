"""What a report shows, read from a runs folder: the leaderboards, and the runs behind their cells.

The tables are `morl.leaderboard`'s own aggregation of the results store (the same `Leaderboard` objects that
`morl leaderboard` prints), so a report and the command never disagree. The fronts and curves come from the run
folders of exactly the runs counted in those cells. A front is drawn under the protocol of the run's final
evaluation; a column made only of later re-evaluations (`morl eval` under another protocol) has a table cell
but no front.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from morl.leaderboard import METRICS, Column, Leaderboard, leaderboard_from_store
from morl.runs import (
    EVALS_DIR,
    FRONT_CSV,
    METRICS_JSONL,
    RunError,
    RunInfo,
    read_front_csv,
    read_jsonl,
    read_run,
    synced_store,
)
from morl.suites import load_suite


@dataclass
class RunData:
    """One finished run: its folder's files as the report needs them."""

    info: RunInfo
    names: list[str]
    front: np.ndarray | None
    #: metrics rows of training, ending with the final evaluation (same protocol as the periodic ones)
    rows: list[dict[str, Any]]
    #: later evaluations (`morl eval`) under other protocols: ``evals/<hash>.json`` contents
    evals: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def protocol_hash(self) -> str | None:
        return (self.info.result or {}).get("protocol_hash")


@dataclass
class EnvGroup:
    """One leaderboard column (env, env kwargs, budget, protocol) and the runs whose fronts belong to it."""

    column: Column
    runs: dict[str, list[RunData]]  # agent -> runs, by seed
    names: list[str]
    true_front: np.ndarray | None
    note: str = ""


@dataclass
class ReportData:
    title: str
    runs_dir: Path
    suite: str | None
    description: str
    boards: list[Leaderboard]
    envs: dict[str, list[EnvGroup]]  # env label -> its columns
    runs: dict[str, RunData]
    agents: list[str]


def slug(text: str) -> str:
    """A file-name-safe form of an env label or run id."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _read(info: RunInfo) -> RunData:
    names, front = [], None
    if (info.path / FRONT_CSV).exists():
        try:
            names, front = read_front_csv(info.path / FRONT_CSV)
        except RunError:
            names, front = [], None
    rows = read_jsonl(info.path / METRICS_JSONL)
    if info.result:
        rows.append(
            {
                "update": info.result.get("updates"),
                "env_steps": info.result.get("env_steps"),
                "wall_time": info.result.get("wall_time"),
                **{f"eval/{k}": v for k, v in (info.result.get("metrics") or {}).items()},
            }
        )
    evals = []
    for p in sorted((info.path / EVALS_DIR).glob("*.json")) if (info.path / EVALS_DIR).is_dir() else []:
        try:
            evals.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return RunData(info, names, front, rows, evals)


def _true_front(column: Column, protocol: dict[str, Any]) -> tuple[np.ndarray | None, str]:
    """The env's known Pareto front under the column's discount, or None and why not."""
    import morl

    try:
        env, _ = morl.make(column.env, **json.loads(column.env_kwargs))
        if not env.has_known_front:
            return None, "the env has no known true front"
        return np.asarray(env.pareto_front(float(protocol.get("gamma", 0.99))), np.float64), ""
    except Exception as exc:  # a report never fails for want of the true front
        return None, f"no true front: {type(exc).__name__}: {exc}"


def collect(runs_dir: str | Path, suite: str | None = None, metrics: list[str] | None = None) -> ReportData:
    """The leaderboards of ``runs_dir``'s store (only ``suite``'s runs when given) and the runs in their cells."""
    runs_dir = Path(runs_dir)
    description = ""
    if metrics is None:
        metrics = list(METRICS)
        if suite is not None:
            try:
                s = load_suite(suite)
                metrics, description = s.metrics, s.description
            except ValueError:  # a suite name with no suite file here: its stored runs still make a report
                pass
    store = synced_store(runs_dir)
    boards = [b for b in (leaderboard_from_store(store, m, suite=suite) for m in metrics) if b.columns]
    if not boards:
        where = runs_dir / "results.sqlite"
        raise ValueError(
            f"no finished runs{f' of suite {suite!r}' if suite else ''} in {where}; train some "
            "(`morl train`, `morl suite run`) or point --runs-dir at another runs folder"
        )
    runs: dict[str, RunData] = {}
    for board in boards:
        for cell in board.cells.values():
            for rid in cell.run_ids:
                if rid in runs:
                    continue
                row = store.get(rid) or {}
                path = Path(row.get("path") or runs_dir / rid)
                info = read_run(path if path.is_dir() else runs_dir / rid)
                if info.status == "done":
                    runs[rid] = _read(info)
    columns = sorted({c for b in boards for c in b.columns})
    agents = sorted({a for b in boards for a in b.agents})
    envs: dict[str, list[EnvGroup]] = {}
    for col in columns:
        by_agent: dict[str, list[RunData]] = {}
        protocol: dict[str, Any] = {}
        for agent in agents:
            ids: list[str] = []
            for b in boards:
                cell = b.cells.get((agent, col))
                if cell is not None:
                    ids += [i for i in cell.run_ids if i not in ids]
                    protocol = b.protocols.get(col.protocol_hash, protocol)
            chosen = [
                runs[i]
                for i in ids
                if i in runs and runs[i].protocol_hash == col.protocol_hash and runs[i].front is not None
            ]
            if chosen:
                by_agent[agent] = sorted(chosen, key=lambda r: int(r.info.seed or 0))
        names = next((r.names for rs in by_agent.values() for r in rs if r.names), [])
        true_front, note = _true_front(col, protocol)
        if not by_agent:
            note = (
                "its runs were trained under another protocol: this column comes from re-evaluations "
                "(`morl eval`), which keep metrics, not fronts"
            )
        envs.setdefault(col.env_label, []).append(EnvGroup(col, by_agent, names, true_front, note))
    title = f"morl report: suite {suite}" if suite else f"morl report: {runs_dir}"
    return ReportData(title, runs_dir, suite, description, boards, envs, runs, agents)
