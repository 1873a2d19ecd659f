"""The `morl` CLI end to end (in-process `main([...])`), and its answers to bad input.

The agents are the test agents of `test_runs.py` (toy-hillclimb: vmappable; toy-random: sequential),
so these tests do not wait for the real agents; `test_cli_c_morl_end_to_end` drives C-MORL once it exists.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import test_runs  # noqa: F401  (registers toy-hillclimb and toy-random)

from morl import runs as R
from morl.cli import main

DST = "deep-sea-treasure-v0"
FAST = ["--protocol-episodes", "1", "--quiet"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # rich wraps long lines; compare on single spaces


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """3 seeds of toy-hillclimb (vmapped) and 3 of toy-random (sequential) on DST, in one runs folder."""
    d = tmp_path_factory.mktemp("runs")
    assert (
        main(
            [
                "train",
                "toy-hillclimb",
                "--env",
                DST,
                "--seeds",
                "0-2",
                "--steps",
                "3200",
                "--num-policies",
                "2",
                "--eval-every",
                "1600",
                "--runs-dir",
                str(d),
                *FAST,
            ]
        )
        == 0
    )
    assert (
        main(["train", "toy-random", "--env", DST, "--seeds", "0,1,2", "--steps", "1000", "--runs-dir", str(d), *FAST])
        == 0
    )
    return d


def test_train_writes_runs_and_final_table(trained, capsys, tmp_path):
    good, bad = R.list_runs(trained)
    assert not bad
    assert sorted((r.agent, r.seed) for r in good) == [
        (a, s) for a in ("toy-hillclimb", "toy-random") for s in (0, 1, 2)
    ]
    assert all(r.status == "done" for r in good)
    hill = [r for r in good if r.agent == "toy-hillclimb"]
    assert all(r.meta["config"]["num_policies"] == 2 and r.meta["budget"] == 3200 for r in hill)
    assert all(r.meta["protocol"]["episodes"] == 1 for r in good)
    # the final table of a fresh (non-quiet) run, with the progress bar's fields
    code, out, _ = run_cli(
        capsys, "train", "toy-random", "--env", DST, "--seed", "7", "--runs-dir", tmp_path, "--protocol-episodes", "1"
    )
    assert code == 0
    assert "final evaluation" in out and "seed 7" in out and "HV" in out and "steps" in out
    assert re.search(r"toy-random_deep-sea-treasure-v0_s7_\S+", out)


def test_runs_lists_and_reports_corrupt_folders(trained, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", trained)
    assert code == 0 and out.count("done") >= 6 and "toy-random" in out
    # half-written / damaged folders next to good ones: reported and skipped, never a crash
    import shutil

    d = tmp_path / "runs"
    src = next(p for p in trained.iterdir() if p.name.startswith("toy-random_"))
    shutil.copytree(src, d / src.name)
    (d / "half-created").mkdir()
    torn = d / "torn-config"
    torn.mkdir()
    (torn / "config.json").write_text('{"run_id": "torn-config", "agent": "toy-ra')
    bad_result = d / "torn-result"
    shutil.copytree(src, bad_result)
    (bad_result / "result.json").write_text("{")
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", d)
    flat = " ".join(out.split())
    assert code == 0 and src.name in out
    assert "skipped 3 corrupt or half-written run folder(s)" in flat
    assert "half-created: no config.json" in flat and "torn-config: unreadable config.json" in flat
    assert "torn-result: unreadable result.json" in flat
    code, _, err = run_cli(capsys, "eval", "torn-config", "--runs-dir", d)
    assert code == 2 and "corrupt" in err
    code, _, err = run_cli(capsys, "train", "--resume", "torn-result", "--runs-dir", d)
    assert code == 2 and "corrupt" in err


def test_store_rebuilds_from_run_folders(trained, capsys, tmp_path):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(trained, d, ignore=shutil.ignore_patterns("results.sqlite*"))  # folders from another machine
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", d, "--reindex")
    assert code == 0 and "indexed 6 finished run(s)" in out
    assert R.store_for(d).count() == 6
    code, out, _ = run_cli(capsys, "leaderboard", "--runs-dir", d)
    assert "| toy-hillclimb |" in out and "(n=3)" in out
    # the leaderboard indexes folders that arrive without the database by itself (committed suite runs)
    fresh = tmp_path / "fresh"
    shutil.copytree(trained, fresh, ignore=shutil.ignore_patterns("results.sqlite*"))
    code, out, _ = run_cli(capsys, "leaderboard", "--runs-dir", fresh)
    assert code == 0 and "| toy-hillclimb |" in out and "(n=3)" in out
    assert R.store_for(fresh).count() == 6


def test_a_live_lock_blocks_a_second_trainer(trained, tmp_path):
    import shutil
    import socket
    import subprocess
    import sys

    src = next(p for p in trained.iterdir() if p.name.startswith("toy-random_"))
    d = tmp_path / "runs" / src.name
    shutil.copytree(src, d)
    (d / "result.json").unlink()  # looks unfinished
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (d / "train.lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        assert R.read_run(d).status == "running"
        with pytest.raises(R.RunError, match="being trained by another process"):
            R.train_runs([R.read_run(d)], resume=True)
    finally:
        holder.kill()
        holder.wait()
    assert R.read_run(d).status == "interrupted"  # the holder is gone: resumable


def test_eval_reproduces_final_metrics_and_records_new_protocol(trained, capsys):
    run = next(r for r in R.list_runs(trained)[0] if r.agent == "toy-hillclimb")
    code, out, _ = run_cli(capsys, "eval", run.id[:40], "--runs-dir", trained)  # a unique prefix works
    assert code == 0 and "same protocol" in out
    h = run.result["protocol_hash"]
    saved = json.loads((run.path / "evals" / f"{h}.json").read_text())
    assert saved["metrics"] == pytest.approx(run.result["metrics"])  # same protocol + key: same numbers
    code, out, _ = run_cli(capsys, "eval", run.id, "--runs-dir", trained, "--gamma", "0.9", "--episodes", "2")
    assert code == 0 and "other protocol" in out and "gamma=0.9" in out
    rows = R.store_for(trained).evaluations(agent="toy-hillclimb")
    mine = [r for r in rows if r["run_id"] == run.id]
    assert len(mine) == 2 and {r["protocol"]["gamma"] for r in mine} == {0.99, 0.9}


def test_plot_writes_png_with_true_front(trained, capsys):
    import matplotlib.image as mpimg

    run = next(r for r in R.list_runs(trained)[0] if r.agent == "toy-hillclimb")
    code, out, _ = run_cli(capsys, "plot", run.id, "--runs-dir", trained)
    assert code == 0 and "true front overlaid" in " ".join(out.split())
    img = mpimg.imread(run.path / "front.png")
    assert img.shape[0] > 200 and img.shape[1] > 200
    assert (run.path / "front_curve.png").exists()  # two evaluations -> a learning curve


@pytest.mark.parametrize("m", [3, 6])
def test_plot_front_3d_and_parallel_coordinates(tmp_path, m):
    import matplotlib.image as mpimg

    from morl.plots import plot_front

    rng = np.random.default_rng(0)
    front, known = rng.random((8, m)), rng.random((20, m)) + 0.5
    path = plot_front(
        front, tmp_path / f"f{m}.png", names=[f"o{i}" for i in range(m)], known_front=known, title=f"{m} objectives"
    )
    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.std() > 0.01  # something was drawn
    with pytest.raises(ValueError, match="at least 2 objectives"):
        plot_front(np.zeros((3, 1)), tmp_path / "bad.png")


def test_leaderboard_three_seeds_all_formats(trained, capsys):
    code, out, _ = run_cli(capsys, "leaderboard", "--runs-dir", trained, "--agent", "toy-hillclimb", "toy-random")
    assert code == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("| toy-")]
    assert [ln.split("|")[1].strip() for ln in lines] == ["toy-hillclimb", "toy-random"]
    assert all("(n=3)" in ln and "[" in ln for ln in lines)  # mean [95% CI] over 3 seeds
    # the best mean is the bold one
    store = R.store_for(trained)
    rows = [
        r
        for r in store.evaluations(env=DST)
        if r["agent"].startswith("toy-")
        and r["protocol"]["gamma"] == 0.99
        and r["protocol"]["episodes"] == 1
        and r["budget"] in (3200, 1000)
    ]
    means = {}
    for a in ("toy-hillclimb", "toy-random"):
        means[a] = np.mean([r["metrics"]["hypervolume"] for r in rows if r["agent"] == a])
    # different budgets -> different columns; each column has one agent, so each is bold
    assert out.count("**") >= 4 and "1k steps" in out and "3.2k steps" in out
    assert "protocol" in out and "never mixed" in out
    code, csv, _ = run_cli(capsys, "leaderboard", "--runs-dir", trained, "--format", "csv", "--agent", "toy-hillclimb")
    header, row = csv.strip().splitlines()[:2]
    assert row.startswith("toy-hillclimb,") and "| mean" in header
    mean = float(row.split(",")[1])
    assert mean == pytest.approx(means["toy-hillclimb"], rel=1e-9)
    code, page, _ = run_cli(capsys, "leaderboard", "--runs-dir", trained, "--format", "html", "--metric", "igd")
    assert code == 0 and "<table>" in page and "<b>" in page and "lower is better" in page
    code, _, err = run_cli(capsys, "leaderboard", "--runs-dir", trained, "--metric", "speed")
    assert code == 2 and "invalid choice" in err


def test_help_lists_options_derived_from_the_config(capsys):
    code, out, _ = run_cli(capsys, "train", "toy-hillclimb", "--env", "fruit-tree-v0", "--help")
    flat = " ".join(out.split())
    assert code == 0
    for opt in (
        "--total-timesteps",
        "--num-policies",
        "--sigma",
        "--schedule",
        "--strict",
        "--first-weights",
        "--protocol-gamma",
        "--protocol-episodes",
        "--steps",
        "--seeds",
        "--resume",
    ):
        assert opt in out, opt
    assert "scale of the random perturbations" in flat  # the field's #: comment
    assert "[int; default: 7]" in flat  # fruit-tree's per-env default
    assert "{constant,linear}" in flat
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0 and "toy-hillclimb" in out and "toy-random" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "toy-hillclimbb", "--env", DST], "unknown agent 'toy-hillclimbb'. Did you mean: toy-hillclimb"),
        (
            ["train", "toy-hillclimb", "--env", DST, "--sigmaa", "1"],
            "unknown option --sigmaa for agent 'toy-hillclimb'. Did you mean: --sigma",
        ),
        (["train", "toy-hillclimb", "--env", DST, "--num-polices", "3"], "Did you mean: --num-policies"),
        (
            ["train", "toy-hillclimb", "--env", DST, "--sigma", "abc"],
            "argument --sigma: invalid value 'abc': expected a number",
        ),
        (["train", "toy-hillclimb", "--env", DST, "--num-policies", "2.5"], "invalid value '2.5': expected an integer"),
        (["train", "toy-hillclimb", "--env", DST, "--schedule", "cosine"], "expected one of constant, linear"),
        (["train", "toy-hillclimb", "--env", DST, "--strict", "maybe"], "expected true or false"),
        (["train", "toy-hillclimb", "--env", DST, "--num-policies", "0"], "num_policies must be >= 1, got 0"),
        (["train", "toy-hillclimb", "--env", DST, "--first-weights", "0.5"], "first_weights needs 4 values"),
        (["train", "toy-hillclimb", "--env", "deep-sea-treasur-v0"], "Did you mean: deep-sea-treasure-v0"),
        (["train", "toy-hillclimb", "--env", DST, "--seed", "1", "--seeds", "0-2"], "give --seed or --seeds, not both"),
        (["train", "toy-hillclimb", "--env", DST, "--seeds", "4-2"], "invalid --seeds '4-2'"),
        (["train", "toy-hillclimb", "--env", DST, "--steps", "0"], "--steps must be positive"),
        (
            ["train", "toy-hillclimb", "--env", DST, "--protocol-gamma", "x"],
            "argument --protocol-gamma: invalid value 'x'",
        ),
        (["train", "toy-hillclimb"], "--env is required"),
        (["train"], "name an agent"),
        (["train", "--resume", "no-such-run"], "no run 'no-such-run'"),
        (["train", "--resume", "x", "--sigma", "1"], "drop --sigma"),
        (["eval", "no-such-run"], "no run 'no-such-run'"),
        (["plot", "no-such-run"], "no run 'no-such-run'"),
        (["train", "toy-random", "--env", "mo-mountaincarcontinuous-v0"], "supports discrete actions"),
    ],
)
def test_bad_input_gets_a_clear_error(capsys, tmp_path, argv, expected):
    code, out, err = run_cli(capsys, *argv, "--runs-dir", tmp_path)
    assert code == 2, out
    assert expected in err, err
    assert "Traceback" not in err and not list(tmp_path.glob("*_s*_*"))  # nothing half-created


def test_derived_values_reach_the_config(capsys, tmp_path):
    code, _, _ = run_cli(
        capsys,
        "train",
        "toy-hillclimb",
        "--env",
        DST,
        "--steps",
        "1e3",
        "--num-policies",
        "2",
        "--first-weights",
        "0.2,0.8",
        "--strict",
        "false",
        "--schedule",
        "linear",
        "--runs-dir",
        tmp_path,
        "--eval-every",
        "0",
        *FAST,
    )
    assert code == 0
    (run,) = R.list_runs(tmp_path)[0]
    cfg = run.meta["config"]
    assert cfg["total_timesteps"] == 1000 and cfg["first_weights"] == [0.2, 0.8]
    assert cfg["strict"] is False and cfg["schedule"] == "linear"
    rows = R.read_jsonl(run.path / "metrics.jsonl")
    assert not any("eval/hypervolume" in r for r in rows)  # --eval-every 0: final evaluation only
    # resume of a finished run is refused with the way forward
    code, _, err = run_cli(capsys, "train", "--resume", run.id, "--runs-dir", tmp_path)
    assert code == 2 and "already finished" in err and "morl eval" in err


def test_suite_run_writes_leaderboard_and_reuses_finished_runs(capsys, tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text("""
name = "tiny"
description = "two toy agents, two envs"
agents = ["toy-random", "toy-hillclimb"]
seeds = [0, 1]
metrics = ["hv", "igd"]
eval_every = 0

