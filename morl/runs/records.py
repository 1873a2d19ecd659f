"""Run records: a finished run folder as plain data, so a run trained on one machine is written on another.

A training task on a cluster node trains into a work folder of its own (the same driver, the same files as
``morl train``), then `collect_record` turns that folder into a record: ``config.json``, the metrics rows, the
front files, ``result.json`` (final evaluation, versions, machine), the last checkpoints (so ``morl eval``
works on the result) and the task's attempts. The process that owns the runs folder writes it with
`write_record`: the same files in the same formats as an in-process run, then the row in the results store.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from morl.runs.files import (
    CKPT_DIR,
    CONFIG_FILE,
    FRONT_CSV,
    METRICS_CSV,
    METRICS_JSONL,
    RESULT_FILE,
    RETURNS_CSV,
    atomic_write_json,
    atomic_write_text,
    read_jsonl,
)
from morl.runs.folders import store_row
from morl.store import Store, now_iso

#: the attempts of a run trained by a cluster task (one JSON line each: host, pid, start, checkpoint resumed from)
ATTEMPTS_FILE = "attempts.jsonl"
#: how a run trained by a cluster task came back: its attempts, written beside ``result.json`` by `write_record`
CLUSTER_FILE = "cluster.json"

_TEXT_FILES = (CONFIG_FILE, METRICS_JSONL, METRICS_CSV, FRONT_CSV, RETURNS_CSV)


def folder_files(path: Path, names: tuple[str, ...] = (METRICS_JSONL,), checkpoints: bool = True) -> dict[str, bytes]:
    """The named files of a run folder and (``checkpoints``) the files of its latest committed checkpoint step,
    keyed by their path relative to the folder."""
    path = Path(path)
    out = {n: (path / n).read_bytes() for n in names if (path / n).is_file()}
    steps = [p for p in (path / CKPT_DIR).glob("*") if p.name.isdigit()] if checkpoints else []
    if steps:
        latest = max(steps, key=lambda p: int(p.name))
        for f in sorted(latest.rglob("*")):
            if f.is_file():
                out[str(f.relative_to(path))] = f.read_bytes()
    return out


def unpack_files(path: Path, files: dict[str, bytes]) -> None:
    """Write `folder_files`' output into ``path``: the checkpoints as a whole (put in place by one rename), then the
    other files atomically."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ckpt = {k: v for k, v in files.items() if Path(k).parts[0] == CKPT_DIR}
    if ckpt:
        tmp = Path(tempfile.mkdtemp(prefix=f".{CKPT_DIR}.", dir=path))
        for rel, data in ckpt.items():
            target = tmp / Path(rel).relative_to(CKPT_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        old = path / CKPT_DIR
        if old.exists():
            aside = path / f".{CKPT_DIR}.old-{os.getpid()}"
            old.rename(aside)
            tmp.rename(old)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            tmp.rename(old)
    for rel, data in files.items():
        if rel not in ckpt:
            atomic_write_text(path / rel, data.decode())


def note_attempt(path: Path, checkpoint: int | None) -> list[dict[str, Any]]:
    """Append this attempt (host, pid, time, the checkpoint step it resumes from) to the work folder's
    ``attempts.jsonl``; returns every attempt so far."""
    line = {"host": socket.gethostname(), "pid": os.getpid(), "started": now_iso(), "resumed_from": checkpoint}
    with open(Path(path) / ATTEMPTS_FILE, "a") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return read_jsonl(Path(path) / ATTEMPTS_FILE)


def collect_record(path: Path) -> dict[str, Any]:
    """A finished run folder as a record (plain data, picklable): what `write_record` needs to write it elsewhere."""
    path = Path(path)
    result = json.loads((path / RESULT_FILE).read_text())
    return {
        "run_id": path.name,
        "meta": json.loads((path / CONFIG_FILE).read_text()),
        "result": result,
        "files": folder_files(path, _TEXT_FILES, checkpoints=True),
        "attempts": read_jsonl(path / ATTEMPTS_FILE),
    }


def write_record(path: Path, record: dict[str, Any], store: Store | None) -> dict[str, Any]:
    """Write a record into run folder ``path``: its files, ``cluster.json``, then ``result.json`` (which marks the run
    finished), then its row in ``store``; returns the result. The folder's own ``config.json`` is kept."""
    path = Path(path)
    files = {k: v for k, v in record["files"].items() if k != CONFIG_FILE}
    unpack_files(path, files)
    attempts = record.get("attempts") or []
    atomic_write_json(
        path / CLUSTER_FILE,
        {"attempts": len(attempts), "history": attempts, "written": now_iso(), "by": socket.gethostname()},
    )
    result = record["result"]
    atomic_write_json(path / RESULT_FILE, result)
    if store is not None:
        meta = json.loads((path / CONFIG_FILE).read_text()) if (path / CONFIG_FILE).exists() else record["meta"]
        store.record_run(store_row(meta, result, path))
    return result
