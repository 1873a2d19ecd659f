"""The results store: one embedded SQLite database per runs folder (standard library, no server).

Why SQLite: leaderboards must be reproducible from a local file, several training processes (a suite, a
cluster array job on a shared disk) write at once, and nothing may be lost. The database runs in WAL mode
(readers never block the writer), every write is one ``BEGIN IMMEDIATE`` transaction (all of a run's
rows land, or none), and a ``busy_timeout`` makes concurrent writers queue instead of failing.

Tables (``schema_version`` records the layout; a newer file is refused, an older one is migrated):

* ``runs``: one row per run: agent, env (+ kwargs), seed, config, budget, env steps, wall time, machine,
  package version, the final evaluation's protocol (and its hash) and metrics, suite, folder, dates.
* ``evaluations``: every evaluation of a run under a protocol (the final one, and each ``morl eval``),
  keyed by ``(run_id, protocol_hash)``. Leaderboards read this table, so results obtained under different
  protocols are never averaged together.

The run folders stay the source of truth (``morl runs --reindex`` rebuilds the rows from them); the
database is the index that tables and queries read.

WAL needs a local file system (SQLite's documented limitation); on NFS point ``--runs-dir`` at local disk.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
DB_NAME = "results.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    agent         TEXT NOT NULL,
    env           TEXT NOT NULL,
    env_kwargs    TEXT NOT NULL DEFAULT '{}',
    seed          INTEGER NOT NULL,
    config        TEXT NOT NULL,
    budget        INTEGER,
    env_steps     INTEGER,
    wall_time     REAL,
    machine       TEXT,
    version       TEXT,
    protocol      TEXT,
    protocol_hash TEXT,
    metrics       TEXT,
    suite         TEXT,
    path          TEXT,
    created       TEXT,
    finished      TEXT
);
CREATE INDEX IF NOT EXISTS runs_agent_env ON runs (agent, env);
CREATE TABLE IF NOT EXISTS evaluations (
    run_id        TEXT NOT NULL,
    protocol_hash TEXT NOT NULL,
    protocol      TEXT NOT NULL,
    metrics       TEXT NOT NULL,
    created       TEXT NOT NULL,
    PRIMARY KEY (run_id, protocol_hash)
);
"""

RUN_COLUMNS = (
    "run_id",
    "agent",
    "env",
    "env_kwargs",
    "seed",
    "config",
    "budget",
    "env_steps",
    "wall_time",
    "machine",
    "version",
    "protocol",
    "protocol_hash",
    "metrics",
    "suite",
    "path",
    "created",
    "finished",
)
_JSON_COLUMNS = ("env_kwargs", "config", "protocol", "metrics")


class StoreError(RuntimeError):
    """A problem with the results store; the message names the file and what to do."""


class StoreDamaged(StoreError):
    """The database file is not a readable SQLite database (truncated, overwritten, malformed)."""


def _translate(path: Path, exc: sqlite3.Error) -> StoreError:
    """A sqlite3 error -> a one-line `StoreError` naming the file and the fix."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and (
        "readonly" in text or "unable to open" in text or "read-only" in text
    ):
        return StoreError(
            f"cannot write the results store {path} ({text}): its folder is read-only; make "
            f"{path.parent} writable, or choose another --runs-dir"
        )
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return StoreError(f"the results store {path} stayed locked by another process ({text}); try again")
    if (
        isinstance(exc, sqlite3.DatabaseError)
        and not isinstance(exc, sqlite3.OperationalError)
        or any(w in text for w in ("malformed", "not a database", "corrupt", "disk I/O"))
    ):
        return StoreDamaged(
            f"the results store {path} is damaged ({text}); `morl runs --reindex --runs-dir "
            f"{path.parent}` rebuilds it from the run folders (the damaged file is kept aside)"
        )
    return StoreError(f"results store {path}: {text}")


def _guarded(method):
    """Turn sqlite3 errors of a `Store` method into one-line `StoreError`s."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
                self.close()  # a damaged file: drop the connection so `move_aside` can rename it
            raise _translate(self.path, exc) from None

    return wrapper


