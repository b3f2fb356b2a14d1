"""Service accounts the emulated Google token endpoint knows, and their key files.

The emulator owns one service account (``alertpipe-emulator@alertpipe-emulator.iam...``) with a
2048-bit RSA key. ``write_credentials`` writes it as a service-account JSON file that
``google.oauth2.service_account.Credentials.from_service_account_file`` loads unchanged; its
``token_uri`` points at the emulator. A file this emulator wrote earlier is reused (same key), so a
restarted emulator still accepts the credentials a running engine holds. A file written by anyone
else is never overwritten.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from alertpipe.errors import CredentialsError

__all__ = ["EMULATOR_DOMAIN", "ServiceAccount", "read_service_account", "write_credentials"]

#: Every service account this emulator creates has an e-mail in this domain.
EMULATOR_DOMAIN = "alertpipe-emulator.iam.gserviceaccount.com"
DEFAULT_ACCOUNT_NAME = "alertpipe-emulator"
DEFAULT_PROJECT = "alertpipe-emulator"


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A Google service account: identity plus RSA key (the private key never leaves ``repr``)."""

    client_email: str
    client_id: str
    private_key_id: str
    project_id: str
    private_key: rsa.RSAPrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls, name: str = DEFAULT_ACCOUNT_NAME,
                 project_id: str = DEFAULT_PROJECT) -> ServiceAccount:
        """Create ``name@<project>.iam.gserviceaccount.com`` with a fresh 2048-bit RSA key."""
        return cls(
            client_email=f"{name}@{project_id}.iam.gserviceaccount.com",
            client_id=str(10**20 + secrets.randbelow(9 * 10**20)),
            private_key_id=secrets.token_hex(20),
            project_id=project_id,
            private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )

    @property
    def is_emulator_owned(self) -> bool:
        """True for accounts this emulator created (and may therefore overwrite)."""
        return self.client_email.endswith("@" + EMULATOR_DOMAIN)

    def private_key_pem(self) -> str:
        """The private key as PKCS#8 PEM, as Google writes it into key files."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def to_info(self, base_url: str) -> dict[str, str]:
        """The service-account JSON document, with ``token_uri`` = ``<base_url>/token``."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem(),
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": base_url.rstrip("/") + "/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/"
            + quote(self.client_email, safe=""),
            "universe_domain": "googleapis.com",
        }

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> ServiceAccount:
        """Load an account from a parsed service-account JSON document."""
        try:
            key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
            email = str(info["client_email"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CredentialsError("not a service-account key file") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise CredentialsError("service-account key is not an RSA key")
        return cls(
            client_email=email,
            client_id=str(info.get("client_id", "")),
            private_key_id=str(info.get("private_key_id", "")),
            project_id=str(info.get("project_id", email.split("@")[-1].split(".")[0])),
            private_key=key,
        )


def read_service_account(path: str | os.PathLike[str]) -> ServiceAccount:
    """Read a service-account key file (error messages name the file, never its content)."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"cannot read service-account file {os.fspath(path)}") from exc
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise CredentialsError(f"{os.fspath(path)} is not a service-account key file")
    return ServiceAccount.from_info(info)


def write_credentials(path: str | os.PathLike[str], base_url: str,
                      account: ServiceAccount | None = None) -> ServiceAccount:
    """Write a service-account JSON at ``path`` whose ``token_uri`` is ``<base_url>/token``.

    Without ``account``: reuse the key already in ``path`` when this emulator wrote it, else
    generate a new account. Refuses (``CredentialsError``) to overwrite a key file that belongs to
    anyone else. The file is written atomically with mode 0600. Returns the account written;
    register it with the emulator (``EmulatorState.add_account``) so its tokens are accepted —
    ``EmulatorHandle.write_credentials`` does both.
    """
    target = Path(path)
    if target.exists():
        existing = read_service_account(target)
        if not existing.is_emulator_owned:
            raise CredentialsError(
                f"refusing to overwrite {target}: it holds a service account not created by "
                "the alertpipe emulator")
        if account is None:
            account = existing
    if account is None:
        account = ServiceAccount.generate()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(account.to_info(base_url), handle, indent=2)
            handle.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return account
