"""SQL text, schema migrations and row loaders of the PostgreSQL store.

Times are ``timestamptz`` (microsecond resolution, exact round trip); every connection runs with
``TimeZone=UTC`` so they come back as UTC-aware datetimes. Times the store sets itself (delivery
creation and due times, leases, key expiry) come from the database's clock, ``now()``, which is
the one clock every engine instance sharing the database agrees on. Bodies and meta are the text
of :mod:`alertpipe.jsoncodec`, kept verbatim so ``Decimal`` amounts round-trip exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

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

Conn = AsyncConnection[Any]

MIGRATIONS: list[str] = [
    """
    CREATE TABLE messages (
        id text PRIMARY KEY,
        channel text NOT NULL,
        received_at timestamptz NOT NULL,
        body text NOT NULL,
        raw bytea,
        meta text NOT NULL,
        status text NOT NULL
    );
    CREATE INDEX messages_channel_received ON messages (channel, received_at);
    CREATE INDEX messages_received ON messages (received_at);
    CREATE TABLE deliveries (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id text NOT NULL REFERENCES messages (id),
        channel text NOT NULL,
        destination text NOT NULL,
        target text,
        status text NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'in_flight', 'delivered', 'dead', 'discarded')),
        attempts integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL,
        next_attempt_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        lease_until timestamptz,
        lease_owner text,
        remote_id text,
        last_error text,
        last_error_code text,
        last_ambiguous boolean NOT NULL DEFAULT false
    );
    CREATE INDEX deliveries_open ON deliveries (channel, destination, next_attempt_at, id)
        WHERE status IN ('pending', 'in_flight');
    CREATE INDEX deliveries_message ON deliveries (message_id);
    CREATE INDEX deliveries_dead ON deliveries (updated_at, id) WHERE status = 'dead';
    CREATE TABLE attempts (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id bigint NOT NULL REFERENCES deliveries (id),
        number integer NOT NULL,
        started_at timestamptz NOT NULL,
        finished_at timestamptz NOT NULL,
        outcome text NOT NULL,
        remote_id text,
        error text,
        error_code text,
        ambiguous boolean NOT NULL DEFAULT false
    );
    CREATE INDEX attempts_delivery ON attempts (delivery_id, number);
    CREATE INDEX attempts_finished ON attempts (finished_at);
    CREATE TABLE message_keys (
        channel text NOT NULL,
        kind text NOT NULL,
        key text NOT NULL,
        fingerprint text,
        message_id text NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (channel, kind, key)
    );
    CREATE INDEX message_keys_expiry ON message_keys (expires_at);
    CREATE TABLE heartbeat (id integer PRIMARY KEY, at timestamptz NOT NULL);
    CREATE TABLE audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(),
        actor text NOT NULL,
        role text NOT NULL,
        action text NOT NULL,
        target text NOT NULL,
        detail text
    );
    """,
]


async def migrate(conn: Conn) -> int:
    """Apply the migrations this file knows and the database has not seen, in one transaction;
    return how many were applied.

    A transaction-scoped advisory lock keyed on the current schema serialises instances that
    start at once: the second waits, then finds the schema current and applies nothing.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('alertpipe.migrate'), "
                           "hashtext(coalesce(current_schema(), '')))")
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                           "version integer PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        row = await (await conn.execute("SELECT max(version) FROM schema_version")).fetchone()
        current = (row[0] if row else None) or 0
        applied = 0
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            await conn.execute(script)  # several statements: no parameters, so that is allowed
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
            applied += 1
        return applied


# -- intake (run inside the group-commit transaction) -----------------------------------------
INSERT_MESSAGE = """
WITH m AS (
    INSERT INTO messages (id, channel, received_at, body, raw, meta, status)
    VALUES (%(id)s, %(channel)s, %(received_at)s, %(body)s, %(raw)s, %(meta)s, %(status)s)
    RETURNING id, channel)
INSERT INTO deliveries (message_id, channel, destination, target, created_at, next_attempt_at,
                        updated_at)
SELECT m.id, m.channel, d.destination, d.target, now(), now(), now()
FROM m, unnest(%(destinations)s::text[], %(targets)s::text[])
    WITH ORDINALITY AS d (destination, target, ord)
ORDER BY d.ord
"""
# Take a key unless a live one holds it: a new key is inserted, an expired one taken over. A
# concurrent transaction holding the same key makes this wait for its outcome. No row returned
# means the key is held; FIND_KEY (a new statement, so a new snapshot) then says by whom.
TAKE_KEY = """
INSERT INTO message_keys AS k (channel, kind, key, fingerprint, message_id, expires_at)
VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s))
ON CONFLICT (channel, kind, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, message_id = EXCLUDED.message_id,
        expires_at = EXCLUDED.expires_at
    WHERE k.expires_at <= now()
RETURNING message_id
"""
FIND_KEY = ("SELECT message_id, fingerprint FROM message_keys "
            "WHERE channel = %s AND kind = %s AND key = %s")
