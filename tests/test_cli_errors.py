"""What a user meets when something is wrong: one line naming the problem and the fix (exit 2), no traceback,
and no finished result lost. Also: --import anywhere and recorded, Ctrl-C, file modes, tables that fit.

Every case runs the real CLI (`main([...])` in-process, or `python -m morl.cli` where a separate process is
the point: Ctrl-C). The runs are the toy agents of `test_runs.py`, so nothing waits for a real agent.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import test_runs  # noqa: F401  (registers toy-hillclimb and toy-random)
from rich.console import Console
from test_runs import morl_cmd, sub_env

from morl import runs as R
from morl.cli import boards, common, main, train

DST = "deep-sea-treasure-v0"
FAST = ["--protocol-episodes", "1", "--quiet"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *needles: str) -> str:
    """``err`` is exactly one ``morl: error: ...`` line (no traceback) containing every needle."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("morl: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One finished toy-hillclimb run (in its own runs folder, with results.sqlite)."""
    d = tmp_path_factory.mktemp("runs")
    assert (
        main(
            [
                "train",
                "toy-hillclimb",
                "--env",
                DST,
                "--steps",
                "1600",
                "--num-policies",
                "2",
                "--eval-every",
                "800",
                "--runs-dir",
                str(d),
                *FAST,
            ]
        )
        == 0
    )
    (run,) = R.list_runs(d)[0]
    assert run.status == "done"
    return d, run.id


@pytest.fixture
def runs(source, tmp_path):
    """A private copy of the source runs folder: (runs dir, run id)."""
    d, rid = source
    shutil.copytree(d, tmp_path / "runs")
    return tmp_path / "runs", rid


def finished_files(run_dir: Path) -> dict[str, bytes]:
    return {n: (run_dir / n).read_bytes() for n in ("config.json", "result.json", "metrics.csv")}


# ------------------------------------------------------------------------------------------ damaged files
def test_truncated_front_csv_is_reported_and_eval_rewrites_it(runs, capsys):
    d, rid = runs
    run_dir = d / rid
    good_front = (run_dir / "front.csv").read_bytes()
    before = finished_files(run_dir)
    os.truncate(run_dir / "front.csv", 20)  # `truncate -s 20 runs/ID/front.csv`
    code, out, err = run_cli(capsys, "plot", rid, "--runs-dir", d)
    assert code == 2
    one_line_error(err, "front.csv", f"morl eval {rid}")
    assert not (run_dir / "front.png").exists()
    # the fix the message names: the final evaluation is reproduced exactly and the file restored
    code, out, err = run_cli(capsys, "eval", rid, "--runs-dir", d)
    assert code == 0, err
    assert "rewrote the damaged front.csv" in " ".join(out.split())
    assert (run_dir / "front.csv").read_bytes() == good_front
    assert finished_files(run_dir) == before  # no finished result lost or changed
    code, out, err = run_cli(capsys, "plot", rid, "--runs-dir", d)
    assert code == 0 and (run_dir / "front.png").exists(), err
    # garbage that does not parse at all: the same one line
    (run_dir / "front.csv").write_bytes(b"\x00\xff garbage")
    code, _, err = run_cli(capsys, "plot", rid, "--runs-dir", d)
    assert code == 2
    one_line_error(err, "front.csv", f"morl eval {rid}")


def test_renamed_or_copied_run_folder_evaluates(runs, capsys, tmp_path):
    d, rid = runs
    renamed = d / "my-best-run"
    shutil.copytree(d / rid, renamed)  # a copy beside the original, under a new name
    code, out, err = run_cli(capsys, "eval", "my-best-run", "--runs-dir", d, "--episodes", "2")
    assert code == 0, err
    st = R.store_for(d)
    assert st.get("my-best-run") is not None and st.get(rid) is not None  # each folder its own row
    assert {r["run_id"] for r in st.evaluations()} == {rid, "my-best-run"}
    # copied to another machine's (fresh) runs folder under a new name
    other = tmp_path / "elsewhere"
    shutil.copytree(d / rid, other / "copied-run")
    code, out, err = run_cli(capsys, "eval", "copied-run", "--runs-dir", other)
    assert code == 0, err
    assert R.store_for(other).get("copied-run")["metrics"] == R.read_run(d / rid).result["metrics"]


@pytest.mark.parametrize("damage", ["truncate", "bytes"])
def test_damaged_results_store_is_reported_and_reindex_rebuilds_it(runs, capsys, damage):
    d, rid = runs
    db = d / "results.sqlite"
    before = finished_files(d / rid)
    if damage == "truncate":
        os.truncate(db, 100)
    else:
        db.write_bytes(os.urandom(4096))
    code, out, err = run_cli(capsys, "leaderboard", "--runs-dir", d)
    assert code == 2
    one_line_error(err, str(db), "damaged", "morl runs --reindex")
    code, out, err = run_cli(capsys, "train", "toy-random", "--env", DST, "--runs-dir", d, *FAST)
    assert code == 2  # refused before training, not after it
    one_line_error(err, str(db), "damaged", "morl runs --reindex")
    assert [p.name for p in d.iterdir() if p.is_dir()] == [rid]
    code, out, err = run_cli(capsys, "runs", "--runs-dir", d, "--reindex")  # the recovery tool recovers
    assert code == 0, err
    assert "indexed 1 finished run(s)" in out and "kept it as" in " ".join(out.split())
    aside = sorted(p.name for p in d.glob("results.sqlite.damaged-*"))
    assert aside and not aside[0].endswith(("-wal", "-shm"))  # the damaged file kept, for forensics
    code, out, err = run_cli(capsys, "leaderboard", "--runs-dir", d)
    assert code == 0 and "| toy-hillclimb |" in out and "(n=1)" in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert finished_files(d / rid) == before


# ------------------------------------------------------------------------------------------ read-only folders
@contextmanager
def read_only(*dirs: Path):
    """Make ``dirs`` unwritable for this process: mode 0555 for a normal user; root ignores modes, so for root
    the immutable attribute (`chattr +i`, which binds root too)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in dirs}
        for p in dirs:
            p.chmod(0o555)
        try:
            yield
        finally:
            for p, m in modes.items():
                p.chmod(m)
        return
    out = subprocess.run(["chattr", "+i", *map(str, dirs)], capture_output=True, text=True)
    assert out.returncode == 0, f"root needs chattr +i to make a folder read-only: {out.stderr}"
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, dirs)], check=True)


