"""Benchmark suites: the (agents x envs x seeds) runs behind a leaderboard, as data.

Suites (``experiments/suites/NAME.toml``) are data: envs (with kwargs, budgets, and per-env protocol and
agent-config overrides), agents (with config overrides; a value like ``"40%"`` is that share of the env's
budget, so it follows ``--steps-scale``), seeds and the evaluation protocol; a suite can ``extends`` another and
state only what differs (``_suite_data``). ``run_suite`` trains what is
missing (finished runs with the same settings are reused, so an interrupted suite picks up where it stopped)
and writes ``experiments/leaderboards/NAME.md`` with the machine and version it ran on.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import shlex
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import morl
from morl.leaderboard import build_leaderboard, fmt_budget, render_markdown, resolve_metric
from morl.runs import (
    RunRequest,
    atomic_write_text,
    budget_field,
    config_to_dict,
    create_run,
    default_runs_dir,
    list_runs,
    machine_info,
    package_version,
    protocol_from_dict,
    seeds_in_one_program,
    synced_store,
    train_runs,
)
from morl.store import Store, dumps


@dataclass
class SuiteEnv:
    id: str
    steps: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)  # per-env protocol overrides (e.g. minecart's gamma)
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
    """``experiments/suites`` of the current directory or of the checkout; in an installed wheel, the copy of the
    built-in suites it carries (``morl/suite_files``)."""
    here = Path.cwd() / "experiments" / "suites"
    if here.is_dir():
        return here
    checkout = Path(__file__).resolve().parent.parent / "experiments" / "suites"
    if checkout.is_dir():
        return checkout
    return Path(__file__).resolve().parent / "suite_files"


def leaderboards_dir() -> Path:
    return suites_dir().parent / "leaderboards"


def list_suites() -> list[str]:
    d = suites_dir()
    return sorted(p.stem for p in d.glob("*.toml")) if d.is_dir() else []


_SUITE_KEYS = {
    "name",
    "description",
    "extends",
    "agents",
    "envs",
    "env_kwargs",
    "seeds",
    "protocol",
    "metrics",
    "agent_config",
    "eval_every",
}


def _suite_path(name: str, base: Path | None = None) -> Path:
    p = Path(name)
    if base is not None and not p.is_absolute() and p.suffix == ".toml":
        p = base / p
    if p.suffix == ".toml" and p.exists():
        return p
    p = suites_dir() / f"{name}.toml"
    if not p.exists():
        close = difflib.get_close_matches(name, list_suites(), n=3, cutoff=0.4)
        raise ValueError(
            f"no suite {name!r} in {suites_dir()}"
            + (f"; did you mean: {', '.join(close)}?" if close else "")
            + f" (suites: {', '.join(list_suites()) or 'none'})"
        )
    return p


def _suite_data(p: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A suite file's keys with ``extends`` resolved: the parent's keys, then this file's on top of them.

    ``protocol`` and ``agent_config`` merge key by key (an agent's overrides merge per setting), every other key
    replaces the parent's, ``name`` is never inherited, and ``env_kwargs`` is merged into every env's kwargs
    (the inherited envs' included), overriding them: a variant of a suite states only what differs.
    """
    if p.resolve() in chain:
        cycle = " -> ".join(str(c) for c in (*chain, p.resolve()))
        raise ValueError(f"{p}: `extends` forms a cycle ({cycle}); a suite cannot extend itself")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - _SUITE_KEYS)
    if unknown:
        raise ValueError(f"{p}: unknown key(s) {unknown}; allowed: {sorted(_SUITE_KEYS)}")
    data.setdefault("name", p.stem)
    parent_name = data.pop("extends", None)
    if parent_name is not None:
        if not isinstance(parent_name, str):
            raise ValueError(f'{p}: `extends` names one suite (e.g. extends = "mujoco"), got {parent_name!r}')
        parent = _suite_data(_suite_path(parent_name, p.parent), (*chain, p.resolve()))
        parent.pop("name")
        for k in ("protocol", "agent_config"):
            if k in data:
                merged = dict(parent.get(k, {}))
                for sub, value in data[k].items():
                    both = isinstance(value, dict) and isinstance(merged.get(sub), dict)
                    merged[sub] = {**merged[sub], **value} if both else value
                data[k] = merged
        data = {**parent, **data}
    env_kwargs = data.pop("env_kwargs", None)
    if env_kwargs:
        if not isinstance(env_kwargs, dict):
            raise ValueError(f"{p}: `env_kwargs` is a table of env keyword arguments, got {env_kwargs!r}")
        data["envs"] = [
            {**e, "kwargs": {**e.get("kwargs", {}), **env_kwargs}} if isinstance(e, dict) else e
            for e in data.get("envs", [])
        ]
    return data


