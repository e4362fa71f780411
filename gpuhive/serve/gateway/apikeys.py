"""Gateway API keys in SQLite (WAL). Only a hash of each secret is stored.

A key reads ``ghk_<id>_<secret>``: ``id`` (12 hex) finds the row, ``secret`` (32 random
bytes, base64url) is checked against its sha256 in constant time. A fast hash is right
here: the secret is random, not a password, so there is nothing to brute-force.

Every ``authenticate`` reads the row, so a revocation from another process (the CLI)
takes effect on the gateway's next request. The CLI creates keys through this class too
(``create`` returns the only copy of the secret).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuhive.core.names import did_you_mean
from gpuhive.errors import KeyNotFound
from gpuhive.migrations import Migration, migrate
from gpuhive.serve.errors import AuthError, PermissionDenied, ServeError
from gpuhive.serve.gateway.ratelimit import KeyLimits

# Version 1 is release 0.1.0's schema, verbatim; append migrations, never edit one.
V1_RELEASE_0_1_0 = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    models TEXT NOT NULL,
    rpm INTEGER,
    tokens_per_day INTEGER,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_live_name ON api_keys(name) WHERE revoked_at IS NULL;
"""
APIKEY_MIGRATIONS = (Migration(1, "release 0.1.0: api keys", V1_RELEASE_0_1_0),)
_TOKEN = re.compile(r"^ghk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
ALL_MODELS = "*"
_COLS = "id, name, models, rpm, tokens_per_day, created_at, revoked_at"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    models: tuple[str, ...]  # ("*",) = every model
    limits: KeyLimits
    created_at: float
    revoked_at: float | None = None

    def allows(self, model: str) -> bool:
        return ALL_MODELS in self.models or model in self.models

    def check_model(self, model: str) -> None:
        if not self.allows(model):
            raise PermissionDenied(f"this API key may not use model {model!r}",
                                   hint="ask the hive owner to widen the key's model scope",
                                   api_code="model_not_allowed", param="model", model=model,
                                   key=self.key_id)

    def to_dict(self) -> dict[str, object]:
        return {"id": self.key_id, "name": self.name, "models": list(self.models),
                "rpm": self.limits.rpm, "tokens_per_day": self.limits.tokens_per_day,
                "created_at": self.created_at, "revoked_at": self.revoked_at}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                  timeout=5.0)
        self.db.execute("PRAGMA journal_mode=WAL")
        migrate(self.db, APIKEY_MIGRATIONS, "API keys")
        path.chmod(0o600)

    def close(self) -> None:
        self.db.close()

    def create(self, name: str, *, now: float, models: tuple[str, ...] = (ALL_MODELS,),
               rpm: int | None = None, tokens_per_day: int | None = None) -> tuple[str, ApiKey]:
        """A new key; returns (the secret token, shown once, and the stored record)."""
        if not name or not models:
            raise ServeError("a key needs a name and at least one model (or '*')",
                             hint="e.g. --models llama-7b or --models '*'")
        for limit, value in (("rpm", rpm), ("tokens_per_day", tokens_per_day)):
            if value is not None and value < 1:
                raise ServeError(f"{limit} must be at least 1 (or unset for no limit)",
                                 hint=f"drop --{limit.replace('_', '-')} for no limit")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        try:
            self.db.execute(
                "INSERT INTO api_keys (id, name, secret_hash, models, rpm, tokens_per_day,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key_id, name, _hash(secret), json.dumps(list(models)), rpm, tokens_per_day,
                 now))
        except sqlite3.IntegrityError as exc:
            raise ServeError(f"an active API key named {name!r} already exists",
                             hint="revoke it first or pick another name", name=name) from exc
        return f"ghk_{key_id}_{secret}", self._get(key_id)

    def authenticate(self, token: str | None) -> ApiKey:
        """The key for a Bearer token, or ``AuthError`` (missing, malformed, unknown, revoked)."""
        if not token:
            raise AuthError("missing API key", api_code="missing_api_key",
                            hint="send `Authorization: Bearer ghk_…` "
                            "(create one with `gpuhive keys create`)")
        m = _TOKEN.match(token)
        row = self.db.execute(f"SELECT {_COLS}, secret_hash FROM api_keys WHERE id = ?",
                              (m.group(1),)).fetchone() if m else None
        if m is None or row is None or not hmac.compare_digest(row[-1], _hash(m.group(2))):
            raise AuthError("invalid API key", api_code="invalid_api_key",
                            hint="check the key; `gpuhive keys ls` shows the valid ones")
        key = _key(row)
        if key.revoked_at is not None:
            raise AuthError("this API key has been revoked", api_code="revoked_api_key",
                            hint="ask the hive owner for a new key", key=key.key_id)
        return key

    def revoke(self, id_or_name: str, *, now: float) -> ApiKey:
        cur = self.db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE revoked_at IS NULL AND (id = ? OR name = ?)",
            (now, id_or_name, id_or_name))
        if cur.rowcount == 0:
            raise self._not_active(id_or_name)
        row = self.db.execute("SELECT id FROM api_keys WHERE revoked_at = ? AND (id = ? OR "
                              "name = ?)", (now, id_or_name, id_or_name)).fetchone()
        return self._get(row[0])

    def _not_active(self, id_or_name: str) -> KeyNotFound:
        """Why no active key answers to ``id_or_name``: revoked already, or never there (and
        which active names and ids are close)."""
        keys = self.list(include_revoked=True)
        if any(id_or_name in (k.key_id, k.name) for k in keys):
            return KeyNotFound(f"API key {id_or_name!r} is already revoked",
                               hint="nothing to do; `gpuhive keys ls` shows every key",
                               key=id_or_name)
        active = [x for k in keys if k.revoked_at is None for x in (k.name, k.key_id)]
        return KeyNotFound(f"no active API key {id_or_name!r}",
                           hint=did_you_mean(id_or_name, active)
                           + "`gpuhive keys ls` shows the active ones", key=id_or_name)

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        sql = "SELECT id FROM api_keys" + ("" if include_revoked else
                                           " WHERE revoked_at IS NULL") + " ORDER BY created_at"
        return [self._get(r[0]) for r in self.db.execute(sql).fetchall()]

    def _get(self, key_id: str) -> ApiKey:
        row = self.db.execute(f"SELECT {_COLS} FROM api_keys WHERE id = ?",
                              (key_id,)).fetchone()
        if row is None:
            raise KeyNotFound(f"no API key {key_id!r}", hint="`gpuhive keys ls` lists them",
                              key=key_id)
        return _key(row)


def _key(row: tuple[Any, ...]) -> ApiKey:
    return ApiKey(key_id=row[0], name=row[1], models=tuple(json.loads(row[2])),
                  limits=KeyLimits(rpm=row[3], tokens_per_day=row[4]), created_at=row[5],
                  revoked_at=row[6])
