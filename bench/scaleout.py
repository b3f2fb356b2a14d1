"""The scale-out rows of the benchmark: alertpipe on PostgreSQL, and two instances on one
PostgreSQL schema.

1. **PostgreSQL (max)**: one engine, as shipped, with ``ALERTPIPE_DATABASE_URL`` pointing at a
   fresh schema; pinned like the SQLite rows (engine on the server CPU, wrk and the emulator on
   the other); the PostgreSQL server is not pinned.
2. **2 instances (PostgreSQL)**: two engines on one fresh schema, not pinned (the scheduler
   spreads them over both CPUs, beside PostgreSQL, wrk and the emulator); wrk's connections are
   split in half, one wrk per engine, run at the same time.

Both report what the other rows report (accepted req/s, p50/p99/p99.9, the engines' CPU µs per
message, peak RSS, wrk's CPU) plus the PostgreSQL server's CPU per message (the backends of
the engines' connections and the server's background processes, when this user may read their
CPU times), the schema's size per message and the whole machine's busy CPU. Each phase uses
a schema of its own, dropped at the end. Without a reachable server the rows are skipped,
saying why.
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psutil
import psycopg
from loadgen import WrkResult, run_wrk
from procs import BenchError, Service
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

if TYPE_CHECKING:
    from run import Bench

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
__all__ = ["DEFAULT_DATABASE_URL", "run"]


def _log(msg: str) -> None:
    from run import log

    log(msg)


class Schemas:
    """Fresh schemas on the benchmark's server, dropped by :meth:`drop_all`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[str] = []

    def new(self, tag: str) -> str:
        """A fresh schema; returns a ``postgresql://`` URL whose connections use it."""
        name = f"bench_{tag}_{int(time.time())}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        self.made.append(name)
        p = conninfo_to_dict(self.url)
        auth = quote(str(p.get("user") or ""), safe="")
        if p.get("password"):
            auth += ":" + quote(str(p["password"]), safe="")
        return (f"postgresql://{auth + '@' if auth else ''}{p.get('host') or '127.0.0.1'}:"
                f"{p.get('port') or 5432}/{quote(str(p.get('dbname') or ''), safe='')}"
                f"?options={quote(f'-c search_path={name}', safe='')}")

    def size(self, schema_url: str) -> tuple[int, int]:
        """(messages stored, bytes of every table of the schema with its indexes and TOAST,
        as the run left them: row versions that updates left behind are counted)."""
        with psycopg.connect(schema_url, autocommit=True) as conn:
            n = conn.execute("SELECT count(*) FROM messages").fetchone()
            size = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace s ON s.oid = c.relnamespace "
                "WHERE s.nspname = current_schema() AND c.relkind = 'r'").fetchone()
        return (int(str(n[0])) if n else 0), (int(str(size[0])) if size else 0)

    def drop_all(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for name in self.made:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(name)))
        self.made.clear()


