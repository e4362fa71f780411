"""SSH key files: create (0600), load, fingerprint. Private keys never leave this machine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncssh

from gpuhive.errors import StateError
from gpuhive.fsutil import write_private

# AES-GCM first: with AES-NI it costs about half of asyncssh's chacha20-poly1305, which
# builds three cipher objects per packet (heartbeat ingest: 40-51 % → 35-38 % of a core).
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
           "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr")


def create_key(path: Path, comment: str) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    write_private(path, key.export_private_key("openssh"))
    path.with_suffix(".pub").write_bytes(key.export_public_key("openssh"))
    return key


def load_key(path: Path) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(str(path))
    except (OSError, asyncssh.KeyImportError) as exc:
        raise StateError(f"cannot read key {path}: {exc}",
                         hint="run `gpuhive init` (controller) or `gpuhive enroll` (node) first",
                         path=str(path)) from exc


def ensure_key(path: Path, comment: str) -> asyncssh.SSHKey:
    return load_key(path) if path.exists() else create_key(path, comment)


def public_text(key: asyncssh.SSHKey) -> str:
    """One-line OpenSSH public key without comment: the form stored and compared."""
    algo, blob = key.convert_to_public().export_public_key("openssh").decode().split()[:2]
    return f"{algo} {blob}"


def import_public(text: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise StateError(f"invalid public key {text[:40]!r}") from exc


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


@dataclass(frozen=True)
class PublicKeyInfo:
    """What the controller tells others about one of its keys: never the key object, so
    code outside transport/ holds no asyncssh types (and a test can make one from text)."""

    public_text: str  # "ssh-ed25519 AAAA…", as stored and compared
    fingerprint: str  # "SHA256:…", as join tokens pin it and `gpuhive status` shows it


def describe(key: asyncssh.SSHKey) -> PublicKeyInfo:
    return PublicKeyInfo(public_text(key), fingerprint(key))
