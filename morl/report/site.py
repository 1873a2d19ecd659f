"""The report's pages: plain HTML, one shared stylesheet and script, plotly's own JS bundled once.

Layout of the folder (it opens from disk: every link and script is a relative path, nothing is fetched)::

    index.html            the leaderboards (sortable), the protocols, the envs and the runs
    envs/<env>.html       per leaderboard column: every agent's front with the true front, learning curves
    runs/<run id>.html    one run: config, provenance, metrics, front, curves
    plotly.min.js         plotly's offline bundle (`plotly.offline.get_plotlyjs`)
    report.css, report.js the style, and click-to-sort tables

The folder is written beside its destination under a temporary name and renamed into place, so a reader sees
the old report or the new one, never half of one.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from morl.leaderboard import STEPS_NOTE, Leaderboard, cell_text, fmt_budget, fmt_num, protocol_rows
from morl.report.collect import EnvGroup, ReportData, RunData, slug
from morl.report.figures import agent_colors, curves_figure, front_figure

#: a file that marks a folder as a morl report: only such a folder (or an empty one) is ever replaced
MARKER = ".morl-report"
e = html.escape

CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;
padding:0 20px 40px;color:#222;line-height:1.4}
nav{padding:10px 0;border-bottom:1px solid #ddd;margin-bottom:10px}nav a{margin-right:16px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;
vertical-align:top}th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}td.best{font-weight:bold;background:#eef6ee}
.plot{margin:10px 0 24px;border:1px solid #eee}small,.note{color:#666}pre{background:#f7f7f7;padding:8px;
overflow-x:auto;font-size:12px}code{font-size:12px}
"""

