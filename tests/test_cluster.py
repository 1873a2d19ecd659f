"""Training on a Ray cluster (`morl.cluster`): a two-node cluster on loopback runs a small suite.

The suite (2 agents x 2 envs x 2 seeds, 6 tasks) checks, in one cluster session:
- the leaderboard and every run's front equal the in-process run of the same suite (same seeds, same fronts);
- a task that raises (``toy-crash`` with ``raise_at``: its own error) is reported and the others finish;
- a task whose worker dies (``toy-crash`` with ``kill_marker``: the first run to reach its third update kills its
  own worker process, as a node death looks to Ray) is retried, resumes from its checkpoint (its
  ``cluster.json`` says which step; its front equals the uninterrupted in-process run's) and is recorded once.

The nodes are ``ray start --block`` processes in their own process group, stopped by that group (never
``ray stop``, which stops every Ray process of the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import test_runs  # noqa: F401  (registers toy-hillclimb)
from test_runs import ToyConfig, ToyTrainer

from morl import runs as R
from morl.agent import AgentSpec, register_agent

TESTS = Path(__file__).parent
RAY = Path(sys.executable).parent / "ray"


# =============================================================================== a toy agent that fails on purpose
@dataclass(frozen=True)
class CrashConfig(ToyConfig):
    """toy-hillclimb that fails on request (tests)."""

    #: a file: the first run to reach its third update creates it and kills its own process (SIGKILL)
    kill_marker: str = ""
    #: raise ValueError at this update (the run's own error); 0: never
    raise_at: int = 0


class CrashTrainer(ToyTrainer):
    vmappable = False

    def update(self, state):
        done = int(state["update"])
        if self.config.raise_at and done + 1 >= self.config.raise_at:
            raise ValueError(f"raise_at={self.config.raise_at}: this config fails by design")
        if self.config.kill_marker and done == 2:
            try:
                fd = os.open(self.config.kill_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return super().update(state)


register_agent(
    AgentSpec(
        "toy-crash",
        CrashConfig,
        CrashTrainer,
        summary="toy-hillclimb that fails on request (tests)",
        action_kinds=("discrete",),
        env_defaults={"fruit-tree-v0": {"rollout_steps": 7}},
    )
)


# =============================================================================== the cluster
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each node (``ray start --block`` stops what it started), then SIGKILL their process groups."""
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 15
    for p in reversed(procs):
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # the node's own group: its raylet, GCS and workers
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait(5)


def _group_alive(pgid: int) -> list[str]:
    """``ps`` lines (pgid, pid, command) of the processes in group ``pgid``."""
    out = subprocess.run(["ps", "-ww", "-eo", "pgid=,pid=,args="], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if ln.split(None, 1)[0] == str(pgid)]


