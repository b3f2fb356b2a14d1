"""``alertpipe demo``: the whole order alert pipeline in one process, with no credentials.

Starts the Google and Twilio emulators and the engine (with the real channel config, its real
SQLite store and its real destinations) on free ports, posts a handful of sample orders — one
invalid, two over $300 — waits for every delivery, prints the Sheet rows and the SMS sent, and
exits 0 when what arrived is what should have.

With ``--dashboard`` it then keeps running (until Ctrl-C) with the web dashboard in demo mode:
log in with the printed one-off admin password to find the orders, open one, resend it, and
see the emulators' SMS inbox and Sheet in the browser.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from alertpipe.cli.run import bind, serve
from alertpipe.config import load_config
from alertpipe.config.model import AppSettings, UserSettings
from alertpipe.emulators import EmulatorSettings, running_emulator
from alertpipe.engine import Engine
from alertpipe.logs import setup_logging
from alertpipe.web.passwords import hash_password

SAMPLE_ORDERS: list[dict[str, Any]] = [
    {"order_id": "A-1001", "customer_name": "Ada L.", "customer_phone": "+14155550101",
     "amount": "349.99", "currency": "USD",
     "items": [{"sku": "KB-01", "qty": 1, "price": "349.99"}]},
    {"order_id": "A-1002", "customer_name": "Grace H.", "amount": 42.5},
    {"order_id": "A-1003", "customer_name": "Alan T.", "amount": "300.00"},
    {"order_id": "A-1004", "customer_name": "Edsger D.", "amount": 1250, "currency": "USD",
     "channel": "wholesale"},
    {"order_id": "A-1005", "customer_name": "Barbara L.", "amount": "lots",
     "customer_phone": "555-0100"},
    {"order_id": "A-1006", "customer_name": "Ken T.", "amount": "18.00", "currency": "EUR"},
]
ON_CALL = ["+15558675310", "+15558675311"]
FROM_NUMBER = "+15017122661"
SPREADSHEET = "demo-orders"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the order alert pipeline against the emulators",
                       description=__doc__)
    p.add_argument("-c", "--config", default="alertpipe.yaml")
    p.add_argument("--verbose", action="store_true", help="show the engine's JSON logs")
    p.add_argument("--dashboard", action="store_true",
                   help="then keep serving the web dashboard (demo mode) until Ctrl-C")
    p.set_defaults(func=run)


def demo_environment(emulator_url: str, workdir: Path) -> dict[str, str]:
    """Where everything lives for this run; nothing of the caller's configuration is used."""
    return {
        "ALERTPIPE_STORE": f"sqlite:///{workdir / 'alertpipe.db'}",
        "ALERTPIPE_HOST": "127.0.0.1", "ALERTPIPE_PORT": "0",
        "SHEETS_SPREADSHEET_ID": SPREADSHEET, "SHEETS_RANGE": "Orders!A:G",
        "GOOGLE_APPLICATION_CREDENTIALS": str(workdir / "service-account.json"),
        "SHEETS_API_BASE": emulator_url, "TWILIO_API_BASE": emulator_url,
        "TWILIO_API_KEY": "", "TWILIO_API_SECRET": "", "TWILIO_MESSAGING_SERVICE_SID": "",
        "TWILIO_FROM_NUMBER": FROM_NUMBER, "ALERT_SMS_TO": ",".join(ON_CALL),
        "HIGH_VALUE_THRESHOLD": "300",
    }


def run(args: argparse.Namespace) -> int:
    console = Console()
    setup_logging("INFO" if args.verbose else "WARNING")
    with tempfile.TemporaryDirectory(prefix="alertpipe-demo-") as tmp:
        workdir = Path(tmp)
        account_sid, auth_token = "AC" + secrets.token_hex(16), secrets.token_hex(16)
        # The emulator accepts exactly the throwaway credentials the engine will send.
        settings = EmulatorSettings(twilio_account_sid=account_sid, twilio_auth_token=auth_token,
                                    twilio_from_numbers=[FROM_NUMBER],
                                    spreadsheets={SPREADSHEET: ["Orders"]})
        with running_emulator(settings) as emu:
            env = {**os.environ, **demo_environment(emu.url, workdir),
                   "TWILIO_ACCOUNT_SID": account_sid, "TWILIO_AUTH_TOKEN": auth_token}
            emu.write_credentials(env["GOOGLE_APPLICATION_CREDENTIALS"])
            console.print(f"[bold]emulators[/] Google OAuth + Sheets + Twilio at {emu.url}")
            config = load_config(args.config, environ=env)
            password = secrets.token_urlsafe(12) if args.dashboard else None
            config = _demo_mode(config, emu.url, password)
            engine = Engine(config, base_dir=Path(args.config).resolve().parent)
            return asyncio.run(_drive(engine, emu.url, console, password))


