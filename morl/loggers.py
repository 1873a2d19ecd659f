"""Optional loggers of `morl train --log`: TensorBoard event files and Weights & Biases runs, in the run folder.

Each logger is a `morl.runs.driver.RunCallback`: it gets every metrics row as it is appended to ``metrics.jsonl``
(the agent's ``train/*`` logs, the periodic ``eval/*`` metrics, wall time), logged at the row's env steps, and at the
end the final metrics and the final front, as a table and as a picture. The run folder stays the source of truth;
these are views of it in the tools people already watch.

The packages are extras (``pip install 'morl[tensorboard]'``, ``'morl[wandb]'``), imported only when asked for.
TensorBoard's own event-file writer is used, so no TensorFlow is needed. W&B runs offline unless ``WANDB_MODE``
says otherwise (``WANDB_MODE=online`` with a logged-in account); ``wandb sync <run>/wandb/offline-run-*`` uploads
an offline run later.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from morl.runs.driver import RunCallback
from morl.runs.files import FRONT_CSV, METRICS_JSONL, RunError, read_front_csv, read_jsonl
from morl.runs.folders import RunInfo

#: logger name -> (module that must import, extra that installs it)
LOGGERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}
TB_DIR = "tensorboard"
#: row keys that are the x axis or bookkeeping, not metrics
_NOT_METRICS = ("update", "env_steps")


def check_available(name: str) -> None:
    """Raise ValueError saying how to install the logger's package when it is missing (before any training)."""
    if name not in LOGGERS:
        raise ValueError(f"unknown logger {name!r}; choose one of {', '.join(LOGGERS)}")
    module, extra = LOGGERS[name]
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"--log {name} needs the {module} package: pip install 'morl[{extra}]'")