class LoopbackCluster:
    """Ray nodes on 127.0.0.1, each a ``ray start --block`` process in its own process group."""

    def __init__(self, head_cpus: int = 1, **system_config: int):
        import ray

        self.ray = ray
        self.tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join([str(TESTS), self.env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.env["RAY_USAGE_STATS_ENABLED"] = "0"
        # loopback only: no token, so a token another Ray user left in ~/.ray does not lock this process out
        self.env["RAY_AUTH_MODE"] = "disabled"
        self.auth_before = os.environ.get("RAY_AUTH_MODE")
        os.environ["RAY_AUTH_MODE"] = "disabled"
        self.env.update({f"RAY_{k}": str(v) for k, v in system_config.items()})
        self.procs: list[subprocess.Popen] = []
        head = ["--head", "--port", str(self.port), "--temp-dir", str(self.tmp), "--include-dashboard=false"]
        self._start("head", head + ["--ray-client-server-port", str(_free_port())], head_cpus)
        deadline = time.time() + 60
        while not (self.tmp / "session_latest").exists() and time.time() < deadline:
            time.sleep(0.5)

    def _start(self, name: str, args: list[str], cpus: int) -> subprocess.Popen:
        common = ["--block", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--disable-usage-stats"]
        p = subprocess.Popen(
            [str(RAY), "start", *args, "--dashboard-agent-listen-port", str(_free_port()), *common],
            env=self.env,
            stdout=open(self.tmp / f"{name}.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def add_node(self, name: str, cpus: int = 1) -> subprocess.Popen:
        return self._start(name, ["--address", self.address], cpus)

    def connect(self, nodes: int) -> None:
        """``ray.init`` in this process once ``nodes`` nodes are alive."""
        deadline = time.time() + 90
        while not self.ray.is_initialized() and time.time() < deadline:
            try:
                self.ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            except Exception:
                time.sleep(0.5)
        self.wait_nodes(nodes, deadline)

    def wait_nodes(self, nodes: int, deadline: float | None = None) -> None:
        deadline = deadline or time.time() + 90
        while time.time() < deadline and self.alive() != nodes:
            time.sleep(0.5)
        assert self.alive() == nodes, [p.read_text()[-1500:] for p in self.tmp.glob("*.log")]

    def alive(self) -> int:
        return sum(n["Alive"] for n in self.ray.nodes())

    def kill_raylet(self, node: subprocess.Popen) -> None:
        """SIGKILL the raylet of ``node`` (the node dies; ``ray start --block`` then stops the rest of it)."""
        pids = [int(ln.split()[1]) for ln in _group_alive(node.pid) if "raylet/raylet" in ln.split(None, 2)[2]]
        assert len(pids) == 1, f"node {node.pid} has no raylet (it died before): {_group_alive(node.pid)}"
        os.kill(pids[0], signal.SIGKILL)

    def stop(self) -> None:
        try:
            self.ray.shutdown()
        finally:
            _stop(self.procs)
            if self.auth_before is None:
                os.environ.pop("RAY_AUTH_MODE", None)
            else:
                os.environ["RAY_AUTH_MODE"] = self.auth_before
            left = [ln for p in self.procs for ln in _group_alive(p.pid) if "<defunct>" not in ln]
            shutil.rmtree(self.tmp, ignore_errors=True)
            assert not left, f"Ray processes left behind: {left}"


@pytest.fixture(scope="module")
def cluster():
    """A head node and a worker node (1 CPU each) on 127.0.0.1; its address."""
    pytest.importorskip("ray", reason="pip install 'morl[cluster]'")  # in the dev extra: CI runs this
    c = LoopbackCluster(head_cpus=1)
    try:
        c.add_node("worker")
        c.connect(nodes=2)
        yield c.address
    finally:
        c.stop()


# =============================================================================== the suite
SUITE = """
name = "cluster-test"
agents = ["toy-hillclimb", "toy-crash"]
seeds = [0, 1]
metrics = ["hv", "igd"]
eval_every = 400      # an evaluation, so a checkpoint, after every toy update (400 env steps) on DST

[protocol]
gamma = 0.99
episodes = 1

[agent_config.toy-hillclimb]
num_policies = 2

[agent_config.toy-crash]
num_policies = 2

[[envs]]
id = "deep-sea-treasure-v0"
steps = 1600
agent_config = {{ toy-crash = {{ kill_marker = "{marker}" }} }}

[[envs]]
id = "fruit-tree-v0"
kwargs = {{ depth = 5 }}
steps = 56
agent_config = {{ toy-crash = {{ raise_at = 2 }} }}
"""


def _tables(path: Path) -> list[str]:
    return [ln for ln in Path(path).read_text().splitlines() if ln.startswith("|")]


def _fronts(runs_dir: Path) -> dict[tuple, str]:
    return {
        (r.agent, r.env, r.seed): (r.path / R.FRONT_CSV).read_text()
        for r in R.list_runs(runs_dir)[0]
        if r.status == "done"
    }


@pytest.fixture
def recorded_imports():
    """New runs record test_runs and test_cluster (registering the toy agents), so their workers import them."""
    saved = list(R.IMPORTS)
    R.IMPORTS.extend(["test_runs", "test_cluster"])
    yield
    R.IMPORTS[:] = saved


def test_suite_on_two_nodes_equals_in_process_with_a_failure_and_a_retry(
    cluster, recorded_imports, tmp_path, monkeypatch
):
    from morl.cluster import Resources, TrainOptions
    from morl.suites import load_suite, run_suite, suite_requests, write_leaderboard

    monkeypatch.setenv("MORL_TASK_XLA_FLAGS", os.environ.get("XLA_FLAGS", "--xla_force_host_platform_device_count=1"))
    marker = tmp_path / "killed"
    suite_file = tmp_path / "cluster-test.toml"
    suite_file.write_text(SUITE.format(marker=marker))

    # in process: the marker exists, so nothing is killed; toy-crash on fruit tree (the last group) raises
    marker.touch()
    local = tmp_path / "local"
    with pytest.raises(ValueError, match="raise_at=2"):
        run_suite(str(suite_file), local, out=tmp_path / "local.md", log=lambda s: None)
    suite = load_suite(str(suite_file))
    write_leaderboard(suite, suite_requests(suite), R.store_for(local), out=tmp_path / "local.md")

    # on the cluster: the first toy-crash run on DST to reach its third update kills its worker
    marker.unlink()
    remote = tmp_path / "remote"
    failures: list = []
    opts = TrainOptions(address=cluster, storage=str(tmp_path / "storage"), resources=Resources(max_retries=2))
    t0 = time.perf_counter()
    run_suite(str(suite_file), remote, out=tmp_path / "remote.md", log=lambda s: None, cluster=opts, failures=failures)
    print(f"cluster suite: {time.perf_counter() - t0:.1f} s")

    # the failing task is reported with its own error; every other run finished
    assert [(f.runs[0].agent, f.runs[0].env) for f in failures] == [("toy-crash", "fruit-tree-v0")] * 2
    assert all("ValueError: raise_at=2" in f.error for f in failures)
    runs = R.list_runs(remote)[0]
    assert sorted(r.status for r in runs) == ["done"] * 6 + ["failed"] * 2
    assert all("raise_at=2" in r.problem for r in runs if r.status == "failed")
    # same fronts and the same leaderboard as in process
    assert marker.exists()
    assert _fronts(remote) == _fronts(local) and len(_fronts(local)) == 6
    assert _tables(tmp_path / "remote.md") == _tables(tmp_path / "local.md")
    assert len(_tables(tmp_path / "local.md")) > 8
    # one retry: the killed run resumed from its checkpoint at update 2, and every run is recorded once
    attempts = {r.id: json.loads((r.path / R.CLUSTER_FILE).read_text()) for r in runs if r.status == "done"}
    retried = [a for a in attempts.values() if a["attempts"] > 1]
    assert len(retried) == 1 and retried[0]["attempts"] == 2
    assert [h["resumed_from"] for h in retried[0]["history"]] == [None, 2]
    rows = R.store_for(remote).runs()
    assert sorted(r["run_id"] for r in rows) == sorted(attempts)
    # a finished run's checkpoint came back with it: `morl eval` re-evaluates it to the same metrics
    done = next(r for r in runs if r.status == "done" and r.agent == "toy-crash")
    front, _ = R.reevaluate(done, R.protocol_from_dict(done.result["protocol"]), record=False)
    assert front.metrics["hypervolume"] == done.result["metrics"]["hypervolume"]
    # the work folders of finished runs are removed; a failed run's stays for its rerun
    assert sorted(p.name for p in (tmp_path / "storage").iterdir()) == sorted(
        r.id for r in runs if r.status == "failed"
    )


def test_second_driver_on_the_same_runs_dir_is_refused(tmp_path):
    from morl.cluster import DRIVER_LOCK, TrainOptions, train_on_ray
    from morl.suites import run_suite

    info = R.create_run(tmp_path, test_runs._request())
    other = {"pid": os.getppid(), "host": socket.gethostname(), "started": "now"}  # a live process, not this one
    (tmp_path / DRIVER_LOCK).write_text(json.dumps(other))
    with pytest.raises(R.RunError, match=f"another cluster driver \\(pid {other['pid']} .* is training into"):
        train_on_ray([[info]], TrainOptions(address="127.0.0.1:1"))
    assert R.read_run(info.path).status == "interrupted"  # untouched: no lock left, nothing trained
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.format(marker=tmp_path / "m"))
    with pytest.raises(R.RunError, match="another cluster driver"):
        run_suite(str(suite), tmp_path, out=tmp_path / "s.md", log=lambda s: None, cluster=TrainOptions())
    assert len(R.list_runs(tmp_path)[0]) == 1  # the second driver made no run folder
    assert json.loads((tmp_path / DRIVER_LOCK).read_text()) == other  # and left the first one's lock alone
    other["pid"] = 2**22 + 1  # a dead holder's lock is taken over (and released)
    (tmp_path / DRIVER_LOCK).write_text(json.dumps(other))
    from morl.cluster import driver_lock

    with driver_lock(tmp_path):
        assert json.loads((tmp_path / DRIVER_LOCK).read_text())["pid"] == os.getpid()
    assert not (tmp_path / DRIVER_LOCK).exists()


def test_cli_train_seeds_on_the_cluster(cluster, recorded_imports, tmp_path, capsys):
    from morl.cli import main

    base = ["--import", "test_cluster", "train", "--env", "deep-sea-treasure-v0", "--seeds", "0-1", "--steps", "800"]
    base += ["--num-policies", "2"]
    base += ["--protocol-episodes", "1", "--quiet", "--runs-dir", str(tmp_path), "--ray", cluster]
    assert main([*base[:3], "toy-hillclimb", *base[3:]]) == 0
    out = capsys.readouterr().out
    assert "final evaluation" in out and "mean ± std" in out
    runs = R.list_runs(tmp_path)[0]
    assert [r.status for r in runs] == ["done", "done"] and len(R.store_for(tmp_path).runs()) == 2
    assert all(r.meta["imports"] == ["test_cluster"] for r in runs)  # what a fresh worker imports
    # a failing task: exit status 1, its error and where the traceback is
    assert main([*base[:3], "toy-crash", *base[3:], "--raise-at", "1"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "2 run(s) failed (ValueError: raise_at=1" in err and "error.txt" in err
    assert sorted(r.status for r in R.list_runs(tmp_path)[0]) == ["done", "done", "failed", "failed"]


def test_cluster_options_need_ray(tmp_path, capsys):
    from morl.cli import main

    code = main(["train", "toy-hillclimb", "--env", "deep-sea-treasure-v0", "--storage", str(tmp_path)])
    assert code == 2 and "--storage applies to --ray only" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_a_node_whose_raylet_is_killed_mid_run_is_replaced_and_its_task_resumes(recorded_imports, tmp_path):
    """The worker node's raylet is killed while a run trains there (after its third checkpoint); a new node joins;
    the task is retried there, resumes from the checkpoint in the shared storage, and every run is written once
    with the front of the uninterrupted in-process run."""
    import threading

    from morl.cluster import Resources, TrainOptions, train_on_ray

    pytest.importorskip("ray", reason="pip install 'morl[cluster]'")

    def requests(delay):  # the delay (seconds per chunk) leaves time to kill the node mid-run
        return [test_runs._request(seed, total_timesteps=8000, delay=delay) for seed in (0, 1)]

    local = [R.create_run(tmp_path / "local", r) for r in requests(0.0)]
    for info in local:
        R.train_runs([info], store=False)
    # the head runs no task: the runs train on node a, then on node b
    c = LoopbackCluster(head_cpus=0, health_check_period_ms=1000, health_check_failure_threshold=10)
    try:
        node_a = c.add_node("a")
        c.connect(nodes=2)
        remote = [R.create_run(tmp_path / "remote", r) for r in requests(0.5)]
        storage = tmp_path / "storage"
        opts = TrainOptions(c.address, str(storage), Resources(max_retries=2), seeds_per_task=1)
        box: dict = {}
        driver = threading.Thread(
            target=lambda: box.update(out=train_on_ray([remote], opts, store=R.store_for(tmp_path / "remote"))),
            daemon=True,
        )
        driver.start()
        deadline = time.time() + 300
        victim = None
        while victim is None and time.time() < deadline:
            for info in remote:
                steps = [int(p.name) for p in (storage / info.id / R.CKPT_DIR).glob("*") if p.name.isdigit()]
                if steps and max(steps) >= 3:
                    victim = info
            time.sleep(0.2)
        assert victim is not None, "no run reached its third checkpoint"
        c.kill_raylet(node_a)
        c.wait_nodes(1)
        c.add_node("b")
        driver.join(timeout=300)
        assert not driver.is_alive()
    finally:
        c.stop()
    results, failures = box["out"]
    assert failures == [] and sorted(results) == sorted(i.id for i in remote)
    rows = R.store_for(tmp_path / "remote").runs()
    assert sorted(r["run_id"] for r in rows) == sorted(i.id for i in remote)  # each run once
    history = json.loads((victim.path / R.CLUSTER_FILE).read_text())["history"]
    assert len(history) == 2 and history[0]["resumed_from"] is None and history[1]["resumed_from"] >= 3
    for a, b in zip(local, remote):
        assert (a.path / R.FRONT_CSV).read_text() == (b.path / R.FRONT_CSV).read_text()


def test_task_resources_and_grouping(tmp_path):
    from morl.cluster import Resources, task_groups

    # a quarter of a GPU preallocates 90% of a quarter of its memory; a CPU task stays off the GPUs
    assert Resources(gpus=0.25).env_vars() == {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.225"}
    assert Resources(cpus=2).env_vars()["JAX_PLATFORMS"] == "cpu"
    opts = Resources(cpus=2, gpus=0.5, max_retries=1).ray_options()
    assert (opts["num_cpus"], opts["num_gpus"], opts["max_retries"], opts["retry_exceptions"]) == (2, 0.5, 1, False)
    for bad in ({"cpus": 0}, {"gpus": 1.5}, {"max_retries": -1}):
        with pytest.raises(ValueError):
            Resources(**bad)
    # a vmappable group is one program (or programs of --seeds-per-task seeds); other agents: one seed per task
    hill = [R.create_run(tmp_path, test_runs._request(s)) for s in range(5)]
    crash = [R.create_run(tmp_path, test_runs._request(s)) for s in range(2)]
    for c in crash:
        c.meta["agent"] = "toy-crash"
    assert [len(t) for t in task_groups([hill, crash], None)] == [5, 1, 1]
    assert [len(t) for t in task_groups([hill], 2)] == [2, 2, 1]


def test_task_resumes_from_the_drivers_checkpoint_and_the_record_writes_the_same_folder(tmp_path):
    """Without Ray: `train_task` is the function a worker runs. A run interrupted in process (its checkpoints in
    its own folder) is sent with its files, resumes in the task's work folder, and the record the driver writes
    holds the same front, metrics rows and store row as an uninterrupted in-process run."""
    from morl.cluster import train_task

    ref = R.create_run(tmp_path / "a", test_runs._request(seed=3))
    R.train_runs([ref])
    part = R.create_run(tmp_path / "b", test_runs._request(seed=3))
    calls = []

    def stop_after_two(event):
        calls.append(event)
        if len(calls) == 3:  # start event + 2 chunks
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        R.train_runs([part], progress=stop_after_two, store=False)
    storage = tmp_path / "storage"
    (record,) = train_task([part.meta], str(storage), {part.id: R.folder_files(part.path)})
    assert [a["resumed_from"] for a in record["attempts"]] == [2]
    result = R.write_record(part.path, record, R.store_for(tmp_path / "b"))
    info = R.read_run(part.path)
    assert info.status == "done" and info.result == result
    for name in (R.FRONT_CSV, R.RETURNS_CSV):
        assert (ref.path / name).read_text() == (part.path / name).read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]  # noqa: E731
    assert strip(R.read_jsonl(ref.path / R.METRICS_JSONL)) == strip(R.read_jsonl(part.path / R.METRICS_JSONL))
    (row,) = R.store_for(tmp_path / "b").runs()
    (want,) = R.store_for(tmp_path / "a").runs()
    assert row["metrics"] == want["metrics"] and row["run_id"] == part.id
    # the checkpoint came back: `morl eval` reproduces the final metrics from it
    front, _ = R.reevaluate(info, R.protocol_from_dict(result["protocol"]), record=False)
    assert front.metrics == result["metrics"]
    # a retried task whose work folder is finished sends that run again, untrained
    (again,) = train_task([part.meta], str(storage), {})
    assert again["result"] == record["result"]
