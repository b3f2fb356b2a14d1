"""Config loading: ${ENV} interpolation, and errors that name the file, the channel and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertpipe.config import load_config
from alertpipe.engine import Engine
from alertpipe.errors import ConfigError, CredentialsError
from alertpipe.store import MemoryStore

REPO = Path(__file__).resolve().parents[2]
GOOD_ENV = {
    "SHEETS_SPREADSHEET_ID": "sheet-1", "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/sa.json",
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "s3cr3t-token-value",
    "TWILIO_FROM_NUMBER": "+15017122661", "ALERT_SMS_TO": "+15558675310,+15558675311",
}


def test_shipped_config_loads_with_env() -> None:
    cfg = load_config(REPO / "alertpipe.yaml", environ=GOOD_ENV)
    ch = cfg.channels["orders"]
    assert ch.destinations["oncall_sms"]["to"] == "+15558675310,+15558675311"
    assert ch.destinations["oncall_sms"]["template"].startswith("High-value order {order_id}: $")
    assert cfg.engine.http.port == 8080 and ch.vars["threshold"] == "300"


def test_every_missing_variable_is_named_with_its_key() -> None:
    env = {k: v for k, v in GOOD_ENV.items() if k not in ("TWILIO_ACCOUNT_SID", "ALERT_SMS_TO")}
    with pytest.raises(ConfigError) as info:
        load_config(REPO / "alertpipe.yaml", environ=env)
    msg = str(info.value)
    assert "alertpipe.yaml" in msg and "TWILIO_ACCOUNT_SID" in msg and "ALERT_SMS_TO" in msg
    assert "channel 'orders' key 'destinations.oncall_sms.account_sid'" in msg


def test_unknown_key_names_file_channel_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("channels:\n  orders:\n    destinations: {a: {type: x}}\n    retyr: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: channel 'orders': key 'retyr': unknown key"


def test_bad_step_and_route_are_named(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("channels:\n  orders:\n    steps:\n      - route: [{to: nowhere}]\n"
                 "    destinations: {audit: {type: google_sheets, spreadsheet_id: x,"
                 " credentials_file: /x}}\n")
    cfg = load_config(p)
    with pytest.raises(ConfigError) as info:
        Engine(cfg, store=MemoryStore())
    assert info.value.channel == "orders" and info.value.key == "steps.0.route.0.to"
    assert "unknown destination 'nowhere'" in str(info.value)


def test_unsafe_expression_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("channels:\n  orders:\n    steps:\n      - filter: __import__('os')\n"
                 "    destinations: {audit: {type: google_sheets, spreadsheet_id: x,"
                 " credentials_file: /x}}\n")
    with pytest.raises(ConfigError) as info:
        Engine(load_config(p), store=MemoryStore())
    assert info.value.key is not None and info.value.key.startswith("steps.0.filter")


def test_missing_credentials_file_fails_at_start_without_secrets() -> None:
    cfg = load_config(REPO / "alertpipe.yaml", environ=GOOD_ENV)
    engine = Engine(cfg, store=MemoryStore())
    with pytest.raises(CredentialsError) as info:
        engine.check()
    assert "/nonexistent/sa.json" in str(info.value)
    assert GOOD_ENV["TWILIO_AUTH_TOKEN"] not in str(info.value)


def test_twilio_without_token_or_key_is_named(tmp_path: Path) -> None:
    sa = tmp_path / "sa.json"
    from alertpipe.emulators import write_credentials
    write_credentials(sa, "http://127.0.0.1:1")
    env = {**GOOD_ENV, "GOOGLE_APPLICATION_CREDENTIALS": str(sa), "TWILIO_AUTH_TOKEN": ""}
    engine = Engine(load_config(REPO / "alertpipe.yaml", environ=env), store=MemoryStore())
    with pytest.raises(CredentialsError) as info:
        engine.check()
    assert "TWILIO_AUTH_TOKEN" in str(info.value) and info.value.channel == "orders"


def test_dotenv_beside_config_is_read_but_never_overrides(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT_FROM_DOTENV=9000\nNAME=fromfile\n")
    p = tmp_path / "c.yaml"
    p.write_text("engine: {http: {port: '${PORT_FROM_DOTENV}'}}\nchannels:\n  ${NAME}:\n"
                 "    destinations: {a: {type: x}}\n")
    cfg = load_config(p, environ={"NAME": "fromenv"})
    assert cfg.engine.http.port == 9000