def _metrics(row: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        if k in _NOT_METRICS or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        out[k] = float(v)
    return out


def _front(info: RunInfo) -> tuple[list[str], list[list[float]]] | None:
    try:
        names, points = read_front_csv(info.path / FRONT_CSV)
    except (OSError, RunError):
        return None
    return names, points.tolist()


def _gamma(result: dict[str, Any]) -> float:
    return float((result.get("protocol") or {}).get("gamma", 0.99))


def _front_markdown(names: list[str], points: list[list[float]]) -> str:
    lines = ["| " + " | ".join(names) + " |", "|" + "---:|" * len(names)]
    return "\n".join(lines + ["| " + " | ".join(f"{x:.6g}" for x in p) + " |" for p in points])


def _front_png(info: RunInfo, names: list[str], points: list[list[float]], gamma: float) -> bytes:
    """The front as a PNG (`morl.plots`), the true front (discount ``gamma``) overlaid when the env knows it."""
    import numpy as np

    import morl
    from morl.plots import plot_front

    meta = info.meta or {}
    known = None
    try:
        env, _ = morl.make(meta["env"], **(meta.get("env_kwargs") or {}))
        if env.has_known_front:
            known = env.pareto_front(gamma)
    except Exception:  # a logger never fails a run for want of the true front
        known = None
    with tempfile.TemporaryDirectory() as d:
        path = plot_front(
            np.asarray(points),
            Path(d) / "front.png",
            names=names,
            known_front=known,
            title=f"{meta.get('agent')} on {meta.get('env')}, seed {meta.get('seed')}",
        )
        return path.read_bytes()


class TensorBoardLogger(RunCallback):
    """Event files in ``<run>/tensorboard/``: scalars per row, the config as text, the final front as a table and
    an image. ``tensorboard --logdir <runs dir>`` shows every run side by side.

    A resumed run (`morl train --resume`) writes a new event file that opens with a session start at the restored
    checkpoint's env steps: TensorBoard then drops what the interrupted process logged past the checkpoint, as the
    run folder's ``metrics.jsonl`` does."""

    def __init__(self, info: RunInfo):
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.info = info
        self.writer = EventFileWriter(str(info.path / TB_DIR), flush_secs=10)
        self.started = False

    def _start(self, own_rows: int) -> None:
        """The session start just past the env steps of the last row an earlier process wrote (0 for a fresh run;
        the last ``own_rows`` rows of ``metrics.jsonl`` are this process's), then the config."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        self.started = True
        earlier = read_jsonl(self.info.path / METRICS_JSONL)[: -own_rows or None]
        restored = int(earlier[-1].get("env_steps", 0)) if earlier else 0
        start = SessionLog(status=SessionLog.START)  # the reader keeps only the steps before the start's
        self.writer.add_event(Event(wall_time=time.time(), step=restored + 1 if earlier else 0, session_log=start))
        keys = ("agent", "env", "env_kwargs", "seed", "budget", "config", "protocol")
        config = json.dumps({k: (self.info.meta or {}).get(k) for k in keys}, indent=2)
        self._add(restored, [self._text("config", "```\n" + config + "\n```")])

    def _add(self, step: int, values: list) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        self.writer.add_event(Event(wall_time=time.time(), step=int(step), summary=Summary(value=values)))

    @staticmethod
    def _scalar(tag: str, value: float):
        from tensorboard.compat.proto.summary_pb2 import Summary

        return Summary.Value(tag=tag, simple_value=value)

    @staticmethod
    def _text(tag: str, text: str):
        from tensorboard.compat.proto import types_pb2
        from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

        meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
        tensor = TensorProto(
            dtype=types_pb2.DT_STRING,
            string_val=[text.encode()],
            tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]),
        )
        return Summary.Value(tag=tag, metadata=meta, tensor=tensor)

    @staticmethod
    def _image(tag: str, png: bytes):
        from tensorboard.compat.proto.summary_pb2 import Summary

        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk
        return Summary.Value(
            tag=tag, image=Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        )

    def row(self, row: dict[str, Any]) -> None:
        if not self.started:
            self._start(own_rows=1)
        self._add(row.get("env_steps", 0), [self._scalar(k, v) for k, v in _metrics(row).items()])

    def final(self, result: dict[str, Any]) -> None:
        if not self.started:
            self._start(own_rows=0)
        step = int(result.get("env_steps", 0))
        values = [
            self._scalar(f"final/{k}", float(v))
            for k, v in (result.get("metrics") or {}).items()
            if isinstance(v, (int, float)) and math.isfinite(v)
        ]
        front = _front(self.info)
        if front is not None:
            values.append(self._text("final/front", _front_markdown(*front)))
            values.append(self._image("final/front_plot", _front_png(self.info, *front, _gamma(result))))
        self._add(step, values)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger(RunCallback):
    """A W&B run in ``<run>/wandb/`` (offline by default): metrics per row at the row's env steps, the config, and
    the final front as a table (with a scatter plot for two objectives) and an image."""

    def __init__(self, info: RunInfo):
        import wandb

        self.info, self.wandb = info, wandb
        meta = info.meta or {}
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "morl"),
            name=info.id,
            dir=str(info.path),
            mode=os.environ.get("WANDB_MODE", "offline"),
            reinit="create_new",
            group=f"{meta.get('agent')}/{meta.get('env')}",
            job_type="train",
            config={
                k: meta.get(k) for k in ("agent", "env", "env_kwargs", "seed", "budget", "config", "protocol", "suite")
            },
        )
        self.step = 0

    def row(self, row: dict[str, Any]) -> None:
        self.step = max(self.step, int(row.get("env_steps", 0)))
        self.run.log(_metrics(row), step=self.step)

    def final(self, result: dict[str, Any]) -> None:
        wandb = self.wandb
        metrics = {f"final/{k}": v for k, v in (result.get("metrics") or {}).items() if v is not None}
        self.run.summary.update(metrics)
        logged: dict[str, Any] = dict(metrics)
        front = _front(self.info)
        if front is not None:
            names, points = front
            table = wandb.Table(columns=names, data=points)
            logged["final/front"] = table
            if len(names) == 2:
                logged["final/front_scatter"] = wandb.plot.scatter(table, names[0], names[1], title="final front")
            from PIL import Image  # matplotlib's dependency

            png = _front_png(self.info, names, points, _gamma(result))
            logged["final/front_plot"] = wandb.Image(Image.open(io.BytesIO(png)))
        self.step = max(self.step, int(result.get("env_steps", 0)))
        self.run.log(logged, step=self.step)

    def close(self) -> None:
        self.run.finish()


_CLASSES: dict[str, Callable[[RunInfo], RunCallback]] = {"tensorboard": TensorBoardLogger, "wandb": WandbLogger}


class _Several(RunCallback):
    def __init__(self, callbacks: list[RunCallback]):
        self.callbacks = callbacks

    def row(self, row: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.row(row)

    def final(self, result: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.final(result)

    def close(self) -> None:
        for c in self.callbacks:
            c.close()


def make_loggers(names: Sequence[str]) -> Callable[[RunInfo], RunCallback] | None:
    """The ``callback`` of `morl.runs.train_runs` that logs each run to ``names`` (None when no logger is asked)."""
    names = list(dict.fromkeys(names))
    for n in names:
        check_available(n)
    if not names:
        return None

    def make(info: RunInfo) -> RunCallback:
        opened: list[RunCallback] = []
        try:
            for n in names:
                opened.append(_CLASSES[n](info))
        except BaseException:
            for c in opened:
                c.close()
            raise
        return opened[0] if len(opened) == 1 else _Several(opened)

    return make
