"""Leaderboards from the results store, and the benchmark suites that fill it.

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

Suites (``experiments/suites/NAME.toml``) are data: envs (with kwargs, budgets, and per-env protocol and
agent-config overrides), agents (with config overrides; a value like ``"40%"`` is that share of the env's
budget, so it follows ``--steps-scale``), seeds and the evaluation protocol. ``run_suite`` trains what is
missing (finished runs with the same settings are reused, so an interrupted suite picks up where it stopped)
and writes ``experiments/leaderboards/NAME.md`` with the machine and version it ran on.
"""

from __future__ import annotations

import dataclasses
import difflib
import html
import json
import math
import os
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from morl.runs import (
    RunRequest,
    atomic_write_text,
    budget_field,
    config_to_dict,
    create_run,
    list_runs,
    machine_info,
    package_version,
    protocol_from_dict,
    store_for,
    train_runs,
)
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
    raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)} "
                     f"({', '.join(k for k, _, _ in METRICS.values())})")


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
    env_kwargs: str          # canonical JSON
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
        lb.notes.append(f"{missing} evaluation(s) without a finite {key} were left out"
                        + (" (IGD and MUL need a known true front)" if key in ("igd", "maximum_utility_loss") else ""))
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


def _cell_text(cell: Cell, col: Column | None = None) -> str:
    lo, hi = cell.ci
    ci = f" [{fmt_num(lo)}, {fmt_num(hi)}]" if cell.n > 1 else ""
    return f"{fmt_num(cell.mean)}{ci} (n={cell.n}){_steps_note(cell, col) if col is not None else ''}"


_STEPS_NOTE = ("Steps in a cell (where shown): the mean real env steps its runs trained on, where that differs from "
               "the column's nominal budget.")


def _protocol_rows(lb: Leaderboard) -> list[tuple[str, str]]:
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
                t = _cell_text(cell, c)
                row.append(f"**{t}**" if a in lb.best.get(c, ()) else t)
        row.append(fmt_num(lb.ranks.get(a)))
        out.append("| " + " | ".join(row) + " |")
    out += ["", f"Cells: mean of {lb.label} over seeds [95% bootstrap CI of the mean] (n = seeds); "
                "**bold** = best in its column. Each column is one (env, budget, evaluation protocol): "
                "runs evaluated under different protocols are never mixed in a cell. " + _STEPS_NOTE, ""]
    out += ["| protocol | settings |", "|---|---|"] + [f"| {h} | {s} |" for h, s in _protocol_rows(lb)]
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
                row += [repr(cell.mean), "" if math.isnan(lo) else repr(lo), "" if math.isnan(hi) else repr(hi),
                        str(cell.n), "1" if a in lb.best.get(c, ()) else "0", "" if used is None else repr(used)]
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
            t = "" if cell is None else e(_cell_text(cell, c))
            parts.append(f"<td><b>{t}</b></td>" if cell is not None and a in lb.best.get(c, ()) else f"<td>{t}</td>")
        parts.append(f"<td>{e(fmt_num(lb.ranks.get(a)))}</td></tr>")
    parts += ["</tbody></table>",
              f"<p>Cells: mean of {e(lb.label)} over seeds [95% bootstrap CI of the mean] (n = seeds); bold = best "
              "in its column. Each column is one (env, budget, evaluation protocol): runs evaluated under different "
              "protocols are never mixed in a cell. " + e(_STEPS_NOTE) + "</p>", "<table><tr><th>protocol</th><th>settings</th></tr>"]
    parts += [f"<tr><td>{e(h)}</td><td>{e(s)}</td></tr>" for h, s in _protocol_rows(lb)]
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


def leaderboard_from_store(store: Store, metric: str = "hv", env=None, agent=None, suite=None,
                           protocol: str | None = None) -> Leaderboard:
    rows = store.evaluations(agent=agent, env=env, suite=suite)
    if protocol:
        rows = [r for r in rows if r["protocol_hash"].startswith(protocol)]
    return build_leaderboard(rows, metric)


# ------------------------------------------------------------------------------------------ suites
@dataclass
class SuiteEnv:
    id: str
    steps: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)   # per-env protocol overrides (e.g. minecart's gamma)
    agent_config: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-env, per-agent config overrides


@dataclass
class Suite:
    name: str
    path: Path
    description: str
    agents: list[str]
    envs: list[SuiteEnv]
    seeds: list[int]
    protocol: dict[str, Any]
    metrics: list[str]
    agent_config: dict[str, dict[str, Any]]
    eval_every: int | None = None


def suites_dir() -> Path:
    """``experiments/suites`` of the checkout (or of the current directory)."""
    here = Path.cwd() / "experiments" / "suites"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "experiments" / "suites"


def leaderboards_dir() -> Path:
    return suites_dir().parent / "leaderboards"


def list_suites() -> list[str]:
    d = suites_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


