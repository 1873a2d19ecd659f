"""Training on a Ray cluster: each unit of work (a group of seeds of one agent, env and config) is a Ray task.

``pip install 'morl[cluster]'``; ``morl suite run NAME --ray [ADDRESS]`` and ``morl train ... --seeds 0-63 --ray
[ADDRESS]`` use it (docs/cluster.md). Without an address Ray starts a local instance.

No shared file system is assumed. A task trains into a work folder under ``storage`` (``--storage``: its checkpoints
and metrics rows; a path every node reaches on a real cluster, so a task retried on another node resumes), then
returns the run's record (`morl.runs.collect_record`) through Ray; the driver, the one process that owns the runs
folder, writes the run folder and the results store (`morl.runs.write_record`), so every run is recorded once.

Faults: a task whose worker or node dies is retried by Ray (``max_retries``) and resumes from its last checkpoint in
``storage``; a task that raises (its own error: a bad config) is reported with its error and the others go on; Ctrl-C
on the driver cancels the tasks in flight, and a rerun continues where it stopped.

The generic layer (`Resources`, `Task`, `Outcome`, `run_tasks`) runs any picklable function as tasks with a progress
display; `train_on_ray` is the training layer built on it.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morl.runs.files import RunError, atomic_write_text
from morl.store import now_iso

#: the file in a runs folder that marks a cluster driver using it (a second driver is refused)
DRIVER_LOCK = ".cluster-driver.lock"
#: ``--storage``'s default: a folder in the runs folder (a listing skips names that start with a dot)
DEFAULT_STORAGE = ".cluster-storage"


class ClusterError(RuntimeError):
    """Ray is missing or cannot be reached; the message says what to do."""


def require_ray():
    """The ``ray`` module, or a `ClusterError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ClusterError(
            "--ray needs Ray: pip install 'morl[cluster]' (or pip install 'ray>=2.40') on the driver and every node"
        ) from None
    return ray


def connect(address: str | None = None) -> None:
    """Connect to the Ray cluster at ``address`` ("auto": the one this machine belongs to), or start a local
    instance when ``address`` is None or empty (``RAY_ADDRESS`` is honoured as Ray does)."""
    ray = require_ray()
    if ray.is_initialized():
        return
    try:
        with warnings.catch_warnings():  # Ray starts its processes by fork + exec, which JAX's warning does not know
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            ray.init(address=address or None, log_to_driver=False, include_dashboard=False, configure_logging=False)
    except Exception as exc:  # Ray raises bare Exceptions too (a node that timed out during start-up)
        raise ClusterError(
            f"cannot start or reach Ray ({'address ' + repr(address) if address else 'a local instance'}: {exc}); "
            "for a cluster, start it with `ray start --head` (docs/cluster.md) and give its address"
        ) from None


# ====================================================================== the task layer
@dataclass(frozen=True)
class Resources:
    """What one task reserves on a node, and how often Ray retries it when its worker or node dies."""

    #: CPU cores (also the XLA CPU device count of the task's process)
    cpus: float = 1.0
    #: GPUs; a fraction shares one GPU between tasks (``XLA_PYTHON_CLIENT_MEM_FRACTION`` is set to match)
    gpus: float = 0.0
    #: retries after a worker or node death (a task that raises is not retried: its error is reported)
    max_retries: int = 3

    def __post_init__(self):
        if self.cpus <= 0:
            raise ValueError(f"a task needs a positive number of CPUs, got {self.cpus}")
        if self.gpus < 0 or (self.gpus > 1 and self.gpus != int(self.gpus)):
            raise ValueError(f"GPUs per task: a fraction of one GPU or a whole number, got {self.gpus}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")

    def env_vars(self) -> dict[str, str]:
        """The task process's environment: a GPU task preallocates only its share of the GPU's memory; a CPU task
        stays off the node's GPUs (it reserved none) and sees one XLA CPU device per reserved core."""
        if self.gpus > 0:
            return {"XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.9 * min(self.gpus, 1.0):.3f}"}
        return {
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": os.environ.get(
                "MORL_TASK_XLA_FLAGS", f"--xla_force_host_platform_device_count={max(1, int(self.cpus))}"
            ),
        }

    def ray_options(self) -> dict[str, Any]:
        return {
            "num_cpus": self.cpus,
            "num_gpus": self.gpus,
            "max_retries": self.max_retries,
            "retry_exceptions": False,
            "runtime_env": {"env_vars": self.env_vars()},
        }


@dataclass(eq=False)
class Task:
    """One unit of work: ``fn(*args)`` on a worker (``fn`` a module-level function every node can import)."""

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    resources: Resources | None = None  # None: `run_tasks`' default


@dataclass
class Outcome:
    """What came back from a task: its value, or the error it raised (or the death it did not survive)."""

    task: Task
    value: Any = None
    error: str | None = None  # "ErrorType: message"
    traceback: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class Display:
    """One progress line for a whole set of tasks: done / running / failed of the total, elapsed time and ETA."""

    def __init__(self, title: str, total: int, console=None, capacity: int | None = None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.total, self.capacity = total, capacity
        self.done = self.failed = self.in_flight = 0
        self.seconds: list[float] = []
        self.t0 = time.perf_counter()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
        )
        self.task = self.progress.add_task(title, total=total, counts="", eta="-")

    def __enter__(self):
        self.progress.__enter__()
        self.refresh()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)
        return False

    def print(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, soft_wrap=True)

    def running(self) -> int:
        """Tasks in flight that hold a slot (the rest wait in Ray's queue): bounded by the cluster's capacity."""
        return self.in_flight if self.capacity is None else min(self.in_flight, self.capacity)

    def eta(self) -> str:
        left = self.total - self.done - self.failed
        if not self.seconds or left <= 0:
            return "-"
        lanes = max(1, self.running() or 1)
        secs = sum(self.seconds) / len(self.seconds) * left / lanes
        return time.strftime("%H:%M:%S", time.gmtime(secs))

    def refresh(self) -> None:
        queued = self.in_flight - self.running()
        counts = f"done {self.done}  running {self.running()}" + (f"  queued {queued}" if queued else "")
        counts += f"  failed {self.failed}"
        self.progress.update(self.task, completed=self.done + self.failed, counts=counts, eta=self.eta())


def _capacity(resources: Resources) -> int | None:
    """How many tasks of ``resources`` the connected cluster runs at once (None if Ray does not say)."""
    import ray

    try:
        total = ray.cluster_resources()
    except Exception:
        return None
    slots = [int(total.get("CPU", 0) // resources.cpus)]
    if resources.gpus > 0:
        slots.append(int(total.get("GPU", 0) // resources.gpus))
    return max(1, min(slots))


def _describe(exc: BaseException) -> tuple[str, str]:
    """("ErrorType: message", traceback) of a task's failure: the task's own exception where it raised one."""
    import ray

    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        tb = str(exc)
        if isinstance(cause, ray.exceptions.RayTaskError):
            return f"{exc.function_name} failed", tb
        return f"{type(cause).__name__}: {cause}".strip(), tb
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)) or "died" in str(exc):
        return f"{type(exc).__name__}: its worker or node died on every try ({exc})".splitlines()[0], str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0], "".join(traceback.format_exception(exc))


def run_tasks(
    tasks: Sequence[Task],
    *,
    address: str | None = None,
    resources: Resources = Resources(),
    on_result: Callable[[Outcome], None] | None = None,
    display: Display | bool | None = None,
    title: str = "tasks",
    console=None,
) -> list[Outcome]:
    """Run ``tasks`` as Ray tasks (connecting to ``address``, or a local instance); returns their outcomes in order.

    ``on_result(outcome)`` runs in this process as each task ends (in completion order): the place to write
    results. A task that raises is an `Outcome` with its error (never retried; the others go on); one whose
    worker or node dies is retried by Ray up to ``resources.max_retries`` times. Ctrl-C cancels every task
    in flight and re-raises KeyboardInterrupt. ``display``: True for a progress line (`Display`), or one.
    """
    from morl.runs.driver import _interruptible_loop, _stop_if_interrupted

    ray = require_ray()
    connect(address)
    outcomes: list[Outcome | None] = [None] * len(tasks)
    if display is True:
        display = Display(title, len(tasks), console=console, capacity=_capacity(resources))
    refs: dict[Any, int] = {}
    started: dict[int, float] = {}
    remote = {}
    for i, t in enumerate(tasks):
        res = t.resources or resources
        fn = remote.setdefault(id(t.fn), ray.remote(t.fn))
        refs[fn.options(name=t.name[:200], **res.ray_options()).remote(*t.args)] = i
        started[i] = time.perf_counter()
    if display:
        display.__enter__()
        display.in_flight = len(refs)
        display.refresh()
    try:
        with _interruptible_loop():
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                _stop_if_interrupted()
                for ref in ready:
                    i = refs[ref]
                    out = Outcome(tasks[i], seconds=time.perf_counter() - started[i])
                    try:
                        out.value = ray.get(ref)
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:
                        out.error, out.traceback = _describe(exc)
                    outcomes[i] = out
                    if on_result is not None:
                        on_result(out)
                    if display:
                        display.in_flight -= 1
                        display.done += out.ok
                        display.failed += not out.ok
                        if out.ok:
                            display.seconds.append(out.seconds)
                if display:
                    display.refresh()
    except KeyboardInterrupt:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        raise
    finally:
        if display:
            display.__exit__(None, None, None)
    return outcomes  # type: ignore[return-value]


# ====================================================================== training tasks
def train_task(metas: list[dict[str, Any]], storage: str, seeds: dict[str, dict[str, bytes]]) -> list[dict[str, Any]]:
    """Train the runs of ``metas`` (one group: vmapped in one program when the agent allows) in work folders under
    ``storage``; returns their records. Resumes from each work folder's last checkpoint (an earlier attempt's),
    or from ``seeds[run_id]`` (the checkpoints and metrics rows the driver's folder already had)."""
    from morl import runs as R

    infos, fresh, resumed = [], [], []
    for meta in metas:
        work = Path(storage) / meta["run_id"]
        work.mkdir(parents=True, exist_ok=True)
        if not (work / R.CONFIG_FILE).exists():
            R.atomic_write_json(work / R.CONFIG_FILE, meta)
        (work / R.LOCK_FILE).unlink(missing_ok=True)  # this task owns the folder: a lock here is an earlier attempt's
        if (work / R.RESULT_FILE).exists():  # an earlier attempt finished it: send that
            infos.append(R.read_run(work))
            continue
        ck = R.Checkpointer(work / R.CKPT_DIR)
        step = ck.latest()
        if step is None and seeds.get(meta["run_id"]):
            R.unpack_files(work, seeds[meta["run_id"]])
            step = ck.latest()
        ck.close()
        R.note_attempt(work, step)
        info = R.read_run(work)
        infos.append(info)
        (resumed if step is not None else fresh).append(info)
    if fresh:
        R.train_runs(fresh, store=False)
    for info in resumed:
        R.train_runs([info], resume=True, store=False)
    return [R.collect_record(info.path) for info in infos]


@dataclass
class TrainOptions:
    """How `train_on_ray` runs: where, with what per task, and where the checkpoints go."""

    address: str | None = None
    storage: str | None = None  # None: <runs dir>/.cluster-storage
    resources: Resources = field(default_factory=Resources)
    seeds_per_task: int | None = None  # None: a vmappable group in one task, other agents one seed per task


@dataclass
class Failure:
    """A task that did not finish: its runs and its error."""

    runs: list[Any]
    error: str
    traceback: str | None = None


def storage_dir(opts: TrainOptions, runs_dir: Path) -> str:
    return str(Path(opts.storage) if opts.storage else Path(runs_dir) / DEFAULT_STORAGE)


class driver_lock:
    """``<runs dir>/.cluster-driver.lock`` while a cluster driver writes there: a second one is refused (its own
    run folders would be trained twice), and a dead holder's lock is taken over."""

    def __init__(self, runs_dir: Path):
        self.path = Path(runs_dir) / DRIVER_LOCK
        self.nested = False

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        text = json.dumps({**me, "started": now_iso()})
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                held = _lock_holder(self.path)
                if held is not None and {k: held.get(k) for k in me} == me:  # this process holds it already
                    self.nested = True
                    return self
                if held is not None:
                    raise RunError(
                        f"another cluster driver (pid {held.get('pid')} on {held.get('host')}, since "
                        f"{held.get('started')}) is training into {self.path.parent}; wait for it to finish, or "
                        f"use another --runs-dir (delete {self.path} if that process is gone)"
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(text)
            return self
        raise RunError(f"cannot take {self.path}; delete it if no cluster driver is running")

    def __exit__(self, *exc):
        if not self.nested:
            self.path.unlink(missing_ok=True)
        return False


def _lock_holder(path: Path) -> dict[str, Any] | None:
    """The lock's holder if it may be alive (a dead pid on this host is not)."""
    try:
        held = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"pid": "?", "host": "?", "started": "?"}
    if held.get("host") == socket.gethostname() and isinstance(held.get("pid"), int):
        try:
            os.kill(held["pid"], 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return held


def task_groups(groups: list[list[Any]], seeds_per_task: int | None) -> list[list[Any]]:
    """Split groups of run folders (same agent, env, config) into tasks: a vmappable group stays one program
    (``seeds_per_task`` seeds at most); other agents' seeds are one task each."""
    from morl import runs as R

    out = []
    for group in groups:
        if not group:
            continue
        vmappable = len(group) > 1 and R.build(group[0].meta)[4].vmappable
        n = (seeds_per_task or len(group)) if vmappable else 1
        out.extend(group[i : i + n] for i in range(0, len(group), n))
    return out


def train_on_ray(
    groups: list[list[Any]],
    opts: TrainOptions,
    *,
    store=None,
    log: Callable[[str], None] | None = None,
    display: bool = True,
    console=None,
    title: str = "runs",
) -> tuple[dict[str, dict[str, Any]], list[Failure]]:
    """Train groups of run folders (`morl.runs.RunInfo`; a group: one agent, env and config) as Ray tasks; the
    driver writes each finished run's folder and store row as its task returns. Returns (results by run id,
    failures). Run folders with checkpoints resume from them."""
    from morl import runs as R

    runs = [i for g in groups for i in g]
    if not runs:
        return {}, []
    runs_dir = runs[0].path.parent
    storage = storage_dir(opts, runs_dir)
    results: dict[str, dict[str, Any]] = {}
    failures: list[Failure] = []
    tasks, owned = [], {}
    for chunk in task_groups(groups, opts.seeds_per_task):
        seeds = {i.id: R.folder_files(i.path) for i in chunk if (i.path / R.CKPT_DIR).is_dir()}
        name = f"{chunk[0].agent} on {chunk[0].env} seed(s) {[i.seed for i in chunk]}"
        tasks.append(Task(name, train_task, ([i.meta for i in chunk], storage, seeds)))
        owned[len(tasks) - 1] = chunk

    def on_result(out: Outcome) -> None:
        chunk = owned[tasks.index(out.task)]
        if not out.ok:
            for info in chunk:
                atomic_write_text(info.path / R.ERROR_FILE, (out.traceback or out.error or "?") + "\n")
                R.release_lock(info)
            failures.append(Failure(chunk, out.error or "?", out.traceback))
            if log is not None:
                log(f"[red]failed[/red]: {out.task.name}: {out.error}")
            return
        for info, record in zip(chunk, out.value):
            results[info.id] = R.write_record(info.path, record, store)
            R.release_lock(info)
            if Path(storage).is_dir():  # reachable from here: the work folder has served its purpose
                import shutil

                shutil.rmtree(Path(storage) / info.id, ignore_errors=True)
            if log is not None and len(record.get("attempts") or []) > 1:
                tries = record["attempts"]
                log(
                    f"{info.id}: finished on attempt {len(tries)} (resumed from checkpoint "
                    f"{tries[-1].get('resumed_from')})"
                )

    with driver_lock(runs_dir):
        for info in runs:
            R.take_lock(info)
        try:
            run_tasks(
                tasks,
                address=opts.address,
                resources=opts.resources,
                on_result=on_result,
                display=display,
                title=title,
                console=console,
            )
        finally:
            for info in runs:
                R.release_lock(info)
    return results, failures