def test_read_only_runs_folder(runs, capsys, tmp_path):
    d, rid = runs
    before = finished_files(d / rid)
    with read_only(d, d / rid):
        code, _, err = run_cli(capsys, "train", "toy-random", "--env", DST, "--runs-dir", d, *FAST)
        assert code == 2
        one_line_error(err, "cannot write", "--runs-dir")
        code, _, err = run_cli(capsys, "eval", rid, "--runs-dir", d, "--episodes", "2")
        assert code == 2
        one_line_error(err, "read-only", "--no-record")
        code, out, err = run_cli(capsys, "eval", rid, "--runs-dir", d, "--episodes", "2", "--no-record")
        assert code == 0 and "this evaluation" in out, err
        code, _, err = run_cli(capsys, "plot", rid, "--runs-dir", d)
        assert code == 2
        one_line_error(err, "cannot write", "--out")
        code, out, err = run_cli(capsys, "plot", rid, "--runs-dir", d, "--out", tmp_path / "front.png")
        assert code == 0 and (tmp_path / "front.png").exists(), err
        code, out, err = run_cli(capsys, "leaderboard", "--runs-dir", d)  # reading needs no write access
        assert code == 0 and "| toy-hillclimb |" in out, err
    assert finished_files(d / rid) == before
    assert [p.name for p in d.iterdir() if p.is_dir()] == [rid]  # no half-made run folder


# ------------------------------------------------------------------------------------------ --import
MY_ENVS = """
import morl
from morl.envs.deep_sea_treasure import DeepSeaTreasure

morl.register("{env_id}", entry_point=DeepSeaTreasure)
"""


