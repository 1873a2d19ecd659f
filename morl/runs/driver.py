"""Run folders, checkpoints, and the host loop that trains an agent chunk by chunk.

A run is a folder ``<runs-dir>/<run-id>/`` plus a row in the results store (`morl.store`)::

    config.json     what was asked: agent, env (+ kwargs), seed, full agent config, budget, eval protocol
    metrics.jsonl   one row per training chunk: env steps, wall time, the agent's logs, periodic evaluations
    metrics.csv     the same rows as a table (written at the end)
    checkpoints/    orbax checkpoints of the train state (the last two kept), with the loop's bookkeeping
    front.csv       the final non-dominated front (one column per objective)
    returns.csv     every evaluated candidate: its preference, discounted and undiscounted vector return
    result.json     final metrics, protocol, env steps, wall time; its presence marks the run finished
    train.lock      pid of the process training it (removed when training stops)
    error.txt       why training stopped, when it raised

Every file is written atomically (temporary file + ``os.replace``) except ``metrics.jsonl``, which is
appended line by line and repaired on resume (rows after the restored checkpoint, and a torn last line,
are dropped). So a killed process leaves a folder that is either resumable or reported as corrupt,
never one that crashes a listing.

Determinism: the train state carries its own PRNG key and evaluations draw their keys from the seed and
the chunk number, so ``morl train --resume`` after SIGKILL ends with the same front as an uninterrupted
run, and ``morl eval RUN`` with the run's protocol reproduces its final metrics.

Checkpoints are orbax (``CheckpointManager``, synchronous saves: a save returns once the step folder is
committed, and orbax finalises a step by renaming its temporary folder, so a kill mid-save leaves the
previous step intact). Every leaf is written as a numpy array of its own dtype and read back as one, then
turned back into what it was (jax array, numpy host buffer, typed PRNG key, Python scalar) from a record in
the step's JSON metadata; zero-size leaves, which orbax refuses to write, live in that record too. So host
buffers keep float64/int64 exactly with x64 off, and a resumed run is bit-identical. The state's tree
structure comes from the trainer (``jax.eval_shape(trainer.init, key)``), shapes from the checkpoint, so
agents whose state grows (a policy archive) restore too.

Seeds in one program: a trainer that sets ``vmappable = True`` declares that ``init(key)`` and
``update(state)`` are pure, traceable JAX functions (no host logic between them) and that ``done``,
``env_steps`` and ``solution`` read only the state. ``train_runs`` then runs all seeds as one
``jit(vmap(update))`` program; other trainers run their seeds one after another.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import socket
import subprocess
import tempfile
import time
import traceback
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from morl.store import DB_NAME, Store, clean_json, now_iso, protocol_hash

RUN_FORMAT = 1
CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
FRONT_CSV = "front.csv"
RETURNS_CSV = "returns.csv"
CKPT_DIR = "checkpoints"
LOCK_FILE = "train.lock"
ERROR_FILE = "error.txt"
EVALS_DIR = "evals"

RUNS_DIR_ENV = "MORL_RUNS_DIR"


class RunError(RuntimeError):
    """A problem with a run folder or a request about one; the message says what to do."""


# ====================================================================== files
def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "runs"))


def _umask() -> int:
    """The process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a torn one.

    The file gets the mode a plain ``open(path, "w")`` would give (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(clean_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def _csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return repr(v) if math.isfinite(v) else ""
        s = str(v)
        return f'"{s}"' if ("," in s or '"' in s) else s
    lines = [",".join(header)] + [",".join(cell(v) for v in r) for r in rows]
    return "\n".join(lines) + "\n"


def _parse_front_csv(path: Path) -> tuple[list[str], np.ndarray]:
    lines = path.read_text().strip().splitlines()  # UnicodeDecodeError is a ValueError
    if not lines:
        raise ValueError("the file is empty")
    header = lines[0].split(",")
    rows = [[float(x) for x in ln.split(",")] for ln in lines[1:]]
    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"rows do not have the {len(header)} columns of its header")
    return header, np.array(rows, np.float64).reshape(-1, len(header))


def read_front_csv(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Objective names and points of a ``front.csv``; a damaged file raises `RunError` saying how to rewrite it."""
    path = Path(path)
    try:
        return _parse_front_csv(path)
    except ValueError as exc:
        raise RunError(f"{path} is damaged ({exc}); `morl eval {path.parent.name}` re-evaluates the run's last "
                       "checkpoint and rewrites it") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file; a torn last line (a killed writer) is skipped."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


# ====================================================================== configs
def config_to_dict(config: Any) -> dict[str, Any]:
    return clean_json(dataclasses.asdict(config))


def _coerce(value: Any, hint: Any) -> Any:
    """JSON value -> the annotated type (lists back to tuples, ...); unknown annotations pass through."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if value is None:
        return None
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a)
            except (TypeError, ValueError):
                continue
        return value
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(v, a) for v, a in zip(value, args))
        return tuple(value)
    if origin is list and isinstance(value, list):
        return [_coerce(v, args[0]) for v in value] if args else value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is tuple and isinstance(value, list):
        return tuple(value)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return config_from_dict(hint, value)
    return value


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a config dataclass from its JSON form (``config.json``)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise RunError(f"{cls.__name__} has no field(s) {unknown}; was the run made by another version of the agent?")
    return cls(**{k: _coerce(v, hints.get(k)) for k, v in data.items()})


