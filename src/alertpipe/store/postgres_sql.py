"""SQL text, schema migrations and row loaders of the PostgreSQL store.

Times are ``timestamptz`` (microsecond resolution, exact round trip); every connection runs with
``TimeZone=UTC`` so they come back as UTC-aware datetimes. Times the store sets itself (delivery
creation and due times, leases, key expiry) come from the database's clock, ``now()``, which is
the one clock every engine instance sharing the database agrees on. Bodies and meta are the text
of :mod:`alertpipe.jsoncodec`, kept verbatim so ``Decimal`` amounts round-trip exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
from alertpipe.store.search import _WORD as WORD  # one definition of a word, search's
from alertpipe.store.search import given, search_text

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
    # 2: the message log. ``seq`` is the storage order searches page by (existing messages
    # numbered by arrival); ``search_words`` the message's words (see search_words()), matched
    # by prefix through a GIN index; NULL only on messages stored before this migration, until
    # PostgresStore fills them in (fill_search_words). ``content_dropped``: retention took the
    # body and raw bytes.
    """
    ALTER TABLE messages ADD COLUMN ref text;
    ALTER TABLE messages ADD COLUMN search_words tsvector;
    ALTER TABLE messages ADD COLUMN content_dropped boolean NOT NULL DEFAULT false;
    ALTER TABLE messages ADD COLUMN seq bigint;
    UPDATE messages m SET seq = o.n
    FROM (SELECT id, row_number() OVER (ORDER BY received_at, id) AS n FROM messages) o
    WHERE m.id = o.id;
    ALTER TABLE messages ALTER COLUMN seq SET NOT NULL;
    ALTER TABLE messages ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY;
    SELECT setval(pg_get_serial_sequence('messages', 'seq'),
                  (SELECT count(*) + 1 FROM messages), false);
    CREATE UNIQUE INDEX messages_seq ON messages (seq);
    DROP INDEX messages_received;
    CREATE INDEX messages_received ON messages (received_at) INCLUDE (seq);
    CREATE INDEX messages_ref ON messages (ref) WHERE ref IS NOT NULL;
    CREATE INDEX messages_search ON messages USING gin (search_words);
    CREATE INDEX messages_unindexed ON messages (seq) WHERE search_words IS NULL;
    CREATE INDEX deliveries_settled_badly ON deliveries (message_id)
        WHERE status IN ('dead', 'discarded');
    ALTER TABLE attempts ADD COLUMN summary text;
    CREATE TABLE content_marks (
        channel text PRIMARY KEY,
        below timestamptz NOT NULL,
        upto_seq bigint NOT NULL
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
    INSERT INTO messages (id, channel, received_at, body, raw, meta, status, ref, search_words)
    VALUES (%(id)s, %(channel)s, %(received_at)s, %(body)s, %(raw)s, %(meta)s, %(status)s,
            %(ref)s, array_to_tsvector(%(words)s::text[]))
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
       m.id, m.channel, m.received_at, m.body, m.raw, m.meta, m.ref
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
                      error_code, ambiguous, summary)
SELECT id, attempts, %(started_at)s::timestamptz, %(finished_at)s::timestamptz,
       %(outcome)s::text, %(remote_id)s::text, %(error)s::text, %(error_code)s::text,
       %(ambiguous)s::boolean, %(summary)s::text
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

_MESSAGE_COLS = "id, channel, received_at, body, raw, meta, ref"
_DELIVERY_COLS = ("id, message_id, channel, destination, target, status, attempts, created_at, "
                  "next_attempt_at, updated_at, remote_id, last_error, last_error_code")


def message_from_row(row: Sequence[Any]) -> Message:
    """A :class:`Message` from ``id, channel, received_at, body, raw, meta, ref``."""
    mid, channel, received, body, raw, meta, ref = row[:7]
    return Message(id=mid, channel=channel, received_at=received, body=jsoncodec.loads(body),
                   raw=bytes(raw or b""), meta=jsoncodec.loads(meta), ref=ref)


async def load_stored(conn: Conn, ids: Sequence[str]) -> list[StoredMessage]:
    """The messages ``ids`` (those that exist, in that order) with their deliveries and
    attempts: three queries whatever the number of messages."""
    if not ids:
        return []
    cur = await conn.execute(f"SELECT {_MESSAGE_COLS}, status FROM messages WHERE id = ANY(%s)",
                             (list(ids),))
    messages = {r[0]: r for r in await cur.fetchall()}
    return await _stored(conn, [messages[i] for i in ids if i in messages])