[protocol]
gamma = 0.99
episodes = 1

[agent_config.toy-hillclimb]
num_policies = 2

[[envs]]
id = "deep-sea-treasure-v0"
steps = 1600

[[envs]]
id = "fruit-tree-v0"
kwargs = { depth = 5 }
steps = 56
agent_config = { toy-random = { chunk = "25%" } }
""")
    out_md = tmp_path / "tiny.md"
    code, out, err = run_cli(capsys, "suite", "run", suite, "--runs-dir", tmp_path / "runs", "--out", out_md, "--quiet")
    assert code == 0, err
    text = out_md.read_text()
    assert "machine:" in text and "morl version:" in text and "# Leaderboard: tiny" in text
    assert "fruit-tree-v0 (depth=5)" in text and "deep-sea-treasure-v0" in text
    assert text.count("| toy-hillclimb |") == 2 and text.count("(n=2)") == 8  # 2 metrics x 2 agents x 2 envs
    good = R.list_runs(tmp_path / "runs")[0]
    n_runs = len(good)
    assert n_runs == 8
    chunks = {(r.env, r.meta["config"]["chunk"]) for r in good if r.agent == "toy-random"}
    assert chunks == {("fruit-tree-v0", 14), (DST, 500)}  # "25%" of 56 steps; the default
    # an interrupted run of the suite is resumed, not started again
    victim = next(r for r in good if r.agent == "toy-random" and r.env == DST)
    (victim.path / "result.json").unlink()
    out_md.unlink()  # without --out, a user's suite writes beside its file
    code, out, _ = run_cli(capsys, "suite", "run", suite, "--runs-dir", tmp_path / "runs", "--quiet")
    assert code == 0 and "2 seeds, 2 already finished" in out and "2 seeds, 1 already finished, 1 to resume" in out
    assert out_md.exists() and "# Leaderboard: tiny" in out_md.read_text()
    assert len(R.list_runs(tmp_path / "runs")[0]) == n_runs  # nothing retrained from scratch
    assert R.read_run(victim.path).status == "done"
    # the finished folders alone (as committed to a repository: no results.sqlite, no checkpoints), somewhere
    # else, count as finished: the suite trains nothing and the leaderboard reads them
    import shutil

    moved = tmp_path / "committed"
    shutil.copytree(tmp_path / "runs", moved, ignore=shutil.ignore_patterns("results.sqlite*", "checkpoints"))
    assert not (moved / "results.sqlite").exists()
    code, out, _ = run_cli(capsys, "suite", "run", suite, "--runs-dir", moved, "--quiet")
    assert code == 0 and out.count("2 seeds, 2 already finished") == 4, out
    assert len(R.list_runs(moved)[0]) == n_runs
    code, out, _ = run_cli(capsys, "leaderboard", "--runs-dir", moved, "--suite", "tiny", "--metric", "hv")
    assert code == 0 and out.count("(n=2)") == 4, out
    # --no-train: the leaderboard of what is there, the missing named in its header, nothing trained
    gone = next(r for r in R.list_runs(moved)[0] if r.agent == "toy-random" and r.env == DST)
    shutil.rmtree(gone.path)
    partial = tmp_path / "partial.md"
    code, out, _ = run_cli(capsys, "suite", "run", suite, "--runs-dir", moved, "--no-train", "--out", partial)
    assert code == 0 and "not trained: --no-train" in out, out
    assert len(R.list_runs(moved)[0]) == n_runs - 1
    header = partial.read_text()
    assert f"runs finished: {n_runs - 1} of {n_runs}" in header and f"toy-random on {DST} (1 seed(s))" in header
    assert f"--runs-dir {moved}" in header  # where the runs are, in the command that reproduces the table
    code, _, err = run_cli(capsys, "suite", "run", "no-such-suite")
    assert code == 2 and "no suite 'no-such-suite'" in err


def test_suite_batches_groups_on_an_accelerator_and_agents_on_a_cpu():
    """A GPU/TPU trains one (agent, env) group of seeds per call; a CPU all of one agent's fresh runs per call;
    runs being resumed are in no batch."""
    from types import SimpleNamespace as R

    from morl.suites import _training_batches

    a0, a1, b0 = R(agent="a", seed=0), R(agent="a", seed=1), R(agent="b", seed=0)
    a2, resumed = R(agent="a", seed=2), object()
    todo = [[(a0, None), (a1, resumed)], [(b0, None)], [(a2, None)]]
    assert _training_batches(todo, vmapped=True) == [[a0], [b0], [a2]]
    assert _training_batches(todo, vmapped=False) == [[a0, a2], [b0]]
    assert _training_batches([[(a1, resumed)]], vmapped=False) == []


def test_shipped_classic_suite_is_valid():
    from morl.suites import load_suite

    s = load_suite("classic")
    import morl

    for e in s.envs:
        env, _ = morl.make(e.id, **e.kwargs)
        assert env.has_known_front, e.id  # classic = known-front envs
    assert len(s.seeds) >= 3 and s.protocol


@pytest.mark.parametrize(("suite", "backend"), [("mujoco", "mjx"), ("mujoco-native", "mujoco")])
def test_shipped_mujoco_suites_are_valid(suite, backend):
    """Their every (agent, robot) config resolves (budget shares, per-env overrides) without building an env."""
    from morl.agent import agent_spec
    from morl.suites import load_suite, suite_requests

    s = load_suite(suite)
    assert s.protocol["max_steps"] == 500 and len(s.seeds) >= 3
    assert all("continuous" in agent_spec(a).action_kinds for a in s.agents)
    assert all(e.kwargs.get("backend") == backend and e.kwargs.get("max_steps") == 500 for e in s.envs)
    requests = [r for group in suite_requests(s) for r in group]
    assert len(requests) == len(s.agents) * len(s.envs) * len(s.seeds)
    cmorl_cheetah = next(r for r in requests if r.agent == "c-morl" and r.env == "mo-halfcheetah-v5")
    assert cmorl_cheetah.config.max_episode_steps == 500


def test_the_native_mujoco_suite_differs_from_mujoco_only_in_backend_and_agents():
    from morl.suites import load_suite

    mjx, native = load_suite("mujoco"), load_suite("mujoco-native")
    assert [(e.id, e.steps) for e in native.envs] == [(e.id, e.steps) for e in mjx.envs]
    assert native.protocol == mjx.protocol and native.seeds == mjx.seeds and set(native.agents) <= set(mjx.agents)
    for a in native.agents:
        assert native.agent_config.get(a) == mjx.agent_config.get(a)
        for e_native, e_mjx in zip(native.envs, mjx.envs):
            assert e_native.agent_config.get(a) == e_mjx.agent_config.get(a), (a, e_native.id)


def test_a_suite_that_extends_another_states_only_what_differs(tmp_path):
    """``extends``: protocol and agent configs merge key by key, other keys replace, the name is the child's, and
    ``env_kwargs`` overrides every inherited env's kwargs."""
    from morl.suites import load_suite

    (tmp_path / "base.toml").write_text(
        'name = "base"\nagents = ["c-morl", "pgmorl"]\nseeds = [0, 1]\neval_every = 0\n'
        "[protocol]\ngamma = 0.99\nepisodes = 5\n"
        "[agent_config.c-morl]\nnum_envs = 4\nnum_steps = 64\n"
        '[[envs]]\nid = "deep-sea-treasure-v0"\nsteps = 1000\nkwargs = { backend = "a", size = 2 }\n'
        '[[envs]]\nid = "minecart-v0"\nsteps = 2000\n'
    )
    (tmp_path / "child.toml").write_text(
        'extends = "base.toml"\nagents = ["c-morl"]\nenv_kwargs = { backend = "b" }\n'
        "[protocol]\nepisodes = 1\n[agent_config.c-morl]\nnum_steps = 32\n"
    )
    base, child = load_suite(str(tmp_path / "base.toml")), load_suite(str(tmp_path / "child.toml"))
    assert child.name == "child" and base.name == "base"
    assert child.agents == ["c-morl"] and child.seeds == [0, 1] and child.eval_every == 0
    assert child.protocol == {"gamma": 0.99, "episodes": 1}
    assert child.agent_config == {"c-morl": {"num_envs": 4, "num_steps": 32}}
    assert [(e.id, e.steps, e.kwargs) for e in child.envs] == [
        ("deep-sea-treasure-v0", 1000, {"backend": "b", "size": 2}),
        ("minecart-v0", 2000, {"backend": "b"}),
    ]
    assert base.envs[0].kwargs == {"backend": "a", "size": 2}  # the parent is not changed


