"""``alertpipe apikey new`` prints a key once and a config entry that holds only its hash."""

from __future__ import annotations

import re

import pytest
import yaml

from alertpipe.auth import Authenticator, hash_key
from alertpipe.cli.main import main
from alertpipe.config.model import ApiKeySettings


def test_new_key_entry_authenticates_that_key_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apikey", "new", "--id", "shop-eu", "--channel", "orders"]) == 0
    out = capsys.readouterr().out
    key = re.search(r"shown once; give it to the client\): (\S+)", out).group(1)  # type: ignore[union-attr]
    entry = yaml.safe_load(out.split("engine.api_keys:\n", 1)[1])[0]
    assert entry["sha256"] == hash_key(key) and key not in out.split("engine.api_keys:")[1]
    auth = Authenticator([ApiKeySettings.model_validate(entry)])
    assert auth.identify(key) is not None and auth.identify(key + "x") is None
    assert entry["channels"] == ["orders"] and entry["rights"] == ["ingest"]