async def _stored(conn: Conn, rows: Sequence[Sequence[Any]]) -> list[StoredMessage]:
    """Stored messages from rows of ``_MESSAGE_COLS, status``, in that order, with their
    deliveries and attempts (two queries)."""
    if not rows:
        return []
    cur = await conn.execute(f"SELECT {_DELIVERY_COLS} FROM deliveries "
                             "WHERE message_id = ANY(%s) ORDER BY id", ([r[0] for r in rows],))
    by_message: dict[str, list[DeliveryRecord]] = {}
    for d in await _deliveries(conn, await cur.fetchall()):
        by_message.setdefault(d.message_id, []).append(d)
    return [StoredMessage(message=message_from_row(r), status=r[7],
                          deliveries=by_message.get(r[0], [])) for r in rows]


async def _deliveries(conn: Conn, rows: Sequence[Sequence[Any]]) -> list[DeliveryRecord]:
    """Delivery records from ``_DELIVERY_COLS`` rows, each with its attempt history."""
    if not rows:
        return []
    cur = await conn.execute(
        "SELECT delivery_id, number, started_at, finished_at, outcome, remote_id, error, "
        "error_code, ambiguous, summary FROM attempts WHERE delivery_id = ANY(%s) "
        "ORDER BY delivery_id, number", ([r[0] for r in rows],))
    history: dict[int, list[AttemptRecord]] = {}
    for a in await cur.fetchall():
        history.setdefault(a[0], []).append(AttemptRecord(
            number=a[1], started_at=a[2], finished_at=a[3], outcome=a[4], remote_id=a[5],
            error=a[6], error_code=a[7], ambiguous=a[8], summary=a[9]))
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
    conds, args = given((("channel = %s", channel), ("received_at < %s", before),
                         ("received_at >= %s", since), ("received_at < %s", until)))
    sql = ("SELECT id FROM messages WHERE " + " AND ".join(["true", *conds])
           + " ORDER BY received_at DESC, id DESC LIMIT %s")
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


# -- search, retention ------------------------------------------------------------------------
# A message's searchable words are stored as a tsvector whose lexemes are exactly the words of
# search.search_text(body), case-folded: array_to_tsvector takes them verbatim (no parser, no
# stemming, no stop words), and a search is a tsquery of quoted prefix lexemes, 'jan':* &
# 'doe':*, which the GIN index answers as "every word is a prefix of one of the lexemes": the
# semantics of search.matches, computed in Python once per message, at enqueue.
MAX_LEXEME = 255  # characters kept of a word (PostgreSQL's limit is 2047 bytes a lexeme)
MAX_TEXT = 200_000  # characters of distinct words indexed per message (a tsvector < 1 MB)
INDEX_BATCH = 1000


def search_words(body: Mapping[str, Any]) -> list[str]:
    """The distinct case-folded words of a body's searchable text, in order of appearance."""
    found = dict.fromkeys(w.casefold()[:MAX_LEXEME] for w in WORD.findall(search_text(body)))
    if sum(map(len, found)) <= MAX_TEXT:
        return list(found)
    out: list[str] = []
    size = 0
    for w in found:
        size += len(w)
        if size > MAX_TEXT:
            break
        out.append(w)
    return out


def tsquery(wanted: Sequence[str]) -> str:
    """Search words (from search.words) as a tsquery: each a quoted prefix, all required."""
    return " & ".join("'" + w[:MAX_LEXEME].replace("\\", "\\\\").replace("'", "''") + "':*"
                      for w in wanted)


# The state of a message (search.message_state) from its deliveries. "filtered" messages were
# stored without deliveries (status 'filtered'); a replay may have added some since.
_HAS = "EXISTS (SELECT 1 FROM deliveries x WHERE x.message_id = m.id AND x.status {})"
_HAS_NO = "NOT " + _HAS
STATE_SQL = {
    "filtered": ("m.status = 'filtered' AND NOT EXISTS "
                 "(SELECT 1 FROM deliveries x WHERE x.message_id = m.id)"),
    "dead": _HAS.format("= 'dead'"),
    "pending": _HAS.format("IN ('pending', 'in_flight')") + " AND " + _HAS_NO.format("= 'dead'"),
    "delivered": _HAS.format("= 'delivered'") + " AND " + _HAS_NO.format("<> 'delivered'"),
    "discarded": _HAS.format("= 'discarded'") + " AND " + _HAS_NO.format("<> 'discarded'"),
    "partial": (_HAS.format("= 'delivered'") + " AND " + _HAS.format("= 'discarded'") + " AND "
                + _HAS_NO.format("IN ('pending', 'in_flight', 'dead')")),
}


