"""`morl tune`: a study runs, is resumed after its process died (the stale trial queued again), ends with the asked
number of trials in the study and the store, and writes a best config that `morl train --config` reproduces.

The tuner is tested with a toy agent registered here (a policy set of "go right to column c, then dive" policies on
deep-sea-treasure whose columns are drawn at random among the first ``reach``): its runs cost no training compile,
so four trials, a resume and a reproduction fit the CI budget, and its metric depends on both the hyperparameter
and the seed, so a reproduction that matched by accident would be unlikely. The same flow with Envelope is the
slow test at the end.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optuna
import pytest
from flax import struct

from morl import tune as T
from morl.agent import AgentSpec, Trainer, register_agent
from morl.cli import main
from morl.solution import Solution
from morl.store import Store

ENV = "deep-sea-treasure-v0"


# ---------------------------------------------------------------------- the toy agent
@dataclass(frozen=True)
class DiveConfig:
    total_timesteps: int = 40  # budget: 10 per update
    reach: int = 3  # columns the policies' targets are drawn from (the first `reach`)
    candidates: int = 3  # policies in the set


@struct.dataclass
class DiveState:
    targets: jax.Array  # [K] int32 target column of each policy
    key: jax.Array
    steps: jax.Array


def _dive(params, w, obs, key):
    """Right along the surface to the target column, then down to its treasure (actions: 1 down, 3 right)."""
    return jnp.where(obs[..., 1] < params, 3, 1).astype(jnp.int32)


class DiveTrainer(Trainer):
    vmappable = True

    def __init__(self, config: DiveConfig, env, env_params=None):
        self.config = config

    def init(self, key):
        return DiveState(jnp.zeros((self.config.candidates,), jnp.int32), key, jnp.int32(0))

    def update(self, state):
        key, k = jax.random.split(state.key)
        i = (state.steps // 10) % self.config.candidates
        targets = state.targets.at[i].set(jax.random.randint(k, (), 0, self.config.reach))
        return DiveState(targets, key, state.steps + 10), {}

    def done(self, state):
        return int(state.steps) >= self.config.total_timesteps

    def env_steps(self, state):
        return int(state.steps)

    def solution(self, state):
        return Solution(act=_dive, params=state.targets)


register_agent(
    AgentSpec(
        name="tune-dive",
        config_cls=DiveConfig,
        make_trainer=lambda c, env, p: DiveTrainer(c, env, p),
        action_kinds=("discrete",),
    )
)

SPACE = """
[reach]
type = "int"
low = 1
high = 10
[candidates]
value = 3
"""


def _tune(runs, space, trials, *extra):
    return main(
        ["tune", "tune-dive", "--env", ENV, "--trials", str(trials), "--seeds", "0-1", "--steps", "40",
         "--eval-every", "10", "--space", str(space), "--runs-dir", str(runs), "--protocol-episodes", "1", "--quiet",
         *extra]
    )  # fmt: skip


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    (d / "space.toml").write_text(SPACE)
    return d


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_study_resumes_after_a_killed_process_and_ends_with_all_trials(study_dir):
    runs, space = study_dir / "runs", study_dir / "space.toml"
    assert _tune(runs, space, 2, "--pruner", "none") == 0  # (the pruner has its own test below)
    name = f"tune-dive_{ENV}_hv_40"
    url = f"sqlite:///{(runs / T.STORAGE_FILE).absolute()}"
    study = optuna.load_study(study_name=name, storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    # what a SIGKILL leaves: a RUNNING trial, with its parameters, owned by a process that is gone
    killed = study.ask()
    T.suggest(killed, T.load_space("tune-dive", space)[0])
    killed.set_user_attr("pid", _dead_pid())
    killed.set_user_attr("host", socket.gethostname())
    assert _tune(runs, space, 4, "--pruner", "none") == 0  # the same command with --trials 4: resumes, adds two
    study = optuna.load_study(study_name=name, storage=url)
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 4 and states[2] == "FAIL" and len(states) == 5
    retry = study.trials[3]
    assert retry.user_attrs["retry_of"] == 2 and retry.params == study.trials[2].params
    # every completed trial's runs are finished rows of the store (2 seeds each), tagged with the study
    rows = Store(runs / "results.sqlite").runs(suite=f"tune:{name}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert sorted(r["run_id"] for r in rows) == sorted(i for t in done for i in t.user_attrs["runs"])
    for t in done:  # the objective is the seed mean of the runs' final HV
        hv = [r["metrics"]["hypervolume"] for r in rows if r["run_id"] in t.user_attrs["runs"]]
        assert len(hv) == 2 and t.values[0] == pytest.approx(np.mean(hv), rel=1e-12)
        assert t.intermediate_values  # the periodic evaluations reached the pruner
    out = runs / "tune" / name
    for f in (T.BEST_FILE, T.TRIALS_CSV, T.HISTORY_PNG, T.IMPORTANCES_PNG):
        assert (out / f).stat().st_size > 0
    assert (out / T.TRIALS_CSV).read_text().count("\n") == 6  # header + 5 trials
    # a third call with the same --trials has nothing left to do
    assert _tune(runs, space, 4, "--pruner", "none") == 0
    assert len(optuna.load_study(study_name=name, storage=url).trials) == 5


def test_sigkilled_study_resumes_to_all_trials(tmp_path):
    """A real kill: `morl tune --trials 4` in a subprocess, SIGKILLed once a trial has completed; the same command
    in this process ends the study with 4 completed trials, the killed trial (if one was running) failed and run
    again with its parameters, and every completed trial's runs in the store."""
    runs = tmp_path / "runs"
    (tmp_path / "space.toml").write_text(SPACE)
    args = ["tune", "tune-dive", "--env", ENV, "--trials", "4", "--seeds", "0-1", "--steps", "400", "--eval-every",
            "100", "--space", str(tmp_path / "space.toml"), "--runs-dir", str(runs), "--protocol-episodes", "1",
            "--pruner", "none", "--quiet"]  # fmt: skip
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_tune; "
        f"from morl.cli import main; sys.exit(main({args!r}))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = runs / T.STORAGE_FILE
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with sqlite3.connect(db, timeout=1) as con:
                done = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
        except sqlite3.Error:  # not created yet
            done = 0
        if done >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert main(args) == 0
    study = optuna.load_study(study_name=f"tune-dive_{ENV}_hv_400", storage=f"sqlite:///{db.absolute()}")
    by_state = {s: [t for t in study.trials if t.state.name == s] for s in ("COMPLETE", "FAIL", "RUNNING")}
    assert len(by_state["COMPLETE"]) == 4 and not by_state["RUNNING"]
    retried = {t.user_attrs.get("retry_of"): t for t in study.trials if "retry_of" in t.user_attrs}
    # the killed trial (if any) was run again with its parameters; one killed before it drew them has none to run
    assert set(retried) == {t.number for t in by_state["FAIL"] if t.params}
    for number, retry in retried.items():
        assert retry.params == study.trials[number].params and retry.state.name == "COMPLETE"
    stored = {r["run_id"] for r in Store(runs / "results.sqlite").runs(suite=f"tune:tune-dive_{ENV}_hv_400")}
    assert {i for t in by_state["COMPLETE"] for i in t.user_attrs["runs"]} <= stored


