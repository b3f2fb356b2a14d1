"""SQL text, schema migrations and row loaders of the SQLite store (run on its threads)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from alertpipe import jsoncodec
from alertpipe.message import Message
from alertpipe.store.base import (
    AttemptRecord,
    AuditEntry,
    DeliveryRecord,
    QueueStats,
    RatePoint,
    StoredMessage,
)
from alertpipe.store.search import fts_query, given, search_text

MIGRATIONS: list[str] = [
    """
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        channel TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        body TEXT NOT NULL,
        raw BLOB,
        meta TEXT NOT NULL,
        status TEXT NOT NULL
    );
    CREATE INDEX messages_channel_received ON messages(channel, received_at);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL REFERENCES messages(id),
        channel TEXT NOT NULL,
        destination TEXT NOT NULL,
        target TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        lease_until INTEGER,
        lease_owner TEXT,
        remote_id TEXT,
        last_error TEXT,
        last_error_code TEXT
    );
    CREATE INDEX deliveries_due ON deliveries(channel, destination, status, next_attempt_at);
    CREATE INDEX deliveries_message ON deliveries(message_id);
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
        number INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        remote_id TEXT,
        error TEXT,
        error_code TEXT,
        ambiguous INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX attempts_delivery ON attempts(delivery_id);
    CREATE TABLE heartbeat (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);
    """,
    """
    ALTER TABLE deliveries ADD COLUMN last_ambiguous INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE message_keys (
        channel TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        fingerprint TEXT,
        message_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (channel, kind, key)
    );
    CREATE INDEX message_keys_expiry ON message_keys(expires_at);
    """,
    """
    CREATE INDEX deliveries_open ON deliveries(channel, status)
        WHERE status IN ('pending', 'in_flight');
    """,
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX attempts_finished ON attempts(finished_at);
    """,
    """
    ALTER TABLE messages ADD COLUMN ref TEXT;
    ALTER TABLE messages ADD COLUMN content_dropped INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attempts ADD COLUMN summary TEXT;
    CREATE INDEX messages_ref ON messages(ref) WHERE ref IS NOT NULL;
    CREATE INDEX deliveries_settled_badly ON deliveries(message_id)
        WHERE status IN ('dead', 'discarded');
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        text, content='', tokenize="unicode61 tokenchars '-_.@+'");
    CREATE TABLE fts_state (id INTEGER PRIMARY KEY CHECK (id = 1), indexed_upto INTEGER NOT NULL);
    INSERT INTO fts_state(id, indexed_upto) VALUES (1, 0);
    """,
    """
    CREATE TABLE time_marks (
        minute INTEGER PRIMARY KEY,
        min_rowid INTEGER NOT NULL,
        max_rowid INTEGER NOT NULL
    );
    INSERT INTO time_marks(minute, min_rowid, max_rowid)
        SELECT received_at / 60000000, MIN(rowid), MAX(rowid) FROM messages GROUP BY 1;
    """,
    # A channel's de-duplication key is the message's ref, which messages_ref indexes: it is
    # looked up there (find_refs) instead of being written a second time, into message_keys
    # and its two indexes. Messages stored before refs existed get theirs from their key.
    """
    UPDATE messages SET ref = k.key FROM message_keys k
        WHERE k.kind = 'dedupe' AND k.message_id = messages.id AND messages.ref IS NULL;
    DELETE FROM message_keys WHERE kind = 'dedupe';
    """,
]


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the migrations this file knows and the database has not seen, in one transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = row[0] or 0
    for number, script in enumerate(MIGRATIONS, start=1):
        if number <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for stmt in filter(str.strip, script.split(";")):
                conn.execute(stmt)
            conn.execute("INSERT INTO schema_version(version) VALUES (?)", (number,))
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise


