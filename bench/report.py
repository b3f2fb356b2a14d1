"""Results of one run: latest.json, latest.md (+ a timestamped copy), latest.png, history row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["targets", "write_all"]

HISTORY_MARKER = "<!-- bench/run.py adds rows above this line -->"
HISTORY_HEADER = ("| date (UTC) | commit | ceiling req/s | alertpipe req/s | ratio | "
                  "p99 @ half rate | e2e s | Sheets calls/1k | peak RSS MB |\n"
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|\n")


def _peak_rss(r: dict[str, Any]) -> float:
    ap = r["alertpipe"]
    return float(max(ap["max"]["peak_rss_mb"], ap["half_rate"]["peak_rss_mb"],
                     ap["e2e"]["peak_rss_mb"]))


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    ceil = r["ceiling"]["uvicorn"]["rps"]
    ap = r["alertpipe"]["max"]["rps"]
    half = r["alertpipe"]["half_rate"]
    e2e = r["alertpipe"]["e2e"]
    ratio = ap / ceil if ceil else 0.0
    e2e_s = e2e["e2e_seconds"]
    rss = _peak_rss(r)
    rows = [
        {"target": "durable ingest ≥ 0.7 × ceiling req/s (same server: uvicorn"
                   + (f"; median of {len(r['rounds']['rounds'])} alternating rounds)"
                      if len(r.get("rounds", {}).get("rounds", [])) > 1 else ")"),
         "measured": f"{ap:,.0f} / {ceil:,.0f} = {ratio:.2f}", "pass": ratio >= 0.7},
        {"target": "p99 ingest ≤ 20 ms at half of alertpipe's max rate",
         "measured": f"{half['p99_ms']:.1f} ms at {half['rps']:,.0f} req/s "
                     f"(p99.9 {half['p999_ms']:.1f} ms)",
         "pass": half["p99_ms"] <= 20},
        {"target": f"{e2e['orders']:,} orders delivered end to end within 60 s, "
                   "no quota violation",
         "measured": (f"{e2e_s:.1f} s" if e2e_s is not None else "not complete")
                     + f", {e2e['quota_violations']} quota violations",
         "pass": bool(e2e["complete"] and e2e_s is not None and e2e_s <= 60
                      and e2e["quota_violations"] == 0)},
        {"target": "Sheets calls ≤ 10 per 1,000 orders in a burst",
         "measured": f"{e2e['sheets_calls_per_1k']:.1f} per 1,000 "
                     f"({e2e['sheets_append_calls']} for {e2e['orders']:,})",
         "pass": e2e["sheets_calls_per_1k"] <= 10},
        {"target": "peak RSS ≤ 200 MB", "measured": f"{rss:.0f} MB",
         "pass": rss <= 200},
    ]
    return [*rows, *_search_target(r.get("search"))]


def _search_target(s: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not s:
        return []
    worst = max(s["queries"], key=lambda q: q["max_ms"])
    return [{"target": f"a message search over {s['messages']:,} stored messages ≤ 200 ms",
             "measured": f"slowest query {worst['max_ms']:.1f} ms ({worst['query']}), "
                         f"{len(s['queries'])} kinds × {s['repeat']} runs",
             "pass": s["worst_ms"] <= 200}]


def _search_section(s: dict[str, Any] | None) -> list[str]:
    if not s:
        return []
    built = (f"built in {s['build_seconds']:.0f} s" if s.get("build_seconds")
             else "reused from an earlier run")
    lines = ["## Message search", "",
             f"`bench/search.py`: a SQLite store of {s['messages']:,} orders "
             f"({s['store_bytes'] / 1e9:.2f} GB, {built}); each query asks "
             "`SQLiteStore.search_messages` for a page of 50 (full messages with deliveries "
             f"and attempts), {s['repeat']} times with fresh values.", "",
             "| query | median ms | max ms | results |", "|---|---:|---:|---:|"]
    lines += [f"| {q['query']} | {q['median_ms']:.1f} | {q['max_ms']:.1f} | "
              f"{q['results_last']} |" for q in s["queries"]]
    return [*lines, ""]


def _scale_out_section(r: dict[str, Any]) -> list[str]:
    """The PostgreSQL and two-instance rows beside the SQLite one (bench/scaleout.py)."""
    so = r.get("scale_out")
    if not so:
        return []
    if "skipped" in so:
        return ["## Scale-out: PostgreSQL, two instances", "", f"Skipped: {so['skipped']}.", ""]
    sq, pg, two = r["alertpipe"]["max"], so["postgres"], so["two_instances"]
    cols = [("SQLite, 1 instance", sq), ("PostgreSQL, 1 instance", pg),
            ("PostgreSQL, 2 instances", two)]

    def pg_us(x: dict[str, Any]) -> str:
        return f"{x['postgres_cpu_us_per_msg']:,.0f}" if "postgres_cpu_us_per_msg" in x else "–"

    rows = [
        ("accepted req/s", lambda x: f"{x['rps']:,.0f}"),
        ("… per instance", lambda x: " + ".join(f"{v:,.0f}" for v in x.get(
            "per_instance_rps", [x["rps"]]))),
        ("latency p50 ms", lambda x: f"{x['p50_ms']:.2f}"),
        ("latency p99 ms", lambda x: f"{x['p99_ms']:.2f}"),
        ("latency p99.9 ms", lambda x: f"{x['p999_ms']:.2f}"),
        ("engine CPU µs / message", lambda x: f"{x['cpu_us_per_msg']:,.0f}"),
        ("PostgreSQL server CPU µs / message", pg_us),
        ("engine CPU (cores busy)", lambda x: f"{x['server_cpu_cores']:.2f}"),
        ("PostgreSQL CPU (cores busy)", lambda x: f"{x['postgres_cpu_cores']:.2f}"
         if "postgres_cpu_cores" in x else "–"),
        ("peak RSS MB (per instance)", lambda x: f"{x['peak_rss_mb']:.0f}"),
        ("store bytes / message (tables + indexes)", lambda x: f"{x['store_bytes_per_message']:,}"
         if "store_bytes_per_message" in x else "–"),
        ("wrk CPU (cores)", lambda x: f"{x['wrk_cpu_cores']:.2f}"),
        ("machine CPU (cores busy, all processes)", lambda x: f"{x['machine_cpu_cores']:.2f}"
         if "machine_cpu_cores" in x else "–"),
    ]
    srv = so["server"]
    out = ["## Scale-out: PostgreSQL, two instances", "",
           f"PostgreSQL {srv['server_version']} on this machine ({srv['where']}; "
           f"synchronous_commit={srv['synchronous_commit']}, fsync={srv['fsync']}, "
           f"shared_buffers={srv['shared_buffers']}), a fresh schema per phase, the engine as "
           "shipped with `ALERTPIPE_DATABASE_URL`. One instance is pinned like the SQLite row "
           "(the PostgreSQL server is not); the two instances are not pinned, and wrk's "
           f"{r['settings']['connections']} connections are split between them (one wrk "
           "each, at once; their latencies are the worse of the two runs). \"machine CPU\" is "
           "every process on the machine, this run's and any other's.", "",
           "| | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    out += [f"| {name} | " + " | ".join(f(x) for _, x in cols) + " |" for name, f in rows]
    out += ["", _two_cores_note(so), ""]
    return out


def _two_cores_note(so: dict[str, Any]) -> str:
    """What the two-instance row can and cannot show on this machine, from its own figures."""
    one, two, cores = so["postgres"], so["two_instances"], so["cores"]
    ratio = two["rps"] / one["rps"] if one["rps"] else 0.0
    own = two["server_cpu_cores"] + two.get("postgres_cpu_cores", 0.0) + two["wrk_cpu_cores"]
    machine = two.get("machine_cpu_cores", own)
    head = (f"**What {cores} cores show, and what they do not.** Two instances accepted "
            f"{ratio:.2f}× the rate of one. During that run the machine's {cores} cores were "
            f"{machine:.2f} busy: {two['server_cpu_cores']:.2f} the two engines, "
            f"{two.get('postgres_cpu_cores', 0.0):.2f} PostgreSQL, "
            f"{two['wrk_cpu_cores']:.2f} wrk, the rest the emulator and anything else running. ")
    if machine >= 0.85 * cores:
        why = ("The CPU all of them share is the limit, so this row cannot show how throughput "
               "grows with instances: that needs each instance, and the database, on cores of "
               "their own. ")
    else:
        why = ("The CPU was not saturated, so something other than CPU held the engines "
               "back (each intake group waits on round trips to PostgreSQL; see "
               "docs/scaling.md); even so, instances sharing two cores cannot show scaling "
               "beyond them. ")
    return head + why + (
        "What the row does show: two instances share one database correctly at full load "
        "(every accepted order stored, deliveries claimed through SKIP LOCKED, one Sheets "
        "batcher for both), and what one message costs in CPU in the engine and in "
        "PostgreSQL, which is what docs/scaling.md sizes a deployment from.")


def _checks(r: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """Validity of the measurement itself (not targets of the engine)."""
    c = r["ceiling"]["uvicorn"]
    half = r["alertpipe"]["half_rate"]
    e2e = r["alertpipe"]["e2e"]
    ch = r["ceiling"].get("uvicorn_half")
    wrk_max = max(x["wrk_cpu_cores"] for x in (c, r["ceiling"]["granian"], r["alertpipe"]["max"]))
    achieved = half["rps"] / half["target_rps"] if half.get("target_rps") else 0
    return [
        ("every answer 202 (no non-2xx, no socket error) in every run", "yes", True),
        ("load generator below half a core (ceiling and max-rate runs)",
         f"wrk used at most {wrk_max:.2f} cores", wrk_max < 0.5),
        ("half-rate run kept its schedule",
         f"{half['rps']:,.0f} of {half['target_rps']:,.0f} req/s ({achieved:.0%}), "
         f"{half['late_sends']} sends > 1 ms late (max {half['late_max_ms']:.1f} ms)",
         achieved >= 0.97),
        *([("ceiling's half-rate run kept its schedule",
            f"{ch['rps']:,.0f} of {ch['target_rps']:,.0f} req/s, {ch['late_sends']} sends > 1 ms "
            f"late", ch["rps"] >= 0.97 * ch["target_rps"])] if ch else []),
        ("every order exactly one Sheet row; every high-value order its SMS",
         f"{e2e['sheet_rows']:,} rows, {e2e['distinct_order_ids']:,} distinct order ids, "
         f"{e2e['sms']} SMS for {e2e['high_value']} high-value",
         e2e["sheet_rows"] == e2e["distinct_order_ids"] == e2e["orders"]
         and e2e["sms"] == e2e["high_value"]),
    ]


def _pf(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def _rounds_section(r: dict[str, Any]) -> list[str]:
    """The alternating rounds of ceiling and alertpipe at their maximum rates."""
    rd = r.get("rounds")
    if not rd or len(rd["rounds"]) < 2:
        return []
    out = ["## Rounds: ceiling and alertpipe back to back", "",
           f"The ceiling (uvicorn) and alertpipe (max) columns above come from the round with "
           f"the median ratio. Each round is a fresh ceiling, then a fresh engine, "
           f"{rd['seconds']:.1f} s measured each after the warm-up: this machine's speed drifts "
           f"by up to a third within minutes, so each ratio compares two runs made side by "
           f"side in time.", "",
           "| round | ceiling req/s | alertpipe req/s | ratio | ceiling µs/msg | "
           "alertpipe µs/msg | alertpipe cores busy |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for i, x in enumerate(rd["rounds"]):
        mark = " (reported)" if i == rd["median_round"] else ""
        out.append(f"| {i + 1}{mark} | {x['ceiling_rps']:,.0f} | {x['alertpipe_rps']:,.0f} | "
                   f"{x['ratio']:.2f} | {x['ceiling_cpu_us']:,.0f} | "
                   f"{x['alertpipe_cpu_us']:,.0f} | {x['alertpipe_cores']:.2f} |")
    return [*out, ""]


def markdown(r: dict[str, Any]) -> str:
    m, s = r["machine"], r["settings"]
    cu, cg = r["ceiling"]["uvicorn"], r["ceiling"]["granian"]
    amax, half, e2e = r["alertpipe"]["max"], r["alertpipe"]["half_rate"], r["alertpipe"]["e2e"]
    commit = (m["git_commit"] or "?")[:10] + (" (work tree modified)" if m["git_dirty"] else "")
    out = [
        f"# alertpipe benchmark — {m['date_utc']}",
        "",
        f"Commit {commit}. {m['cpu_model']}, {m['cores']} cores, {m['memory_gb']} GB, "
        f"Python {m['python']}, Linux {m['kernel']}, store on {m['store_filesystem']}. "
        f"{m['wrk']}. Whole run {m['bench_seconds']:.0f} s.",
        "",
        f"Load: wrk, 1 thread, {s['connections']} connections, {s['seconds']:.0f} s measured "
        f"after {s['warmup_seconds']:.0f} s of warm-up (the maximum-rate pair: "
        f"{s.get('rounds', 1)} alternating round(s) sharing those seconds); every order a "
        "unique order_id, "
        f"{s['high_value_share']:.0%} over $300. CPU layout: **{s['layout']}** "
        f"({_layout_text(s['layout_cpus'])}). One emulator process (Sheets quota 60 "
        f"writes/min) for every phase. **TWILIO_MAX_PER_MINUTE={s['twilio_max_per_minute']:,}** "
        "for every engine run (a messaging service or short code, not a long code's 1 SMS/s), "
        f"and **ALERTPIPE_MAX_PENDING={s.get('max_pending', 100_000):,}** (the channel's "
        "backlog bound; the shipped 100,000 would answer 503 within a max-rate phase, since "
        "Sheets' quota drains ~416 rows/s). "
        "End-to-end run only: the per-recipient SMS cap (30/hour, shipped default) is lifted "
        "(`ALERT_SMS_MAX_PER_HOUR=0`), else 470 of the 500 alerts would wait an hour by "
        "design.",
        "",
        "## Targets",
        "",
        "| target | measured | result |",
        "|---|---|---|",
    ]
    out += [f"| {t['target']} | {t['measured']} | {_pf(t['pass'])} |" for t in targets(r)]
    out += ["", "Validity of the measurement:", "", "| check | measured | |", "|---|---|---|"]
    out += [f"| {name} | {val} | {'ok' if ok else '**NOT OK**'} |"
            for name, val, ok in _checks(r)]
    cols = [("ceiling (uvicorn)", cu), ("ceiling (granian)", cg)]
    if "uvicorn_half" in r["ceiling"]:
        cols.append(("ceiling (uvicorn, ½ max, fixed rate)", r["ceiling"]["uvicorn_half"]))
    cols += [("alertpipe (max)", amax), ("alertpipe (½ max, fixed rate)", half)]
    rows = [
        ("accepted req/s", lambda x: f"{x['rps']:,.0f}"),
        ("latency p50 ms", lambda x: f"{x['p50_ms']:.2f}"),
        ("latency p99 ms", lambda x: f"{x['p99_ms']:.2f}"),
        ("latency p99.9 ms", lambda x: f"{x['p999_ms']:.2f}"),
        ("latency max ms", lambda x: f"{x['max_ms']:.1f}"),
        ("server CPU µs / message", lambda x: f"{x['cpu_us_per_msg']:,.0f}"),
        ("… of which the main thread (event loop)",
         lambda x: f"{x['main_thread_us_per_msg']:,.0f}" if "main_thread_us_per_msg" in x
         else "–"),
        ("server CPU (cores busy)", lambda x: f"{x['server_cpu_cores']:.2f}"),
        ("peak RSS MB (VmHWM)", lambda x: f"{x['peak_rss_mb']:.0f}"),
        ("wrk CPU (cores)", lambda x: f"{x['wrk_cpu_cores']:.2f}"),
        ("non-2xx / socket errors", lambda x: f"{x['non_2xx']} / "
                                              f"{sum(x['socket_errors'].values())}"),
    ]
    out += ["", "## Ceiling vs alertpipe", "",
            "| | " + " | ".join(c for c, _ in cols) + " |",
            "|---|" + "---:|" * len(cols)]
    out += [f"| {name} | " + " | ".join(f(x) for _, x in cols) + " |" for name, f in rows]
    out += ["", "Ceiling = bench/ceiling.py: Starlette + the engine's strict JSON parser + the "
            "order schema, 202 + JSON body, no store, no destinations. alertpipe = `python -m "
            "alertpipe run -c alertpipe.yaml`: SQLite synchronous=FULL with group commit, log "
            "level INFO, destinations at the emulator; each phase on a fresh engine and a fresh "
            "store. CPU per message includes the delivery work the engine did meanwhile. The "
            "½-max columns send at a fixed rate, half of that server's own maximum: the "
            "ceiling's shows what the HTTP layer alone costs per request when requests arrive "
            "paced rather than in a burst. The main-thread row is the event loop's share "
            "(the rest of the engine's is its SQLite commit and reader threads).", ""]
    out += _rounds_section(r)
    out += _e2e_section(e2e)
    ratio_g = cg["rps"] / cu["rps"] if cu["rps"] else 0
    out += ["## ASGI server", "",
            f"Same ceiling app: granian (`--interface asgi --loop uvloop`, 1 worker) "
            f"{cg['rps']:,.0f} req/s, p99 {cg['p99_ms']:.2f} ms, {cg['cpu_us_per_msg']:,.0f} µs "
            f"CPU/msg, {cg['peak_rss_mb']:.0f} MB; uvicorn (uvloop + httptools) "
            f"{cu['rps']:,.0f} req/s, p99 {cu['p99_ms']:.2f} ms, "
            f"{cu['cpu_us_per_msg']:,.0f} µs CPU/msg, {cu['peak_rss_mb']:.0f} MB: granian/uvicorn "
            f"= **{ratio_g:.2f}**. The engine embeds uvicorn today; this is the measured gap a "
            "switch could at most win on the HTTP side (granian's RSS is summed over its "
            "processes).", ""]
    out += _search_section(r.get("search"))
    out += _scale_out_section(r)
    out += _pinning_section(r)
    out += _profile_section(r["alertpipe"].get("profile"))
    return "\n".join(out) + "\n"


def _layout_text(cpus: dict[str, str | None]) -> str:
    if not any(cpus.values()):
        return "no pinning: server, wrk and emulator share both CPUs"
    return ", ".join(f"{k} on CPU {v}" for k, v in cpus.items())


def _e2e_section(e: dict[str, Any]) -> list[str]:
    per = e.get("per_destination", {})
    lines = ["## End to end", "",
             "| figure | value |", "|---|---:|",
             f"| orders posted (high-value) | {e['orders']:,} ({e['high_value']}) |",
             f"| posting took (accept rate) | {e['post_seconds']:.1f} s "
             f"({e['post_rps']:,.0f} req/s) |",
             "| first post → every row and SMS at the emulator | "
             + (f"{e['e2e_seconds']:.1f} s" if e["e2e_seconds"] is not None else "NOT COMPLETE")
             + " |",
             "| … of which after the last 202 | "
             + (f"{e['drain_seconds_after_last_ack']:.1f} s"
                if e["drain_seconds_after_last_ack"] is not None else "–") + " |",
             f"| accept → delivered p50 / p99 / max (per order, all destinations) | "
             f"{e.get('delivery_p50_ms', 0) / 1000:.1f} / {e.get('delivery_p99_ms', 0) / 1000:.1f}"
             f" / {e.get('delivery_max_ms', 0) / 1000:.1f} s |"]
    for dest, d in per.items():
        lines.append(f"| … {dest}: p50 / p99 / max ({d['deliveries']:,} deliveries) | "
                     f"{d['p50_ms'] / 1000:.1f} / {d['p99_ms'] / 1000:.1f} / "
                     f"{d['max_ms'] / 1000:.1f} s |")
    lines += [f"| Sheets values.append calls | {e['sheets_append_calls']} "
              f"({e['sheets_calls_per_1k']:.1f} per 1,000 orders) |",
              f"| Sheets quota violations (60/min) | {e['quota_violations']} |",
              f"| Sheet rows / distinct order ids / SMS | {e['sheet_rows']:,} / "
              f"{e['distinct_order_ids']:,} / {e['sms']} |",
              f"| delivery attempts recorded / deliveries | {e.get('attempts', 0):,} / "
              f"{e.get('delivery_rows', 0):,} |",
              f"| engine peak RSS | {e['peak_rss_mb']:.0f} MB |", ""]
    return lines


def _pinning_section(r: dict[str, Any]) -> list[str]:
    p = r.get("pinning")
    if not p:
        return []
    s = r["settings"]
    main_c, main_a = r["ceiling"]["uvicorn"], r["alertpipe"]["max"]
    oc, oa = p["ceiling_uvicorn"], p["alertpipe_max"]
    return [
        "## CPU pinning", "",
        f"Same runs ({p['seconds']:.0f} s) with the other layout, to check the choice.", "",
        "| layout | ceiling req/s | ceiling p99 ms | alertpipe req/s | alertpipe p99 ms | "
        "alertpipe/ceiling |", "|---|---:|---:|---:|---:|---:|",
        f"| {s['layout']} (used above) | {main_c['rps']:,.0f} | {main_c['p99_ms']:.2f} | "
        f"{main_a['rps']:,.0f} | {main_a['p99_ms']:.2f} | {main_a['rps'] / main_c['rps']:.2f} |",
        f"| {p['layout']} ({_layout_text(p['cpus'])}) | {oc['rps']:,.0f} | {oc['p99_ms']:.2f} | "
        f"{oa['rps']:,.0f} | {oa['p99_ms']:.2f} | {oa['rps'] / oc['rps']:.2f} |", ""]


def _profile_section(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    if "skipped" in p:
        return ["## Where the engine's time goes", "", f"Skipped: {p['skipped']}.", ""]
    lines = ["## Where the engine's time goes", "",
             f"py-spy, {p['samples']:,} on-CPU samples of the engine at its maximum rate "
             f"({p['rps_while_profiled']:,.0f} req/s while sampled; stacks in "
             f"`{p['folded_file']}`). Category = innermost matching frame.", "",
             "| category | share |", "|---|---:|"]
    lines += [f"| {c['name']} | {c['share']:.1%} |" for c in p["categories"] if c["share"] >= 0.005]
    lines += ["", "| thread | share |", "|---|---:|"]
    lines += [f"| {t['name'][:60]} | {t['share']:.1%} |" for t in p["threads"]]
    lines += ["", "| top self time (leaf function) | share |", "|---|---:|"]
    lines += [f"| `{t['name'][:90]}` | {t['share']:.1%} |" for t in p["top_self"]]
    return [*lines, ""]


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cu, cg = r["ceiling"]["uvicorn"], r["ceiling"]["granian"]
    amax, half, e2e = r["alertpipe"]["max"], r["alertpipe"]["half_rate"], r["alertpipe"]["e2e"]
    names = ["ceiling\nuvicorn", "ceiling\ngranian", "alertpipe\nmax", "alertpipe\n½ rate"]
    runs = [cu, cg, amax, half]
    colors = ["#8fa8c8", "#b7c7a3", "#d9834f", "#e8b48f"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    fig.suptitle(f"alertpipe benchmark {r['machine']['date_utc']} "
                 f"({(r['machine']['git_commit'] or '?')[:10]}, {r['machine']['cores']} cores)")

    ax = axes[0][0]
    ax.bar(names, [x["rps"] for x in runs], color=colors)
    ax.axhline(0.7 * cu["rps"], color="red", ls="--", lw=1, label="target: 0.7 × ceiling")
    ax.set_title("accepted requests / s")
    ax.legend(loc="upper right", fontsize=8)
    for i, x in enumerate(runs):
        ax.text(i, x["rps"], f"{x['rps']:,.0f}", ha="center", va="bottom", fontsize=8)

    ax = axes[0][1]
    width = 0.25
    for j, (key, label) in enumerate([("p50_ms", "p50"), ("p99_ms", "p99"),
                                      ("p999_ms", "p99.9")]):
        ax.bar([i + (j - 1) * width for i in range(len(runs))], [max(x[key], 0.01) for x in runs],
               width, label=label)
    ax.set_xticks(range(len(runs)), names)
    ax.set_yscale("log")
    ax.axhline(20, color="red", ls="--", lw=1, label="20 ms (p99 target at ½ rate)")
    ax.set_title("ingest latency, ms (log scale)")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    tl = e2e.get("timeline", {})
    for name, pts in tl.items():
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name)
    if e2e.get("e2e_seconds"):
        ax.axvline(60, color="red", ls="--", lw=1, label="60 s target")
    ax.set_title(f"end to end: {e2e['orders']:,} orders (cumulative)")
    ax.set_xlabel("seconds since the first accept")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    ax.bar(names, [x["cpu_us_per_msg"] for x in runs], color=colors)
    ax.set_title("server CPU µs per message (RSS MB in labels)")
    for i, x in enumerate(runs):
        ax.text(i, x["cpu_us_per_msg"], f"{x['cpu_us_per_msg']:,.0f} µs\n"
                f"{x['peak_rss_mb']:.0f} MB", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def history_row(r: dict[str, Any]) -> str:
    m = r["machine"]
    cu, amax = r["ceiling"]["uvicorn"], r["alertpipe"]["max"]
    half, e2e = r["alertpipe"]["half_rate"], r["alertpipe"]["e2e"]
    e2e_s = f"{e2e['e2e_seconds']:.1f}" if e2e["e2e_seconds"] is not None else "incomplete"
    commit = (m["git_commit"] or "?")[:10] + ("+" if m["git_dirty"] else "")
    return (f"| {m['date_utc'][:16].replace('T', ' ')} | {commit} | {cu['rps']:,.0f} | "
            f"{amax['rps']:,.0f} | {amax['rps'] / cu['rps']:.2f} | {half['p99_ms']:.1f} ms | "
            f"{e2e_s} | {e2e['sheets_calls_per_1k']:.1f} | {_peak_rss(r):.0f} |")


def append_history(readme: Path, row: str) -> None:
    text = readme.read_text() if readme.exists() else "# Benchmark\n"
    if HISTORY_MARKER not in text:
        text = text.rstrip("\n") + "\n\n## History\n\n" + HISTORY_HEADER + HISTORY_MARKER + "\n"
    text = text.replace(HISTORY_MARKER, row + "\n" + HISTORY_MARKER, 1)
    readme.write_text(text)


def write_all(r: dict[str, Any], results: Path, readme: Path, *, history: bool) -> bool:
    """Write every output; True when every target passed."""
    results.mkdir(parents=True, exist_ok=True)
    t = targets(r)
    r["targets"] = t
    r["checks"] = [{"check": n, "measured": v, "ok": ok} for n, v, ok in _checks(r)]
    (results / "latest.json").write_text(json.dumps(r, indent=2, sort_keys=False) + "\n")
    md = markdown(r)
    (results / "latest.md").write_text(md)
    chart(r, results / "latest.png")
    if history:  # a full run: keep its report and add it to the history table
        (results / f"{r['stamp']}.md").write_text(md)
        append_history(readme, history_row(r))
    return all(x["pass"] for x in t)
