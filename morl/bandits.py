"""Multi-objective bandit experiments: metrics, the chunked experiment driver, run folders, leaderboard, plots.

Instances live in envs/bandits.py, algorithms in agents/bandits.py; this module turns their output (pull counts
and reward sums at log-spaced checkpoints, per run) into the metrics of docs/bandits.md:

* ``pareto_regret``: cumulative Pareto (pseudo-)regret, ``sum_i N_i(t) gap_i``;
* ``unfairness``: coefficient of variation (std / mean) of the pull counts of the Pareto arms; 0 = played evenly;
* ``scalarized_regret``: per evaluation weight w (a simplex grid), ``sum_i N_i(t) (max_k w.mu_k - w.mu_i)``;
* ``front_error``: arms misclassified by the Pareto set of the empirical means (pulled arms only) vs the true one.

Curves are the mean over runs with a 95% normal band (mean +- 1.96 standard errors). A finished experiment is a
folder ``<bandit runs dir>/<run id>/`` (config.json, curves.csv, final.csv, result.json written last, all atomic)
and a row in that folder's results.sqlite (`morl.store`), which the leaderboard reads.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RUNS_DIR_ENV = "MORL_BANDIT_RUNS_DIR"
METRICS = ("pareto_regret", "unfairness", "scalarized_regret", "front_error")
Z95 = 1.959964


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "bandit-runs"))


def instance_ids() -> list[str]:
    from morl.envs.bandits import INSTANCES, env_id

    return [env_id(n) for n in INSTANCES]


def instance(name: str):
    """A `BanditInstance` by env id (``bandit-drugan-nowe-20-v0``) or short name."""
    from morl.envs.bandits import get_instance

    return get_instance(name)


def algorithm_docs() -> dict[str, str]:
    from morl.agents.bandits import ALGORITHMS

    return {name: a.summary for name, a in ALGORITHMS.items()}


def check_algorithm(name: str) -> None:
    from morl.agents.bandits import get_algorithm

    get_algorithm(name)


# ---------------------------------------------------------------------------------------- metrics
def eval_weights(m: int) -> np.ndarray:
    """The weights scalarised regret is reported for: the Das-Dennis grid with at most 11 points."""
    from morl.weights import uniform_grid

    return uniform_grid(m, total=max(11, m))


def metrics_from_counts(counts: np.ndarray, sums: np.ndarray, inst) -> dict[str, np.ndarray]:
    """Every metric at every checkpoint: counts [..., K], sums [..., K, m] -> arrays of shape [...]
    (``scalarized_regret``: [..., E], one column per weight of `eval_weights`)."""
    counts = np.asarray(counts, np.float64)
    sums = np.asarray(sums, np.float64)
    gaps, pareto, mu = inst.gaps, inst.pareto, inst.means
    w = eval_weights(inst.num_objectives)
    scal = mu @ w.T  # [K, E]
    n_star = counts[..., pareto]
    mean_star = n_star.mean(-1)
    unfair = np.where(mean_star > 0, n_star.std(-1) / np.where(mean_star > 0, mean_star, 1.0), 0.0)
    est = sums / np.maximum(counts, 1)[..., None]
    pulled = counts > 0
    # Pareto set of the pulled arms' empirical means: arm i is dominated if a pulled j is >= everywhere and > once
    ge = (est[..., None, :, :] >= est[..., :, None, :]).all(-1)
    gt = (est[..., None, :, :] > est[..., :, None, :]).any(-1)
    dominated = (ge & gt & pulled[..., None, :]).any(-1)
    est_pareto = pulled & ~dominated
    return {
        "pareto_regret": counts @ gaps,
        "unfairness": unfair,
        "scalarized_regret": counts @ (scal.max(0) - scal),
        "front_error": (est_pareto != pareto).sum(-1).astype(np.float64),
    }


def band(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(mean, 95% half-width = 1.96 standard errors) over ``axis`` (the runs)."""
    n = values.shape[axis]
    mean = values.mean(axis)
    half = Z95 * values.std(axis, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
    return mean, half


# ---------------------------------------------------------------------------------------- running
@dataclass
class BanditResult:
    algo: str
    instance: str
    horizon: int
    runs: int
    seed: int
    checkpoints: np.ndarray
    counts: np.ndarray  # [R, J, K]
    sums: np.ndarray  # [R, J, K, m]
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


_JITTED: dict[Any, Any] = {}


def _advance_fn(algo):
    """jit(vmap(advance)) over runs, one per algorithm; horizon and segment bounds are traced (no recompiles)."""
    import jax

    from morl.agents.bandits import advance

    if algo not in _JITTED:

        def one(params, horizon, key, state, t0, t1):
            return advance(algo, params, horizon, key, state, t0, t1)

        _JITTED[algo] = jax.jit(jax.vmap(one, in_axes=(None, None, 0, 0, None, None)))
    return _JITTED[algo]


def run_experiment(
    algo_name: str,
    instance_id: str,
    horizon: int,
    runs: int,
    *,
    seed: int = 0,
    points: int = 40,
    progress: Callable[[int], None] | None = None,
) -> BanditResult:
    """``runs`` vmapped runs of ``algo_name``, advanced checkpoint by checkpoint (so a progress bar can follow);
    the same numbers as `agents.bandits.simulate_runs` with the same key (pull keys are ``fold_in(run key, t)``)."""
    import jax
    import jax.numpy as jnp

    from morl.agents.bandits import get_algorithm, init_state, log_checkpoints, run_keys
    from morl.envs.bandits import env_id

    algo = get_algorithm(algo_name)
    inst = instance(instance_id)
    instance_id = env_id(inst.name)
    params = inst.params()
    cps = log_checkpoints(horizon, points)
    keys = run_keys(jax.random.key(seed), runs)
    states = jax.vmap(lambda _: init_state(algo, params))(jnp.arange(runs))
    fn = _advance_fn(algo)
    t_compile = time.perf_counter()
    h = jnp.int32(horizon)
    fn = fn.lower(params, h, keys, states, jnp.int32(0), jnp.int32(1)).compile()
    compile_s = time.perf_counter() - t_compile
    counts, sums = [], []
    start, t0 = time.perf_counter(), 0
    for t1 in cps:
        states = fn(params, h, keys, states, jnp.int32(t0), jnp.int32(t1))
        counts.append(np.asarray(states.counts))
        sums.append(np.asarray(states.sums))
        t0 = int(t1)
        if progress is not None:
            progress(t0)
    wall = time.perf_counter() - start
    res = BanditResult(algo_name, instance_id, horizon, runs, seed, cps, np.stack(counts, 1), np.stack(sums, 1))
    res.metrics = metrics_from_counts(res.counts, res.sums, inst)
    res.summary = summarize(res.metrics)
    res.summary.update(wall_s=wall, compile_s=compile_s, pulls_per_s=runs * horizon / max(wall, 1e-9))
    return res


def summarize(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """The leaderboard numbers at T (the last checkpoint): mean over runs and 95% half-width."""
    out = {}
    for name, v in metrics.items():
        last = v[:, -1]
        if last.ndim == 2:  # scalarised regret: the mean over weights, and the worst weight
            out["scalarized_regret_max"] = float(last.mean(0).max())
            last = last.mean(-1)
        mean, half = band(last)
        out[name], out[f"{name}_ci"] = float(mean), float(half)
    return out


# ---------------------------------------------------------------------------------------- run folders and the store
def _curves_rows(res: BanditResult) -> tuple[list[str], list[list[float]]]:
    header = ["t"]
    cols = []
    for name in METRICS:
        v = res.metrics[name]
        if v.ndim == 3:
            for e in range(v.shape[-1]):
                mean, half = band(v[..., e])
                header += [f"{name}_w{e}_mean", f"{name}_w{e}_lo", f"{name}_w{e}_hi"]
                cols += [mean, mean - half, mean + half]
            v = v.mean(-1)
        mean, half = band(v)
        header += [f"{name}_mean", f"{name}_lo", f"{name}_hi"]
        cols += [mean, mean - half, mean + half]
    rows = [[int(t)] + [float(c[j]) for c in cols] for j, t in enumerate(res.checkpoints)]
    return header, rows


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    return (
        "\n".join(
            [",".join(header)] + [",".join(f"{x:.10g}" if isinstance(x, float) else str(x) for x in r) for r in rows]
        )
        + "\n"
    )


def record(res: BanditResult, root: str | Path) -> Path:
    """Write the run folder (result.json last: its presence marks the run finished) and the store row."""
    from morl.runs.config import machine_info, package_version
    from morl.runs.files import atomic_write_json, atomic_write_text
    from morl.store import DB_NAME, Store, now_iso

    root = Path(root)
    rid = (
        f"{res.algo}_{res.instance}_T{res.horizon}_R{res.runs}_s{res.seed}_{time.strftime('%Y%m%d-%H%M%S')}_"
        f"{os.urandom(2).hex()}"
    )
    path = root / rid
    path.mkdir(parents=True, exist_ok=False)
    inst = instance(res.instance)
    config = {
        "algo": res.algo,
        "instance": res.instance,
        "horizon": res.horizon,
        "runs": res.runs,
        "seed": res.seed,
        "checkpoints": [int(c) for c in res.checkpoints],
    }
    meta = {
        "kind": "bandit",
        "run_id": rid,
        "agent": res.algo,
        "env": res.instance,
        "seed": res.seed,
        "config": config,
        "created": now_iso(),
        "machine": machine_info(),
        "version": package_version(),
    }
    atomic_write_json(path / "config.json", meta)
    header, rows = _curves_rows(res)
    atomic_write_text(path / "curves.csv", _csv(header, rows))
    final = [
        [r]
        + [
            float(res.metrics[m][r, -1].mean()) if res.metrics[m].ndim == 3 else float(res.metrics[m][r, -1])
            for m in METRICS
        ]
        + [int(x) for x in res.counts[r, -1]]
        for r in range(res.runs)
    ]
    atomic_write_text(
        path / "final.csv", _csv(["run", *METRICS, *[f"pulls_arm{i}" for i in range(inst.num_arms)]], final)
    )
    protocol = {"kind": "bandit", "horizon": res.horizon, "runs": res.runs}
    result = {
        "metrics": res.summary,
        "protocol": protocol,
        "env_steps": res.horizon * res.runs,
        "wall_time": res.summary["wall_s"],
        "finished": now_iso(),
    }
    atomic_write_json(path / "result.json", result)
    Store(root / DB_NAME).record_run(
        {
            "run_id": rid,
            "agent": res.algo,
            "env": res.instance,
            "seed": res.seed,
            "config": config,
            "budget": res.horizon,
            "env_steps": res.horizon * res.runs,
            "wall_time": res.summary["wall_s"],
            "machine": meta["machine"],
            "version": meta["version"],
            "protocol": protocol,
            "metrics": res.summary,
            "path": str(path.absolute()),
            "created": meta["created"],
            "finished": result["finished"],
        }
    )
    return path


def leaderboard(root: str | Path, instances: list[str] | None = None) -> list[tuple[str, list[str], list[list[str]]]]:
    """One table per (instance, horizon): one row per algorithm (its latest run), sorted by Pareto regret at T."""
    from morl.store import DB_NAME, Store

    rows = Store(Path(root) / DB_NAME).runs()
    if instances:
        wanted = {instance(i).name for i in instances}
        rows = [r for r in rows if instance(r["env"]).name in wanted]
    groups: dict[tuple[str, int], dict[str, dict]] = {}
    for r in rows:  # ordered by creation: the latest run of an algorithm wins
        groups.setdefault((r["env"], int(r["budget"])), {})[r["agent"]] = r
    cols = [
        "algo",
        "runs",
        "Pareto regret at T",
        "unfairness",
        "scalarised regret (mean w)",
        "worst w",
        "front error",
        "pulls/s",
    ]
    tables = []
    for (env, horizon), by_algo in sorted(groups.items()):
        body = []
        for algo, r in sorted(by_algo.items(), key=lambda kv: kv[1]["metrics"]["pareto_regret"]):
            m = r["metrics"]
            body.append(
                [
                    algo,
                    str(r["config"]["runs"]),
                    f"{m['pareto_regret']:.4g} ± {m['pareto_regret_ci']:.2g}",
                    f"{m['unfairness']:.3g}",
                    f"{m['scalarized_regret']:.4g} ± {m['scalarized_regret_ci']:.2g}",
                    f"{m['scalarized_regret_max']:.4g}",
                    f"{m['front_error']:.3g}",
                    f"{m['pulls_per_s']:,.0f}",
                ]
            )
        tables.append((f"{env}, T = {horizon:,}", cols, body))
    return tables


def write_leaderboard_md(tables, path: str | Path) -> None:
    from morl.runs.files import atomic_write_text

    intro = "Mean over runs at the horizon T, ± the 95% half-width (1.96 standard errors). Metrics: docs/bandits.md."
    lines = ["# Bandit leaderboard", "", intro, ""]
    for title, cols, rows in tables:
        lines += [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    atomic_write_text(path, "\n".join(lines))


def _finished(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if (p / "result.json").exists() and (p / "config.json").exists():
            out.append(p)
    return sorted(out, key=lambda p: json.loads((p / "config.json").read_text()).get("created", ""))


def select_runs(root: str | Path, refs: list[str], instance_id: str | None = None) -> list[Path]:
    """Run folders by id or unique prefix; with none given, the latest run of each algorithm (on ``instance_id``, or
    on the instance of the latest run)."""
    root = Path(root)
    done = _finished(root)
    if refs:
        out = []
        for ref in refs:
            if Path(ref).is_dir():
                out.append(Path(ref))
                continue
            hits = [p for p in done if p.name.startswith(ref)]
            if len(hits) != 1:
                raise ValueError(
                    f"{'no' if not hits else 'more than one'} finished bandit run matches {ref!r} in {root}"
                )
            out.append(hits[0])
        return out
    if not done:
        raise ValueError(f"no finished bandit runs in {root}")
    metas = [json.loads((p / "config.json").read_text()) for p in done]
    target = instance(instance_id or metas[-1]["env"]).name
    latest: dict[str, Path] = {}
    for p, m in zip(done, metas):
        if instance(m["env"]).name == target:
            latest[m["agent"]] = p
    if not latest:
        raise ValueError(f"no finished bandit runs on {target} in {root}")
    return list(latest.values())


def plot_runs(folders: list[Path], metric: str = "pareto_regret", out: Path | None = None) -> Path:
    """The runs' curves of ``metric`` over pulls (log-x), each with its 95% band; written atomically as a PNG."""
    from morl.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    envs = set()
    for p in folders:
        meta = json.loads((p / "config.json").read_text())
        data = np.genfromtxt(p / "curves.csv", delimiter=",", names=True)
        t = np.atleast_1d(data["t"])
        mean = np.atleast_1d(data[f"{metric}_mean"])
        (line,) = ax.plot(t, mean, lw=1.5, label=f"{meta['agent']} (R={meta['config']['runs']})")
        ax.fill_between(
            t,
            np.atleast_1d(data[f"{metric}_lo"]),
            np.atleast_1d(data[f"{metric}_hi"]),
            color=line.get_color(),
            alpha=0.2,
            lw=0,
        )
        envs.add(meta["env"])
    ax.set_xscale("log")
    ax.set_xlabel("pulls t")
    ax.set_ylabel(metric.replace("_", " ") + (" (mean over weights)" if metric == "scalarized_regret" else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(", ".join(sorted(envs)) + " (mean, 95% band)", fontsize=10)
    fig.tight_layout()
    if out is None:
        out = folders[0].parent / f"{instance(min(envs)).name}_{metric}.png"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)
    return out
