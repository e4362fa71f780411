"""Jobs in the registry database: state, spec, nodes and a timeline of what happened.

The timeline is the record: each event is ``{at, event, detail}`` plus, for some, data
(``node`` and ``exit`` or ``lost`` as each node's torchrun ends, ``backend``,
``nproc_per_node`` and ``rendezvous`` on ``started``). ``exits``, ``lost`` and ``launch``
are read from it, so older records need no new columns.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from gpuhive.core.names import did_you_mean
from gpuhive.errors import NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    nodes TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    reason TEXT NOT NULL DEFAULT '',
    events TEXT NOT NULL DEFAULT '[]'
);
"""
ACTIVE = ("queued", "preflight", "syncing", "running")


class JobNotFound(NotFound):
    code = "job_not_found"


@dataclass
class JobRecord:
    id: str
    name: str
    state: str
    spec: dict[str, Any]
    created_at: float
    nodes: list[str] = field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None
    reason: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exits(self) -> dict[str, int]:
        """Each node whose torchrun exited, with its exit status."""
        return {e["node"]: e["exit"] for e in self.events if "node" in e and "exit" in e}

    @property
    def lost(self) -> dict[str, str]:
        """Each node lost while the job ran, with what broke."""
        return {e["node"]: e["lost"] for e in self.events if "node" in e and "lost" in e}

    @property
    def launch(self) -> dict[str, Any]:
        """How it was started: backend, processes per node, rendezvous ({} before that)."""
        started = [e for e in self.events if e.get("event") == "started"]
        return {k: v for k, v in started[-1].items() if k not in ("at", "event", "detail")} \
            if started else {}

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "state": self.state, "spec": self.spec,
                "nodes": self.nodes, "created_at": self.created_at,
                "started_at": self.started_at, "ended_at": self.ended_at,
                "reason": self.reason, "events": self.events, "exits": self.exits,
                "lost": self.lost, "launch": self.launch}


class JobStore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SCHEMA)

    def create(self, job: JobRecord) -> None:
        self.db.execute("INSERT INTO jobs (id, name, state, spec, created_at) VALUES (?,?,?,?,?)",
                        (job.id, job.name, job.state, json.dumps(job.spec), job.created_at))

    def save(self, job: JobRecord) -> None:
        self.db.execute(
            "UPDATE jobs SET state=?, nodes=?, started_at=?, ended_at=?, reason=?, events=?"
            " WHERE id=?", (job.state, json.dumps(job.nodes), job.started_at, job.ended_at,
                            job.reason, json.dumps(job.events), job.id))

    def get(self, ref: str) -> JobRecord:
        """A job by id, or by the name the owner gave it (the newest of that name)."""
        row = None if not ref else self.db.execute(
            "SELECT id, name, state, spec, created_at, nodes, started_at, ended_at, reason,"
            " events FROM jobs WHERE id = ? OR name = ? ORDER BY created_at DESC LIMIT 1",
            (ref, ref)).fetchone()
        if row is None:
            known = [k for r in self.db.execute("SELECT id, name FROM jobs ORDER BY created_at"
                                                " DESC LIMIT 200") for k in r]
            raise JobNotFound(f"no job {ref!r}", hint=did_you_mean(ref, known) + "see "
                              "`gpuhive jobs`", job=ref)
        return _job(row)

    def recent(self, limit: int = 100) -> list[JobRecord]:
        rows = self.db.execute(
            "SELECT id, name, state, spec, created_at, nodes, started_at, ended_at, reason,"
            " events FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_job(r) for r in rows]

    def queued(self) -> list[JobRecord]:
        """Jobs waiting in the queue, oldest first."""
        rows = self.db.execute(
            "SELECT id, name, state, spec, created_at, nodes, started_at, ended_at, reason,"
            " events FROM jobs WHERE state = 'queued' ORDER BY created_at").fetchall()
        return [_job(r) for r in rows]

    def interrupted(self, now: float) -> list[str]:
        """Jobs a previous controller left placed or running: they died with its sessions.
        Queued jobs held nothing and ran nothing: they stay queued."""
        placed = [s for s in ACTIVE if s != "queued"]
        ids = [r[0] for r in self.db.execute(
            f"SELECT id FROM jobs WHERE state IN ({','.join('?' * len(placed))})",
            placed).fetchall()]
        for job_id in ids:
            job = self.get(job_id)
            job.state, job.ended_at = "failed", now
            job.reason = "the controller stopped while the job ran"
            job.events.append({"at": now, "event": "failed", "detail": job.reason})
            self.save(job)
        return ids


def _job(row: tuple[Any, ...]) -> JobRecord:
    id_, name, state, spec, created_at, nodes, started_at, ended_at, reason, events = row
    if name == id_:
        name = ""  # 0.1.0 stored the id as the name of an unnamed job
    return JobRecord(id_, name, state, json.loads(spec), created_at, json.loads(nodes),
                     started_at, ended_at, reason, json.loads(events))
