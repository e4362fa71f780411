import stat
from pathlib import Path

import pytest

from gpuhive.errors import KeyNotFound
from gpuhive.serve.errors import AuthError, PermissionDenied, ServeError
from gpuhive.serve.gateway.apikeys import ApiKeyStore


def test_create_authenticate_scope_and_hash_only(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.db")
    token, key = store.create("alice", now=1.0, models=("tiny-test",), rpm=5)
    assert token.startswith("ghk_") and key.limits.rpm == 5
    assert store.authenticate(token).key_id == key.key_id
    key.check_model("tiny-test")
    with pytest.raises(PermissionDenied) as info:
        key.check_model("llama-7b")
    assert info.value.status == 403 and info.value.body()["error"]["code"] == "model_not_allowed"
    secret = token.rsplit("_", 1)[1]
    assert secret.encode() not in (tmp_path / "keys.db").read_bytes()
    assert stat.S_IMODE((tmp_path / "keys.db").stat().st_mode) == 0o600


@pytest.mark.parametrize("token", [None, "", "nope", "ghk_zzz_abc",
                                   "ghk_" + "0" * 12 + "_" + "a" * 43])
def test_missing_malformed_and_unknown_keys(tmp_path: Path, token: str | None) -> None:
    store = ApiKeyStore(tmp_path / "keys.db")
    store.create("x", now=0.0)
    with pytest.raises(AuthError) as info:
        store.authenticate(token)
    assert info.value.status == 401


def test_wrong_secret_for_a_real_id(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.db")
    token, _ = store.create("x", now=0.0)
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(AuthError, match="invalid"):
        store.authenticate(forged)


def test_revocation_is_seen_by_another_connection_at_once(tmp_path: Path) -> None:
    gateway_side = ApiKeyStore(tmp_path / "keys.db")
    cli_side = ApiKeyStore(tmp_path / "keys.db")
    token, key = cli_side.create("bob", now=0.0)
    assert gateway_side.authenticate(token).name == "bob"
    revoked = cli_side.revoke("bob", now=5.0)
    assert revoked.revoked_at == 5.0
    with pytest.raises(AuthError, match="revoked") as info:
        gateway_side.authenticate(token)
    assert info.value.api_code == "revoked_api_key"
    assert [k.name for k in cli_side.list()] == []
    assert [k.key_id for k in cli_side.list(include_revoked=True)] == [key.key_id]
    with pytest.raises(KeyNotFound, match="already revoked"):
        cli_side.revoke("bob", now=6.0)
    cli_side.create("bob", now=7.0)  # the name is free again


def test_duplicate_names_and_bad_limits(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "keys.db")
    store.create("x", now=0.0)
    with pytest.raises(ServeError, match="already exists"):
        store.create("x", now=0.0)
    with pytest.raises(ServeError, match="rpm"):
        store.create("y", now=0.0, rpm=0)
    with pytest.raises(ServeError):
        store.create("z", now=0.0, models=())