def load_suite(name: str) -> Suite:
    """A suite by name (``experiments/suites/NAME.toml``) or path, validated; ``extends`` resolved."""
    from morl.evaluate import EvalProtocol

    p = _suite_path(name)
    data = _suite_data(p)
    where = str(p)
    for k in ("agents", "envs", "seeds"):
        if not data.get(k):
            raise ValueError(f"{where}: `{k}` is required and must not be empty")
    envs = []
    for i, e in enumerate(data["envs"]):
        if not isinstance(e, dict) or "id" not in e or "steps" not in e:
            raise ValueError(
                f'{where}: envs[{i}] needs `id` and `steps` (e.g. {{ id = "deep-sea-treasure-v0", steps = 100000 }})'
            )
        extra = sorted(set(e) - {"id", "steps", "kwargs", "protocol", "agent_config"})
        if extra:
            raise ValueError(
                f"{where}: envs[{i}] has unknown key(s) {extra}; allowed: id, steps, kwargs, protocol, agent_config"
            )
        envs.append(
            SuiteEnv(
                str(e["id"]),
                int(e["steps"]),
                dict(e.get("kwargs", {})),
                dict(e.get("protocol", {})),
                {str(k): dict(v) for k, v in e.get("agent_config", {}).items()},
            )
        )
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
    return Suite(
        str(data["name"]),
        p,
        str(data.get("description", "")),
        list(data["agents"]),
        envs,
        [int(s) for s in data["seeds"]],
        protocol,
        metrics,
        agent_config,
        data.get("eval_every"),
    )


def suite_requests(suite: Suite, seeds: list[int] | None = None, steps_scale: float = 1.0):
    """The (agent, env) groups of a suite as lists of `RunRequest` (one per seed)."""
    from morl.agent import agent_spec, make_config

    groups = []
    for agent in suite.agents:
        try:
            spec = agent_spec(agent)
        except KeyError as exc:
            raise ValueError(f"{suite.path}: `agents`: {exc.args[0]}") from None
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
            groups.append(
                [
                    RunRequest(agent, env.id, s, config, dict(env.kwargs), protocol, suite.eval_every, suite=suite.name)
                    for s in (seeds or suite.seeds)
                ]
            )
    return groups


def _settings_key(req) -> str:
    return dumps(
        [req.agent, req.env, req.env_kwargs, int(req.seed), config_to_dict(req.config), req.protocol.as_dict()]
    )


def _unfinished_runs(runs_dir: str | Path, suite: str) -> dict[str, Any]:
    """Interrupted or failed run folders of ``suite``, keyed by their settings (the newest per key)."""
    out = {}
    for info in list_runs(runs_dir)[0]:
        m = info.meta
        if info.status not in ("interrupted", "failed") or m.get("suite") != suite:
            continue
        out[
            dumps([m["agent"], m["env"], m.get("env_kwargs") or {}, int(m["seed"]), m["config"], m.get("protocol")])
        ] = info
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
            raise ValueError(
                f"{suite.path}: {r.agent} on {r.env} cannot be built: {type(exc).__name__}: {exc}"
            ) from None


