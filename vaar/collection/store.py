"""The collection store: one SQLite file per study, WAL mode, one transaction per completed turn.

A single writer (the event loop thread) commits each turn as it completes, so a crash or
`kill -9` loses at most the turns in flight and a resumed run continues exactly where it
stopped. WAL with synchronous=NORMAL keeps every committed turn across a killed process (only a
power loss can drop the last commits) at a few tens of microseconds per commit.

One process writes a store at a time: the writer holds an exclusive flock on `<store>.lock`
(its pid written in it), which the OS drops when the process ends, however it ends. Readers
(export, analyze) open the store read-only and take no lock. A run sharded across worker
processes (vaar.collection.workers) is still one writer: the parent holds the lock, and its
workers write through connections of their own, each transaction BEGIN IMMEDIATE (WAL and the
busy timeout order them), only while it does.

Every SQLite failure (disk full, locked by another connection, I/O error) becomes a one-line
StoreError naming the file; SQLite keeps each transaction all-or-nothing, so the turns
committed before the failure stay and a rerun resumes from them.

Tables: `meta` (study, config fingerprint), `sessions` (one row per started session), `turns`
(the messages of each turn, the request body sent without its messages, the response metadata),
`answers` (one row per session x item: the long table), `cache` (replies that parsed, by key).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from vaar.errors import VaarError


def _json(value) -> str:
    """JSON text for a store column: orjson, many times faster than json on the hot path."""
    return orjson.dumps(value).decode()


BUSY_TIMEOUT = 5.0  # seconds to wait for another connection's write lock before failing
STORE_FILE = "collection.sqlite"  # a study's store in its output_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  session TEXT PRIMARY KEY, model TEXT NOT NULL, idx INTEGER NOT NULL, seed INTEGER NOT NULL,
  status TEXT NOT NULL, error TEXT, system TEXT NOT NULL, started REAL, finished REAL,
  variant TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS turns (
  session TEXT NOT NULL, turn INTEGER NOT NULL, instrument TEXT NOT NULL,
  context TEXT NOT NULL, messages TEXT NOT NULL, request TEXT NOT NULL, meta TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost REAL NOT NULL,
  attempts INTEGER NOT NULL, finished REAL NOT NULL,
  cache_read_tokens INTEGER NOT NULL DEFAULT 0, cache_write_tokens INTEGER NOT NULL DEFAULT 0,
  reasoning_tokens INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (session, turn));
CREATE TABLE IF NOT EXISTS answers (
  session TEXT NOT NULL, model TEXT NOT NULL, instrument TEXT NOT NULL, item TEXT NOT NULL,
  position INTEGER NOT NULL, turn INTEGER NOT NULL, raw TEXT NOT NULL, value REAL,
  status TEXT NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY (session, item));
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, reply TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
  id TEXT PRIMARY KEY, model TEXT NOT NULL, wave INTEGER NOT NULL, status TEXT NOT NULL,
  requests TEXT NOT NULL, submitted REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS batch_results (
  custom_id TEXT PRIMARY KEY, batch TEXT NOT NULL, result TEXT NOT NULL);
"""
CACHE_SCHEMA = "CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, reply TEXT);"
# Columns added after a table's first release, at its end and with a default: a store written
# by an older vaar lacks them; a writer adds them (ALTER TABLE), a reader sees them through a
# temporary view with their defaults, so every older store stays readable and resumable.
ADDED_COLUMNS = {
    "turns": ("cache_read_tokens", "cache_write_tokens", "reasoning_tokens"),
    "sessions": ("variant",),  # a multiverse study's variant ('' for a study without one)
}
# Tables added later: a writer creates them in an older store (readers never need them).
ADDED_TABLES = ("batches", "batch_results")


def condition_name(model: str, variant: str) -> str:
    """A condition's name (its key in the summaries): the model, or model/variant in a
    multiverse study (names cannot contain '/')."""
    return f"{model}/{variant}" if variant else model


class StoreError(VaarError):
    """A collection store or reply cache that cannot be opened or written: not a store, in use
    by another process, disk full, locked, I/O error. One line, naming the file."""


