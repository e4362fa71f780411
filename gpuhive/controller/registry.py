"""The node registry: SQLite in WAL mode. Stores public keys and token hashes, never secrets.

Its schema is ``controller/db/registry_schema.py``, applied by numbered migrations when the
registry opens (``gpuhive.migrations``).

All writes that must be atomic (consume a token and create a node, allocate a forward port)
run inside one ``BEGIN IMMEDIATE`` transaction, so two enrollments racing on one token or one
port cannot both win, even from two processes.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from gpuhive.controller.db.registry_schema import REGISTRY_MIGRATIONS
from gpuhive.core import fact_codec, tokens
from gpuhive.core.model import Hardware, NodeEvent, NodeKind, NodeRecord, NodeStatus
from gpuhive.core.names import did_you_mean
from gpuhive.core.node_facts import LinkMeasure, OverlayFacts, SoftwareFacts
from gpuhive.errors import EnrollRefused, NodeNotFound, StateError, TokenUnknown
from gpuhive.migrations import migrate
from gpuhive.overlay import addressing

_NODE_COLS = ("id, name, kind, public_key, host_key, forward_port, address, hostname, hardware,"
              " status, status_reason, agent_state, registered_at, last_heartbeat,"
              " connected_since, public_addr, removed_at, software, policy, reliability, tasks,"
              " thermal_events, link, overlay")
# JSON columns that hold what the controller has learned about a node (see NodeRecord)
FACT_COLUMNS = ("software", "policy", "reliability", "tasks", "thermal_events", "link",
                "overlay")
# the columns held typed (core/node_facts): converted here, at the SQLite edge
TypedFact = SoftwareFacts | LinkMeasure | OverlayFacts


class LiveRow(NamedTuple):
    id: str
    name: str
    kind: NodeKind
    status: NodeStatus
    last_heartbeat: float | None


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False,
                                       timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self.migrated = migrate(self._db, REGISTRY_MIGRATIONS, "registry")
        except sqlite3.Error as exc:
            raise StateError(f"cannot open registry {path}: {exc}",
                             hint="check the disk and permissions of $GPUHIVE_HOME") from exc

    @property
    def connection(self) -> sqlite3.Connection:
        """For stores that keep their own tables in the same database (jobs, API keys)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    # ---- tokens -------------------------------------------------------------------------

    def create_token(self, name: str, ttl_s: float, max_uses: int,
                     now: float) -> tuple[tokens.TokenRecord, str]:
        secret = secrets.token_urlsafe(24)
        rec = tokens.TokenRecord(secrets.token_hex(6), name, tokens.hash_secret(secret), now,
                                 now + ttl_s, max_uses)
        self._db.execute(
            "INSERT INTO tokens (id, name, secret_hash, created_at, expires_at, max_uses)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (rec.token_id, rec.name, rec.secret_hash, rec.created_at, rec.expires_at,
             rec.max_uses))
        return rec, secret

    def get_token(self, token_id: str) -> tokens.TokenRecord | None:
        row = self._db.execute(
            "SELECT id, name, secret_hash, created_at, expires_at, max_uses, uses, revoked_at"
            " FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return tokens.TokenRecord(*row) if row else None

    def list_tokens(self) -> list[tokens.TokenRecord]:
        rows = self._db.execute(
            "SELECT id, name, secret_hash, created_at, expires_at, max_uses, uses, revoked_at"
            " FROM tokens ORDER BY created_at").fetchall()
        return [tokens.TokenRecord(*r) for r in rows]

    def revoke_token(self, token_id: str, now: float) -> tokens.TokenRecord:
        self._db.execute("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                         (now, token_id))
        rec = self.get_token(token_id)
        if rec is None:
            raise TokenUnknown(f"no join token with id {token_id}",
                               hint="see `gpuhive invite ls`", token_id=token_id)
        return rec

    # ---- nodes --------------------------------------------------------------------------

    def enroll(self, *, token_id: str, secret: str, name: str, name_given: bool, hostname: str,
               public_key: str, host_key: str, hardware: Hardware, public_addr: str,
               port_range: tuple[int, int], now: float,
               software: SoftwareFacts | None = None,
               overlay: OverlayFacts | None = None,
               overlay_subnet: str = "") -> NodeRecord:
        """Verify and consume the token and register the node, all in one transaction.

        A node key that is already registered re-enrolls as the same node (same id, port and
        overlay address). With ``overlay`` (its WireGuard public key, LAN address, port) the
        node gets an overlay address from ``overlay_subnet`` inside the same transaction, so
        concurrent enrollments never share one, and a removed node's address is never reused.
        """
        with self._tx() as db:
            tokens.verify(self.get_token(token_id), token_id, secret, now)
            existing = db.execute(
                f"SELECT {_NODE_COLS} FROM nodes WHERE public_key = ? AND removed_at IS NULL",
                (public_key,)).fetchone()
            if existing:
                node = _node(existing)
                db.execute("UPDATE nodes SET host_key = ?, hostname = ?, hardware = ? WHERE id = ?",
                           (host_key, hostname, json.dumps(hardware.to_dict()), node.id))
                self._event(node.id, now, "re-enrolled", f"token {token_id}")
            else:
                name = self._free_name(name, name_given)
                node_id = "n-" + secrets.token_hex(4)
                port = self._free_port(port_range)
                db.execute(
                    "INSERT INTO nodes (id, name, kind, public_key, host_key, forward_port,"
                    " hostname, hardware, status, registered_at, public_addr)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (node_id, name, NodeKind.AGENT.value, public_key, host_key, port, hostname,
                     json.dumps(hardware.to_dict()), NodeStatus.OFFLINE.value, now, public_addr))
                self._event(node_id, now, "registered", f"token {token_id} from {public_addr}")
            db.execute("UPDATE tokens SET uses = uses + 1 WHERE id = ?", (token_id,))
            node_id = node.id if existing else node_id
            if software is not None:
                self.set_facts(node_id, software=software)
            if overlay is not None and overlay_subnet:
                self._assign_overlay(node_id, overlay, overlay_subnet)
        return self.get_node(node_id)

    def _assign_overlay(self, node_id: str, overlay: OverlayFacts, subnet: str) -> None:
        rows = [(r[0], _overlay(r[1]), r[2]) for r in
                self._db.execute("SELECT id, overlay, removed_at FROM nodes").fetchall()]
        mine = next(ov for id_, ov, _ in rows if id_ == node_id)
        taken = [ov.ip for _, ov, removed in rows if ov and ov.ip and removed is None]
        retired = [ov.ip for _, ov, removed in rows if ov and ov.ip and removed is not None]
        ip = addressing.assign(subnet, mine.ip if mine else None, taken, retired)
        # what the node sent now wins over what it sent before; unknown keys are kept
        merged = {**_json(mine), **overlay.to_dict(), "ip": ip, "subnet": subnet}
        self.set_facts(node_id, overlay=OverlayFacts.from_dict(merged))

    def add_ssh_node(self, *, name: str, address: str, host_key: str, hostname: str,
                     hardware: Hardware, now: float) -> NodeRecord:
        with self._tx() as db:
            name = self._free_name(name, True)
            node_id = "n-" + secrets.token_hex(4)
            db.execute(
                "INSERT INTO nodes (id, name, kind, host_key, address, hostname, hardware, status,"
                " registered_at, last_heartbeat, agent_state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (node_id, name, NodeKind.SSH.value, host_key, address, hostname,
                 json.dumps(hardware.to_dict()), NodeStatus.ONLINE.value, now, now, "available"))
            self._event(node_id, now, "registered", f"ssh node {address}")
        return self.get_node(node_id)

    def _free_name(self, name: str, name_given: bool) -> str:
        taken = {r[0] for r in self._db.execute(
            "SELECT name FROM nodes WHERE removed_at IS NULL").fetchall()}
        if name not in taken:
            return name
        if name_given:
            raise EnrollRefused(f"a node named {name!r} is already enrolled",
                                hint="pick another name with --name", name=name)
        for i in range(2, 10_000):
            if f"{name}-{i}" not in taken:
                return f"{name}-{i}"
        raise EnrollRefused(f"too many nodes named {name!r}", hint="pick a name with --name")

    def _free_port(self, port_range: tuple[int, int]) -> int:
        used = {r[0] for r in self._db.execute(
            "SELECT forward_port FROM nodes WHERE removed_at IS NULL AND forward_port IS NOT NULL"
        ).fetchall()}
        for port in range(port_range[0], port_range[1] + 1):
            if port not in used:
                return port
        raise EnrollRefused("no forward port left in the configured range",
                            hint="widen forward_port_min/forward_port_max in config.toml")

    def get_node(self, name_or_id: str, *, include_removed: bool = False) -> NodeRecord:
        cond = "" if include_removed else " AND removed_at IS NULL"
        row = self._db.execute(
            f"SELECT {_NODE_COLS} FROM nodes WHERE (id = ? OR name = ?){cond}"
            " ORDER BY removed_at IS NULL DESC, registered_at DESC",
            (name_or_id, name_or_id)).fetchone()
        if not row:
            raise NodeNotFound(f"no node named {name_or_id!r}",
                               hint=self._did_you_mean(name_or_id, include_removed)
                               + "`gpuhive nodes` lists the enrolled nodes", node=name_or_id)
        return _node(row)

    def _did_you_mean(self, name: str, include_removed: bool = False) -> str:
        """"did you mean alice? " for a misspelt node name, from the names there are."""
        cond = "" if include_removed else " WHERE removed_at IS NULL"
        names = [r[0] for r in self._db.execute(f"SELECT name FROM nodes{cond}")]
        return did_you_mean(name, names)

    def list_nodes(self, *, include_removed: bool = False) -> list[NodeRecord]:
        cond = "" if include_removed else " WHERE removed_at IS NULL"
        rows = self._db.execute(f"SELECT {_NODE_COLS} FROM nodes{cond} ORDER BY name").fetchall()
        return [_node(r) for r in rows]

    def liveness(self, kind: NodeKind | None = None) -> list[LiveRow]:
        """Just what liveness tracking needs, without decoding any JSON column."""
        sql = "SELECT id, name, kind, status, last_heartbeat FROM nodes WHERE removed_at IS NULL"
        args: tuple[Any, ...] = ()
        if kind is not None:
            sql += " AND kind = ?"
            args = (kind.value,)
        return [LiveRow(r[0], r[1], NodeKind(r[2]), NodeStatus(r[3]), r[4])
                for r in self._db.execute(sql, args).fetchall()]

    def overlay_of(self, node_id: str) -> OverlayFacts | None:
        """One node's overlay facts, without decoding the rest of its row."""
        row = self._db.execute("SELECT overlay FROM nodes WHERE id = ?", (node_id,)).fetchone()
        return _overlay(row[0]) if row else None

    def fact(self, node_id: str, name: str) -> Any:
        """A fact column as the JSON it is stored as."""
        if name not in FACT_COLUMNS:
            raise ValueError(f"not a fact column: {name}")
        row = self._db.execute(f"SELECT {name}, registered_at FROM nodes WHERE id = ?",
                               (node_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def list_by_kind(self, kind: NodeKind) -> list[NodeRecord]:
        rows = self._db.execute(f"SELECT {_NODE_COLS} FROM nodes WHERE removed_at IS NULL"
                                " AND kind = ? ORDER BY name", (kind.value,)).fetchall()
        return [_node(r) for r in rows]

    def select(self, target: str) -> list[NodeRecord]:
        """``all`` (or "") or comma-separated names/ids; every name must exist."""
        nodes = self.list_nodes()
        if target in ("", "all"):
            return nodes
        wanted = set(target.split(","))
        chosen = [n for n in nodes if n.name in wanted or n.id in wanted]
        missing = wanted - {n.name for n in chosen} - {n.id for n in chosen}
        if missing:
            name = sorted(missing)[0]
            raise NodeNotFound(f"no node named {name!r}",
                               hint=did_you_mean(name, [n.name for n in nodes])
                               + "`gpuhive nodes` lists the enrolled nodes", node=name)
        return chosen

    def node_for_key(self, node_id: str, public_key: str) -> NodeRecord | None:
        row = self._db.execute(
            f"SELECT {_NODE_COLS} FROM nodes WHERE id = ? AND public_key = ? AND kind = ?"
            " AND removed_at IS NULL", (node_id, public_key, NodeKind.AGENT.value)).fetchone()
        return _node(row) if row else None

    def set_status(self, node_id: str, status: NodeStatus, reason: str, now: float) -> None:
        self._db.execute("UPDATE nodes SET status = ?, status_reason = ? WHERE id = ?",
                         (status.value, reason, node_id))
        self._event(node_id, now, status.value, reason)

    def set_connection(self, node_id: str, *, connected_since: float | None, public_addr: str,
                       now: float, event: str) -> None:
        self._db.execute("UPDATE nodes SET connected_since = ?, public_addr = ? WHERE id = ?",
                         (connected_since, public_addr, node_id))
        self._event(node_id, now, event, public_addr)

    def save_heartbeats(self, beats: Iterable[tuple[str, float, str, Hardware | None,
                                                    dict[str, Any] | None]]) -> None:
        """Persist the latest heartbeat of each node in one transaction.

        Each beat is (node id, time, agent state, hardware or None, owner policy or None);
        None keeps what is stored.
        """
        rows = [(at, state, json.dumps(hw.to_dict()) if hw else None,
                 hw.hostname if hw else None, json.dumps(policy) if policy is not None else None,
                 node_id) for node_id, at, state, hw, policy in beats]
        if not rows:
            return
        with self._tx() as db:
            db.executemany(
                "UPDATE nodes SET last_heartbeat = ?, agent_state = ?,"
                " hardware = COALESCE(?, hardware), hostname = COALESCE(?, hostname),"
                " policy = COALESCE(?, policy)"
                " WHERE id = ? AND removed_at IS NULL", rows)

    def set_facts(self, node_id: str, **facts: object) -> None:
        """Store facts of one node: typed ones (``software=SoftwareFacts(…)``, None for not
        known) as their JSON, the others (``reliability=…``) as the JSON given."""
        bad = set(facts) - set(FACT_COLUMNS)
        if bad:
            raise ValueError(f"not a fact column: {sorted(bad)}")
        if facts:
            cols = ", ".join(f"{k} = ?" for k in facts)
            self._db.execute(f"UPDATE nodes SET {cols} WHERE id = ?",
                             (*(json.dumps(_encode(k, v)) for k, v in facts.items()), node_id))

    def set_facts_many(self, rows: Iterable[tuple[str, Mapping[str, object]]]) -> None:
        """``set_facts`` for many nodes in one transaction."""
        with self._tx():
            for node_id, facts in rows:
                self.set_facts(node_id, **facts)

    def remove_node(self, name_or_id: str, now: float) -> NodeRecord:
        node = self.get_node(name_or_id)
        with self._tx() as db:
            db.execute("UPDATE nodes SET removed_at = ?, status = ? WHERE id = ?",
                       (now, NodeStatus.REMOVED.value, node.id))
            self._event(node.id, now, "removed", "")
        return self.get_node(node.id, include_removed=True)

    def _event(self, node_id: str, at: float, event: str, detail: str) -> None:
        self._db.execute("INSERT INTO node_events (node_id, at, event, detail) VALUES (?,?,?,?)",
                         (node_id, at, event, detail))

    def recent_events(self, limit: int = 50) -> list[tuple[str, NodeEvent]]:
        """The latest events of all nodes, newest first, with each node's name."""
        rows = self._db.execute(
            "SELECT n.name, e.node_id, e.at, e.event, e.detail FROM node_events e"
            " JOIN nodes n ON n.id = e.node_id ORDER BY e.seq DESC LIMIT ?", (limit,)).fetchall()
        return [(r[0], NodeEvent(*r[1:])) for r in rows]

    def events(self, node_id: str, limit: int = 200) -> list[NodeEvent]:
        rows = self._db.execute(
            "SELECT node_id, at, event, detail FROM node_events WHERE node_id = ?"
            " ORDER BY seq DESC LIMIT ?", (node_id, limit)).fetchall()
        return [NodeEvent(*r) for r in reversed(rows)]


def _node(row: tuple[Any, ...]) -> NodeRecord:
    (id_, name, kind, public_key, host_key, forward_port, address, hostname, hardware, status,
     status_reason, agent_state, registered_at, last_heartbeat, connected_since, public_addr,
     removed_at, software, policy, reliability, tasks, thermal_events, link, overlay) = row
    return NodeRecord(
        id=id_, name=name, kind=NodeKind(kind), status=NodeStatus(status),
        registered_at=registered_at, public_key=public_key, host_key=host_key,
        forward_port=forward_port, address=address, hostname=hostname,
        hardware=Hardware.from_dict(json.loads(hardware)) if hardware else None,
        agent_state=agent_state, status_reason=status_reason, last_heartbeat=last_heartbeat,
        connected_since=connected_since, public_addr=public_addr, removed_at=removed_at,
        software=fact_codec.stored(SoftwareFacts.from_dict, json.loads(software)),
        policy=json.loads(policy), reliability=json.loads(reliability), tasks=json.loads(tasks),
        thermal_events=json.loads(thermal_events),
        link=fact_codec.stored(LinkMeasure.from_dict, json.loads(link)),
        overlay=_overlay(overlay))


def _overlay(text: str) -> OverlayFacts | None:
    return fact_codec.stored(OverlayFacts.from_dict, json.loads(text))


def _json(fact: TypedFact | None) -> dict[str, Any]:
    return fact.to_dict() if fact is not None else {}


_TYPED_COLUMNS: dict[str, type[TypedFact]] = {
    "software": SoftwareFacts, "link": LinkMeasure, "overlay": OverlayFacts}


def _encode(column: str, value: object) -> object:
    """What a fact column stores: a typed fact's JSON ({} for None); other values as given
    (the untyped columns, and rows tests plant as stored JSON)."""
    kind = _TYPED_COLUMNS.get(column)
    if kind is None or not (value is None or isinstance(value, TypedFact)):
        return value
    if value is not None and not isinstance(value, kind):
        raise TypeError(f"{column} takes {kind.__name__}, not {type(value).__name__}")
    return _json(value)
