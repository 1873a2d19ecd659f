"""The report's interactive figures (plotly): fronts of every agent beside the true front, and learning curves.

A front plot picks its view from the number of objectives, as `morl.plots` does for PNGs: a 2-D scatter, a 3-D
scatter, or parallel coordinates beyond three. Learning curves put each agent's mean over seeds as a line and the
range over seeds (min to max) as a band; seeds are put on a common x grid by linear interpolation, inside the range
every seed covers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

PALETTE = qualitative.Plotly + qualitative.Dark24
TRUE_FRONT_COLOR = "rgb(150,150,150)"
#: marker symbols per agent, and sizes that shrink with the agent's place: agents that found the same point show
#: as nested markers instead of the last one hiding the others
SYMBOLS = ("circle", "diamond", "square", "triangle-up", "star", "hexagon", "cross", "pentagon")
#: learning-curve panels: (metric key in the metrics rows, label)
CURVE_METRICS = (("hypervolume", "hypervolume"), ("expected_utility", "expected utility"))
#: learning-curve x axes: (key in the metrics rows, label)
CURVE_AXES = (("env_steps", "env steps"), ("wall_time", "wall time (s)"))


def agent_colors(agents: Sequence[str]) -> dict[str, str]:
    """One color per agent, the same on every page (agents in the order given)."""
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(agents)}


def _rgba(color: str, alpha: float) -> str:
    """A plotly color string ('#rrggbb' or 'rgb(r,g,b)') with an alpha, for bands."""
    if color.startswith("#"):
        r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    else:
        r, g, b = (int(float(x)) for x in color[color.index("(") + 1 : color.index(")")].split(",")[:3])
    return f"rgba({r},{g},{b},{alpha})"


def _layout(fig: go.Figure, title: str, height: int = 480) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, font=dict(size=14)),
        template="plotly_white",
        height=height,
        margin=dict(l=60, r=20, t=50, b=50),
        legend=dict(groupclick="togglegroup"),
    )
    return fig


def front_figure(
    fronts: dict[str, list[tuple[str, np.ndarray]]],
    names: Sequence[str],
    *,
    true_front: np.ndarray | None = None,
    colors: dict[str, str] | None = None,
    title: str = "",
) -> go.Figure:
    """Every agent's fronts (``{agent: [(label, points [F, m]), ...]}``, one entry per seed) and the true front.

    Seeds of one agent share a color and a legend entry (clicking it hides them all)."""
    m = len(names)
    if m < 2:
        raise ValueError(f"a front needs at least 2 objectives, got {m}")
    colors = colors or agent_colors(list(fronts))
    if m > 3:
        return _parallel_coordinates(fronts, names, true_front, colors, title)
    fig = go.Figure()
    if true_front is not None and len(true_front):
        k = np.asarray(true_front, np.float64).reshape(-1, m)
        if m == 2:
            k = k[np.argsort(k[:, 0])]
            fig.add_trace(
                go.Scatter(
                    x=k[:, 0],
                    y=k[:, 1],
                    mode="lines+markers",
                    name="true front",
                    line=dict(color=TRUE_FRONT_COLOR, width=1),
                    marker=dict(size=6, symbol="circle-open"),
                )
            )
        else:
            fig.add_trace(
                go.Scatter3d(
                    x=k[:, 0],
                    y=k[:, 1],
                    z=k[:, 2],
                    mode="markers",
                    name="true front",
                    marker=dict(size=3, color=TRUE_FRONT_COLOR, opacity=0.6),
                )
            )
    order = list(colors)
    for agent, seeds in fronts.items():
        place = order.index(agent) if agent in order else 0
        symbol, size = SYMBOLS[place % len(SYMBOLS)], max(6, 18 - 4 * place)
        for i, (label, pts) in enumerate(seeds):
            p = np.asarray(pts, np.float64).reshape(-1, m)
            common = dict(
                name=agent,
                legendgroup=agent,
                showlegend=i == 0,
                text=[label] * len(p),
                hovertemplate=f"{agent}<br>%{{text}}<br>"
                + "<br>".join(f"{n}: %{{{ax}:.4g}}" for n, ax in zip(names, "xyz"))
                + "<extra></extra>",
            )
            if m == 2:
                p = p[np.argsort(p[:, 0])]
                fig.add_trace(
                    go.Scatter(
                        x=p[:, 0],
                        y=p[:, 1],
                        mode="markers",
                        **common,
                        marker=dict(size=size, symbol=symbol, color=colors[agent], line=dict(width=0.8, color="black")),
                    )
                )
            else:
                fig.add_trace(
                    go.Scatter3d(
                        x=p[:, 0],
                        y=p[:, 1],
                        z=p[:, 2],
                        mode="markers",
                        **common,
                        marker=dict(size=max(3, 6 - place), color=colors[agent]),
                    )
                )
    if m == 2:
        fig.update_xaxes(title_text=names[0])
        fig.update_yaxes(title_text=names[1])
    else:
        fig.update_layout(scene=dict(xaxis_title=names[0], yaxis_title=names[1], zaxis_title=names[2]))
    return _layout(fig, title, 520 if m == 3 else 480)


def _parallel_coordinates(fronts, names, true_front, colors, title) -> go.Figure:
    """One polyline per point; the line color says which agent (gray: the true front)."""
    groups = (
        [("true front", np.asarray(true_front, np.float64).reshape(-1, len(names)), TRUE_FRONT_COLOR)]
        if true_front is not None and len(true_front)
        else []
    )
    for agent, seeds in fronts.items():
        pts = [np.asarray(p, np.float64).reshape(-1, len(names)) for _, p in seeds]
        groups.append((agent, np.concatenate(pts) if pts else np.zeros((0, len(names))), colors[agent]))
    allpts = np.concatenate([g[1] for g in groups])
    codes = np.concatenate([np.full(len(g[1]), i, np.float64) for i, g in enumerate(groups)])
    n = max(len(groups) - 1, 1)
    scale = [[i / n, g[2]] for i, g in enumerate(groups)] if len(groups) > 1 else [[0, groups[0][2]], [1, groups[0][2]]]
    dims = [dict(label=name, values=allpts[:, j]) for j, name in enumerate(names)]
    fig = go.Figure(go.Parcoords(dimensions=dims, line=dict(color=codes, colorscale=scale, cmin=0, cmax=n)))
    legend = " · ".join(f"<span style='color:{g[2]}'>■</span> {g[0]}" for g in groups)
    fig.add_annotation(text=legend, showarrow=False, xref="paper", yref="paper", x=0, y=-0.12, xanchor="left")
    return _layout(fig, title)


def band(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x grid, mean, min, max) over seeds on the union of their x values: at each x, over the seeds whose curve
    spans it (linear interpolation inside a seed's range, never extrapolation), so seeds that ran over different
    wall times or budgets each count only where they have data."""
    grid = np.unique(np.concatenate([np.asarray(x, np.float64) for x in xs]))
    stack = np.stack(
        [np.where((grid >= np.min(x)) & (grid <= np.max(x)), np.interp(grid, x, y), np.nan) for x, y in zip(xs, ys)]
    )
    return grid, np.nanmean(stack, axis=0), np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)