def _failure(path: Path, exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", None)
    return StoreError(
        f"{path}: {exc}{f' ({name})' if name else ''}; every turn stored so far is kept: fix this "
        "and rerun to resume"
    )


def _guarded(method):
    """For Store and ReplyCache methods: an open transaction is rolled back on any failure, and
    an SQLite error becomes a StoreError naming the file, `self.failed`, raised at once by every
    later call: the run stops, and nothing waits on a store that failed (say, locked) again."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        if self.failed:
            raise self.failed
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if self.con.in_transaction:  # SQLite rolls back by itself after some errors
                with contextlib.suppress(sqlite3.Error):
                    self.con.rollback()
            if isinstance(exc, sqlite3.Error):
                self.failed = _failure(self.path, exc)
                raise self.failed from None
            raise

    return guarded


@dataclass
class TurnRecord:
    """One completed turn as stored: what later turns may carry as history."""

    turn: int
    instrument: str
    messages: list[dict]
    tokens: int  # estimated size of `messages`, for the history token cap


@dataclass
class AnswerRow:
    instrument: str
    item: str
    position: int
    raw: str
    value: float | None
    status: str
    attempts: int
    reason: str = ""


@functools.cache
def _columns(schema: str) -> dict[str, list[str]]:
    """Table -> column names that `schema` creates (each fact stays in the SQL above)."""
    return {t: [c for c, _, _ in cols] for t, cols in _definitions(schema).items()}


@functools.cache
def _definitions(schema: str) -> dict[str, list[tuple[str, str, str | None]]]:
    """Table -> (column, type, default) as `schema` creates them."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(schema)
        return {
            t: con.execute(
                "SELECT name, type, dflt_value FROM pragma_table_info(?)", (t,)
            ).fetchall()
            for t in _tables(con)
        }
    finally:
        con.close()


def _upgrade(con: sqlite3.Connection, missing: dict[str, list | None], readonly: bool) -> None:
    """Give an older store the tables and columns added since (ADDED_TABLES, ADDED_COLUMNS)."""
    for table, columns in missing.items():
        if columns is None:  # a table added since
            if not readonly:
                con.executescript(SCHEMA)  # creates only the tables that do not exist
            continue
        defs = {c: (kind, default) for c, kind, default in _definitions(SCHEMA)[table]}
        if readonly:
            extra = ", ".join(f"{defs[c][1]} AS {c}" for c in columns)
            con.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {extra} FROM main.{table}")
            continue
        with con:
            con.execute("BEGIN IMMEDIATE")
            for c in columns:
                kind, default = defs[c]
                con.execute(f"ALTER TABLE {table} ADD COLUMN {c} {kind} NOT NULL DEFAULT {default}")


def _tables(con: sqlite3.Connection) -> dict[str, list[str]]:
    names = con.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite%'"
    ).fetchall()
    return {
        n: [c for (c,) in con.execute("SELECT name FROM pragma_table_info(?)", (n,))]
        for (n,) in names
    }


def _check_tables(
    con: sqlite3.Connection, path: Path, schema: str, what: str
) -> dict[str, list[str]] | None:
    """None if the database is empty; else what an older vaar's store lacks (table -> the
    ADDED_COLUMNS missing, or None for a missing ADDED_TABLES table; {} for a current store);
    StoreError if it is not a store."""
    found = _tables(con)
    if not found:
        return None
    missing = {}
    for table, columns in _columns(schema).items():
        if table not in found and table in ADDED_TABLES:
            missing[table] = None
            continue
        have = found.get(table, [])
        lacking = columns[len(have) :]
        if (
            have == columns[: len(have)]
            and lacking
            and set(lacking) <= set(ADDED_COLUMNS.get(table, ()))
        ):
            missing[table] = lacking
            continue
        if table not in found:
            raise StoreError(
                f"{path}: not a vaar {what} (its tables: "
                f"{', '.join(sorted(found)[:6])}; another application's database?)"
            )
        if found[table] != columns:
            raise StoreError(
                f"{path}: not a {what} of this vaar version (table {table} has columns "
                f"{', '.join(found[table])}; expected {', '.join(columns)})"
            )
    return missing


