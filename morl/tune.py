"""Hyperparameter optimisation of MORL agents (`morl tune`): Optuna studies whose trials are ordinary runs.

Felten, Gareev, Talbi, Danoy (2023) show that MORL agents are very sensitive to their hyperparameters and tune
them against front quality averaged over seeds; MORL-Baselines does it with W&B sweeps (Bayesian search, mean
hypervolume over 3 seeds). Here a trial samples a config from a search space (``experiments/spaces/AGENT.toml``),
trains one run per seed through the run driver (seeds as one vmapped program when the agent allows), so every
trial's runs are folders in the runs folder and rows in its results store, and its objective is the mean over
seeds of the final evaluation's metric(s).

* Sampler: TPE for one metric, NSGA-II when several are optimised at once (e.g. ``hv`` and ``sp``).
* Storage: Optuna's embedded SQLite file beside the runs (``<runs-dir>/optuna.sqlite``) unless ``storage`` names
  another URL. ``trials`` is the number of finished trials the study should hold, so running the same command
  again resumes: a trial whose process died (SIGKILL, Ctrl-C) is marked failed and its parameters are queued
  again, then only the missing trials run.
* Pruning (one metric only: Optuna does not prune multi-objective studies): the runs' periodic evaluations are
  the intermediate values (the metric averaged over seeds at each evaluation); a median or successive-halving
  pruner stops trials that fall behind. A pruned trial's run folders stay, unfinished, with the reason in
  ``error.txt``.
* Output (``<runs-dir>/tune/<study>/``, written by `morl.tune_outputs`): ``best.json`` (a run's ``config.json``
  layout, loadable by ``morl train AGENT --env ID --config best.json``), ``trials.csv``, ``history.png`` (the
  metric over trials) and ``importances.png`` (Optuna's PED-ANOVA parameter importances).

Optuna is imported inside the functions that need it (``pip install 'morl[tune]'``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

#: short metric name -> (the metric in a Front's metrics, the direction it is optimised in)
METRICS: dict[str, tuple[str, str]] = {
    "hv": ("hypervolume", "maximize"),
    "eu": ("expected_utility", "maximize"),
    "sp": ("sparsity", "minimize"),
    "card": ("cardinality", "maximize"),
    "igd": ("igd", "minimize"),
    "mul": ("maximum_utility_loss", "minimize"),
}
STORAGE_FILE = "optuna.sqlite"
TUNE_DIR = "tune"
BEST_FILE = "best.json"
TRIALS_CSV = "trials.csv"
HISTORY_PNG = "history.png"
IMPORTANCES_PNG = "importances.png"
PRUNERS = ("median", "halving", "none")
#: a RUNNING trial with no owner process recorded is abandoned after this long (`recover`)
ORPHAN_AFTER = timedelta(minutes=1)


class TuneError(ValueError):
    """A problem with a tuning request (space, metric, study); the message names it and the fix."""


# ====================================================================== search spaces
@dataclass(frozen=True)
class Param:
    """One entry of a search space: a distribution over a config field, or a fixed value."""

    name: str
    kind: str  # "float" | "int" | "categorical" | "fixed"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()
    value: Any = None


def spaces_dir() -> Path:
    """``experiments/spaces`` of the checkout (or of the current directory)."""
    here = Path.cwd() / "experiments" / "spaces"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "experiments" / "spaces"


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, list) else v


def parse_space(data: dict[str, Any], where: str = "space") -> dict[str, Param]:
    """A search space from its TOML tables: ``[field]`` with ``type`` float/int (``low``, ``high``, optional
    ``log``, ``step``), categorical (``choices``), or ``value`` (fixed in every trial)."""
    space: dict[str, Param] = {}
    for name, spec in data.items():
        if not isinstance(spec, dict):
            raise TuneError(f'{where}: [{name}] must be a table, e.g. `[{name}]` then `type = "float"`')
        extra = set(spec) - {"type", "low", "high", "log", "step", "choices", "value"}
        if extra:
            raise TuneError(
                f"{where}: [{name}] has unknown key(s) {sorted(extra)}; allowed: type, low, high, log, "
                "step, choices, value"
            )
        if "value" in spec:
            space[name] = Param(name, "fixed", value=_hashable(spec["value"]))
            continue
        kind = spec.get("type")
        if kind in ("float", "int"):
            if "low" not in spec or "high" not in spec:
                raise TuneError(f"{where}: [{name}] (type {kind}) needs low and high")
            low, high = spec["low"], spec["high"]
            if not low < high:
                raise TuneError(f"{where}: [{name}] needs low < high, got {low} and {high}")
            if spec.get("log") and low <= 0:
                raise TuneError(f"{where}: [{name}] has log = true, so low must be > 0, got {low}")
            space[name] = Param(name, kind, low, high, bool(spec.get("log", False)), spec.get("step"))
        elif kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise TuneError(f"{where}: [{name}] (type categorical) needs a non-empty list `choices`")
            space[name] = Param(name, kind, choices=tuple(_hashable(c) for c in choices))
        else:
            raise TuneError(
                f'{where}: [{name}] needs `type` = "float", "int" or "categorical" (got {kind!r}), or a fixed `value`'
            )
    return space


def load_space(agent: str, path: str | Path | None = None) -> tuple[dict[str, Param], Path]:
    """The search space of ``agent``: ``path``, else ``experiments/spaces/<agent>.toml``; checked against its
    config fields."""
    from morl.agent import agent_spec

    p = Path(path) if path is not None else spaces_dir() / f"{agent}.toml"
    if not p.is_file():
        shipped = sorted(q.stem for q in spaces_dir().glob("*.toml")) if spaces_dir().is_dir() else []
        raise TuneError(
            f"no search space {p}; write one (docs/tuning.md) and pass --space FILE"
            + (f" (shipped spaces: {', '.join(shipped)})" if shipped else "")
        )
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TuneError(f"search space {p} is not valid TOML: {exc}") from None
    space = parse_space(data, str(p))
    if not space:
        raise TuneError(f"search space {p} is empty; give at least one [field] table")
    spec = agent_spec(agent)
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(space) - fields)
    if unknown:
        raise TuneError(f"search space {p}: agent {agent!r} has no config field(s) {unknown}; fields: {sorted(fields)}")
    if spec.budget_field in space:
        raise TuneError(f"search space {p} sets {spec.budget_field}, the budget; give the budget with --steps instead")
    return space, p


def _field_types(agent: str) -> dict[str, Any]:
    from morl.agent import agent_spec

    return typing.get_type_hints(agent_spec(agent).config_cls)


def suggest(trial, space: dict[str, Param], hints: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config overrides of one trial: every fixed value and one sample of every distribution.

    Categorical choices are suggested by their index's text (Optuna stores only scalars) and mapped back, so a
    choice may be a list such as a network's widths."""
    hints = hints or {}
    out: dict[str, Any] = {}
    for name, p in space.items():
        if p.kind == "fixed":
            v = p.value
        elif p.kind == "float":
            v = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        elif p.kind == "int":
            v = trial.suggest_int(name, int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
        else:
            labels = [json.dumps(c) for c in p.choices]
            v = p.choices[labels.index(trial.suggest_categorical(name, labels))]
        out[name] = _coerce(v, hints.get(name))
    return out


def _coerce(value: Any, hint: Any) -> Any:
    from morl.runs.config import _coerce as coerce

    if isinstance(value, tuple):
        value = list(value)
    return coerce(value, hint) if hint is not None else value


def _jsonable(overrides: dict[str, Any]) -> Any:
    return json.loads(json.dumps(overrides, default=str))


def config_file_overrides(path: str | Path, agent: str) -> dict[str, Any]:
    """The config fields of ``path`` (a JSON file with a ``config`` object: a run's ``config.json`` or
    `morl tune`'s ``best.json``), typed as ``agent``'s config; for `morl train --config FILE`."""
    from morl.agent import agent_spec

    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {p}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p} is not JSON ({exc}); give a run's config.json or `morl tune`'s best.json") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ValueError(f"{p} has no \"config\" object; give a run's config.json or `morl tune`'s best.json")
    if data.get("agent") not in (None, agent):
        raise ValueError(f"{p} is a config of agent {data['agent']!r}, not {agent!r}; use `morl train {data['agent']}`")
    fields = {f.name for f in dataclasses.fields(agent_spec(agent).config_cls) if f.init}
    unknown = sorted(set(data["config"]) - fields)
    if unknown:
        raise ValueError(f"{p}: agent {agent!r} has no config field(s) {unknown}")
    hints = _field_types(agent)
    return {k: _coerce(v, hints.get(k)) for k, v in data["config"].items()}