def _server_facts(url: str) -> dict[str, Any] | str:
    """The server's version and settings, or why it cannot be used."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            facts = {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                     for name in ("server_version", "synchronous_commit", "fsync",
                                  "shared_buffers", "max_connections")}
    except psycopg.Error as exc:
        return " ".join(str(exc).split())
    p = conninfo_to_dict(url)
    facts["where"] = f"{p.get('host') or 'localhost'}:{p.get('port') or 5432}/{p.get('dbname')}"
    return facts


def _postgres_cpu() -> dict[int, float] | None:
    """user + system CPU seconds of each ``postgres`` process by pid (None if not readable)."""
    out: dict[int, float] = {}
    for proc in psutil.process_iter(["name"]):
        if not str(proc.info.get("name") or "").startswith("postgres"):
            continue
        try:
            t = proc.cpu_times()
        except psutil.AccessDenied:
            return None
        except psutil.Error:
            continue
        out[proc.pid] = t.user + t.system
    return out or None


def _busy(before: Any, after: Any) -> float:
    """CPU seconds the whole machine spent busy (not idle, not waiting for I/O) in between."""
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0.0)
                                         - getattr(before, "iowait", 0.0))
    return float(sum(after) - sum(before) - idle)


def _cpu_delta(before: dict[int, float] | None, after: dict[int, float] | None,
               pids: set[int] | None) -> float | None:
    """CPU used between two snapshots by ``pids`` (all, when None) alive at the second (a
    process that started meanwhile counts whole; one that ended meanwhile is missed)."""
    if before is None or after is None:
        return None
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()
               if pids is None or pid in pids)


def _serving(url: str, svcs: list[Service]) -> set[int] | None:
    """The server processes that work for ``svcs``: the backends of their connections (matched
    by client port) and the server's own background processes (WAL writer, checkpointer, ...),
    so that other clients of a shared server are not counted. None when it cannot tell."""
    server_port = int(str(conninfo_to_dict(url).get("port") or 5432))
    ports: set[int] = set()
    for svc in svcs:
        for proc in svc.tree():
            try:
                conns = proc.net_connections(kind="tcp")
            except psutil.Error:
                return None
            ports.update(c.laddr.port for c in conns if c.raddr and c.raddr.port == server_port)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s) "
                "OR backend_type <> 'client backend'", (sorted(ports),)).fetchall()
    except psycopg.Error:
        return None
    return {int(str(r[0])) for r in rows}


def _wrk_split(bench: Bench, svcs: list[Service], label: str, seconds: float) -> list[WrkResult]:
    """One wrk per engine, each with its share of the connections, at the same time."""
    conns = max(1, bench.args.connections // len(svcs))
    with concurrent.futures.ThreadPoolExecutor(len(svcs)) as pool:
        futures = [pool.submit(
            run_wrk, svc.url + "/orders", label=f"{label}-{i}", seconds=seconds,
            connections=conns, prefix=f"{label}-{i}-{secrets.token_hex(3)}",
            high_every=bench.args.high_every, cpus=bench.layout["loadgen"],
            log=bench.tmp / f"wrk-{label}-{i}.txt") for i, svc in enumerate(svcs)]
        return [f.result() for f in futures]


def _measure(bench: Bench, svcs: list[Service], label: str) -> dict[str, Any]:
    """Warm-up, then one measured run (split over ``svcs``) with CPU and RSS around it."""
    if bench.args.warmup > 0:
        _wrk_split(bench, svcs, f"{label}-warmup", bench.args.warmup)
    cpu0 = [s.cpu_seconds() for s in svcs]
    pg0, machine0 = _postgres_cpu(), psutil.cpu_times()
    runs = _wrk_split(bench, svcs, label, bench.args.seconds)
    cpu = sum(s.cpu_seconds() - c for s, c in zip(svcs, cpu0, strict=True))
    pg1, machine1 = _postgres_cpu(), psutil.cpu_times()
    ours = _serving(bench.args.database_url, svcs)
    sums = [r.summary() for r in runs]
    accepted = sum(r.accepted for r in runs)
    duration = max(r.duration_s for r in runs)
    worst = {k: max(s[k] for s in sums) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms",
                                                  "max_ms")}
    out: dict[str, Any] = {
        "label": label, "instances": len(svcs), "rps": round(sum(r.rps for r in runs), 1),
        "accepted": accepted, "duration_s": round(duration, 3), **worst,
        "per_instance_rps": [round(r.rps, 1) for r in runs],
        "non_2xx": sum(s["non_2xx"] for s in sums),
        "socket_errors": {k: sum(s["socket_errors"][k] for s in sums)
                          for k in ("connect", "read", "write", "timeout")},
        "wrk_cpu_cores": round(sum(r.cpu_util for r in runs), 3),
        "server_cpu_s": round(cpu, 3), "server_cpu_cores": round(cpu / duration, 3),
        "cpu_us_per_msg": round(cpu * 1e6 / max(1, accepted), 1),
        "peak_rss_mb": round(max(s.peak_rss_mb() for s in svcs), 1),
        # every process on the machine, this run's and any other's: is the CPU the limit?
        "machine_cpu_cores": round(_busy(machine0, machine1) / duration, 3),
        "connections_per_instance": max(1, bench.args.connections // len(svcs)),
    }
    pg_cpu = _cpu_delta(pg0, pg1, ours)
    if pg_cpu is not None:
        out["postgres_cpu_s"] = round(pg_cpu, 3)
        out["postgres_cpu_cores"] = round(pg_cpu / duration, 3)
        out["postgres_cpu_us_per_msg"] = round(pg_cpu * 1e6 / max(1, accepted), 1)
    if len(svcs) > 1:  # latencies are the worse of the instances' own histograms
        out["latency_note"] = "worst of the per-instance wrk runs"
    pg = f", PostgreSQL {out['postgres_cpu_us_per_msg']:.0f} µs" if "postgres_cpu_s" in out \
        else ""
    _log(f"  {label}: {out['rps']:,.0f} req/s ({out['per_instance_rps']}), p50 "
         f"{out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms, {out['cpu_us_per_msg']:.0f} µs "
         f"engine CPU/msg{pg}, RSS {out['peak_rss_mb']:.0f} MB, wrk "
         f"{out['wrk_cpu_cores']:.2f} cores")
    return out


def _phase(bench: Bench, schemas: Schemas, tag: str, instances: int,
           cpus: str | None) -> dict[str, Any]:
    url = schemas.new(tag)
    svcs: list[Service] = []
    try:
        for i in range(instances):
            svc, _ = bench.start_engine(f"{tag}-{i}", cpus, extra_env={
                "ALERTPIPE_DATABASE_URL": url, "ALERTPIPE_INSTANCE_ID": f"bench-{tag}-{i}"})
            svcs.append(svc)
        out = _measure(bench, svcs, f"alertpipe-{tag}")
    finally:
        for svc in svcs:
            svc.stop()
    stored, size = schemas.size(url)
    if stored < out["accepted"]:
        raise BenchError(f"{tag}: {out['accepted']} orders accepted but {stored} stored")
    out["stored_messages"] = stored
    out["store_bytes"] = size
    out["store_bytes_per_message"] = round(size / max(1, stored))
    out["cpus"] = cpus or "any"
    return out


def run(bench: Bench) -> dict[str, Any]:
    """Both rows, or ``{"skipped": reason}``."""
    url = bench.args.database_url
    facts = _server_facts(url)
    if isinstance(facts, str):
        _log(f"scale-out rows skipped: PostgreSQL not reachable ({facts})")
        return {"skipped": f"PostgreSQL not reachable: {facts}"}
    _log(f"PostgreSQL {facts['server_version']} at {facts['where']}")
    schemas = Schemas(url)
    try:
        _log("alertpipe on PostgreSQL at its maximum rate")
        one = _phase(bench, schemas, "pg", 1, bench.layout["server"])
        _log("two alertpipe instances on one PostgreSQL schema, wrk's connections split")
        two = _phase(bench, schemas, "pg2", 2, None)
    finally:
        schemas.drop_all()
    return {"server": facts, "postgres": one, "two_instances": two, "cores": os.cpu_count()}
