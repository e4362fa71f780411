"""Schema migrations: a 0.1.0 controller's databases upgrade in place with nothing lost."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from gpuhive.controller.db.registry_schema import REGISTRY_MIGRATIONS
from gpuhive.controller.job_store import JobStore
from gpuhive.controller.registry import Registry
from gpuhive.core.model import NodeStatus
from gpuhive.errors import StateError
from gpuhive.migrations import Migration, SchemaTooNew, check_order, migrate, version_of
from gpuhive.serve.gateway.apikeys import APIKEY_MIGRATIONS, ApiKeyStore

RELEASE_0_1_0 = Path(__file__).resolve().parents[1] / "data" / "registry" / "0.1.0"


@pytest.fixture
def old_home(tmp_path: Path) -> Path:
    """A copy of the databases a 0.1.0 controller wrote (tests/data/registry/make_fixture.py)."""
    for name in ("registry.db", "apikeys.db"):
        shutil.copy(RELEASE_0_1_0 / name, tmp_path / name)
    return tmp_path


def _schema(path: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(str(path))
    try:
        return sorted(db.execute("SELECT type, name, sql FROM sqlite_master "
                                 "WHERE name NOT LIKE 'sqlite_%'").fetchall())
    finally:
        db.close()


def test_the_fixture_is_a_0_1_0_database_without_a_version(old_home: Path) -> None:
    db = sqlite3.connect(str(old_home / "registry.db"))
    assert version_of(db) == 0  # 0.1.0 recorded none: the upgrade must cope with that
    assert db.execute("SELECT count(*) FROM nodes").fetchone()[0] == 3
    db.close()


def test_a_0_1_0_registry_upgrades_in_place_with_nothing_lost(old_home: Path) -> None:
    reg = Registry(old_home / "registry.db")
    assert (reg.migrated.from_version, reg.migrated.to_version) == (0, len(REGISTRY_MIGRATIONS))
    assert version_of(reg.connection) == len(REGISTRY_MIGRATIONS)
    live = {n.name: n for n in reg.list_nodes()}
    assert sorted(live) == ["alice", "bob"]
    alice = live["alice"]
    assert alice.status == NodeStatus.ONLINE and alice.forward_port == 40000
    assert alice.hardware is not None and alice.hardware.gpus[0].name == \
        "NVIDIA GeForce RTX 3090"
    assert alice.software and alice.software.torch == "2.13.0+cpu"
    assert alice.link and alice.link.rtt_ms == 21.5
    assert alice.overlay and alice.overlay.ip and alice.overlay.ip.startswith("10.77.")
    assert alice.tasks["finished"]
    assert live["bob"].status_reason == "missed 3 heartbeats"
    carol = reg.get_node("carol", include_removed=True)
    assert carol.status == NodeStatus.REMOVED and carol.removed_at is not None
    assert [e.event for e in reg.events(alice.id)] == ["registered", "online"]
    states = {t.name: t.state(1_763_800_100.0) for t in reg.list_tokens()}
    assert states == {"alice": "used", "bob": "used", "carol": "used", "dave": "valid",
                      "erin": "revoked"}
    job = JobStore(reg.connection).get("j-0a0b0c")
    assert (job.state, job.nodes, job.spec["script"]) == ("succeeded", ["alice", "bob"],
                                                         "llm.py")
    # the upgraded database can take new work: enroll-style writes still succeed
    rec, _ = reg.create_token("frank", 3600, 1, now=1_763_900_000.0)
    assert reg.get_token(rec.token_id) is not None
    reg.close()


def test_an_upgraded_registry_has_the_same_schema_as_a_new_one(old_home: Path,
                                                               tmp_path: Path) -> None:
    Registry(old_home / "registry.db").close()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    reg = Registry(fresh / "registry.db")
    JobStore(reg.connection)
    reg.close()
    assert _schema(old_home / "registry.db") == _schema(fresh / "registry.db")


def test_0_1_0_api_keys_upgrade_in_place(old_home: Path) -> None:
    store = ApiKeyStore(old_home / "apikeys.db")
    assert version_of(store.db) == len(APIKEY_MIGRATIONS)
    keys = {k.name: k for k in store.list(include_revoked=True)}
    assert keys["ci"].models == ("llama-7b",) and keys["ci"].limits.rpm == 60
    assert keys["old"].revoked_at is not None and keys["ci"].revoked_at is None
    store.close()


def test_a_database_newer_than_the_code_is_refused(old_home: Path) -> None:
    path = old_home / "registry.db"
    db = sqlite3.connect(str(path))
    db.execute(f"PRAGMA user_version = {len(REGISTRY_MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNew) as info:
        Registry(path)
    assert isinstance(info.value, StateError)
    assert "newer than this gpuhive knows" in info.value.message and info.value.hint
    assert info.value.data["version"] == len(REGISTRY_MIGRATIONS) + 1


def test_a_failing_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    db = sqlite3.connect(str(tmp_path / "x.db"), isolation_level=None)
    steps = [Migration(1, "table", "CREATE TABLE t (a INTEGER);\nINSERT INTO t VALUES (1);")]
    migrate(db, steps, "x")

    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (a) VALUES (2)")
        raise RuntimeError("disk on fire")
    bad = [*steps, Migration(2, "add column", "ALTER TABLE t ADD COLUMN b TEXT;"),
           Migration(3, "fails", boom)]
    with pytest.raises(RuntimeError):
        migrate(db, bad, "x")
    assert version_of(db) == 1
    assert db.execute("SELECT * FROM t").fetchall() == [(1,)]  # no column b, no row 2
    assert not db.in_transaction


def test_migrations_apply_once_in_order_and_again_is_a_no_op(tmp_path: Path) -> None:
    db = sqlite3.connect(str(tmp_path / "x.db"), isolation_level=None)
    calls: list[int] = []
    steps = [Migration(1, "a", "CREATE TABLE t (a INTEGER);"),
             Migration(2, "b", lambda c: calls.append(2)),
             Migration(3, "c", "ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'x';\n"
                               "CREATE INDEX t_c ON t(c);")]
    assert migrate(db, steps[:1], "x").applied == 1
    done = migrate(db, steps, "x")
    assert (done.from_version, done.to_version, calls) == (1, 3, [2])
    assert migrate(db, steps, "x").applied == 0 and calls == [2]
    with pytest.raises(ValueError):
        check_order([steps[0], steps[2]])