# How a search runs. A search wants the newest few messages that match, in ``seq`` order, and
# which plan finds them fastest depends on how many match: for a common word, walking ``seq``
# backwards finds a page at once; for a rare one, that walk reads the whole table, while the GIN
# index (a bitmap of the few matches, then a sort) answers in a millisecond. PostgreSQL's
# planner cannot tell them apart for prefixes: it estimates 'a-':* (every order id) or
# '+1555':* (every phone) at a few rows, and then builds a bitmap of a million. Nor does it know
# that ``seq`` follows ``received_at``, so for a time window long past it walks back through
# everything newer. So the store measures instead:
#   1. walk the newest WINDOW messages (below the cursor) backwards: a page is often there;
#   2. if the text is rare there (at that rate, at most CANDIDATES matches in the rest), take
#      the matches further down through bitmap index scans only (the GIN index, with the time
#      or channel index if they help), at most CANDIDATES of them, and sort those: the answer
#      when there are fewer;
#   3. else leave the rest to the planner, with the text kept away from the GIN index
#      (ts_match_vq is @@ that no index matches) and, for a time window, with the range of seq
#      the window covers (its min and max, read from the time index, which includes seq).
# A search by ``ref`` (an index, a row or two per key), or with neither text nor a time bound,
# is the planner's alone: its estimates are good there. The steps share one REPEATABLE READ
# snapshot, so they see the same messages.
WINDOW = 5_000
CANDIDATES = 20_000
_ROW_COLS = ", ".join("m." + c for c in _MESSAGE_COLS.split(", ")) + ", m.status, m.seq"
_TEXT = "m.search_words @@ %s::tsquery"
_TEXT_NO_INDEX = "ts_match_vq(m.search_words, %s::tsquery)"


async def _rows(conn: Conn, source: str, where: Sequence[str], args: Sequence[Any],
                limit: int) -> list[tuple[Any, ...]]:
    """Rows of ``_MESSAGE_COLS, status, seq`` of ``source`` (aliased m) matching ``where``,
    highest ``seq`` first. ``args`` fill the placeholders of ``source``, then of ``where``."""
    cur = await conn.execute(
        f"SELECT {_ROW_COLS} FROM {source}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY m.seq DESC LIMIT %s", [*args, limit])
    return await cur.fetchall()


async def search(conn: Conn, *, channel: str | None, ref: str | None, state: str | None,
                 destination: str | None, text: Sequence[str], since: datetime | None,
                 until: datetime | None, after: int | None,
                 limit: int) -> tuple[list[StoredMessage], int | None]:
    """One page of a search, newest (highest ``seq``) first: (messages, the ``seq`` to continue
    below, or None on the last page)."""
    where, args = given((("m.channel = %s", channel), ("m.ref = %s", ref),
                         ("m.received_at >= %s", since), ("m.received_at < %s", until)))
    window = [c for c in where if c.startswith("m.received_at")]
    window_args = [v for v in (since, until) if v is not None]
    query = tsquery(text) if text else None
    if query is not None:
        where.append(_TEXT)
        args.append(query)
    if state is not None:
        where.append(STATE_SQL[state])
    if destination is not None:
        where.append("EXISTS (SELECT 1 FROM deliveries x WHERE x.message_id = m.id "
                     "AND x.destination = %s)")
        args.append(destination)
    want = limit + 1
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        if ref is not None or not (query or window):
            below = [] if after is None else ["m.seq < %s"]
            rows = await _rows(conn, "messages m", [*where, *below],
                               [*args, *([] if after is None else [after])], want)
        else:
            rows = await _measured(conn, where, args, query, window, window_args, after, want)
        more = len(rows) > limit
        rows = rows[:limit]
        found = await _stored(conn, rows)
    return found, (int(rows[-1][8]) if more and rows else None)