def test_best_config_reproduces_the_best_trial_with_morl_train(study_dir):
    runs = study_dir / "runs"
    name = f"tune-dive_{ENV}_hv_40"
    best = json.loads((runs / "tune" / name / T.BEST_FILE).read_text())
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{(runs / T.STORAGE_FILE).absolute()}")
    assert best["tuned"]["trial"] == study.best_trial.number
    assert best["config"]["reach"] == study.best_trial.params["reach"]
    again = study_dir / "again"
    code = main(
        ["train", "tune-dive", "--env", ENV, "--config", str(runs / "tune" / name / T.BEST_FILE), "--seeds", "0-1",
         "--protocol-episodes", "1", "--runs-dir", str(again), "--quiet"]
    )  # fmt: skip
    assert code == 0
    rows = Store(again / "results.sqlite").runs()
    by_seed = {r["seed"]: r["metrics"]["hypervolume"] for r in rows}
    assert [by_seed[0], by_seed[1]] == study.best_trial.user_attrs["hv_per_seed"]
    assert all(r["config"] == best["config"] for r in rows)


class _FakeTrial:
    def __init__(self, prune_below: float):
        self.reports, self.prune_below = [], prune_below

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.reports[-1][1] < self.prune_below


def test_pruner_gets_the_seed_mean_of_each_evaluation_and_stops_the_trial():
    class Info:
        def __init__(self, i):
            self.id = i

    class Event:
        def __init__(self, update):
            self.update = update

    trial = _FakeTrial(prune_below=5.0)
    c = T._Collector(trial, "hypervolume", 2)
    a, b = c.callback(Info("a")), c.callback(Info("b"))
    a.row({"update": 1, "env_steps": 10, "eval/hypervolume": 8.0})
    c.progress(Event(1))  # seed b has not evaluated yet: nothing reported
    assert trial.reports == []
    b.row({"update": 1, "env_steps": 10, "eval/hypervolume": 6.0})
    c.progress(Event(1))
    c.progress(Event(1))  # once per evaluation
    assert trial.reports == [(10, 7.0)]
    a.row({"update": 2, "env_steps": 20, "eval/hypervolume": 2.0})
    b.row({"update": 2, "env_steps": 20, "eval/hypervolume": 4.0})
    with pytest.raises(optuna.TrialPruned):
        c.progress(Event(2))
    assert trial.reports[-1] == (20, 3.0)


