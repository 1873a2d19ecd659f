"""Pictures of fronts and learning curves (matplotlib, Agg backend: no display needed).

``plot_front`` picks the view from the number of objectives: a 2-D scatter, a 3-D scatter, or parallel
coordinates (one polyline per point, each axis scaled to the range of all plotted points) beyond three.
The true front, when the env knows it, is drawn underneath so the gap is visible at a glance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    """pyplot on the Agg backend (no display needed), loaded only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_front(
    front: np.ndarray,
    path: str | Path,
    *,
    names: Sequence[str] | None = None,
    known_front: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
    title: str = "",
    ref_point: Sequence[float] | None = None,
) -> Path:
    """Write a PNG of ``front`` [F, m] (and optionally the true front and all evaluated candidates)."""
    front = np.asarray(front, np.float64)
    if front.ndim != 2:
        raise ValueError(f"a front is a [points, objectives] array, got shape {front.shape}")
    m = front.shape[1]
    if m < 2:
        raise ValueError(f"a front needs at least 2 objectives, got {m}")
    names = list(names) if names is not None and len(names) == m else [f"objective {i}" for i in range(m)]
    known = None if known_front is None else np.asarray(known_front, np.float64).reshape(-1, m)
    cand = None if candidates is None else np.asarray(candidates, np.float64).reshape(-1, m)
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if m == 2:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        if known is not None:
            k = known[np.argsort(known[:, 0])]
            ax.plot(k[:, 0], k[:, 1], "-o", color="0.6", ms=4, lw=1, label="true front", zorder=1)
        if cand is not None and len(cand):
            ax.scatter(cand[:, 0], cand[:, 1], s=14, color="0.75", marker="x", label="candidates", zorder=2)
        f = front[np.argsort(front[:, 0])]
        ax.scatter(f[:, 0], f[:, 1], s=36, color="tab:blue", edgecolor="k", lw=0.5, label="front", zorder=3)
        if ref_point is not None:
            ax.scatter([ref_point[0]], [ref_point[1]], marker="+", s=60, color="tab:red", label="reference point")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    elif m == 3:
        fig = plt.figure(figsize=(6.5, 5.5))
        ax = fig.add_subplot(projection="3d")
        if known is not None:
            ax.scatter(*known.T, s=16, color="0.45", alpha=0.7, label="true front")
        if cand is not None and len(cand):
            ax.scatter(*cand.T, s=8, color="0.75", marker="x", label="candidates")
        ax.scatter(*front.T, s=30, color="tab:blue", edgecolor="k", lw=0.5, label="front", depthshade=False)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_zlabel(names[2])
        ax.legend(fontsize=8, loc="upper left")
    else:
        fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * m), 4.5))
        stacks = [front] + ([known] if known is not None else [])
        allpts = np.concatenate(stacks)
        lo, hi = allpts.min(axis=0), allpts.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        xs = np.arange(m)
        if known is not None:
            for i, p in enumerate((known - lo) / span):
                ax.plot(xs, p, color="0.7", lw=0.8, alpha=0.5, label="true front" if i == 0 else None)
        for i, p in enumerate((front - lo) / span):
            ax.plot(xs, p, color="tab:blue", lw=1.2, alpha=0.8, marker="o", ms=3, label="front" if i == 0 else None)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{n}\n[{a:.3g}, {b:.3g}]" for n, a, b in zip(names, lo, hi)], fontsize=8)
        ax.set_ylabel("scaled value (per-axis min..max)")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(axis="x", alpha=0.4)
        ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_curves(
    rows: list[dict], path: str | Path, metrics: Sequence[str] = ("hypervolume", "expected_utility"), title: str = ""
) -> Path | None:
    """Evaluation metrics over env steps from a run's ``metrics.jsonl`` rows; None when fewer than 2 points."""
    series = {}
    for m in metrics:
        pts = [(r["env_steps"], r[f"eval/{m}"]) for r in rows if r.get(f"eval/{m}") is not None]
        if len(pts) >= 2:
            series[m] = np.array(pts, np.float64)
    if not series:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for ax, (m, pts) in zip(axes[0], series.items()):
        ax.plot(pts[:, 0], pts[:, 1], "-o", ms=3)
        ax.set_xlabel("env steps")
        ax.set_ylabel(m.replace("_", " "))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