# ====================================================================== the request and the study
@dataclass
class TuneRequest:
    """Everything a study needs; `morl tune`'s options."""

    agent: str
    env: str
    trials: int
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    metrics: list[str] = field(default_factory=lambda: ["hv"])
    steps: int | None = None  # the budget of every run (None: the agent's default for the env)
    space: str | Path | None = None  # None: experiments/spaces/<agent>.toml
    runs_dir: str | Path = "runs"
    storage: str | None = None  # None: sqlite:///<runs_dir>/optuna.sqlite
    study: str | None = None  # None: <agent>_<env>_<metrics>_<steps>
    pruner: str = "median"
    sampler_seed: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    protocol: Any = None  # morl.evaluate.EvalProtocol (None: its defaults)
    eval_every: int | None = None  # env steps between the runs' evaluations (the pruner's intermediate values)
    checkpoint_secs: float = 60.0

    def __post_init__(self):
        if self.trials < 1:
            raise TuneError(f"--trials must be >= 1, got {self.trials}")
        if not self.metrics:
            raise TuneError("give at least one --metric")
        bad = [m for m in self.metrics if m not in METRICS]
        if bad:
            raise TuneError(f"unknown metric(s) {bad}; choose from {', '.join(METRICS)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise TuneError(f"--metric lists a metric twice: {self.metrics}")
        if self.pruner not in PRUNERS:
            raise TuneError(f"--pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        if not self.seeds:
            raise TuneError("give at least one seed")

    @property
    def study_name(self) -> str:
        if self.study:
            return self.study
        steps = f"_{self.steps}" if self.steps else ""
        return f"{self.agent}_{self.env.replace('/', '-')}_{'+'.join(self.metrics)}{steps}"

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.runs_dir).absolute() / STORAGE_FILE}"

    @property
    def out_dir(self) -> Path:
        return Path(self.runs_dir) / TUNE_DIR / self.study_name

    @property
    def directions(self) -> list[str]:
        return [METRICS[m][1] for m in self.metrics]