def _demo_mode(config: AppSettings, emulator_url: str, password: str | None) -> AppSettings:
    """The dashboard shows the emulators' SMS inbox and Sheet; with a password, a one-off
    ``demo`` admin may log in (the config's own users are kept)."""
    users = list(config.engine.users)
    if password is not None:
        users = [u for u in users if u.name != "demo"]
        users.append(UserSettings(name="demo", role="admin",
                                  password_hash=hash_password(password)))
    engine = config.engine.model_copy(update={
        "demo_emulator_url": emulator_url, "users": users,
        "session_secret": config.engine.session_secret or SecretStr(secrets.token_hex(32))})
    return config.model_copy(update={"engine": engine})


async def _drive(engine: Engine, emulator_url: str, console: Console,
                 password: str | None = None) -> int:
    import uvicorn

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    box: list[uvicorn.Server] = []
    ready = asyncio.Event()
    server_task = asyncio.create_task(serve(engine, sock, box, ready))
    ready_task = asyncio.create_task(ready.wait())
    await asyncio.wait({server_task, ready_task}, return_when=asyncio.FIRST_COMPLETED)
    if server_task.done():
        ready_task.cancel()
        server_task.result()  # raises why the engine could not start
        return 1
    url = f"http://127.0.0.1:{port}/orders"
    console.print(f"[bold]engine[/]    order alert channel at {url}\n")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            expected = await _post_orders(client, url, console)
            code = await _report(client, emulator_url, expected, console)
        if password is not None:
            console.print(f"\n[bold]dashboard[/] http://127.0.0.1:{port}/ui/ · user [bold]demo[/]"
                          f" · password [bold]{password}[/] (this run only) · Ctrl-C to stop",
                          markup=True, highlight=False)
            await server_task  # until Ctrl-C or SIGTERM
        return code
    finally:
        box[0].should_exit = True
        await server_task


async def _post_orders(client: httpx.AsyncClient, url: str, console: Console) -> dict[str, int]:
    table = Table(title="Orders posted (Prefer: wait=10)")
    for col in ("order", "amount", "HTTP", "outcome"):
        table.add_column(col)
    rows, sms = 0, 0
    for order in SAMPLE_ORDERS:
        r = await client.post(url, json=order, headers={"Prefer": "wait=10"})
        body = r.json()
        if r.status_code == 422:
            outcome = "rejected: " + "; ".join(f"{e['field']}: {e['message']}"
                                               for e in body["errors"])
        else:
            outcome = ", ".join(f"{d['destination']}{'→' + d['target'] if d['target'] else ''}:"
                                f" {d['status']}" for d in body.get("deliveries", []))
            rows += 1
            sms += sum(d["destination"] == "oncall_sms" for d in body.get("deliveries", []))
        table.add_row(order["order_id"], str(order["amount"]), str(r.status_code), outcome)
    console.print(table)
    return {"rows": rows, "sms": sms}


async def _report(client: httpx.AsyncClient, emulator_url: str, expected: dict[str, int],
                  console: Console) -> int:
    sheet = (await client.get(f"{emulator_url}/_emulator/sheets/{SPREADSHEET}",
                              params={"sheet": "Orders"})).json()
    values = sheet.get("values", [])
    table = Table(title=f"Google Sheet {SPREADSHEET} · Orders (audit trail)")
    for col in ("received_at", "message_id", "order_id", "customer", "amount", "currency",
                "high_value"):
        table.add_column(col)
    for row in values:
        table.add_row(*(str(c) for c in row))
    console.print(table)
    texts = (await client.get(f"{emulator_url}/_emulator/sms")).json()
    sms_table = Table(title="SMS sent through Twilio (on-call)")
    for col in ("sid", "to", "body"):
        sms_table.add_column(col)
    for m in texts:
        sms_table.add_row(m["sid"], m["To"], m["Body"])
    console.print(sms_table)
    ok = len(values) == expected["rows"] and len(texts) == expected["sms"]
    verdict = "[green]OK[/]" if ok else "[red]MISMATCH[/]"
    console.print(f"{verdict}: {len(values)} sheet rows (expected {expected['rows']}), "
                  f"{len(texts)} SMS (expected {expected['sms']})")
    return 0 if ok else 1
