"""Demo mode: what the emulators received, read from their inspection endpoints
(``/_emulator/sms`` and ``/_emulator/sheets/{id}``), so a new user sees the whole flow, from an
order posted to the SMS on the on-call phone and the row in the Sheet, in the browser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from alertpipe.engine.core import Engine

TIMEOUT = 5.0

__all__ = ["DemoSheet", "demo_sheets", "demo_sms"]


@dataclass(frozen=True, slots=True)
class DemoSheet:
    destination: str
    spreadsheet_id: str
    sheet: str
    columns: list[str]
    rows: list[list[Any]]


async def _get(url: str, params: dict[str, str] | None = None) -> Any:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        r = await client.get(url, params=params)
        r.raise_for_status()
        return r.json()


async def demo_sms(base: str) -> tuple[list[dict[str, Any]], str | None]:
    """The texts the Twilio emulator accepted, newest first; or an error sentence."""
    try:
        texts = await _get(f"{base.rstrip('/')}/_emulator/sms")
    except (httpx.HTTPError, ValueError) as exc:
        return [], f"the emulator at {base} did not answer: {type(exc).__name__}"
    keep = ("sid", "received_at", "From", "To", "MessagingServiceSid", "Body")
    return [{k: t.get(k) for k in keep} for t in reversed(texts) if isinstance(t, dict)], None


async def demo_sheets(engine: Engine, base: str) -> tuple[list[DemoSheet], str | None]:
    """The rows of every spreadsheet a Google Sheets destination of the engine writes to."""
    out: list[DemoSheet] = []
    for ch in engine.channels.values():
        for name, dest in ch.destinations.items():
            cfg = dest.config
            spreadsheet = getattr(cfg, "spreadsheet_id", None)
            if dest.type_name != "google_sheets" or not spreadsheet:
                continue
            sheet = str(getattr(cfg, "range", "")).split("!")[0].strip("'") or ""
            try:
                data = await _get(f"{base.rstrip('/')}/_emulator/sheets/{spreadsheet}",
                                  {"sheet": sheet} if sheet else None)
            except (httpx.HTTPError, ValueError) as exc:
                return out, (f"the emulator at {base} did not answer for spreadsheet "
                             f"{spreadsheet}: {type(exc).__name__}")
            out.append(DemoSheet(destination=f"{ch.name}/{name}", spreadsheet_id=spreadsheet,
                                 sheet=str(data.get("sheet", sheet)),
                                 columns=[str(c) for c in getattr(cfg, "columns", [])],
                                 rows=list(data.get("values", []))))
    return out, None
