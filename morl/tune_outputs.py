"""What a study leaves behind (`morl tune`'s outputs): the best config as a run's ``config.json``, the trials table,
the metric over trials and the parameters' importances (``<runs-dir>/tune/<study>/``)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from morl.tune import (
    BEST_FILE,
    HISTORY_PNG,
    IMPORTANCES_PNG,
    METRICS,
    TRIALS_CSV,
    TuneRequest,
    _coerce,
    _field_types,
    _jsonable,
    trial_requests,
)


def best_trials(study) -> list:
    """The best trial (one metric) or the Pareto-optimal trials (several)."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return [study.best_trial] if len(study.directions) == 1 else list(study.best_trials)


def best_config(study, req: TuneRequest, trial=None) -> dict[str, Any]:
    """A run's ``config.json`` layout for ``trial`` (default: the best), loadable by `morl train --config`."""
    from morl import runs as R

    trial = trial or best_trials(study)[0]
    hints = _field_types(req.agent)
    overrides = {k: _coerce(v, hints.get(k)) for k, v in trial.user_attrs.get("overrides", {}).items()}
    requests = trial_requests(req, overrides)
    r = requests[0]
    return {
        "agent": req.agent,
        "env": req.env,
        "env_kwargs": req.env_kwargs,
        "config": R.config_to_dict(r.config),
        "protocol": r.protocol.as_dict(),
        "tuned": {
            "study": req.study_name,
            "storage": req.storage_url,
            "trial": trial.number,
            "metrics": req.metrics,
            "values": list(trial.values),
            "seeds": req.seeds,
            "runs": trial.user_attrs.get("runs", []),
            "params": {k: _jsonable(overrides[k]) for k in trial.params},
        },
    }


def trial_rows(study, metrics: list[str]) -> list[dict[str, Any]]:
    """One row per trial: number, state, the metric value(s), env steps reached, parameters."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower()}
        for i, m in enumerate(metrics):
            row[m] = t.values[i] if t.values is not None else None
        inter = t.intermediate_values
        row["last_step"] = max(inter) if inter else None
        row.update({f"param:{k}": v for k, v in t.params.items()})
        row["runs"] = " ".join(t.user_attrs.get("runs", []))
        rows.append(row)
    return rows


def write_trials_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def plot_history(study, metrics: list[str], path: Path) -> None:
    """Each completed trial's value(s) in trial order, with the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for i, m in enumerate(metrics):
        ax = axes[0][i]
        xs = [t.number for t in done]
        ys = [t.values[i] for t in done]
        ax.plot(xs, ys, "o", label="trial")
        better = max if METRICS[m][1] == "maximize" else min
        best, run = [], None
        for y in ys:
            run = y if run is None else better(run, y)
            best.append(run)
        ax.step(xs, best, where="post", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{METRICS[m][0]} (mean over seeds)")
        ax.legend(loc="best")
    fig.suptitle(study.study_name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def importances(study, metrics: list[str]) -> dict[str, dict[str, float]]:
    """Optuna's PED-ANOVA importance of each parameter (Watanabe et al. 2023; fANOVA would need scikit-learn), per
    metric; empty when fewer than two trials completed or no parameter varied."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    out: dict[str, dict[str, float]] = {}
    if len(done) < 2 or not any(t.params for t in done):
        return out
    for i, m in enumerate(metrics):
        try:
            with warnings.catch_warnings():  # "quantiles select the same set of trials" on tiny studies
                warnings.simplefilter("ignore")
                out[m] = dict(
                    optuna.importance.get_param_importances(
                        study,
                        evaluator=optuna.importance.PedAnovaImportanceEvaluator(),
                        target=lambda t, i=i: t.values[i],
                    )
                )
        except (RuntimeError, ValueError):  # e.g. every trial sampled the same values
            continue
    return out


def plot_importances(imp: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, len(imp)), figsize=(5 * max(1, len(imp)), 3.6), squeeze=False)
    for ax, (m, values) in zip(axes[0], imp.items()):
        names = list(values)[::-1]
        ax.barh(names, [values[n] for n in names])
        ax.set_xlabel(f"importance for {m} (PED-ANOVA)")
    if not imp:
        axes[0][0].text(0.5, 0.5, "needs >= 2 completed trials", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_outputs(study, req: TuneRequest) -> dict[str, Path]:
    """best.json (when a trial completed), trials.csv, history.png and importances.png in ``req.out_dir``."""
    from morl.runs import atomic_write_json

    out = req.out_dir
    out.mkdir(parents=True, exist_ok=True)
    paths = {"trials": out / TRIALS_CSV, "history": out / HISTORY_PNG, "importances": out / IMPORTANCES_PNG}
    write_trials_csv(paths["trials"], trial_rows(study, req.metrics))
    plot_history(study, req.metrics, paths["history"])
    imp = importances(study, req.metrics)
    plot_importances(imp, paths["importances"])
    atomic_write_json(out / "importances.json", imp)
    if best_trials(study):
        atomic_write_json(out / BEST_FILE, best_config(study, req))
        paths["best"] = out / BEST_FILE
    return paths