async def _measured(conn: Conn, where: list[str], args: list[Any], query: str | None,
                    window: list[str], window_args: list[Any], after: int | None,
                    want: int) -> list[tuple[Any, ...]]:
    """The steps above: the first ``want`` matches below ``after``, highest ``seq`` first.
    ``window`` and ``window_args`` are the time conditions of ``where`` and their values."""
    top = ("" if after is None else " WHERE seq < %s")
    top_args = [] if after is None else [after]
    # The LIMIT keeps the conditions out of the subquery: the walk is the plan.
    rows = await _rows(conn, f"(SELECT * FROM messages{top} ORDER BY seq DESC "
                       f"LIMIT {WINDOW}) m", where, [*top_args, *args], want)
    if len(rows) >= want:
        return rows
    hits = "count(*) FILTER (WHERE w.search_words @@ %s::tsquery)" if query else "0"
    cur = await conn.execute(
        f"SELECT min(w.seq), count(*), {hits} FROM (SELECT seq, search_words FROM messages{top} "
        f"ORDER BY seq DESC LIMIT {WINDOW}) w", [*([query] if query else []), *top_args])
    row = await cur.fetchone()
    assert row is not None  # an aggregate: one row
    lowest, seen, text_hits = row
    if seen < WINDOW:  # the window held every message there is
        return rows
    rest = want - len(rows)
    if query is not None and text_hits * lowest <= CANDIDATES * WINDOW:  # a rare text
        await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off")
        cur = await conn.execute(f"SELECT m.seq FROM messages m WHERE {' AND '.join(where)} "
                                 f"AND m.seq < %s LIMIT {CANDIDATES}", [*args, lowest])
        seqs = [r[0] for r in await cur.fetchall()]
        await conn.execute("RESET enable_seqscan; RESET enable_indexscan")
        if len(seqs) < CANDIDATES:
            chosen = sorted(seqs, reverse=True)[:rest]
            return rows + (await _rows(conn, "messages m", ["m.seq = ANY(%s::bigint[])"],
                                       [chosen], rest) if chosen else [])
    where = [_TEXT_NO_INDEX if c == _TEXT else c for c in where]
    bounds: list[str] = ["m.seq < %s"]
    bound_args: list[Any] = [lowest]
    if window:  # where the time window lies in seq order, from the time index alone (count(*)
        # keeps the planner from looking for min and max by walking seq)
        cur = await conn.execute(
            "SELECT min(m.seq), max(m.seq), count(*) FROM messages m WHERE "
            + " AND ".join([*window, "m.seq < %s"]), [*window_args, lowest])
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return rows
        bounds += ["m.seq >= %s", "m.seq <= %s"]
        bound_args += [row[0], row[1]]
    return rows + await _rows(conn, "messages m", [*where, *bounds], [*args, *bound_args],
                              rest)


# Retention. Candidates are locked (FOR UPDATE also holds off a replay: its foreign-key check
# needs a KEY SHARE lock on the message); then their deliveries, in a new statement and so a new
# snapshot, to see the latest status of each: a delivery requeued since the first look keeps its
# message. The delete goes in one statement (the foreign keys are checked at its end).
PRUNE_CANDIDATES = """
SELECT m.id FROM messages m
WHERE m.channel = %(channel)s AND m.received_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.message_id = m.id
                  AND d.status IN ('pending', 'in_flight'))
ORDER BY m.received_at
LIMIT %(limit)s
FOR UPDATE OF m SKIP LOCKED
"""
PRUNE_LOCK_DELIVERIES = ("SELECT message_id, status FROM deliveries "
                         "WHERE message_id = ANY(%s) ORDER BY id FOR UPDATE")
PRUNE_DELETE = """
WITH a AS (DELETE FROM attempts WHERE delivery_id IN
               (SELECT id FROM deliveries WHERE message_id = ANY(%(ids)s))),
d AS (DELETE FROM deliveries WHERE message_id = ANY(%(ids)s)),
k AS (DELETE FROM message_keys WHERE channel = %(channel)s AND message_id = ANY(%(ids)s))
DELETE FROM messages WHERE id = ANY(%(ids)s)
"""
# Dropping content. Stripped messages stay, so a plain "oldest without content_dropped" scan
# would walk every message stripped before on each call (slower every hour, and quadratic over
# the slices of a first run); a partial index of the unstripped would cost every enqueue. So
# each channel keeps a mark in content_marks: every message of the channel received before
# ``below`` and stored at or before ``upto_seq`` has no content. A call looks at messages from
# ``below`` on (the channel's time index) and at those stored since ``upto_seq`` (the seq index:
# a message that arrived late, with an old receive time), and moves the mark up to where it got.
# One stripper per channel at a time (an advisory lock), so the mark it reads is the latest. (A
# message whose insert is still uncommitted as the mark moves past its receive time would be
# left out; intake stores a message moments after receiving it, so only a content_before
# moments ago could meet one.)
STRIP_LOCK = ("SELECT pg_advisory_xact_lock(hashtext('alertpipe.strip'), "
              "hashtext(coalesce(current_schema(), '') || '/' || %s))")
STRIP_MARK = ("SELECT k.below, k.upto_seq, s.top FROM (SELECT coalesce(max(seq), 0) AS top "
              "FROM messages) s LEFT JOIN content_marks k ON k.channel = %s")