DROP_KEYS = "DELETE FROM message_keys WHERE channel = %s AND message_id = %s"
PRUNE_KEYS = "DELETE FROM message_keys WHERE expires_at <= now()"
NOTIFY = ("SELECT pg_notify(%s, json_build_array(c, d)::text) "
          "FROM unnest(%s::text[], %s::text[]) AS w (c, d)")


async def notify(conn: Conn, notify_channel: str, wake: Iterable[Sequence[str]]) -> None:
    """NOTIFY ``notify_channel`` once per (channel, destination) of ``wake``; PostgreSQL sends
    the notifications when the transaction commits, and drops them if it rolls back."""
    pairs = sorted({(c, d) for c, d in wake})
    if pairs:
        await conn.execute(NOTIFY, (notify_channel, [c for c, _ in pairs],
                                    [d for _, d in pairs]))

# -- workers ----------------------------------------------------------------------------------
CLAIM = """
WITH due AS (
    SELECT id FROM deliveries
    WHERE channel = %(channel)s AND destination = %(destination)s
      AND status IN ('pending', 'in_flight')
      AND ((status = 'pending' AND next_attempt_at <= now())
           OR (status = 'in_flight' AND lease_until < now()))
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED),
claimed AS (
    UPDATE deliveries d
    SET status = 'in_flight', lease_owner = %(owner)s, updated_at = now(),
        lease_until = now() + make_interval(secs => %(lease)s),
        last_ambiguous = (d.status = 'in_flight' OR d.last_ambiguous)
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.message_id, d.target, d.attempts, d.last_ambiguous, d.next_attempt_at)
SELECT c.id, c.target, c.attempts, c.last_ambiguous,
       m.id, m.channel, m.received_at, m.body, m.raw, m.meta
FROM claimed c JOIN messages m ON m.id = c.message_id
ORDER BY c.next_attempt_at, c.id
"""
# One statement per result: the lease-checked update and, if it applied, the attempt row.
RECORD = """
WITH u AS (
    UPDATE deliveries
    SET status = %(status)s, attempts = attempts + 1, updated_at = %(finished_at)s,
        next_attempt_at = COALESCE(%(next_attempt_at)s, next_attempt_at),
        remote_id = COALESCE(%(remote_id)s, remote_id),
        last_error = CASE WHEN %(outcome)s = 'delivered' THEN last_error ELSE %(error)s END,
        last_error_code = CASE WHEN %(outcome)s = 'delivered' THEN last_error_code
                               ELSE %(error_code)s END,
        lease_owner = NULL, lease_until = NULL, last_ambiguous = %(ambiguous)s
    WHERE id = %(delivery_id)s AND status = 'in_flight' AND lease_owner = %(owner)s
    RETURNING id, attempts)
INSERT INTO attempts (delivery_id, number, started_at, finished_at, outcome, remote_id, error,
                      error_code, ambiguous)
SELECT id, attempts, %(started_at)s::timestamptz, %(finished_at)s::timestamptz,
       %(outcome)s::text, %(remote_id)s::text, %(error)s::text, %(error_code)s::text,
       %(ambiguous)s::boolean
FROM u
"""
RELEASE = ("UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL, "
           "last_ambiguous = true, updated_at = now() "
           "WHERE id = ANY(%s) AND status = 'in_flight' AND lease_owner = %s "
           "RETURNING channel, destination")
