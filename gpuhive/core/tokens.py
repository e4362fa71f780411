"""Join tokens: format, parsing and verification. Pure: the clock is passed in.

A token is ``ghv1_`` + base64url(JSON) carrying the token id, its secret, the controller's
endpoint and the SHA256 fingerprint of the controller's host key. The friend's side needs
nothing else: the fingerprint lets ``enroll`` refuse an impostor before the secret is sent.
The controller stores only ``hash_secret(secret)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from gpuhive.errors import (
    TokenExpired,
    TokenMalformed,
    TokenRevoked,
    TokenUnknown,
    TokenUsedUp,
)

PREFIX = "ghv1_"
_ID_RE = re.compile(r"^[0-9a-f]{12}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
_FP_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,253}$")
_MAX_TOKEN_LEN = 2048
_HINT = "copy the whole token printed by `gpuhive invite` on the controller"


@dataclass(frozen=True)
class JoinToken:
    token_id: str
    secret: str
    host: str
    port: int
    fingerprint: str  # "SHA256:..." of the controller's host key

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def encode(self) -> str:
        payload = {"id": self.token_id, "s": self.secret, "ep": self.endpoint,
                   "fp": self.fingerprint}
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class TokenRecord:
    """What the controller keeps of a token: never the secret itself."""

    token_id: str
    name: str
    secret_hash: str
    created_at: float
    expires_at: float
    max_uses: int
    uses: int = 0
    revoked_at: float | None = None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.uses >= self.max_uses:
            return "used"
        if now >= self.expires_at:
            return "expired"
        return "valid"


def hash_secret(secret: str) -> str:
    # Secrets are 192 random bits, so a plain SHA-256 is enough (no dictionary to defend against).
    return hashlib.sha256(secret.encode()).hexdigest()


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port)."""
    host, sep, port_s = endpoint.rpartition(":")
    if not sep or not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueError(f"not a host:port endpoint: {endpoint!r}")
    return host.strip("[]"), int(port_s)


def parse_token(text: str) -> JoinToken:
    """Decode a token string; every defect raises ``TokenMalformed`` saying which."""
    text = text.strip()
    if len(text) > _MAX_TOKEN_LEN:
        raise TokenMalformed(f"join token is too long ({len(text)} characters)", hint=_HINT)
    if not text.startswith(PREFIX):
        raise TokenMalformed(f"join token must start with {PREFIX!r}", hint=_HINT)
    body = text[len(PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        payload = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise TokenMalformed("join token is garbled (not valid base64 JSON)", hint=_HINT) from exc
    if not isinstance(payload, dict):
        raise TokenMalformed("join token is garbled (payload is not an object)", hint=_HINT)
    fields = {}
    for key in ("id", "s", "ep", "fp"):
        value = payload.get(key)
        if not isinstance(value, str):
            raise TokenMalformed(f"join token lacks field {key!r}", hint=_HINT)
        fields[key] = value
    if not _ID_RE.match(fields["id"]):
        raise TokenMalformed("join token has an invalid id", hint=_HINT)
    if not _SECRET_RE.match(fields["s"]):
        raise TokenMalformed("join token has an invalid secret", hint=_HINT)
    if not _FP_RE.match(fields["fp"]):
        raise TokenMalformed("join token has an invalid host key fingerprint", hint=_HINT)
    try:
        host, port = split_endpoint(fields["ep"])
    except ValueError as exc:
        raise TokenMalformed(f"join token has an invalid endpoint {fields['ep']!r}",
                             hint=_HINT) from exc
    if not _HOST_RE.match(host):
        raise TokenMalformed(f"join token has an invalid host {host!r}", hint=_HINT)
    return JoinToken(fields["id"], fields["s"], host, port, fields["fp"])


def split_credential(credential: str) -> tuple[str, str]:
    """The ``id.secret`` pair sent as the SSH password at enroll."""
    token_id, sep, secret = credential.partition(".")
    if not sep or not _ID_RE.match(token_id) or not _SECRET_RE.match(secret):
        raise TokenMalformed("enroll credential is not of the form id.secret", hint=_HINT)
    return token_id, secret


def verify(record: TokenRecord | None, token_id: str, secret: str, now: float) -> None:
    """Raise the specific token error, or return if the token may be used once more."""
    if record is None:
        raise TokenUnknown(f"join token {token_id} is not known to this controller",
                           hint="ask the owner for a new token (`gpuhive invite`)",
                           token_id=token_id)
    # Compare before reporting state so a wrong secret never learns whether the id expired.
    if not hmac.compare_digest(record.secret_hash, hash_secret(secret)):
        raise TokenUnknown(f"join token {token_id} is not known to this controller",
                           hint="ask the owner for a new token (`gpuhive invite`)",
                           token_id=token_id)
    state = record.state(now)
    if state == "revoked":
        raise TokenRevoked(f"join token {token_id} was revoked",
                           hint="ask the owner for a new token", token_id=token_id)
    if state == "used":
        raise TokenUsedUp(f"join token {token_id} has been used {record.uses} of "
                          f"{record.max_uses} time(s)",
                          hint="ask the owner for a new token", token_id=token_id)
    if state == "expired":
        raise TokenExpired(f"join token {token_id} expired", hint="ask the owner for a new token",
                           token_id=token_id, expired_at=record.expires_at)


_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``24h``, ``7d``, ``1w`` → seconds."""
    m = _DURATION_RE.match(text.strip().lower())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 24h, 7d)")
    return float(m.group(1)) * _UNIT[m.group(2)]