def make_sampler(req: TuneRequest):
    """TPE for one metric, NSGA-II for several (seeded: the same request samples the same trials)."""
    import optuna

    if len(req.metrics) > 1:
        return optuna.samplers.NSGAIISampler(seed=req.sampler_seed)
    return optuna.samplers.TPESampler(seed=req.sampler_seed)


def make_pruner(req: TuneRequest):
    import optuna

    if req.pruner == "none" or len(req.metrics) > 1:
        return optuna.pruners.NopPruner()
    if req.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def open_study(req: TuneRequest):
    """The study (created, or loaded to resume); a study recorded for another agent, env or metrics is refused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Path(req.runs_dir).mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=req.storage_url,
        study_name=req.study_name,
        directions=req.directions,
        sampler=make_sampler(req),
        pruner=make_pruner(req),
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("request")
    mine = {"agent": req.agent, "env": req.env, "metrics": req.metrics, "steps": req.steps, "seeds": req.seeds}
    if recorded is None:
        study.set_user_attr("request", mine)
    elif recorded != mine:
        diff = ", ".join(f"{k} {recorded.get(k)!r} there, {v!r} here" for k, v in mine.items() if recorded.get(k) != v)
        raise TuneError(
            f"study {req.study_name!r} in {req.storage_url} was made for another request ({diff}); give the same "
            "options to resume it, or --study NAME for a new study"
        )
    return study


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(study) -> list[int]:
    """Trials left behind by a process that died: a RUNNING trial whose process (on this host) is gone, or that has
    had no owner for a minute, is marked FAIL; every such trial, and every trial stopped by Ctrl-C, has its
    parameters queued again (once).

    Returns the numbers of the trials queued again."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    host = socket.gethostname()
    requeued = []
    for t in trials:
        owned = isinstance(t.user_attrs.get("pid"), int)
        stale = t.state == TrialState.RUNNING and (
            (owned and t.user_attrs.get("host") == host and not _pid_alive(t.user_attrs["pid"]))
            # a queued retry taken by a process killed before it wrote its owner: after a minute it is nobody's
            or (not owned and t.datetime_start is not None and datetime.now() - t.datetime_start > ORPHAN_AFTER)
        )
        if stale:
            study.tell(t.number, state=TrialState.FAIL)
        interrupted = stale or (t.state == TrialState.FAIL and t.user_attrs.get("interrupted"))
        if interrupted and t.number not in retried and t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            requeued.append(t.number)
    return requeued


