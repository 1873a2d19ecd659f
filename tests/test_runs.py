"""Run folders, orbax checkpoints, resume after SIGKILL, vmapped seeds.

Also home of ``toy-hillclimb``, a small but real agent used by the CLI/store tests: a set of linear
softmax-free (argmax) policies, one per preference, improved by accept-if-better random perturbations
evaluated with the rollout engine. It trains something, is a legit chunked ``Trainer``, and is vmappable.
Subprocess tests load it with ``MORL_IMPORT=test_runs`` (the tests folder on ``PYTHONPATH``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import CMORL_HOST_TINY

from morl.agent import AgentSpec, Trainer, register_agent
from morl.rollout import make_rollout
from morl.solution import Solution

TESTS = Path(__file__).parent
DST = "deep-sea-treasure-v0"


# =============================================================================== the toy agent
@dataclass(frozen=True)
class ToyConfig:
    """Hill-climbing policy set (test agent)."""

    #: env steps to train for
    total_timesteps: int = 6400
    #: candidate policies, one per preference (evenly spaced on the simplex)
    num_policies: int = 4
    #: parallel envs per candidate and chunk
    num_envs: int = 1
    #: env steps per env per chunk (an episode must fit: DST's time limit is 100)
    rollout_steps: int = 100
    #: scale of the random perturbations
    sigma: float = 0.5
    #: "linear" anneals sigma to 0 over the budget
    schedule: Literal["constant", "linear"] = "constant"
    #: accept a perturbation only if it is strictly better
    strict: bool = True
    #: seconds slept per chunk (lets tests kill a run mid-training)
    delay: float = 0.0
    #: optional explicit first-objective weights, one per policy
    first_weights: tuple[float, ...] | None = None

    def __post_init__(self):
        if self.num_policies < 1:
            raise ValueError(f"num_policies must be >= 1, got {self.num_policies}")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.first_weights is not None and len(self.first_weights) != self.num_policies:
            raise ValueError(
                f"first_weights needs {self.num_policies} values (num_policies), got {len(self.first_weights)}"
            )


def toy_act(params, w, obs, key):
    x = obs.reshape(obs.shape[0], -1).astype(jnp.float32)
    return jnp.argmax(x @ params["W"] + params["b"], axis=-1).astype(jnp.int32)


def _policy(p, obs, key):
    return toy_act(p, None, obs, key), ()


class ToyTrainer(Trainer):
    vmappable = True

    def __init__(self, config: ToyConfig, env, env_params):
        self.config, self.env, self.env_params = config, env, env_params
        c = config
        m = env.reward_dim
        k = c.num_policies
        if c.first_weights is not None:
            w0 = np.asarray(c.first_weights, np.float32)
        else:
            w0 = np.linspace(0.0, 1.0, k, dtype=np.float32) if k > 1 else np.full((1,), 0.5, np.float32)
        rest = (1.0 - w0)[:, None] / max(m - 1, 1) * np.ones((k, m - 1), np.float32)
        self.weights = np.concatenate([w0[:, None], rest], axis=1).astype(np.float32)
        self.obs_dim = int(np.prod(env.observation_space.shape))
        self.num_actions = int(env.action_space.n)
        self.steps_per_update = 2 * k * c.num_envs * c.rollout_steps
        self.num_updates = max(1, math.ceil(c.total_timesteps / self.steps_per_update))
        self.rollout = make_rollout(
            env, _policy, c.num_envs, c.rollout_steps, gamma=0.99, population=2 * k, emit="summary"
        )
        self._update = jax.jit(self._update_pure)
        self._init_jit = jax.jit(self._init)

    def init(self, key):
        return self._init_jit(key)

    def _init(self, key):
        k_w, k_b, k_state = jax.random.split(key, 3)
        k, d, a = self.config.num_policies, self.obs_dim, self.num_actions
        params = {"W": 0.1 * jax.random.normal(k_w, (k, d, a)), "b": jax.random.normal(k_b, (k, a))}
        return {
            "params": params,
            "key": k_state,
            "steps": jnp.int32(0),
            "update": jnp.int32(0),
            "score": jnp.full((k,), -jnp.inf, jnp.float32),
        }

    def _update_pure(self, state):
        c, k = self.config, self.config.num_policies
        key, k_noise, k_init, k_run = jax.random.split(state["key"], 4)
        frac = state["update"].astype(jnp.float32) / self.num_updates
        sigma = c.sigma * (1.0 - frac if c.schedule == "linear" else 1.0)
        leaves, tdef = jax.tree.flatten(state["params"])
        noise = [
            sigma * jax.random.normal(kk, x.shape) for kk, x in zip(jax.random.split(k_noise, len(leaves)), leaves)
        ]
        proposal = jax.tree.unflatten(tdef, [x + n for x, n in zip(leaves, noise)])
        both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), state["params"], proposal)
        rs = self.rollout.init.pure(k_init, self.env_params)
        _, summary = self.rollout.run.pure(both, rs, k_run, self.env_params)
        eps = jnp.maximum(summary.episodes.sum(axis=1), 1)[:, None]
        ret = summary.discounted_return_sum.sum(axis=1) / eps  # [2K, m]
        w = jnp.asarray(self.weights)
        score = jnp.concatenate([(ret[:k] * w).sum(-1), (ret[k:] * w).sum(-1)])
        better = score[k:] > score[:k] if c.strict else score[k:] >= score[:k]
        params = jax.tree.map(
            lambda a, b: jnp.where(better.reshape((k,) + (1,) * (a.ndim - 1)), b, a), state["params"], proposal
        )
        new = {
            "params": params,
            "key": key,
            "steps": state["steps"] + self.steps_per_update,
            "update": state["update"] + 1,
            "score": jnp.where(better, score[k:], score[:k]),
        }
        return new, {"score": new["score"].mean(), "accept_rate": better.mean()}

    def update(self, state):
        if self.config.delay:
            time.sleep(self.config.delay)
        return self._update(state)

    def done(self, state) -> bool:
        return int(state["update"]) >= self.num_updates

    def env_steps(self, state) -> int:
        return int(state["steps"])

    def solution(self, state) -> Solution:
        return Solution(toy_act, state["params"], candidate_weights=self.weights)


register_agent(
    AgentSpec(
        "toy-hillclimb",
        ToyConfig,
        ToyTrainer,
        summary="hill-climbing policy set (tests)",
        action_kinds=("discrete",),
        env_defaults={"fruit-tree-v0": {"rollout_steps": 7}},
    )
)


@dataclass(frozen=True)
class RandomSetConfig:
    """A set of random linear policies that never learns (a baseline for the leaderboard tests)."""

    total_steps: int = 1000  # env steps the "training" claims per run
    chunk: int = 500  # env steps per update
    num_policies: int = 3  # policies in the set


class RandomSetTrainer(Trainer):
    """Not vmappable on purpose: its seeds run one after another (the sequential path)."""

    def __init__(self, config: RandomSetConfig, env, env_params):
        self.config = config
        self.m = env.reward_dim
        self.obs_dim = int(np.prod(env.observation_space.shape))
        self.num_actions = int(env.action_space.n)

    def init(self, key):
        k_w, k_b = jax.random.split(key)
        k, d, a = self.config.num_policies, self.obs_dim, self.num_actions
        return {
            "params": {"W": jax.random.normal(k_w, (k, d, a)), "b": jax.random.normal(k_b, (k, a))},
            "steps": np.int64(0),
            "key": key,
        }

    def update(self, state):
        return dict(state, steps=state["steps"] + self.config.chunk), {"chunk": float(self.config.chunk)}

    def done(self, state):
        return int(state["steps"]) >= self.config.total_steps

    def env_steps(self, state):
        return int(state["steps"])

    def solution(self, state):
        w = np.full((self.config.num_policies, self.m), 1.0 / self.m, np.float32)
        return Solution(toy_act, state["params"], candidate_weights=w)


register_agent(
    AgentSpec(
        "toy-random",
        RandomSetConfig,
        RandomSetTrainer,
        summary="random policy set (tests)",
        budget_field="total_steps",
        action_kinds=("discrete",),
    )
)


# =============================================================================== helpers
def sub_env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MORL_IMPORT"] = "test_runs"
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"  # identical programs in every process
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env


def morl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "morl.cli", *args]


# =============================================================================== tests
from morl import runs as R  # noqa: E402
from morl.agent import make_config  # noqa: E402
from morl.evaluate import EvalProtocol  # noqa: E402

FAST = EvalProtocol(episodes=1)


def _request(seed=0, **cfg):
    cfg = {"total_timesteps": 3200, "num_policies": 2, **cfg}
    return R.RunRequest(
        "toy-hillclimb",
        DST,
        seed,
        make_config("toy-hillclimb", DST, **cfg),
        protocol=FAST,
        eval_every=1600,
        checkpoint_secs=0.0,
    )


def test_run_folder_files_and_store(tmp_path):
    info = R.create_run(tmp_path, _request())
    events = []
    (result,) = R.train_runs([info], progress=events.append)
    files = {p.name for p in info.path.iterdir()}
    assert {
        "config.json",
        "metrics.jsonl",
        "metrics.csv",
        "front.csv",
        "returns.csv",
        "result.json",
        "checkpoints",
    } <= files
    assert "train.lock" not in files
    rows = R.read_jsonl(info.path / "metrics.jsonl")
    assert [r["update"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[-1]["env_steps"] == result["env_steps"] >= 3200
    assert any("eval/hypervolume" in r for r in rows)  # the periodic evaluation ran
    assert events[-1].finished and events[-1].env_steps == result["env_steps"]
    names, front = R.read_front_csv(info.path / "front.csv")
    assert names == ["treasure", "time"] or len(names) == 2
    assert front.shape[0] == result["front_size"] >= 1
    st = R.store_for(tmp_path)
    (row,) = st.runs()
    assert row["run_id"] == info.id and row["agent"] == "toy-hillclimb" and row["seed"] == 0
    assert row["metrics"]["hypervolume"] == pytest.approx(result["metrics"]["hypervolume"])
    assert row["config"]["total_timesteps"] == 3200 and row["budget"] == 3200
    assert R.read_run(info.path).status == "done"


def test_checkpoint_roundtrip_typed_keys_and_growing_state(tmp_path):
    ck = R.Checkpointer(tmp_path / "ck")
    state = {
        "key": jax.random.key(3),
        "raw": jax.random.PRNGKey(4),
        "archive": jnp.arange(6.0).reshape(3, 2),
        "n": jnp.int32(7),
        "host": {
            "returns": np.array([1 / 3, 2**-40], np.float64),
            "ids": np.array([2**40]),
            "none_yet": np.zeros((0, 2), np.float64),
        },
        "count": 3,
    }
    ck.save(1, state, {"loop": {"update": 1}})
    grown = dict(state, archive=jnp.arange(10.0).reshape(5, 2))
    ck.save(2, grown, {"loop": {"update": 2}})
    template = jax.eval_shape(lambda: state)  # shapes of the *initial* state
    restored, meta = ck.restore(template)
    assert meta["loop"]["update"] == 2
    assert restored["archive"].shape == (5, 2) and np.array_equal(restored["archive"], grown["archive"])
    assert jax.dtypes.issubdtype(restored["key"].dtype, jax.dtypes.prng_key)
    assert np.array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(state["key"]))
    assert np.array_equal(restored["raw"], state["raw"]) and int(restored["n"]) == 7
    host = restored["host"]  # host buffers stay numpy, exact, writable
    assert isinstance(host["returns"], np.ndarray) and host["returns"].dtype == np.float64
    assert np.array_equal(host["returns"], state["host"]["returns"]) and host["ids"][0] == 2**40
    assert host["none_yet"].shape == (0, 2) and host["none_yet"].dtype == np.float64  # zero-size survives
    host["returns"][0] = 5.0
    assert restored["count"] == 3 and isinstance(restored["count"], int)
    assert isinstance(restored["archive"], jax.Array)
    ck.save(3, grown, {})
    assert ck.steps() == [2, 3]  # the last two kept
    ck.close()


def test_resume_in_process_matches_uninterrupted(tmp_path):
    """Stop after 2 chunks (checkpoint), resume in a new driver: same front and metrics rows."""
    ref = R.create_run(tmp_path / "a", _request(seed=3))
    R.train_runs([ref], store=False)
    part = R.create_run(tmp_path / "b", _request(seed=3))

    calls = []

    def stop_after_two(event):
        calls.append(event)
        if len(calls) == 3:  # start event + 2 chunks
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        R.train_runs([part], progress=stop_after_two, store=False)
    info = R.read_run(part.path)
    assert info.status == "interrupted"
    assert R.Checkpointer(info.path / "checkpoints").latest() == 2
    R.train_runs([info], resume=True, store=False)
    assert (ref.path / "front.csv").read_text() == (part.path / "front.csv").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_time"} for r in rows]  # noqa: E731
    assert strip(R.read_jsonl(ref.path / "metrics.jsonl")) == strip(R.read_jsonl(part.path / "metrics.jsonl"))


def test_vmapped_seeds_one_program(tmp_path):
    infos = [R.create_run(tmp_path, _request(seed=s)) for s in (0, 1, 2)]
    results = R.train_runs(infos, vmap_seeds=True)  # as on a GPU/TPU (`R.seeds_in_one_program`)
    assert len(results) == 3 and len({r["run_id"] for r in results}) == 3
    fronts = [(i.path / "returns.csv").read_text() for i in infos]
    assert len(set(fronts)) > 1  # different seeds, different candidates
    # seed 1 of the vmapped group equals seed 1 trained alone (up to float noise of batching)
    alone = R.create_run(tmp_path / "alone", _request(seed=1))
    R.train_runs([alone], store=False)
    a = np.loadtxt(alone.path / "returns.csv", delimiter=",", skiprows=1)
    b = np.loadtxt(infos[1].path / "returns.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert R.store_for(tmp_path).count() == 3


def test_seeds_on_a_cpu_train_in_lanes_bit_identical_to_one_seed_runs(tmp_path):
    assert not R.seeds_in_one_program()  # the default on a CPU
    assert R.seeds_in_one_program(True) and not R.seeds_in_one_program(False)
    cores = len(os.sched_getaffinity(0))
    assert R.seed_lanes(16) == min(cores, R.MAX_LANES) and R.seed_lanes(1) == 1  # a lane per core, never idle ones
    assert R.seed_lanes(5, lanes=3) == 3 and R.seed_lanes(2, lanes=8) == 2
    infos = [R.create_run(tmp_path, _request(seed=s)) for s in (0, 1)]
    R.train_runs(infos, store=False)
    alone = R.create_run(tmp_path / "alone", _request(seed=1))
    R.train_runs([alone], store=False)
    for name in ("returns.csv", "front.csv"):
        assert (alone.path / name).read_text() == (infos[1].path / name).read_text()


def test_host_env_seeds_in_lanes_step_their_own_simulators(tmp_path):
    """A host env's trainer holds vector envs that step in place: seeds in lanes must not share one (they did, and
    C-MORL's MuJoCo seeds crashed on each other's resets). Each lane's run equals the same seed trained alone."""

    def request(seed):
        cfg = make_config("c-morl", DST, **CMORL_HOST_TINY)
        kwargs = {"max_episode_steps": 20}
        return R.RunRequest("c-morl", f"gym:{DST}", seed, cfg, env_kwargs=kwargs, protocol=FAST, eval_every=0)

    infos = [R.create_run(tmp_path, request(s)) for s in (0, 1)]
    R.train_runs(infos, store=False, lanes=2)
    alone = R.create_run(tmp_path / "alone", request(1))
    R.train_runs([alone], store=False)
    for name in ("returns.csv", "front.csv"):
        assert (alone.path / name).read_text() == (infos[1].path / name).read_text()