def load_suite(name: str) -> Suite:
    """A suite by name (``experiments/suites/NAME.toml``) or path, validated."""
    from morl.evaluate import EvalProtocol

    p = Path(name)
    if not (p.suffix == ".toml" and p.exists()):
        p = suites_dir() / f"{name}.toml"
    if not p.exists():
        close = difflib.get_close_matches(name, list_suites(), n=3, cutoff=0.4)
        raise ValueError(f"no suite {name!r} in {suites_dir()}" + (f"; did you mean: {', '.join(close)}?" if close else "")
                         + f" (suites: {', '.join(list_suites()) or 'none'})")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: invalid TOML: {exc}") from None
    where = str(p)
    known = {"name", "description", "agents", "envs", "seeds", "protocol", "metrics", "agent_config", "eval_every"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    for k in ("agents", "envs", "seeds"):
        if not data.get(k):
            raise ValueError(f"{where}: `{k}` is required and must not be empty")
    envs = []
    for i, e in enumerate(data["envs"]):
        if not isinstance(e, dict) or "id" not in e or "steps" not in e:
            raise ValueError(f"{where}: envs[{i}] needs `id` and `steps` "
                             '(e.g. { id = "deep-sea-treasure-v0", steps = 100000 })')
        extra = sorted(set(e) - {"id", "steps", "kwargs", "protocol", "agent_config"})
        if extra:
            raise ValueError(f"{where}: envs[{i}] has unknown key(s) {extra}; "
                             "allowed: id, steps, kwargs, protocol, agent_config")
        envs.append(SuiteEnv(str(e["id"]), int(e["steps"]), dict(e.get("kwargs", {})), dict(e.get("protocol", {})),
                             {str(k): dict(v) for k, v in e.get("agent_config", {}).items()}))
    protocol = dict(data.get("protocol", {}))
    fields = {f.name for f in dataclasses.fields(EvalProtocol)}
    for what, proto in [("[protocol]", protocol)] + [(f"envs[{i}].protocol", e.protocol) for i, e in enumerate(envs)]:
        bad = sorted(set(proto) - fields)
        if bad:
            raise ValueError(f"{where}: {what} has unknown key(s) {bad}; EvalProtocol fields: {sorted(fields)}")
    metrics = list(data.get("metrics", ["hv", "eu", "sp", "card", "igd", "mul"]))
    for m in metrics:
        resolve_metric(m)
    agent_config = {str(k): dict(v) for k, v in data.get("agent_config", {}).items()}
    return Suite(str(data.get("name", p.stem)), p, str(data.get("description", "")), list(data["agents"]), envs,
                 [int(s) for s in data["seeds"]], protocol, metrics, agent_config, data.get("eval_every"))


def suite_requests(suite: Suite, seeds: list[int] | None = None, steps_scale: float = 1.0):
    """The (agent, env) groups of a suite as lists of `RunRequest` (one per seed)."""
    from morl.agent import agent_spec, make_config

    groups = []
    for agent in suite.agents:
        spec = agent_spec(agent)
        bf = budget_field(spec)
        for env in suite.envs:
            steps = max(1, int(env.steps * steps_scale))
            overrides = {}
            for k, v in {**suite.agent_config.get(agent, {}), **env.agent_config.get(agent, {})}.items():
                overrides[k] = _budget_share(v, steps, f"{suite.path}: {agent}.{k}")
            overrides[bf] = steps
            try:
                config = make_config(agent, env.id, **overrides)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{suite.path}: config of {agent} on {env.id}: {exc}") from None
            protocol = protocol_from_dict({**suite.protocol, **env.protocol})
            groups.append([RunRequest(agent, env.id, s, config, dict(env.kwargs), protocol, suite.eval_every,
                                      suite=suite.name) for s in (seeds or suite.seeds)])
    return groups


def _settings_key(req) -> str:
    return dumps([req.agent, req.env, req.env_kwargs, int(req.seed), config_to_dict(req.config), req.protocol.as_dict()])


def _unfinished_runs(runs_dir: str | Path, suite: str) -> dict[str, Any]:
    """Interrupted or failed run folders of ``suite``, keyed by their settings (the newest per key)."""
    out = {}
    for info in list_runs(runs_dir)[0]:
        m = info.meta
        if info.status not in ("interrupted", "failed") or m.get("suite") != suite:
            continue
        out[dumps([m["agent"], m["env"], m.get("env_kwargs") or {}, int(m["seed"]), m["config"], m.get("protocol")])] = info
    return out


def _check_trainers(suite: Suite, groups) -> None:
    import morl
    from morl.agent import make_trainer

    for group in groups:
        r = group[0]
        try:
            env, params = morl.make(r.env, **r.env_kwargs)
            make_trainer(r.agent, env, params, config=r.config)
        except Exception as exc:
            raise ValueError(f"{suite.path}: {r.agent} on {r.env} cannot be built: {type(exc).__name__}: {exc}") from None


def _budget_share(value: Any, steps: int, where: str) -> Any:
    """``"40%"`` -> 40% of the env's budget (an int), so shares follow budgets and ``--steps-scale``."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return max(1, int(round(float(value.strip()[:-1]) / 100.0 * steps)))
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not a percentage like \"40%\"") from None
    return value


def _finished_match(store: Store, req) -> dict | None:
    """A finished run in the store with exactly the settings of ``req`` (so a suite re-run reuses it)."""
    config = dumps(config_to_dict(req.config))
    mine = req.protocol.as_dict()
    for r in reversed(store.runs(agent=req.agent, env=req.env, suite=req.suite)):  # the latest first
        if (int(r["seed"]) != int(req.seed) or dumps(r["env_kwargs"]) != dumps(req.env_kwargs)
                or dumps(r["config"]) != config or not (Path(r.get("path") or "/nonexistent") / "result.json").exists()):
            continue
        proto = r.get("protocol") or {}
        # the stored protocol has the env's reference point filled in where the request left it to the env
        if all(dumps(proto.get(k)) == dumps(v) for k, v in mine.items() if not (k == "ref_point" and v is None)):
            return r
    return None


def run_suite(name: str, runs_dir: str | Path, *, seeds: list[int] | None = None, steps_scale: float = 1.0,
              out: str | Path | None = None, progress=None, log: Callable[[str], None] = print,
              dry_run: bool = False) -> Path | None:
    """Train every missing run of a suite, then write its leaderboard Markdown; returns the file."""
    suite = load_suite(name)
    store = store_for(runs_dir)
    groups = suite_requests(suite, seeds, steps_scale)
    _check_trainers(suite, groups)  # every (agent, env) can be built, before hours of training start
    todo = []
    unfinished = _unfinished_runs(runs_dir, suite.name)
    for group in groups:
        missing = [r for r in group if _finished_match(store, r) is None]
        resumable = {id(r): unfinished.pop(_settings_key(r), None) for r in missing}
        n_resume = sum(v is not None for v in resumable.values())
        log(f"{group[0].agent} on {group[0].env}: {len(group)} seeds, {len(group) - len(missing)} already finished"
            + (f", {n_resume} to resume" if n_resume else "") + (" (dry run)" if dry_run and missing else ""))
        if missing:
            todo.append([(r, resumable[id(r)]) for r in missing])
    if dry_run:
        return None
    start = time.time()
    for missing in todo:
        for info in [i for _, i in missing if i is not None]:  # interrupted runs of this suite continue
            train_runs([info], resume=True, progress=progress, store=store)
        fresh = [create_run(runs_dir, r) for r, i in missing if i is None]
        if fresh:
            train_runs(fresh, progress=progress, store=store)
    elapsed = time.time() - start
    # exactly the runs of this suite definition (not older budgets or configs), under the suite's protocol
    chosen = {}
    for group in groups:
        for req in group:
            match = _finished_match(store, req)
            if match is not None:
                chosen[match["run_id"]] = match["protocol_hash"]
    rows = [r for r in store.evaluations(suite=suite.name) if chosen.get(r["run_id"]) == r["protocol_hash"]]
    text = [f"# Leaderboard: {suite.name}", ""]
    if suite.description:
        text += [suite.description.strip(), ""]
    seeds_used = seeds or suite.seeds
    versions = Counter(r.get("version") or "?" for r in rows if r["protocol_hash"])
    machines = Counter(r.get("machine") or "?" for r in rows)
    text += [f"- suite file: `{suite.path.name}`; agents: {', '.join(suite.agents)}; seeds: {seeds_used}",
             f"- envs: " + "; ".join(f"{e.id}{' ' + json.dumps(e.kwargs) if e.kwargs else ''} "
                                      f"({fmt_budget(int(e.steps * steps_scale))})" for e in suite.envs),
             f"- machine: {machine_info()}", f"- morl version: {package_version()}",
             "- the runs in these tables: " + "; ".join(f"{n} evaluation(s) from version {v}" for v, n in versions.items())
             + " on " + "; ".join(f"{m}" for m in machines),
             f"- written: {time.strftime('%Y-%m-%d %H:%M %Z')}; training wall time of these runs: "
             f"{sum(float(r.get('wall_time') or 0) for r in rows):,.0f} s (this invocation: {elapsed:,.0f} s)",
             "- reproduce: `" + (f"XLA_FLAGS={os.environ['XLA_FLAGS']} " if os.environ.get("XLA_FLAGS") else "")
             + f"morl suite run {suite.name}" + (f" --steps-scale {steps_scale}" if steps_scale != 1 else "") + "`",
             ""]
    for m in suite.metrics:
        lb = build_leaderboard(rows, m)
        text.append(render_markdown(lb))
    path = Path(out) if out else leaderboards_dir() / f"{suite.name}.md"
    atomic_write_text(path, "\n".join(text))
    return path