def finished(study) -> int:
    """Trials that count towards ``trials``: completed or pruned."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


# ====================================================================== one trial
class _Collector:
    """The runs' periodic evaluations of a trial, gathered through the driver's `RunCallback` hook, reported to
    Optuna as the seed mean once every run has reached an evaluation; raises TrialPruned when told to stop."""

    def __init__(self, trial, metric: str | None, n_runs: int):
        self.trial, self.metric, self.n_runs = trial, metric, n_runs
        self.rows: dict[str, dict[int, tuple[int, float]]] = {}
        self.reported: set[int] = set()

    def callback(self, info):
        from morl.runs.driver import RunCallback

        rows = self.rows.setdefault(info.id, {})
        key = f"eval/{self.metric}"

        class Rows(RunCallback):
            def row(self, row):
                v = row.get(key)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    rows[int(row["update"])] = (int(row["env_steps"]), float(v))

        return Rows()

    def progress(self, event) -> None:
        import optuna

        if self.metric is None or event.update in self.reported or len(self.rows) < self.n_runs:
            return
        points = [r.get(event.update) for r in self.rows.values()]
        if any(p is None for p in points):
            return
        self.reported.add(event.update)
        step = min(p[0] for p in points)
        self.trial.report(sum(p[1] for p in points) / len(points), step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at {step} env steps")


def trial_requests(req: TuneRequest, overrides: dict[str, Any]) -> list:
    """One RunRequest per seed for a trial's config (``overrides`` on the agent's per-env defaults)."""
    import morl
    from morl import runs as R
    from morl.agent import agent_spec, make_config, make_trainer
    from morl.evaluate import EvalProtocol

    spec = agent_spec(req.agent)
    if req.steps is not None:
        overrides = {**overrides, spec.budget_field: req.steps}
    config = make_config(req.agent, req.env, **overrides)
    env, env_params = morl.make(req.env, **req.env_kwargs)
    make_trainer(req.agent, env, env_params, config=config)  # the agent's own checks, before any folder exists
    protocol = req.protocol or EvalProtocol()
    tag = f"tune:{req.study_name}"
    return [
        R.RunRequest(req.agent, req.env, s, config, req.env_kwargs, protocol, req.eval_every, req.checkpoint_secs, tag)
        for s in req.seeds
    ]


def _ask(study, req: TuneRequest, space: dict[str, Param]):
    """A new trial and its run folders, or (the failed ``FrozenTrial``, None) when the agent refuses its config."""
    from optuna.trial import TrialState

    from morl import runs as R

    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        # the trial is born with its owner (a queued trial that ask() takes), so a kill between ask() and the
        # attributes below cannot leave a RUNNING trial that `recover` cannot attribute to a dead process
        study.enqueue_trial({}, user_attrs=owner)
    trial = study.ask()
    for name, value in owner.items():  # ask() may have taken a queued retry, or another process's queued trial
        trial.set_user_attr(name, value)
    try:
        overrides = suggest(trial, space, _field_types(req.agent))
        trial.set_user_attr("overrides", _jsonable(overrides))
        requests = trial_requests(req, overrides)
    except (TypeError, ValueError) as exc:
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
        return study.tell(trial, state=TrialState.FAIL), None
    infos = [R.create_run(req.runs_dir, r) for r in requests]
    trial.set_user_attr("runs", [i.id for i in infos])
    return trial, infos


def _tell(study, req: TuneRequest, trial, results: list[dict[str, Any]]):
    """Tell a trial the seed means of its runs' final metrics (FAIL when one is missing or not finite)."""
    from optuna.trial import TrialState

    values = []
    for m in req.metrics:
        name = METRICS[m][0]
        per_seed = [r["metrics"].get(name) for r in results]
        if any(v is None or not math.isfinite(v) for v in per_seed):
            trial.set_user_attr("error", f"metric {name} is missing or not finite in some runs: {per_seed}")
            return study.tell(trial, state=TrialState.FAIL)
        trial.set_user_attr(f"{m}_per_seed", per_seed)
        values.append(sum(per_seed) / len(per_seed))
    return study.tell(trial, values)