def budget_field(spec) -> str:
    """The agent's budget (env steps) config field, as its ``AgentSpec`` declares it."""
    return spec.budget_field


def config_budget(spec, config) -> int | None:
    name = budget_field(spec)
    value = getattr(config, name, None) if name else None
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ====================================================================== machine and version
def machine_info() -> str:
    from morl.bench import machine

    return machine()


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """``morl`` version, with the git commit when running from a checkout."""
    import morl

    version = morl.__version__
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(morl.__file__).parent,
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            version += f"+g{out.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return version


# ====================================================================== run folders
@dataclass
class RunInfo:
    """What a listing knows about a run folder. ``status``: done, running, interrupted, failed, corrupt."""

    id: str
    path: Path
    status: str
    meta: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    problem: str | None = None

    @property
    def agent(self) -> str:
        return (self.meta or {}).get("agent", "?")

    @property
    def env(self) -> str:
        return (self.meta or {}).get("env", "?")

    @property
    def seed(self) -> int | None:
        return (self.meta or {}).get("seed")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: Path) -> dict[str, Any] | None:
    """The lock of a run folder if a live process on this host holds it."""
    try:
        lock = json.loads((path / LOCK_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if lock.get("host") == socket.gethostname() and isinstance(lock.get("pid"), int):
        return lock if _pid_alive(lock["pid"]) else None
    return lock  # another host: assume it is alive (shared disk)


_REQUIRED_META = ("run_id", "agent", "env", "seed", "config")


def read_run(path: str | Path) -> RunInfo:
    """Inspect a run folder; never raises: a broken folder comes back with ``status="corrupt"``."""
    path = Path(path)
    rid = path.name
    cfg = path / CONFIG_FILE
    if not cfg.exists():
        return RunInfo(rid, path, "corrupt", problem=f"no {CONFIG_FILE} (half-created or not a run folder)")
    try:
        meta = json.loads(cfg.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        missing = [k for k in _REQUIRED_META if k not in meta]
        if missing:
            raise ValueError(f"missing keys {missing}")
    except (OSError, ValueError) as exc:
        return RunInfo(rid, path, "corrupt", problem=f"unreadable {CONFIG_FILE}: {exc}")
    res = path / RESULT_FILE
    if res.exists():
        try:
            result = json.loads(res.read_text())
            if not isinstance(result, dict) or "metrics" not in result:
                raise ValueError("no metrics")
        except (OSError, ValueError) as exc:
            return RunInfo(rid, path, "corrupt", meta, problem=f"unreadable {RESULT_FILE}: {exc}")
        return RunInfo(rid, path, "done", meta, result)
    if read_lock(path) is not None:
        return RunInfo(rid, path, "running", meta)
    if (path / ERROR_FILE).exists():
        first = (path / ERROR_FILE).read_text().strip().splitlines()[-1:] or ["?"]
        return RunInfo(rid, path, "failed", meta, problem=first[0])
    return RunInfo(rid, path, "interrupted", meta)


def list_runs(runs_dir: str | Path) -> tuple[list[RunInfo], list[RunInfo]]:
    """(readable runs, corrupt folders) under ``runs_dir``, oldest first."""
    runs_dir = Path(runs_dir)
    good, bad = [], []
    if not runs_dir.is_dir():
        return good, bad
    for p in sorted(runs_dir.iterdir()):
        if not p.is_dir() or p.name.startswith("."):
            continue
        info = read_run(p)
        (bad if info.status == "corrupt" else good).append(info)
    good.sort(key=lambda r: (r.meta.get("created", ""), r.id))
    return good, bad


def find_run(runs_dir: str | Path, ref: str) -> RunInfo:
    """A run by id, unique id prefix, or folder path; a clear error otherwise."""
    import difflib

    p = Path(ref)
    if p.is_dir() and ((p / CONFIG_FILE).exists() or (p / CKPT_DIR).exists()):
        return read_run(p)
    runs_dir = Path(runs_dir)
    if (runs_dir / ref).is_dir():
        return read_run(runs_dir / ref)
    ids = sorted(q.name for q in runs_dir.iterdir() if q.is_dir()) if runs_dir.is_dir() else []
    matches = [i for i in ids if i.startswith(ref)]
    if len(matches) == 1:
        return read_run(runs_dir / matches[0])
    if len(matches) > 1:
        raise RunError(f"run id prefix {ref!r} is ambiguous in {runs_dir}: {', '.join(matches[:5])}; give more of the id")
    close = difflib.get_close_matches(ref, ids, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise RunError(f"no run {ref!r} in {runs_dir}.{hint} `morl runs --runs-dir {runs_dir}` lists the runs.")


def new_run_id(agent: str, env_id: str, seed: int) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    short_env = env_id.replace("gym:", "gym-").replace("/", "-")
    return f"{agent}_{short_env}_s{seed}_{stamp}_{os.urandom(2).hex()}"


# ====================================================================== checkpoints
def _key_is_typed(x) -> bool:
    import jax

    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


class Checkpointer:
    """orbax ``CheckpointManager`` over a run's ``checkpoints/`` folder (the last ``max_to_keep`` kept)."""

    def __init__(self, directory: str | Path, max_to_keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            item_handlers={"state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True))

    def steps(self) -> list[int]:
        self.manager.reload()
        return sorted(self.manager.all_steps())

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Save ``state`` as step ``step`` (no-op if that step exists). Every leaf is stored as a numpy array of
        its own dtype (host buffers keep float64/int64); what it was (jax array, numpy array, typed PRNG key,
        Python scalar) and zero-size leaves (which orbax cannot write) go into the step's JSON metadata."""
        import jax

        ocp = self._ocp
        if step in self.manager.all_steps():
            return
        kinds: dict[str, str] = {}
        empty: dict[str, list] = {}

        def encode(path, x):
            name = jax.tree_util.keystr(path)
            if _key_is_typed(x):
                kinds[name] = "key:" + str(jax.random.key_impl(x))
                x = jax.random.key_data(x)
            elif isinstance(x, jax.Array):
                kinds[name] = "jax"
            elif isinstance(x, (np.ndarray, np.generic)):
                kinds[name] = "numpy"
            elif isinstance(x, (bool, int, float)):
                kinds[name] = "python:" + type(x).__name__
            else:
                raise RunError(f"train state leaf {name} is a {type(x).__name__}; a train state holds arrays only")
            a = np.asarray(x)
            if a.size == 0:
                empty[name] = [list(a.shape), a.dtype.str]
                return None
            return a

        plain = jax.tree_util.tree_map_with_path(encode, state)
        with _sigint_deferred():  # Ctrl-C mid-save would leave orbax's threads and event loop half torn down
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeSave(plain),
                meta=ocp.args.JsonSave(clean_json(meta | {"leaf_kinds": kinds, "empty_leaves": empty}))), force=True)
            self.manager.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """The state saved at ``step`` (default: the latest), with ``template``'s tree structure, and its meta.

        Shapes and dtypes come from the checkpoint (so a state that grew restores), the tree structure and
        node types from ``template`` (e.g. ``jax.eval_shape(trainer.init, key)``)."""
        import jax
        import jax.numpy as jnp

        ocp = self._ocp
        step = self.latest() if step is None else step
        if step is None:
            raise RunError(f"no checkpoint in {self.directory}")
        item = self.manager.item_metadata(step)["state"]
        args = {"meta": ocp.args.JsonRestore()}
        if jax.tree.leaves(item):  # restore every leaf as numpy, with its saved dtype
            args["state"] = ocp.args.PyTreeRestore(
                restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item))
        raw = self.manager.restore(step, args=ocp.args.Composite(**args))
        meta = dict(raw["meta"])
        saved = raw["state"] if "state" in args else None
        kinds, empty = meta.get("leaf_kinds", {}), meta.get("empty_leaves", {})
        flat, treedef = jax.tree_util.tree_flatten_with_path(template)
        leaves = []
        for path, tmpl in flat:
            name = jax.tree_util.keystr(path)
            if name in empty:
                shape, dtype = empty[name]
                value = np.zeros(shape, np.dtype(dtype))
            else:
                value = saved
                for entry in path:
                    value = _lookup(value, entry, path)
            kind = kinds.get(name) or ("key:" + str(jax.random.key_impl(tmpl)) if _key_is_typed(tmpl) else "jax")
            if kind.startswith("key:"):
                leaves.append(jax.random.wrap_key_data(jnp.asarray(value), impl=kind[4:]))
            elif kind == "numpy":
                leaves.append(np.array(value))  # a writable host copy, dtype as saved
            elif kind.startswith("python:"):
                leaves.append({"bool": bool, "int": int, "float": float}[kind[7:]](np.asarray(value).item()))
            else:
                leaves.append(jnp.asarray(value))
        return jax.tree_util.tree_unflatten(treedef, leaves), meta

    def close(self) -> None:
        self.manager.close()


class _sigint_deferred:
    """Hold SIGINT (Ctrl-C) back while a checkpoint is written; raise KeyboardInterrupt once it is committed.

    Only in the main thread (the only one Python delivers signals to); elsewhere a no-op."""

    def __enter__(self):
        import signal
        import threading

        self.pending = False
        self.old = None
        if threading.current_thread() is threading.main_thread():
            try:
                self.old = signal.signal(signal.SIGINT, self._hold)
            except (ValueError, TypeError):
                self.old = None
        return self

    def _hold(self, signum, frame):
        self.pending = True

    def __exit__(self, exc_type, exc, tb):
        import signal

        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
        if self.pending and exc_type is None:
            raise KeyboardInterrupt
        return False


def _lookup(node: Any, entry: Any, path: Any) -> Any:
    import jax

    tu = jax.tree_util
    if isinstance(entry, tu.GetAttrKey):
        keys = [entry.name]
    elif isinstance(entry, tu.DictKey):
        keys = [entry.key, str(entry.key)]
    elif isinstance(entry, (tu.SequenceKey, tu.FlattenedIndexKey)):
        keys = [entry.idx, str(entry.idx)]
    else:
        keys = [entry]
    for k in keys:
        try:
            return node[k]
        except (KeyError, IndexError, TypeError):
            continue
    raise RunError(f"checkpoint does not match the agent's state at {jax.tree_util.keystr(path)}: was it written "
                   "by another version of the agent? (the state's tree structure must not change)")


# ====================================================================== training
@dataclass
class RunRequest:
    """What to train: everything ``config.json`` records."""

    agent: str
    env: str
    seed: int
    config: Any                         # the agent's config dataclass
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    protocol: Any = None                # morl.evaluate.EvalProtocol (default: its defaults)
    eval_every: int | None = None       # env steps between evaluations; None = budget / 10; 0 = final only
    checkpoint_secs: float = 60.0       # wall seconds between checkpoints (and one after every evaluation)
    suite: str | None = None


@dataclass
class ProgressEvent:
    run_id: str
    seed: int
    env_steps: int
    budget: int | None
    fraction: float | None
    hv: float | None
    update: int
    logs: dict[str, float]
    finished: bool = False


def create_run(runs_dir: str | Path, req: RunRequest) -> RunInfo:
    """Make the run folder and its ``config.json``."""
    from morl.agent import agent_spec
    from morl.evaluate import EvalProtocol

    spec = agent_spec(req.agent)
    protocol = req.protocol or EvalProtocol()
    budget = config_budget(spec, req.config)
    eval_every = req.eval_every if req.eval_every is not None else (max(1, budget // 10) if budget else 0)
    rid = new_run_id(req.agent, req.env, req.seed)
    path = Path(runs_dir) / rid
    path.mkdir(parents=True, exist_ok=False)
    meta = {
        "format": RUN_FORMAT, "run_id": rid, "agent": req.agent, "env": req.env, "env_kwargs": req.env_kwargs,
        "seed": int(req.seed), "config": config_to_dict(req.config), "budget": budget,
        "budget_field": budget_field(spec), "protocol": protocol.as_dict(), "eval_every": int(eval_every),
        "checkpoint_secs": float(req.checkpoint_secs), "suite": req.suite, "imports": list(IMPORTS), "created": now_iso(),
        "machine": machine_info(), "version": package_version(),
    }
    atomic_write_json(path / CONFIG_FILE, meta)
    return RunInfo(rid, path, "interrupted", meta)


_BUILT: dict[str, tuple] = {}

#: modules imported for this process by ``morl --import`` / ``$MORL_IMPORT``; recorded in every new run's
#: ``config.json`` ("imports") so that eval, plot and resume import them again by themselves
IMPORTS: list[str] = []


def import_modules(modules: Iterable[str], why: str = "--import / MORL_IMPORT") -> None:
    """Import ``modules`` (the current folder importable, as with ``python -m``); a clear `RunError` if one fails."""
    import importlib
    import sys

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for m in modules:
        m = m.strip()
        if not m:
            continue
        try:
            importlib.import_module(m)
        except ImportError as exc:
            raise RunError(f"cannot import {m!r} ({why}): {exc}; run from the folder that holds it, add that "
                           "folder to PYTHONPATH, or install its package") from None


def _import_recorded(meta: dict[str, Any]) -> None:
    mods = [m for m in meta.get("imports") or [] if isinstance(m, str)]
    if mods:
        import_modules(mods, why=f"recorded by run {meta.get('run_id', '?')}")


def build(meta: dict[str, Any]):
    """(spec, env, env_params, config, trainer, protocol) for a run's ``config.json``.

    Envs and trainers are cached per (agent, env, env kwargs, config) within a process: both are
    stateless (the protocol keeps everything in the state pytree), and reusing them reuses their
    compiled functions, so the seeds of a group and the runs of a suite compile once.
    """
    import morl
    from morl.agent import agent_spec, make_trainer
    from morl.registry import UnknownEnvError

    _import_recorded(meta)
    rid = meta.get("run_id", "?")
    try:
        spec = agent_spec(meta["agent"])
    except KeyError:
        raise RunError(f"run {rid} was trained by agent {meta['agent']!r}, which is not registered in this process; "
                       "pass `--import MODULE` naming the module that registers it") from None
    config = config_from_dict(spec.config_cls, meta["config"])
    key = json.dumps([meta["agent"], meta["env"], meta.get("env_kwargs") or {}, meta["config"], id(spec)],
                     sort_keys=True, default=str)
    if key not in _BUILT:
        env_key = json.dumps([meta["env"], meta.get("env_kwargs") or {}], sort_keys=True, default=str)
        env_pair = next((v[:2] for k, v in _BUILT.items() if v[3] == env_key), None)
        try:
            env, env_params = env_pair or morl.make(meta["env"], **(meta.get("env_kwargs") or {}))
        except UnknownEnvError:
            raise RunError(f"run {rid} was trained on env {meta['env']!r}, which is not registered in this process; "
                           "pass `--import MODULE` naming the module that registers it "
                           f"(e.g. `morl --import my_package.envs eval {rid}`)") from None
        _BUILT[key] = (env, env_params, make_trainer(meta["agent"], env, env_params, config=config), env_key)
    env, env_params, trainer, _ = _BUILT[key]
    protocol = protocol_from_dict(meta.get("protocol") or {})
    return spec, env, env_params, config, trainer, protocol


def protocol_from_dict(data: dict[str, Any]):
    from morl.evaluate import EvalProtocol

    return config_from_dict(EvalProtocol, {k: v for k, v in data.items()
                                           if k in {f.name for f in dataclasses.fields(EvalProtocol)}})


def _eval_key(seed: int, update: int):
    """Evaluation keys: from the seed and the chunk number (0 = the final evaluation), never from the train key."""
    import jax

    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 0x5EED), update)


def final_eval_key(seed: int):
    return _eval_key(seed, 0)


def evaluate_state(trainer, state, env, env_params, protocol, key):
    from morl.evaluate import evaluate

    return evaluate(trainer.solution(state), env, env_params, protocol, key=key)


def _scalar_logs(logs: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in (logs or {}).items():
        try:
            out[str(k)] = float(np.asarray(v).reshape(()))
        except (TypeError, ValueError):
            continue
    return out


def _template(trainer, key):
    import jax

    try:
        return jax.eval_shape(trainer.init, key)
    except Exception:  # an init with host logic: build a real one
        return trainer.init(key)


class _Driver:
    """Bookkeeping of one run during training: metrics rows, evaluations, checkpoints, final files."""

    def __init__(self, info: RunInfo, trainer, env, env_params, protocol, spec, store: Store | None):
        self.info, self.meta = info, info.meta
        self.trainer, self.env, self.env_params, self.protocol = trainer, env, env_params, protocol
        self.seed = int(self.meta["seed"])
        self.budget = self.meta.get("budget")
        self.eval_every = int(self.meta.get("eval_every") or 0)
        self.checkpoint_secs = float(self.meta.get("checkpoint_secs", 60.0))
        self.store = store
        self.ckpt = Checkpointer(info.path / CKPT_DIR)
        self.update = 0
        self.next_eval = self.eval_every if self.eval_every > 0 else None
        self.wall_before = 0.0
        self.t0 = time.perf_counter()
        self.last_ckpt = time.perf_counter()
        self.hv: float | None = None
        self.rows_file = info.path / METRICS_JSONL

    # -------------------------------------------------------------- start / resume
    def lock(self) -> None:
        """Take ``train.lock`` (O_EXCL, so two processes never both train a run); a dead holder's lock is taken over."""
        path = self.info.path / LOCK_FILE
        text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": now_iso()})
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = read_lock(self.info.path)
                if held is not None and held.get("pid") != os.getpid():
                    raise RunError(f"run {self.info.id} is being trained by pid {held.get('pid')} on "
                                   f"{held.get('host')}; stop that process first (or delete {path} if it is gone)")
                path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(text)
            break
        (self.info.path / ERROR_FILE).unlink(missing_ok=True)

    def unlock(self) -> None:
        (self.info.path / LOCK_FILE).unlink(missing_ok=True)

    def start_clock(self) -> None:
        self.t0 = self.last_ckpt = time.perf_counter()

    def fresh(self):
        import jax

        self.start_clock()
        atomic_write_text(self.rows_file, "")
        return self.trainer.init(jax.random.PRNGKey(self.seed))

    def resume(self):
        """The state at the last checkpoint (or a fresh one), with metrics rows repaired to match it."""
        import jax

        self.start_clock()
        step = self.ckpt.latest()
        if step is None:
            return self.fresh(), False
        state, meta = self.ckpt.restore(_template(self.trainer, jax.random.PRNGKey(self.seed)), step)
        loop = meta.get("loop", {})
        self.update = int(loop.get("update", step))
        self.next_eval = loop.get("next_eval")
        self.wall_before = float(loop.get("wall_time", 0.0))
        self.hv = loop.get("hv")
        rows = [r for r in read_jsonl(self.rows_file) if r.get("update", 0) <= self.update]
        atomic_write_text(self.rows_file, "".join(json.dumps(clean_json(r), allow_nan=False) + "\n" for r in rows))
        return state, True

    # -------------------------------------------------------------- per chunk
    def wall_time(self) -> float:
        return self.wall_before + (time.perf_counter() - self.t0)

    def after_update(self, state, logs) -> ProgressEvent:
        self.update += 1
        steps = int(self.trainer.env_steps(state))
        logs = _scalar_logs(logs)
        row: dict[str, Any] = {"update": self.update, "env_steps": steps, "wall_time": round(self.wall_time(), 4)}
        row.update({f"train/{k}": v for k, v in logs.items()})
        # the agent's own running HV (e.g. C-MORL's "buffer_hv") shows in the progress bar between evaluations
        hv_keys = [k for k in logs if k in ("hypervolume", "hv") or k.endswith(("_hv", "_hypervolume"))]
        if hv_keys and math.isfinite(logs[hv_keys[0]]):
            self.hv = logs[hv_keys[0]]
        evaluated = False
        if self.next_eval is not None and steps >= self.next_eval and not self.trainer.done(state):
            try:
                front = evaluate_state(self.trainer, state, self.env, self.env_params, self.protocol,
                                       _eval_key(self.seed, self.update))
            except Exception as exc:  # e.g. no solution yet early in training: recorded, training goes on
                row["eval/error"] = f"{type(exc).__name__}: {exc}"[:300]
            else:
                row.update({f"eval/{k}": v for k, v in front.metrics.items()})
                self.hv = front.metrics.get("hypervolume", self.hv)
            while self.next_eval <= steps:
                self.next_eval += self.eval_every
            evaluated = True
        with open(self.rows_file, "a") as f:
            f.write(json.dumps(clean_json(row), allow_nan=False) + "\n")
        if evaluated or time.perf_counter() - self.last_ckpt >= self.checkpoint_secs:
            self.checkpoint(state)
        return self.event(steps, logs)

    def event(self, steps: int, logs: dict[str, float], finished: bool = False) -> ProgressEvent:
        fraction = min(1.0, steps / self.budget) if self.budget else None
        return ProgressEvent(self.info.id, self.seed, steps, self.budget, fraction, self.hv, self.update, logs, finished)

    def checkpoint(self, state) -> None:
        loop = {"update": self.update, "next_eval": self.next_eval, "wall_time": self.wall_time(), "hv": self.hv,
                "env_steps": int(self.trainer.env_steps(state))}
        self.ckpt.save(self.update, state, {"loop": loop})
        self.last_ckpt = time.perf_counter()

    # -------------------------------------------------------------- the end
    def finish(self, state) -> dict[str, Any]:
        self.checkpoint(state)
        front = evaluate_state(self.trainer, state, self.env, self.env_params, self.protocol, final_eval_key(self.seed))
        steps = int(self.trainer.env_steps(state))
        write_front_files(self.info.path, self.env, front)
        rows = read_jsonl(self.rows_file)
        write_metrics_csv(self.info.path / METRICS_CSV, rows)
        proto = clean_json(front.protocol)
        result = {
            "run_id": self.info.id, "status": "done", "env_steps": steps, "updates": self.update,
            "wall_time": self.wall_time(), "metrics": front.metrics, "protocol": proto,
            "protocol_hash": protocol_hash(proto), "front_size": int(front.front.shape[0]),
            "candidates": int(front.returns.shape[0]), "finished": now_iso(),
            "machine": machine_info(), "version": package_version(),
        }
        atomic_write_json(self.info.path / RESULT_FILE, result)
        if self.store is not None:
            self.store.record_run(store_row(self.meta, result, self.info.path))
        self.ckpt.close()
        return result


def store_row(meta: dict[str, Any], result: dict[str, Any], path: Path) -> dict[str, Any]:
    return {
        # keyed by the folder name: a copied or renamed run folder is indexed (and re-evaluated) under its own name
        "run_id": Path(path).name, "agent": meta["agent"], "env": meta["env"], "env_kwargs": meta.get("env_kwargs") or {},
        "seed": meta["seed"], "config": meta["config"], "budget": meta.get("budget"), "env_steps": result["env_steps"],
        "wall_time": result["wall_time"], "machine": result.get("machine") or meta.get("machine"),
        "version": result.get("version") or meta.get("version"), "protocol": result["protocol"],
        "protocol_hash": result["protocol_hash"], "metrics": result["metrics"], "suite": meta.get("suite"),
        "path": str(Path(path).absolute()), "created": meta.get("created"), "finished": result.get("finished"),
    }


def write_front_files(path: Path, env, front) -> None:
    m = front.returns.shape[1]
    names = [str(n) for n in (env.reward_names or ())] if len(env.reward_names or ()) == m else [f"objective_{i}" for i in range(m)]
    names = [n.replace(",", ";") for n in names]
    atomic_write_text(path / FRONT_CSV, _csv_text(names, front.front.tolist()))
    from morl.pareto import non_dominated

    mask = non_dominated(front.returns, return_mask=True, keep_duplicates=True)
    mask = mask[1] if isinstance(mask, tuple) else mask
    w = front.weights if front.weights is not None else np.full_like(front.returns, np.nan)
    header = ["candidate"] + [f"w_{n}" for n in names] + names + [f"undiscounted_{n}" for n in names] + ["non_dominated"]
    rows = [[i, *w[i].tolist(), *front.returns[i].tolist(), *front.undiscounted_returns[i].tolist(), int(bool(mask[i]))]
            for i in range(front.returns.shape[0])]
    atomic_write_text(path / RETURNS_CSV, _csv_text(header, rows))


def write_metrics_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    atomic_write_text(path, _csv_text(cols, ([r.get(c) for c in cols] for r in rows)))


# ====================================================================== the loops
def _prepare(info: RunInfo, store: Store | None):
    spec, env, env_params, config, trainer, protocol = build(info.meta)
    return _Driver(info, trainer, env, env_params, protocol, spec, store)


def store_for(runs_dir: str | Path) -> Store:
    return Store(Path(runs_dir) / DB_NAME)


def train_runs(runs: list[RunInfo], *, resume: bool = False, progress: Callable[[ProgressEvent], None] | None = None,
               vmap_seeds: bool = True, store: Store | None | bool = True) -> list[dict[str, Any]]:
    """Train (or resume) runs to the end of their budget; returns each run's ``result.json`` content.

    Runs of the same agent, env and config with a ``vmappable`` trainer are trained as one vmapped
    program (fresh starts only); everything else runs one after another.
    """
    results: list[dict[str, Any]] = []
    for info in runs:
        if info.status == "done":
            raise RunError(f"run {info.id} is already finished; `morl eval {info.id}` re-evaluates it")
        if info.status == "corrupt":
            raise RunError(f"run folder {info.path} is corrupt ({info.problem}); delete it and train again")
        if info.status == "running":
            raise RunError(f"run {info.id} is being trained by another process (see {info.path / LOCK_FILE})")
    stores = {}

    def store_of(info):
        if store is False or store is None:
            return None
        if isinstance(store, Store):
            return store
        d = str(info.path.parent)
        return stores.setdefault(d, store_for(d))

    drivers = [_prepare(info, store_of(info)) for info in runs]
    same = len({json.dumps([d.meta["agent"], d.meta["env"], d.meta.get("env_kwargs"), d.meta["config"]], sort_keys=True)
                for d in drivers}) == 1
    if (vmap_seeds and not resume and len(drivers) > 1 and same
            and drivers[0].trainer.vmappable):
        return _train_vmapped(drivers, progress)
    for d in drivers:
        results.append(_train_one(d, resume, progress))
    return results


def _run_guarded(drivers: list[_Driver], body: Callable[[], Any]) -> Any:
    for d in drivers:
        d.lock()
    try:
        return body()
    except BaseException as exc:
        for d in drivers:
            if not isinstance(exc, KeyboardInterrupt):
                atomic_write_text(d.info.path / ERROR_FILE, "".join(traceback.format_exception(exc)))
        raise
    finally:
        for d in drivers:
            d.unlock()


#: the training loops' Ctrl-C bookkeeping: ``depth`` > 0 while a loop runs (there a Ctrl-C stops after the chunk in
#: flight and checkpoints the last finished one; the CLI exits at once elsewhere), ``requested`` once one came
#: (a KeyboardInterrupt that lands in a gc or weakref callback is swallowed by Python; the flag is not)
INTERRUPT = {"depth": 0, "requested": False}


class _interruptible_loop:
    def __enter__(self):
        INTERRUPT["depth"] += 1
        INTERRUPT["requested"] = False

    def __exit__(self, *exc):
        INTERRUPT["depth"] -= 1
        return False


def _stop_if_interrupted() -> None:
    if INTERRUPT["requested"]:
        raise KeyboardInterrupt


def _checkpoint_on_interrupt(drivers: list[_Driver], states: list[Any]) -> None:
    """After Ctrl-C: checkpoint each run's last finished chunk (a save is never itself interrupted: a second
    Ctrl-C waits for it) and close orbax, so the process exits without its threads' tracebacks."""
    for d, s in zip(drivers, states):
        try:
            d.checkpoint(s)
        except KeyboardInterrupt:  # a Ctrl-C held back during that save: the save is committed; go on
            pass
    for d in drivers:
        try:
            d.ckpt.close()
        except Exception:
            pass


def _train_one(d: _Driver, resume: bool, progress) -> dict[str, Any]:
    def body():
        state, resumed = d.resume() if resume else (d.fresh(), False)
        if progress:
            progress(d.event(int(d.trainer.env_steps(state)), {}))
        try:
            with _interruptible_loop():
                while not d.trainer.done(state):
                    new_state, logs = d.trainer.update(state)
                    state = new_state
                    event = d.after_update(state, logs)
                    if progress:
                        progress(event)
                    _stop_if_interrupted()
        except KeyboardInterrupt:
            _checkpoint_on_interrupt([d], [state])  # the last finished chunk; the one in flight is lost
            raise
        result = d.finish(state)
        if progress:
            progress(dataclasses.replace(d.event(result["env_steps"], {}, finished=True),
                                         hv=result["metrics"].get("hypervolume")))
        return result

    return _run_guarded([d], body)


def _train_vmapped(drivers: list[_Driver], progress) -> list[dict[str, Any]]:
    import jax

    trainer = drivers[0].trainer
    keys = jax.numpy.stack([jax.random.PRNGKey(d.seed) for d in drivers])
    vinit, vupdate = jax.jit(jax.vmap(trainer.init)), jax.jit(jax.vmap(trainer.update))

    def member(tree, i):
        return jax.tree.map(lambda x: x[i], tree)

    def body():
        for d in drivers:  # one program: each seed's wall time is the group's
            d.start_clock()
            atomic_write_text(d.rows_file, "")
        state = vinit(keys)
        states = [member(state, i) for i in range(len(drivers))]
        if progress:  # the bars start before the first chunk compiles (total: the budget, as `_train_one`)
            for d, s in zip(drivers, states):
                progress(d.event(int(trainer.env_steps(s)), {}))
        try:
            with _interruptible_loop():
                while not trainer.done(states[0]):
                    state, logs = vupdate(state)
                    states = [member(state, i) for i in range(len(drivers))]
                    for i, d in enumerate(drivers):
                        event = d.after_update(states[i], member(logs, i))
                        if progress:
                            progress(event)
                    _stop_if_interrupted()
        except KeyboardInterrupt:
            _checkpoint_on_interrupt(drivers, states)
            raise
        out = []
        for d, s in zip(drivers, states):
            result = d.finish(s)
            out.append(result)
            if progress:
                progress(dataclasses.replace(d.event(result["env_steps"], {}, finished=True),
                                             hv=result["metrics"].get("hypervolume")))
        return out

    return _run_guarded(drivers, body)


# ====================================================================== re-evaluation
def reevaluate(info: RunInfo, protocol, key=None, record: bool = True):
    """Evaluate a run's last checkpoint under ``protocol``; stores the result when the run is finished.

    Returns (front, notes).
    """
    import jax

    if info.status == "corrupt":
        raise RunError(f"run folder {info.path} is corrupt ({info.problem}); it cannot be evaluated")
    spec, env, env_params, config, trainer, _ = build(info.meta)
    ckpt = Checkpointer(info.path / CKPT_DIR)
    try:
        if ckpt.latest() is None:
            raise RunError(f"run {info.id} has no checkpoint yet (status {info.status}); nothing to evaluate")
        state, meta = ckpt.restore(_template(trainer, jax.random.PRNGKey(int(info.meta["seed"]))))
    finally:
        ckpt.close()
    final_key = key is None
    key = final_eval_key(int(info.meta["seed"])) if key is None else key
    front = evaluate_state(trainer, state, env, env_params, protocol, key)
    notes = []
    proto = clean_json(front.protocol)
    h = protocol_hash(proto)
    if (info.status == "done" and final_key and h == (info.result or {}).get("protocol_hash")
            and front_files_problem(info.path, info.result) is not None):
        # the final evaluation reproduced exactly (same checkpoint, protocol and key): restore its damaged files
        write_front_files(info.path, env, front)
        notes.append(f"rewrote the damaged {FRONT_CSV} and {RETURNS_CSV} of run {info.id} from this evaluation")
    if info.status != "done":
        notes.append(f"run is {info.status}: evaluated its checkpoint at {meta.get('loop', {}).get('env_steps', '?')} "
                     "env steps; not recorded in the store")
    elif record:
        atomic_write_json(info.path / EVALS_DIR / f"{h}.json", {"protocol": proto, "protocol_hash": h,
                                                                 "metrics": front.metrics, "evaluated": now_iso()})
        st = store_for(info.path.parent)
        if st.get(info.id) is None:
            st.record_run(store_row(info.meta, info.result, info.path))
        st.record_evaluation(info.id, proto, front.metrics)
    return front, notes


def front_files_problem(path: Path, result: dict[str, Any] | None = None) -> str | None:
    """What is wrong with a finished run's ``front.csv``/``returns.csv`` (None if they agree with each other and
    with ``result.json``): catches files that were truncated but still parse."""
    try:
        names, front = _parse_front_csv(path / FRONT_CSV)
    except (OSError, ValueError) as exc:
        return f"{FRONT_CSV}: {exc}"
    try:
        arr = np.loadtxt(path / RETURNS_CSV, delimiter=",", skiprows=1, ndmin=2)
    except (OSError, ValueError) as exc:
        return f"{RETURNS_CSV}: {exc}"
    m = len(names)
    expected = (result or {}).get("front_size")
    if isinstance(expected, int) and expected != front.shape[0]:
        return f"{FRONT_CSV} has {front.shape[0]} point(s), result.json says {expected}"
    if arr.size and arr.shape[1] < 1 + 2 * m:
        return f"{RETURNS_CSV} has {arr.shape[1]} columns, expected at least {1 + 2 * m}"
    expected = (result or {}).get("candidates")
    if isinstance(expected, int) and expected != arr.shape[0]:
        return f"{RETURNS_CSV} has {arr.shape[0]} row(s), result.json says {expected}"
    cands = arr[:, 1 + m:1 + 2 * m] if arr.size else arr
    if cands.size and front.size and not all((cands == p).all(axis=1).any() for p in front):
        return f"the points of {FRONT_CSV} are not among the evaluated candidates of {RETURNS_CSV}"
    return None


def reindex(runs_dir: str | Path, moved: list[Path] | None = None) -> tuple[int, list[RunInfo]]:
    """Rebuild the store's rows from finished run folders (e.g. copied from another machine).

    A damaged database (truncated, overwritten) is renamed ``results.sqlite.damaged-<time>`` and rebuilt from
    the folders; its new name is appended to ``moved``."""
    good, bad = list_runs(runs_dir)
    st = store_for(runs_dir)
    problem = st.check()
    if problem is not None:
        aside = st.move_aside()
        if moved is not None:
            moved.append(aside)
        st = store_for(runs_dir)
    n = 0
    for info in good:
        if info.status != "done":
            continue
        st.record_run(store_row(info.meta, info.result, info.path))
        for ev in sorted((info.path / EVALS_DIR).glob("*.json")):
            try:
                data = json.loads(ev.read_text())
                st.record_evaluation(info.id, data["protocol"], data["metrics"])
            except (OSError, ValueError, KeyError):
                bad.append(RunInfo(info.id, info.path, "corrupt", info.meta, problem=f"unreadable {ev.name}"))
        n += 1
    return n, bad