_STRIP = """
WITH c AS (
    SELECT id, received_at FROM ({candidates}) u
    ORDER BY received_at
    LIMIT %(limit)s),
s AS (
    UPDATE messages m
    SET body = '{{}}', raw = NULL, search_words = ''::tsvector, content_dropped = true
    FROM c WHERE m.id = c.id AND NOT m.content_dropped
    RETURNING 1)
SELECT (SELECT count(*) FROM c), (SELECT max(received_at) FROM c), (SELECT count(*) FROM s)
"""
_SINCE_MARK = """
(SELECT id, received_at FROM messages
 WHERE channel = %(channel)s AND received_at >= %(below)s AND received_at < %(before)s
   AND NOT content_dropped
 ORDER BY received_at LIMIT %(limit)s)
UNION ALL
(SELECT id, received_at FROM messages
 WHERE seq > %(upto)s AND channel = %(channel)s AND received_at < %(below)s
   AND received_at < %(before)s AND NOT content_dropped)
"""
_UNMARKED = """
SELECT id, received_at FROM messages
WHERE channel = %(channel)s AND received_at < %(before)s AND NOT content_dropped
"""
STRIP_MARKED = _STRIP.format(candidates=_SINCE_MARK)
STRIP_UNMARKED = _STRIP.format(candidates=_UNMARKED)
SET_MARK = ("INSERT INTO content_marks (channel, below, upto_seq) VALUES (%s, %s, %s) "
            "ON CONFLICT (channel) DO UPDATE SET below = EXCLUDED.below, "
            "upto_seq = EXCLUDED.upto_seq")


async def strip(conn: Conn, channel: str, before: datetime, limit: int) -> int:
    """Drop the content of up to ``limit`` messages of ``channel`` received before ``before``,
    oldest first, inside the caller's transaction; return how many."""
    await conn.execute(STRIP_LOCK, (channel,))
    row = await (await conn.execute(STRIP_MARK, (channel,))).fetchone()
    assert row is not None
    below, upto, top = row
    args = {"channel": channel, "before": before, "limit": limit, "below": below,
            "upto": upto}
    cur = await conn.execute(STRIP_UNMARKED if below is None else STRIP_MARKED, args)
    found, last, stripped = await cur.fetchone() or (0, None, 0)
    # Every candidate up to ``reached`` (all of them, or the oldest ``limit``) is stripped now.
    reached = before if found < limit else last
    if reached is not None and (below is None or reached > below):
        await conn.execute(SET_MARK, (channel, reached, top))
    return int(stripped)


async def prune(conn: Conn, channel: str, before: datetime, content_before: datetime | None,
                limit: int) -> tuple[int, int]:
    """Retention for one channel (see Store.prune), inside the caller's transaction:
    (deleted, stripped)."""
    cur = await conn.execute(PRUNE_CANDIDATES,
                             {"channel": channel, "before": before, "limit": limit})
    ids = [r[0] for r in await cur.fetchall()]
    deleted = 0
    if ids:
        cur = await conn.execute(PRUNE_LOCK_DELIVERIES, (ids,))
        busy = {r[0] for r in await cur.fetchall() if r[1] in ("pending", "in_flight")}
        ids = [i for i in ids if i not in busy]
    if ids:
        cur = await conn.execute(PRUNE_DELETE, {"ids": ids, "channel": channel})
        deleted = max(cur.rowcount, 0)
    stripped = 0
    if content_before is not None:
        stripped = await strip(conn, channel, content_before, limit)
    return deleted, stripped


# Messages stored before migration 2 have no search words yet: filled in batches by a
# background task of the store (a new message gets them at enqueue).
UNINDEXED = """
SELECT id, body FROM messages WHERE search_words IS NULL
ORDER BY seq LIMIT %s
FOR NO KEY UPDATE SKIP LOCKED
"""
SET_WORDS = "UPDATE messages SET search_words = array_to_tsvector(%s::text[]) WHERE id = %s"


async def fill_search_words(conn: Conn, limit: int = INDEX_BATCH) -> int:
    """Give up to ``limit`` messages without search words theirs; return how many."""
    async with conn.transaction():
        cur = await conn.execute(UNINDEXED, (limit,))
        rows = await cur.fetchall()
        if rows:
            async with conn.cursor() as c:
                await c.executemany(SET_WORDS, [(search_words(jsoncodec.loads(body)), mid)
                                                for mid, body in rows])
    return len(rows)


async def has_unindexed(conn: Conn) -> bool:
    """Whether some message still lacks its search words (a cheap look at a partial index)."""
    row = await (await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE search_words IS NULL)")).fetchone()
    return bool(row and row[0])