def clean_json(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, tuples to lists, NaN/inf to None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return clean_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, strict): equal settings give equal text, hence equal hashes."""
    return json.dumps(clean_json(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def protocol_hash(protocol: dict[str, Any]) -> str:
    """Short stable id of an evaluation protocol (what leaderboards key cells by)."""
    return hashlib.sha256(dumps(protocol).encode()).hexdigest()[:8]


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Store:
    """The SQLite results store at ``path`` (created on first use)."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0):
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._ready = False
        self._conn: tuple[tuple[int, int], sqlite3.Connection] | None = None

    # ------------------------------------------------------------------ connection
    def _connect(self) -> sqlite3.Connection:
        """This process's (and thread's) connection, opened once: reopening per write would make SQLite
        checkpoint the WAL at every close."""
        owner = (os.getpid(), threading.get_ident())
        held = self._conn  # read once: another thread (a training lane) may replace it meanwhile
        if held is not None and held[0] == owner:
            return held[1]
        conn = self._open()
        self._conn = (owner, conn)
        return conn

    def close(self) -> None:
        held = self._conn
        if held is not None and held[0] == (os.getpid(), threading.get_ident()):
            held[1].close()
        self._conn = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _open(self) -> sqlite3.Connection:
        if self.path.exists() and not os.access(self.path.parent, os.W_OK):
            # a read-only folder (an archive, another user's runs): SQLite cannot create the WAL index there, so
            # read the file as immutable; writes then fail with a clear "read-only" error
            from urllib.parse import quote

            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise StoreError(
                    f"the results store {self.path} has unapplied changes in {wal.name}, which a "
                    f"read-only folder cannot apply; make {self.path.parent} writable"
                )
            conn = sqlite3.connect(
                f"file:{quote(str(self.path.absolute()))}?immutable=1",
                uri=True,
                timeout=self.timeout_s,
                isolation_level=None,
            )
            conn.row_factory = sqlite3.Row
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so each write is exactly one transaction
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")  # per connection; with WAL: durable across process crashes
        if not self._ready:
            self._init_schema(conn)
            self._ready = True
        return conn

    def _init_schema(self, conn: sqlite3.Connection) -> None:
        mode = self._enable_wal(conn)
        if str(mode).lower() != "wal":
            raise StoreError(
                f"{self.path}: SQLite refused WAL mode (got {mode!r}); put the runs folder on a local disk"
            )
        with _transaction(conn):
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            if row[0] is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {row[0]}, newer than this morl ({SCHEMA_VERSION}); "
                    "upgrade morl to read it"
                )

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        """``PRAGMA journal_mode = WAL``, retried while another process holds the lock: when several processes
        create the same new database together, SQLite can answer this pragma "database is locked" without waiting
        out the busy timeout."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @_guarded
    def schema_version(self) -> int:
        conn = self._connect()
        return int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # ------------------------------------------------------------------ writes (one transaction each)
    @_guarded
    def record_run(self, row: dict[str, Any]) -> None:
        """Insert or replace a run's row and its final evaluation, atomically."""
        missing = {"run_id", "agent", "env", "seed", "config"} - set(row)
        if missing:
            raise StoreError(f"a run row needs {sorted(missing)}")
        unknown = set(row) - set(RUN_COLUMNS)
        if unknown:
            raise StoreError(f"unknown run column(s) {sorted(unknown)}; columns: {list(RUN_COLUMNS)}")
        values = {c: row.get(c) for c in RUN_COLUMNS}
        for c in _JSON_COLUMNS:
            if values[c] is not None and not isinstance(values[c], str):
                values[c] = dumps(values[c])
        if values["env_kwargs"] is None:
            values["env_kwargs"] = "{}"
        if row.get("protocol") is not None and values["protocol_hash"] is None:
            values["protocol_hash"] = protocol_hash(json.loads(values["protocol"]))
        with _transaction(self._connect()) as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) VALUES "
                f"({', '.join('?' for _ in RUN_COLUMNS)})",
                [values[c] for c in RUN_COLUMNS],
            )
            if values["protocol"] is not None and values["metrics"] is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?)",
                    (
                        values["run_id"],
                        values["protocol_hash"],
                        values["protocol"],
                        values["metrics"],
                        values["finished"] or now_iso(),
                    ),
                )

    @_guarded
    def record_evaluation(self, run_id: str, protocol: dict[str, Any], metrics: dict[str, Any]) -> str:
        """Store (or replace) an evaluation of ``run_id`` under ``protocol``; returns the protocol hash."""
        h = protocol_hash(protocol)
        with _transaction(self._connect()) as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise StoreError(f"run {run_id!r} is not in {self.path}; record the run first")
            conn.execute(
                "INSERT OR REPLACE INTO evaluations VALUES (?, ?, ?, ?, ?)",
                (run_id, h, dumps(protocol), dumps(metrics), now_iso()),
            )
        return h

    # ------------------------------------------------------------------ reads
    @_guarded
    def runs(self, agent: str | None = None, env: str | None = None, suite: str | None = None) -> list[dict[str, Any]]:
        where, args = _filters(agent=agent, env=env, suite=suite)
        if not self.path.exists():
            return []
        conn = self._connect()
        rows = conn.execute(f"SELECT * FROM runs{where} ORDER BY created, run_id", args).fetchall()
        return [_decode(dict(r)) for r in rows]

    @_guarded
    def get(self, run_id: str) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        conn = self._connect()
        r = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if r is None else _decode(dict(r))

    @_guarded
    def evaluations(
        self, agent: str | None = None, env: str | None = None, suite: str | None = None
    ) -> list[dict[str, Any]]:
        """One row per (run, protocol): the run's columns, with ``protocol``/``metrics`` of that evaluation."""
        if not self.path.exists():
            return []
        where, args = _filters(prefix="r.", agent=agent, env=env, suite=suite)
        cols = ", ".join(f"r.{c}" for c in RUN_COLUMNS if c not in ("protocol", "protocol_hash", "metrics"))
        conn = self._connect()
        rows = conn.execute(
            f"SELECT {cols}, e.protocol AS protocol, e.protocol_hash AS protocol_hash, e.metrics AS metrics, "
            f"e.created AS evaluated FROM evaluations e JOIN runs r ON r.run_id = e.run_id{where} "
            f"ORDER BY r.created, r.run_id",
            args,
        ).fetchall()
        return [_decode(dict(r)) for r in rows]

    @_guarded
    def count(self) -> int:
        if not self.path.exists():
            return 0
        conn = self._connect()
        return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def check(self) -> str | None:
        """None when the file is a sound SQLite database with this store's tables; else what is wrong."""
        if not self.path.exists():
            return None
        try:
            conn = self._connect()
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                return str(ok)
            conn.execute("SELECT COUNT(*) FROM runs").fetchone()
            conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()
        except sqlite3.Error as exc:
            self.close()
            return str(exc)
        except StoreError as exc:
            return str(exc)
        return None

    def move_aside(self) -> Path:
        """Rename the database (and its -wal/-shm files) to ``results.sqlite.damaged-<time>``; the next use
        creates a fresh one. Returns the new name of the main file."""
        self.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                os.replace(side, target.with_name(target.name + suffix))
        os.replace(self.path, target)
        self._ready = False
        return target


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): takes the write lock up front, so two
    writers never deadlock upgrading read locks; the busy timeout queues them."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _filters(prefix: str = "", **kw) -> tuple[str, list]:
    parts, args = [], []
    for col, value in kw.items():
        if value is None:
            continue
        values = [value] if isinstance(value, str) else list(value)
        parts.append(f"{prefix}{col} IN ({', '.join('?' for _ in values)})")
        args.extend(values)
    return (" WHERE " + " AND ".join(parts) if parts else ""), args


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for c in _JSON_COLUMNS:
        if isinstance(row.get(c), str):
            row[c] = json.loads(row[c])
    return row