def _budget_share(value: Any, steps: int, where: str) -> Any:
    """``"40%"`` -> 40% of the env's budget (an int), so shares follow budgets and ``--steps-scale``."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return max(1, int(round(float(value.strip()[:-1]) / 100.0 * steps)))
        except ValueError:
            raise ValueError(f'{where}: {value!r} is not a percentage like "40%"') from None
    return value


def _finished_match(store: Store, req) -> dict | None:
    """A finished run in the store with exactly the settings of ``req`` (so a suite re-run reuses it)."""
    config = dumps(config_to_dict(req.config))
    mine = req.protocol.as_dict()
    for r in reversed(store.runs(agent=req.agent, env=req.env, suite=req.suite)):  # the latest first
        if (
            int(r["seed"]) != int(req.seed)
            or dumps(r["env_kwargs"]) != dumps(req.env_kwargs)
            or dumps(r["config"]) != config
            or not (Path(r.get("path") or "/nonexistent") / "result.json").exists()
        ):
            continue
        proto = r.get("protocol") or {}
        # the stored protocol has the env's reference point filled in where the request left it to the env
        if all(dumps(proto.get(k)) == dumps(v) for k, v in mine.items() if not (k == "ref_point" and v is None)):
            return r
    return None


def _training_batches(todo: list[list[tuple]], vmapped: bool) -> list[list]:
    """The fresh requests of ``todo`` (per group: (request, unfinished run or None)) in the batches one
    `train_runs` call each trains: a group's seeds where they vmap into one program (a GPU/TPU), else all of one
    agent's runs, every env and seed, so the CPU's lanes stay busy across groups."""
    fresh = [[r for r, i in missing if i is None] for missing in todo]
    if vmapped:
        return [g for g in fresh if g]
    by_agent: dict[str, list] = {}
    for group in fresh:
        for r in group:
            by_agent.setdefault(r.agent, []).append(r)
    return list(by_agent.values())


def run_suite(
    name: str,
    runs_dir: str | Path,
    *,
    seeds: list[int] | None = None,
    steps_scale: float = 1.0,
    out: str | Path | None = None,
    progress=None,
    log: Callable[[str], None] = print,
    dry_run: bool = False,
    cluster=None,
    failures: list | None = None,
    console=None,
    train: bool = True,
) -> Path | None:
    """Train every missing run of a suite, then write its leaderboard Markdown; returns the file. With
    ``train=False`` only the leaderboard of the runs already finished is written (its header lists the missing).

    ``cluster`` (a `morl.cluster.TrainOptions`) trains the missing runs as Ray tasks: a task that fails is
    logged and appended to ``failures`` (a `morl.cluster.Failure`) and the others go on; ``progress`` then only
    says whether to show the suite's progress line (on ``console``)."""
    suite = load_suite(name)
    store = synced_store(runs_dir)
    groups = suite_requests(suite, seeds, steps_scale)
    _check_trainers(suite, groups)  # every (agent, env) can be built, before hours of training start
    todo = []
    unfinished = _unfinished_runs(runs_dir, suite.name)
    for group in groups:
        missing = [r for r in group if _finished_match(store, r) is None]
        resumable = {id(r): unfinished.pop(_settings_key(r), None) for r in missing}
        n_resume = sum(v is not None for v in resumable.values())
        log(
            f"{group[0].agent} on {group[0].env}: {len(group)} seeds, {len(group) - len(missing)} already finished"
            + (f", {n_resume} to resume" if n_resume else "")
            + (" (dry run)" if dry_run and missing else "")
            + (" (not trained: --no-train)" if not train and missing and not dry_run else "")
        )
        if missing:
            todo.append([(r, resumable[id(r)]) for r in missing])
    if dry_run:
        return None
    if not train:
        todo = []
    start = time.time()
    if cluster is not None:
        from morl.cluster import driver_lock, train_on_ray

        with driver_lock(runs_dir):  # before any run folder is made: a second driver makes none
            units = []
            for missing in todo:
                units += [[i] for _, i in missing if i is not None]  # interrupted runs of this suite continue
                fresh = [create_run(runs_dir, r) for r, i in missing if i is None]
                if fresh:
                    units.append(fresh)
            _, failed = train_on_ray(
                units,
                cluster,
                store=store,
                log=log,
                display=bool(progress),
                console=console,
                title=f"suite {suite.name}",
            )
        if failures is not None:
            failures.extend(failed)
    if cluster is None:
        resumed = [i for missing in todo for _, i in missing if i is not None]
        if resumed:  # interrupted runs of this suite continue
            train_runs(resumed, resume=True, progress=progress, store=store)
        for batch in _training_batches(todo, vmapped=seeds_in_one_program()):
            train_runs([create_run(runs_dir, r) for r in batch], progress=progress, store=store)
    return write_leaderboard(suite, groups, store, seeds, steps_scale, out, time.time() - start, runs_dir=runs_dir)


