"""The SQLite store's ground floor: its connections, its thread, its transactions.

SQLite calls block, so they run on one worker thread behind a lock; WAL with
synchronous=FULL means a value we acknowledged survives a power cut. Every part of the
store (readings, versions, billing, tokens) stands on this class and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from storage.base import (
    StorageError,
    StorageUnavailable,
)

T = TypeVar("T")
log = logging.getLogger(__name__)


def _snapshot(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    def wrapped(db: sqlite3.Connection) -> T:
        db.execute("BEGIN")
        try:
            return fn(db)
        finally:
            if db.in_transaction:  # a read-only transaction: ending it discards nothing
                db.execute("ROLLBACK")

    return wrapped


def create_private(path: str) -> None:
    """Create the database file readable by its owner only, before SQLite opens it:
    SQLite gives its -wal and -shm files the same mode, and meter data is customer data."""
    if path == ":memory:":
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def path_from_url(url: str) -> str:
    if not url.startswith("sqlite://"):
        raise StorageError(f"not a sqlite URL: {url}")
    rest = url[len("sqlite://") :]
    if rest in ("", "/:memory:", ":memory:"):
        return ":memory:"
    return rest[1:] if rest.startswith("/") else rest


_TRANSIENT = ("locked", "busy", "disk", "i/o", "full", "unable to open", "readonly",
              "interrupted")


def transient(exc: sqlite3.OperationalError) -> bool:
    """Locked, busy, a full disk or an I/O error pass; a missing table or column, or SQL
    SQLite cannot parse, is a fault that retrying the same statement cannot mend, and
    retrying it forever would hold a gateway's outbox behind it."""
    text = str(exc).lower()
    if text.startswith("no such") or "syntax error" in text or "has no column" in text:
        return False  # before the words below: a column may be named "disk_full"
    return any(word in text for word in _TRANSIENT)


WAL_KEEP_BYTES = 4 * 1024 * 1024
RESERVE_BYTES = 1024 * 1024
"""At most this is set aside beside the database (a sixteenth of a small disk), and given
back when the disk fills: room for the checkpoint that lets the WAL shrink, however
little the operator frees."""


class DiskReserve:
    """A file allocated for real (not sparse) beside the database."""

    def __init__(self, db_path: str) -> None:
        self.path = "" if db_path == ":memory:" else f"{db_path}-reserve"
        self.held = not self.path

    def make(self) -> None:
        """Allocate it where the disk has several times its size free; else wait."""
        if self.held:
            return
        try:
            disk = shutil.disk_usage(os.path.dirname(os.path.abspath(self.path)))
            size = min(RESERVE_BYTES, disk.total // 16)
            if disk.free < 4 * size:
                return
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
            self.held = True
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def release(self) -> int:
        """Delete it; returns the bytes freed."""
        if not self.path:
            return 0
        try:
            size = os.path.getsize(self.path)
            os.unlink(self.path)
        except OSError:
            size = 0
        self.held = False
        return size


class SqliteConnection:
    def __init__(self, path: str, *, outbox: bool = False, outbox_max_rows: int = 0) -> None:
        self.outbox = outbox
        self.outbox_max_rows = outbox_max_rows
        self.outbox_evicted = 0
        # Rows queued, kept up to date by the writes themselves (under the write lock):
        # counting a million-row outbox on every write would be a scan per meter read.
        # None means "not known": count once, and again after a failed transaction.
        self._outbox_rows: int | None = None
        self.path = path
        try:
            create_private(path)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open SQLite database {path}: {exc}") from exc
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # A checkpoint leaves the WAL file at this size, not at its high-water mark.
        self._db.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
        self._lock = threading.Lock()
        self._full = False
        """The last write found the disk full: fold the WAL in before the next one."""
        self.reserve = DiskReserve(path)
        self.reserve.make()
        # Queries get their own connection: in WAL mode a reader never blocks the writer,
        # so a flag pass or a report does not hold up the buses' writes.
        if path == ":memory:":
            self._reader, self._read_lock = self._db, self._lock
        else:
            self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._reader.execute("PRAGMA busy_timeout=5000")
            self._read_lock = threading.Lock()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._on(self._db, self._lock, fn)

    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Every read runs in one read transaction: WAL gives it one snapshot for all its
        statements, so a series or a version committed between two of them cannot be in
        one result and missing from the next."""
        return await self._on(self._reader, self._read_lock, _snapshot(fn))

    async def _on(self, db: sqlite3.Connection, lock: threading.Lock,
                  fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with lock:
                if db is self._db and self._full:
                    self._make_room(db)  # before this write's frames take the room freed
                try:
                    result = fn(db)
                except sqlite3.OperationalError as exc:
                    if db is self._db and "full" in str(exc).lower():
                        self._full = True
                        self._make_room(db)
                    if transient(exc):  # the same write may succeed later
                        raise StorageUnavailable(f"sqlite {self.path}: {exc}") from exc
                    raise StorageError(f"sqlite {self.path}: {exc}") from exc
                except (sqlite3.Error, ValueError, OverflowError, TypeError) as exc:
                    # Refused for what the rows hold (a constraint, a lone surrogate, a
                    # number SQLite cannot bind): retrying the same rows cannot help.
                    raise StorageError(f"sqlite {self.path}: {exc}") from exc
                if db is self._db and not self.reserve.held:
                    self._tight(db)
                return result

        return await asyncio.to_thread(locked)

    def _tight(self, db: sqlite3.Connection) -> None:
        """After a write on a disk without room for the reserve: set the reserve aside
        if there is room again, or else fold the WAL in now, so that it does not grow
        into the little room left (it holds each page once per commit that wrote it)."""
        self.reserve.make()
        if not self.reserve.held:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _make_room(self, db: sqlite3.Connection) -> None:
        """A full disk: give back the reserve, then fold the WAL into the database and
        truncate it. Left alone, every retry's frames went into the WAL, the WAL took
        whatever space was freed, and nothing committed until an operator stepped in; a
        checkpoint needs only the room of the distinct pages, which the reserve gives."""
        freed = self.reserve.release()
        try:
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("sqlite %s: the disk is full and the WAL cannot be folded in yet "
                        "(%s); retrying before each write", self.path, exc)
            return
        if busy:
            return  # a reader holds an old snapshot: try again before the next write
        self._full = False
        log.warning("sqlite %s: the disk was full; the WAL is folded into the database%s",
                    self.path, f" with the {freed // 1024} KiB reserve given back" if freed
                    else "")

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        def wrapped(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.execute("COMMIT")
            except BaseException:
                self._outbox_rows = None  # what the transaction counted did not land
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return result

        return wrapped

    async def close(self) -> None:
        if self._reader is not self._db:
            await self._on(self._reader, self._read_lock, lambda db: db.close())
        await self._run(lambda db: db.close())

    async def ping(self) -> None:
        await self._query(lambda db: db.execute("SELECT 1").fetchone())
