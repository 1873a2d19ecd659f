"""The host loop that trains runs chunk by chunk: build a run's trainer, then train, checkpoint, evaluate, finish.

Determinism: the train state carries its own PRNG key and evaluations draw their keys from the seed and
the chunk number, so ``morl train --resume`` after SIGKILL ends with the same front as an uninterrupted
run, and ``morl eval RUN`` with the run's protocol reproduces its final metrics.

Seeds in one program: a trainer that sets ``vmappable = True`` declares that ``init(key)`` and
``update(state)`` are pure, traceable JAX functions (no host logic between them) and that ``done``,
``env_steps`` and ``solution`` read only the state. ``train_runs`` then runs all seeds as one
``jit(vmap(update))`` program where that pays (a GPU/TPU, `seeds_in_one_program`).

Seeds in lanes: elsewhere (a CPU, or an agent with host logic) the runs of one call train in `seed_lanes`
threads at once, each run exactly its one-seed program (same compiled functions, same inputs, so the same front
as the run trained alone); on a CPU one seed's small kernels leave cores idle.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from morl.runs.checkpoints import Checkpointer, state_template
from morl.runs.config import config_from_dict, import_recorded, machine_info, package_version, protocol_from_dict
from morl.runs.files import (
    CKPT_DIR,
    ERROR_FILE,
    EVALS_DIR,
    FRONT_CSV,
    METRICS_CSV,
    METRICS_JSONL,
    RESULT_FILE,
    RETURNS_CSV,
    RunError,
    atomic_write_json,
    atomic_write_text,
    front_files_problem,
    read_jsonl,
    write_front_files,
    write_metrics_csv,
)
from morl.runs.folders import RunInfo, check_trainable, release_lock, store_for, store_row, take_lock
from morl.store import Store, clean_json, now_iso, protocol_hash


@dataclass
class ProgressEvent:
    """What a progress callback of `train_runs` gets: one per run at its start, after each chunk, and at its end."""

    run_id: str
    seed: int
    env_steps: int
    budget: int | None
    fraction: float | None
    hv: float | None
    update: int
    logs: dict[str, float]
    finished: bool = False


class RunCallback:
    """Hooks a logger (`morl.loggers`) gets for one run while it trains: every metrics row as it is appended to
    ``metrics.jsonl``, then the finished run's ``result.json`` (its folder then holds the final front). The driver
    calls ``close`` when training stops, whether it finished or not."""

    def row(self, row: dict[str, Any]) -> None:
        pass

    def final(self, result: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


#: `build`'s cache: (agent, env, env kwargs, config) -> (env, env_params, trainer, env key), the most recently
#: used last. Bounded: a process that trains many configs one after another (`morl tune`'s trials, a suite) would
#: otherwise keep every trainer and its compiled programs, until compiling fails for want of memory maps.
_BUILT: collections.OrderedDict[str, tuple] = collections.OrderedDict()
BUILT_CACHE_SIZE = 16


def build(meta: dict[str, Any]):
    """(spec, env, env_params, config, trainer, protocol) for a run's ``config.json``.

    Envs and trainers of pure-JAX envs are cached per (agent, env, env kwargs, config) within a process: both are
    stateless (the protocol keeps everything in the state pytree), and reusing them reuses their
    compiled functions, so the seeds of a group and the runs of a suite compile once. A host env's trainer is not
    a value (its rollouts hold vector envs that step in place), so every run gets its own: runs in lanes step
    their own simulators.
    """
    import morl
    from morl.agent import agent_spec, make_trainer
    from morl.registry import UnknownEnvError

    import_recorded(meta)
    rid = meta.get("run_id", "?")
    try:
        spec = agent_spec(meta["agent"])
    except KeyError:
        raise RunError(
            f"run {rid} was trained by agent {meta['agent']!r}, which is not registered in this process; "
            "pass `--import MODULE` naming the module that registers it"
        ) from None
    config = config_from_dict(spec.config_cls, meta["config"])
    key = json.dumps(
        [meta["agent"], meta["env"], meta.get("env_kwargs") or {}, meta["config"], id(spec)],
        sort_keys=True,
        default=str,
    )
    if key in _BUILT:
        _BUILT.move_to_end(key)
        env, env_params, trainer, _ = _BUILT[key]
    else:
        env_key = json.dumps([meta["env"], meta.get("env_kwargs") or {}], sort_keys=True, default=str)
        env_pair = next((v[:2] for v in _BUILT.values() if v[3] == env_key), None)
        try:
            env, env_params = env_pair or morl.make(meta["env"], **(meta.get("env_kwargs") or {}))
        except UnknownEnvError:
            raise RunError(
                f"run {rid} was trained on env {meta['env']!r}, which is not registered in this process; "
                "pass `--import MODULE` naming the module that registers it "
                f"(e.g. `morl --import my_package.envs eval {rid}`)"
            ) from None
        trainer = make_trainer(meta["agent"], env, env_params, config=config)
        if not getattr(env, "is_host", False):
            _BUILT[key] = (env, env_params, trainer, env_key)
            while len(_BUILT) > BUILT_CACHE_SIZE:
                _BUILT.popitem(last=False)
    return spec, env, env_params, config, trainer, protocol_from_dict(meta.get("protocol") or {})


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
        self.make_callback: Callable[[RunInfo], RunCallback] | None = None
        self.callback: RunCallback | None = None

    # -------------------------------------------------------------- start / resume
    def lock(self) -> None:
        take_lock(self.info)

    def unlock(self) -> None:
        release_lock(self.info)

    def open_callback(self) -> None:
        if self.make_callback is not None:
            self.callback = self.make_callback(self.info)

    def close_callback(self) -> None:
        if self.callback is not None:
            self.callback.close()
            self.callback = None

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
        state, meta = self.ckpt.restore(state_template(self.trainer, jax.random.PRNGKey(self.seed)), step)
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
                front = evaluate_state(
                    self.trainer, state, self.env, self.env_params, self.protocol, _eval_key(self.seed, self.update)
                )
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
        if self.callback is not None:
            self.callback.row(clean_json(row))
        if evaluated or time.perf_counter() - self.last_ckpt >= self.checkpoint_secs:
            self.checkpoint(state)
        return self.event(steps, logs)

    def event(self, steps: int, logs: dict[str, float], finished: bool = False) -> ProgressEvent:
        fraction = min(1.0, steps / self.budget) if self.budget else None
        return ProgressEvent(
            self.info.id, self.seed, steps, self.budget, fraction, self.hv, self.update, logs, finished
        )

    def checkpoint(self, state) -> None:
        loop = {
            "update": self.update,
            "next_eval": self.next_eval,
            "wall_time": self.wall_time(),
            "hv": self.hv,
            "env_steps": int(self.trainer.env_steps(state)),
        }
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
            "run_id": self.info.id,
            "status": "done",
            "env_steps": steps,
            "updates": self.update,
            "wall_time": self.wall_time(),
            "metrics": front.metrics,
            "protocol": proto,
            "protocol_hash": protocol_hash(proto),
            "front_size": int(front.front.shape[0]),
            "candidates": int(front.returns.shape[0]),
            "finished": now_iso(),
            "machine": machine_info(),
            "version": package_version(),
        }
        atomic_write_json(self.info.path / RESULT_FILE, result)
        if self.callback is not None:
            self.callback.final(clean_json(result))
        if self.store is not None:
            self.store.record_run(store_row(self.meta, result, self.info.path))
        self.ckpt.close()
        return result


# ====================================================================== the loops
def _prepare(info: RunInfo, store: Store | None, callback: Callable[[RunInfo], RunCallback] | None = None):
    spec, env, env_params, config, trainer, protocol = build(info.meta)
    d = _Driver(info, trainer, env, env_params, protocol, spec, store)
    d.make_callback = callback
    return d


def seeds_in_one_program(vmap_seeds: bool | None = None) -> bool:
    """Whether several seeds of a ``vmappable`` agent train as one vmapped program: ``vmap_seeds``, or by default
    only on a GPU or TPU. On a CPU a vmapped program of S seeds does S seeds' arithmetic and costs more than S
    one-seed programs (measured on deep-sea-treasure, 4 seeds: Envelope 135 vs 118 s, PD-MORL 11.4 vs 8.7 s,
    MORL/D 20.0 vs 16.5 s), and its batched kernels round differently, so there one seed after another is both
    faster and bit-identical to each seed's own run (in `seed_lanes`)."""
    if vmap_seeds is not None:
        return bool(vmap_seeds)
    import jax

    from morl.agent import ACCELERATORS

    return jax.default_backend() in ACCELERATORS


