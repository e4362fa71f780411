import base64
import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuhive.core import tokens
from gpuhive.errors import (
    TokenExpired,
    TokenMalformed,
    TokenRevoked,
    TokenUnknown,
    TokenUsedUp,
)

FP = "SHA256:" + "A" * 43
GOOD = tokens.JoinToken("0123456789ab", "s" * 32, "198.18.0.1", 2222, FP)


def _raw(payload: object) -> str:
    return tokens.PREFIX + base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def test_round_trip() -> None:
    assert tokens.parse_token(GOOD.encode()) == GOOD
    assert tokens.parse_token("  " + GOOD.encode() + "\n") == GOOD


def test_ipv6_endpoint_round_trip() -> None:
    tok = tokens.JoinToken("0123456789ab", "s" * 32, "fd00::1", 2222, FP)
    assert tokens.parse_token(tok.encode()).host == "fd00::1"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "must start with"),
        ("ghv2_abc", "must start with"),
        ("ghv1_!!!!", "garbled"),
        (tokens.PREFIX + base64.urlsafe_b64encode(b"not json").decode(), "garbled"),
        (_raw([1, 2]), "not an object"),
        (_raw({"id": "0123456789ab", "s": "s" * 32, "ep": "h:1"}), "lacks field 'fp'"),
        (_raw({"id": "XYZ", "s": "s" * 32, "ep": "h:1", "fp": FP}), "invalid id"),
        (_raw({"id": "0123456789ab", "s": "short", "ep": "h:1", "fp": FP}), "invalid secret"),
        (_raw({"id": "0123456789ab", "s": "s" * 32, "ep": "h:1", "fp": "MD5:x"}),
         "fingerprint"),
        (_raw({"id": "0123456789ab", "s": "s" * 32, "ep": "nohost", "fp": FP}), "endpoint"),
        (_raw({"id": "0123456789ab", "s": "s" * 32, "ep": "h:99999", "fp": FP}), "endpoint"),
        (_raw({"id": "0123456789ab", "s": "s" * 32, "ep": "a b:22", "fp": FP}), "invalid host"),
        ("ghv1_" + "A" * 5000, "too long"),
    ],
)
def test_malformed_tokens_say_why(text: str, why: str) -> None:
    with pytest.raises(TokenMalformed, match=why) as info:
        tokens.parse_token(text)
    assert info.value.hint  # every error says what to do


@given(st.text(max_size=300))
def test_parse_never_raises_anything_but_malformed(text: str) -> None:
    with contextlib.suppress(TokenMalformed):
        tokens.parse_token(text)


@given(st.binary(max_size=300))
def test_parse_of_random_payloads(data: bytes) -> None:
    text = tokens.PREFIX + base64.urlsafe_b64encode(data).decode().rstrip("=")
    with contextlib.suppress(TokenMalformed):
        tokens.parse_token(text)


def _record(**kw: object) -> tokens.TokenRecord:
    base: dict[str, object] = dict(token_id="0123456789ab", name="alice",
                                   secret_hash=tokens.hash_secret("s" * 32), created_at=100.0,
                                   expires_at=200.0, max_uses=1)
    base.update(kw)
    return tokens.TokenRecord(**base)  # type: ignore[arg-type]


def test_verify_valid_token_passes() -> None:
    tokens.verify(_record(), "0123456789ab", "s" * 32, now=150.0)


@pytest.mark.parametrize(
    ("record", "secret", "now", "error"),
    [
        (None, "s" * 32, 150.0, TokenUnknown),
        (_record(), "t" * 32, 150.0, TokenUnknown),  # wrong secret looks unknown
        (_record(revoked_at=120.0), "s" * 32, 150.0, TokenRevoked),
        (_record(uses=1), "s" * 32, 150.0, TokenUsedUp),
        (_record(), "s" * 32, 200.0, TokenExpired),  # expiry instant is already expired
        (_record(revoked_at=120.0), "t" * 32, 300.0, TokenUnknown),  # no state leak
    ],
)
def test_verify_errors_are_distinct(record: tokens.TokenRecord | None, secret: str, now: float,
                                    error: type[Exception]) -> None:
    with pytest.raises(error):
        tokens.verify(record, "0123456789ab", secret, now)


def test_multi_use_token_counts_uses() -> None:
    rec = _record(max_uses=3, uses=2)
    tokens.verify(rec, "0123456789ab", "s" * 32, now=150.0)
    assert _record(max_uses=3, uses=3).state(150.0) == "used"


def test_secret_is_stored_only_as_hash() -> None:
    h = tokens.hash_secret("s" * 32)
    assert "s" * 32 not in h and len(h) == 64


def test_split_credential() -> None:
    assert tokens.split_credential("0123456789ab." + "s" * 32) == ("0123456789ab", "s" * 32)
    with pytest.raises(TokenMalformed):
        tokens.split_credential("nodot")


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("30s", 30), ("15m", 900),
                                               ("24h", 86400), ("7d", 604800), ("1w", 604800)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert tokens.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "-1h", "1y", "h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        tokens.parse_duration(text)
