"""The cohort manifest: one row per volume (and per unreadable file), durable, in SQLite.

Why SQLite rather than Parquet: the manifest is updated one volume at a time while the run
goes on, and every update must survive a SIGKILL of the client the moment after it. SQLite
commits a row in a transaction (write-ahead log, so readers such as ``sqlite3`` or
``pandas.read_sql`` see a consistent manifest during the run); Parquet files are immutable, so
each update would mean rewriting the file or leaving one fragment per volume. SQLite is in the
standard library, and the manifest is small (a few hundred bytes a volume): a 100,000-volume
cohort is tens of MB. Only the client writes it, so it needs no shared-filesystem locking.

Tables (``sqlite3 OUT/cohort/manifest.sqlite .schema``):

``volumes``
    ``key`` (the store key; a series that could not become a volume: its Series Instance UID),
    ``study_uid``, ``series_uid``, ``files`` (source files), ``slices``, ``shape`` (JSON),
    ``status`` (pending, done, failed, quarantined), ``findings`` (JSON list of the geometry
    findings with their numbers), ``error_class``, ``error_message``, ``tries`` (task runs that
    ended their worker), ``io_retries``, ``source_digest`` (of the files' paths, sizes and
    modification times), ``pipeline`` (its digest), ``bytes`` (source bytes), ``started``,
    ``finished`` (Unix time), ``seconds`` (the task's own time), ``outputs`` (JSON: store key,
    thumbnail, NIfTI, QA record; paths relative to the store), ``worker``, ``peak_rss``
    (the worker's peak resident bytes after the task), ``version`` (voxelflow).
``files``
    ``path``, ``reason``: files the scan could not read (they belong to no volume).
``runs``
    one row per run: ``started``, ``finished``, ``sources``, ``pipeline`` (JSON), ``counts``
    (JSON, by status), ``version``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import StoreError

__all__ = ["COLUMNS", "STATUSES", "Manifest"]

#: A volume's states: planned, made, refused with a reason, or set aside after crashing workers.
STATUSES = ("pending", "done", "failed", "quarantined")

#: The ``volumes`` table's columns, in order.
COLUMNS = (
    "key", "study_uid", "series_uid", "files", "slices", "shape", "status", "findings",
    "error_class", "error_message", "tries", "io_retries", "source_digest", "pipeline", "bytes",
    "started", "finished", "seconds", "outputs", "worker", "peak_rss", "version",
)
_JSON = ("shape", "findings", "outputs")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS volumes (
    key TEXT PRIMARY KEY, study_uid TEXT, series_uid TEXT, files INTEGER, slices INTEGER,
    shape TEXT, status TEXT NOT NULL CHECK (status IN {STATUSES!r}), findings TEXT,
    error_class TEXT, error_message TEXT, tries INTEGER NOT NULL DEFAULT 0,
    io_retries INTEGER NOT NULL DEFAULT 0, source_digest TEXT, pipeline TEXT, bytes INTEGER,
    started REAL, finished REAL, seconds REAL, outputs TEXT, worker TEXT, peak_rss INTEGER,
    version TEXT
);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL, finished REAL, sources TEXT,
    pipeline TEXT, counts TEXT, version TEXT
);
"""


class Manifest:
    """The manifest file at `path` (created with its tables if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed row survives the client's death (SIGKILL) at
            # once, and the machine's crash once the log is checkpointed; FULL would add an
            # fsync per volume to guard against the second alone
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cohort manifest {self.path}: {exc}") from None
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Manifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- volumes -------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM volumes WHERE key = ?", (key,)).fetchone()
        return None if row is None else _decoded(row)

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every volume row (of one `status`), ordered by key."""
        if status is None:
            cursor = self._db.execute("SELECT * FROM volumes ORDER BY key")
        else:
            cursor = self._db.execute("SELECT * FROM volumes WHERE status = ? ORDER BY key", (status,))
        return [_decoded(row) for row in cursor]

    def put(self, row: Mapping[str, Any]) -> None:
        """Insert or replace one volume's row (missing columns: NULL), committed at once."""
        values = {c: row.get(c) for c in COLUMNS}
        if values["status"] not in STATUSES:
            raise ValueError(f"manifest status must be one of {STATUSES}, got {values['status']!r}")
        values["version"] = values["version"] or __version__
        values["tries"] = values["tries"] or 0
        values["io_retries"] = values["io_retries"] or 0
        for column in _JSON:
            if values[column] is not None:
                values[column] = json.dumps(values[column], sort_keys=True)
        marks = ", ".join("?" for _ in COLUMNS)
        self._db.execute(f"INSERT OR REPLACE INTO volumes ({', '.join(COLUMNS)}) VALUES ({marks})",
                         tuple(values[c] for c in COLUMNS))

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self._db.execute("SELECT status, COUNT(*) FROM volumes GROUP BY status"):
            counts[status] = n
        return counts

    # -- files ---------------------------------------------------------------------------

    def set_file_errors(self, errors: Iterable[tuple[str, str]]) -> None:
        """The scan's unreadable files, replacing the last run's (a file fixed since is gone)."""
        with self.batch():
            self._db.execute("DELETE FROM files")
            self._db.executemany("INSERT OR REPLACE INTO files (path, reason) VALUES (?, ?)", list(errors))

    def file_errors(self) -> list[tuple[str, str]]:
        return [(r["path"], r["reason"]) for r in self._db.execute("SELECT * FROM files ORDER BY path")]

    # -- runs ----------------------------------------------------------------------------

    def begin_run(self, sources: Iterable[str], pipeline: Mapping[str, Any]) -> int:
        cursor = self._db.execute(
            "INSERT INTO runs (started, sources, pipeline, version) VALUES (?, ?, ?, ?)",
            (time.time(), json.dumps(list(sources)), json.dumps(pipeline, sort_keys=True), __version__),
        )
        return int(cursor.lastrowid or 0)

    def end_run(self, run: int) -> None:
        self._db.execute("UPDATE runs SET finished = ?, counts = ? WHERE id = ?",
                         (time.time(), json.dumps(self.counts()), run))

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute("SELECT * FROM runs ORDER BY id")]

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Commit every write inside the block at once (or none, on an error)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _decoded(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for column in _JSON:
        if out.get(column) is not None:
            out[column] = json.loads(out[column])
    return out


def iter_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """The volume rows of the manifest at `path`, read-only (for reports and tests)."""
    uri = f"file:{Path(path).absolute()}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    db.row_factory = sqlite3.Row
    try:
        yield from (_decoded(r) for r in db.execute("SELECT * FROM volumes ORDER BY key"))
    finally:
        db.close()
