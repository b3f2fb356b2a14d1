"""``alertpipe emulate`` run as a real process: it announces its URL, serves, stops on SIGTERM."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from alertpipe.cli import emulate

SRC = Path(emulate.__file__).resolve().parents[2]
LAUNCH = (
    "import argparse, sys\n"
    "from alertpipe.cli import emulate\n"
    "parser = argparse.ArgumentParser(prog='alertpipe')\n"
    "emulate.register(parser.add_subparsers())\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.func(args))\n"
)


def test_register_adds_the_subcommand() -> None:
    parser = argparse.ArgumentParser()
    emulate.register(parser.add_subparsers())
    args = parser.parse_args(["emulate", "--spreadsheet", "a", "--spreadsheet", "b",
                              "--quota", "5"])
    assert args.func is emulate.run
    assert (args.host, args.port, args.spreadsheet, args.quota) == ("127.0.0.1", 8099,
                                                                    ["a", "b"], 5)


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "TWILIO_AUTH_TOKEN": "cli-secret-token"}
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "emulate", "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    assert match, (line, proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
    return proc, match.group(1)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    return stderr


def test_emulate_serves_writes_credentials_and_stops_cleanly(tmp_path: Path) -> None:
    key_file = tmp_path / "sa.json"
    proc, url = _start(tmp_path, "--write-credentials", str(key_file), "--spreadsheet", "s-9",
                       "--quota", "7")
    try:
        info = json.loads(key_file.read_text())
        assert info["token_uri"] == f"{url}/token"
        assert httpx.get(f"{url}/_emulator/sheets/s-9").json()["values"] == []
    finally:
        stderr = _stop(proc)
    assert "cli-secret-token" not in stderr and "PRIVATE KEY" not in stderr

    proc, _ = _start(tmp_path, "--write-credentials", str(key_file))
    try:
        assert json.loads(key_file.read_text())["private_key"] == info["private_key"]
    finally:
        _stop(proc)
