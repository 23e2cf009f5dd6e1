"""The collection store: one SQLite file per study, WAL mode, one transaction per completed turn.

A single writer (the event loop thread) commits each turn as it completes, so a crash or
`kill -9` loses at most the turns in flight and a resumed run continues exactly where it
stopped. WAL with synchronous=NORMAL keeps every committed turn across a killed process (only a
power loss can drop the last commits) at a few tens of microseconds per commit.

Tables: `meta` (study, config fingerprint), `sessions` (one row per started session), `turns`
(the messages of each turn, the request body sent without its messages, the response metadata),
`answers` (one row per session x item: the long table), `cache` (replies that parsed, by key).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from vaar.errors import VaarError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  session TEXT PRIMARY KEY, model TEXT NOT NULL, idx INTEGER NOT NULL, seed INTEGER NOT NULL,
  status TEXT NOT NULL, error TEXT, system TEXT NOT NULL, started REAL, finished REAL);
CREATE TABLE IF NOT EXISTS turns (
  session TEXT NOT NULL, turn INTEGER NOT NULL, instrument TEXT NOT NULL,
  context TEXT NOT NULL, messages TEXT NOT NULL, request TEXT NOT NULL, meta TEXT NOT NULL,
  prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost REAL NOT NULL,
  attempts INTEGER NOT NULL, finished REAL NOT NULL, PRIMARY KEY (session, turn));
CREATE TABLE IF NOT EXISTS answers (
  session TEXT NOT NULL, model TEXT NOT NULL, instrument TEXT NOT NULL, item TEXT NOT NULL,
  position INTEGER NOT NULL, turn INTEGER NOT NULL, raw TEXT NOT NULL, value REAL,
  status TEXT NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY (session, item));
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, reply TEXT NOT NULL);
"""


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


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        if not Path(path).exists():
            raise VaarError(f"{path}: no such collection store")
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
    try:
        con.execute("SELECT 1 FROM sqlite_master LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise VaarError(f"{path}: not a vaar collection store ({exc})") from None
    return con


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.con = connect(self.path)
        self.con.executescript(SCHEMA)
        self._pending: list = []

    def close(self) -> None:
        self.con.close()

    # -- study identity ------------------------------------------------------------------
    def bind_study(self, name: str, fingerprint: str, config: dict) -> None:
        """Refuse to mix answers of two different study designs in one store."""
        row = self.con.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        if row and row[0] != fingerprint:
            raise VaarError(
                f"{self.path} holds answers collected under a different study design (models, "
                "instruments, session or seed changed); use another output_dir or delete it"
            )
        with self.con:
            self.con.execute("BEGIN")
            for key, value in (
                ("study", name),
                ("fingerprint", fingerprint),
                ("config", json.dumps(config)),
            ):
                self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # -- sessions ------------------------------------------------------------------------
    def session_status(self) -> dict[str, tuple[str, str | None]]:
        rows = self.con.execute("SELECT session, status, error FROM sessions")
        return {s: (status, error) for s, status, error in rows}

    def start_session(self, session: str, model: str, idx: int, seed: int, system: str) -> None:
        self.con.execute(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, 'running', NULL, ?, ?, NULL) "
            "ON CONFLICT(session) DO UPDATE SET status='running', error=NULL",
            (session, model, idx, seed, system, time.time()),
        )

    def load_turns(self, session: str) -> list[TurnRecord]:
        rows = self.con.execute(
            "SELECT turn, instrument, messages FROM turns WHERE session=? ORDER BY turn", (session,)
        )
        out = []
        for turn, instrument, messages in rows:
            msgs = json.loads(messages)
            out.append(TurnRecord(turn, instrument, msgs, estimate_tokens(msgs)))
        return out

    async def write_turn(self, **turn) -> None:
        """Commit one completed turn; returns once it is durable. Turns that complete in the
        same event-loop iteration share one transaction (group commit): each session still
        waits for its own turn to be committed before asking the next, so nothing is asked
        twice after a crash, at a fraction of the cost of one commit per turn."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((turn, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        con = self.con
        try:
            con.execute("BEGIN")
            for turn, _ in batch:
                self._insert_turn(**turn)
            con.execute("COMMIT")
        except BaseException as exc:
            con.execute("ROLLBACK")
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    def _insert_turn(
        self,
        session: str,
        model: str,
        record: TurnRecord,
        context: list[int],
        request: dict,
        meta: dict,
        usage: tuple[int, int, float],
        attempts: int,
        answers: list[AnswerRow],
        cache: list[tuple[str, str]] = (),
        session_done: bool = False,
    ) -> None:
        now = time.time()
        con = self.con
        con.execute(
            "INSERT OR REPLACE INTO turns VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                session,
                record.turn,
                record.instrument,
                json.dumps(context),
                json.dumps(record.messages),
                json.dumps(request),
                json.dumps(meta),
                usage[0],
                usage[1],
                usage[2],
                attempts,
                now,
            ),
        )
        con.executemany(
            "INSERT OR REPLACE INTO answers VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    session,
                    model,
                    a.instrument,
                    a.item,
                    a.position,
                    record.turn,
                    a.raw,
                    a.value,
                    a.status,
                    a.attempts,
                    a.reason,
                )
                for a in answers
            ],
        )
        if cache:
            con.executemany("INSERT OR REPLACE INTO cache VALUES (?, ?)", cache)
        if session_done:
            con.execute(
                "UPDATE sessions SET status='done', error=NULL, finished=? WHERE session=?",
                (now, session),
            )

    def finish_session(self, session: str, status: str, error: str | None = None) -> None:
        """Mark a session done, failed (with the reason) or stopped (e.g. by --max-cost)."""
        self.con.execute(
            "UPDATE sessions SET status=?, error=?, finished=? WHERE session=?",
            (status, error, time.time(), session),
        )

    # -- cache ---------------------------------------------------------------------------
    def cached_reply(self, key: str) -> dict | None:
        row = self.con.execute("SELECT reply FROM cache WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- totals --------------------------------------------------------------------------
    def usage_by_model(self) -> dict[str, dict]:
        rows = self.con.execute(
            "SELECT s.model, COUNT(*), SUM(t.prompt_tokens), SUM(t.completion_tokens), "
            "SUM(t.cost), SUM(t.attempts) FROM turns t JOIN sessions s USING (session) "
            "GROUP BY s.model"
        )
        return {
            m: {
                "turns": n,
                "prompt_tokens": p or 0,
                "completion_tokens": c or 0,
                "cost": cost or 0.0,
                "requests": a or 0,
            }
            for m, n, p, c, cost, a in rows
        }

    def answer_counts(self) -> dict[str, dict[str, int]]:
        rows = self.con.execute(
            "SELECT model, status, COUNT(*) FROM answers GROUP BY model, status"
        )
        out: dict[str, dict[str, int]] = {}
        for model, status, n in rows:
            out.setdefault(model, {})[status] = n
        return out


def estimate_tokens(messages: list[dict]) -> int:
    """~4 characters per token plus a few per message: good enough for caps and estimates."""
    return sum(len(m["content"]) // 4 + 4 for m in messages)


def transcripts(path: str | Path):
    """One dict per session with every turn as sent and received (for JSONL export)."""
    con = connect(Path(path), readonly=True)
    try:
        sessions = con.execute(
            "SELECT session, model, idx, seed, status, error, system FROM sessions ORDER BY rowid"
        ).fetchall()
        for session, model, idx, seed, status, error, system in sessions:
            turns = con.execute(
                "SELECT turn, instrument, context, messages, request, meta, prompt_tokens, "
                "completion_tokens, cost, attempts FROM turns WHERE session=? ORDER BY turn",
                (session,),
            ).fetchall()
            yield {
                "session": session,
                "model": model,
                "index": idx,
                "seed": seed,
                "status": status,
                "error": error,
                "system": system,
                "turns": [
                    {
                        "turn": t,
                        "instrument": ins,
                        "context": json.loads(ctx),
                        "messages": json.loads(msgs),
                        "request": json.loads(req),
                        "meta": json.loads(meta),
                        "prompt_tokens": pt,
                        "completion_tokens": ct,
                        "cost": cost,
                        "attempts": att,
                    }
                    for t, ins, ctx, msgs, req, meta, pt, ct, cost, att in turns
                ],
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
        self.con = connect(self.path)
        self.con.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, reply TEXT)")

    def cached_reply(self, key: str) -> dict | None:
        row = self.con.execute("SELECT reply FROM cache WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, rows: list[tuple[str, str]]) -> None:
        with self.con:
            self.con.execute("BEGIN")
            self.con.executemany("INSERT OR REPLACE INTO cache VALUES (?, ?)", rows)

    def close(self) -> None:
        self.con.close()