def test_import_anywhere_recorded_and_reloaded(capsys, tmp_path, monkeypatch):
    from morl import registry

    module, env_id = "my_envs_for_cli_test", "my-dst-cli-test-v0"
    (tmp_path / f"{module}.py").write_text(MY_ENVS.format(env_id=env_id))
    monkeypatch.chdir(tmp_path)  # the current folder is importable
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delenv("MORL_IMPORT", raising=False)
    # --import after the subcommand (and after the agent's options)
    code, out, err = run_cli(
        capsys, "train", "toy-random", "--env", env_id, "--runs-dir", "runs", *FAST, "--import", module
    )
    assert code == 0, err
    (run,) = R.list_runs(tmp_path / "runs")[0]
    assert run.status == "done" and run.meta["imports"] == [module]
    # a fresh process knows nothing of the env: forget it here, as a new `morl` process would
    monkeypatch.delitem(registry._REGISTRY, env_id)
    monkeypatch.delitem(sys.modules, module)
    R._BUILT.clear()
    code, out, err = run_cli(capsys, "eval", run.id, "--runs-dir", "runs", "--episodes", "1")
    assert code == 0 and "this evaluation" in out, err  # the recorded import was replayed
    # a run that did not record it (e.g. made before imports were recorded): one line naming --import
    meta = json.loads((run.path / "config.json").read_text())
    meta.pop("imports")
    (run.path / "config.json").write_text(json.dumps(meta))
    registry._REGISTRY.pop(env_id)
    sys.modules.pop(module)
    R._BUILT.clear()
    for argv in (["eval", run.id, "--runs-dir", "runs"], ["plot", run.id, "--runs-dir", "runs"]):
        code, _, err = run_cli(capsys, *argv)
        if argv[0] == "plot":  # plot does not need the env (the true front is optional): it works
            assert code == 0, err
            continue
        assert code == 2
        one_line_error(err, env_id, "--import MODULE")
    before = finished_files(run.path)
    code, out, err = run_cli(capsys, "eval", run.id, "--import", module, "--runs-dir", "runs", "--episodes", "1")
    assert code == 0, err
    assert finished_files(run.path) == before
    code, _, err = run_cli(capsys, "--import", "no_such_module_xyz", "envs")
    assert code == 2
    one_line_error(err, "no_such_module_xyz", "PYTHONPATH")


# ------------------------------------------------------------------------------------------ protocol options
@pytest.mark.parametrize(
    "option,value,needle",
    [
        ("--protocol-ref-point", "1,2,3", "ref_point has 3 value(s) but deep-sea-treasure-v0 has 2 objectives"),
        ("--protocol-gamma", "1.5", "gamma must be in [0, 1]"),
        ("--protocol-episodes", "0", "episodes must be a positive integer"),
    ],
)
def test_protocol_options_are_checked_before_training(capsys, tmp_path, option, value, needle):
    code, _, err = run_cli(
        capsys, "train", "toy-random", "--env", DST, "--runs-dir", tmp_path, option, value, "--quiet"
    )
    assert code == 2
    one_line_error(err, needle, "--protocol-")
    assert not tmp_path.exists() or not list(tmp_path.iterdir())  # nothing was created, nothing trained


def test_resume_refuses_a_run_whose_protocol_cannot_finish(capsys, tmp_path):
    from morl.agent import make_config

    class BadProtocol(R.protocol_from_dict({}).__class__):  # what an older morl let through
        def __post_init__(self):
            pass

    req = R.RunRequest(
        "toy-random", DST, 0, make_config("toy-random", DST), protocol=BadProtocol(ref_point=(1.0, 2.0, 3.0))
    )
    info = R.create_run(tmp_path, req)
    code, _, err = run_cli(capsys, "train", "--resume", info.id, "--runs-dir", tmp_path, "--quiet")
    assert code == 2
    one_line_error(err, info.id, "ref_point has 3 value(s)", "train it again")
    assert not (info.path / "metrics.jsonl").exists()  # refused before any training