def test_an_installed_wheel_carries_the_built_in_suites(tmp_path, monkeypatch):
    """pyproject ships experiments/suites as ``morl/suite_files``, and outside a checkout ``suites_dir`` finds them
    there: `morl suite run classic` works from a wheel and writes ``./classic.md``."""
    import shutil
    import tomllib

    import morl.suites as suites
    from morl.cli.boards import suite_leaderboard_path

    root = Path(__file__).resolve().parent.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "morl.suite_files" in setuptools["packages"]
    assert setuptools["package-dir"]["morl.suite_files"] == "experiments/suites"
    assert "*.toml" in setuptools["package-data"]["morl.suite_files"]
    shipped = sorted(p.stem for p in (root / "experiments" / "suites").glob("*.toml"))
    # an installed layout: site/morl/suites.py beside site/morl/suite_files/*.toml, no experiments/ anywhere
    site = tmp_path / "site" / "morl"
    shutil.copytree(root / "experiments" / "suites", site / "suite_files")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.setattr(suites, "__file__", str(site / "suites.py"))
    monkeypatch.chdir(elsewhere)
    assert suites.suites_dir() == site / "suite_files"
    assert suites.list_suites() == shipped
    assert suites.load_suite("mujoco-native").envs[0].kwargs["backend"] == "mujoco"  # `extends` resolves there
    assert suite_leaderboard_path("classic") == elsewhere / "classic.md"