def test_sigkill_and_resume_gives_the_same_front(tmp_path):
    """A run killed with SIGKILL mid-training and resumed ends with the same front as an uninterrupted run."""
    common = [
        "train",
        "toy-hillclimb",
        "--env",
        DST,
        "--seed",
        "5",
        "--steps",
        "9600",
        "--eval-every",
        "3200",
        "--checkpoint-secs",
        "0",
        "--protocol-episodes",
        "1",
        "--quiet",
    ]
    ref = subprocess.Popen(
        morl_cmd(*common, "--runs-dir", str(tmp_path / "ref")),
        env=sub_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    victim = subprocess.Popen(
        morl_cmd(*common, "--delay", "0.4", "--runs-dir", str(tmp_path / "kill")),
        env=sub_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    run_dir = None
    while time.time() < deadline:
        dirs = [p for p in (tmp_path / "kill").glob("toy-hillclimb_*") if p.is_dir()]
        if dirs:
            run_dir = dirs[0]
            ckpts = run_dir / "checkpoints"
            steps = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) if ckpts.exists() else []
            if steps and steps[-1] >= 3:
                break
        assert victim.poll() is None, victim.communicate()[0]
        time.sleep(0.05)
    else:
        victim.kill()
        pytest.fail("the run never wrote 3 checkpoints")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert R.read_run(run_dir).status == "interrupted"
    assert not (run_dir / "result.json").exists()
    out = subprocess.run(
        morl_cmd("train", "--resume", run_dir.name, "--runs-dir", str(tmp_path / "kill"), "--quiet"),
        env=sub_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    ref_out = ref.communicate(timeout=300)[0]
    assert ref.returncode == 0, ref_out
    (ref_dir,) = [p for p in (tmp_path / "ref").glob("toy-hillclimb_*")]
    assert (run_dir / "front.csv").read_text() == (ref_dir / "front.csv").read_text()
    r1 = json.loads((run_dir / "result.json").read_text())
    r2 = json.loads((ref_dir / "result.json").read_text())
    assert r1["metrics"] == r2["metrics"] and r1["env_steps"] == r2["env_steps"] == 9600
    rows = R.read_jsonl(run_dir / "metrics.jsonl")
    assert [r["update"] for r in rows] == list(range(1, len(rows) + 1))  # no duplicated or torn rows


# =============================================================================== config I/O and run status
@dataclass(frozen=True)
class _Inner:
    lr: float = 3e-4
    hidden: tuple[int, ...] = (64, 64)


@dataclass(frozen=True)
class _Outer:
    steps: int = 10
    inner: _Inner = field(default_factory=_Inner)
    maybe: _Inner | None = None


def test_nested_config_round_trips_through_config_json():
    """A config field that is itself a dataclass is stored as a nested object and coerced back."""
    cfg = _Outer(steps=7, inner=_Inner(lr=0.5, hidden=(8, 4, 2)), maybe=_Inner(hidden=(3,)))
    data = json.loads(json.dumps(R.config_to_dict(cfg)))  # what config.json holds
    assert data["inner"] == {"lr": 0.5, "hidden": [8, 4, 2]} and data["maybe"]["hidden"] == [3]
    back = R.config_from_dict(_Outer, data)
    assert back == cfg and isinstance(back.inner, _Inner) and isinstance(back.maybe.hidden, tuple)
    back = R.config_from_dict(_Outer, {"inner": {"lr": 1}, "maybe": None})  # JSON ints, missing fields
    assert back == _Outer(inner=_Inner(lr=1.0)) and isinstance(back.inner.lr, float)
    with pytest.raises(R.RunError, match=r"_Inner has no field\(s\) \['width'\]"):
        R.config_from_dict(_Outer, {"inner": {"width": 3}})


def test_check_trainable_names_what_to_do(tmp_path):
    def info(status):
        return R.RunInfo("r1", tmp_path / "r1", status, {}, problem="no config.json")

    for status in ("interrupted", "failed"):
        for resume in (False, True):
            R.check_trainable(info(status), resume)  # trainable: no error
    with pytest.raises(R.RunError, match="already finished; `morl eval r1` re-evaluates it"):
        R.check_trainable(info("done"))
    with pytest.raises(R.RunError, match=r"is corrupt \(no config.json\); delete it and train again"):
        R.check_trainable(info("corrupt"))
    with pytest.raises(R.RunError, match="is corrupt .*; it cannot be resumed"):
        R.check_trainable(info("corrupt"), resume=True)
    with pytest.raises(R.RunError, match="being trained by another process; stop it first"):
        R.check_trainable(info("running"), resume=True)
    with pytest.raises(R.RunError, match="being trained by another process .see .*train.lock"):
        R.check_trainable(info("running"))
    with pytest.raises(R.RunError, match="already finished"):
        R.train_runs([info("done")])  # train_runs refuses before building anything


def test_the_build_cache_keeps_the_recent_trainers_and_lets_old_ones_go():
    """`morl tune` builds one config per trial in one process: the driver's trainer cache is bounded, reuses the
    recent builds (seeds of a group, runs of a suite) and frees the oldest."""
    import gc
    import weakref

    from morl.runs import driver

    def meta(i):
        return {"agent": "toy-random", "env": "deep-sea-treasure-v0", "config": {"total_steps": 1000 + i}}

    driver._BUILT.clear()
    first = weakref.ref(R.build(meta(0))[4])
    trainers = [R.build(meta(i))[4] for i in range(1, driver.BUILT_CACHE_SIZE + 1)]
    assert len(driver._BUILT) == driver.BUILT_CACHE_SIZE
    assert R.build(meta(driver.BUILT_CACHE_SIZE))[4] is trainers[-1]  # a recent build is reused
    assert R.build(meta(1))[4] is trainers[0]  # the oldest kept one too, and it becomes the newest
    del trainers
    gc.collect()
    assert first() is None  # the first build was dropped and nothing else holds it
    driver._BUILT.clear()