#: at most this many runs train at once in `seed_lanes` (each lane holds a whole train state: replay buffers)
MAX_LANES = 8


def seed_lanes(n_runs: int, lanes: int | None = None) -> int:
    """How many runs `train_runs` trains at once (threads) when it does not vmap them: ``lanes``, or by default
    on a CPU one per core (at most `MAX_LANES`), elsewhere 1. One seed's programs do not fill a CPU: C-MORL on
    deep-sea-treasure took 17.0 s on 2 cores and 24.1 s on one, and two seeds on one core each 24.4 s together
    (2-core x86_64, jax 0.10.2), so lanes of one-seed programs beat both one after another and one vmapped
    program there, and each lane's run is bit-identical to the run trained alone."""
    if lanes is None:
        import jax

        if jax.default_backend() != "cpu":
            return 1
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        lanes = min(cores, MAX_LANES)
    return max(1, min(int(lanes), n_runs))


def train_runs(
    runs: list[RunInfo],
    *,
    resume: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
    vmap_seeds: bool | None = None,
    store: Store | None | bool = True,
    callback: Callable[[RunInfo], RunCallback] | None = None,
    lanes: int | None = None,
) -> list[dict[str, Any]]:
    """Train (or resume) runs to the end of their budget; returns each run's ``result.json`` content.

    Runs of the same agent, env and config with a ``vmappable`` trainer are trained as one vmapped
    program (fresh starts only) where `seeds_in_one_program` says so (``vmap_seeds``; by default on a GPU or TPU);
    everything else trains in `seed_lanes` threads (``lanes``; by default one per CPU core, one elsewhere), each
    run its own one-seed program, sharing compiled programs. ``callback(info)``, when given, makes each run's
    `RunCallback` (its loggers) as the run starts training; loggers keep to one lane.
    """
    results: list[dict[str, Any]] = []
    for info in runs:
        check_trainable(info, resume)
    stores = {}

    def store_of(info):
        if store is False or store is None:
            return None
        if isinstance(store, Store):
            return store
        d = str(info.path.parent)
        return stores.setdefault(d, store_for(d))

    drivers = [_prepare(info, store_of(info), callback) for info in runs]
    same = (
        len(
            {
                json.dumps([d.meta["agent"], d.meta["env"], d.meta.get("env_kwargs"), d.meta["config"]], sort_keys=True)
                for d in drivers
            }
        )
        == 1
    )
    if seeds_in_one_program(vmap_seeds) and not resume and len(drivers) > 1 and same and drivers[0].trainer.vmappable:
        return _train_vmapped(drivers, progress)
    n_lanes = 1 if callback is not None else seed_lanes(len(drivers), lanes)
    if n_lanes > 1:
        return _train_in_lanes(drivers, resume, progress, n_lanes)
    for d in drivers:
        results.append(_train_one(d, resume, progress))
    return results