def test_a_suite_extending_itself_or_a_missing_suite_fails_with_the_cause(tmp_path):
    from morl.suites import load_suite

    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\nagents = ["c-morl"]\n')
    with pytest.raises(ValueError, match="cycle"):
        load_suite(str(tmp_path / "a.toml"))
    (tmp_path / "c.toml").write_text('extends = "mujocoo"\n')
    with pytest.raises(ValueError, match="no suite 'mujocoo'.*did you mean: mujoco"):
        load_suite(str(tmp_path / "c.toml"))


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["runs"],
        ["eval"],
        ["plot"],
        ["leaderboard"],
        ["suite", "run"],
        ["suite", "list"],
        ["bench", "rollout"],
        ["envs"],
    ],
)
def test_every_help_page_renders(capsys, argv):
    code, out, _ = run_cli(capsys, *argv, "--help")
    assert code == 0 and "usage: morl" in out


def test_envs_command_still_works(capsys):
    code, out, _ = run_cli(capsys, "envs")
    assert code == 0 and DST in out


def test_a_failing_run_is_reported_and_resumable(capsys, tmp_path, monkeypatch):
    def broken(self, state):
        raise RuntimeError("no policy is good enough yet")

    monkeypatch.setattr(test_runs.RandomSetTrainer, "solution", broken)
    code, _, err = run_cli(capsys, "train", "toy-random", "--env", DST, "--runs-dir", tmp_path, *FAST)
    (run,) = R.list_runs(tmp_path)[0]
    assert code == 1 and run.status == "failed"
    assert f"run {run.id} failed" in err and "error.txt" in err and "no policy is good enough yet" in err
    assert f"morl train --resume {run.id}" in err
    assert "no policy is good enough yet" in (run.path / "error.txt").read_text()
    monkeypatch.undo()
    code, _, _ = run_cli(capsys, "train", "--resume", run.id, "--runs-dir", tmp_path, "--quiet")
    assert code == 0 and R.read_run(run.path).status == "done" and not (run.path / "error.txt").exists()


