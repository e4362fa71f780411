"""WireGuard keys made with `cryptography` match what `wg` makes and expects."""

from __future__ import annotations

import base64
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from gpuhive.overlay import keys
from gpuhive.overlay.errors import OverlayError

# RFC 7748 section 6.1 test vector (Alice), in WireGuard's base64 form.
ALICE_PRIV = base64.b64encode(bytes.fromhex(
    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")).decode()
ALICE_PUB = base64.b64encode(bytes.fromhex(
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")).decode()


def test_public_from_private_matches_rfc7748() -> None:
    assert keys.public_key(ALICE_PRIV) == ALICE_PUB


def test_generated_pair_is_wireguard_format_and_clamped() -> None:
    pair = keys.generate_keypair()
    raw = base64.b64decode(pair.private_key)
    assert len(pair.private_key) == len(pair.public_key) == 44
    assert raw[0] & 7 == 0 and raw[31] & 0x80 == 0 and raw[31] & 0x40
    assert keys.public_key(pair.private_key) == pair.public_key
    assert pair.private_key not in repr(pair)
    assert keys.generate_keypair() != pair


@pytest.mark.skipif(shutil.which("wg") is None, reason="wireguard-tools not installed")
def test_agrees_with_wg_pubkey() -> None:
    pair = keys.generate_keypair()
    out = subprocess.run(["wg", "pubkey"], input=pair.private_key + "\n", text=True,
                         capture_output=True, check=True).stdout.strip()
    assert out == pair.public_key


@pytest.mark.parametrize("bad", ["", "not base64!", base64.b64encode(b"x" * 31).decode()])
def test_bad_keys_are_overlay_errors(bad: str) -> None:
    assert not keys.is_valid_key(bad)
    with pytest.raises(OverlayError, match="key"):
        keys.public_key(bad)


def test_load_or_create_writes_0600_once(tmp_path: Path) -> None:
    path = tmp_path / "wg" / "private.key"
    first = keys.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first.private_key
    assert keys.load_or_create(path) == first
