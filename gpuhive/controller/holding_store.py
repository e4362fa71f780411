"""Holdings in the registry database (table ``holdings``, migration 2; ``core/holdings``).

``hold`` re-reads the live holdings and checks the new ones against them inside one
``BEGIN IMMEDIATE`` transaction, so two placements (in this daemon or in two processes)
can never both take one GPU: the second gets ``HoldingConflict`` naming the GPU and who
holds it. A holding is released, with a reason, when its node confirms the processes are
gone (or the node went offline); released rows stay for the ledger.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from gpuhive.core.holdings import HolderKind, Holding, NodeHeld, conflicts, summarize
from gpuhive.errors import StateError

_COLS = ("id, kind, owner, node_id, node, gpus, vram_mib, ram_mib, processes, placed_at,"
         " released_at, release_reason, client")


class HoldingConflict(StateError):
    code = "holding_conflict"


def new_holding(kind: HolderKind, owner: str, node_id: str, node: str, *, now: float,
                gpus: Sequence[int] = (), vram_mib: int = 0, ram_mib: int = 0,
                processes: int = 0, client: str = "owner") -> Holding:
    return Holding("h-" + secrets.token_hex(5), kind, owner, node_id, node, tuple(gpus),
                   vram_mib, ram_mib, processes, now, client=client)


class HoldingStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def hold(self, holdings: Sequence[Holding]) -> list[Holding]:
        """Record ``holdings`` all together, or none of them (``HoldingConflict``)."""
        with self._tx() as db:
            nodes = sorted({h.node_id for h in holdings})
            live = self._live(db, nodes)
            problems = conflicts(holdings, live)
            if problems:
                raise HoldingConflict("; ".join(problems),
                                      hint="placement runs again with what is free now")
            db.executemany(
                f"INSERT INTO holdings ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [_row(h) for h in holdings])
        return list(holdings)

    def release(self, owner: str, *, now: float, reason: str,
                node_id: str | None = None) -> list[Holding]:
        """Release the live holdings of ``owner`` (on one node, or everywhere)."""
        sql = f"SELECT {_COLS} FROM holdings WHERE owner = ? AND released_at IS NULL"
        args: tuple[Any, ...] = (owner,)
        if node_id is not None:
            sql += " AND node_id = ?"
            args += (node_id,)
        with self._tx() as db:
            rows = [_holding(r) for r in db.execute(sql, args).fetchall()]
            db.executemany("UPDATE holdings SET released_at = ?, release_reason = ?"
                           " WHERE id = ?", [(now, reason, h.id) for h in rows])
        return rows

    def release_node(self, node_id: str, *, now: float, reason: str) -> list[Holding]:
        """Release everything held on a node (it went offline or was removed)."""
        with self._tx() as db:
            rows = self._live(db, [node_id])
            db.executemany("UPDATE holdings SET released_at = ?, release_reason = ?"
                           " WHERE id = ?", [(now, reason, h.id) for h in rows])
        return rows

    def live(self, node_ids: Iterable[str] | None = None) -> list[Holding]:
        return self._live(self.db, None if node_ids is None else list(node_ids))

    def held_by_node(self) -> dict[str, NodeHeld]:
        """What placement subtracts, per node id."""
        return summarize(self._live(self.db, None))

    def of(self, owner: str, *, include_released: bool = False) -> list[Holding]:
        cond = "" if include_released else " AND released_at IS NULL"
        return [_holding(r) for r in self.db.execute(
            f"SELECT {_COLS} FROM holdings WHERE owner = ?{cond} ORDER BY placed_at, node",
            (owner,)).fetchall()]

    def overlapping(self, since: float, until: float) -> list[Holding]:
        """Every holding live at some moment of [since, until] (the ledger's input)."""
        return [_holding(r) for r in self.db.execute(
            f"SELECT {_COLS} FROM holdings WHERE placed_at <= ? AND"
            " (released_at IS NULL OR released_at >= ?) ORDER BY placed_at",
            (until, since)).fetchall()]

    @staticmethod
    def _live(db: sqlite3.Connection, node_ids: list[str] | None) -> list[Holding]:
        sql = f"SELECT {_COLS} FROM holdings WHERE released_at IS NULL"
        args: tuple[Any, ...] = ()
        if node_ids is not None:
            if not node_ids:
                return []
            sql += f" AND node_id IN ({','.join('?' * len(node_ids))})"
            args = tuple(node_ids)
        return [_holding(r) for r in db.execute(sql + " ORDER BY placed_at", args).fetchall()]


def _row(h: Holding) -> tuple[Any, ...]:
    return (h.id, h.kind.value, h.owner, h.node_id, h.node, json.dumps(list(h.gpus)),
            h.vram_mib, h.ram_mib, h.processes, h.placed_at, h.released_at,
            h.release_reason, h.client)


def _holding(r: tuple[Any, ...]) -> Holding:
    (id_, kind, owner, node_id, node, gpus, vram, ram, procs, placed, released, why,
     client) = r
    return Holding(id_, HolderKind(kind), owner, node_id, node, tuple(json.loads(gpus)),
                   vram, ram, procs, placed, released, why, client)