C_MORL_TINY = [
    "--steps",
    "8192",
    "--init-steps",
    "4096",
    "--num-steps",
    "64",
    "--num-envs",
    "4",
    "--num-minibatches",
    "2",
    "--epochs",
    "2",
    "--update-iter",
    "1",
    "--init-weight-delta",
    "0.5",
    "--eval-interval",
    "1",
    "--eval-episodes",
    "1",
]


def test_c_morl_end_to_end(capsys, tmp_path):
    """The README's path with the real agent at a tiny budget: train 3 seeds, list, eval, plot, leaderboard."""
    d = tmp_path / "runs"
    code, out, err = run_cli(
        capsys,
        "train",
        "c-morl",
        "--env",
        DST,
        "--seeds",
        "0-2",
        *C_MORL_TINY,
        "--eval-every",
        "0",
        "--runs-dir",
        d,
        "--protocol-episodes",
        "1",
    )
    assert code == 0, err
    assert "final evaluation" in out and "mean ± std" in out
    good, bad = R.list_runs(d)
    assert len(good) == 3 and not bad and all(r.status == "done" and r.agent == "c-morl" for r in good)
    assert all(r.result["metrics"]["cardinality"] >= 1 and "igd" in r.result["metrics"] for r in good)
    code, out, _ = run_cli(capsys, "runs", "--runs-dir", d)
    assert code == 0 and out.count("c-morl") >= 3
    run = good[0]
    code, out, _ = run_cli(capsys, "eval", run.id, "--runs-dir", d)
    assert code == 0 and "same protocol" in out
    saved = json.loads((run.path / "evals" / f"{run.result['protocol_hash']}.json").read_text())
    assert saved["metrics"] == pytest.approx(run.result["metrics"])  # reproducible from the checkpoint
    code, out, _ = run_cli(capsys, "plot", run.id, "--runs-dir", d)
    assert code == 0 and (run.path / "front.png").exists() and "true front overlaid" in " ".join(out.split())
    code, out, _ = run_cli(capsys, "leaderboard", "--runs-dir", d)
    (row,) = [ln for ln in out.splitlines() if ln.startswith("| c-morl")]
    assert "(n=3)" in row and "**" in row
    hv = [r.result["metrics"]["hypervolume"] for r in good]
    from morl.leaderboard import fmt_num

    assert fmt_num(float(np.mean(hv))) in row


