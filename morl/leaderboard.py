"""Leaderboards from the results store.

A leaderboard has one row per agent and one column per **(env, env kwargs, budget, evaluation
protocol)**: results obtained with different discounts, episode counts, reference points or budgets are
not comparable (MORL-Baselines #194, #168), so they are never averaged into one cell; when a filter
leaves several protocols for an env, that env gets several columns, each headed by its protocol hash,
and the legend under the table spells every protocol out. A cell is the mean over seeds with a 95%
percentile-bootstrap confidence interval of that mean (10,000 resamples, fixed seed, so tables are
reproducible); the best mean of each column is marked, and a last column gives each agent's mean rank.
If one (agent, env, seed) was run several times under the same column, the latest run counts.
The column's budget is the nominal one (the budget field of the runs' configs); a cell also gives the mean
real env steps its runs trained on (``env_steps`` of their results) where that differs, and the CSV always
does (``env_steps``), so a budget an agent spends in whole units (docs/budgets.md) is visible.
The benchmark suites that fill the store are in `morl.suites`.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from morl.store import Store, dumps

#: metric aliases -> (key in the metrics dict, higher is better, label)
METRICS: dict[str, tuple[str, bool, str]] = {
    "hv": ("hypervolume", True, "hypervolume"),
    "eu": ("expected_utility", True, "expected utility"),
    "sp": ("sparsity", False, "sparsity"),
    "card": ("cardinality", True, "cardinality"),
    "igd": ("igd", False, "IGD to the true front"),
    "mul": ("maximum_utility_loss", False, "maximum utility loss"),
}
FORMATS = ("md", "csv", "html")


def resolve_metric(name: str) -> tuple[str, str, bool, str]:
    """(alias, key, higher_is_better, label) for an alias or a full metric name."""
    for alias, (key, higher, label) in METRICS.items():
        if name in (alias, key):
            return alias, key, higher, label
    raise ValueError(
        f"unknown metric {name!r}; choose one of {', '.join(METRICS)} ({', '.join(k for k, _, _ in METRICS.values())})"
    )


def bootstrap_ci(values, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (nan, nan) with fewer than 2 values."""
    v = np.asarray(values, np.float64)
    if v.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    a = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [a, 1.0 - a])
    return float(lo), float(hi)


def fmt_num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if abs(x) >= 1e4:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def fmt_budget(n: int | None) -> str:
    if not n:
        return "budget ?"
    for div, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit} steps"
    return f"{n} steps"


@dataclass(frozen=True, order=True)
class Column:
    env: str
    env_kwargs: str  # canonical JSON
    budget: int
    protocol_hash: str

    @property
    def env_label(self) -> str:
        kw = json.loads(self.env_kwargs)
        return self.env + (f" ({', '.join(f'{k}={v}' for k, v in kw.items())})" if kw else "")

    @property
    def detail(self) -> str:
        return f"budget {fmt_budget(self.budget)} · protocol {self.protocol_hash}"


@dataclass
class Cell:
    values: list[float]
    seeds: list[int]
    run_ids: list[str]
    #: real env transitions each run consumed (its ``env_steps``; None where a stored row lacks it)
    env_steps: list[int | None] = field(default_factory=list)

    @property
    def steps_used(self) -> float | None:
        """Mean real env steps of the cell's runs (what they trained on, not the nominal budget)."""
        steps = [s for s in self.env_steps if s is not None]
        return float(np.mean(steps)) if steps else None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def ci(self) -> tuple[float, float]:
        return bootstrap_ci(self.values)