INSERT_MESSAGE = ("INSERT INTO messages(id, channel, received_at, body, raw, meta, status, ref) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_DELIVERY = ("INSERT INTO deliveries(message_id, channel, destination, target, created_at, "
                   "next_attempt_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
CLAIM = """
UPDATE deliveries SET status = 'in_flight', lease_until = ?, lease_owner = ?, updated_at = ?,
    last_ambiguous = CASE WHEN status = 'in_flight' THEN 1 ELSE last_ambiguous END
WHERE id IN (SELECT id FROM (
    SELECT * FROM (SELECT id, next_attempt_at AS t FROM deliveries
                   WHERE channel = ? AND destination = ? AND status = 'pending'
                     AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?)
    UNION ALL
    SELECT * FROM (SELECT id, next_attempt_at AS t FROM deliveries
                   WHERE channel = ? AND destination = ? AND status = 'in_flight'
                     AND lease_until < ? ORDER BY next_attempt_at, id LIMIT ?)
    ) ORDER BY t, id LIMIT ?)
RETURNING id, message_id, target, attempts, last_ambiguous
"""
RECORD = """
UPDATE deliveries SET status = ?, attempts = attempts + 1, updated_at = ?,
    next_attempt_at = COALESCE(?, next_attempt_at), remote_id = COALESCE(?, remote_id),
    last_error = CASE WHEN ? = 'delivered' THEN last_error ELSE ? END,
    last_error_code = CASE WHEN ? = 'delivered' THEN last_error_code ELSE ? END,
    lease_owner = NULL, lease_until = NULL, last_ambiguous = ?
WHERE id = ? AND status = 'in_flight' AND lease_owner = ?
RETURNING attempts
"""
INSERT_ATTEMPT = ("INSERT INTO attempts(delivery_id, number, started_at, finished_at, outcome, "
                  "remote_id, error, error_code, ambiguous, summary) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
RELEASE = ("UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL, "
           "last_ambiguous = 1, updated_at = ? "
           "WHERE id = ? AND status = 'in_flight' AND lease_owner = ?")
NEXT_DUE = """
SELECT MIN(t) FROM (
    SELECT MIN(next_attempt_at) AS t FROM deliveries
    WHERE channel = ? AND destination = ? AND status = 'pending'
    UNION ALL
    SELECT MIN(lease_until) FROM deliveries
    WHERE channel = ? AND destination = ? AND status = 'in_flight')
"""
REQUEUE = ("UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ? "
           "WHERE id = ? AND status IN ('dead', 'discarded')")
DISCARD = ("UPDATE deliveries SET status = 'discarded', updated_at = ? "
           "WHERE id = ? AND status = 'dead'")
REQUEUE_DEAD = ("UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ? "
                "WHERE status = 'dead' AND (? IS NULL OR channel = ?)")
MESSAGE_CHANNEL = "SELECT channel FROM messages WHERE id = ?"
FIND_KEY = ("SELECT message_id, fingerprint FROM message_keys "
            "WHERE channel = ? AND kind = ? AND key = ? AND expires_at > ?")


def find_keys(conn: sqlite3.Connection, wanted: Sequence[tuple[str, str, str]],
              now: int) -> dict[tuple[str, str, str], tuple[str, str | None]]:
    """The live keys among ``wanted`` (channel, kind, key): key -> (message id, fingerprint)."""
    if len(wanted) == 1:  # the common case: one statement the connection keeps prepared
        channel, kind, key = wanted[0]
        row = conn.execute(FIND_KEY, (channel, kind, key, now)).fetchone()
        return {} if row is None else {wanted[0]: (row[0], row[1])}
    by_ns: dict[tuple[str, str], list[str]] = {}
    for channel, kind, key in wanted:
        by_ns.setdefault((channel, kind), []).append(key)
    out: dict[tuple[str, str, str], tuple[str, str | None]] = {}
    for (channel, kind), keys in by_ns.items():
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            sql = (f"SELECT key, message_id, fingerprint FROM message_keys WHERE channel = ? "
                   f"AND kind = ? AND key IN ({','.join('?' * len(chunk))}) AND expires_at > ?")
            for key, mid, fp in conn.execute(sql, (channel, kind, *chunk, now)):
                out[(channel, kind, key)] = (mid, fp)
    return out


# INDEXED BY: without statistics the planner would walk messages_channel_received instead
FIND_REF = ("SELECT id FROM messages INDEXED BY messages_ref WHERE ref = ? AND channel = ? "
            "AND received_at > ? ORDER BY rowid LIMIT 1")


def find_refs(conn: sqlite3.Connection, wanted: Sequence[tuple[str, str, int]]
              ) -> dict[tuple[str, str, str], tuple[str, None]]:
    """De-duplication keys held by stored messages: of ``wanted`` (channel, ref, received
    after, in µs), those a message of that channel with that ref received after that time
    holds (the earliest such message), as find_keys answers: (channel, 'dedupe', ref) ->
    (message id, None)."""
    if len(wanted) == 1:  # the common case: one statement the connection keeps prepared
        channel, ref, after = wanted[0]
        row = conn.execute(FIND_REF, (ref, channel, after)).fetchone()
        return {} if row is None else {(channel, "dedupe", ref): (row[0], None)}
    by_window: dict[tuple[str, int], list[str]] = {}
    for channel, ref, after in wanted:
        by_window.setdefault((channel, after), []).append(ref)
    out: dict[tuple[str, str, str], tuple[str, None]] = {}
    for (channel, after), refs in by_window.items():
        for start in range(0, len(refs), 500):
            chunk = refs[start:start + 500]
            sql = ("SELECT ref, id FROM messages INDEXED BY messages_ref WHERE ref IN "
                   f"({','.join('?' * len(chunk))}) AND channel = ? AND received_at > ? "
                   "ORDER BY rowid DESC")
            for ref, mid in conn.execute(sql, (*chunk, channel, after)):
                out[(channel, "dedupe", ref)] = (mid, None)  # the earliest is seen last
    return out


PUT_KEY = ("INSERT OR REPLACE INTO message_keys(channel, kind, key, fingerprint, message_id, "
           "expires_at) VALUES (?, ?, ?, ?, ?, ?)")
PRUNE_KEYS = "DELETE FROM message_keys WHERE expires_at <= ?"
BACKLOG = ("SELECT COUNT(*) FROM deliveries WHERE channel = ? "
           "AND status IN ('pending', 'in_flight')")
PING = "INSERT OR REPLACE INTO heartbeat(id, at) VALUES (1, ?)"

_DELIVERY_COLS = ("id, message_id, channel, destination, target, status, attempts, created_at, "
                  "next_attempt_at, updated_at, remote_id, last_error, last_error_code")


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


MESSAGE_COLS = "id, channel, received_at, body, raw, meta, ref, status"


def _message(row: Sequence[Any]) -> Message:
    mid, channel, received, body, raw, meta, ref = row[:7]
    return Message(id=mid, channel=channel, received_at=from_us(received),
                   body=jsoncodec.loads(body), raw=bytes(raw or b""), meta=jsoncodec.loads(meta),
                   ref=ref)


def load_messages(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, Message]:
    out: dict[str, Message] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT {MESSAGE_COLS} FROM messages WHERE id IN ({marks})",
                                chunk):
            out[row[0]] = _message(row)
    return out


def _attempts(conn: sqlite3.Connection, delivery_id: int) -> tuple[AttemptRecord, ...]:
    rows = conn.execute("SELECT number, started_at, finished_at, outcome, remote_id, error, "
                        "error_code, ambiguous, summary FROM attempts WHERE delivery_id = ? "
                        "ORDER BY number", (delivery_id,))
    return tuple(AttemptRecord(number=r[0], started_at=from_us(r[1]), finished_at=from_us(r[2]),
                               outcome=r[3], remote_id=r[4], error=r[5], error_code=r[6],
                               ambiguous=bool(r[7]), summary=r[8]) for r in rows)


def _delivery(conn: sqlite3.Connection, r: Sequence[Any]) -> DeliveryRecord:
    return DeliveryRecord(id=r[0], message_id=r[1], channel=r[2], destination=r[3], target=r[4],
                          status=r[5], attempts=r[6], created_at=from_us(r[7]),
                          next_attempt_at=from_us(r[8]), updated_at=from_us(r[9]), remote_id=r[10],
                          last_error=r[11], last_error_code=r[12], history=_attempts(conn, r[0]))


def load_stored(conn: sqlite3.Connection, message_id: str) -> StoredMessage | None:
    row = conn.execute(f"SELECT {MESSAGE_COLS} FROM messages WHERE id = ?",
                       (message_id,)).fetchone()
    if row is None:
        return None
    return stored_from_row(conn, row)


def stored_from_row(conn: sqlite3.Connection, row: Sequence[Any]) -> StoredMessage:
    """A StoredMessage from a row of MESSAGE_COLS, with its deliveries and their history."""
    message_id = row[0]
    rows = conn.execute(f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE message_id = ? "
                        "ORDER BY id", (message_id,)).fetchall()
    return StoredMessage(message=_message(row), status=row[7],
                         deliveries=[_delivery(conn, r) for r in rows])


def load_delivery(conn: sqlite3.Connection, delivery_id: int) -> DeliveryRecord | None:
    row = conn.execute(f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE id = ?",
                       (delivery_id,)).fetchone()
    return None if row is None else _delivery(conn, row)


def list_stored(conn: sqlite3.Connection, channel: str | None, limit: int,
                before: int | None, since: int | None = None,
                until: int | None = None) -> list[StoredMessage]:
    conds, args = given((("channel = ?", channel), ("received_at < ?", before),
                         ("received_at >= ?", since), ("received_at < ?", until)))
    sql = ("SELECT id FROM messages WHERE " + " AND ".join(["1 = 1", *conds])
           + " ORDER BY received_at DESC, id DESC LIMIT ?")
    args.append(limit)
    out = []
    for (mid,) in conn.execute(sql, args).fetchall():
        stored = load_stored(conn, mid)
        if stored is not None:
            out.append(stored)
    return out


def list_dead(conn: sqlite3.Connection, channel: str | None, limit: int) -> list[DeliveryRecord]:
    sql = f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE status = 'dead'"
    args: list[Any] = []
    if channel is not None:
        sql += " AND channel = ?"
        args.append(channel)
    sql += " ORDER BY updated_at DESC, id DESC LIMIT ?"
    args.append(limit)
    return [_delivery(conn, r) for r in conn.execute(sql, args).fetchall()]


def stats(conn: sqlite3.Connection) -> list[QueueStats]:
    groups: dict[tuple[str, str], dict[str, int]] = {}
    for ch, dest, status, n in conn.execute(
            "SELECT channel, destination, status, COUNT(*) FROM deliveries "
            "GROUP BY channel, destination, status"):
        groups.setdefault((ch, dest), {})[status] = n
    out = []
    for (ch, dest), counts in sorted(groups.items()):
        oldest = conn.execute(
            "SELECT MIN(created_at) FROM deliveries WHERE channel = ? AND destination = ? "
            "AND status IN ('pending', 'in_flight')", (ch, dest)).fetchone()[0]
        out.append(QueueStats(channel=ch, destination=dest, pending=counts.get("pending", 0),
                              in_flight=counts.get("in_flight", 0),
                              delivered=counts.get("delivered", 0), dead=counts.get("dead", 0),
                              oldest_pending_at=from_us(oldest) if oldest is not None else None))
    return out


# -- the dashboard's operations: the audit log and per-minute rates ---------------------------
APPEND_AUDIT = ("INSERT INTO audit(at, actor, role, action, target, detail) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id")
_MINUTE_US = 60_000_000
RATES_RECEIVED = (f"SELECT received_at / {_MINUTE_US} AS m, COUNT(*) FROM messages "
                  "WHERE channel = ? AND received_at >= ? GROUP BY m")
RATES_ATTEMPTS = (f"SELECT a.finished_at / {_MINUTE_US} AS m, "
                  "SUM(a.outcome = 'delivered'), SUM(a.outcome != 'delivered') "
                  "FROM attempts a JOIN deliveries d ON d.id = a.delivery_id "
                  "WHERE d.channel = ? AND a.finished_at >= ? GROUP BY m")


def list_audit(conn: sqlite3.Connection, limit: int, before_id: int | None) -> list[AuditEntry]:
    rows = conn.execute("SELECT id, at, actor, role, action, target, detail FROM audit "
                        "WHERE (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
                        (before_id, before_id, limit)).fetchall()
    return [AuditEntry(id=r[0], at=from_us(r[1]), actor=r[2], role=r[3], action=r[4],
                       target=r[5], detail=r[6]) for r in rows]


def rates(conn: sqlite3.Connection, channel: str, since: int) -> list[RatePoint]:
    counts: dict[int, list[int]] = {}
    for minute, n in conn.execute(RATES_RECEIVED, (channel, since)):
        counts.setdefault(int(minute), [0, 0, 0])[0] = int(n)
    for minute, ok, failed in conn.execute(RATES_ATTEMPTS, (channel, since)):
        c = counts.setdefault(int(minute), [0, 0, 0])
        c[1], c[2] = int(ok), int(failed)
    return [RatePoint(minute=from_us(m * _MINUTE_US), received=c[0], delivered=c[1],
                      failed=c[2]) for m, c in sorted(counts.items())]


# -- search, text index, retention -----------------------------------------------------------
FTS_MIGRATION = 5  # the migration that created the text index
INDEX_TEXT = "INSERT INTO messages_fts(rowid, text) VALUES (?, ?)"


def index_texts(conn: sqlite3.Connection, texts: Sequence[tuple[int, str]]) -> None:
    """Add (message rowid, text) pairs, oldest first, to the text index and move its watermark
    (the highest rowid indexed) to the last of them. The rowids come from the intake that
    wrote the rows: looking each one up by message id here cost more than the index write."""
    conn.executemany(INDEX_TEXT, texts)
    conn.execute("UPDATE fts_state SET indexed_upto = MAX(indexed_upto, ?) WHERE id = 1",
                 (max(rowid for rowid, _ in texts),))


def index_missing(conn: sqlite3.Connection) -> int:
    """Index the messages above the watermark (those stored before the index existed, or whose
    text was still waiting in memory when the engine stopped); return how many."""
    upto = conn.execute("SELECT indexed_upto FROM fts_state WHERE id = 1").fetchone()[0]
    n = 0
    cur = conn.execute("SELECT rowid, body, content_dropped FROM messages WHERE rowid > ? "
                       "ORDER BY rowid", (upto,))
    last = upto
    while rows := cur.fetchmany(2000):
        conn.executemany(INDEX_TEXT, [(r[0], search_text(jsoncodec.loads(r[1])))
                                      for r in rows if not r[2]])
        n += len(rows)
        last = rows[-1][0]
    conn.execute("UPDATE fts_state SET indexed_upto = ? WHERE id = 1", (last,))
    return n


def _unindex(conn: sqlite3.Connection, rows: Sequence[tuple[int, str]]) -> None:
    """Take messages (rowid, body) out of the contentless text index (it needs the text);
    messages above the watermark are not in it yet."""
    upto = conn.execute("SELECT indexed_upto FROM fts_state WHERE id = 1").fetchone()[0]
    conn.executemany(
        "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', ?, ?)",
        [(rowid, search_text(jsoncodec.loads(body))) for rowid, body in rows if rowid <= upto])


# Which rowids hold the messages received in each minute: a search with a time window walks
# only that rowid range of the text index (rowids follow commit order, not receipt order, so
# the range is taken over every minute of the window: exact, never too narrow).
MARK_TIMES = ("INSERT INTO time_marks(minute, min_rowid, max_rowid) VALUES (?, ?, ?) "
              "ON CONFLICT(minute) DO UPDATE SET "
              "min_rowid = MIN(min_rowid, excluded.min_rowid), "
              "max_rowid = MAX(max_rowid, excluded.max_rowid)")


def mark_times(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]], first: int) -> None:
    """Record the rowids of message rows just inserted (their received_at at index 2) by
    minute; ``rows`` went in with one executemany, and ``first`` is the rowid of the first."""
    marks: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        rowid = first + i
        mark = marks.get(row[2] // 60_000_000)
        if mark is None:
            marks[row[2] // 60_000_000] = [rowid, rowid]
        else:
            mark[0] = min(mark[0], rowid)
            mark[1] = max(mark[1], rowid)
    conn.executemany(MARK_TIMES, [(m, lo, hi) for m, (lo, hi) in marks.items()])


def _window(conn: sqlite3.Connection, since: int | None,
            until: int | None) -> tuple[int, int] | None:
    """The rowid range that holds every message received in [since, until); None if none."""
    sql = "SELECT MIN(min_rowid), MAX(max_rowid) FROM time_marks WHERE 1 = 1"
    args: list[Any] = []
    if since is not None:
        sql += " AND minute >= ?"
        args.append(since // 60_000_000)
    if until is not None:
        sql += " AND minute <= ?"
        args.append((until - 1) // 60_000_000)
    lo, hi = conn.execute(sql, args).fetchone()
    return None if lo is None else (lo, hi)


def _having(status: str) -> str:
    """Messages with a delivery in ``status``, driven from the deliveries' partial indexes
    (these states are rare: the message rows are looked up by rowid, not scanned). The
    ``IN`` terms repeat the partial indexes' own WHERE clauses, so the planner can use them."""
    index = ("dd.status IN ('pending', 'in_flight')" if "pending" in status
             else "dd.status IN ('dead', 'discarded')")
    return ("m.rowid IN (SELECT mm.rowid FROM deliveries dd JOIN messages mm "
            f"ON mm.id = dd.message_id WHERE {index} AND dd.status IN ({status}))")


_STATE_SQL = {
    "filtered": "m.status = 'filtered'",
    "dead": _having("'dead'"),
    "pending": (_having("'pending', 'in_flight'") + " AND NOT EXISTS (SELECT 1 FROM "
                "deliveries x WHERE x.message_id = m.id AND x.status = 'dead')"),
    "delivered": ("m.status = 'accepted' AND NOT EXISTS (SELECT 1 FROM deliveries x "
                  "WHERE x.message_id = m.id AND x.status != 'delivered')"),
    "discarded": (_having("'discarded'") + " AND NOT EXISTS (SELECT 1 FROM deliveries x "
                  "WHERE x.message_id = m.id AND x.status != 'discarded')"),
    "partial": (_having("'discarded'") + " AND EXISTS (SELECT 1 FROM deliveries x "
                "WHERE x.message_id = m.id AND x.status = 'delivered') AND NOT EXISTS "
                "(SELECT 1 FROM deliveries x WHERE x.message_id = m.id "
                "AND x.status IN ('pending', 'in_flight', 'dead'))"),
}


def search(conn: sqlite3.Connection, *, channel: str | None, ref: str | None,
           state: str | None, destination: str | None, text: list[str],
           since: int | None, until: int | None, after: int | None,
           limit: int) -> tuple[list[StoredMessage], int | None]:
    """One page of a search, newest (highest rowid) first: (messages, rowid to continue below
    or None)."""
    where: list[str] = []
    args: list[Any] = []
    source, position = "messages m", "m.rowid"
    if text:  # the text index leads, newest first, and stops at the page
        source, position = "messages_fts f JOIN messages m ON m.rowid = f.rowid", "f.rowid"
        where.append("messages_fts MATCH ?")
        args.append(fts_query(text))
    if since is not None or until is not None:
        bounds = _window(conn, since, until)
        if bounds is None:
            return [], None
        where.append(f"{position} BETWEEN ? AND ?")
        args.extend(bounds)
    conds, values = given((("m.channel = ?", channel), ("m.ref = ?", ref),
                           ("m.received_at >= ?", since), ("m.received_at < ?", until),
                           (f"{position} < ?", after)))
    where += conds
    args += values
    if state is not None:
        where.append(_STATE_SQL[state])
    if destination is not None:
        where.append("EXISTS (SELECT 1 FROM deliveries x WHERE x.message_id = m.id "
                     "AND x.destination = ?)")
        args.append(destination)
    sql = (f"SELECT m.rowid, {', '.join('m.' + c for c in MESSAGE_COLS.split(', '))} "
           f"FROM {source}" + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY {position} DESC LIMIT ?")
    args.append(limit + 1)
    rows = conn.execute(sql, args).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    found = [stored_from_row(conn, r[1:]) for r in rows]
    return found, (rows[-1][0] if more and rows else None)


def prune(conn: sqlite3.Connection, channel: str, before: int, content_before: int | None,
          limit: int) -> tuple[int, int]:
    """Retention for one channel (see Store.prune): (deleted, stripped)."""
    doomed = conn.execute(
        "SELECT m.rowid, m.id, m.body, m.content_dropped FROM messages m "
        "WHERE m.channel = ? AND m.received_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries d "
        "WHERE d.message_id = m.id AND d.status IN ('pending', 'in_flight')) "
        "ORDER BY m.received_at LIMIT ?", (channel, before, limit)).fetchall()
    if doomed:
        _unindex(conn, [(r[0], r[2]) for r in doomed if not r[3]])
        ids = [(r[1],) for r in doomed]
        conn.executemany("DELETE FROM attempts WHERE delivery_id IN "
                         "(SELECT id FROM deliveries WHERE message_id = ?)", ids)
        conn.executemany("DELETE FROM deliveries WHERE message_id = ?", ids)
        conn.executemany("DELETE FROM message_keys WHERE message_id = ?", ids)
        conn.executemany("DELETE FROM messages WHERE id = ?", ids)
    stripped = 0
    if content_before is not None:
        rows = conn.execute(
            "SELECT rowid, id, body FROM messages WHERE channel = ? AND received_at < ? "
            "AND content_dropped = 0 ORDER BY received_at LIMIT ?",
            (channel, content_before, limit)).fetchall()
        if rows:
            _unindex(conn, [(r[0], r[2]) for r in rows])
            conn.executemany("UPDATE messages SET body = '{}', raw = NULL, content_dropped = 1 "
                             "WHERE id = ?", [(r[1],) for r in rows])
            stripped = len(rows)
    return len(doomed), stripped
