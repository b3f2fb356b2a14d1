"""``alertpipe user hash``: the hash it prints verifies the password and fits the config."""

from __future__ import annotations

import io

import pytest
import yaml

from alertpipe.cli.main import main
from alertpipe.config.model import EngineSettings
from alertpipe.web.passwords import verify_password


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stdin: str,
        *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["user", "hash", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_hash_from_stdin(monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(monkeypatch, capsys, "correct horse battery\n")
    assert code == 0
    digest = out.strip()
    assert digest.startswith("scrypt$32768$8$1$")
    assert verify_password("correct horse battery", digest)
    assert "correct horse" not in out


def test_config_entry_loads_as_a_user(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(monkeypatch, capsys, "s3cret-enough\n", "--name", "otto", "--role",
                       "operator")
    assert code == 0
    entry = yaml.safe_load(out.split("engine.users:\n", 1)[1])
    [user] = EngineSettings.model_validate({"users": entry}).users
    assert (user.name, user.role) == ("otto", "operator")
    assert verify_password("s3cret-enough", user.password_hash)


def test_short_password_is_refused(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(monkeypatch, capsys, "short\n")
    assert code == 2 and out == "" and "at least 8" in err