def curve_points(rows: list[dict], metric: str, axis: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(x, y) of ``eval/<metric>`` over ``axis`` from a run's metrics rows, sorted by x; None without points."""
    pts = sorted(
        (float(r[axis]), float(r[f"eval/{metric}"]))
        for r in rows
        if r.get(f"eval/{metric}") is not None and r.get(axis) is not None
    )
    if not pts:
        return None
    a = np.array(pts, np.float64)
    return a[:, 0], a[:, 1]


def curves_figure(
    curves: dict[str, list[list[dict]]], *, colors: dict[str, str] | None = None, title: str = ""
) -> go.Figure | None:
    """HV and EU over env steps and over wall time, per agent (``{agent: [rows of one seed, ...]}``): the mean over
    seeds as a line, min to max over seeds as a band (at each x, over the seeds that reach it). None when no run has
    an evaluation."""
    colors = colors or agent_colors(list(curves))
    metrics = [
        (k, lbl)
        for k, lbl in CURVE_METRICS
        if any(curve_points(rows, k, "env_steps") for seeds in curves.values() for rows in seeds)
    ]
    if not metrics:
        return None
    fig = make_subplots(
        rows=len(metrics),
        cols=len(CURVE_AXES),
        horizontal_spacing=0.08,
        vertical_spacing=0.14,
        subplot_titles=[f"{lbl} over {ax_lbl}" for _, lbl in metrics for _, ax_lbl in CURVE_AXES],
    )
    shown = set()
    for r, (key, label) in enumerate(metrics, start=1):
        for c, (axis, axis_label) in enumerate(CURVE_AXES, start=1):
            for agent, seeds in curves.items():
                series = [p for p in (curve_points(rows, key, axis) for rows in seeds) if p is not None]
                if not series:
                    continue
                x, mean, lo, hi = band([s[0] for s in series], [s[1] for s in series])
                color = colors[agent]
                if len(series) > 1:
                    fig.add_trace(
                        go.Scatter(
                            x=np.concatenate([x, x[::-1]]),
                            y=np.concatenate([hi, lo[::-1]]),
                            mode="lines",
                            fill="toself",
                            fillcolor=_rgba(color, 0.18),
                            line=dict(width=0),
                            hoverinfo="skip",
                            legendgroup=agent,
                            showlegend=False,
                            name=f"{agent} (min-max)",
                        ),
                        row=r,
                        col=c,
                    )
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=mean,
                        mode="lines+markers",
                        line=dict(color=color, width=2),
                        marker=dict(size=4),
                        name=f"{agent} (n={len(series)})",
                        legendgroup=agent,
                        showlegend=agent not in shown,
                    ),
                    row=r,
                    col=c,
                )
                shown.add(agent)
            fig.update_xaxes(title_text=axis_label, row=r, col=c)
            fig.update_yaxes(title_text=label, row=r, col=c)
    return _layout(fig, title, 340 * len(metrics) + 60)