def run_trial(study, req: TuneRequest, space: dict[str, Param], progress: Callable | None = None):
    """Ask one trial, train its runs here, tell the result; returns the finished ``FrozenTrial``.

    A config the agent refuses (e.g. a sampled combination it cannot train) fails the trial with the reason in
    its ``error`` attribute; Ctrl-C fails it as ``interrupted`` (queued again on the next start) and re-raises."""
    import optuna
    from optuna.trial import TrialState

    from morl import runs as R

    trial, infos = _ask(study, req, space)
    if infos is None:
        return trial
    collector = _Collector(trial, METRICS[req.metrics[0]][0] if len(req.metrics) == 1 else None, len(infos))

    def on_progress(event):
        if progress is not None:
            progress(trial, event)
        collector.progress(event)

    try:
        results = R.train_runs(infos, progress=on_progress, callback=collector.callback)
    except optuna.TrialPruned:
        return study.tell(trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as exc:
        trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
        return study.tell(trial, state=TrialState.FAIL)
    return _tell(study, req, trial, results)


def run_batch_on_ray(study, req: TuneRequest, space: dict[str, Param], n: int, opts) -> list:
    """Ask ``n`` trials at once and train their runs as Ray tasks (`morl.cluster.train_on_ray`: one task per trial,
    its seeds vmapped), telling each trial as the batch ends. No pruning: a task reports only its final result.
    Ctrl-C leaves the batch's trials RUNNING under this process, so the next start queues them again."""
    from optuna.trial import TrialState

    from morl import runs as R
    from morl.cluster import train_on_ray

    asked = [_ask(study, req, space) for _ in range(n)]
    done = [t for t, infos in asked if infos is None]
    pending = [(t, infos) for t, infos in asked if infos is not None]
    if not pending:
        return done
    results, failures = train_on_ray(
        [infos for _, infos in pending], opts, store=R.store_for(req.runs_dir), display=False
    )
    failed = {i.id: f.error for f in failures for i in f.runs}
    for trial, infos in pending:
        errors = [failed[i.id] for i in infos if i.id in failed or i.id not in results]
        if errors:
            trial.set_user_attr("error", str(errors[0])[:500])
            done.append(study.tell(trial, state=TrialState.FAIL))
        else:
            done.append(_tell(study, req, trial, [results[i.id] for i in infos]))
    return done


def tune(
    req: TuneRequest,
    progress: Callable | None = None,
    on_trial: Callable | None = None,
    ray: Any = None,
    parallel: int | None = None,
):
    """Run the study until it holds ``req.trials`` finished trials (resuming a stored one); returns the study.

    ``ray``: a `morl.cluster.TrainOptions`; trials then run ``parallel`` at a time (default: all that are left) as
    Ray tasks through Optuna's ask/tell interface. At most ``3 * trials`` new trials are started in one call, so a
    space whose configs all fail stops."""
    space, _ = load_space(req.agent, req.space)
    study = open_study(req)
    requeued = recover(study)
    if on_trial is not None and requeued:
        on_trial(None, requeued)
    started = 0
    while finished(study) < req.trials and started < 3 * req.trials:
        if ray is not None:
            n = min(parallel or req.trials, req.trials - finished(study))
            frozen = run_batch_on_ray(study, req, space, n, ray)
            started += n
        else:
            frozen = [run_trial(study, req, space, progress)]
            started += 1
        for f in frozen:
            if on_trial is not None:
                on_trial(f, None)
    from morl.tune_outputs import write_outputs

    write_outputs(study, req)
    return study