def test_bad_requests_are_refused_with_the_fix(study_dir, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[no_such_field]\ntype = 'float'\nlow = 0\nhigh = 1\n")
    assert _tune(tmp_path / "r", bad, 1) == 2
    assert "no config field(s) ['no_such_field']" in capsys.readouterr().err
    assert _tune(tmp_path / "r", study_dir / "space.toml", 1, "--metric", "hv", "nope") == 2
    assert "unknown metric(s) ['nope']" in capsys.readouterr().err
    budget = tmp_path / "budget.toml"
    budget.write_text("[total_timesteps]\nvalue = 5\n")
    assert _tune(tmp_path / "r", budget, 1) == 2
    assert "--steps" in capsys.readouterr().err
    # the study of tests above, asked for with other seeds: refused rather than mixed
    code = main(
        ["tune", "tune-dive", "--env", ENV, "--trials", "1", "--seeds", "0", "--steps", "40", "--space",
         str(study_dir / "space.toml"), "--runs-dir", str(study_dir / "runs"), "--quiet"]
    )  # fmt: skip
    assert code == 2
    assert "made for another request" in capsys.readouterr().err


def test_shipped_spaces_name_real_config_fields():
    for agent in ("envelope", "pgmorl", "morld"):
        space, _ = T.load_space(agent)
        assert space


@pytest.mark.slow
def test_envelope_study_resumes_and_reproduces(tmp_path):
    """The flow above with a real agent (Envelope, tiny budget): ~1 min per trial on a loaded 2-core machine."""
    space = tmp_path / "space.toml"
    space.write_text(
        '[learning_rate]\ntype = "float"\nlow = 0.0001\nhigh = 0.03\nlog = true\n[net_arch]\nvalue = [16, 16]\n'
        "[batch_size]\nvalue = 16\n[steps_per_chunk]\nvalue = 100\n[learning_starts]\nvalue = 50\n"
        "[buffer_size]\nvalue = 1000\n"
    )
    args = ["tune", "envelope", "--env", ENV, "--seeds", "0-1", "--steps", "400", "--eval-every", "200", "--space",
            str(space), "--runs-dir", str(tmp_path / "r"), "--protocol-front-weights", "8", "--protocol-episodes", "1",
            "--protocol-eu-weights", "8", "--quiet"]  # fmt: skip
    assert main(args + ["--trials", "2"]) == 0
    assert main(args + ["--trials", "4"]) == 0
    name = f"envelope_{ENV}_hv_400"
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{(tmp_path / 'r' / T.STORAGE_FILE).absolute()}")
    assert len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]) == 4
    best = tmp_path / "r" / "tune" / name / T.BEST_FILE
    assert main(["train", "envelope", "--env", ENV, "--config", str(best), "--seeds", "0-1", "--protocol-front-weights",
                 "8", "--protocol-episodes", "1", "--protocol-eu-weights", "8", "--runs-dir", str(tmp_path / "again"),
                 "--quiet"]) == 0  # fmt: skip
    rows = Store(tmp_path / "again" / "results.sqlite").runs()
    assert sorted(r["metrics"]["hypervolume"] for r in rows) == sorted(study.best_trial.user_attrs["hv_per_seed"])


def test_trials_are_born_with_their_owner_and_ownerless_ones_are_recovered(monkeypatch):
    """A trial gets its owner (pid, host) from the queued trial ask() takes, so no kill can leave a RUNNING trial
    without one; a RUNNING trial that still has none (a queued retry taken by a process killed at once) is failed
    once it is older than ORPHAN_AFTER, and run again only if it had parameters."""
    from datetime import timedelta

    from optuna.trial import TrialState

    study = optuna.create_study()
    owner = {"pid": 123, "host": "h"}
    study.enqueue_trial({}, user_attrs=owner)
    born = study.ask()
    assert born.user_attrs == owner and born.params == {}  # the owner is there before ask() returns
    study.tell(born, 1.0)
    no_params = study.ask()  # ownerless, killed before it drew parameters
    with_params = study.ask()
    with_params.suggest_float("x", 0.0, 1.0)
    assert T.recover(study) == []  # younger than ORPHAN_AFTER: maybe a live process between ask and its owner
    monkeypatch.setattr(T, "ORPHAN_AFTER", timedelta(0))
    assert T.recover(study) == [with_params.number]
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[no_params.number] == states[with_params.number] == TrialState.FAIL
    queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert [(t.system_attrs["fixed_params"], t.user_attrs) for t in queued] == [
        ({"x": with_params.params["x"]}, {"retry_of": with_params.number})
    ]