def test_compilation_cache_folder_and_off_switch(monkeypatch, tmp_path):
    from morl.compile_cache import cache_dir

    monkeypatch.setenv("MORL_COMPILATION_CACHE", "off")
    assert cache_dir() is None
    monkeypatch.setenv("MORL_COMPILATION_CACHE", str(tmp_path / "xla"))
    assert cache_dir() == str(tmp_path / "xla")
    monkeypatch.delenv("MORL_COMPILATION_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    assert cache_dir() == str(tmp_path / "home-cache" / "morl" / "jax")


def test_library_turns_the_compilation_cache_on(tmp_path):
    """Not only the CLI: importing the env layer (which every env and agent does) switches the cache on,
    and a folder the user set in JAX's own config wins."""
    import subprocess

    probe = "import jax, morl.env; print(jax.config.jax_compilation_cache_dir)"
    env = dict(os.environ, MORL_COMPILATION_CACHE=str(tmp_path / "xla"))
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "xla") and (tmp_path / "xla").is_dir()
    own = (
        f"import jax; jax.config.update('jax_compilation_cache_dir', {str(tmp_path / 'mine')!r}); import morl.env; "
        "print(jax.config.jax_compilation_cache_dir)"
    )
    out = subprocess.run([sys.executable, "-c", own], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(tmp_path / "mine")


def test_bench_rollout_summary_has_one_row_per_backend(capsys, monkeypatch):
    """Ids with several backends (MuJoCo: mjx and native) get one summary row and one ratio each, with the
    compile time apart from the speed."""
    from morl import bench

    def fake(env_id, num_envs, num_steps, seconds, reference=True):
        return [
            bench.BenchRow("morl engine (jit+vmap)", 128, 1_000, 10.0, 30.0, "backend=mjx"),
            bench.BenchRow("morl engine (host path)", 64, 30_000, 2.0, 2.0, "backend=mujoco"),
            bench.BenchRow("MO-Gymnasium single env", 1, 12_000, 2.0),
            bench.BenchRow("MO-Gymnasium MOSyncVectorEnv(64)", 64, 10_000, 2.0),
        ]

    monkeypatch.setattr(bench, "bench_rollout", fake)
    code, out, _ = run_cli(capsys, "bench", "rollout", "--env", "mo-hopper-v5")
    assert code == 0
    lines = " ".join(out.split())
    assert re.search(r"mo-hopper-v5 \(backend=mjx\) │ 100 \(128\) │ 30\.0 │ 6,000 │ 5,000 │ 0\.0x", lines), out
    assert re.search(r"mo-hopper-v5 \(backend=mujoco\) │ 15,000 \(64\) │ 2\.0 │ 6,000 │ 5,000 │ 3\.0x", lines), out