NEXT_DUE = """
SELECT least(
    (SELECT min(next_attempt_at) FROM deliveries
     WHERE channel = %(channel)s AND destination = %(destination)s AND status = 'pending'),
    (SELECT min(lease_until) FROM deliveries
     WHERE channel = %(channel)s AND destination = %(destination)s AND status = 'in_flight'))
"""
# After the listener reconnects: every destination with work due now (its notifications may
# have been sent while nobody listened).
DUE_DESTINATIONS = ("SELECT DISTINCT channel, destination FROM deliveries "
                    "WHERE status = 'pending' AND next_attempt_at <= now()")

# -- operators --------------------------------------------------------------------------------
REQUEUE = ("UPDATE deliveries SET status = 'pending', next_attempt_at = now(), updated_at = now() "
           "WHERE id = %s AND status IN ('dead', 'discarded') RETURNING channel, destination")
DISCARD = ("UPDATE deliveries SET status = 'discarded', updated_at = now() "
           "WHERE id = %s AND status = 'dead'")
REQUEUE_DEAD = ("UPDATE deliveries SET status = 'pending', next_attempt_at = now(), "
                "updated_at = now() WHERE status = 'dead' "
                "AND (%(channel)s::text IS NULL OR channel = %(channel)s) "
                "RETURNING channel, destination")
MESSAGE_CHANNEL = "SELECT channel FROM messages WHERE id = %s"
ADD_DELIVERIES = """
INSERT INTO deliveries (message_id, channel, destination, target, created_at, next_attempt_at,
                        updated_at)
SELECT %(message_id)s, %(channel)s, d.destination, d.target, now(), now(), now()
FROM unnest(%(destinations)s::text[], %(targets)s::text[])
    WITH ORDINALITY AS d (destination, target, ord)
ORDER BY d.ord
RETURNING id
"""
BACKLOG = ("SELECT count(*) FROM deliveries WHERE channel = %s "
           "AND status IN ('pending', 'in_flight')")
PING = ("INSERT INTO heartbeat (id, at) VALUES (1, now()) "
        "ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at")
APPEND_AUDIT = ("INSERT INTO audit (actor, role, action, target, detail) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id")

_MESSAGE_COLS = "id, channel, received_at, body, raw, meta"
_DELIVERY_COLS = ("id, message_id, channel, destination, target, status, attempts, created_at, "
                  "next_attempt_at, updated_at, remote_id, last_error, last_error_code")


def message_from_row(row: Sequence[Any]) -> Message:
    """A :class:`Message` from ``id, channel, received_at, body, raw, meta``."""
    mid, channel, received, body, raw, meta = row[:6]
    return Message(id=mid, channel=channel, received_at=received, body=jsoncodec.loads(body),
                   raw=bytes(raw or b""), meta=jsoncodec.loads(meta))


async def load_stored(conn: Conn, ids: Sequence[str]) -> list[StoredMessage]:
    """The messages ``ids`` (those that exist, in that order) with their deliveries and
    attempts: three queries whatever the number of messages."""
    if not ids:
        return []
    cur = await conn.execute(f"SELECT {_MESSAGE_COLS}, status FROM messages WHERE id = ANY(%s)",
                             (list(ids),))
    messages = {r[0]: r for r in await cur.fetchall()}
    cur = await conn.execute(f"SELECT {_DELIVERY_COLS} FROM deliveries "
                             "WHERE message_id = ANY(%s) ORDER BY id", (list(messages),))
    by_message: dict[str, list[DeliveryRecord]] = {}
    for d in await _deliveries(conn, await cur.fetchall()):
        by_message.setdefault(d.message_id, []).append(d)
    return [StoredMessage(message=message_from_row(messages[i]), status=messages[i][6],
                          deliveries=by_message.get(i, []))
            for i in ids if i in messages]


async def _deliveries(conn: Conn, rows: Sequence[Sequence[Any]]) -> list[DeliveryRecord]:
    """Delivery records from ``_DELIVERY_COLS`` rows, each with its attempt history."""
    if not rows:
        return []
    cur = await conn.execute(
        "SELECT delivery_id, number, started_at, finished_at, outcome, remote_id, error, "
        "error_code, ambiguous FROM attempts WHERE delivery_id = ANY(%s) "
        "ORDER BY delivery_id, number", ([r[0] for r in rows],))
    history: dict[int, list[AttemptRecord]] = {}
    for a in await cur.fetchall():
        history.setdefault(a[0], []).append(AttemptRecord(
            number=a[1], started_at=a[2], finished_at=a[3], outcome=a[4], remote_id=a[5],
            error=a[6], error_code=a[7], ambiguous=a[8]))
    return [DeliveryRecord(id=r[0], message_id=r[1], channel=r[2], destination=r[3],
                           target=r[4], status=r[5], attempts=r[6], created_at=r[7],
                           next_attempt_at=r[8], updated_at=r[9], remote_id=r[10],
                           last_error=r[11], last_error_code=r[12],
                           history=tuple(history.get(r[0], ())))
            for r in rows]