@dataclass
class Leaderboard:
    metric: str
    key: str
    higher_is_better: bool
    label: str
    columns: list[Column]
    agents: list[str]
    cells: dict[tuple[str, Column], Cell]
    protocols: dict[str, dict[str, Any]]
    best: dict[Column, set[str]] = field(default_factory=dict)
    ranks: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def build_leaderboard(rows: list[dict[str, Any]], metric: str = "hv") -> Leaderboard:
    """Aggregate store rows (``Store.evaluations()``) into a leaderboard of ``metric``."""
    alias, key, higher, label = resolve_metric(metric)
    latest: dict[tuple, dict] = {}
    missing = 0
    for r in rows:
        value = (r.get("metrics") or {}).get(key)
        if value is None or not math.isfinite(float(value)):
            missing += 1
            continue
        col = Column(r["env"], dumps(r.get("env_kwargs") or {}), int(r.get("budget") or 0), r["protocol_hash"])
        k = (r["agent"], col, int(r["seed"]))
        stamp = (r.get("finished") or "", r.get("evaluated") or "", r["run_id"])
        if k not in latest or stamp >= latest[k]["_stamp"]:
            latest[k] = dict(r, _stamp=stamp, _value=float(value))
    cells: dict[tuple[str, Column], Cell] = {}
    protocols: dict[str, dict] = {}
    for (agent, col, seed), r in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        cell = cells.setdefault((agent, col), Cell([], [], []))
        cell.values.append(r["_value"])
        cell.seeds.append(seed)
        cell.run_ids.append(r["run_id"])
        cell.env_steps.append(int(r["env_steps"]) if r.get("env_steps") is not None else None)
        protocols[col.protocol_hash] = r["protocol"]
    columns = sorted({c for _, c in cells})
    agents = sorted({a for a, _ in cells})
    lb = Leaderboard(alias, key, higher, label, columns, agents, cells, protocols)
    if missing:
        lb.notes.append(
            f"{missing} evaluation(s) without a finite {key} were left out"
            + (" (IGD and MUL need a known true front)" if key in ("igd", "maximum_utility_loss") else "")
        )
    per_agent: dict[str, list[float]] = {a: [] for a in agents}
    for col in columns:
        present = [(a, cells[(a, col)].mean) for a in agents if (a, col) in cells]
        best = (max if higher else min)(v for _, v in present)
        lb.best[col] = {a for a, v in present if v == best}
        order = sorted(present, key=lambda av: -av[1] if higher else av[1])
        for a, v in present:  # average rank among ties
            better = sum(1 for _, u in order if (u > v if higher else u < v))
            ties = sum(1 for _, u in order if u == v)
            per_agent[a].append(better + (ties + 1) / 2)
    lb.ranks = {a: float(np.mean(r)) for a, r in per_agent.items() if r}
    return lb


# ------------------------------------------------------------------------------------------ rendering
def _steps_note(cell: Cell, col: Column) -> str:
    """``" · 960k steps"`` when the cell's runs used (on average) another number of env steps than the column's
    nominal budget (an agent spends its budget in whole units, or a run was stopped early); else empty."""
    used = cell.steps_used
    if used is None or round(used) == col.budget:
        return ""
    return f" · {fmt_budget(int(round(used)))}"


def cell_text(cell: Cell, col: Column | None = None) -> str:
    lo, hi = cell.ci
    ci = f" [{fmt_num(lo)}, {fmt_num(hi)}]" if cell.n > 1 else ""
    return f"{fmt_num(cell.mean)}{ci} (n={cell.n}){_steps_note(cell, col) if col is not None else ''}"


STEPS_NOTE = (
    "Steps in a cell (where shown): the mean real env steps its runs trained on, where that differs from "
    "the column's nominal budget."
)


def protocol_rows(lb: Leaderboard) -> list[tuple[str, str]]:
    return [(h, ", ".join(f"{k}={v}" for k, v in sorted(p.items()))) for h, p in sorted(lb.protocols.items())]