def _run_guarded(drivers: list[_Driver], body: Callable[[], Any]) -> Any:
    for d in drivers:
        d.lock()
    try:
        for d in drivers:
            d.open_callback()
        return body()
    except BaseException as exc:
        for d in drivers:
            if not isinstance(exc, KeyboardInterrupt):
                atomic_write_text(d.info.path / ERROR_FILE, "".join(traceback.format_exception(exc)))
        raise
    finally:
        for d in drivers:
            try:
                d.close_callback()
            finally:
                d.unlock()


#: the training loops' Ctrl-C bookkeeping: ``depth`` > 0 while a loop runs (there a Ctrl-C stops after the chunk in
#: flight and checkpoints the last finished one; the CLI exits at once elsewhere), ``requested`` once one came
#: (a KeyboardInterrupt that lands in a gc or weakref callback is swallowed by Python; the flag is not)
INTERRUPT = {"depth": 0, "requested": False}
_INTERRUPT_LOCK = threading.Lock()  # lanes enter and leave loops from several threads


class _interruptible_loop:
    def __enter__(self):
        with _INTERRUPT_LOCK:
            if INTERRUPT["depth"] == 0:  # a new outermost loop: an old request is spent
                INTERRUPT["requested"] = False
            INTERRUPT["depth"] += 1

    def __exit__(self, *exc):
        with _INTERRUPT_LOCK:
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
            progress(
                dataclasses.replace(
                    d.event(result["env_steps"], {}, finished=True), hv=result["metrics"].get("hypervolume")
                )
            )
        return result

    return _run_guarded([d], body)