async def load_delivery(conn: Conn, delivery_id: int) -> DeliveryRecord | None:
    cur = await conn.execute(f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE id = %s",
                             (delivery_id,))
    found = await _deliveries(conn, await cur.fetchall())
    return found[0] if found else None


async def list_stored(conn: Conn, channel: str | None, limit: int, before: datetime | None,
                      since: datetime | None, until: datetime | None) -> list[StoredMessage]:
    sql = "SELECT id FROM messages WHERE true"
    args: list[Any] = []
    if channel is not None:
        sql += " AND channel = %s"
        args.append(channel)
    if before is not None:
        sql += " AND received_at < %s"
        args.append(before)
    if since is not None:
        sql += " AND received_at >= %s"
        args.append(since)
    if until is not None:
        sql += " AND received_at < %s"
        args.append(until)
    sql += " ORDER BY received_at DESC, id DESC LIMIT %s"
    args.append(limit)
    cur = await conn.execute(sql, args)
    return await load_stored(conn, [r[0] for r in await cur.fetchall()])


async def list_dead(conn: Conn, channel: str | None, limit: int) -> list[DeliveryRecord]:
    cur = await conn.execute(
        f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE status = 'dead' "
        "AND (%(channel)s::text IS NULL OR channel = %(channel)s) "
        "ORDER BY updated_at DESC, id DESC LIMIT %(limit)s",
        {"channel": channel, "limit": limit})
    return await _deliveries(conn, await cur.fetchall())


async def stats(conn: Conn) -> list[QueueStats]:
    cur = await conn.execute(
        "SELECT channel, destination, "
        "count(*) FILTER (WHERE status = 'pending'), "
        "count(*) FILTER (WHERE status = 'in_flight'), "
        "count(*) FILTER (WHERE status = 'delivered'), "
        "count(*) FILTER (WHERE status = 'dead'), "
        "min(created_at) FILTER (WHERE status IN ('pending', 'in_flight')) "
        "FROM deliveries GROUP BY channel, destination ORDER BY channel, destination")
    return [QueueStats(channel=r[0], destination=r[1], pending=r[2], in_flight=r[3],
                       delivered=r[4], dead=r[5], oldest_pending_at=r[6])
            for r in await cur.fetchall()]


async def list_audit(conn: Conn, limit: int, before_id: int | None) -> list[AuditEntry]:
    cur = await conn.execute(
        "SELECT id, at, actor, role, action, target, detail FROM audit "
        "WHERE (%(before)s::bigint IS NULL OR id < %(before)s) ORDER BY id DESC LIMIT %(limit)s",
        {"before": before_id, "limit": limit})
    return [AuditEntry(id=r[0], at=r[1], actor=r[2], role=r[3], action=r[4], target=r[5],
                       detail=r[6]) for r in await cur.fetchall()]


RATES = """
WITH received AS (
    SELECT date_trunc('minute', received_at) AS minute, count(*) AS n FROM messages
    WHERE channel = %(channel)s AND received_at >= %(since)s GROUP BY 1),
finished AS (
    SELECT date_trunc('minute', a.finished_at) AS minute,
           count(*) FILTER (WHERE a.outcome = 'delivered') AS ok,
           count(*) FILTER (WHERE a.outcome <> 'delivered') AS failed
    FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
    WHERE d.channel = %(channel)s AND a.finished_at >= %(since)s GROUP BY 1)
SELECT minute, coalesce(r.n, 0), coalesce(f.ok, 0), coalesce(f.failed, 0)
FROM received r FULL JOIN finished f USING (minute)
ORDER BY minute
"""


async def rates(conn: Conn, channel: str, since: datetime) -> list[RatePoint]:
    cur = await conn.execute(RATES, {"channel": channel, "since": since})
    return [RatePoint(minute=r[0], received=r[1], delivered=r[2], failed=r[3])
            for r in await cur.fetchall()]
