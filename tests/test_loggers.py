"""`morl train --log tensorboard|wandb`: what the loggers write is read back by the tools' own readers.

TensorBoard: the event files are read by tensorboard's `EventAccumulator` (what the TensorBoard app reads them
with). W&B: an offline run directory is written in the run folder, with the final front as a table. Both packages
are in the dev extra; each test needs only its own package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import test_runs  # noqa: F401  (registers toy-hillclimb)

from morl import loggers
from morl import runs as R
from morl.cli import main
from morl.runs.driver import RunCallback

DST = "deep-sea-treasure-v0"


def _train(runs_dir: Path, *log: str) -> list[R.RunInfo]:
    args = [
        "train",
        "toy-hillclimb",
        "--env",
        DST,
        "--seeds",
        "0-1",
        "--steps",
        "1600",
        "--num-policies",
        "2",
        "--eval-every",
        "400",
        "--runs-dir",
        str(runs_dir),
        "--quiet",
    ]
    for name in log:
        args += ["--log", name]
    assert main(args) == 0
    return sorted(R.list_runs(runs_dir)[0], key=lambda r: r.seed)


def test_tensorboard_event_files_read_back_by_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'morl[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = _train(tmp_path, "tensorboard")
    assert len(runs) == 2
    for run in runs:
        acc = EventAccumulator(str(run.path / loggers.TB_DIR), size_guidance={"scalars": 0, "tensors": 0, "images": 0})
        acc.Reload()
        tags = acc.Tags()
        rows = R.read_jsonl(run.path / R.METRICS_JSONL)
        evals = [(r["env_steps"], r["eval/hypervolume"]) for r in rows if "eval/hypervolume" in r]
        assert len(evals) >= 2
        hv = [(e.step, e.value) for e in acc.Scalars("eval/hypervolume")]
        assert hv == [(s, pytest.approx(v, rel=1e-6)) for s, v in evals]
        score = acc.Scalars("train/score")
        assert [e.step for e in score] == [r["env_steps"] for r in rows]
        assert [e.value for e in score] == pytest.approx([r["train/score"] for r in rows], rel=1e-6)
        final = acc.Scalars("final/hypervolume")
        assert [(e.step, e.value) for e in final] == [
            (run.result["env_steps"], pytest.approx(run.result["metrics"]["hypervolume"]))
        ]
        names, front = R.read_front_csv(run.path / R.FRONT_CSV)
        text = acc.Tensors("final/front")[0].tensor_proto.string_val[0].decode()
        assert text.splitlines()[0] == "| " + " | ".join(names) + " |"
        assert len(text.splitlines()) == 2 + len(front)
        config = acc.Tensors("config")[0].tensor_proto.string_val[0].decode()
        assert json.loads(config.strip("`\n"))["seed"] == run.seed
        image = acc.Images("final/front_plot")[0]
        assert image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and image.width > 100 and image.height > 100
        assert "scalars" in tags and "eval/expected_utility" in tags["scalars"]


def test_wandb_offline_writes_a_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'morl[wandb]')")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline by default
    monkeypatch.setenv("WANDB_SILENT", "true")
    runs = _train(tmp_path, "wandb")
    for run in runs:
        [offline] = list((run.path / "wandb").glob("offline-run-*"))
        [data] = list(offline.glob("run-*.wandb"))
        assert data.stat().st_size > 0
        names, front = R.read_front_csv(run.path / R.FRONT_CSV)
        [table] = list((offline / "files" / "media" / "table" / "final").glob("front_*.table.json"))
        logged = json.loads(table.read_text())
        assert logged["columns"] == names and np.allclose(logged["data"], front)
        assert list((offline / "files" / "media" / "images" / "final").glob("front_plot_*.png"))


def test_a_missing_logger_package_is_a_clear_error_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(loggers.LOGGERS, "tensorboard", ("no_such_module_for_morl", "tensorboard"))
    args = ["train", "toy-hillclimb", "--env", DST, "--steps", "400", "--runs-dir", str(tmp_path), "--quiet"]
    assert main(args + ["--log", "tensorboard"]) == 2
    assert (
        "--log tensorboard needs the no_such_module_for_morl package: pip install 'morl[tensorboard]'"
        in capsys.readouterr().err
    )
    assert not list(tmp_path.iterdir())  # no run folder was made
    assert main(args + ["--log", "mlflow"]) == 2
    assert "invalid choice: 'mlflow'" in capsys.readouterr().err


def test_a_logger_sees_every_row_and_the_result_and_is_closed(tmp_path):
    seen: list[tuple[str, object]] = []

    class Recorder(RunCallback):
        def __init__(self, info):
            seen.append(("open", info.id))

        def row(self, row):
            seen.append(("row", row["env_steps"]))

        def final(self, result):
            seen.append(("final", result["env_steps"]))

        def close(self):
            seen.append(("close", None))

    info = R.create_run(
        tmp_path, R.RunRequest("toy-hillclimb", DST, 0, test_runs.ToyConfig(total_timesteps=800, num_policies=1))
    )
    [result] = R.train_runs([info], callback=Recorder)
    rows = R.read_jsonl(info.path / R.METRICS_JSONL)
    assert seen == (
        [("open", info.id)]
        + [("row", r["env_steps"]) for r in rows]
        + [("final", result["env_steps"]), ("close", None)]
    )


def test_a_resumed_run_drops_what_the_interrupted_process_logged_past_its_checkpoint(tmp_path):
    """Chunks after the last checkpoint are logged, then the process fails; the resumed process logs them again
    and TensorBoard's reader keeps each step once, as ``metrics.jsonl`` does."""
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'morl[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 5 chunks of 200 steps; evaluated (hence checkpointed) at 400 and 800 steps only
    req = R.RunRequest(
        "toy-hillclimb",
        DST,
        0,
        test_runs.ToyConfig(total_timesteps=1000, num_policies=1),
        eval_every=400,
        checkpoint_secs=1e9,
    )
    info = R.create_run(tmp_path, req)

    def fail_at_600(event):
        if event.env_steps == 600:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        R.train_runs([info], progress=fail_at_600, callback=loggers.make_loggers(["tensorboard"]))
    R.train_runs([R.read_run(info.path)], resume=True, callback=loggers.make_loggers(["tensorboard"]))
    assert len(list((info.path / loggers.TB_DIR).iterdir())) == 2  # one event file per process
    rows = R.read_jsonl(info.path / R.METRICS_JSONL)
    assert [r["env_steps"] for r in rows] == [200, 400, 600, 800, 1000]
    acc = EventAccumulator(str(info.path / loggers.TB_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/score")] == [200, 400, 600, 800, 1000]