# ------------------------------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_during_checkpoint_writes_is_one_line_and_resumable(tmp_path):
    """SIGINT while orbax writes a checkpoint (a checkpoint after every chunk, so most of the time is spent
    writing): one line, exit 130, and the run resumes from an intact checkpoint to the end."""
    d = tmp_path / "runs"
    proc = subprocess.Popen(
        morl_cmd(
            "train",
            "toy-hillclimb",
            "--env",
            DST,
            "--steps",
            "16000",
            "--num-policies",
            "2",
            "--checkpoint-secs",
            "0",
            "--eval-every",
            "0",
            "--runs-dir",
            str(d),
            *FAST,
        ),
        env=sub_env(MORL_COMPILATION_CACHE="off"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until a save is in flight
        ck = list(d.glob("*/checkpoints"))
        names = [p.name for p in ck[0].iterdir()] if ck else []
        if any(n.isdigit() for n in names) and any(".orbax-checkpoint-tmp" in n for n in names):
            break
        rows = list(d.glob("*/metrics.jsonl"))
        if rows and len(rows[0].read_text().splitlines()) >= 20:  # half way: every chunk ends in a save anyway
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # an impatient second Ctrl-C
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "Event loop" not in err, err
    one_line_error(err, "interrupted", "morl train --resume")
    (run_dir,) = list(d.glob("toy-hillclimb_*"))
    assert R.read_run(run_dir).status == "interrupted"
    assert not list((run_dir / "checkpoints").glob("*.orbax-checkpoint-tmp*"))  # the save in flight completed
    out = subprocess.run(
        morl_cmd("train", "--resume", run_dir.name, "--runs-dir", str(d), "--quiet"),
        env=sub_env(MORL_COMPILATION_CACHE="off"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert R.read_run(run_dir).status == "done"
    assert json.loads((run_dir / "result.json").read_text())["env_steps"] == 16000


def test_ctrl_c_after_the_error_line_adds_nothing(tmp_path):
    """A second Ctrl-C that comes once the error line is out (while the process ends): still exit 130, still one
    line (it once found Python's default handler during shutdown, or printed a second line)."""
    d = tmp_path / "runs"
    cmd = [
        "train",
        "toy-hillclimb",
        "--env",
        DST,
        "--steps",
        "100000000",
        "--num-policies",
        "2",
        "--eval-every",
        "0",
    ]  # no end
    proc = subprocess.Popen(
        morl_cmd(*cmd, "--runs-dir", str(d), *FAST),
        env=sub_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.stat().st_size for p in d.glob("*/metrics.jsonl")):  # training
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    first = proc.stderr.readline()  # blocks until the error line is written
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130, (first, rest)
    one_line_error(first + rest, "interrupted", "morl train --resume")


def test_lanes_below_one_are_refused_before_training(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "toy-random", "--env", DST, "--lanes", "0", "--runs-dir", tmp_path)
    assert code == 2
    one_line_error(err, "--lanes must be >= 1")
    assert not list(tmp_path.iterdir())


def test_ctrl_c_with_seeds_in_lanes_is_one_line_and_every_seed_resumes_to_its_own_front(tmp_path):
    """Three seeds in two lanes (threads): Ctrl-C while both lanes train stops each after its chunk in flight with a
    checkpoint, the third seed never starts, one line, exit 130; resuming the three ends each with the same front
    as the seeds trained one after another without interruption."""
    cmd = ["train", "toy-hillclimb", "--env", DST, "--steps", "16000", "--num-policies", "2", "--eval-every", "0"]
    d = tmp_path / "runs"
    proc = subprocess.Popen(
        morl_cmd(*cmd, "--seeds", "0-2", "--lanes", "2", "--checkpoint-secs", "0", "--runs-dir", str(d), *FAST),
        env=sub_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # both lanes are training
        rows = [len(p.read_text().splitlines()) for p in d.glob("*/metrics.jsonl")]
        if len(rows) == 2 and min(rows) >= 3:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    one_line_error(err, "interrupted", "morl train --resume")
    runs = sorted(d.glob("toy-hillclimb_*"), key=lambda p: R.read_run(p).meta["seed"])
    assert [R.read_run(p).status for p in runs] == ["interrupted"] * 3
    started = [p for p in runs if list((p / "checkpoints").glob("[0-9]*"))]
    assert len(started) == 2 and not list(d.glob("*/checkpoints/*.orbax-checkpoint-tmp*"))
    resumed = subprocess.run(
        morl_cmd("train", "--resume", *[p.name for p in runs], "--lanes", "2", "--runs-dir", str(d), "--quiet"),
        env=sub_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    plain = tmp_path / "plain"
    done = subprocess.run(
        morl_cmd(*cmd, "--seeds", "0-2", "--lanes", "1", "--runs-dir", str(plain), *FAST),
        env=sub_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for run in runs:
        seed = R.read_run(run).meta["seed"]
        (twin,) = [p for p in plain.glob("toy-hillclimb_*") if R.read_run(p).meta["seed"] == seed]
        assert (run / "front.csv").read_text() == (twin / "front.csv").read_text(), seed


# ------------------------------------------------------------------------------------------ modes, suites
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_run_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        info = R.create_run(
            tmp_path,
            R.RunRequest("toy-random", DST, 0, test_runs.make_config("toy-random", DST), protocol=test_runs.FAST),
        )
        R.train_runs([info], store=False)
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for name in ("config.json", "result.json", "front.csv", "returns.csv", "metrics.csv"):
        assert (info.path / name).stat().st_mode & 0o777 == want, name


def test_a_user_suite_writes_its_leaderboard_beside_the_suite_file(tmp_path, monkeypatch):
    import morl

    suite = tmp_path / "mine" / "my.toml"
    suite.parent.mkdir()
    suite.write_text('agents = ["toy-random"]\nseeds = [0]\n[[envs]]\nid = "deep-sea-treasure-v0"\nsteps = 500\n')
    monkeypatch.chdir(tmp_path)
    assert boards.suite_leaderboard_path(str(suite)) == suite.with_suffix(".md")
    assert boards.suite_leaderboard_path("mine/my.toml") == Path("mine/my.md")
    package = Path(morl.__file__).resolve().parent.parent
    assert package not in boards.suite_leaderboard_path(str(suite)).resolve().parents


def test_a_suite_with_an_unknown_agent_fails_in_one_line_with_close_names(tmp_path, capsys):
    suite = tmp_path / "typo.toml"
    suite.write_text('agents = ["c-mrl"]\nseeds = [0]\n[[envs]]\nid = "deep-sea-treasure-v0"\nsteps = 500\n')
    code, out, err = run_cli(capsys, "suite", "run", str(suite), "--dry-run", "--runs-dir", str(tmp_path / "runs"))
    assert code != 0
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "unknown agent 'c-mrl'" in err and "c-morl" in err and str(suite) in err


# ------------------------------------------------------------------------------------------ tables
LONG_ID = "c-morl_mo-mountaincarcontinuous-v0_s12_20261204-130850_1e87"


def _render(width: int, fn, monkeypatch) -> str:
    buf = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=buf, width=width, force_terminal=False, color_system=None))
    fn()
    return buf.getvalue()


def _check_fits(text: str, width: int, numbers: list[str], ids: list[str]) -> None:
    assert "…" not in text, text
    assert max(len(ln) for ln in text.splitlines()) <= width, text
    for n in numbers:
        assert n in text, (n, text)
    first = "".join(ln.split("│")[1].strip() for ln in text.splitlines() if ln.startswith("│"))
    for i in ids:
        assert i in first, (i, text)  # a folded id reads back whole


@pytest.mark.parametrize("width", [80, 120])
def test_runs_and_train_tables_fit_and_never_cut_numbers(runs, monkeypatch, width):
    d, rid = runs
    long = d / LONG_ID
    shutil.copytree(d / rid, long)
    result = json.loads((long / "result.json").read_text())
    result["metrics"].update(hypervolume=360.4, expected_utility=-12.345678, igd=0.123456)
    result["env_steps"] = 12_345_678
    result["wall_time"] = 12345.6
    (long / "result.json").write_text(json.dumps(result))
    text = _render(width, lambda: main(["runs", "--runs-dir", str(d)]), monkeypatch)
    _check_fits(text, width, ["360.4", "12,345,678", "done"], [LONG_ID, rid])
    info = R.read_run(long)
    text = _render(width, lambda: train.print_results([info, info], [result, result]), monkeypatch)
    _check_fits(text, width, ["360.4", "12,345,678", "360.4 ± 0"], [LONG_ID])


def test_piped_tables_are_complete(capsys):
    import morl

    code, out, _ = run_cli(capsys, "envs")  # pytest's capture is not a terminal
    assert code == 0 and "…" not in out
    for env_id in morl.list_envs():
        assert f"│ {env_id} " in out, env_id  # every id whole, on one line


def test_the_command_starts_without_jax_so_an_early_ctrl_c_is_caught():
    """`morl` installs its Ctrl-C handling first thing in `main`; everything before that (`import morl.cli`) must stay
    light, or a Ctrl-C while JAX loads (~1 s) prints a traceback. `import morl` loads JAX only on first use."""
    code = (
        "import sys, morl, morl.cli; assert 'jax' not in sys.modules, 'jax loaded by import'; "
        "morl.Environment; assert 'jax' in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
