"""Run folders: ids, creation, the training lock, what state a folder is in, and the store rows made from them.

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
    evals/          one JSON per later ``morl eval`` of a finished run, keyed by protocol hash

The folders are the source of truth; the store is an index rebuilt from them by `reindex`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morl.runs.config import IMPORTS, budget_field, config_budget, config_to_dict, machine_info, package_version
from morl.runs.files import (
    CKPT_DIR,
    CONFIG_FILE,
    ERROR_FILE,
    EVALS_DIR,
    LOCK_FILE,
    RESULT_FILE,
    RUN_FORMAT,
    RunError,
    atomic_write_json,
)
from morl.store import DB_NAME, Store, now_iso


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


@dataclass
class RunRequest:
    """What to train: everything ``config.json`` records."""

    agent: str
    env: str
    seed: int
    config: Any  # the agent's config dataclass
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    protocol: Any = None  # morl.evaluate.EvalProtocol (default: its defaults)
    eval_every: int | None = None  # env steps between evaluations; None = budget / 10; 0 = final only
    checkpoint_secs: float = 60.0  # wall seconds between checkpoints (and one after every evaluation)
    suite: str | None = None


def new_run_id(agent: str, env_id: str, seed: int) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    short_env = env_id.replace("gym:", "gym-").replace("/", "-")
    return f"{agent}_{short_env}_s{seed}_{stamp}_{os.urandom(2).hex()}"


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
        "format": RUN_FORMAT,
        "run_id": rid,
        "agent": req.agent,
        "env": req.env,
        "env_kwargs": req.env_kwargs,
        "seed": int(req.seed),
        "config": config_to_dict(req.config),
        "budget": budget,
        "budget_field": budget_field(spec),
        "protocol": protocol.as_dict(),
        "eval_every": int(eval_every),
        "checkpoint_secs": float(req.checkpoint_secs),
        "suite": req.suite,
        "imports": list(IMPORTS),
        "created": now_iso(),
        "machine": machine_info(),
        "version": package_version(),
    }
    atomic_write_json(path / CONFIG_FILE, meta)
    return RunInfo(rid, path, "interrupted", meta)


# ---------------------------------------------------------------------- the training lock
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


def take_lock(info: RunInfo) -> None:
    """Take ``train.lock`` (O_EXCL, so two processes never both train a run); a dead holder's lock is taken over.

    Also clears the ``error.txt`` of an earlier failed attempt."""
    path = info.path / LOCK_FILE
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": now_iso()})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = read_lock(info.path)
            if held is not None and held.get("pid") != os.getpid():
                raise RunError(
                    f"run {info.id} is being trained by pid {held.get('pid')} on "
                    f"{held.get('host')}; stop that process first (or delete {path} if it is gone)"
                ) from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(text)
        break
    (info.path / ERROR_FILE).unlink(missing_ok=True)


def release_lock(info: RunInfo) -> None:
    (info.path / LOCK_FILE).unlink(missing_ok=True)


# ---------------------------------------------------------------------- reading folders
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


def check_trainable(info: RunInfo, resume: bool = False) -> None:
    """Raise `RunError` unless ``info`` can be trained (``resume``: continued from its checkpoint).

    A finished run is re-evaluated, not retrained; a corrupt folder cannot be trained; a running one belongs to
    another process."""
    if info.status == "done":
        raise RunError(f"run {info.id} is already finished; `morl eval {info.id}` re-evaluates it")
    if info.status == "corrupt":
        todo = "it cannot be resumed" if resume else "delete it and train again"
        raise RunError(f"run folder {info.path} is corrupt ({info.problem}); {todo}")
    if info.status == "running":
        if resume:
            raise RunError(f"run {info.id} is being trained by another process; stop it first")
        raise RunError(f"run {info.id} is being trained by another process (see {info.path / LOCK_FILE})")


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
        raise RunError(
            f"run id prefix {ref!r} is ambiguous in {runs_dir}: {', '.join(matches[:5])}; give more of the id"
        )
    close = difflib.get_close_matches(ref, ids, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise RunError(f"no run {ref!r} in {runs_dir}.{hint} `morl runs --runs-dir {runs_dir}` lists the runs.")


# ---------------------------------------------------------------------- the store's index of the folders
def store_for(runs_dir: str | Path) -> Store:
    return Store(Path(runs_dir) / DB_NAME)


def store_row(meta: dict[str, Any], result: dict[str, Any], path: Path) -> dict[str, Any]:
    return {
        # keyed by the folder name: a copied or renamed run folder is indexed (and re-evaluated) under its own name
        "run_id": Path(path).name,
        "agent": meta["agent"],
        "env": meta["env"],
        "env_kwargs": meta.get("env_kwargs") or {},
        "seed": meta["seed"],
        "config": meta["config"],
        "budget": meta.get("budget"),
        "env_steps": result["env_steps"],
        "wall_time": result["wall_time"],
        "machine": result.get("machine") or meta.get("machine"),
        "version": result.get("version") or meta.get("version"),
        "protocol": result["protocol"],
        "protocol_hash": result["protocol_hash"],
        "metrics": result["metrics"],
        "suite": meta.get("suite"),
        "path": str(Path(path).absolute()),
        "created": meta.get("created"),
        "finished": result.get("finished"),
    }


def reindex(
    runs_dir: str | Path,
    moved: list[Path] | None = None,
    only_unindexed: bool = False,
    known_sound: bool = False,
) -> tuple[int, list[RunInfo]]:
    """Rebuild the store's rows from finished run folders (e.g. copied from another machine).

    A damaged database (truncated, overwritten) is renamed ``results.sqlite.damaged-<time>`` and rebuilt from
    the folders; its new name is appended to ``moved``. ``only_unindexed`` skips folders whose row already
    points at them (see `synced_store`); ``known_sound`` skips the database check a caller has just made."""
    good, bad = list_runs(runs_dir)
    st = store_for(runs_dir)
    problem = None if known_sound else st.check()
    if problem is not None:
        aside = st.move_aside()
        if moved is not None:
            moved.append(aside)
        st = store_for(runs_dir)
    indexed = {r["run_id"]: r.get("path") for r in st.runs()} if only_unindexed else {}
    n = 0
    for info in good:
        if info.status != "done" or indexed.get(info.id) == str(info.path.absolute()):
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


def synced_store(runs_dir: str | Path) -> Store:
    """The store of ``runs_dir`` with every finished run folder in it indexed at its present path.

    Run folders are the source of truth and may arrive without the database: a results folder committed to a
    repository (``experiments/leaderboards/runs/<suite>``, whose ``.gitignore`` leaves out ``results.sqlite``
    and checkpoints) or copied from another machine. Suites and leaderboards read through this, so such
    folders count as finished runs in a fresh clone instead of being trained again."""
    st = store_for(runs_dir)
    db = Path(runs_dir) / DB_NAME
    # a damaged database is left as it is, for the reader's error to name it (`morl runs --reindex` repairs it);
    # a read-only folder (an archive) is read as it is
    writable = Path(runs_dir).is_dir() and os.access(runs_dir, os.W_OK)
    if writable and (not db.exists() or st.check() is None):
        reindex(runs_dir, only_unindexed=True, known_sound=True)
    return st
