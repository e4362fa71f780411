"""Numbered schema migrations for gpuhive's SQLite databases.

Each database (the registry, the API keys) has an ordered list of ``Migration`` s; the
number of the last one applied is the database's ``PRAGMA user_version``. ``migrate``
applies the missing ones in order, all inside one ``BEGIN IMMEDIATE`` transaction, so two
processes opening the same file (the daemon and a CLI) cannot both apply one, and a
migration that fails leaves the database exactly as it was.

Version 1 of every database is its 0.1.0 schema, written with ``IF NOT EXISTS``: 0.1.0 had
no version (``user_version`` 0), so its databases simply take version 1 with nothing to
change. A database whose version is newer than the code knows is refused: an older
gpuhive must not write into a schema it does not understand.

Adding a migration (docs/architecture.md, "Registry migrations"): append
``Migration(N + 1, "what it does", "ALTER TABLE …")`` (or a function of the connection) to
the database's list, never edit a released one, and extend the upgrade test that starts from
the previous release's database in ``tests/data/registry/``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpuhive.errors import StateError

Step = str | Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    step: Step  # SQL statements, or a function of the connection (inside the transaction)


@dataclass(frozen=True)
class Migrated:
    database: str
    from_version: int
    to_version: int

    @property
    def applied(self) -> int:
        return self.to_version - self.from_version


class SchemaTooNew(StateError):
    code = "schema_too_new"


def check_order(migrations: Sequence[Migration]) -> None:
    """Versions are 1, 2, 3 … with no gap or repeat (a mistake here must fail at import)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1..{len(versions)} in order: {versions}")


def version_of(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection, migrations: Sequence[Migration], database: str) -> Migrated:
    """Bring ``db`` (autocommit mode) to the last of ``migrations``; what was done."""
    check_order(migrations)
    latest = len(migrations)
    if version_of(db) == latest:  # the usual case: nothing to lock
        return Migrated(database, latest, latest)
    db.execute("BEGIN IMMEDIATE")
    try:
        current = version_of(db)
        if current > latest:
            raise SchemaTooNew(
                f"the {database} database has schema version {current}, newer than this "
                f"gpuhive knows ({latest})",
                hint="upgrade gpuhive to the release that wrote it, or restore a backup made "
                     "with this version", database=database, version=current, known=latest)
        for m in migrations[current:]:
            if isinstance(m.step, str):
                for statement in _statements(m.step):
                    db.execute(statement)
            else:
                m.step(db)
        db.execute(f"PRAGMA user_version = {latest}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return Migrated(database, current, latest)


def _statements(sql: str) -> list[str]:
    """Split a script on ``;`` (executescript would commit the open transaction)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buf.strip()[:80]!r}")
    return [s for s in out if s.strip(" ;\n")]