def writable_path(path: Path, what: str = "collection store") -> Path:
    """`path` as a file to create or write: not a folder, its folder made if missing."""
    if path.is_dir():
        raise StoreError(f"{path}: is a folder, not a {what} file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"{path}: cannot create its folder {path.parent} ({exc.strerror})"
        ) from None
    return path


def connect(
    path: Path, readonly: bool = False, schema: str = SCHEMA, what: str = "collection store"
) -> sqlite3.Connection:
    """Open a collection store (or, with CACHE_SCHEMA, a reply cache). A writer creates the
    tables in a new or empty file; whatever else is not one (a folder, a text or binary file,
    another application's database, a store of another vaar version) is a StoreError."""
    path = Path(path)
    try:
        if readonly:
            if path.is_dir():
                raise StoreError(f"{path}: is a folder, not a {what}")
            if not path.is_file():
                raise StoreError(f"{path}: no such {what}")
            uri = f"{path.resolve().as_uri()}?mode=ro"
            con = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)
        else:
            file = writable_path(path, what)
            con = sqlite3.connect(file, isolation_level=None, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the {what} ({exc})") from None
    try:
        missing = _check_tables(con, path, schema, what)
        if readonly and missing is None:
            raise StoreError(f"{path}: an empty database, not a vaar {what}")
        if not readonly:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            if missing is None:
                con.executescript(schema)
        if missing:
            _upgrade(con, missing, readonly)
    except sqlite3.DatabaseError as exc:
        con.close()
        if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
            raise StoreError(f"{path}: not a vaar {what} (not an SQLite database)") from None
        raise _failure(path, exc) from None
    except BaseException:
        con.close()
        raise
    return con


def _holder(fd: int) -> str:
    """The pid written in a store's lock file (open as `fd`)."""
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"


def _in_use(path: Path, pid: str) -> StoreError:
    return StoreError(
        f"{path} is in use by another vaar process (pid {pid}): wait for it to finish or stop it"
    )


def lock_writer(path: Path) -> int:
    """Take the store's writer lock (an exclusive flock on `<store>.lock`, holding our pid) and
    return its descriptor; StoreError naming the other writer's pid if it is taken."""
    lock = writable_path(path).with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create its lock file {lock} ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder(fd)
        os.close(fd)
        raise _in_use(path, pid) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise StoreError(f"{path}: cannot write its lock file {lock} ({exc.strerror})") from None
    return fd


def check_writer(path: Path, pid: int) -> None:
    """For a collection worker (vaar.collection.workers), which writes without the lock: its
    parent, process `pid`, must be the one holding it; StoreError otherwise."""
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # closing fd drops it again
            except BlockingIOError:
                holder = _holder(fd)
                if holder == str(pid):
                    return
                raise _in_use(path, holder) from None
    finally:
        if fd is not None:
            os.close(fd)
    raise StoreError(
        f"{path}: no vaar process holds the store's lock; a collection worker writes only for "
        f"the process that does (pid {pid})"
    )


class Store:
    """A study's collection store. The writer (the default) holds the store's lock until
    close(); `readonly=True` opens it for reading only, without the lock; `worker_of=pid`
    opens it for writing without the lock, for a collection worker of process `pid`, which
    must hold it (vaar.collection.workers)."""

    def __init__(self, path: str | Path, readonly: bool = False, worker_of: int | None = None):
        self.path = Path(path)
        if worker_of is not None:
            check_writer(self.path, worker_of)
        self._lock = None if readonly or worker_of is not None else lock_writer(self.path)
        try:
            self.con = connect(self.path, readonly)
        except BaseException:
            self._unlock()
            raise
        self._pending: list = []
        self.failed: StoreError | None = None
        if worker_of is not None:  # the parent checkpoints (checkpoint()), off the workers' loops
            self.con.execute("PRAGMA wal_autocheckpoint=0")

    @_guarded
    def checkpoint(self, restart_pages: int = 4096) -> None:
        """Copy the WAL's committed pages into the database, as SQLite does every 1000 pages
        on its own in the connection that commits (a sharded run's workers leave it to their
        parent): without waiting for the writers; but once the WAL holds `restart_pages`, wait
        for them, so that the next one writes the WAL from its start again (with writers
        always at work it would otherwise only grow)."""
        _, pages, _ = self.con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if pages >= restart_pages:
            self.con.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the flock
            self._lock = None

    def close(self) -> None:
        try:
            self._flush()  # turns completed but not yet committed (none after a clean run)
            self.con.close()
        finally:
            self._unlock()

    # -- study identity ------------------------------------------------------------------
    @_guarded
    def bind_study(self, name: str, fingerprint: str, config: dict) -> None:
        """Refuse to mix answers of two different study designs in one store."""
        row = self.con.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        if row and row[0] != fingerprint:
            raise VaarError(
                f"{self.path} holds answers collected under a different study design (models, "
                "instruments, session or seed changed); use another output_dir or delete it"
            )
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            for key, value in (
                ("study", name),
                ("fingerprint", fingerprint),
                ("config", json.dumps(config)),
            ):
                self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @_guarded
    def meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # -- sessions ------------------------------------------------------------------------
    @_guarded
    def session_status(self) -> dict[str, tuple[str, str | None]]:
        rows = self.con.execute("SELECT session, status, error FROM sessions")
        return {s: (status, error) for s, status, error in rows}

    @_guarded
    def start_session(
        self, session: str, model: str, idx: int, seed: int, system: str, retry_errors: bool,
        variant: str = "",
    ) -> None:  # fmt: skip
        """Record a session as running; with `retry_errors`, forget its earlier error rows."""
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, 'running', NULL, ?, ?, NULL, ?) "
                "ON CONFLICT(session) DO UPDATE SET status='running', error=NULL",
                (session, model, idx, seed, system, time.time(), variant),
            )
            if retry_errors:
                self.con.execute(
                    "DELETE FROM answers WHERE session=? AND status='error'", (session,)
                )

    @_guarded
    def load_turns(self, session: str) -> list[TurnRecord]:
        rows = self.con.execute(
            "SELECT turn, instrument, messages FROM turns WHERE session=? ORDER BY turn", (session,)
        )
        out = []
        for turn, instrument, messages in rows:
            msgs = orjson.loads(messages)
            out.append(TurnRecord(turn, instrument, msgs, estimate_tokens(msgs)))
        return out

    async def write_turn(self, **turn) -> None:
        """Commit one completed turn; returns once it is durable. Turns that complete in the
        same event-loop iteration share one transaction (group commit): each session still
        waits for its own turn to be committed before asking the next, so nothing is asked
        twice after a crash, at a fraction of the cost of one commit per turn. If the commit
        fails, every turn of the batch raises its StoreError."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((turn, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        await future

    def _flush(self) -> None:
        """Commit the pending turns; a loop callback, so it never raises: each waiting turn
        gets the outcome."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self._commit_turns([turn for turn, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    @_guarded
    def _commit_turns(self, turns: list[dict]) -> None:
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            for turn in turns:
                self._insert_turn(**turn)

    def _insert_turn(
        self,
        session: str,
        model: str,
        record: TurnRecord,
        context: list[int],
        request: dict,
        meta: dict,
        usage,  # vaar.collection.cost.Usage
        cost: float,
        attempts: int,
        answers: list[AnswerRow],
        cache: list[tuple[str, str]] = (),
        session_done: bool = False,
    ) -> None:
        now = time.time()
        con = self.con
        con.execute(
            "INSERT OR REPLACE INTO turns VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                session,
                record.turn,
                record.instrument,
                _json(context),
                _json(record.messages),
                _json(request),
                _json(meta),
                usage.prompt,
                usage.completion,
                cost,
                attempts,
                now,
                usage.cache_read,
                usage.cache_write,
                usage.reasoning,
            ),
        )
        self._insert_answers(session, model, [(record.turn, a) for a in answers])
        if cache:
            con.executemany("INSERT OR REPLACE INTO cache VALUES (?, ?)", cache)
        if session_done:
            con.execute(
                "UPDATE sessions SET status='done', error=NULL, finished=? WHERE session=?",
                (now, session),
            )

    def _insert_answers(self, session: str, model: str, answers: list[tuple[int, AnswerRow]]):
        self.con.executemany(
            "INSERT OR REPLACE INTO answers VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (session, model, a.instrument, a.item, a.position, turn, a.raw, a.value,
                 a.status, a.attempts, a.reason)
                for turn, a in answers
            ],
        )  # fmt: skip

    @_guarded
    def fail_session(
        self, session: str, model: str, unasked: list[tuple[int, AnswerRow]], error: str
    ) -> None:
        """A session failed for good: its unasked items (turn, row) become error rows and the
        session records why, in one transaction."""
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            self._insert_answers(session, model, unasked)
            self.con.execute(
                "UPDATE sessions SET status='failed', error=?, finished=? WHERE session=?",
                (error, time.time(), session),
            )

    # -- batches (vaar.collection.batch) -------------------------------------------------
    @_guarded
    def record_batch(self, batch_id: str, model: str, wave: int, custom_ids: list[str]) -> None:
        """A batch the provider accepted: recorded at once, so a rerun polls it instead of
        sending its requests again."""
        now = time.time()
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, 'submitted', ?, ?, ?)",
                (batch_id, model, wave, json.dumps(custom_ids), now, now),
            )

    @_guarded
    def open_batches(self, model: str) -> list[tuple[str, list[str]]]:
        """(batch id, custom_ids) of the model's batches whose results were not fetched yet."""
        rows = self.con.execute(
            "SELECT id, requests FROM batches WHERE model=? AND status='submitted' "
            "ORDER BY submitted",
            (model,),
        )
        return [(batch_id, json.loads(requests)) for batch_id, requests in rows]

    @_guarded
    def finish_batch(self, batch_id: str, state: str, results: dict[str, dict]) -> None:
        """A batch ended (`state`: the provider's word): its results, by custom_id, in one
        transaction with its new status."""
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.executemany(
                "INSERT OR REPLACE INTO batch_results VALUES (?, ?, ?)",
                [(cid, batch_id, json.dumps(r)) for cid, r in results.items()],
            )
            self.con.execute(
                "UPDATE batches SET status=?, updated=? WHERE id=?",
                (f"ended:{state}", time.time(), batch_id),
            )

    @_guarded
    def batch_results(self, custom_ids: list[str]) -> dict:
        """custom_id -> reply body of the requests among these that succeeded already."""
        out = {}
        for start in range(0, len(custom_ids), 500):
            chunk = custom_ids[start : start + 500]
            rows = self.con.execute(
                f"SELECT custom_id, result FROM batch_results WHERE custom_id IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            for cid, result in rows:
                data = json.loads(result).get("data")
                if data is not None:
                    out[cid] = data
        return out

    @_guarded
    def batches(self, model: str | None = None) -> list[dict]:
        """Every batch recorded (for progress, tests and the summary)."""
        cursor = self.con.execute(
            "SELECT id, model, wave, status, requests, submitted, updated FROM batches "
            + ("WHERE model=? " if model else "")
            + "ORDER BY submitted",
            (model,) if model else (),
        )
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    # -- cache ---------------------------------------------------------------------------
    @_guarded
    def holds_replies(self) -> bool:
        return self.con.execute("SELECT EXISTS (SELECT 1 FROM cache)").fetchone()[0] == 1

    @_guarded
    def cached_reply(self, key: str) -> dict | None:
        row = self.con.execute("SELECT reply FROM cache WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- totals --------------------------------------------------------------------------
    @_guarded
    def usage_by_model(self) -> dict[str, dict]:
        """Turns, tokens and cost per condition (condition_name: the model, or model/variant)."""
        rows = self.con.execute(
            "SELECT s.model, s.variant, COUNT(*), SUM(t.prompt_tokens), "
            "SUM(t.completion_tokens), SUM(t.cost), SUM(t.attempts), SUM(t.cache_read_tokens), "
            "SUM(t.cache_write_tokens), SUM(t.reasoning_tokens) "
            "FROM turns t JOIN sessions s USING (session) GROUP BY s.model, s.variant"
        )
        return {
            condition_name(m, v): {
                "turns": n,
                "prompt_tokens": p or 0,
                "completion_tokens": c or 0,
                "cache_read_tokens": read or 0,
                "cache_write_tokens": written or 0,
                "reasoning_tokens": reasoning or 0,
                "cost": cost or 0.0,
                "requests": a or 0,
            }
            for m, v, n, p, c, cost, a, read, written, reasoning in rows
        }

    @_guarded
    def answers(self) -> list[dict]:
        """Every answer row (the long table's columns and the session's variant), in session
        order then turn order."""
        cursor = self.con.execute(
            "SELECT a.model, s.variant, a.session, a.instrument, a.item, a.position, a.raw, "
            "a.value, a.status, a.attempts FROM answers a JOIN sessions s USING (session) "
            "ORDER BY s.rowid, a.turn, a.position"
        )
        columns = [c[0] for c in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor]

    @_guarded
    def answer_counts(self) -> dict[str, dict[str, int]]:
        """Answers by status per condition (condition_name)."""
        rows = self.con.execute(
            "SELECT a.model, s.variant, a.status, COUNT(*) FROM answers a "
            "JOIN sessions s USING (session) GROUP BY a.model, s.variant, a.status"
        )
        out: dict[str, dict[str, int]] = {}
        for model, variant, status, n in rows:
            out.setdefault(condition_name(model, variant), {})[status] = n
        return out


def estimate_tokens(messages: list[dict]) -> int:
    """~4 characters per token plus a few per message: good enough for caps and estimates."""
    return sum(len(m["content"]) // 4 + 4 for m in messages)


def stored_study_name(path: str | Path) -> str | None:
    """The study name a store recorded, or None when `path` is not a readable vaar store."""
    try:
        store = Store(path, readonly=True)
    except StoreError:
        return None
    try:
        return store.meta("study") or None
    except StoreError:
        return None
    finally:
        store.close()


def transcripts(path: str | Path):
    """One dict per session with every turn as sent and received (for JSONL export)."""
    con = connect(Path(path), readonly=True)
    try:
        sessions = con.execute(
            "SELECT session, model, variant, idx, seed, status, error, system FROM sessions "
            "ORDER BY rowid"
        ).fetchall()
        for session, model, variant, idx, seed, status, error, system in sessions:
            cursor = con.execute(
                "SELECT turn, instrument, context, messages, request, meta, prompt_tokens, "
                "completion_tokens, cost, attempts, cache_read_tokens, cache_write_tokens, "
                "reasoning_tokens FROM turns WHERE session=? ORDER BY turn",
                (session,),
            )
            names = [c[0] for c in cursor.description]
            turns = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            for turn in turns:
                for key in ("context", "messages", "request", "meta"):
                    turn[key] = json.loads(turn[key])
            yield {
                "session": session,
                "model": model,
                **({"variant": variant} if variant else {}),  # a multiverse study's
                "index": idx,
                "seed": seed,
                "status": status,
                "error": error,
                "system": system,
                "turns": turns,
            }
    finally:
        con.close()


class ReplyCache:
    """Replies that parsed, by cache key, in a SQLite file several studies can share: rerunning
    a study into a new output_dir, or a study that repeats another's requests exactly (same
    provider, base URL, model, parameters, messages, seed, replicate and instrument hash),
    reuses them instead of paying again. Unusable replies are never stored."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.con = connect(self.path, schema=CACHE_SCHEMA, what="reply cache")
        self.failed: StoreError | None = None

    @_guarded
    def cached_reply(self, key: str) -> dict | None:
        row = self.con.execute("SELECT reply FROM cache WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    @_guarded
    def put(self, rows: list[tuple[str, str]]) -> None:
        with self.con:
            self.con.execute("BEGIN IMMEDIATE")
            self.con.executemany("INSERT OR REPLACE INTO cache VALUES (?, ?)", rows)

    def close(self) -> None:
        self.con.close()