JS = """// Click a column header to sort its table (numbers by value, text alphabetically); click again to reverse.
// Empty cells stay last either way.
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("thead th");
  heads.forEach(function (th, col) {
    th.title = th.title || "click to sort";
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var c = row.cells[col];
        if (!c) return "";
        var v = c.getAttribute("data-sort");
        return v === null ? c.textContent.trim() : v;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") return (x === "") - (y === "");
        var nx = Number(x), ny = Number(y);
        var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


# ------------------------------------------------------------------------------------------ building blocks
def _page(title: str, body: str, depth: int, plots: bool) -> str:
    up = "../" * depth
    scripts = f'<script src="{up}plotly.min.js"></script>\n' if plots else ""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{e(title)}</title>\n'
        f'<link rel="stylesheet" href="{up}report.css">\n{scripts}</head><body>\n'
        f'<nav><a href="{up}index.html">leaderboards</a><a href="{up}index.html#envs">envs</a>'
        f'<a href="{up}index.html#runs">runs</a></nav>\n<h1>{e(title)}</h1>\n{body}\n'
        f'<script src="{up}report.js"></script>\n</body></html>\n'
    )


def _plot(fig, div_id: str) -> str:
    height = int(fig.layout.height or 480)
    return (
        '<div class="plot">'
        + fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            default_height=f"{height}px",
            config={"displaylogo": False, "responsive": True},
        )
        + "</div>"
    )


def _table(head: Iterable[str], rows: Iterable[Iterable[Any]], sortable: bool = True) -> str:
    """A table; a cell is text, or ``(html, {attr: value})`` for links, sort keys and classes."""
    out = [
        f"<table{' class=sortable' if sortable else ''}><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
    ]
    for row in rows:
        cells = []
        for c in row:
            text, attrs = c if isinstance(c, tuple) else (e(str(c)), {})
            cells.append("<td" + "".join(f' {k}="{e(str(v))}"' for k, v in attrs.items()) + f">{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</tbody></table>"


def _num(x: float | None, link: str | None = None) -> tuple[str, dict[str, Any]]:
    ok = x is not None and np.isfinite(x)
    text = e(fmt_num(x)) if ok else "-"
    return (f'<a href="{link}">{text}</a>' if link else text), {
        "class": "num",
        "data-sort": repr(float(x)) if ok else "",
    }


def env_file(label: str) -> str:
    return f"envs/{slug(label)}.html"


def run_file(rid: str) -> str:
    return f"runs/{slug(rid)}.html"


# ------------------------------------------------------------------------------------------ index
def _board_html(lb: Leaderboard) -> str:
    arrow = "higher is better" if lb.higher_is_better else "lower is better"
    head = (
        ["agent"]
        + [
            f'<a href="{env_file(c.env_label)}">{e(c.env_label)}</a><br><small>{e(c.detail)}</small>'
            for c in lb.columns
        ]
        + ["mean rank"]
    )
    rows = []
    for a in lb.agents:
        row: list[Any] = [a]
        for c in lb.columns:
            cell = lb.cells.get((a, c))
            if cell is None:
                row.append(("", {"data-sort": ""}))
                continue
            attrs = {
                "class": "num best" if a in lb.best.get(c, ()) else "num",
                "data-sort": repr(cell.mean),
                "title": "seeds " + ", ".join(map(str, cell.seeds)),
            }
            row.append((e(cell_text(cell, c)), attrs))
        row.append(_num(lb.ranks.get(a)))
        rows.append(row)
    return (
        f'<h3 id="board-{e(lb.metric)}">{e(lb.label)} ({arrow})</h3>\n'
        + _table(head, rows)
        + "".join(f'<p class="note">Note: {e(t)}</p>' for t in lb.notes)
    )


def index_page(data: ReportData) -> str:
    parts = [
        f"<p>{e(data.description)}</p>" if data.description else "",
        f"<p class=note>From the results store of <code>{e(str(data.runs_dir))}</code>"
        + (f", suite <b>{e(data.suite)}</b>" if data.suite else "")
        + f"; written {e(time.strftime('%Y-%m-%d %H:%M %Z'))} "
        f"by morl {e(_version())}. The same tables as <code>morl leaderboard"
        + (f" --suite {e(data.suite)}" if data.suite else "")
        + " --metric METRIC</code>.</p>",
        "<h2>Leaderboards</h2>",
        "<p>" + " · ".join(f'<a href="#board-{e(b.metric)}">{e(b.label)}</a>' for b in data.boards) + "</p>",
    ]
    parts += [_board_html(b) for b in data.boards]
    parts.append(
        "<p class=note>Cells: mean of the metric over seeds [95% bootstrap CI of the mean] (n = seeds); "
        "bold = best in its column; hover a cell for its seeds. Each column is one (env, budget, evaluation "
        f"protocol): runs evaluated under different protocols are never mixed in a cell. {e(STEPS_NOTE)} "
        "Click a column header to sort the table by it.</p>"
    )
    protocols: dict[str, str] = {}
    for b in data.boards:
        protocols.update(dict(protocol_rows(b)))
    parts += ["<h2>Evaluation protocols</h2>", _table(["protocol", "settings"], sorted(protocols.items()))]
    parts.append('<h2 id="envs">Envs</h2>')
    env_rows = []
    for label, groups in data.envs.items():
        agents = sorted({a for g in groups for a in g.runs})
        env_rows.append([(f'<a href="{env_file(label)}">{e(label)}</a>', {}), len(groups), ", ".join(agents)])
    parts.append(_table(["env", "columns (budget × protocol)", "agents with fronts"], env_rows))
    parts.append('<h2 id="runs">Runs</h2>')
    parts.append(_runs_table(data.runs.values(), depth=0))
    return _page(data.title, "\n".join(parts), 0, plots=False)


def _runs_table(runs: Iterable[RunData], depth: int) -> str:
    up = "../" * depth
    rows = []
    for r in sorted(runs, key=lambda r: (r.info.agent, r.info.env, r.info.seed or 0, r.id)):
        res = r.info.result or {}
        m = res.get("metrics") or {}
        rows.append(
            [
                (f'<a href="{up}{run_file(r.id)}">{e(r.id)}</a>', {}),
                r.info.agent,
                r.info.env,
                _num(r.info.seed),
                _num(res.get("env_steps")),
                _num(res.get("wall_time")),
                _num(m.get("hypervolume")),
                _num(m.get("expected_utility")),
                res.get("protocol_hash", ""),
            ]
        )
    return _table(["run", "agent", "env", "seed", "env steps", "wall s", "hv", "eu", "protocol"], rows)


# ------------------------------------------------------------------------------------------ env pages
def _fronts(group: EnvGroup) -> dict[str, list[tuple[str, np.ndarray]]]:
    return {a: [(f"seed {r.info.seed} · {r.id}", r.front) for r in rs] for a, rs in group.runs.items()}


def env_page(label: str, groups: list[EnvGroup], colors: dict[str, str]) -> str:
    parts = []
    for i, g in enumerate(groups):
        c = g.column
        parts.append(f'<h2 id="col-{i}">{e(fmt_budget(c.budget))} · protocol {e(c.protocol_hash)}</h2>')
        if not g.runs:
            parts.append(f"<p class=note>No fronts: {e(g.note)}.</p>")
            continue
        truth = "with the true front (gray)" if g.true_front is not None else f"({e(g.note)})"
        parts.append(
            f"<p>Final fronts of every run, one color per agent, {truth}. Click a legend entry to hide an "
            "agent; hover a point for its seed and run.</p>"
        )
        fig = front_figure(
            _fronts(g),
            g.names,
            true_front=g.true_front,
            colors=colors,
            title=f"{label}: fronts ({fmt_budget(c.budget)}, protocol {c.protocol_hash})",
        )
        parts.append(_plot(fig, f"front-{i}"))
        curves = curves_figure(
            {a: [r.rows for r in rs] for a, rs in g.runs.items()},
            colors=colors,
            title=f"{label}: learning curves (mean over seeds, band: min to max)",
        )
        if curves is not None:
            parts.append(_plot(curves, f"curves-{i}"))
        else:
            parts.append("<p class=note>No learning curves: the runs recorded no evaluation.</p>")
        parts.append(_runs_table([r for rs in g.runs.values() for r in rs], depth=1))
    return _page(f"{label}", "\n".join(parts), 1, plots=True)


# ------------------------------------------------------------------------------------------ run pages
def _kv(items: Iterable[tuple[str, Any]]) -> str:
    return _table(
        ["", ""], [[k, v if isinstance(v, tuple) else ("-" if v is None else str(v))] for k, v in items], sortable=False
    )


def run_page(run: RunData, group: EnvGroup | None, colors: dict[str, str]) -> str:
    info, meta, res = run.info, run.info.meta or {}, run.info.result or {}
    env_link = (
        (f'<a href="../{env_file(group.column.env_label)}">{e(group.column.env_label)}</a>', {}) if group else info.env
    )
    parts = [
        "<h2>Run</h2>",
        _kv(
            [
                ("agent", info.agent),
                ("env", env_link),
                ("env kwargs", json.dumps(meta.get("env_kwargs") or {})),
                ("seed", info.seed),
                ("budget", f"{meta.get('budget')} ({meta.get('budget_field', 'budget')})"),
                ("env steps", res.get("env_steps")),
                ("updates", res.get("updates")),
                ("wall time (s)", fmt_num(res.get("wall_time"))),
                ("suite", meta.get("suite")),
                ("created", meta.get("created")),
                ("finished", res.get("finished")),
                ("folder", str(info.path)),
            ]
        ),
    ]
    parts += [
        "<h2>Versions and machine</h2>",
        _kv(
            [
                ("morl (training)", res.get("version") or meta.get("version")),
                ("morl (run created)", meta.get("version")),
                ("machine (training)", res.get("machine") or meta.get("machine")),
                ("imports", ", ".join(meta.get("imports") or [])),
            ]
        ),
    ]
    metrics = res.get("metrics") or {}
    parts += [
        f"<h2>Final metrics (protocol {e(str(res.get('protocol_hash', '?')))})</h2>",
        _table(["metric", "value"], [[k, _num(v)] for k, v in metrics.items()]),
    ]
    proto = res.get("protocol") or meta.get("protocol") or {}
    parts += ["<h2>Evaluation protocol</h2>", _kv(sorted(proto.items()))]
    if run.evals:
        keys = sorted({k for ev in run.evals for k in ev.get("metrics", {})})
        parts += [
            "<h2>Later evaluations (<code>morl eval</code>)</h2>",
            _table(
                ["protocol", "settings"] + keys,
                [
                    [
                        ev.get("protocol_hash", ""),
                        ", ".join(f"{k}={v}" for k, v in sorted(ev.get("protocol", {}).items())),
                    ]
                    + [_num(ev.get("metrics", {}).get(k)) for k in keys]
                    for ev in run.evals
                ],
            ),
        ]
    if run.front is not None and run.names:
        fig = front_figure(
            {info.agent: [(f"seed {info.seed}", run.front)]},
            run.names,
            true_front=group.true_front if group else None,
            colors=colors,
            title=f"{info.agent} on {info.env}, seed {info.seed}: final front",
        )
        parts += [
            "<h2>Front</h2>",
            _plot(fig, "front"),
            _table(run.names, [[_num(float(x)) for x in p] for p in run.front]),
        ]
    curves = curves_figure({info.agent: [run.rows]}, colors=colors, title="learning curves")
    if curves is not None:
        parts += ["<h2>Learning curves</h2>", _plot(curves, "curves")]
    parts += ["<h2>Config</h2>", f"<pre>{e(json.dumps(meta.get('config') or {}, indent=2))}</pre>"]
    return _page(info.id, "\n".join(parts), 1, plots=run.front is not None or curves is not None)


# ------------------------------------------------------------------------------------------ the folder
def _version() -> str:
    from morl.runs import package_version

    return package_version()


def render_site(data: ReportData) -> dict[str, str]:
    """Every file of the report: relative path -> text."""
    from plotly.offline import get_plotlyjs

    colors = agent_colors(data.agents)
    files = {
        "index.html": index_page(data),
        "report.css": CSS,
        "report.js": JS,
        "plotly.min.js": get_plotlyjs(),
        MARKER: "a report written by `morl report`; `morl report` replaces this folder as a whole\n",
    }
    group_of: dict[str, EnvGroup] = {}
    for label, groups in data.envs.items():
        files[env_file(label)] = env_page(label, groups, colors)
        for g in groups:
            for rs in g.runs.values():
                for r in rs:
                    group_of.setdefault(r.id, g)
    for rid, run in data.runs.items():
        files[run_file(rid)] = run_page(run, group_of.get(rid), colors)
    return files


def write_site(files: dict[str, str], out: str | Path) -> Path:
    """Write ``files`` as the folder ``out``, replacing an earlier report there as a whole (never another folder)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise ValueError(
            f"{out} exists and is not a morl report; choose another --out (a report replaces its "
            "folder as a whole, so it never writes into other folders)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out