def write_leaderboard(
    suite: Suite,
    groups: list[list[RunRequest]],
    store: Store,
    seeds: list[int] | None = None,
    steps_scale: float = 1.0,
    out: str | Path | None = None,
    elapsed: float = 0.0,
    runs_dir: str | Path | None = None,
) -> Path:
    """Write the suite's leaderboard Markdown from the finished runs in ``store`` that match ``groups``
    (``runs_dir``, where they live, goes into the header's command when it is not the default)."""
    where = ""
    if runs_dir is not None and Path(runs_dir).resolve() != default_runs_dir().resolve():
        try:
            where = f" --runs-dir {Path(runs_dir).resolve().relative_to(Path.cwd().resolve())}"
        except ValueError:  # outside the working directory
            where = f" --runs-dir {runs_dir}"
    # exactly the runs of this suite definition (not older budgets or configs), under the suite's protocol
    chosen, missing = {}, Counter()
    for group in groups:
        for req in group:
            match = _finished_match(store, req)
            if match is not None:
                chosen[match["run_id"]] = match["protocol_hash"]
            else:
                missing[(req.agent, req.env)] += 1
    n_runs = sum(len(g) for g in groups)
    rows = [r for r in store.evaluations(suite=suite.name) if chosen.get(r["run_id"]) == r["protocol_hash"]]
    text = [f"# Leaderboard: {suite.name}", ""]
    if suite.description:
        text += [suite.description.strip(), ""]
    seeds_used = seeds or suite.seeds
    versions = Counter(r.get("version") or "?" for r in rows if r["protocol_hash"])
    machines = Counter(r.get("machine") or "?" for r in rows)
    text += [
        f"- suite file: `{suite.path.name}`; agents: {', '.join(suite.agents)}; seeds: {seeds_used}",
        "- envs: "
        + "; ".join(
            f"{e.id}{' ' + json.dumps(e.kwargs) if e.kwargs else ''} ({fmt_budget(int(e.steps * steps_scale))})"
            for e in suite.envs
        ),
        f"- machine: {machine_info()}",
        f"- morl version: {package_version()}",
        "- the runs in these tables: "
        + "; ".join(f"{n} evaluation(s) from version {v}" for v, n in versions.items())
        + " on "
        + "; ".join(f"{m}" for m in machines),
        f"- runs finished: {len(chosen)} of {n_runs}"
        + (
            "; not yet trained (empty cells, or fewer seeds): "
            + "; ".join(f"{a} on {e} ({n} seed(s))" for (a, e), n in missing.items())
            if missing
            else ""
        ),
        f"- written: {time.strftime('%Y-%m-%d %H:%M %Z')}; training wall time of these runs: "
        f"{sum(float(r.get('wall_time') or 0) for r in rows):,.0f} s (this invocation: {elapsed:,.0f} s)",
        "- reproduce: `"
        + (f"XLA_FLAGS={shlex.quote(morl.user_xla_flags())} " if morl.user_xla_flags() else "")
        + f"morl suite run {suite.name}"
        + (f" --steps-scale {steps_scale}" if steps_scale != 1 else "")
        + where
        + "`",
        "",
    ]
    for m in suite.metrics:
        lb = build_leaderboard(rows, m)
        text.append(render_markdown(lb))
    path = Path(out) if out else leaderboards_dir() / f"{suite.name}.md"
    atomic_write_text(path, "\n".join(text))
    return path