def _train_in_lanes(drivers: list[_Driver], resume: bool, progress, lanes: int) -> list[dict[str, Any]]:
    """`_train_one` for every run, ``lanes`` at a time in threads (XLA runs with the GIL released). The whole call
    is one interruptible loop: a Ctrl-C lets each lane finish its chunk in flight (or the final evaluation it is
    in), checkpoint and stop, runs not yet started stay as they are, and then KeyboardInterrupt is raised here. A
    run that fails does not stop the others; the first failure is raised once every lane has stopped."""
    from concurrent.futures import ThreadPoolExecutor, wait

    def one(d: _Driver) -> dict[str, Any]:
        _stop_if_interrupted()  # Ctrl-C came before this run started
        return _train_one(d, resume, progress)

    futures: list = []
    interrupted = False
    pool = ThreadPoolExecutor(lanes, thread_name_prefix="morl-lane")
    with _interruptible_loop():
        while True:
            try:
                while len(futures) < len(drivers) and not INTERRUPT["requested"]:
                    futures.append(pool.submit(one, drivers[len(futures)]))
                # wake up often: a SIGINT the kernel hands to a lane's thread leaves this one asleep, and Python
                # runs the handler only when the main thread runs again
                while wait(futures, timeout=0.05).not_done:
                    pass
                pool.shutdown(wait=True)
                break
            except KeyboardInterrupt:  # the lanes see the request after their chunk in flight
                INTERRUPT["requested"] = True  # (the CLI's handler sets it too; Python's default one does not)
                interrupted = True
    errors = [f.exception() for f in futures]
    if interrupted or any(isinstance(e, KeyboardInterrupt) for e in errors):
        raise KeyboardInterrupt
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return [f.result() for f in futures]


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
                progress(
                    dataclasses.replace(
                        d.event(result["env_steps"], {}, finished=True), hv=result["metrics"].get("hypervolume")
                    )
                )
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
        state, meta = ckpt.restore(state_template(trainer, jax.random.PRNGKey(int(info.meta["seed"]))))
    finally:
        ckpt.close()
    final_key = key is None
    key = final_eval_key(int(info.meta["seed"])) if key is None else key
    front = evaluate_state(trainer, state, env, env_params, protocol, key)
    notes = []
    proto = clean_json(front.protocol)
    h = protocol_hash(proto)
    if (
        info.status == "done"
        and final_key
        and h == (info.result or {}).get("protocol_hash")
        and front_files_problem(info.path, info.result) is not None
    ):
        # the final evaluation reproduced exactly (same checkpoint, protocol and key): restore its damaged files
        write_front_files(info.path, env, front)
        notes.append(f"rewrote the damaged {FRONT_CSV} and {RETURNS_CSV} of run {info.id} from this evaluation")
    if info.status != "done":
        notes.append(
            f"run is {info.status}: evaluated its checkpoint at {meta.get('loop', {}).get('env_steps', '?')} "
            "env steps; not recorded in the store"
        )
    elif record:
        atomic_write_json(
            info.path / EVALS_DIR / f"{h}.json",
            {"protocol": proto, "protocol_hash": h, "metrics": front.metrics, "evaluated": now_iso()},
        )
        st = store_for(info.path.parent)
        if st.get(info.id) is None:
            st.record_run(store_row(info.meta, info.result, info.path))
        st.record_evaluation(info.id, proto, front.metrics)
    return front, notes
