"""WireGuard keys: X25519, 32 raw bytes, written as standard base64 (44 chars).

Each node makes its own pair; the private key never leaves the machine. Private keys are
clamped the way ``wg genkey`` does, so files made here and by ``wg`` look the same.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gpuhive.fsutil import write_private
from gpuhive.overlay.errors import OverlayError

_RAW = serialization.Encoding.Raw


@dataclass(frozen=True)
class KeyPair:
    private_key: str = field(repr=False)  # never in logs or reprs
    public_key: str


def _decode(key: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(key.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OverlayError(f"{what} is not base64",
                           hint="a WireGuard key is 44 base64 characters, as `wg genkey` prints"
                           ) from exc
    if len(raw) != 32:
        raise OverlayError(f"{what} has {len(raw)} bytes, not 32",
                           hint="a WireGuard key is 44 base64 characters, as `wg genkey` prints")
    return raw


def _clamp(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[0] &= 248
    b[31] = (b[31] & 127) | 64
    return bytes(b)


def generate_private_key() -> str:
    raw = X25519PrivateKey.generate().private_bytes(
        _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(_clamp(raw)).decode()


def public_key(private_key: str) -> str:
    """The public half of a base64 private key (what ``wg pubkey`` prints)."""
    priv = X25519PrivateKey.from_private_bytes(_decode(private_key, "private key"))
    return base64.b64encode(priv.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)
                            ).decode()


def is_valid_key(key: str) -> bool:
    try:
        _decode(key, "key")
    except OverlayError:
        return False
    return True


def generate_keypair() -> KeyPair:
    priv = generate_private_key()
    return KeyPair(priv, public_key(priv))


def load_or_create(path: Path) -> KeyPair:
    """The key pair whose private half is in ``path`` (0600); made there if absent."""
    if path.exists():
        priv = path.read_text().strip()
        return KeyPair(priv, public_key(priv))
    pair = generate_keypair()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, pair.private_key + "\n")
    return pair