def render_markdown(lb: Leaderboard, title: str | None = None) -> str:
    arrow = "higher is better" if lb.higher_is_better else "lower is better"
    out = [f"### {title or lb.label} ({arrow})", ""]
    if not lb.columns:
        return "\n".join(out + ["No finished runs match.", ""])
    head = ["agent"] + [f"{c.env_label}<br>{c.detail}" for c in lb.columns] + ["mean rank"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for a in lb.agents:
        row = [a]
        for c in lb.columns:
            cell = lb.cells.get((a, c))
            if cell is None:
                row.append("")
            else:
                t = cell_text(cell, c)
                row.append(f"**{t}**" if a in lb.best.get(c, ()) else t)
        row.append(fmt_num(lb.ranks.get(a)))
        out.append("| " + " | ".join(row) + " |")
    out += [
        "",
        f"Cells: mean of {lb.label} over seeds [95% bootstrap CI of the mean] (n = seeds); "
        "**bold** = best in its column. Each column is one (env, budget, evaluation protocol): "
        "runs evaluated under different protocols are never mixed in a cell. " + STEPS_NOTE,
        "",
    ]
    out += ["| protocol | settings |", "|---|---|"] + [f"| {h} | {s} |" for h, s in protocol_rows(lb)]
    out += [""] + [f"Note: {n}" for n in lb.notes]
    return "\n".join(out).rstrip() + "\n"


def render_csv(lb: Leaderboard) -> str:
    head = ["agent"]
    for c in lb.columns:
        base = f"{c.env_label} | {c.detail}".replace(",", ";")
        head += [f"{base} | {s}" for s in ("mean", "ci_low", "ci_high", "n", "best", "env_steps")]
    head.append("mean_rank")
    lines = [",".join(f'"{h}"' for h in head)]
    for a in lb.agents:
        row = [a]
        for c in lb.columns:
            cell = lb.cells.get((a, c))
            if cell is None:
                row += [""] * 6
            else:
                lo, hi = cell.ci
                used = cell.steps_used
                row += [
                    repr(cell.mean),
                    "" if math.isnan(lo) else repr(lo),
                    "" if math.isnan(hi) else repr(hi),
                    str(cell.n),
                    "1" if a in lb.best.get(c, ()) else "0",
                    "" if used is None else repr(used),
                ]
        row.append(repr(lb.ranks[a]) if a in lb.ranks else "")
        lines.append(",".join(row))
    return "\n".join(lines) + "\n"


def render_html(lb: Leaderboard, title: str | None = None) -> str:
    e = html.escape
    arrow = "higher is better" if lb.higher_is_better else "lower is better"
    parts = [f"<h3>{e(title or lb.label)} ({arrow})</h3>", "<table>", "<thead><tr><th>agent</th>"]
    parts += [f"<th>{e(c.env_label)}<br><small>{e(c.detail)}</small></th>" for c in lb.columns]
    parts += ["<th>mean rank</th></tr></thead>", "<tbody>"]
    for a in lb.agents:
        parts.append(f"<tr><td>{e(a)}</td>")
        for c in lb.columns:
            cell = lb.cells.get((a, c))
            t = "" if cell is None else e(cell_text(cell, c))
            parts.append(f"<td><b>{t}</b></td>" if cell is not None and a in lb.best.get(c, ()) else f"<td>{t}</td>")
        parts.append(f"<td>{e(fmt_num(lb.ranks.get(a)))}</td></tr>")
    parts += [
        "</tbody></table>",
        f"<p>Cells: mean of {e(lb.label)} over seeds [95% bootstrap CI of the mean] (n = seeds); bold = best "
        "in its column. Each column is one (env, budget, evaluation protocol): runs evaluated under different "
        "protocols are never mixed in a cell. " + e(STEPS_NOTE) + "</p>",
        "<table><tr><th>protocol</th><th>settings</th></tr>",
    ]
    parts += [f"<tr><td>{e(h)}</td><td>{e(s)}</td></tr>" for h, s in protocol_rows(lb)]
    parts += ["</table>"] + [f"<p>Note: {e(n)}</p>" for n in lb.notes]
    return "\n".join(parts) + "\n"


def render(lb: Leaderboard, fmt: str = "md", title: str | None = None) -> str:
    if fmt == "md":
        return render_markdown(lb, title)
    if fmt == "csv":
        return render_csv(lb)
    if fmt == "html":
        return render_html(lb, title)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def leaderboard_from_store(
    store: Store, metric: str = "hv", env=None, agent=None, suite=None, protocol: str | None = None
) -> Leaderboard:
    rows = store.evaluations(agent=agent, env=env, suite=suite)
    if protocol:
        rows = [r for r in rows if r["protocol_hash"].startswith(protocol)]
    return build_leaderboard(rows, metric)
